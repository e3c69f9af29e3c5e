#!/usr/bin/env bash
# End-to-end, ingest mode plugin: mosquitto runs the gateway's plugin, so a device's QoS 1 PUBACK
# follows the gateway's commit. Devices publish while faults hit the box, KILLS of them at random
# intervals, in the buffer durability DURABILITY. TARGET says which:
#   broker:  mosquitto SIGKILLed, restarted 0.5 s later (every device reconnects at once);
#   gateway: edge-gateway SIGKILLed, restarted at once;
#   mixed:   in turn, the gateway SIGKILLed; the gateway stopped (SIGTERM, a restart or an upgrade)
#            and mosquitto SIGKILLed 0.1-0.4 s later, before any autosave, both back 0.5 s and
#            1-2 s later; mosquitto SIGKILLed.
# Whatever mosquitto held in memory is lost with it, but none of it had been acknowledged; a gateway
# that is killed or stopped answers nothing, so the plugin withholds the PUBACK: the verifier must
# report every published (device, seq) upstream exactly once (lost=0 duplicates=0 redelivered=0).
# The devices behave like a device SDK (firmware-sim --outbox: what got no PUBACK is sent again
# after their reconnect), so the manifest lists every reading they published. DEVICES (default 50,
# on one shared connection) publish RATE (default 20) events per second each for 30 s; SIM_FLAGS adds
# firmware-sim flags (e.g. --client-per-device, --mqtt-version 5, --qos 2, --boot-id, --malformed P:
# poison payloads, which must be dead-lettered and acknowledged without holding their device up).
# MODE subscribe runs the same with the gateway subscribing instead (no plugin): there mosquitto
# acknowledges from memory and loses what it held, which the verifier reports (for the figures in
# ingest/README.md; not part of the suite).
#   tests/e2e/plugin_kill.sh BUILD_DIR SOURCE_DIR [KILLS [DURABILITY [MODE [TARGET]]]]
set -euo pipefail
build=$1 src=$2 kills=${3:-5} durability=${4:-os} mode=${5:-plugin} target=${6:-broker}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-plugin.XXXXXX)
trap 'gw_stop_all; exec 7>&- 2>/dev/null || true; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

http_port=$(gw_free_port)
mqtt_port=$(gw_free_port)
gw_start_kafka_mock "$build/uplink/kafka-mock" "$work" telemetry >"$work/bootstrap"
bootstrap=$(cat "$work/bootstrap")
gw_uplink_config "$work/gateway.toml" "$work" "$mqtt_port" "$http_port" "$bootstrap" "$mode"
sed -i "s/^durability = \"os\"\$/durability = \"$durability\"/" "$work/gateway.toml"

start_gateway() {
  "$build/gateway/edge-gateway" --config "$work/gateway.toml" >>"$work/gateway.log" 2>&1 &
  gateway_pid=$!
  gw_track $gateway_pid
}
start_gateway
gw_wait_http "http://127.0.0.1:$http_port/healthz" 20 || gw_die "gateway not healthy (see $work/gateway.log)"

start_broker() { gw_start_box_broker "$build" "$src" "$work/mosquitto" "$mqtt_port" "$work/gateway.toml"; }
start_broker
[[ $mode == plugin ]] || gw_wait_subscribed "http://127.0.0.1:$http_port" 30 || gw_die "no subscription"

gw_start_verifier "$build" "$work" "$bootstrap"
devices=${DEVICES:-50} rate=${RATE:-20}
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices "$devices" --rate "$rate" --duration 30 \
  --qos 1 --seed 5 --outbox ${SIM_FLAGS:-} --manifest "$work/manifest.txt" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
gw_track $sim_pid

kill_gateway() {
  kill -KILL "$gateway_pid"
  wait "$gateway_pid" 2>/dev/null || true
}
kill_broker() {
  kill -KILL "$broker_pid"
  wait "$broker_pid" 2>/dev/null || true
}
for ((k = 1; k <= kills; k++)); do
  sleep "$(printf '3.%03d' $((RANDOM % 1000)))"
  fault=$target
  [[ $target == mixed ]] && fault=$(((k - 1) % 3))
  case $fault in
    gateway | 0)
      kill_gateway
      start_gateway ;;
    1)
      kill -TERM "$gateway_pid"
      wait "$gateway_pid" 2>/dev/null || true
      sleep "$(printf '0.%d' $((1 + RANDOM % 4)))"
      kill_broker
      gw_log "gateway stopped, mosquitto killed"
      sleep 0.5
      start_broker
      sleep "$(printf '1.%03d' $((RANDOM % 1000)))"
      start_gateway ;;
    broker | 2)
      kill_broker
      sleep 0.5
      start_broker ;;
  esac
done
gw_log "$kills faults ($target) done"
gw_wait_http "http://127.0.0.1:$http_port/healthz" 20 || gw_die "gateway not healthy after the kills"
gw_outbox_drained "$work" "$sim_pid"
published=$acked
expected=$(awk -v d="$devices" -v r="$rate" 'BEGIN { printf "%d", d * r * 30 + 0.5 }')
((published == expected)) || gw_die "$published readings published, $expected expected"
resent=$(sed -n 's/.* resent=\([0-9]*\) .*/\1/p' "$work/sim.out")
# Each fault must have cut the devices off (how many readings it caught in flight depends on the
# box's speed; a fast one may catch none).
losses=$(grep -c 'connection(s) lost' "$work/sim.out" || true)
((losses >= kills)) || gw_die "the devices noticed $losses connection losses in $kills faults: the faults did not bite"
# Acknowledged means stored (plugin): nothing to wait for but the uplink. Subscribe: the last broker
# may still hold a backlog for the gateway's session; markers behind it show when it is all stored.
if [[ $mode == subscribe ]]; then
  gw_publish_markers "$mqtt_port" "$work/manifest.txt" "$work" || gw_die "mosquitto_pub failed"
  gw_wait_markers "http://127.0.0.1:$http_port" "$work" 600 || gw_die "the backlog was not stored in time"
fi
gw_caught_up_and_verify "$http_port" "$work" "$verify_pid"
gw_log "ingest: $(jq -c '.ingest | {messages_received, events_stored, duplicates, store_retries, decode_errors, rejected_by_reason}' <<<"$status")"
grep -q "^verify: .* lost=0 duplicates=0 .* resent=$resent\$" "$work/verify.out" || gw_die "verify did not count the $resent resent readings"
malformed=$(sed -n 's/.* malformed=\([0-9]*\) .*/\1/p' "$work/sim.out")
if ((malformed > 0)); then
  # Each poison payload the box acknowledged is a dead letter; those sent while the box refused
  # were dropped with their connection (the outbox keeps readings only).
  dead=$(gw_http "http://127.0.0.1:$http_port/dlq?reason=malformed&limit=1000" | jq length)
  ((dead > 0 && dead <= malformed)) || gw_die "malformed: $malformed sent, $dead dead-lettered"
  gw_log "poison payloads: $malformed sent, $dead dead-lettered and acknowledged"
fi
echo "plugin_kill: mode=$mode target=$target durability=$durability kills=$kills devices=$devices published=$published resent=$resent OK"
