#!/usr/bin/env bash
# End-to-end against a real Apache Kafka (one KRaft node, tests/support/kafka.sh) as a careful
# operator runs it: the gateway connects over SASL_SSL (SASL PLAIN, a certificate of a CA this
# test makes with openssl), the StandardAuthorizer with no ACL means no access, topics are not
# created automatically, and the telemetry topic takes small messages only (max.message.bytes).
# The box runs in ingest mode plugin; 20 devices with an outbox publish QoS 1 throughout.
#   1. the gateway may not write (no ACL): /status says so, nothing is acknowledged upstream, and the
#      gateway keeps storing;
#   2. a gateway whose CA is another, and one with a wrong password, each name the reason in /status;
#      one with SCRAM-SHA-512 authenticates where the librdkafka it runs with is 2.6.1 or later
#      (Debian 13 ships 2.8.0: it then meets the missing WRITE ACL, an authorization error that comes
#      only after the SASL handshake succeeded); an older
#      one (Debian 12 ships 2.0.2) answers Kafka 4.x's SCRAM with a proof the broker refuses (a
#      librdkafka bug fixed in 2.6.1), and /status must name that authentication failure;
#   3. the write ACL is granted: the telemetry sink delivers the backlog, whose full batches would be
#      larger than max.message.bytes (the sink reads the limit and splits them to fit; the broker
#      refuses none, so the partition stays in order, and nothing loops); the aggregates topic does not
#      exist: its sink says so and acknowledges nothing until the topic is created, then catches up;
# then every reading is on the topic exactly once (firmware-sim verify, tests/support/kafka_verify.py).
#   tests/e2e/kafka_secure.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
source "$src/tests/support/kafka.sh"
work=$(mktemp -d /tmp/gw-e2e-ksecure.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT

# A CA, the broker's certificate for 127.0.0.1 signed by it, and another CA nobody uses.
tls=$work/tls
gw_test_ca "$tls"
openssl pkcs8 -topk8 -nocrypt -in "$tls/broker.key" -out "$tls/broker.pk8"
cat "$tls/broker.pk8" "$tls/broker.pem" "$tls/ca.pem" >"$tls/broker-keystore.pem"

GW_KAFKA_TLS_PEM=$tls/broker-keystore.pem GW_KAFKA_USERS="gw=gw-secret" \
  gw_kafka_start "$work/kafka" 1 auto.create.topics.enable=false \
  authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer \
  "super.users=User:ANONYMOUS" allow.everyone.if.no.acl.found=false
# Small messages only: a full batch of 1000 records (about 8 KB compressed) does not fit.
gw_kafka_create_topic telemetry max.message.bytes=3000 >/dev/null
acl() {
  gw_kafka_tool org.apache.kafka.tools.AclCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --add \
    --allow-principal User:gw "$@" >>"$work/acl.log" 2>&1 || gw_die "AclCommand failed (see $work/acl.log)"
}
# Reading (the sink reads its partition back), describing the topic and its config (the sink fits
# its messages to max.message.bytes), not writing.
acl --operation Read --operation Describe --operation DescribeConfigs --topic telemetry --topic telemetry-aggregates

# gateway_config NAME CA PASSWORD [MECHANISM]: a config under WORK/NAME for the secure listener.
gateway_config() {
  local d=$work/$1
  mkdir -p "$d"
  gw_uplink_config "$d/gateway.toml" "$d" "${mqtt_port:-1}" "$(gw_free_port)" "$KAFKA_SECURE_BOOTSTRAP" plugin
  sed -i "s/^gateway_id = .*/gateway_id = \"$1\"/" "$d/gateway.toml"
  sed -i "s|^\[uplink.kafka\]\$|[uplink.kafka]\nsecurity.protocol = \"SASL_SSL\"\nsasl.mechanism = \"${4:-PLAIN}\"\nsasl.username = \"gw\"\nsasl.password = \"$3\"\nssl.ca.location = \"$2\"|" "$d/gateway.toml"
}
http_of() { awk -F'"' '/^listen = / { print $2 }' "$work/$1/gateway.toml"; }
start_gateway() {
  "$build/gateway/edge-gateway" --config "$work/$1/gateway.toml" >"$work/$1/gateway.log" 2>&1 &
  gw_track $!
  gw_wait_http "http://$(http_of "$1")/healthz" 20 || gw_die "gateway $1 not healthy (see $work/$1/gateway.log)"
}
# wait_status NAME JQ_CONDITION SECONDS: gw_wait_status (lib.sh) on gateway NAME.
wait_status() { gw_wait_status "http://$(http_of "$1")" "$2" "$3"; }

mqtt_port=$(gw_free_port)
gateway_config e2e-secure "$tls/ca.pem" gw-secret
start_gateway e2e-secure
gw_start_box_broker "$build" "$src" "$work/mosquitto" "$mqtt_port" "$work/e2e-secure/gateway.toml"
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 20 --rate 20 --duration 40 \
  --qos 1 --seed 9 --outbox --manifest "$work/manifest.txt" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
gw_track $sim_pid

# 1. No write ACL: it says why, nothing is acknowledged upstream, storing goes on.
s=$(wait_status e2e-secure '(.uplink.kafka.last_error | test("AUTHORIZATION_FAILED.*WRITE ACL")) and .buffer.last_seq > 2000' 60) ||
  gw_die "/status does not say why nothing is delivered: $(jq -c '.uplink' <<<"$s")"
gw_log "denied: $(jq -r '.uplink.kafka.last_error' <<<"$s")"
[[ $(jq -r '.uplink.kafka.last_acked_seq' <<<"$s") == 0 && $(jq -r '.uplink.kafka_aggregates.last_acked_seq' <<<"$s") == 0 ]] ||
  gw_die "a sink acknowledged records it could not deliver: $(jq -c '.uplink' <<<"$s")"

# 2. Another CA; a wrong password: the reason is named.
gateway_config e2e-other-ca "$tls/other-ca.pem" gw-secret
gateway_config e2e-bad-password "$tls/ca.pem" wrong
start_gateway e2e-other-ca
start_gateway e2e-bad-password
s=$(wait_status e2e-other-ca '.uplink.kafka.last_error | test("certificate verify failed")' 30) ||
  gw_die "a broker certificate of another CA: /status does not say so: $(jq -r '.uplink.kafka.last_error' <<<"$s")"
gw_log "other CA: $(jq -r '.uplink.kafka.last_error' <<<"$s")"
s=$(wait_status e2e-bad-password '.uplink.kafka.last_error | test("Authentication failed|SASL"; "i")' 30) ||
  gw_die "a wrong password: /status does not say so: $(jq -r '.uplink.kafka.last_error' <<<"$s")"
gw_log "wrong password: $(jq -r '.uplink.kafka.last_error' <<<"$s")"
gateway_config e2e-scram "$tls/ca.pem" gw-secret SCRAM-SHA-512
start_gateway e2e-scram
librdkafka=$("$build/gateway/edge-gateway" --version | sed -n 's/.*(librdkafka \([0-9.]*\)).*/\1/p')
if [[ $(printf '%s\n' 2.6.1 "$librdkafka" | sort -V | head -1) == 2.6.1 ]]; then
  # Authenticated: it meets what the PLAIN gateway meets, the missing WRITE ACL (an authorization
  # error comes only after the SASL handshake succeeded). It has no devices: nothing to deliver.
  s=$(wait_status e2e-scram '.uplink.kafka.last_error | test("AUTHORIZATION_FAILED")' 30) ||
    gw_die "SCRAM-SHA-512 with librdkafka $librdkafka: not authenticated: $(jq -r '.uplink.kafka.last_error' <<<"$s")"
  gw_log "SCRAM-SHA-512 (librdkafka $librdkafka): authenticated, $(jq -r '.uplink.kafka.last_error' <<<"$s")"
else
  s=$(wait_status e2e-scram '.uplink.kafka.last_error | test("SCRAM-SHA-512")' 30) ||
    gw_die "SCRAM-SHA-512 with librdkafka $librdkafka: the failure is not named: $(jq -r '.uplink.kafka.last_error' <<<"$s")"
  gw_log "SCRAM-SHA-512 (librdkafka $librdkafka, before the fix of 2.6.1): $(jq -r '.uplink.kafka.last_error' <<<"$s")"
fi

# 3. Write allowed: the backlog drains in batches that fit; the aggregates topic is missing.
acl --operation Write --topic telemetry --topic telemetry-aggregates
s=$(wait_status e2e-secure '(.uplink.kafka.last_acked_seq > 0)
    and (.uplink.kafka_aggregates.last_error | test("UNKNOWN_TOPIC.*does not exist"))' 60) ||
  gw_die "with WRITE granted: telemetry not delivered, or the missing topic not named: $(jq -c '.uplink' <<<"$s")"
gw_log "missing topic: $(jq -r '.uplink.kafka_aggregates.last_error' <<<"$s")"
[[ $(jq -r '.uplink.kafka_aggregates.last_acked_seq' <<<"$s") == 0 ]] ||
  gw_die "the aggregates sink acknowledged records with no topic to write: $(jq -c '.uplink.kafka_aggregates' <<<"$s")"
gw_kafka_create_topic telemetry-aggregates >/dev/null
gw_outbox_drained "$work" "$sim_pid"
gw_start_verifier "$build" "$work" "$KAFKA_BOOTSTRAP"
http_port=$(http_of e2e-secure | cut -d: -f2)
gw_caught_up_and_verify "$http_port" "$work" "$verify_pid"
gw_kafka_verify "$work/manifest.txt" telemetry | tee "$work/kafka-verify.out" || gw_die "kafka_verify failed"
s=$(wait_status e2e-secure '.uplink.kafka_aggregates.last_acked_seq == .buffer.last_seq' 60) ||
  gw_die "the aggregates sink did not catch up once its topic existed: $(jq -c '.uplink.kafka_aggregates' <<<"$s")"
grep -q 'takes messages of at most 3000 bytes' "$work/e2e-secure/gateway.log" ||
  gw_die "the sink did not learn the topic's max.message.bytes (see $work/e2e-secure/gateway.log)"
# Split to fit: the backlog of thousands of records went in batches of at most ~3000 bytes (a full
# batch is ~25 KB here), and the broker refused none of them as too large.
[[ $(jq -r '.uplink.kafka.batches_acked' <<<"$s") -gt $((acked / 50)) ]] ||
  gw_die "the backlog was not split into small batches: $(jq -c '.uplink.kafka' <<<"$s")"
! grep -q 'Message size too large' "$work/e2e-secure/gateway.log" || gw_die "the broker refused a batch as too large"
gw_log "uplink: $(jq -c '.uplink.kafka | {batches_acked, records_acked, delivery_errors, read_backs}' <<<"$s")"
echo "e2e.kafka_secure: denied, missing topic, other CA, wrong password named; backlog split to fit; readings=$acked OK"
