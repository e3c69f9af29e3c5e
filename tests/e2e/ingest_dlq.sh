#!/usr/bin/env bash
# End-to-end: bad payloads sent with mosquitto_pub while devices publish valid telemetry. Each bad
# payload must land in the dead letters with the right reason (GET /dlq), the counters per reason
# must match (/status), and the valid traffic must arrive complete (firmware-sim verify --kafka).
# Ingest runs as 2 worker processes, so rejects also cross the IPC path.
#   tests/e2e/ingest_dlq.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-dlq.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

http_port=$(gw_free_port)
gw_start_brokers "$build" "$src" "$work"
gw_uplink_config "$work/gateway.toml" "$work" "$mqtt_port" "$http_port" "$bootstrap"
sed -i 's/^\[mqtt\]$/[mqtt]\nsessions = 2/; s/^\[ingest\]$/[ingest]\nmax_payload_bytes = "4KiB"\nmax_skew = "1h"/' \
  "$work/gateway.toml"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_gateway_ready "$http_port" "$work/gateway.log"

"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 10 --rate 20 --duration 15 \
  --qos 1 --seed 5 --format mixed --manifest "$work/manifest.txt" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
gw_track $sim_pid

# The bad payloads. A valid FlatBuffer built with flatc from the schema, then spoiled.
now_ms=$(($(date +%s) * 1000))
mk_fb() {  # mk_fb NAME JSON: NAME.bin, a Telemetry FlatBuffer with the file identifier
  printf '%s' "$2" >"$work/$1.json"
  flatc -b -o "$work" "$src/ingest/telemetry.fbs" "$work/$1.json"
}
mk_fb good "{\"schema_version\": 2, \"device_id\": \"x\", \"seq\": 1, \"time_ms\": $now_ms, \"metrics\": [{\"name\": \"t\", \"value\": 1.5}]}"
mk_fb nan "{\"schema_version\": 2, \"device_id\": \"x\", \"seq\": 2, \"time_ms\": $now_ms, \"metrics\": [{\"name\": \"t\", \"value\": nan}]}"
head -c 20 "$work/good.bin" >"$work/truncated.bin"
{ printf '\377'; head -c 199 /dev/urandom; } >"$work/random.bin"
head -c 5000 /dev/zero | tr '\0' 'x' >"$work/oversize.bin"
printf '{"device":"d","seq":"1","time_ms":%s,"metrics":{"t":1}}' "$now_ms" >"$work/wrong_types.json"
printf '{"device":"d","time_ms":%s,"metrics":{"t":1}}' "$now_ms" >"$work/no_seq.json"
printf '{"device":"d","seq":7,"time_ms":5,"metrics":{"t":1}}' >"$work/ancient.json"

declare -A expect=([malformed]=0 [bad_value]=0 [oversize]=0 [missing_field]=0 [bad_timestamp]=0)
send() {  # send REASON FILE|-n
  local reason=$1 i
  for i in 1 2 3; do
    if [[ $2 == -n ]]; then
      mosquitto_pub -p "$mqtt_port" -q 1 -t "devices/bad-$reason/telemetry" -n
    else
      mosquitto_pub -p "$mqtt_port" -q 1 -t "devices/bad-$reason/telemetry" -f "$2"
    fi
    expect[$reason]=$((expect[$reason] + 1))
  done
}
sleep 2
send malformed "$work/random.bin"
send malformed "$work/truncated.bin"
send malformed "$work/wrong_types.json"
send malformed -n
send bad_value "$work/nan.bin"
send oversize "$work/oversize.bin"
send missing_field "$work/no_seq.json"
send bad_timestamp "$work/ancient.json"
gw_log "sent the bad payloads: $(for r in "${!expect[@]}"; do printf '%s=%s ' "$r" "${expect[$r]}"; done)"

wait "$sim_pid" || gw_die "firmware-sim failed (see $work/sim.log)"
cat "$work/sim.out"
status=$(gw_wait_caught_up "$http_port" 60) || gw_die "uplink did not catch up"
# The workers' counters reach /status in a later snapshot: wait (bounded) until /status counts every
# bad payload (ingest and the dead-letter store), instead of a fixed time; exactness is checked below.
all_in() {
  local reason
  status=$(gw_http "http://127.0.0.1:$http_port/status") || return 1
  for reason in "${!expect[@]}"; do
    jq -e --arg r "$reason" --argjson n "${expect[$reason]}" \
      '(.ingest.rejected_by_reason[$r] // 0) >= $n and (.dead_letters.by_reason[$r] // 0) >= $n' <<<"$status" >/dev/null ||
      return 1
  done
}
for ((i = 0; i < $(gw_scaled 100); i++)); do
  all_in && break
  sleep 0.2
done
for reason in "${!expect[@]}"; do
  listed=$(gw_http "http://127.0.0.1:$http_port/dlq?reason=$reason&limit=1000" | jq length)
  counted=$(jq -r ".ingest.rejected_by_reason.$reason // 0" <<<"$status")
  stored=$(jq -r ".dead_letters.by_reason.$reason // 0" <<<"$status")
  gw_log "$reason: sent=${expect[$reason]} in /dlq=$listed counted=$counted stored=$stored"
  ((listed == expect[$reason] && counted == expect[$reason] && stored == expect[$reason])) ||
    gw_die "$reason: expected ${expect[$reason]} everywhere"
done
topics=$(gw_http "http://127.0.0.1:$http_port/dlq?limit=1000" | jq -r '.[].topic' | sort -u | tr '\n' ' ')
[[ $topics == *devices/bad-oversize/telemetry* ]] || gw_die "dead letters lack their topics: $topics"
oversize=$(gw_http "http://127.0.0.1:$http_port/dlq?reason=oversize&limit=1" | jq '.[0].size')
((oversize == 5000)) || gw_die "the oversize letter should keep the original size 5000, has $oversize"

"$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --kafka "$bootstrap" --topic telemetry \
  --idle-exit-ms 3000 >"$work/verify.out" 2>"$work/verify.log" || gw_die "verify failed: $(cat "$work/verify.out")"
cat "$work/verify.out"
grep -q '^delivered=[0-9]* lost=0 duplicates=0 ' "$work/verify.out" || gw_die "valid traffic was affected"
echo "e2e.ingest_dlq: OK"
