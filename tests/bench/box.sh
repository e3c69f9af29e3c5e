#!/usr/bin/env bash
# bench-box (not a ctest): what the whole box costs per message at the loads devices offer. For each
# variant and offered load, firmware-sim (100 devices, QoS 1, paced; its own CPU is not counted)
# publishes for SECONDS to a box on loopback, kafka-mock upstream in its own process (not counted):
#   noop            mosquitto with a plugin that does nothing (ingest/bench_noop_plugin.cc): the
#                   floor of mode plugin;
#   echo            mosquitto with the gateway's plugin handing every message to a server that
#                   acknowledges it at once (ingest/bench_plugin_echo.cc): the floor of mode plugin's
#                   design, the hand-over alone, without decoding or storing (not in the default
#                   VARIANTS);
#   plugin_os, plugin_fsync        mosquitto with the gateway's plugin + edge-gateway (ingest mode
#                   plugin) at that buffer durability;
#   inproc_os       design (a) at its best (not in the default VARIANTS): mosquitto writing the ring
#                   itself through the measuring prototype ingest/bench_inproc_plugin.cc, no gateway
#                   process, no consumer: what mode plugin would cost without its socket round trip;
#   paho_floor      mosquitto + one QoS 1 subscriber that does nothing, with the gateway's client
#                   (Paho, callback mode, persistent session: bench-ingest --floor-subscriber): the
#                   floor of mode subscribe;
#   sub_floor       the same with mosquitto_sub (libmosquitto) as the subscriber (not in the default
#                   VARIANTS);
#   subscribe_os, subscribe_fsync  mosquitto + edge-gateway subscribing (one session).
# Per process (mosquitto, the gateway, the subscriber) from /proc over the measured run: CPU-µs per
# acknowledged message (utime + stime), voluntary and involuntary context switches per message (all
# threads), RSS at the end; and, from a separate SAMPLE seconds of the same load under `strace -c
# -f` (round 1 only; strace slows the processes, so this counts calls, not time), syscalls per
# message. Medians over ROUNDS. Prints `BENCH box_<variant>_<load>_<figure> value unit` lines and
# `RATIO box_<variant>_<load>_vs_<floor> value` (the box's CPU per message against its mode's floor
# at the same load); for mode subscribe also `RATIO box_<variant>_<load>_gateway_vs_paho_floor` (the
# gateway's process against the do-nothing Paho subscriber's).
#   tests/bench/box.sh [BUILD_DIR]
# Environment: LOADS (msg/s, "2000 5000 10000"), SECONDS_PER (10), ROUNDS (3), SAMPLE (3; 0: no strace),
# VARIANTS ("noop plugin_os plugin_fsync paho_floor subscribe_os subscribe_fsync").
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
loads=${LOADS:-2000 5000 10000} seconds=${SECONDS_PER:-10} rounds=${ROUNDS:-3} sample=${SAMPLE:-3}
variants=${VARIANTS:-noop plugin_os plugin_fsync paho_floor subscribe_os subscribe_fsync}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
cmake --build "$build" --target bench-noop-plugin bench-ingest >/dev/null
work=$(mktemp -d /tmp/gw-bench-box.XXXXXX)
trap 'gw_stop_all; exec 7>&- 2>/dev/null || true; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT
hz=$(getconf CLK_TCK)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# switches PID: "voluntary nonvoluntary" summed over its threads.
switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 } END { print v + 0, n + 0 }'
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
median() { tr ' ' '\n' <<<"$*" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# start VARIANT: the box of VARIANT in $work/VARIANT; sets port and procs ("name:pid ...").
start() {
  local v=$1 d=$work/$1 http_port durability=${1##*_} gateway_pid
  mkdir -p "$d"
  port=$(gw_free_port)
  procs=
  case $v in
    noop)
      { cat "$src/gateway/mosquitto.conf"; echo "user root"; echo "plugin $build/ingest/bench_noop_plugin.so"; } >"$d/m.conf"
      gw_start_mosquitto "$d/mosquitto" "$port" "$d/m.conf"
      procs="mosquitto:${GW_PIDS[-1]}" ;;
    echo)
      cmake --build "$build" --target bench-plugin-echo edge-gateway-mosquitto >/dev/null
      "$build/ingest/bench-plugin-echo" "$d/echo.sock" >"$d/echo.log" 2>&1 &
      gw_track $!
      local echo_pid=$!
      for ((i = 0; i < 50; i++)); do [[ -S $d/echo.sock ]] && break; sleep 0.1; done
      { cat "$src/gateway/mosquitto.conf"; echo "user root"; echo "per_listener_settings false"
        echo "plugin $build/ingest/edge_gateway_mosquitto.so"; echo "plugin_opt_socket $d/echo.sock"
        echo "plugin_opt_topics devices/+/telemetry"; } >"$d/m.conf"
      gw_start_mosquitto "$d/mosquitto" "$port" "$d/m.conf"
      procs="mosquitto:${GW_PIDS[-1]} echo:$echo_pid" ;;
    inproc_os)
      cmake --build "$build" --target bench-inproc-plugin >/dev/null
      { cat "$src/gateway/mosquitto.conf"; echo "user root"; echo "plugin $build/ingest/bench_inproc_plugin.so"
        echo "plugin_opt_path $d/buffer"; echo "plugin_opt_durability os"; } >"$d/m.conf"
      gw_start_mosquitto "$d/mosquitto" "$port" "$d/m.conf"
      procs="mosquitto:${GW_PIDS[-1]}" ;;
    sub_floor)
      { cat "$src/gateway/mosquitto.conf"; echo "user root"; } >"$d/m.conf"
      gw_start_mosquitto "$d/mosquitto" "$port" "$d/m.conf"
      procs="mosquitto:${GW_PIDS[-1]}"
      mosquitto_sub -p "$port" -q 1 -t 'devices/+/telemetry' -i bench-sub >/dev/null 2>&1 &
      gw_track $!
      procs+=" subscriber:$!"
      sleep 0.5 ;;
    paho_floor)
      { cat "$src/gateway/mosquitto.conf"; echo "user root"; } >"$d/m.conf"
      gw_start_mosquitto "$d/mosquitto" "$port" "$d/m.conf"
      procs="mosquitto:${GW_PIDS[-1]}"
      "$build/ingest/bench-ingest" --floor-subscriber "tcp://127.0.0.1:$port" >"$d/subscriber.log" 2>&1 &
      gw_track $!
      procs+=" subscriber:$!"
      for ((i = 0; i < 100; i++)); do grep -q subscribed "$d/subscriber.log" && break; sleep 0.1; done
      grep -q subscribed "$d/subscriber.log" || gw_die "the floor subscriber did not subscribe: $(<"$d/subscriber.log")" ;;
    plugin_* | subscribe_*)
      local mode=${v%%_*}
      http_port=$(gw_free_port)
      gw_start_kafka_mock "$build/uplink/kafka-mock" "$d" telemetry >"$d/bootstrap"
      mqtt_port=$port
      [[ $mode == subscribe ]] && { { cat "$src/gateway/mosquitto.conf"; echo "user root"; } >"$d/m.conf"
        gw_start_mosquitto "$d/mosquitto" "$port" "$d/m.conf"; broker_pid=${GW_PIDS[-1]}; }
      gw_uplink_config "$d/gateway.toml" "$d" "$port" "$http_port" "$(<"$d/bootstrap")" "$mode"
      sed -i "s/^durability = \"os\"\$/durability = \"$durability\"/" "$d/gateway.toml"
      "$build/gateway/edge-gateway" --config "$d/gateway.toml" >"$d/gateway.log" 2>&1 &
      gateway_pid=$!
      gw_track $gateway_pid
      gw_wait_box_ready "$mode" "$build" "$src" "$d" "$http_port"
      procs="mosquitto:$broker_pid gateway:$gateway_pid" ;;
  esac
}

