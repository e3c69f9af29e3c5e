#!/usr/bin/env bash
# End-to-end against a real Apache Pulsar (standalone, tests/support/pulsar.sh): KILLS SIGKILLs of
# the gateway while devices publish (two of them while the broker is frozen, so that batches are
# certainly stored and unanswered), and one SIGKILL of the broker (restarted on its data) half way.
# The gateway sends to Pulsar only, through the WebSocket API; after each restart and each lost
# connection its sink reads the topic's end back and sends only what the topic lacks. Then two
# readers, neither deduplicating: Pulsar's own Python client (tests/support/pulsar_verify.py, binary
# protocol) must find every acknowledged reading once and no gateway seq twice (lost=0
# duplicates=0), and firmware-sim verify --pulsar (WebSocket consumer API) must remove no copies
# (duplicates_removed=0). The aggregates (closed 1 s windows) go to their own topic through the
# second Pulsar sink: each aggregate record once.
#   tests/e2e/pulsar_kill.sh BUILD_DIR SOURCE_DIR [KILLS]
set -euo pipefail
build=$1 src=$2 kills=${3:-20}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
source "$src/tests/support/pulsar.sh"
work=$(mktemp -d /tmp/gw-e2e-pulsar-kill.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

gw_pulsar_start "$work/pulsar"
gw_log "Pulsar standalone ready in ${PULSAR_START_SECONDS}s at $PULSAR_WS_URL (RSS $(ps -o rss= -p "$GW_PULSAR_PID") KiB)"
http_port=$(gw_free_port) mqtt_port=$(gw_free_port)
gw_start_mosquitto "$work/mosquitto" "$mqtt_port" "$src/gateway/mosquitto.conf"
cat >"$work/gateway.toml" <<CONF
gateway_id = "e2e-pulsar-kill"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
topics = ["devices/+/telemetry"]
client_id = "e2e-pulsar-kill-gateway"
[buffer]
path = "$work/buffer"
durability = "os"
[windowing]
size = "1s"
[uplink.pulsar]
service_url = "$PULSAR_WS_URL"
topic = "telemetry"
batch_max_records = 20
linger = "20ms"
send_timeout = "5s"
connect_timeout = "5s"
retry_backoff = "100ms"
retry_backoff_max = "1s"
[http]
listen = "127.0.0.1:$http_port"
CONF

gw_start_gateway "$build" "$work"
gw_wait_gateway_ready "$http_port" "$work/gateway.log"
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 20 --rate 50 --duration 40 \
  --qos 1 --seed 5 --manifest "$work/manifest.txt" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
gw_track $sim_pid

for ((k = 1; k <= kills; k++)); do
  sleep "$(printf '1.%03d' $((RANDOM % 1000)))"
  if ((k == kills / 2)); then
    # The broker dies with batches in flight; the gateway keeps storing and resumes once it is back.
    gw_pulsar_kill
    sleep "$(printf '0.%03d' $((RANDOM % 1000)))"
    gw_pulsar_restart
    gw_log "Pulsar killed and back"
  fi
  if ((k == kills / 4 || k == 3 * kills / 4)); then
    # Batches certainly stored and unanswered at the kill: the broker frozen for a moment (the
    # gateway's batches wait in its socket), the gateway killed, then the broker goes on: it reads
    # and stores them, and the restarted gateway's read-back must find them (found_upstream below).
    kill -STOP "$GW_PULSAR_PID"
    sleep 0.5
    kill -KILL "$gateway_pid"
    wait "$gateway_pid" 2>/dev/null || true
    kill -CONT "$GW_PULSAR_PID"
    gw_start_gateway "$build" "$work"
    continue
  fi
  kill -KILL "$gateway_pid"
  wait "$gateway_pid" 2>/dev/null || true
  gw_start_gateway "$build" "$work"
done
gw_log "$kills SIGKILLs of the gateway done, and one of Pulsar"
wait "$sim_pid" || gw_die "firmware-sim failed (see $work/sim.log)"
cat "$work/sim.out"
gw_wait_http "http://127.0.0.1:$http_port/healthz" 20 || gw_die "gateway not healthy after the kills"
gw_wait_subscribed "http://127.0.0.1:$http_port" 60 || gw_die "ingest did not subscribe again (see $work/gateway.log)"
gw_publish_markers "$mqtt_port" "$work/manifest.txt" "$work" || gw_die "mosquitto_pub failed"
gw_wait_markers "http://127.0.0.1:$http_port" "$work" 120 ||
  gw_die "not everything the broker acknowledged was stored (see $work/gateway.log)"
status=$(gw_wait_caught_up "$http_port" 120 pulsar) || gw_die "uplink did not catch up (see $work/gateway.log)"
gw_log "uplink: $(jq -c '.uplink.pulsar | {last_acked_seq, read_backs, records_found_upstream, batches_resent, delivery_errors, connects}' <<<"$status")"

gw_pulsar_verify "$work/manifest.txt" persistent://public/default/telemetry | tee "$work/pulsar-verify.out" ||
  gw_die "pulsar_verify failed"
# The closed windows, by the second Pulsar sink (its own cursor, producer and read-back): each
# aggregate record once.
status=$(gw_wait_caught_up "$http_port" 30 pulsar_aggregates) ||
  gw_die "the aggregates sink did not catch up (see $work/gateway.log)"
gw_pulsar_verify "" persistent://public/default/telemetry-aggregates --record-type aggregate |
  tee "$work/pulsar-verify-aggregates.out" || gw_die "pulsar_verify (aggregates) failed"
aggregates=$(sed -n 's/.*records=\([0-9]*\).*/\1/p' "$work/pulsar-verify-aggregates.out")
((aggregates > 100)) || gw_die "too few aggregate records on the topic ($aggregates)"
"$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --pulsar "$PULSAR_WS_URL" \
  --topic telemetry --idle-exit-ms 2000 | tee "$work/verify.out"
grep -q ' lost=0 duplicates=0 ' "$work/verify.out" || gw_die "firmware-sim verify: $(head -1 "$work/verify.out")"
removed=$(sed -n 's/.*duplicates_removed=\([0-9]*\).*/\1/p' "$work/verify.out")
((removed == 0)) || gw_die "the topic holds copies: firmware-sim verify removed $removed"
resumes=$(grep -c 'resuming after seq' "$work/gateway.log" || true)
((resumes >= kills)) || gw_die "expected at least $kills read-backs of the topic, saw $resumes"
# Batches stored and unanswered when the gateway died, found by a read-back and not sent again.
# At least the two kills with the broker frozen left some (16 batches in flight each, typically).
found=$(grep -c 'the topic already holds seq' "$work/gateway.log" || true)
((found >= 2)) || gw_die "read-backs found unanswered batches of a killed gateway only $found times (the frozen-broker kills alone should give 2)"
echo "e2e.pulsar_kill: kills=$kills broker_kills=1 resumes=$resumes found_upstream=$found aggregates=$aggregates $(head -1 "$work/pulsar-verify.out") OK"
