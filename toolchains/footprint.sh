#!/usr/bin/env bash
# Footprint of edge-gateway: resident memory (VmRSS, and the peak VmHWM, from /proc/PID/status)
# idle, and under load: firmware-sim --devices 10000 --rate 1 (10,000 events/s at QoS 1) for
# DURATION seconds, against a private mosquitto and kafka-mock on loopback.
#   toolchains/footprint.sh GATEWAY_BUILD_DIR TOOLS_BUILD_DIR [EMULATOR] [DURATION]
# GATEWAY_BUILD_DIR holds the edge-gateway measured (run under EMULATOR, e.g.
# qemu-aarch64-static, for a cross build); TOOLS_BUILD_DIR the native kafka-mock and firmware-sim
# that drive it. Under qemu the figures are those of the qemu process: the arm64 program's memory
# plus qemu's own (its translated code cache), so they bound the arm64 figure from above.
# Prints `FOOTPRINT <name> <value> <unit>` lines.
set -euo pipefail
gw_build=$1 tools=$2 emulator=${3:-} duration=${4:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/tests/e2e/lib.sh"
work=$(mktemp -d /tmp/gw-footprint.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

mqtt_port=$(gw_free_port)
http_port=$(gw_free_port)
gw_start_mosquitto "$work/mosquitto" "$mqtt_port" "$src/gateway/mosquitto.conf"
# Not in $(...): the helper must track kafka-mock in this shell, or gw_stop_all misses it.
gw_start_kafka_mock "$tools/uplink/kafka-mock" "$work" telemetry >"$work/bootstrap"
bootstrap=$(<"$work/bootstrap")
cat >"$work/gateway.toml" <<CONF
gateway_id = "footprint"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
client_id = "footprint-gateway"
[buffer]
path = "$work/buffer"
durability = "${GW_DURABILITY:-os}"
[uplink.kafka]
brokers = "$bootstrap"
[http]
listen = "127.0.0.1:$http_port"
CONF
${emulator:+"$emulator"} "$gw_build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw=$!
gw_track $gw
gw_wait_gateway_ready "$http_port" "$work/gateway.log" 120

kib() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$gw/status"; }
sleep 10
echo "FOOTPRINT idle_rss $(($(kib VmRSS) / 1024)) MiB"
echo "FOOTPRINT idle_hwm $(($(kib VmHWM) / 1024)) MiB"

"$tools/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 10000 --rate 1 \
  --duration "$duration" --qos 1 --seed 5 --manifest /dev/null >"$work/sim.out" 2>&1 &
sim=$!
max_rss=0 samples=0 sum_rss=0
for ((i = 0; i < duration + 30; i++)); do
  kill -0 $sim 2>/dev/null || break
  sleep 1
  rss=$(kib VmRSS)
  if ((rss > max_rss)); then max_rss=$rss; fi
  if ((i >= 10)); then sum_rss=$((sum_rss + rss)); samples=$((samples + 1)); fi
done
wait $sim || true
status=$(gw_http "http://127.0.0.1:$http_port/status")
echo "FOOTPRINT load_rss_mean_after_10s $((sum_rss / (samples > 0 ? samples : 1) / 1024)) MiB"
echo "FOOTPRINT load_rss_max $((max_rss / 1024)) MiB"
echo "FOOTPRINT load_hwm $(($(kib VmHWM) / 1024)) MiB"
# VmRSS = RssAnon (heap, stacks: the gateway's own) + RssFile (mapped files: the program, its
# libraries, and the LMDB pages it touched, which are page cache the kernel can reclaim).
echo "FOOTPRINT end_rss_anon $(($(kib RssAnon) / 1024)) MiB"
echo "FOOTPRINT end_rss_file $(($(kib RssFile) / 1024)) MiB"
echo "FOOTPRINT sim $(tail -n1 "$work/sim.out")"
echo "FOOTPRINT stored $(jq -r '.buffer.last_seq' <<<"$status") uplinked $(jq -r '.uplink.kafka.last_acked_seq' <<<"$status") events"
