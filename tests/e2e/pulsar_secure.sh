#!/usr/bin/env bash
# End-to-end against a real Apache Pulsar with token authentication and authorization on, and TLS
# on its web service (tests/support/pulsar.sh; a test CA):
# - two gateways share one topic over wss://, each with its own token (role granted produce and
#   consume); gateway "busy" sends many small batches while gateway "quiet" is SIGKILLed 6 times, so
#   the quiet one's last batch lies more than one read-back window before the topic's end: its
#   read-back must widen its window. Pulsar's Python client then reads every reading of both once
#   and no gateway seq twice;
# - a token signed with another key: refused (401), named in /status and the log, nothing acked;
# - a role with produce permission only: the read-back's reader is refused (403), named;
# - a CA that did not sign the broker's certificate: the TLS failure named in /status.
#   tests/e2e/pulsar_secure.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
source "$src/tests/support/pulsar.sh"
work=$(mktemp -d /tmp/gw-e2e-pulsar-secure.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

gw_test_ca "$work/tls"
GW_PULSAR_TOKENS=1 GW_PULSAR_TLS_PEM=$work/tls/broker.pem GW_PULSAR_TLS_KEY=$work/tls/broker.key \
  gw_pulsar_start "$work/pulsar"
[[ -n $PULSAR_WSS_URL ]] || gw_die "no TLS port"
gw_log "Pulsar (tokens, TLS) ready in ${PULSAR_START_SECONDS}s at $PULSAR_WSS_URL"
gw_pulsar_grant gw-fleet produce,consume
gw_pulsar_grant gw-produce-only produce
fleet_token=$(gw_pulsar_token gw-fleet)
produce_only_token=$(gw_pulsar_token gw-produce-only)
# A token of the right shape signed with another key.
foreign_token=$(GW_PULSAR_DIR=$work/foreign && mkdir -p "$GW_PULSAR_DIR" && head -c 32 /dev/urandom >"$GW_PULSAR_DIR/secret.key" &&
  gw_pulsar_token gw-fleet)

# gateway NAME TOKEN CA [KEY=VALUE lines for [uplink.pulsar]]: a config under $work/NAME with its own
# mosquitto (port in $work/NAME/mqtt.port); prints nothing.
gateway_config() {
  local name=$1 token=$2 ca=$3 port mqtt
  shift 3
  mkdir -p "$work/$name"
  port=$(gw_free_port) mqtt=$(gw_free_port)
  echo "$port" >"$work/$name/http.port"
  echo "$mqtt" >"$work/$name/mqtt.port"
  gw_start_mosquitto "$work/$name/mosquitto" "$mqtt" "$src/gateway/mosquitto.conf"
  cat >"$work/$name/gateway.toml" <<CONF
gateway_id = "e2e-$name"
[mqtt]
url = "tcp://127.0.0.1:$mqtt"
topics = ["devices/+/telemetry"]
client_id = "e2e-$name-gateway"
[buffer]
path = "$work/$name/buffer"
durability = "os"
[uplink.pulsar]
service_url = "$PULSAR_WSS_URL"
topic = "shared"
token = "$token"
tls_ca_file = "$ca"
linger = "10ms"
send_timeout = "5s"
connect_timeout = "5s"
retry_backoff = "100ms"
retry_backoff_max = "1s"
$(printf '%s\n' "$@")
[http]
listen = "127.0.0.1:$port"
CONF
}
status_of() { gw_http "http://127.0.0.1:$(<"$work/$1/http.port")/status"; }
publish() {
  local name=$1
  shift
  "$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$(<"$work/$name/mqtt.port")" --qos 1 \
    --device-prefix "$name-" --manifest "$work/$name/manifest.txt" "$@" >"$work/$name/sim.out" 2>"$work/$name/sim.log"
}

gateway_config busy "$fleet_token" "$work/tls/ca.pem" 'batch_max_records = 5'
gateway_config quiet "$fleet_token" "$work/tls/ca.pem"
for g in busy quiet; do
  gw_start_gateway "$build" "$work/$g"
  echo "$gateway_pid" >"$work/$g/pid"
  gw_wait_gateway_ready "$(<"$work/$g/http.port")" "$work/$g/gateway.log"
done
publish busy --devices 10 --rate 40 --duration 20 &
busy_sim=$!
gw_track $busy_sim
publish quiet --devices 2 --rate 2 --duration 18 &
quiet_sim=$!
gw_track $quiet_sim
for ((k = 1; k <= 6; k++)); do
  sleep "$(printf '2.%03d' $((RANDOM % 1000)))"
  kill -KILL "$(<"$work/quiet/pid")"
  wait "$(<"$work/quiet/pid")" 2>/dev/null || true
  sleep 0.5  # the busy gateway's batches pile up on the topic meanwhile
  gw_start_gateway "$build" "$work/quiet"
  echo "$gateway_pid" >"$work/quiet/pid"
done
wait "$busy_sim" || gw_die "firmware-sim (busy) failed"
wait "$quiet_sim" || gw_die "firmware-sim (quiet) failed"
for g in busy quiet; do
  gw_publish_markers "$(<"$work/$g/mqtt.port")" "$work/$g/manifest.txt" "$work/$g" || gw_die "mosquitto_pub failed"
  gw_wait_markers "http://127.0.0.1:$(<"$work/$g/http.port")" "$work/$g" 60 || gw_die "$g: not everything stored"
done
for g in busy quiet; do
  gw_wait_caught_up "$(<"$work/$g/http.port")" 60 pulsar >/dev/null || gw_die "$g did not catch up"
done
# The quiet gateway's last batch lay further back than the first window of 8 entries at least once.
widened=$(grep -c 'entries back to find this gateway' "$work/quiet/gateway.log" || true)
((widened >= 1)) || gw_die "no read-back of the quiet gateway had to look further back than 8 entries"
gw_log "quiet: $(jq -c '.uplink.pulsar | {read_backs, records_found_upstream, connects}' <<<"$(status_of quiet)")"
cat "$work/busy/manifest.txt" "$work/quiet/manifest.txt" >"$work/manifest.txt"
gw_pulsar_verify "$work/manifest.txt" persistent://public/default/shared | tee "$work/pulsar-verify.out" ||
  gw_die "pulsar_verify failed"
messages=$(sed -n 's/.*batches=\([0-9]*\).*/\1/p' "$work/pulsar-verify.out")
((messages > 500)) || gw_die "the busy gateway should have put hundreds of batches on the topic ($messages)"

# The project's own reader (WebSocket consumer API, no dedup) sees the same records, and is refused
# with a foreign token.
"$build/uplink/uplink-cat" --pulsar "$PULSAR_WS_URL" --token "$fleet_token" --topic shared --no-dedup \
  --idle-exit-ms 1500 >"$work/records.jsonl" 2>"$work/cat.err" || gw_die "uplink-cat failed: $(<"$work/cat.err")"
records=$(sed -n 's/.*records=\([0-9]*\).*/\1/p' "$work/pulsar-verify.out")
[[ $(grep -c '"device_seq"' "$work/records.jsonl") == "$records" ]] ||
  gw_die "uplink-cat read $(grep -c '"device_seq"' "$work/records.jsonl") records, pulsar-client $records"
if "$build/uplink/uplink-cat" --pulsar "$PULSAR_WS_URL" --token "$foreign_token" --topic shared \
  --idle-exit-ms 500 >/dev/null 2>"$work/foreign-cat.err"; then
  gw_die "uplink-cat with a foreign token succeeded"
fi
grep -q 401 "$work/foreign-cat.err" || gw_die "uplink-cat does not name the 401: $(<"$work/foreign-cat.err")"

# Refusals, each named where an operator looks.
gateway_config foreign "$foreign_token" "$work/tls/ca.pem"
gateway_config produce-only "$produce_only_token" "$work/tls/ca.pem"
gateway_config wrong-ca "$fleet_token" "$work/tls/other-ca.pem"
for g in foreign produce-only wrong-ca; do
  gw_start_gateway "$build" "$work/$g"
  gw_wait_http "http://127.0.0.1:$(<"$work/$g/http.port")/healthz" 20 || gw_die "$g: not healthy"
  publish "$g" --devices 1 --count 20 --rate 50
done
expect_error() {
  local g=$1 pattern=$2 i status
  for ((i = 0; i < 60; i++)); do
    status=$(status_of "$g" || true)
    jq -e --arg p "$pattern" '.uplink.pulsar.state == "down" and (.uplink.pulsar.last_error | test($p))
      and .uplink.pulsar.records_acked == 0' <<<"$status" >/dev/null 2>&1 && break
    sleep 0.5
  done
  gw_log "$g: $(jq -c '.uplink.pulsar | {state, last_error, records_acked}' <<<"$status")"
  jq -e --arg p "$pattern" '.uplink.pulsar.last_error | test($p)' <<<"$status" >/dev/null ||
    gw_die "$g: /status does not name the reason ($pattern)"
  grep -qE "$pattern" "$work/$g/gateway.log" || gw_die "$g: the log does not name the reason ($pattern)"
}
expect_error foreign '401 \(token rejected\)'
expect_error produce-only '403 \(the token.s role lacks permission'
expect_error wrong-ca 'certificate verify failed'
echo "e2e.pulsar_secure: shared topic messages=$messages, quiet gateway restarts=6 (windows widened $widened times); refusals named OK"
