#!/usr/bin/env bash
# End-to-end: what real devices send (device-sequences.md), through a real mosquitto running the
# gateway's plugin (ingest mode plugin), the gateway and kafka-mock. firmware-sim's device
# behaviours are all on for one profile:
#   sparkplug  8-bit counters from 0 that wrap every 256 readings, a boot id per boot, reboots,
#              re-stamped retransmissions, each reading heard through 2 MQTT clients, reordering,
#              devices reusing a number for other values; FlatBuffers payloads; [ingest] seq_bits = 8
#   lora       16-bit counters from 0, no boot id (reboots recognised by the counter), the Intel Lab
#              readings of ../shared/data replayed as JSON, retransmissions re-stamped up to 3 s
#              later, each reading heard through 3 MQTT clients; [ingest] seq_bits = 16
# Then, exactly:
# - firmware-sim verify: every acknowledged reading once in Kafka (lost 0, duplicates 0);
# - the dedup counters of /status and /metrics (duplicates, conflicts, reboots, wraps) equal what
#   firmware-sim injected (--injected), and the dead letters hold the conflicts;
# - the forwarded aggregates (count, sum, min, max per device, metric and 1 s window) equal a
#   reference computed from firmware-sim's --record (one line per reading, its original time),
#   minus the late events the gateway lists in /late.
#   tests/e2e/devices.sh BUILD_DIR SOURCE_DIR sparkplug|lora
set -euo pipefail
build=$1 src=$2 profile=$3
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
source "$src/tests/e2e/devices_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-devices.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

case $profile in
  sparkplug)
    bits=8 devices=12 count=700 rate=40
    sim=(--format flatbuffers --seq-bits 8 --seq-start 0 --boot-id --reboot 0.004 --reboot-min-events 1
         --retransmit 0.05 --retransmit-delay-ms 500 --multi-gateway 2 --reorder 3 --conflicts 0.003) ;;
  lora)
    data=$src/../shared/data/intel-lab-ibrl
    [[ -d $data ]] || gw_die "no Intel Lab data at $data (../shared beside the checkout)"
    bits=16 devices=16 count=400 rate=15
    sim=(--format json --data "$data" --seq-bits 16 --seq-start 0 --no-boot-id --reboot 0.004 --reboot-min-events 128
         --retransmit 0.1 --retransmit-delay-ms 3000 --multi-gateway 3 --conflicts 0.003) ;;
  *) gw_die "unknown profile $profile" ;;
esac

http_port=$(gw_free_port)
gw_start_brokers_for plugin "$build" "$src" "$work"
gw_log "mosquitto 127.0.0.1:$mqtt_port, kafka-mock $bootstrap, profile $profile"
cat >"$work/gateway.toml" <<CONF
gateway_id = "e2e-devices"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
topics = ["devices/+/telemetry"]
client_id = "e2e-devices-gateway"
[ingest]
mode = "plugin"
seq_bits = $bits
CONF
gw_devices_config_tail >>"$work/gateway.toml"
gw_devices_start_gateway

"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices "$devices" --count "$count" \
  --rate "$rate" --qos 1 --seed 23 "${sim[@]}" --manifest "$work/manifest.txt" --record "$work/published.jsonl" \
  --injected "$work/injected.json" >"$work/sim.out"
cat "$work/sim.out"
readings=$(wc -l <"$work/published.jsonl")
acked=$(wc -l <"$work/manifest.txt")
[[ $acked -eq $readings ]] || gw_die "the broker acknowledged $acked of $readings readings"

gw_devices_settle
gw_devices_verify
echo "e2e.devices: profile=$profile OK"