# publish LOAD SECONDS: firmware-sim's summary.
publish() {
  "$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$port" --devices 100 \
    --rate "$(awk -v l="$1" 'BEGIN { print l / 100 }')" --duration "$2" --qos 1 --max-inflight 1000 \
    --client-id "bench-box-$RANDOM" 2>>"$work/sim.log"
}
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }

declare -A fig
for v in $variants; do
  start "$v"
  for load in $loads; do
    for ((r = 1; r <= rounds; r++)); do
      declare -A t0 s0
      for p in $procs; do t0[$p]=$(cpu_ticks "${p#*:}"); s0[$p]=$(switches "${p#*:}"); done
      out=$(publish "$load" "$seconds")
      acked=$(field acked "$out")
      ((acked > 0)) || gw_die "$v at $load msg/s: nothing acknowledged ($out)"
      fig[$v,$load,rate]+=" $(awk -v a="$acked" -v s="$(field elapsed_s "$out")" 'BEGIN { printf "%.0f", a / s }')"
      box=0
      for p in $procs; do
        name=${p%%:*} pid=${p#*:}
        read -r v1 n1 <<<"$(switches "$pid")"
        read -r v0 n0 <<<"${s0[$p]}"
        us=$(awk -v t=$(($(cpu_ticks "$pid") - t0[$p])) -v hz="$hz" -v n="$acked" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
        box=$(awk -v a="$box" -v b="$us" 'BEGIN { print a + b }')
        fig[$v,$load,$name,cpu]+=" $us"
        fig[$v,$load,$name,vcs]+=" $(awk -v d=$((v1 - v0)) -v n="$acked" 'BEGIN { printf "%.2f", d / n }')"
        fig[$v,$load,$name,ics]+=" $(awk -v d=$((n1 - n0)) -v n="$acked" 'BEGIN { printf "%.2f", d / n }')"
        fig[$v,$load,$name,rss]+=" $(rss_kib "$pid")"
      done
      fig[$v,$load,box]+=" $box"
    done
    if ((sample > 0)); then
      for p in $procs; do
        strace -c -f -p "${p#*:}" -o "$work/$v-$load-${p%%:*}.strace" 2>/dev/null &
        echo "$!" >>"$work/straces"
      done
      sleep 0.5
      out=$(publish "$load" "$sample")
      for s in $(cat "$work/straces"); do kill -INT "$s" 2>/dev/null || true; wait "$s" 2>/dev/null || true; done
      : >"$work/straces"
      acked=$(field acked "$out")
      for p in $procs; do
        calls=$(awk '$NF == "total" { print $4 }' "$work/$v-$load-${p%%:*}.strace")
        fig[$v,$load,${p%%:*},sys]=$(awk -v c="${calls:-0}" -v n="$acked" 'BEGIN { printf "%.2f", c / n }')
      done
    fi
  done
  gw_stop_all
  exec 7>&- 2>/dev/null || true
  for load in $loads; do
    echo "BENCH box_${v}_${load}_acked_msgs_per_s $(median ${fig[$v,$load,rate]}) msg/s"
    echo "BENCH box_${v}_${load}_cpu_us_per_msg $(median ${fig[$v,$load,box]}) us"
    for p in $procs; do
      name=${p%%:*}
      echo "BENCH box_${v}_${load}_${name}_cpu_us_per_msg $(median ${fig[$v,$load,$name,cpu]}) us"
      echo "BENCH box_${v}_${load}_${name}_voluntary_switches_per_msg $(median ${fig[$v,$load,$name,vcs]})"
      echo "BENCH box_${v}_${load}_${name}_involuntary_switches_per_msg $(median ${fig[$v,$load,$name,ics]})"
      [[ -n ${fig[$v,$load,$name,sys]:-} ]] && echo "BENCH box_${v}_${load}_${name}_syscalls_per_msg ${fig[$v,$load,$name,sys]}"
      echo "BENCH box_${v}_${load}_${name}_rss $(median ${fig[$v,$load,$name,rss]}) KiB"
    done
  done
done
for load in $loads; do
  for pair in echo:noop plugin_os:echo plugin_os:noop plugin_fsync:noop inproc_os:noop subscribe_os:paho_floor subscribe_fsync:paho_floor \
    subscribe_os:sub_floor subscribe_fsync:sub_floor; do
    v=${pair%%:*} floor=${pair#*:}
    [[ -n ${fig[$v,$load,box]:-} && -n ${fig[$floor,$load,box]:-} ]] || continue
    echo "RATIO box_${v}_${load}_vs_${floor} $(awk -v a="$(median ${fig[$v,$load,box]})" -v b="$(median ${fig[$floor,$load,box]})" 'BEGIN { printf "%.2f", a / b }')"
    [[ $floor == paho_floor ]] &&
      echo "RATIO box_${v}_${load}_gateway_vs_paho_floor $(awk -v a="$(median ${fig[$v,$load,gateway,cpu]})" -v b="$(median ${fig[$floor,$load,subscriber,cpu]})" 'BEGIN { printf "%.2f", a / b }')"
  done
done
