#!/usr/bin/env bash
# End-to-end: every Kafka broker down for OUTAGE seconds while devices publish. The gateway keeps
# collecting (the buffer grows, /status says the uplink is down and why); when the brokers return it
# drains the backlog in order. The verifier (consuming during the run) must report lost=0 and no
# device's records out of order. Ingest mode plugin (the shipped box).
# GW_KAFKA=real: a real Apache Kafka (one KRaft node, tests/support/kafka.sh), SIGKILLed for the
# outage and started again; otherwise kafka-mock, told to go down and up.
#   tests/e2e/outage.sh BUILD_DIR SOURCE_DIR [OUTAGE_S]
set -euo pipefail
build=$1 src=$2 outage=${3:-60}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-outage.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

http_port=$(gw_free_port)
if [[ ${GW_KAFKA:-mock} == real ]]; then
  source "$src/tests/support/kafka.sh"
  mqtt_port=$(gw_free_port)
  gw_kafka_start "$work/kafka" 1
  gw_kafka_create_topic telemetry >/dev/null
  gw_kafka_create_topic telemetry-aggregates >/dev/null
  bootstrap=$KAFKA_BOOTSTRAP
  brokers_down() { gw_kafka_kill 1; }
  brokers_up() { gw_kafka_start_node 1; }
else
  gw_start_brokers_for plugin "$build" "$src" "$work"
  brokers_down() { echo down >&7; }
  brokers_up() { echo up >&7; }
fi
gw_uplink_config "$work/gateway.toml" "$work" "$mqtt_port" "$http_port" "$bootstrap" plugin
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_box_ready plugin "$build" "$src" "$work" "$http_port"

"$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --kafka "$bootstrap" --topic telemetry \
  --done-file "$work/done" --idle-exit-ms 2000 --check-order >"$work/verify.out" 2>"$work/verify.log" &
verify_pid=$!
gw_track $verify_pid
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 20 --rate 20 \
  --duration $((outage + 20)) --qos 1 --seed 5 --manifest "$work/manifest.txt" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
gw_track $sim_pid

sleep 8
brokers_down
gw_log "brokers down for $outage s"
sleep 10
status=$(gw_http "http://127.0.0.1:$http_port/status")
before=$(jq -r '.buffer.last_seq' <<<"$status")
sleep $((outage - 10))
status=$(gw_http "http://127.0.0.1:$http_port/status")
state=$(jq -r '.uplink.kafka.state' <<<"$status")
error=$(jq -r '.uplink.kafka.last_error' <<<"$status")
during=$(jq -r '.buffer.last_seq' <<<"$status")
gw_log "during the outage: state=$state stored $before -> $during, last_error=$error"
[[ $state == down ]] || gw_die "uplink state during the outage: $state"
[[ -n $error ]] || gw_die "no last_error in /status during the outage"
((during > before)) || gw_die "the gateway stopped collecting during the outage"
brokers_up
gw_log "brokers up"
wait "$sim_pid" || gw_die "firmware-sim failed (see $work/sim.log)"
cat "$work/sim.out"
status=$(gw_wait_caught_up "$http_port" 120) || gw_die "uplink did not drain (see $work/gateway.log)"
gw_log "uplink: $(jq -c '.uplink.kafka | {state, last_acked_seq, read_backs, records_found_upstream, delivery_errors}' <<<"$status")"
gw_finish_verify "$work" "$verify_pid" '^delivered=[0-9]* lost=0 duplicates=[0-9]* redelivered=[0-9]* order_violations=0 '
echo "e2e.outage: outage_s=$outage OK"
