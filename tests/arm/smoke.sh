#!/usr/bin/env bash
# End-to-end smoke test of a cross build: the target's edge-gateway, kafka-mock, firmware-sim and
# uplink-cat run under the emulator (qemu-aarch64-static for arm64), mosquitto is the build
# machine's, all on loopback. firmware-sim publishes DEVICES x COUNT events at QoS 1; every
# (device, seq) the broker acknowledged must come out of Kafka exactly once (uplink-cat +
# firmware-sim verify). The emulator is named explicitly, so no binfmt registration is needed.
#   tests/arm/smoke.sh BUILD_DIR SOURCE_DIR EMULATOR [DEVICES] [COUNT]
set -euo pipefail
build=$1 src=$2 emulator=$3 devices=${4:-20} count=${5:-100}
source "$src/tests/e2e/lib.sh"
work=$(mktemp -d /tmp/gw-arm-smoke.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT
expected=$((devices * count))

# One wrapper per program, so that lib.sh's helpers start the target binary under the emulator
# (exec: the tracked pid is the emulator's, which forwards signals to the program).
mkdir "$work/bin"
for prog in gateway/edge-gateway uplink/kafka-mock uplink/uplink-cat firmware-sim/firmware-sim; do
  printf '#!/bin/sh\nexec %q %q "$@"\n' "$emulator" "$build/$prog" >"$work/bin/${prog##*/}"
  chmod +x "$work/bin/${prog##*/}"
done
[[ -x $build/gateway/edge-gateway ]] || gw_die "no edge-gateway in $build"
"$work/bin/edge-gateway" --version

mqtt_port=$(gw_free_port)
http_port=$(gw_free_port)
gw_start_mosquitto "$work/mosquitto" "$mqtt_port" "$src/gateway/mosquitto.conf"
# Not in $(...): the helper must track kafka-mock in this shell, or gw_stop_all misses it.
gw_start_kafka_mock "$work/bin/kafka-mock" "$work" telemetry >"$work/bootstrap"
bootstrap=$(<"$work/bootstrap")
gw_log "mosquitto 127.0.0.1:$mqtt_port, kafka-mock (emulated) $bootstrap"

cat >"$work/gateway.toml" <<CONF
gateway_id = "arm-smoke"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
client_id = "arm-smoke-gateway"
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
"$work/bin/edge-gateway" --check-config "$work/gateway.toml"
"$work/bin/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_gateway_ready "$http_port" "$work/gateway.log" 120

"$work/bin/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices "$devices" --count "$count" \
  --rate 100 --qos 1 --seed 11 --manifest "$work/manifest.txt" >"$work/sim.out"
acked=$(wc -l <"$work/manifest.txt")
[[ $acked -eq $expected ]] || gw_die "broker acknowledged $acked of $expected publishes"

last=0 sent=-1
for ((i = 0; i < 600; i++)); do
  status=$(gw_http "http://127.0.0.1:$http_port/status" || true)
  last=$(jq -r '.buffer.last_seq // 0' <<<"$status" 2>/dev/null || echo 0)
  sent=$(jq -r '.uplink.kafka.last_acked_seq // 0' <<<"$status" 2>/dev/null || echo 0)
  if ((last >= expected && sent == last)); then break; fi
  sleep 0.2
done
((last >= expected && sent == last)) || gw_die "uplink did not catch up: stored=$last acked=$sent"

"$work/bin/uplink-cat" --kafka "$bootstrap" --topic telemetry --idle-exit-ms 3000 >"$work/records.jsonl"
"$work/bin/firmware-sim" verify --manifest "$work/manifest.txt" --records "$work/records.jsonl"
echo "arm smoke: $emulator $build/gateway/edge-gateway: events=$expected stored=$last acked_upstream=$sent OK"
