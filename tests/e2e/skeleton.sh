#!/usr/bin/env bash
# End-to-end: the real binaries against a real mosquitto and a librdkafka mock cluster in its own
# process (kafka-mock), the box as shipped: mosquitto runs the gateway's plugin (ingest mode
# plugin). firmware-sim publishes DEVICES x COUNT events at QoS 1; edge-gateway stores, windows and
# forwards them; then every (device, seq) the broker acknowledged must be in Kafka exactly once
# (uplink-cat + firmware-sim verify), and kcat, an outside client, must read the topic.
# GW_KAFKA=real runs it against a real Apache Kafka instead (one KRaft node, tests/support/kafka.sh).
#   tests/e2e/skeleton.sh BUILD_DIR SOURCE_DIR [DEVICES] [COUNT]
set -euo pipefail
build=$1 src=$2 devices=${3:-50} count=${4:-200}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-e2e.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT
expected=$((devices * count))

http_port=$(gw_free_port)
if [[ ${GW_KAFKA:-mock} == real ]]; then
  source "$src/tests/support/kafka.sh"
  mqtt_port=$(gw_free_port)
  gw_kafka_start "$work/kafka" 1
  bootstrap=$KAFKA_BOOTSTRAP
  gw_kafka_create_topic telemetry >/dev/null
  gw_log "mosquitto 127.0.0.1:$mqtt_port, Apache Kafka $bootstrap"
else
  gw_start_brokers_for plugin "$build" "$src" "$work"
  gw_log "mosquitto 127.0.0.1:$mqtt_port, kafka-mock $bootstrap"
fi

cat >"$work/gateway.toml" <<CONF
gateway_id = "e2e-1"
[ingest]
mode = "plugin"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
topics = ["devices/+/telemetry"]
client_id = "e2e-gateway"
[buffer]
path = "$work/buffer"
durability = "os"
[windowing]
size = "1s"
[uplink.kafka]
brokers = "$bootstrap"
topic = "telemetry"
[http]
listen = "127.0.0.1:$http_port"
CONF
"$build/gateway/edge-gateway" --check-config "$work/gateway.toml"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gateway_pid=$!
gw_track $gateway_pid
gw_wait_box_ready plugin "$build" "$src" "$work" "$http_port"

# A second gateway on the same buffer refuses to start, naming the first (gateway/instance_lock.h).
if second=$(timeout 10 "$build/gateway/edge-gateway" --config "$work/gateway.toml" 2>&1); then
  gw_die "a second edge-gateway started on the buffer of the first"
fi
[[ $second == *"in use by another edge-gateway (pid $gateway_pid)"* ]] ||
  gw_die "a second edge-gateway on the same buffer did not say why it stopped: $second"
gw_log "a second edge-gateway on the same buffer: $(grep -o 'the buffer .*upstream' <<<"$second")"

"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices "$devices" --count "$count" \
  --rate 100 --qos 1 --seed 7 --manifest "$work/manifest.txt" | tee "$work/sim.out"
acked=$(wc -l <"$work/manifest.txt")
[[ $acked -eq $expected ]] || gw_die "broker acknowledged $acked of $expected publishes"

# Everything acknowledged stored first (markers, lib.sh: buffer.last_seq counts the windowing
# stage's aggregate records too, so last >= events alone does not say it).
gw_publish_markers "$mqtt_port" "$work/manifest.txt" "$work" || gw_die "mosquitto_pub failed"
gw_wait_markers "http://127.0.0.1:$http_port" "$work" 60 || gw_die "not everything acknowledged was stored"
# Wait (bounded) until the uplink's cursor has caught up with everything stored.
status=""
for ((i = 0; i < 300; i++)); do
  status=$(gw_http "http://127.0.0.1:$http_port/status" || true)
  last=$(jq -r '.buffer.last_seq // 0' <<<"$status" 2>/dev/null || echo 0)
  sent=$(jq -r '.uplink.kafka.last_acked_seq // 0' <<<"$status" 2>/dev/null || echo 0)
  if ((last >= expected && sent == last)); then break; fi
  sleep 0.2
done
((last >= expected && sent == last)) || gw_die "uplink did not catch up: stored=$last acked=$sent"
gw_log "gateway stored $last records, uplink acknowledged up to $sent"

"$build/uplink/uplink-cat" --kafka "$bootstrap" --topic telemetry --idle-exit-ms 2000 >"$work/records.jsonl"
"$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --records "$work/records.jsonl"

# Against a real broker, also the independent verifier (tests/support/kafka_verify.py: another
# Kafka client, the batches decoded from their published format).
if [[ ${GW_KAFKA:-mock} == real ]]; then
  gw_kafka_verify "$work/manifest.txt" telemetry | tee "$work/kafka-verify.out" || gw_die "kafka_verify failed"
  # And it can fail: one reading more in the manifest than on the topic is one lost.
  { cat "$work/manifest.txt"; echo "device-0000 999999 0"; } >"$work/manifest-plus-one.txt"
  if out=$(gw_kafka_verify "$work/manifest-plus-one.txt" telemetry); then gw_die "kafka_verify missed a lost reading: $out"; fi
  grep -q ' lost=1 ' <<<"$out" || gw_die "kafka_verify: expected lost=1: $out"
fi

# kcat, a real outside client, reads the same topic and sees our headers.
batches=$(jq -r '.uplink.kafka.batches_acked' <<<"$status")
kcat_count=$(timeout 30 kcat -b "$bootstrap" -C -t telemetry -o beginning -e -q -f '%h\n' | grep -c 'gw-gateway-id=e2e-1' || true)
gw_log "kcat read $kcat_count batches (gateway reported $batches)"
[[ $kcat_count -ge 1 && $kcat_count -eq $batches ]] || gw_die "kcat saw $kcat_count batches, gateway acked $batches"

# Windowing produced aggregates that the HTTP API serves.
aggs=$(gw_http "http://127.0.0.1:$http_port/aggregates?limit=5" | jq 'length')
((aggs > 0)) || gw_die "no aggregates served"
echo "e2e: devices=$devices events=$expected acked=$acked batches=$batches aggregates_sample=$aggs OK"
