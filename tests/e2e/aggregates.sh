#!/usr/bin/env bash
# End-to-end: windowing aggregates reach Kafka. firmware-sim publishes DEVICES x COUNT events to a
# real mosquitto; edge-gateway windows them (1 s tumbling, devices idle after 1 s so that every
# window closes) and forwards raw batches to `telemetry` and aggregate batches to
# `telemetry-aggregates` (kafka-mock). Then, exactly:
# - every aggregate in Kafka is there once, and there are as many as windows closed;
# - each aggregate's count equals the events of its device with its metric whose event time lies in
#   its window, counted from the raw topic (so no late events are allowed: the test checks 0);
# - the counts sum to the number of (event, metric) values published.
#   tests/e2e/aggregates.sh BUILD_DIR SOURCE_DIR [DEVICES] [COUNT]
set -euo pipefail
build=$1 src=$2 devices=${3:-10} count=${4:-300}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-agg.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT
expected=$((devices * count))

http_port=$(gw_free_port)
gw_start_brokers_for plugin "$build" "$src" "$work"
gw_log "mosquitto 127.0.0.1:$mqtt_port, kafka-mock $bootstrap"

cat >"$work/gateway.toml" <<CONF
gateway_id = "e2e-agg"
[ingest]
mode = "plugin"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
topics = ["devices/+/telemetry"]
client_id = "e2e-agg-gateway"
[buffer]
path = "$work/buffer"
durability = "os"
[windowing]
size = "1s"
idle_timeout = "1s"
[uplink.kafka]
brokers = "$bootstrap"
topic = "telemetry"
aggregates_topic = "telemetry-aggregates"
linger = "20ms"
[http]
listen = "127.0.0.1:$http_port"
CONF
"$build/gateway/edge-gateway" --check-config "$work/gateway.toml"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_box_ready plugin "$build" "$src" "$work" "$http_port"

"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices "$devices" --count "$count" \
  --rate 100 --qos 1 --seed 11 --manifest "$work/manifest.txt" >"$work/sim.out"
acked=$(wc -l <"$work/manifest.txt")
[[ $acked -eq $expected ]] || gw_die "broker acknowledged $acked of $expected publishes"

# Wait (bounded) until every window closed and both sinks and the windowing cursor reached the
# buffer's last seq (the stage's aggregate records move it), twice in a row.
status=$(gw_wait_windows_settled "$http_port" ".windowing.events >= $expected") \
  || { echo "$status" >&2; gw_die "windows did not all close, or a sink did not catch up"; }
closed=$(jq -r '.windowing.windows_closed' <<<"$status")
late=$(jq -r '.windowing.late_events' <<<"$status")
agg_acked=$(jq -r '.uplink.kafka_aggregates.records_acked' <<<"$status")
gw_log "windows closed $closed, late events $late, aggregates acked $agg_acked"
[[ $late -eq 0 ]] || gw_die "$late late events: counts would not be exact"
[[ $(jq -r '.uplink.kafka_aggregates.state' <<<"$status") == up ]] || gw_die "aggregates sink not up"

"$build/uplink/uplink-cat" --kafka "$bootstrap" --topic telemetry --idle-exit-ms 2000 >"$work/records.jsonl"
"$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --records "$work/records.jsonl"
"$build/uplink/uplink-cat" --kafka "$bootstrap" --topic telemetry-aggregates --idle-exit-ms 2000 \
  >"$work/aggregates.jsonl"

python3 - "$work/records.jsonl" "$work/aggregates.jsonl" "$closed" "$agg_acked" <<'PY'
import collections, json, sys
records = [json.loads(l) for l in open(sys.argv[1])]
aggs = [json.loads(l) for l in open(sys.argv[2])]
closed, acked = int(sys.argv[3]), int(sys.argv[4])
def fail(why):
    sys.exit("aggregates.sh: FAIL: " + why)
if any(a.get("type") != "aggregate" for a in aggs): fail("a line that is not an aggregate")
seqs = [a["seq"] for a in aggs]
if len(set(seqs)) != len(seqs): fail("an aggregate twice in Kafka")
if len(aggs) != closed or len(aggs) != acked:
    fail(f"{len(aggs)} aggregates in Kafka, windows closed {closed}, sink acked {acked}")
# Events per (device, metric), sorted by time, to count each window's events.
times = collections.defaultdict(list)
values = 0
for r in records:
    for m in r["metrics"]:
        times[(r["device"], m)].append(r["time_ms"])
        values += 1
total = 0
for a in aggs:
    if a["scope"] != "device" or a["count"] <= 0: fail(f"unexpected aggregate {a}")
    want = sum(1 for t in times[(a["device"], a["metric"])] if a["window_start_ms"] <= t < a["window_end_ms"])
    if a["count"] != want: fail(f"window {a['device']} {a['metric']} {a['window_start_ms']}: count {a['count']}, events {want}")
    total += a["count"]
if total != values: fail(f"counts sum to {total}, events carried {values} metric values")
print(f"aggregates: {len(aggs)} windows, counts sum to {total} = metric values of {len(records)} events")
PY
echo "e2e aggregates: devices=$devices events=$expected windows=$closed OK"
