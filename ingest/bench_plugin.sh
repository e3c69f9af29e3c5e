#!/usr/bin/env bash
# bench-plugin: what ingest mode plugin costs a device, against mosquitto alone measured in the
# same run. firmware-sim publishes QoS 1 messages (10 devices, unpaced) to private mosquittos on
# loopback, one box per variant, all started first and then measured in turn each round:
#   - broker alone: mosquitto without the plugin and without subscribers (the floor);
#   - plugin os, plugin fsync: mosquitto with the gateway's plugin, edge-gateway storing at that
#     durability (kafka-mock upstream).
# With 100 publishes in flight the rate is the most the box takes; with 1 in flight, 1/rate is the
# device's mean wait for its PUBACK. Medians of ROUNDS rounds. Prints `BENCH name value unit` and
# `RATIO name value` lines.
#   ingest/bench_plugin.sh BUILD_DIR SOURCE_DIR [COUNT [ROUNDS]]
set -euo pipefail
build=$1 src=$2 count=${3:-20000} rounds=${4:-3}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-bench-plugin.XXXXXX)
trap 'gw_stop_all; exec 7>&- 2>/dev/null || true; rm -rf "$work"' EXIT

# rate MQTT_PORT INFLIGHT N: acknowledged messages per second of one firmware-sim run.
rate() {
  local port=$1 inflight=$2 n=$3 out
  out=$("$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$port" --devices 10 --rate 0 \
    --count $((n / 10)) --qos 1 --max-inflight "$inflight" --client-id "bench-$inflight" 2>>"$work/sim.log")
  awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
       END { if (v["failed"] > 0) exit 1; printf "%.0f", v["acked"] / v["elapsed_s"] }' <<<"$out" ||
    gw_die "publishes failed: $out"
}
median() { tr ' ' '\n' <<<"$*" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

gw_start_kafka_mock "$build/uplink/kafka-mock" "$work" telemetry >"$work/bootstrap"
bootstrap=$(cat "$work/bootstrap")
declare -A port
port[alone]=$(gw_free_port)
{ cat "$src/gateway/mosquitto.conf"; echo "user root"; } >"$work/alone.conf"
gw_start_mosquitto "$work/alone" "${port[alone]}" "$work/alone.conf"
for durability in os fsync; do
  d=$work/$durability
  mkdir -p "$d"
  http_port=$(gw_free_port)
  port[$durability]=$(gw_free_port)
  gw_uplink_config "$d/gateway.toml" "$d" "${port[$durability]}" "$http_port" "$bootstrap"
  sed -i "s/^durability = \"os\"\$/durability = \"$durability\"/" "$d/gateway.toml"
  printf '[ingest]\nmode = "plugin"\n' >>"$d/gateway.toml"
  "$build/gateway/edge-gateway" --config "$d/gateway.toml" >"$d/gateway.log" 2>&1 &
  gw_track $!
  gw_wait_http "http://127.0.0.1:$http_port/healthz" 20 || gw_die "gateway not healthy (see $d/gateway.log)"
  gw_start_box_broker "$build" "$src" "$d/mosquitto" "${port[$durability]}" "$d/gateway.toml"
done

declare -A rates waits
for ((r = 1; r <= rounds; r++)); do
  for v in alone os fsync; do
    n=$count
    [[ $v == fsync ]] && n=$((count / 4))  # a sync per message
    rates[$v]+=" $(rate "${port[$v]}" 100 "$n")"
    waits[$v]+=" $(rate "${port[$v]}" 1 $((n / 10)))"
  done
done
alone=$(median ${rates[alone]})
echo "BENCH broker_alone_msgs_per_s $alone msg/s"
echo "BENCH broker_alone_puback_wait_us $((1000000 / $(median ${waits[alone]}))) us"
for v in os fsync; do
  r=$(median ${rates[$v]})
  echo "BENCH plugin_${v}_msgs_per_s $r msg/s"
  echo "BENCH plugin_${v}_puback_wait_us $((1000000 / $(median ${waits[$v]}))) us"
  echo "RATIO plugin_${v}_rate_vs_broker_alone $(awk -v a="$r" -v b="$alone" 'BEGIN { printf "%.3f", a / b }')"
done
