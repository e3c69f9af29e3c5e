#!/usr/bin/env bash
# End-to-end checks of the HTTP API on a running gateway (mosquitto with the gateway's plugin,
# kafka-mock, edge-gateway with a bearer token and every secret key set, log_level trace), after firmware-sim published a fixed
# number of events (a few malformed, for the dead letters) and the uplink caught up:
#   metrics: /metrics passes `promtool check metrics` and shows the published counts; /readyz is
#            ready; no token or a wrong one gets 401 while /healthz needs none; no secret appears in
#            the log, /status or /metrics.
#   page:    headless Chromium renders / (token in the URL fragment) and the page shows the live
#            figures of /status: events stored, uplink state, last acked seq, and a chart; it saves
#            a screenshot to BUILD_DIR/tests/e2e/http-status-page.png. Exits 77 (skipped) only if
#            chromium is not installed.
#   tests/e2e/http.sh BUILD_DIR SOURCE_DIR metrics|page
set -euo pipefail
build=$1 src=$2 mode=$3
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
case $mode in
  metrics) command -v promtool >/dev/null || gw_die "promtool missing (Debian package prometheus; toolchains/setup.sh)" ;;
  page) command -v chromium >/dev/null || { echo "chromium not installed: skipped"; exit 77; } ;;
  *) gw_die "mode must be metrics or page" ;;
esac
work=$(mktemp -d /tmp/gw-e2e-http.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

# Secrets that must never be printed: each is a unique string grep can find.
token="tok-$RANDOM$RANDOM-never-logged"
mqtt_password="mqttpw-$RANDOM$RANDOM-never-logged"
sasl_password="saslpw-$RANDOM$RANDOM-never-logged"
key_password="keypw-$RANDOM$RANDOM-never-logged"
export GW_HTTP_TOKEN=$token
devices=10 count=60

http_port=$(gw_free_port)
gw_start_brokers_for plugin "$build" "$src" "$work"
cat >"$work/gateway.toml" <<CONF
gateway_id = "e2e-http"
log_level = "trace"
[ingest]
mode = "plugin"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
topics = ["devices/+/telemetry"]
client_id = "e2e-http-gateway"
username = "gateway"
password = "$mqtt_password"
[buffer]
path = "$work/buffer"
durability = "os"
[windowing]
size = "1s"
# Devices idle for 1 s close their windows, so that the run settles (no aggregate record comes later).
idle_timeout = "1s"
[uplink.kafka]
brokers = "$bootstrap"
topic = "telemetry"
linger = "20ms"
# Set, but unused without security.protocol = sasl_*: librdkafka still receives them.
sasl.username = "gateway"
sasl.password = "$sasl_password"
ssl.key.password = "$key_password"
[http]
listen = "127.0.0.1:$http_port"
token = "$token"
CONF
"$build/gateway/edge-gateway" --check-config "$work/gateway.toml"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_box_ready plugin "$build" "$src" "$work" "$http_port"
base="http://127.0.0.1:$http_port"

"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices $devices --count $count \
  --rate 30 --qos 1 --seed 11 --malformed 0.05 --manifest "$work/manifest.txt" >"$work/sim.out"
expected=$((devices * count))
acked=$(wc -l <"$work/manifest.txt")
((acked == expected)) || gw_die "broker acknowledged $acked of $expected publishes"

# Until everything stored is acknowledged by Kafka and /status is stable (same figures twice).
status="" prev=""
for ((i = 0; i < 120; i++)); do
  status=$(gw_http "$base/status" || true)
  key=$(jq -c '[.ingest.events_stored, .buffer.last_seq, .uplink.kafka.last_acked_seq, .windowing.windows_closed]' <<<"$status" 2>/dev/null || true)
  stored=$(jq -r '.ingest.events_stored // 0' <<<"$status" 2>/dev/null || echo 0)
  sent=$(jq -r '.uplink.kafka.last_acked_seq // 0' <<<"$status" 2>/dev/null || echo 0)
  last=$(jq -r '.buffer.last_seq // -1' <<<"$status" 2>/dev/null || echo -1)  # events + aggregate records
  open=$(jq -r '.windowing.open_windows // -1' <<<"$status" 2>/dev/null || echo -1)
  ((stored >= expected && sent == last && open == 0)) && [[ $key == "$prev" ]] && break
  prev=$key
  sleep 0.5
done
((stored >= expected && sent == last && open == 0)) ||
  gw_die "did not settle: stored=$stored buffer last=$last acked=$sent open windows=$open"
gw_log "settled: $key"

if [[ $mode == metrics ]]; then
  code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
  [[ $(code "$base/metrics") == 401 ]] || gw_die "/metrics without a token is not 401"
  [[ $(code -H "Authorization: Bearer wrong" "$base/metrics") == 401 ]] || gw_die "/metrics with a wrong token is not 401"
  [[ $(code "$base/healthz") == 200 ]] || gw_die "/healthz needs no token"
  gw_http "$base/readyz" >"$work/readyz.json" || gw_die "/readyz: $(cat "$work/readyz.json")"
  gw_http "$base/metrics" >"$work/metrics.txt"
  promtool check metrics <"$work/metrics.txt" || gw_die "promtool check metrics failed"
  value() { awk -v m="$1" '$1 == m { print $2 }' "$work/metrics.txt"; }
  [[ $(value gw_ingest_events_stored_total) == "$stored" ]] || gw_die "gw_ingest_events_stored_total != $stored"
  [[ $(value 'gw_uplink_last_acked_seq{sink="kafka"}') == "$sent" ]] || gw_die "gw_uplink_last_acked_seq != $sent"
  [[ $(value 'gw_uplink_state{sink="kafka",state="up"}') == 1 ]] || gw_die "uplink not up in /metrics"
  malformed=$(jq -r '.dead_letters.by_reason.malformed // 0' <<<"$status")
  ((malformed > 0)) || gw_die "no malformed dead letters (firmware-sim --malformed)"
  [[ $(value 'gw_dead_letters_total{reason="malformed"}') == "$malformed" ]] || gw_die "dead letters by reason differ"
  gw_log "metrics: $(grep -c '^gw_' "$work/metrics.txt") samples; promtool ok; events_stored=$stored dead_letters.malformed=$malformed"
  for secret in "$token" "$mqtt_password" "$sasl_password" "$key_password"; do
    grep -qF "$secret" "$work/gateway.log" && gw_die "a secret appears in the gateway's log"
    grep -qF "$secret" "$work/metrics.txt" && gw_die "a secret appears in /metrics"
    grep -qF "$secret" <<<"$status" && gw_die "a secret appears in /status"
  done
  gw_log "no secret in the log ($(wc -l <"$work/gateway.log") lines at trace), /status or /metrics"
  echo "e2e.http_metrics: OK"
  exit 0
fi

# page
shot="$build/tests/e2e/http-status-page.png"
mkdir -p "$(dirname "$shot")"
rm -f "$shot"
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
  --user-data-dir="$work/chromium" --window-size=1280,900 --virtual-time-budget=8000)
