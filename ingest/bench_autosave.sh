#!/usr/bin/env bash
# bench-autosave: what mosquitto's autosave settings cost and what they save, in ingest mode
# subscribe (the gateway subscribes; mosquitto acknowledges devices from memory and writes its
# state to disk only when it autosaves). For each setting, against the same box (edge-gateway in
# `os`, kafka-mock upstream; the shipped mosquitto.conf with the setting's lines appended):
#   cost: 50 devices x 40 QoS 1 msg/s for COST_S seconds, nothing killed: mosquitto's CPU-µs and
#         bytes written (/proc/PID/io write_bytes) per message;
#   loss: 50 devices x 100 msg/s (more than the gateway takes in `fsync`, so a backlog waits in
#         mosquitto) for 20 s while mosquitto is SIGKILLed 3 times (restarted 0.5 s later); then
#         every acknowledged reading is looked for in Kafka (firmware-sim verify): lost of acked,
#         and what mosquitto's processes cost meanwhile per acknowledged message (with a backlog
#         each autosave writes all of it).
# Prints `BENCH autosave_<name>_<figure> value unit` lines. Run on demand (several minutes).
#   ingest/bench_autosave.sh BUILD_DIR SOURCE_DIR [COST_S]
set -euo pipefail
build=$1 src=$2 cost_s=${3:-15}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-bench-autosave.XXXXXX)
trap 'gw_stop_all; exec 7>&- 2>/dev/null || true; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

# name|mosquitto lines (';' separates lines)
settings=(
  "interval10|autosave_interval 10"
  "interval1|autosave_interval 1"
  "changes1000|autosave_on_changes true;autosave_interval 1000"
  "changes100|autosave_on_changes true;autosave_interval 100"
)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
written() { awk '/^write_bytes:/ { print $2 }' "/proc/$1/io"; }

# box NAME LINES DURABILITY: kafka-mock, the gateway (subscribe) and mosquitto with LINES; sets
# d, http_port, mqtt_port, bootstrap, broker_pid.
box() {
  local name=$1 lines=$2 durability=$3
  d=$work/$name-$durability
  mkdir -p "$d"
  http_port=$(gw_free_port)
  mqtt_port=$(gw_free_port)
  gw_start_kafka_mock "$build/uplink/kafka-mock" "$d" telemetry >"$d/bootstrap"
  bootstrap=$(<"$d/bootstrap")
  gw_uplink_config "$d/gateway.toml" "$d" "$mqtt_port" "$http_port" "$bootstrap" subscribe
  sed -i "s/^durability = \"os\"\$/durability = \"$durability\"/" "$d/gateway.toml"
  tr ';' '\n' <<<"$lines" >"$d/extra.conf"
  start_broker
  "$build/gateway/edge-gateway" --config "$d/gateway.toml" >"$d/gateway.log" 2>&1 &
  gw_track $!
  gw_wait_gateway_ready "$http_port" "$d/gateway.log"
}
start_broker() {
  { cat "$src/gateway/mosquitto.conf"; echo "user root"; cat "$d/extra.conf"; } >"$d/mosquitto.template"
  gw_start_mosquitto "$d/mosquitto" "$mqtt_port" "$d/mosquitto.template"
  broker_pid=${GW_PIDS[-1]}
}

hz=$(getconf CLK_TCK)
for setting in "${settings[@]}"; do
  name=${setting%%|*} lines=${setting#*|}

  box "$name" "$lines" os
  ticks0=$(cpu_ticks "$broker_pid") bytes0=$(written "$broker_pid")
  out=$("$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 50 --rate 40 \
    --duration "$cost_s" --qos 1 --seed 3 2>>"$d/sim.log")
  acked=$(tr ' ' '\n' <<<"$out" | awk -F= '$1 == "acked" { print $2 }')
  ticks1=$(cpu_ticks "$broker_pid") bytes1=$(written "$broker_pid")
  echo "BENCH autosave_${name}_mosquitto_cpu_us_per_msg $(awk -v t=$((ticks1 - ticks0)) -v hz="$hz" -v n="$acked" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }') us"
  echo "BENCH autosave_${name}_mosquitto_bytes_written_per_msg $(((bytes1 - bytes0) / acked)) B"
  gw_stop_all
  exec 7>&- 2>/dev/null || true

  box "$name" "$lines" fsync
  gw_start_verifier "$build" "$d" "$bootstrap"
  "$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 50 --rate 100 --duration 20 \
    --qos 1 --seed 5 --manifest "$d/manifest.txt" >"$d/sim.out" 2>"$d/sim.log" &
  sim_pid=$!
  gw_track $sim_pid
  ticks=0 bytes=0
  for k in 1 2 3; do
    sleep "$(printf '4.%03d' $((RANDOM % 1000)))"
    ticks=$((ticks + $(cpu_ticks "$broker_pid"))) bytes=$((bytes + $(written "$broker_pid")))
    kill -KILL "$broker_pid"
    wait "$broker_pid" 2>/dev/null || true
    sleep 0.5
    start_broker
  done
  wait "$sim_pid" || true
  ticks=$((ticks + $(cpu_ticks "$broker_pid"))) bytes=$((bytes + $(written "$broker_pid")))
  gw_publish_markers "$mqtt_port" "$d/manifest.txt" "$d" || gw_die "mosquitto_pub failed"
  gw_wait_markers "http://127.0.0.1:$http_port" "$d" 600 || gw_die "the backlog was not stored in time"
  gw_wait_caught_up "$http_port" 120 >/dev/null || gw_die "uplink did not catch up (see $d/gateway.log)"
  touch "$d/done"
  wait "$verify_pid" || true
  report=$(grep '^verify:' "$d/verify.out")
  lost=$(tr ' ' '\n' <<<"$report" | awk -F= '$1 == "lost" { print $2 }')
  expected=$(tr ' ' '\n' <<<"$report" | awk -F= '$1 == "expected" { print $2 }')
  echo "BENCH autosave_${name}_lost_of_acked_3_kills $lost of $expected"
  echo "BENCH autosave_${name}_backlog_mosquitto_cpu_us_per_msg $(awk -v t="$ticks" -v hz="$hz" -v n="$expected" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }') us"
  echo "BENCH autosave_${name}_backlog_mosquitto_bytes_written_per_msg $((bytes / expected)) B"
  gw_stop_all
  exec 7>&- 2>/dev/null || true
done
