#!/usr/bin/env bash
# End-to-end: 20 SIGKILLs of the gateway while devices publish. kafka-mock runs in its own process,
# so the broker keeps what the gateway delivered; after each restart the uplink reads its
# partition's tail back and resumes after it, and ingest's persistent sessions get the broker's
# redeliveries, which the buffer's dedup drops if they were stored before the kill. The verifier
# consumes the topic during the run and must report lost=0 and duplicates=0 (every acknowledged
# (device, seq) exactly once, and no (gateway, seq) twice).
#   tests/e2e/kill.sh BUILD_DIR SOURCE_DIR [KILLS [SESSIONS [FIRMWARE-SIM FLAGS...]]]
# SESSIONS > 1 runs ingest as that many worker processes ([mqtt] sessions); then every third kill
# hits a worker instead of the gateway. Extra flags go to firmware-sim (e.g. --duplicates 0.05).
# GW_KAFKA=real runs it against a real Apache Kafka (one KRaft node, tests/support/kafka.sh), which
# is also SIGKILLed and restarted twice during the run (after a third and two thirds of the kills);
# the independent verifier (tests/support/kafka_verify.py) then reads the whole topic as well.
set -euo pipefail
build=$1 src=$2 kills=${3:-20} sessions=${4:-1}
shift $(($# < 4 ? $# : 4))
sim_flags=("$@")
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-kill.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

http_port=$(gw_free_port)
real=0
if [[ ${GW_KAFKA:-mock} == real ]]; then
  real=1
  source "$src/tests/support/kafka.sh"
  mqtt_port=$(gw_free_port)
  gw_start_mosquitto "$work/mosquitto" "$mqtt_port" "$src/gateway/mosquitto.conf"
  gw_kafka_start "$work/kafka" 1
  bootstrap=$KAFKA_BOOTSTRAP
  gw_kafka_create_topic telemetry >/dev/null
else
  gw_start_brokers "$build" "$src" "$work"
fi
gw_uplink_config "$work/gateway.toml" "$work" "$mqtt_port" "$http_port" "$bootstrap"
sed -i "s/^\[mqtt\]\$/[mqtt]\nsessions = $sessions/" "$work/gateway.toml"


# The verifier consumes while the run goes (a mock partition keeps only about 5 MB).
"$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --kafka "$bootstrap" --topic telemetry \
  --done-file "$work/done" --idle-exit-ms 2000 >"$work/verify.out" 2>"$work/verify.log" &
verify_pid=$!
gw_track $verify_pid

gw_start_gateway "$build" "$work"
gw_wait_gateway_ready "$http_port" "$work/gateway.log"
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 20 --rate 25 --duration 45 \
  --qos 1 --seed 3 --manifest "$work/manifest.txt" "${sim_flags[@]}" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
gw_track $sim_pid

worker_kills=0 broker_kills=0
for ((k = 1; k <= kills; k++)); do
  sleep "$(printf '1.%03d' $((RANDOM % 1000)))"
  if ((real && (k == kills / 3 || k == 2 * kills / 3))); then
    # The broker dies with batches in flight; the gateway keeps storing, and resumes once it is back.
    gw_kafka_kill 1
    broker_kills=$((broker_kills + 1))
    sleep "$(printf '0.%03d' $((RANDOM % 1000)))"
    gw_kafka_start_node 1
    gw_kafka_wait_ready 60 || gw_die "Kafka did not come back (see $work/kafka/node1/server.log)"
  fi
  if ((sessions > 1 && k % 3 == 0)); then
    # A worker dies alone: the gateway restarts it; the broker redelivers what it had not acked.
    worker=$(pgrep -P "$gateway_pid" | shuf -n 1 || true)
    if [[ -n $worker ]]; then
      kill -KILL "$worker"
      worker_kills=$((worker_kills + 1))
      continue
    fi
  fi
  kill -KILL "$gateway_pid"
  wait "$gateway_pid" 2>/dev/null || true
  gw_start_gateway "$build" "$work"
done
gw_log "$kills SIGKILLs done ($worker_kills of them ingest workers), and $broker_kills of the Kafka broker"
wait "$sim_pid" || gw_die "firmware-sim failed (see $work/sim.log)"
cat "$work/sim.out"
gw_wait_http "http://127.0.0.1:$http_port/healthz" 20 || gw_die "gateway not healthy after the kills"
# Everything the broker acknowledged stored before the uplink's position is looked at: a gateway (or
# worker) restarted by the last kills may not have received the broker's backlog yet.
gw_wait_subscribed "http://127.0.0.1:$http_port" 60 || gw_die "ingest did not subscribe again (see $work/gateway.log)"
gw_publish_markers "$mqtt_port" "$work/manifest.txt" "$work" "$sessions" || gw_die "mosquitto_pub failed"
gw_wait_markers "http://127.0.0.1:$http_port" "$work" 120 ||
  gw_die "not everything the broker acknowledged was stored (see $work/gateway.log)"
status=$(gw_wait_caught_up "$http_port" 120) || gw_die "uplink did not catch up (see $work/gateway.log)"
gw_log "uplink: $(jq -c '.uplink.kafka | {last_acked_seq, read_backs, records_found_upstream, delivery_errors}' <<<"$status")"
gw_log "buffer: $(jq -c '.buffer | {duplicates_total, duplicates_conflicting_total, stale_sequence_total, reboots_total, seq_gaps_total, seq_late_total, dedup_unknown_total, dedup_sources}' <<<"$status")"
gw_finish_verify "$work" "$verify_pid" '^delivered=[0-9]* lost=0 duplicates=0 redelivered=0 '
if ((real)); then
  gw_kafka_verify "$work/manifest.txt" telemetry | tee "$work/kafka-verify.out" || gw_die "kafka_verify failed"
fi
restarts=$(grep -c 'resuming after seq' "$work/gateway.log" || true)
((restarts >= kills - worker_kills)) || gw_die "expected $((kills - worker_kills)) resumes from the broker's tail, saw $restarts"
echo "e2e.kill: kills=$kills worker_kills=$worker_kills broker_kills=$broker_kills sessions=$sessions resumes=$restarts OK"