timeout 90 "${chrome[@]}" --dump-dom "$base/#token=$token" >"$work/page.html" 2>"$work/chromium.log" ||
  gw_die "chromium --dump-dom failed (see $work/chromium.log)"
timeout 90 "${chrome[@]}" --screenshot="$shot" "$base/#token=$token" >>"$work/chromium.log" 2>&1 ||
  gw_die "chromium --screenshot failed (see $work/chromium.log)"
[[ -s $shot ]] || gw_die "no screenshot"
shown() { grep -o "id=\"$1\" data-value=\"[^\"]*\"" "$work/page.html" | sed 's/.*data-value="\([^"]*\)"/\1/'; }
page_stored=$(shown events-stored) page_state=$(shown uplink-state) page_acked=$(shown last-acked-seq)
gw_log "page shows events_stored=$page_stored uplink=$page_state last_acked_seq=$page_acked"
[[ $page_stored == "$stored" ]] || gw_die "page shows events stored '$page_stored', /status $stored (see $work/page.html)"
[[ $page_state == up ]] || gw_die "page shows uplink '$page_state'"
[[ $page_acked == "$sent" ]] || gw_die "page shows last acked seq '$page_acked', /status $sent"
grep -q 'id="chart-mean" points="[0-9]' "$work/page.html" || gw_die "no chart drawn (see $work/page.html)"
grep -q '<div id="message"></div>' "$work/page.html" || gw_die "the page shows an error: $(grep -o '<div id="message">[^<]*' "$work/page.html")"
grep -qF "$token" "$work/gateway.log" && gw_die "the token appears in the gateway's log"
echo "e2e.http_page: OK, screenshot $shot"
