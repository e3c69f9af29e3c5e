#!/usr/bin/env bash
# End-to-end, ingest mode plugin, durability fsync: proof that the order holds, not only that
# kills pass (a SIGKILL keeps the page cache, so it cannot tell os from fsync). Both mosquitto and
# edge-gateway run under strace while firmware-sim publishes 300 QoS 1 messages one at a time;
# tests/e2e/plugin_order.py then checks, in time order, that each PUBACK mosquitto writes to the
# device follows a sync of the gateway's buffer that completed after the gateway read that
# message's request from the plugin socket.
# DURABILITY=os runs the same in os, where the check must fail (its control: os does not sync per
# message).
#   tests/e2e/plugin_order.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
command -v strace >/dev/null || gw_die "strace is not installed (toolchains/setup.sh installs it)"
work=$(mktemp -d /tmp/gw-e2e-order.XXXXXX)
trap 'gw_stop_all; exec 7>&- 2>/dev/null || true; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

http_port=$(gw_free_port)
mqtt_port=$(gw_free_port)
gw_start_kafka_mock "$build/uplink/kafka-mock" "$work" telemetry >"$work/bootstrap"
gw_uplink_config "$work/gateway.toml" "$work" "$mqtt_port" "$http_port" "$(cat "$work/bootstrap")" plugin
sed -i "s/^durability = \"os\"\$/durability = \"${DURABILITY:-fsync}\"/" "$work/gateway.toml"

# Traced from their first instruction: every thread (-f), wall-clock microseconds (-ttt) so that
# the two traces share a clock, durations (-T), file descriptors named with their protocol (-yy), bytes in hex.
trace=(strace -f -ttt -T -yy -x -s 8 -e trace=read,write,writev,sendto,sendmsg,recvfrom,fsync,fdatasync,msync)
"${trace[@]}" -o "$work/gateway.trace" "$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gateway_strace=$!
gw_track $gateway_strace
gw_wait_http "http://127.0.0.1:$http_port/healthz" 30 || gw_die "gateway not healthy (see $work/gateway.log)"
{ cat "$src/gateway/mosquitto.conf"; echo "user root"; "$build/gateway/edge-gateway" --mosquitto-config "$work/gateway.toml"; } \
  >"$work/mosquitto.template"
mkdir -p "$work/mosquitto/data"
{ cat "$work/mosquitto.template"; echo "listener $mqtt_port 127.0.0.1"; echo "persistence_location $work/mosquitto/data/"; } \
  >"$work/mosquitto/mosquitto.conf"
"${trace[@]}" -o "$work/mosquitto.trace" /usr/sbin/mosquitto -c "$work/mosquitto/mosquitto.conf" >"$work/mosquitto/mosquitto.log" 2>&1 &
mosquitto_strace=$!
gw_track $mosquitto_strace
gw_wait_port "$mqtt_port" 20 || gw_die "mosquitto did not listen (see $work/mosquitto/mosquitto.log)"

"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 3 --count 100 --rate 0 \
  --max-inflight 1 --qos 1 --seed 9 --manifest "$work/manifest.txt" >"$work/sim.out" 2>"$work/sim.log" ||
  gw_die "firmware-sim failed (see $work/sim.log)"
cat "$work/sim.out"
# Stop the traced processes, not strace, so that each trace is complete when strace exits.
for tracer in $mosquitto_strace $gateway_strace; do
  pkill -TERM -P "$tracer" || true
  for ((i = 0; i < 100; i++)); do kill -0 "$tracer" 2>/dev/null || break; sleep 0.1; done
done
python3 "$src/tests/e2e/plugin_order.py" "$work/gateway.trace" "$work/mosquitto.trace" 300
