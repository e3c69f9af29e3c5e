# Shared by the uplink end-to-end tests (kill.sh, outage.sh, ingest_full.sh, disk_full.sh, the chaos
# run): a gateway config, waiting until the uplink has acknowledged everything stored, and the
# no-loss check after a blocked gateway. Source it after lib.sh; defines functions only.

# gw_uplink_config FILE WORK MQTT_PORT HTTP_PORT BOOTSTRAP [MODE]: a config with short uplink
# timeouts, in ingest mode MODE (subscribe, the default, or plugin). Add [ingest] keys after its
# `[ingest]` line.
gw_uplink_config() {
  cat >"$1" <<CONF
gateway_id = "e2e-uplink"
[ingest]
mode = "${6:-subscribe}"
[mqtt]
url = "tcp://127.0.0.1:$3"
topics = ["devices/+/telemetry"]
client_id = "e2e-uplink-gateway"
[buffer]
path = "$2/buffer"
durability = "os"
[windowing]
size = "1s"
[uplink.kafka]
brokers = "$5"
topic = "telemetry"
linger = "20ms"
message_timeout = "5s"
read_back_timeout = "3s"
retry_backoff = "200ms"
retry_backoff_max = "2s"
[http]
listen = "127.0.0.1:$4"
CONF
}

# gw_start_box_broker BUILD SRC DIR PORT GATEWAY_CONFIG: mosquitto with the shipped settings and the
# lines `edge-gateway --mosquitto-config` prints for GATEWAY_CONFIG (the plugin, in ingest mode
# plugin). Test work directories are private to root, so the broker keeps root instead of dropping
# to its own user (the package gives that user the socket's group instead). Sets broker_pid.
gw_start_box_broker() {
  local build=$1 src=$2 dir=$3 port=$4 config=$5
  mkdir -p "$dir"
  { cat "$src/gateway/mosquitto.conf"; echo "user root"; "$build/gateway/edge-gateway" --mosquitto-config "$config"; } \
    >"$dir.template"
  if grep -q '^mode = "plugin"' "$config"; then
    grep -q '^plugin ' "$dir.template" || gw_die "--mosquitto-config printed no plugin line"
  fi
  gw_start_mosquitto "$dir" "$port" "$dir.template"
  broker_pid=${GW_PIDS[-1]}
}

# gw_start_brokers_for MODE BUILD SRC WORK: what gw_start_brokers starts for ingest mode MODE.
# Subscribe: mosquitto and kafka-mock. Plugin: kafka-mock only, and a free port for mosquitto, which
# gw_wait_box_ready starts once the gateway is up (it loads the gateway's plugin). Sets mqtt_port
# and bootstrap in the caller's shell (call it directly).
gw_start_brokers_for() {
  local mode=$1 build=$2 src=$3 work=$4
  if [[ $mode != plugin ]]; then
    gw_start_brokers "$build" "$src" "$work"
    return
  fi
  mqtt_port=$(gw_free_port)
  gw_start_kafka_mock "$build/uplink/kafka-mock" "$work" telemetry >"$work/bootstrap"
  bootstrap=$(<"$work/bootstrap")
}

# gw_wait_box_ready MODE BUILD SRC WORK HTTP_PORT: until devices may publish to the gateway whose
# config is WORK/gateway.toml. Subscribe: its subscription is confirmed. Plugin: it is healthy, then
# mosquitto starts with its plugin at mqtt_port (WORK/mosquitto; sets broker_pid).
gw_wait_box_ready() {
  local mode=$1 build=$2 src=$3 work=$4 http_port=$5
  if [[ $mode != plugin ]]; then
    gw_wait_gateway_ready "$http_port" "$work/gateway.log"
    return
  fi
  gw_wait_http "http://127.0.0.1:$http_port/healthz" 20 || gw_die "gateway not healthy (see $work/gateway.log)"
  gw_start_box_broker "$build" "$src" "$work/mosquitto" "$mqtt_port" "$work/gateway.toml"
}

# gw_outbox_drained WORK SIM_PID: the simulator of a test whose devices keep an outbox
# (firmware-sim --outbox) ends with every reading acknowledged (unacked=0). Sets `acked` (the
# readings published) in the caller's shell.
gw_outbox_drained() {
  local work=$1 sim_pid=$2
  wait "$sim_pid" || gw_die "firmware-sim failed (see $work/sim.log)"
  cat "$work/sim.out"
  grep -q ' unacked=0 ' "$work/sim.out" || gw_die "readings left unacknowledged at the end"
  acked=$(gw_manifest_readings "$work/manifest.txt")
}

# gw_caught_up_and_verify HTTP_PORT WORK VERIFY_PID: once everything is stored, the uplink catches up
# and the verifier must report every manifest reading exactly once (lost=0 duplicates=0
# redelivered=0). Sets `status` (the last /status) in the caller's shell.
gw_caught_up_and_verify() {
  local port=$1 work=$2 verify_pid=$3
  status=$(gw_wait_caught_up "$port" 120) || gw_die "uplink did not catch up (see $work/gateway.log)"
  gw_finish_verify "$work" "$verify_pid" '^delivered=[0-9]* lost=0 duplicates=0 redelivered=0 '
}

# gw_outbox_drained_and_verify HTTP_PORT WORK SIM_PID VERIFY_PID: the end of a plugin-mode test whose
# devices keep an outbox: acknowledged means stored, so nothing waits in the broker once the
# simulator is drained. Sets `acked` and `status`.
gw_outbox_drained_and_verify() {
  gw_outbox_drained "$2" "$3"
  gw_caught_up_and_verify "$1" "$2" "$4"
}

