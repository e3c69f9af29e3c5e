#!/usr/bin/env bash
# End-to-end, Pulsar: mosquitto with the gateway's plugin, edge-gateway with both sinks (Kafka through kafka-mock, Pulsar
# through pulsar-ws-server, the tests' implementation of Pulsar's documented WebSocket protocol; not
# a Pulsar broker), firmware-sim. The protocol server drops the gateway's first connection with 3
# messages in flight (stored, never answered) and then fails 2 sends with send-error; the token is
# required. Then: firmware-sim verify --pulsar (consumer API, dedup by gateway id and seq) must show
# lost=0 duplicates=0 and count the copies it removed; Kafka, with its own cursor, holds every
# record exactly once; a wrong token is refused with 401.
#   tests/e2e/pulsar.sh BUILD_DIR SOURCE_DIR [DEVICES] [COUNT]
set -euo pipefail
build=$1 src=$2 devices=${3:-20} count=${4:-200}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-pulsar.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT
expected=$((devices * count))
token="e2e-pulsar-token"

http_port=$(gw_free_port)
gw_start_brokers_for plugin "$build" "$src" "$work"
mkfifo "$work/pulsar.in"
"$build/tests/support/pulsar-ws-server" --token "$token" <"$work/pulsar.in" >"$work/pulsar.out" 2>"$work/pulsar.log" &
gw_track $!
exec 8>"$work/pulsar.in"
for ((i = 0; i < 100; i++)); do grep -q '^url=' "$work/pulsar.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^url=//p' "$work/pulsar.out" | head -n1)
[[ -n $url ]] || gw_die "pulsar-ws-server printed no url (see $work/pulsar.log)"
gw_log "mosquitto 127.0.0.1:$mqtt_port, kafka-mock $bootstrap, pulsar-ws-server $url"
# The first connection: 3 messages stored and never answered, then a reset; then 2 send errors.
echo "drop-after 3" >&8
echo "fail-sends 2" >&8

cat >"$work/gateway.toml" <<CONF
gateway_id = "e2e-pulsar"
[ingest]
mode = "plugin"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
client_id = "e2e-pulsar-gateway"
[buffer]
path = "$work/buffer"
durability = "os"
[uplink.kafka]
brokers = "$bootstrap"
aggregates_topic = ""
[uplink.pulsar]
service_url = "$url"
tenant = "public"
namespace = "default"
topic = "telemetry"
token = "$token"
batch_max_records = 200
linger = "50ms"
max_in_flight = 8
retry_backoff = "100ms"
retry_backoff_max = "1s"
[http]
listen = "127.0.0.1:$http_port"
CONF
"$build/gateway/edge-gateway" --check-config "$work/gateway.toml"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_box_ready plugin "$build" "$src" "$work" "$http_port"

"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices "$devices" --count "$count" \
  --rate 100 --qos 1 --seed 11 --manifest "$work/manifest.txt" | tee "$work/sim.out"
acked=$(wc -l <"$work/manifest.txt")
[[ $acked -eq $expected ]] || gw_die "broker acknowledged $acked of $expected publishes"

# Everything acknowledged stored first (markers, lib.sh: buffer.last_seq counts the windowing
# stage's aggregate records too, so last >= events alone does not say it).
gw_publish_markers "$mqtt_port" "$work/manifest.txt" "$work" || gw_die "mosquitto_pub failed"
gw_wait_markers "http://127.0.0.1:$http_port" "$work" 60 || gw_die "not everything acknowledged was stored"
# Both sinks catch up, each on its own cursor (bounded wait).
status=""
for ((i = 0; i < 300; i++)); do
  status=$(gw_http "http://127.0.0.1:$http_port/status" || true)
  last=$(jq -r '.buffer.last_seq // 0' <<<"$status" 2>/dev/null || echo 0)
  p=$(jq -r '.uplink.pulsar.last_acked_seq // 0' <<<"$status" 2>/dev/null || echo 0)
  k=$(jq -r '.uplink.kafka.last_acked_seq // 0' <<<"$status" 2>/dev/null || echo 0)
  if ((last >= expected && p == last && k == last)); then break; fi
  sleep 0.2
done
((last >= expected && p == last && k == last)) || gw_die "sinks did not catch up: stored=$last pulsar=$p kafka=$k"
jq '.uplink.pulsar | {state, batches_sent, batches_acked, batches_resent, delivery_errors, connects, records_acked}' <<<"$status"
# The send errors are sent again as they were (resent); the batches in flight at the drop are read
# again from the buffer after the read-back that follows the reconnect (which finds nothing here:
# this server has no admin API; against a real broker it finds what was stored, e2e.pulsar_kill).
resent=$(jq -r '.uplink.pulsar.batches_resent' <<<"$status")
errors=$(jq -r '.uplink.pulsar.delivery_errors' <<<"$status")
connects=$(jq -r '.uplink.pulsar.connects' <<<"$status")
read_backs=$(jq -r '.uplink.pulsar.read_backs' <<<"$status")
((resent >= 2 && errors >= 3 && connects >= 2 && read_backs >= 2)) ||
  gw_die "expected resends after the drop and the send errors: resent=$resent errors=$errors connects=$connects read_backs=$read_backs"
gw_http "http://127.0.0.1:$http_port/metrics" | grep -q 'gw_uplink_records_acked_total{sink="pulsar"}' ||
  gw_die "/metrics has no sink=\"pulsar\" series"

# Pulsar: at least once; the verifier reads through the consumer API and dedups by (gateway, seq).
"$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --pulsar "$url" --token "$token" \
  --topic telemetry --idle-exit-ms 2000 | tee "$work/verify-pulsar.out"
grep -q ' lost=0 duplicates=0 ' "$work/verify-pulsar.out" || gw_die "pulsar verify: $(head -1 "$work/verify-pulsar.out")"
removed=$(sed -n 's/.*duplicates_removed=\([0-9]*\).*/\1/p' "$work/verify-pulsar.out")
((removed > 0)) || gw_die "the dropped connection should have left copies on the topic (removed=$removed)"

# uplink-cat --pulsar prints every record once (dedup) and counts what it removed.
"$build/uplink/uplink-cat" --pulsar "$url" --token "$token" --idle-exit-ms 1500 >"$work/records.jsonl" 2>"$work/cat.err"
cat "$work/cat.err" >&2
"$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --records "$work/records.jsonl"

# Kafka, the other sink: exactly once, unaffected by Pulsar's troubles.
"$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --kafka "$bootstrap" --topic telemetry \
  --idle-exit-ms 2000 | tee "$work/verify-kafka.out"

# A wrong token: HTTP 401 on the upgrade.
if "$build/uplink/uplink-cat" --pulsar "$url" --token wrong --idle-exit-ms 500 >/dev/null 2>"$work/wrong.err"; then
  gw_die "uplink-cat with a wrong token succeeded"
fi
echo stats >&8
sleep 0.3
gw_log "pulsar-ws-server: $(grep '^{' "$work/pulsar.out" | tail -1)"
grep '^{' "$work/pulsar.out" | tail -1 | jq -e '.upgrades_rejected >= 1 and .drops == 1 and .send_errors == 2' >/dev/null ||
  gw_die "pulsar-ws-server stats do not show the rejection, the drop and the send errors"
echo "e2e pulsar: devices=$devices events=$expected acked=$acked resent=$resent duplicates_removed=$removed OK"
