#!/usr/bin/env bash
# End-to-end: the gateway (ingest mode subscribe) connects to a real mosquitto over TLS.
#   1. The broker's certificate is signed by a CA other than the one the gateway trusts: /status
#      (ingest.last_error, and /readyz) names OpenSSL's reason, "certificate verify failed" with
#      the verification error, where Paho alone says only "TCP/TLS connect failure".
#   2. The gateway trusts the right CA: it connects and subscribes, and a reading published over
#      TLS is stored.
# Certificates: gw_test_ca (tests/e2e/lib.sh), made by openssl for the test.
#   tests/e2e/mqtt_tls.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
work=$(mktemp -d /tmp/gw-e2e-mqtt-tls.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

tls=$work/tls
gw_test_ca "$tls"

mqtt_port=$(gw_free_port)
mkdir -p "$work/mosquitto"
# Test work directories are private to root: as root, mosquitto keeps root instead of dropping to
# its own user (which could not read the files).
cat >"$work/mosquitto/mosquitto.conf" <<CONF
$([[ $(id -u) -eq 0 ]] && echo "user root")
per_listener_settings false
allow_anonymous true
persistence false
listener $mqtt_port 127.0.0.1
cafile $tls/ca.pem
certfile $tls/broker.pem
keyfile $tls/broker.key
CONF
/usr/sbin/mosquitto -c "$work/mosquitto/mosquitto.conf" >"$work/mosquitto/mosquitto.log" 2>&1 &
gw_track $!
gw_wait_port "$mqtt_port" 10 || gw_die "mosquitto did not listen on $mqtt_port (see $work/mosquitto/mosquitto.log)"

# gateway_config CA_FILE HTTP_PORT
gateway_config() {
  cat >"$work/gateway.toml" <<CONF
gateway_id = "e2e-tls"
[mqtt]
url = "ssl://127.0.0.1:$mqtt_port"
topics = ["devices/+/telemetry"]
client_id = "e2e-tls-gateway"
ca_file = "$1"
[buffer]
path = "$work/buffer"
durability = "os"
[uplink.kafka]
brokers = "embedded"
[http]
listen = "127.0.0.1:$2"
CONF
}

# 1. The wrong CA.
http_port=$(gw_free_port)
gateway_config "$tls/other-ca.pem" "$http_port"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway-1.log" 2>&1 &
gateway_pid=$!
gw_track $gateway_pid
s=$(gw_wait_status "http://127.0.0.1:$http_port" '.ingest.last_error | test("certificate verify failed")' 20) ||
  gw_die "/status does not name the TLS failure: ingest.last_error='$(jq -r '.ingest.last_error' <<<"$s")'"
gw_log "broker certificate of another CA: ingest.last_error='$(jq -r '.ingest.last_error' <<<"$s")'"
ready=$(curl -sS --max-time 5 "http://127.0.0.1:$http_port/readyz" || true)  # 503: no -f
[[ $ready == *"certificate verify failed"* ]] || gw_die "/readyz does not name the TLS failure: $ready"
kill -TERM "$gateway_pid"
wait "$gateway_pid" 2>/dev/null || true

# 2. The right CA: connected, subscribed, and a reading sent over TLS is stored.
http_port=$(gw_free_port)
gateway_config "$tls/ca.pem" "$http_port"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway-2.log" 2>&1 &
gw_track $!
gw_wait_status "http://127.0.0.1:$http_port" '.ingest.subscribed == true' 20 >/dev/null ||
  gw_die "the gateway did not subscribe over TLS with the right CA (see $work/gateway-2.log)"
mosquitto_pub -p "$mqtt_port" -h 127.0.0.1 --cafile "$tls/ca.pem" -q 1 -t devices/tls-1/telemetry \
  -m '{"device":"tls-1","seq":1,"time_ms":'"$(date +%s%3N)"',"metrics":{"temperature":21.5}}' ||
  gw_die "mosquitto_pub over TLS failed"
gw_wait_status "http://127.0.0.1:$http_port" '.ingest.events_stored >= 1' 20 >/dev/null ||
  gw_die "the reading sent over TLS was not stored (see $work/gateway-2.log)"
gw_log "right CA: subscribed over TLS, 1 reading stored"
gw_log "PASS"
