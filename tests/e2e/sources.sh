#!/usr/bin/env bash
# End-to-end: mapped sources ([[ingest.source]] presets). One gateway with the five JSON presets,
# one mosquitto, kafka-mock; five firmware-sim fleets at once, each in one source's form on that
# source's topics (firmware-sim --format zigbee2mqtt|tasmota|shelly|chirpstack|tts), with the
# copies each source really produces:
#   zigbee2mqtt  duplicates (same bytes) and a second MQTT client publishing every reading
#   tasmota      local time (+01:00) in whole seconds, every reading heard by 2 clients
#   shelly       duplicates, conflicts (same time, other values)
#   chirpstack   the Intel Lab readings of ../shared/data replayed; uplinks heard by 3 radio
#                gateways, retransmissions re-stamped 1.5 s later (one fCnt), reordering, conflicts
#   tts          session key ids as boot ids with reboots (rejoins), retransmissions
#   sparkplug    (when built in) each device an edge node: NBIRTH with names and aliases, NDATA by
#                alias, the 8-bit seq wrapping (300 readings each), every message heard by 2 clients
# plus a Tasmota message without its time (dead letter "mapping", detail "Time: missing") and a
# Shelly button press (NotifyEvent: not an event, counted).
# Then, exactly: firmware-sim verify (every acknowledged reading once in Kafka), the dedup counters
# equal what the fleets injected, and the forwarded aggregates equal a reference computed from
# their --record (devices_check.py, as for e2e.devices).
#   tests/e2e/sources.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
source "$src/tests/e2e/devices_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-sources.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT
data=$src/../shared/data/intel-lab-ibrl
[[ -d $data ]] || gw_die "no Intel Lab data at $data (../shared beside the checkout)"

http_port=$(gw_free_port)
gw_start_brokers "$build" "$src" "$work"
gw_log "mosquitto 127.0.0.1:$mqtt_port, kafka-mock $bootstrap"
sparkplug_source=
if grep -q "GW_SPARKPLUG:BOOL=ON" "$build/CMakeCache.txt"; then
  sparkplug_source=$'[[ingest.source]]\npreset = "sparkplug"'
fi
cat >"$work/gateway.toml" <<CONF
gateway_id = "e2e-sources"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
client_id = "e2e-sources-gateway"
[ingest]
[[ingest.source]]
preset = "zigbee2mqtt"
[[ingest.source]]
preset = "tasmota"
time_zone = "+01:00"
[[ingest.source]]
preset = "shelly"
[[ingest.source]]
preset = "chirpstack"
[[ingest.source]]
preset = "tts"
$sparkplug_source
CONF
gw_devices_config_tail >>"$work/gateway.toml"
gw_devices_start_gateway

declare -A sim=(
  [zigbee2mqtt]="--devices 4 --count 40 --rate 2 --duplicates 0.05 --multi-gateway 2"
  [tasmota]="--devices 4 --count 20 --rate 1 --multi-gateway 2"
  [shelly]="--devices 4 --count 40 --rate 2 --duplicates 0.05 --conflicts 0.02"
  [chirpstack]="--devices 6 --count 40 --rate 2 --data $data --seq-bits 32 --seq-start 0 --no-boot-id
                --retransmit 0.1 --retransmit-delay-ms 1500 --multi-gateway 3 --reorder 3 --conflicts 0.01"
  [tts]="--devices 4 --count 40 --rate 2 --seq-bits 32 --seq-start 0 --boot-id --reboot 0.03 --reboot-min-events 1
         --retransmit 0.05 --retransmit-delay-ms 1000"
)
if [[ -n $sparkplug_source ]]; then
  sim[sparkplug]="--devices 3 --count 300 --rate 10 --seq-bits 8 --seq-start 0 --multi-gateway 2 --duplicates 0.03
                  --conflicts 0.01"
fi
pids=()
seed=40
for format in "${!sim[@]}"; do
  seed=$((seed + 1))
  # shellcheck disable=SC2086  # the options are words
  "$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --format "$format" --qos 1 \
    --seed "$seed" --device-prefix "${format:0:2}-" --client-id "sim-$format" ${sim[$format]} \
    --manifest "$work/manifest-$format.txt" --record "$work/published-$format.jsonl" \
    --injected "$work/injected-$format.json" >"$work/sim-$format.out" 2>&1 &
  pids+=($!)
done
# The odd ones: a Tasmota message without its time, and a Shelly button press.
mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t tele/odd/SENSOR -m '{"ANALOG":{"A0":512}}'
mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t shellyplus1-odd/events/rpc \
  -m '{"src":"shellyplus1-odd","method":"NotifyEvent","params":{"ts":1705314600.1,"events":[{"component":"input:0","event":"single_push"}]}}'
for pid in "${pids[@]}"; do wait "$pid" || gw_die "a firmware-sim fleet failed (see $work/sim-*.out)"; done
for format in "${!sim[@]}"; do
  gw_log "$format: $(tail -n 2 "$work/sim-$format.out" | tr '\n' ' ')"
  r=$(wc -l <"$work/published-$format.jsonl") a=$(wc -l <"$work/manifest-$format.txt")
  [[ $a -eq $r ]] || gw_die "$format: the broker acknowledged $a of $r readings"
done
cat "$work"/manifest-*.txt >"$work/manifest.txt"
cat "$work"/published-*.jsonl >"$work/published.jsonl"
python3 - "$work" <<'PY'
import glob, json, sys
total = {}
for f in glob.glob(sys.argv[1] + "/injected-*.json"):
    for k, v in json.load(open(f)).items():
        total[k] = total.get(k, 0) + v
json.dump(total, open(sys.argv[1] + "/injected.json", "w"))
PY

gw_devices_settle
gw_http "http://127.0.0.1:$http_port/dlq?reason=mapping&limit=10" >"$work/dlq-mapping.json"
python3 - "$work" <<'PY' || gw_die "the odd messages were not handled as expected"
import json, sys
work = sys.argv[1]
letters = json.load(open(work + "/dlq-mapping.json"))
status = json.load(open(work + "/status.json"))
assert [(d["topic"], d.get("detail")) for d in letters] == [("tele/odd/SENSOR", "Time: missing")], letters
assert status["ingest"]["not_events"] == 1, status["ingest"]
print("odd messages: 1 mapping dead letter (Time: missing), 1 not an event")
PY

gw_devices_verify
echo "e2e.sources: OK"