# gw_wait_caught_up HTTP_PORT SECONDS [SINK]: until the cursor of the uplink's SINK (kafka, pulsar;
# default kafka) equals the buffer's last seq (twice in a row, 1 s apart). Prints the last status.
gw_wait_caught_up() {
  local port=$1 deadline=$((SECONDS + $(gw_scaled "$2"))) sink=${3:-kafka} status last acked prev=-1
  while ((SECONDS < deadline)); do
    status=$(gw_http "http://127.0.0.1:$port/status" 2>/dev/null || true)
    last=$(jq -r '.buffer.last_seq // -1' <<<"$status" 2>/dev/null || echo -1)
    acked=$(jq -r --arg s "$sink" '.uplink[$s].last_acked_seq // -2' <<<"$status" 2>/dev/null || echo -2)
    if ((last > 0 && last == acked && last == prev)); then
      echo "$status"
      return 0
    fi
    ((last == acked)) && prev=$last || prev=-1
    sleep 1
  done
  gw_log "not caught up: last=$last acked=$acked"
  return 1
}

# gw_wait_windows_settled HTTP_PORT [JQ_CONDITION]: until every window closed and the windowing cursor
# and both Kafka sinks (raw and aggregates) reached the buffer's last seq, and JQ_CONDITION (on the
# status) holds, twice in a row 0.2 s apart (bounded: 60 s, scaled). Prints the last status.
gw_wait_windows_settled() {
  local port=$1 extra=${2:-true} status="" settled=0 i
  for ((i = 0; i < $(gw_scaled 300) && settled < 2; i++)); do
    sleep 0.2
    status=$(gw_http "http://127.0.0.1:$port/status" || true)
    if jq -e ".windowing.open_windows == 0 and .windowing.acked_seq == .buffer.last_seq
          and .uplink.kafka.last_acked_seq == .buffer.last_seq
          and .uplink.kafka_aggregates.last_acked_seq == .buffer.last_seq and ($extra)" <<<"$status" >/dev/null 2>&1; then
      settled=$((settled + 1))
    else
      settled=0
    fi
  done
  echo "$status"
  ((settled >= 2))
}

# gw_start_verifier BUILD WORK BOOTSTRAP [VERIFY FLAGS...]: firmware-sim verify consuming the
# telemetry topic while the run goes, until WORK/done exists (then 2 s idle); output in
# WORK/verify.out. Tracked; sets verify_pid in the caller's shell (call it directly).
gw_start_verifier() {
  local build=$1 work=$2 bootstrap=$3
  shift 3
  "$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --kafka "$bootstrap" --topic telemetry \
    --done-file "$work/done" --idle-exit-ms 2000 "$@" >"$work/verify.out" 2>"$work/verify.log" &
  verify_pid=$!
  gw_track $verify_pid
}

# gw_finish_verify WORK VERIFY_PID PATTERN: ends the verifier started by gw_start_verifier (WORK/done),
# shows its report and fails unless it succeeded and its report matches PATTERN (grep), e.g.
# '^delivered=[0-9]* lost=0 duplicates=0 redelivered=0 ' (duplicates: a (gateway, seq) twice;
# redelivered: an acknowledged (device, seq) stored twice).
gw_finish_verify() {
  local work=$1 verify_pid=$2 pattern=$3 rc=0
  touch "$work/done"
  wait "$verify_pid" || rc=$?
  cat "$work/verify.out"
  ((rc == 0)) || gw_die "verify failed (rc=$rc, see $work/verify.log)"
  grep -q "$pattern" "$work/verify.out" || gw_die "verify: the report does not match $pattern"
}

# gw_drain_and_verify HTTP_PORT WORK SIM_PID PUBLISHED_BEFORE VERIFY_PID: the end of a test whose
# gateway stopped acknowledging for a while (a full buffer, a full disk) with Kafka back up: the
# simulator (SIM_PID) ends; the broker must have kept taking messages (more acknowledged than
# PUBLISHED_BEFORE, counted while the gateway was blocked); ingest stores the broker's backlog (shown
# by markers, lib.sh; the broker is at mqtt_port, as gw_start_brokers set it), the uplink catches
# up, and the verifier (VERIFY_PID, consuming WORK/done-file style) must report lost=0
# duplicates=0. Sets `acked` and `status` (the last /status) in the caller's shell.
gw_drain_and_verify() {
  local port=$1 work=$2 sim_pid=$3 before=$4 verify_pid=$5
  wait "$sim_pid" || gw_die "firmware-sim failed (see $work/sim.log)"
  cat "$work/sim.out"
  acked=$(wc -l <"$work/manifest.txt")
  ((acked > before)) || gw_die "the broker stopped taking messages while the gateway was blocked"
  # The broker queued what the gateway did not take while blocked: wait until it is all stored.
  gw_publish_markers "$mqtt_port" "$work/manifest.txt" "$work" || gw_die "mosquitto_pub failed"
  gw_wait_markers "http://127.0.0.1:$port" "$work" 120 ||
    gw_die "ingest did not store everything the broker acknowledged (see $work/gateway.log)"
  status=$(gw_wait_caught_up "$port" 180) || gw_die "uplink did not catch up (see $work/gateway.log)"
  gw_finish_verify "$work" "$verify_pid" '^delivered=[0-9]* lost=0 duplicates=0 '
}
