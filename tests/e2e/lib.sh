# Shell helpers shared by the end-to-end tests and the demo: free loopback ports, starting the
# real processes (mosquitto, kafka-mock, edge-gateway) and stopping every one of them on exit.
# Source it; it defines functions only. Every wait is bounded.

GW_PIDS=()

# gw_scaled N: N times GW_TEST_TIME_SCALE (an integer, default 1; toolchains/sanitize.sh raises it
# because sanitizers slow every process 2-15x). Bounds of waits go through it, so that a slower
# build waits longer; what a test checks does not change.
gw_scaled() { echo $(($1 * ${GW_TEST_TIME_SCALE:-1})); }

gw_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
gw_die() { gw_log "FAIL: $*"; exit 1; }

# A TCP port on 127.0.0.1 that nothing listens on now (bind-tested with bash's /dev/tcp: a
# refused connection means free). Ports are drawn from 20000-32767, below Linux's ephemeral range
# (32768-60999): a connect test cannot see a port held by some client's outgoing connection, and
# package.install once lost its HTTP port to one ("Address already in use").
gw_free_port() {
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# gw_wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
gw_wait_port() {
  local port=$1 deadline=$((SECONDS + $(gw_scaled "$2")))
  while ((SECONDS < deadline)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

gw_track() { GW_PIDS+=("$1"); }

# gw_start_gateway BUILD WORK: edge-gateway with WORK/gateway.toml in the background, its log
# appended to WORK/gateway.log; tracked; sets gateway_pid in the caller's shell.
gw_start_gateway() {
  "$1/gateway/edge-gateway" --config "$2/gateway.toml" >>"$2/gateway.log" 2>&1 &
  gateway_pid=$!
  gw_track $gateway_pid
}

# gw_manifest_readings FILE: the readings a firmware-sim manifest lists (its "resent" marks left out).
gw_manifest_readings() { grep -vc ' resent$' "$1" || true; }

# Stops every tracked process: SIGTERM, then SIGKILL after 5 s (scaled).
gw_stop_all() {
  local pid i
  for pid in "${GW_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < $(gw_scaled 50); i++)); do
    local alive=0
    for pid in "${GW_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${GW_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  GW_PIDS=()
}

# gw_start_mosquitto DIR PORT CONF_TEMPLATE: a private mosquitto on 127.0.0.1:PORT with its data in DIR.
gw_start_mosquitto() {
  local dir=$1 port=$2 template=$3
  mkdir -p "$dir/data"
  { cat "$template"; echo "listener $port 127.0.0.1"; echo "persistence_location $dir/data/"; } >"$dir/mosquitto.conf"
  # Started as root, mosquitto drops to the user `mosquitto`, which must own its data directory.
  if [[ $(id -u) -eq 0 ]] && id mosquitto >/dev/null 2>&1; then chown -R mosquitto: "$dir/data"; fi
  /usr/sbin/mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
  gw_track $!
  gw_wait_port "$port" 10 || gw_die "mosquitto did not listen on $port (see $dir/mosquitto.log)"
}

# gw_start_kafka_mock BIN DIR TOPIC: prints the bootstrap address; the process stays tracked.
# Creates TOPIC and the gateway's default aggregates topic, telemetry-aggregates.
# Its stdin is a fifo kept open in fd 7, so `echo down >&7` etc. drive it. Call it in the test's
# own shell with stdout to a file (not inside $(...), whose subshell would lose both).
gw_start_kafka_mock() {
  local bin=$1 dir=$2 topic=$3 i
  mkfifo "$dir/kafka-mock.in"
  "$bin" --topic "$topic:1" --topic telemetry-aggregates:1 <"$dir/kafka-mock.in" >"$dir/kafka-mock.out" 2>"$dir/kafka-mock.log" &
  gw_track $!
  exec 7>"$dir/kafka-mock.in"
  for ((i = 0; i < $(gw_scaled 100); i++)); do
    if grep -q '^bootstrap=' "$dir/kafka-mock.out" 2>/dev/null; then
      sed -n 's/^bootstrap=//p' "$dir/kafka-mock.out" | head -n1
      return 0
    fi
    sleep 0.1
  done
  gw_die "kafka-mock printed no bootstrap line (see $dir/kafka-mock.log)"
}

# gw_http URL: GET with a short timeout; prints the body. With GW_HTTP_TOKEN set, sends it as the
# bearer token ([http] token).
gw_http() { curl -fsS --max-time 5 ${GW_HTTP_TOKEN:+-H "Authorization: Bearer $GW_HTTP_TOKEN"} "$1"; }

# gw_wait_http URL SECONDS: until URL answers 2xx.
gw_wait_http() {
  local url=$1 deadline=$((SECONDS + $(gw_scaled "$2")))
  while ((SECONDS < deadline)); do
    gw_http "$url" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# gw_wait_status BASE_URL JQ_CONDITION SECONDS: until JQ_CONDITION holds on BASE_URL/status; prints
# the last status (also on failure, for the message).
gw_wait_status() {
  local s="" deadline=$((SECONDS + $(gw_scaled "$3")))
  while ((SECONDS < deadline)); do
    s=$(gw_http "$1/status" 2>/dev/null || true)
    # Not on an empty answer: jq -e exits 0 on empty input, whatever the condition.
    [[ -n $s ]] && jq -e "$2" <<<"$s" >/dev/null 2>&1 && { echo "$s"; return 0; }
    sleep 0.5
  done
  echo "$s"
  return 1
}

# gw_wait_subscribed BASE_URL SECONDS: until the gateway's /status says its MQTT subscriptions are
# confirmed. Until then a brand-new session has no subscription at the broker, so what devices
# publish is acknowledged to them but queued for nobody: wait before publishing.
gw_wait_subscribed() {
  local base=$1 deadline=$((SECONDS + $(gw_scaled "$2")))
  while ((SECONDS < deadline)); do
    [[ $(gw_http "$base/status" 2>/dev/null | jq -r '.ingest.subscribed // false' 2>/dev/null) == true ]] && return 0
    sleep 0.2
  done
  return 1
}

# gw_start_brokers BUILD SRC WORK: a private mosquitto (the project's config) and kafka-mock (topic
# telemetry) for one test, both tracked. Sets mqtt_port and bootstrap in the caller's shell, so
# call it directly, not inside $(...).
gw_start_brokers() {
  local build=$1 src=$2 work=$3
  mqtt_port=$(gw_free_port)
  gw_start_mosquitto "$work/mosquitto" "$mqtt_port" "$src/gateway/mosquitto.conf"
  gw_start_kafka_mock "$build/uplink/kafka-mock" "$work" telemetry >"$work/bootstrap"
  bootstrap=$(<"$work/bootstrap")
}

# gw_wait_gateway_ready HTTP_PORT LOG [SECONDS]: until the gateway answers /healthz and its MQTT
# subscription is confirmed (only then may devices publish); on failure shows LOG's tail.
gw_wait_gateway_ready() {
  local port=$1 log=$2 seconds=${3:-30}
  if ! gw_wait_http "http://127.0.0.1:$port/healthz" "$seconds"; then
    tail -n 20 "$log" >&2
    gw_die "gateway not healthy (see $log)"
  fi
  if ! gw_wait_subscribed "http://127.0.0.1:$port" "$seconds"; then
    tail -n 20 "$log" >&2
    gw_die "the gateway did not subscribe (see $log)"
  fi
}

# Markers: the proof that everything the broker acknowledged to the devices is stored. The
# gateway's counters cannot say it: .ingest.* start at 0 in each process (a restarted gateway may
# store nothing new), and buffer.last_seq counts the windowing stage's aggregate records too.
# gw_publish_markers MQTT_PORT MANIFEST WORK [COPIES]: once the devices have stopped publishing,
# sends COPIES (default 1) QoS 1 messages on the topic of each device of MANIFEST
# (devices/DEVICE/telemetry) whose payload is not telemetry, so that ingest puts them in its dead
# letters (GET /dlq lists them). The broker sends a topic's QoS 1 messages to a session in the order
# it received them, resending first what was in flight on a connection that died (MQTT 3.1.1, 4.4
# and 4.6), and ingest stores each message, or its dead letter, before it acknowledges it, one at a
# time in that order: once a device's marker is listed, everything acknowledged on its topic before
# it is stored. With [mqtt] sessions = N > 1 (one shared subscription) mosquitto hands the group's
# messages to its members in turn, so COPIES = N markers sent back to back, while every session is
# subscribed, reach each session once. Writes the markers' payloads as hex (as /dlq shows them) to
# WORK/markers.
gw_publish_markers() {
  local port=$1 manifest=$2 work=$3 copies=${4:-1} device i p payloads
  : >"$work/markers"
  for device in $(awk '{ print $1 }' "$manifest" | sort -u); do
    payloads=()
    for ((i = 1; i <= copies; i++)); do payloads+=("gw-marker $device $i $$-$RANDOM"); done
    printf '%s\n' "${payloads[@]}" |
      timeout "$(gw_scaled 10)" mosquitto_pub -p "$port" -q 1 -t "devices/$device/telemetry" -l || return 1
    for p in "${payloads[@]}"; do printf '%s' "$p" | od -An -v -tx1 | tr -d ' \n'; echo; done >>"$work/markers"
  done
}

# gw_markers_stored BASE_URL WORK: true once every marker of WORK/markers is among the newest 1000
# dead letters (the markers are the last ones once the devices have stopped).
gw_markers_stored() {
  local base=$1 work=$2 found
  found=$(gw_http "$base/dlq?limit=1000" 2>/dev/null | jq -r '.[].raw_hex' 2>/dev/null | grep -cxFf "$work/markers") || true
  ((found == $(wc -l <"$work/markers")))
}

# gw_wait_markers BASE_URL WORK SECONDS: until gw_markers_stored; on failure says how many are.
gw_wait_markers() {
  local base=$1 work=$2 deadline=$((SECONDS + $(gw_scaled "$3")))
  while ((SECONDS < deadline)); do
    gw_markers_stored "$base" "$work" && return 0
    sleep 0.2
  done
  gw_log "markers stored: $(gw_http "$base/dlq?limit=1000" | jq -r '.[].raw_hex' | grep -cxFf "$work/markers") of $(wc -l <"$work/markers")"
  return 1
}

# gw_test_ca DIR: a CA (DIR/ca.pem, ca.key), a certificate for 127.0.0.1 signed by it
# (DIR/broker.pem, broker.key; SAN IP:127.0.0.1), and another CA nobody uses (DIR/other-ca.pem),
# made by openssl for a test's TLS listeners.
gw_test_ca() {
  local tls=$1 ca
  mkdir -p "$tls"
  for ca in ca other-ca; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=edge-gateway test $ca" \
      -keyout "$tls/$ca.key" -out "$tls/$ca.pem" 2>/dev/null
  done
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/broker.key" -out "$tls/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$tls/san.ext"
  openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
    -extfile "$tls/san.ext" -out "$tls/broker.pem" 2>/dev/null
}
