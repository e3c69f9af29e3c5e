#!/usr/bin/env bash
# End-to-end against a real 3-node Apache Kafka cluster (KRaft, every node broker and controller,
# replication factor 3, min.insync.replicas 2; tests/support/kafka.sh), the box in ingest mode
# plugin, 20 devices with an outbox publishing QoS 1 throughout:
#   1. the partition leader is SIGKILLed: a new leader takes over and the uplink goes on;
#   2. a second node is SIGKILLed while the first is down: acks=all cannot be met (one node of
#      three, and the controller quorum lost with it). The gateway keeps storing what devices send,
#      acknowledges nothing upstream, and /status and /readyz say why;
#   3. the first node returns: the uplink resumes; then the second returns.
# Then every reading the devices published must be on the topic exactly once, in order: firmware-sim
# verify and the independent verifier (tests/support/kafka_verify.py).
#   tests/e2e/kafka_cluster.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
source "$src/tests/support/kafka.sh"
work=$(mktemp -d /tmp/gw-e2e-kcluster.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

gw_kafka_start "$work/kafka" 3
gw_kafka_create_topic telemetry >/dev/null
mqtt_port=$(gw_free_port) http_port=$(gw_free_port)
gw_uplink_config "$work/gateway.toml" "$work" "$mqtt_port" "$http_port" "$KAFKA_BOOTSTRAP" plugin
echo 'ready_uplink_down = "5s"' >>"$work/gateway.toml"  # the last table is [http]
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_box_ready plugin "$build" "$src" "$work" "$http_port"

"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 20 --rate 20 --duration 45 \
  --qos 1 --seed 5 --outbox --manifest "$work/manifest.txt" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
gw_track $sim_pid

status() { gw_http "http://127.0.0.1:$http_port/status"; }
acked_seq() { status | jq -r '.uplink.kafka.last_acked_seq'; }
stored_seq() { status | jq -r '.buffer.last_seq'; }
leader() { timeout 10 kcat -L -J -b "$1" -t telemetry 2>/dev/null | jq -r '.topics[0].partitions[0].leader // -1'; }
# advances SEQ SECONDS: until the uplink has acknowledged beyond SEQ.
advances() { gw_wait_status "http://127.0.0.1:$http_port" ".uplink.kafka.last_acked_seq > $1" "$2" >/dev/null; }

sleep 6
first=$(leader "$KAFKA_BOOTSTRAP")
((first >= 1 && first <= 3)) || gw_die "no leader of telemetry/0 in the metadata ($first)"
before=$(acked_seq)
gw_kafka_kill "$first"
gw_log "leader node $first SIGKILLed at uplink seq $before"
advances "$((before + 200))" 30 || gw_die "the uplink did not go on after the leader was lost (see $work/gateway.log)"
# The second node to go is the new leader's follower: the leader stays, alone, and acks=all
# (min.insync.replicas 2) cannot be met.
left=-1
for ((i = 0; i < $(gw_scaled 20) && left == -1; i++)); do
  for n in 1 2 3; do ((n != first)) && left=$(leader "127.0.0.1:${GW_KAFKA_PORTS[n]}") && break; done
  ((left == first)) && left=-1
  ((left == -1)) && sleep 1
done
((left >= 1 && left <= 3 && left != first)) || gw_die "no new leader of telemetry/0 after node $first was lost"
second=$((6 - first - left))
gw_log "new leader $left, uplink at seq $(acked_seq)"
gw_kafka_kill "$second"
gw_log "node $second SIGKILLed too: only node $left, the leader, is up"
stalled=0 s=""
for ((i = 0; i < $(gw_scaled 60); i++)); do
  sleep 1
  s=$(status)
  # Stalled: nothing acknowledged upstream for 5 s in a row while ingest keeps storing.
  if [[ $(jq -r '.uplink.kafka.last_acked_seq' <<<"$s") == "${last_acked:-}" ]]; then stalled=$((stalled + 1)); else stalled=0; fi
  last_acked=$(jq -r '.uplink.kafka.last_acked_seq' <<<"$s")
  ((stalled >= 5)) && [[ $(jq -r '.uplink.kafka.state' <<<"$s") != up ]] && break
done
((stalled >= 5)) || gw_die "the uplink kept acknowledging with one node of three up"
# /status says why: no acknowledgement for message_timeout, and a read of the partition that works
# shows its leader up (kafka_sink.cc watch_stall()); /readyz, after ready_uplink_down, names the
# uplink and the same reason.
for ((i = 0; i < $(gw_scaled 30); i++)); do
  s=$(status)
  why=$(jq -r '.uplink.kafka.last_delivery_error' <<<"$s")
  reasons=$(curl -sS --max-time 5 "http://127.0.0.1:$http_port/readyz" 2>/dev/null || true)  # 503: no -f
  [[ $why == *in-sync* && $reasons == *uplink*in-sync* ]] && break
  sleep 1
done
state=$(jq -r '.uplink.kafka.state' <<<"$s")
gw_log "one node up: uplink state=$state last_delivery_error='$why' acked=$last_acked stored=$(jq -r '.buffer.last_seq' <<<"$s")"
gw_log "/readyz: $reasons"
[[ $why == *in-sync* ]] || gw_die "/status does not say why the uplink stalled: last_delivery_error='$why'"
[[ $reasons == *uplink*in-sync* ]] || gw_die "/readyz does not name the uplink and why: $reasons"
stored=$(stored_seq)
sleep 2
(($(stored_seq) > stored)) || gw_die "the gateway stopped storing while Kafka could not take its batches"

# The first node returns: two in sync again, the uplink resumes; then the second returns.
gw_kafka_start_node "$first"
advances "$last_acked" 90 || gw_die "the uplink did not resume once node $first returned (see $work/gateway.log)"
gw_log "node $first back: uplink resumed at seq $(acked_seq)"
gw_kafka_start_node "$second"
gw_kafka_wait_ready 90 || gw_die "the cluster did not come back whole"

gw_outbox_drained "$work" "$sim_pid"
gw_start_verifier "$build" "$work" "$KAFKA_BOOTSTRAP"
gw_caught_up_and_verify "$http_port" "$work" "$verify_pid"
gw_kafka_verify "$work/manifest.txt" telemetry | tee "$work/kafka-verify.out" || gw_die "kafka_verify failed"
gw_log "uplink: $(jq -c '.uplink.kafka | {last_acked_seq, read_backs, delivery_errors, batches_resent}' <<<"$status")"
echo "e2e.kafka_cluster: leader $first lost, then node $second (acks=all unmet: $why); readings=$acked OK"
