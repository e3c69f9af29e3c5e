#!/usr/bin/env bash
# Benchmark (not a ctest): does HTTP load slow ingest? Starts a private mosquitto and edge-gateway
# (embedded Kafka, durability os, a bearer token) and firmware-sim publishing at a fixed rate, then
# measures the events stored per second (from /status) over three equal phases: no HTTP load
# (baseline), wrk hammering /metrics, wrk hammering /aggregates. Prints wrk's requests/s and the
# ingest rate of each phase against the baseline:
#   BENCH http_metrics_rps N req/s, BENCH http_aggregates_rps N req/s,
#   BENCH ingest_baseline / ingest_metrics_load / ingest_aggregates_load N events/s,
#   RATIO http_ingest_metrics_load R, RATIO http_ingest_aggregates_load R   (target >= 0.95)
#
#   tests/bench/http_load.sh [--quick] [BUILD_DIR]      (defaults: full run, ./build)
# Environment: DEVICES (50), RATE per device (100 events/s), PHASE seconds (20; --quick 6),
# WRK_THREADS (2), WRK_CONNECTIONS (8), WRK_NICE (0; 19 approximates remote clients, whose CPU does
# not compete with the gateway's).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
phase=${PHASE:-20}
if [[ ${1:-} == --quick ]]; then phase=${PHASE:-6}; shift; fi
build=$(cd "${1:-$src/build}" && pwd)
devices=${DEVICES:-50} rate=${RATE:-100} threads=${WRK_THREADS:-2} connections=${WRK_CONNECTIONS:-8}
source "$src/tests/e2e/lib.sh"
command -v wrk >/dev/null || gw_die "wrk missing (toolchains/setup.sh installs it)"
work=$(mktemp -d /tmp/gw-bench-http.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

export GW_HTTP_TOKEN="bench-$RANDOM$RANDOM"
mqtt_port=$(gw_free_port)
http_port=$(gw_free_port)
gw_start_mosquitto "$work/mosquitto" "$mqtt_port" "$src/gateway/mosquitto.conf"
cat >"$work/gateway.toml" <<CONF
gateway_id = "bench-http"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
topics = ["devices/+/telemetry"]
client_id = "bench-http-gateway"
[buffer]
path = "$work/buffer"
durability = "os"
[windowing]
size = "1s"
[uplink.kafka]
brokers = "embedded"
[http]
listen = "127.0.0.1:$http_port"
token = "$GW_HTTP_TOKEN"
CONF
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_gateway_ready "$http_port" "$work/gateway.log"
base="http://127.0.0.1:$http_port"

total=$((3 * phase + 10))
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices "$devices" --rate "$rate" \
  --duration "$total" --qos 1 --seed 3 >"$work/sim.out" 2>"$work/sim.log" &
gw_track $!
sleep 5  # warm-up: connections, first windows closed

# "EVENTS_STORED TIME_MS" of the latest snapshot: the count and the time it was taken, so that a
# snapshot's age (up to 500 ms) does not blur a rate.
stored() { gw_http "$base/status" | jq -r '"\(.ingest.events_stored) \(.time_ms / 1000)"'; }
# measure NAME [URL]: the stored-events rate over one phase, with wrk on URL meanwhile if given.
measure() {
  local name=$1 url=${2:-} n0 t0 n1 t1 wrk_pid=""
  read -r n0 t0 < <(stored)
  if [[ -n $url ]]; then
    nice -n "${WRK_NICE:-0}" wrk -t"$threads" -c"$connections" -d"${phase}s" -H "Authorization: Bearer $GW_HTTP_TOKEN" "$url" >"$work/wrk-$name.txt" &
    wrk_pid=$!
    gw_track $wrk_pid
  fi
  sleep "$phase"
  read -r n1 t1 < <(stored)
  [[ -n $wrk_pid ]] && wait "$wrk_pid"
  awk -v a="$n0" -v b="$n1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.1f", (b - a) / (e - s) }'
}
rps() { awk '/^Requests\/sec:/ { print $2 }' "$work/wrk-$1.txt"; }

baseline=$(measure baseline)
metrics=$(measure metrics "$base/metrics")
aggregates=$(measure aggregates "$base/aggregates?limit=100")
grep -q "Non-2xx" "$work/wrk-metrics.txt" "$work/wrk-aggregates.txt" && gw_die "wrk saw non-2xx answers"

echo "# offered: $devices devices x $rate events/s = $((devices * rate)) events/s; phases of ${phase}s; wrk -t$threads -c$connections"
echo "BENCH http_metrics_rps $(rps metrics) req/s"
echo "BENCH http_aggregates_rps $(rps aggregates) req/s"
echo "BENCH ingest_baseline $baseline events/s"
echo "BENCH ingest_metrics_load $metrics events/s"
echo "BENCH ingest_aggregates_load $aggregates events/s"
echo "RATIO http_ingest_metrics_load $(awk -v a="$metrics" -v b="$baseline" 'BEGIN { printf "%.3f", a / b }')"
echo "RATIO http_ingest_aggregates_load $(awk -v a="$aggregates" -v b="$baseline" 'BEGIN { printf "%.3f", a / b }')"
