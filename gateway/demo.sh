#!/usr/bin/env bash
# The demo: sets up (Debian packages), builds, then runs the whole pipeline on loopback:
# mosquitto with the project's config and the gateway's plugin (ingest mode plugin), edge-gateway
# with an embedded Kafka (librdkafka's mock cluster: no JVM needed) or, with --kafka real, a real
# Apache Kafka (one KRaft node fetched from Maven Central and started on loopback,
# tests/support/kafka.sh), and firmware-sim replaying the Intel Lab sensor data. It prints the status
# URL, a kcat command that reads the topic, and live aggregates, until Ctrl-C or --duration S; then
# it stops every process it started.
#   gateway/demo.sh [--duration S] [--devices N] [--rate EVENTS_PER_S_PER_DEVICE] [--kafka embedded|real]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=0 devices=16 rate=2 kafka=embedded
while (($#)); do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --devices) devices=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --kafka) kafka=$2; shift 2 ;;
    *) echo "usage: gateway/demo.sh [--duration S] [--devices N] [--rate R] [--kafka embedded|real]" >&2; exit 2 ;;
  esac
done

"$root/toolchains/setup.sh"
"$root/toolchains/build.sh" "$root/build"
build=$root/build
source "$root/tests/e2e/lib.sh"

run=$root/.demo
rm -rf "$run" && mkdir -p "$run"
trap 'echo; gw_log "stopping"; gw_stop_all; gw_log "logs are in $run"' EXIT
trap 'exit 0' INT TERM

mqtt_port=$(gw_free_port)
http_port=$(gw_free_port)
brokers=embedded
case $kafka in
  embedded) ;;
  real)
    source "$root/tests/support/kafka.sh"
    gw_log "starting Apache Kafka (one KRaft node; the first run fetches it from Maven Central)"
    gw_kafka_start "$run/kafka" 1
    gw_kafka_create_topic telemetry >/dev/null
    gw_kafka_create_topic telemetry-aggregates >/dev/null
    brokers=$KAFKA_BOOTSTRAP ;;
  *) gw_die "--kafka embedded or real" ;;
esac
cat >"$run/gateway.toml" <<CONF
gateway_id = "demo-1"
[ingest]
# mosquitto runs the gateway's plugin: a device's PUBACK follows the gateway's fsync.
mode = "plugin"
[mqtt]
url = "tcp://127.0.0.1:$mqtt_port"
client_id = "demo-gateway"
[buffer]
path = "$run/buffer"
durability = "fsync"
[windowing]
size = "10s"
[uplink.kafka]
brokers = "$brokers"
topic = "telemetry"
[http]
listen = "127.0.0.1:$http_port"
CONF
"$build/gateway/edge-gateway" --config "$run/gateway.toml" >"$run/gateway.log" 2>&1 &
gw_track $!
gw_wait_http "http://127.0.0.1:$http_port/healthz" 20 || { tail -n 20 "$run/gateway.log"; gw_die "the gateway did not start"; }
# mosquitto with the project's settings and the plugin lines the gateway prints for its config. As
# root, mosquitto would drop to its own user, which cannot reach the socket in this checkout: it
# keeps the current user instead.
{ cat "$root/gateway/mosquitto.conf"; [[ $(id -u) -ne 0 ]] || echo "user root"
  "$build/gateway/edge-gateway" --mosquitto-config "$run/gateway.toml"; } >"$run/mosquitto.template"
gw_start_mosquitto "$run/mosquitto" "$mqtt_port" "$run/mosquitto.template"
bootstrap=$(gw_http "http://127.0.0.1:$http_port/status" | jq -r '.uplink.kafka.bootstrap')

data=()
[[ -d $root/../shared/data/intel-lab-ibrl ]] && data=(--data "$root/../shared/data/intel-lab-ibrl")
sim_args=(--broker "tcp://127.0.0.1:$mqtt_port" --devices "$devices" --rate "$rate" --qos 1
          --manifest "$run/manifest.txt" "${data[@]}")
if ((duration > 0)); then sim_args+=(--duration "$duration"); else sim_args+=(--duration 86400); fi
"$build/firmware-sim/firmware-sim" "${sim_args[@]}" >"$run/firmware-sim.log" 2>&1 &
gw_track $!

cat <<INFO

  edge-gateway demo is running ($devices devices x $rate events/s, Intel Lab sensor data)
  Kafka:       $bootstrap ($( [[ $kafka == real ]] && echo "Apache Kafka, one KRaft node; its log: $run/kafka/node1/server.log" || echo "embedded: librdkafka's mock cluster inside edge-gateway"))
  status page: http://127.0.0.1:$http_port/            (live figures and a chart; open it in a browser)
  status:      http://127.0.0.1:$http_port/status     (also /healthz, /readyz, /metrics, /aggregates, /devices, /dlq)
  read Kafka:  kcat -b $bootstrap -C -t telemetry -o beginning -e -f 'batch %o: %S bytes, headers %h\n'
  decode it:   $build/uplink/uplink-cat --kafka $bootstrap --topic telemetry | head
  logs:        $run/*.log
  Ctrl-C stops everything$( ((duration > 0)) && echo " (or it stops by itself after ${duration}s)").

INFO

start=$SECONDS
while ((duration == 0 || SECONDS - start < duration)); do
  sleep 5
  status=$(gw_http "http://127.0.0.1:$http_port/status" || echo '{}')
  jq -r '"ingest: stored \(.ingest.events_stored // 0) events | buffer: \(.buffer.records // 0) records, last seq \(.buffer.last_seq // 0) | uplink: \(.uplink.kafka.batches_acked // 0) batches, \(.uplink.kafka.records_acked // 0) records acked (\(.uplink.kafka.bytes_sent // 0) bytes on the wire)"' <<<"$status"
  gw_http "http://127.0.0.1:$http_port/aggregates?metric=temperature&limit=3" |
    jq -r '.[] | "  window \(.window_start_ms/1000|strftime("%H:%M:%S")) \(.device) temperature: n=\(.count) min=\(.min|.*100|round/100) mean=\(.mean|.*100|round/100) max=\(.max|.*100|round/100)"' || true
done
