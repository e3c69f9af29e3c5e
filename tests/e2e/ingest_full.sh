#!/usr/bin/env bash
# End-to-end: the buffer fills up under overflow = block (a 1 MiB buffer, Kafka down). Ingest must
# stop acknowledging (events_stored stalls while the devices keep publishing and the broker queues
# for the gateway's session), say so in /status, and resume without loss once Kafka is back and the
# uplink's acknowledgements free room: every acknowledged (device, seq) exactly once in Kafka.
# MODE plugin: mosquitto runs the gateway's plugin; while the buffer is full the gateway refuses
# (after the plugin's wait, devices get no PUBACK and are disconnected, nothing queues in the
# broker), and acknowledgements resume once Kafka is back.
#   tests/e2e/ingest_full.sh BUILD_DIR SOURCE_DIR [MODE]
set -euo pipefail
build=$1 src=$2 mode=${3:-subscribe}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-full.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

http_port=$(gw_free_port)
gw_start_brokers_for "$mode" "$build" "$src" "$work"
gw_uplink_config "$work/gateway.toml" "$work" "$mqtt_port" "$http_port" "$bootstrap" "$mode"
sed -i 's/^durability = "os"$/durability = "os"\nmax_bytes = "1MiB"\noverflow = "block"/' "$work/gateway.toml"
# The windowing results live in the same 1 MiB: keep a few hundred.
sed -i 's/^\[windowing\]$/[windowing]\nmax_results = 400/' "$work/gateway.toml"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_box_ready "$mode" "$build" "$src" "$work" "$http_port"

gw_start_verifier "$build" "$work" "$bootstrap"

echo down >&7
gw_log "kafka down"
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 20 --rate 50 --duration 30 \
  --qos 1 --seed 9 --manifest "$work/manifest.txt" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
gw_track $sim_pid

# Wait for the buffer to be full and an append to wait for room.
status=
for ((i = 0; i < 400; i++)); do
  status=$(gw_http "http://127.0.0.1:$http_port/status" || true)
  [[ $(jq -r '.buffer.blocked_appends // 0' <<<"$status") -gt 0 ]] && break
  sleep 0.1
done
[[ $(jq -r '.buffer.full' <<<"$status") == true ]] || gw_die "the buffer never got full: $(jq -c .buffer <<<"$status")"
stored1=$(jq -r '.ingest.events_stored' <<<"$status")
published1=$(wc -l <"$work/manifest.txt" || echo 0)
sleep 3
status=$(gw_http "http://127.0.0.1:$http_port/status")
stored2=$(jq -r '.ingest.events_stored' <<<"$status")
gw_log "full: buffer $(jq -c '.buffer | {records, bytes, max_bytes, full, blocked_appends}' <<<"$status"); stored $stored1 -> $stored2 in 3 s"
# Devices send 1000 events/s; while blocked, ingest may only take what consumers free (the windowing
# stage's state shrinking as windows close): a few dozen events, not thousands.
((stored2 - stored1 <= 150)) || gw_die "ingest kept storing while the buffer was full ($stored1 -> $stored2)"
[[ $(jq -r '.ingest.store_retries + .buffer.blocked_appends' <<<"$status") -gt 0 ]] || gw_die "/status does not show the block"

echo up >&7
gw_log "kafka up"
gw_drain_and_verify "$http_port" "$work" "$sim_pid" "$published1" "$verify_pid"
gw_log "after: $(jq -c '{stored: .ingest.events_stored, blocked_total: .buffer.blocked_total, full: .buffer.full}' <<<"$status")"
[[ $(jq -r '.buffer.blocked_total' <<<"$status") -ge 1 ]] || gw_die "blocked_total should count the episode"
echo "e2e.ingest_full: OK"
