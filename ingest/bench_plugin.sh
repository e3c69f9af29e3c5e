#!/usr/bin/env bash
# bench-plugin: what ingest mode plugin costs a device, against mosquitto alone measured in the
# same run. firmware-sim publishes QoS 1 messages (10 devices, unpaced) to private mosquittos on
# loopback, one box per variant, all started first and then measured in turn each round:
#   - alone: mosquitto without the plugin and without subscribers (the floor);
#   - os, fsync: design (b), the shipped one: mosquitto with the gateway's plugin, edge-gateway
#     storing at that durability (kafka-mock upstream);
#   - inproc_os, inproc_fsync: design (a) at its best, the ring written from inside mosquitto by
#     the measuring prototype ingest/bench_inproc_plugin.cc (one writer, no gateway, no consumer).
# With 100 publishes in flight the rate is the most the box takes; with 1 in flight, firmware-sim's
# publish-to-PUBACK times give the device's wait (median and 99th percentile). Bytes written: what
# the box's processes wrote to the block layer (/proc/PID/io write_bytes: pages they dirtied, incl.
# LMDB's map) during the rate runs, per message: the flash wear. Medians of ROUNDS rounds. Prints
# `BENCH name value unit` and `RATIO name value` lines.
#   ingest/bench_plugin.sh BUILD_DIR SOURCE_DIR [COUNT [ROUNDS]]
set -euo pipefail
build=$1 src=$2 count=${3:-20000} rounds=${4:-3}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
cmake --build "$build" --target bench-inproc-plugin >/dev/null
work=$(mktemp -d /tmp/gw-bench-plugin.XXXXXX)
trap 'gw_stop_all; exec 7>&- 2>/dev/null || true; rm -rf "$work"' EXIT

# written PIDS...: the sum of their write_bytes.
written() {
  local pid sum=0
  for pid in "$@"; do sum=$((sum + $(awk '/^write_bytes:/ { print $2 }' "/proc/$pid/io"))); done
  echo "$sum"
}
# publish MQTT_PORT INFLIGHT N: one firmware-sim run's summary (fails the bench if a publish failed).
publish() {
  local out
  out=$("$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$1" --devices 10 --rate 0 \
    --count $(($3 / 10)) --qos 1 --max-inflight "$2" --client-id "bench-$2" 2>>"$work/sim.log")
  grep -q ' failed=0 ' <<<"$out" || gw_die "publishes failed: $out"
  echo "$out"
}
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }
median() { tr ' ' '\n' <<<"$*" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

gw_start_kafka_mock "$build/uplink/kafka-mock" "$work" telemetry >"$work/bootstrap"
bootstrap=$(cat "$work/bootstrap")
declare -A port pids
port[alone]=$(gw_free_port)
{ cat "$src/gateway/mosquitto.conf"; echo "user root"; } >"$work/alone.conf"
gw_start_mosquitto "$work/alone" "${port[alone]}" "$work/alone.conf"
pids[alone]=${GW_PIDS[-1]}
for durability in os fsync; do
  d=$work/$durability
  mkdir -p "$d"
  http_port=$(gw_free_port)
  port[$durability]=$(gw_free_port)
  gw_uplink_config "$d/gateway.toml" "$d" "${port[$durability]}" "$http_port" "$bootstrap" plugin
  sed -i "s/^durability = \"os\"\$/durability = \"$durability\"/" "$d/gateway.toml"
  "$build/gateway/edge-gateway" --config "$d/gateway.toml" >"$d/gateway.log" 2>&1 &
  gw_track $!
  gateway_pid=$!
  gw_wait_http "http://127.0.0.1:$http_port/healthz" 20 || gw_die "gateway not healthy (see $d/gateway.log)"
  gw_start_box_broker "$build" "$src" "$d/mosquitto" "${port[$durability]}" "$d/gateway.toml"
  pids[$durability]="$gateway_pid $broker_pid"

  v=inproc_$durability
  port[$v]=$(gw_free_port)
  { cat "$src/gateway/mosquitto.conf"; echo "user root"; echo "plugin $build/ingest/bench_inproc_plugin.so"
    echo "plugin_opt_path $work/$v/ring"; echo "plugin_opt_durability $durability"; } >"$work/$v.conf"
  gw_start_mosquitto "$work/$v" "${port[$v]}" "$work/$v.conf"
  pids[$v]=${GW_PIDS[-1]}
done

variants=(alone os fsync inproc_os inproc_fsync)
declare -A rates p50 p99 bytes
for ((r = 1; r <= rounds; r++)); do
  for v in "${variants[@]}"; do
    n=$count
    [[ $v == *fsync ]] && n=$((count / 4))  # a sync per message
    before=$(written ${pids[$v]})
    out=$(publish "${port[$v]}" 100 "$n")
    after=$(written ${pids[$v]})
    rates[$v]+=" $(awk -v a="$(field acked "$out")" -v s="$(field elapsed_s "$out")" 'BEGIN { printf "%.0f", a / s }')"
    bytes[$v]+=" $(((after - before) / n))"
    out=$(publish "${port[$v]}" 1 $((n / 10)))
    p50[$v]+=" $(field ack_p50_us "$out")"
    p99[$v]+=" $(field ack_p99_us "$out")"
  done
done
alone=$(median ${rates[alone]})
for v in "${variants[@]}"; do
  name=$v
  [[ $v == alone ]] && name=broker_alone
  [[ $v == os || $v == fsync ]] && name=plugin_$v
  r=$(median ${rates[$v]})
  echo "BENCH ${name}_msgs_per_s $r msg/s"
  echo "BENCH ${name}_puback_p50_us $(median ${p50[$v]}) us"
  echo "BENCH ${name}_puback_p99_us $(median ${p99[$v]}) us"
  echo "BENCH ${name}_bytes_written_per_msg $(median ${bytes[$v]}) B"
  [[ $v == alone ]] || echo "RATIO ${name}_rate_vs_broker_alone $(awk -v a="$r" -v b="$alone" 'BEGIN { printf "%.3f", a / b }')"
done
