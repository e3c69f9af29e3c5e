#!/usr/bin/env bash
# End-to-end: [uplink.kafka] exactly_once = true against a real Apache Kafka (one KRaft node,
# tests/support/kafka.sh), the box in ingest mode plugin, 20 devices with an outbox:
#   1. the gateway is SIGKILLed 6 times while devices publish, and once more while the broker is
#      frozen (SIGSTOP) with a transaction of the gateway's in flight: the broker appends that
#      transaction's batches once it runs again, and the restarted gateway aborts it
#      (init_transactions) before it reads the partition back and resends;
#   2. takeover: the gateway is frozen (SIGSTOP), a standby starts with the same gateway_id on a
#      copy of its buffer (one edge-gateway per buffer path: a copy, as a replicated or restored
#      buffer would be) and its own mosquitto, and stores and forwards what its devices send; then
#      the frozen one continues and its devices send more: the broker fences it (its
#      transactional.id was taken over), it sends nothing, and /status says so.
# The independent verifier (tests/support/kafka_verify.py) reads the topic as a read_committed
# consumer: every reading the devices of both gateways were acknowledged for exactly once, in order,
# and none of what the fenced one stored after the takeover. Read read_uncommitted, the aborted
# transactions must show as copies (a transaction is open for commit_interval, 200 ms, after its
# first batch: most kills find one).
#   tests/e2e/kafka_exactly_once.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
source "$src/tests/support/kafka.sh"
work=$(mktemp -d /tmp/gw-e2e-keo.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

gw_kafka_start "$work/kafka" 1
gw_kafka_create_topic telemetry >/dev/null
# gateway_config DIR MQTT_PORT HTTP_PORT: the gateway of DIR, exactly once.
gateway_config() {
  gw_uplink_config "$1/gateway.toml" "$1" "$2" "$3" "$KAFKA_BOOTSTRAP" plugin
  sed -i 's/^topic = "telemetry"$/&\nexactly_once = true/' "$1/gateway.toml"
  grep -q '^exactly_once = true$' "$1/gateway.toml" || gw_die "exactly_once not in $1/gateway.toml"
}
# start_gateway DIR: sets gateway_pid.
start_gateway() {
  "$build/gateway/edge-gateway" --config "$1/gateway.toml" >>"$1/gateway.log" 2>&1 &
  gateway_pid=$!
  gw_track $gateway_pid
}
status_of() { gw_http "http://127.0.0.1:$1/status"; }

# start_box DIR: the gateway of DIR and its mosquitto on new ports; sets mqtt_port and http_port.
start_box() {
  mqtt_port=$(gw_free_port) http_port=$(gw_free_port)
  gateway_config "$1" "$mqtt_port" "$http_port"
  start_gateway "$1"
  gw_wait_box_ready plugin "$build" "$src" "$1" "$http_port"
}

a=$work/a b=$work/b
mkdir -p "$a" "$b"
start_box "$a"
mqtt_a=$mqtt_port http_a=$http_port

"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_a" --devices 20 --rate 20 --duration 20 \
  --qos 1 --seed 11 --outbox --manifest "$work/manifest-a.txt" >"$work/sim-a.out" 2>"$work/sim-a.log" &
sim_pid=$!
gw_track $sim_pid

# 1. Kills.
for ((k = 1; k <= 6; k++)); do
  sleep "$(printf '1.%03d' $((RANDOM % 1000)))"
  kill -KILL "$gateway_pid"
  wait "$gateway_pid" 2>/dev/null || true
  start_gateway "$a"
done
gw_wait_http "http://127.0.0.1:$http_a/healthz" 20 || gw_die "the gateway did not come back (see $a/gateway.log)"
gw_wait_status "http://127.0.0.1:$http_a" '.uplink.kafka.transactions_committed > 0' 30 >/dev/null ||
  gw_die "no transaction committed after the restarts (see $a/gateway.log)"
broker=${GW_KAFKA_PIDS[1]}
kill -STOP "$broker"
sleep 1.5  # the gateway produces a transaction's batches into the frozen broker's socket
kill -KILL "$gateway_pid"
wait "$gateway_pid" 2>/dev/null || true
kill -CONT "$broker"
gw_log "6 SIGKILLs, then one more with the broker frozen for 1.5 s"
start_gateway "$a"
wait "$sim_pid" 2>/dev/null || true
grep -q ' unacked=0 ' "$work/sim-a.out" || gw_die "readings of the first devices left unacknowledged (see $work/sim-a.log)"
gw_wait_status "http://127.0.0.1:$http_a" '.uplink.kafka.state == "up" and .uplink.kafka.in_flight == 0' 60 >/dev/null ||
  gw_die "the gateway did not catch up after the kills (see $a/gateway.log)"

# 2. Takeover by a standby on a copy of the buffer, then the frozen one continues.
kill -STOP "$gateway_pid"
stale_pid=$gateway_pid
mkdir -p "$b/buffer"
find "$a/buffer" -maxdepth 1 -type f -name '*.mdb' -exec cp {} "$b/buffer/" \;
start_box "$b"
mqtt_b=$mqtt_port http_b=$http_port
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_b" --devices 10 --count 40 --rate 40 \
  --device-prefix standby- --client-id firmware-sim-b --qos 1 --seed 12 --outbox \
  --manifest "$work/manifest-b.txt" >"$work/sim-b.out" 2>"$work/sim-b.log" ||
  gw_die "the standby's devices were not all acknowledged (see $work/sim-b.log)"
gw_wait_status "http://127.0.0.1:$http_b" \
  '.uplink.kafka.state == "up" and .uplink.kafka.in_flight == 0 and .uplink.kafka.last_acked_seq >= .buffer.last_seq' 60 \
  >/dev/null || gw_die "the standby did not forward what it stored (see $b/gateway.log)"
gw_log "standby: $(status_of "$http_b" | jq -c '.uplink.kafka | {last_acked_seq, transactions_committed, fenced}')"

kill -CONT "$stale_pid"
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_a" --devices 5 --count 20 --rate 20 \
  --device-prefix stale- --client-id firmware-sim-c --qos 1 --seed 13 --outbox \
  --manifest "$work/manifest-stale.txt" >"$work/sim-stale.out" 2>"$work/sim-stale.log" ||
  gw_die "the frozen gateway's devices were not acknowledged after it continued (see $work/sim-stale.log)"
s=$(gw_wait_status "http://127.0.0.1:$http_a" '.uplink.kafka.fenced == true' 30) ||
  gw_die "the gateway whose transactional.id was taken over is not fenced (see $a/gateway.log)"
why=$(jq -r '.uplink.kafka.last_error' <<<"$s")
gw_log "the frozen gateway, continued: fenced=true state=$(jq -r '.uplink.kafka.state' <<<"$s") last_error='$why'"
[[ $why == *"transactional.id edge-gateway.e2e-uplink.telemetry"* ]] || gw_die "/status does not say why it was fenced: '$why'"

# The verdict, from a read_committed consumer of its own.
cat "$work/manifest-a.txt" "$work/manifest-b.txt" >"$work/manifest.txt"
gw_kafka_verify "$work/manifest.txt" telemetry --isolation read_committed | tee "$work/verify.out" ||
  gw_die "the read_committed view is not exactly once (see $work/verify.out)"
stale=$(gw_kafka_verify "$work/manifest-stale.txt" telemetry --isolation read_committed || true)
gw_log "what the fenced gateway stored after the takeover: $stale"
stale_readings=$(gw_manifest_readings "$work/manifest-stale.txt")
((stale_readings > 0)) || gw_die "the frozen gateway's devices sent nothing"
[[ $stale == *" lost=$stale_readings "* ]] || gw_die "readings the fenced gateway stored reached the topic"
# Proof that the kills hit open transactions: their batches, aborted, are in the log as copies.
uncommitted=$(gw_kafka_verify "$work/manifest.txt" telemetry --isolation read_uncommitted || true)
gw_log "the same topic read_uncommitted (aborted transactions included): $uncommitted"
[[ $uncommitted =~ \ duplicates=([0-9]+)\  ]] && ((BASH_REMATCH[1] > 0)) ||
  gw_die "no aborted transaction held records: the kills did not test what they should"
gw_log "PASS"
