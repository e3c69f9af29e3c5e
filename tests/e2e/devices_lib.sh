# Shared by the device-behaviour end-to-end tests (devices.sh, sources.sh): the config sections
# after [ingest], starting the gateway, and the exact checks at the end (verify, dedup counters,
# aggregates against the reference: devices_check.py). Source it after lib.sh and uplink_lib.sh;
# defines functions only. Uses $build, $src, $work, $bootstrap and $http_port.

# gw_devices_config_tail: prints [buffer] .. [http] of a config whose 1 s windows devices_check.py
# recomputes.
gw_devices_config_tail() {
  cat <<CONF
[buffer]
path = "$work/buffer"
durability = "os"
[windowing]
size = "1s"
idle_timeout = "2s"
allowed_lateness = "1s"
max_late = 100000
[uplink.kafka]
brokers = "$bootstrap"
topic = "telemetry"
aggregates_topic = "telemetry-aggregates"
linger = "20ms"
[http]
listen = "127.0.0.1:$http_port"
CONF
}

# gw_devices_start_gateway: checks $work/gateway.toml, starts the gateway and waits until it is ready.
gw_devices_start_gateway() {
  "$build/gateway/edge-gateway" --check-config "$work/gateway.toml" >/dev/null
  "$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
  gw_track $!
  local mode
  mode=$(sed -n 's/^mode = "\(.*\)"$/\1/p' "$work/gateway.toml")
  gw_wait_box_ready "${mode:-subscribe}" "$build" "$src" "$work" "$http_port"
}

# gw_devices_settle: waits (bounded) until every window closed and the windowing cursor and both
# sinks reached the buffer's last seq, twice in a row; keeps /status, /metrics, /late and the
# conflicting_duplicate dead letters in $work.
gw_devices_settle() {
  local status
  status=$(gw_wait_windows_settled "$http_port") \
    || { echo "$status" >&2; gw_die "windows did not all close, or a sink did not catch up"; }
  echo "$status" >"$work/status.json"
  gw_http "http://127.0.0.1:$http_port/metrics" >"$work/metrics.txt"
  gw_http "http://127.0.0.1:$http_port/late?limit=10000" >"$work/late.json" || echo '[]' >"$work/late.json"
  gw_http "http://127.0.0.1:$http_port/dlq?reason=conflicting_duplicate&limit=1000" >"$work/dlq.json"
}

# gw_devices_verify: every reading of $work/manifest.txt once in Kafka, then devices_check.py on the
# files in $work (published.jsonl, injected.json and what gw_devices_settle kept).
gw_devices_verify() {
  "$build/uplink/uplink-cat" --kafka "$bootstrap" --topic telemetry --idle-exit-ms 2000 >"$work/records.jsonl"
  "$build/firmware-sim/firmware-sim" verify --manifest "$work/manifest.txt" --records "$work/records.jsonl" \
    | tee "$work/verify.out"
  grep -q 'lost=0 duplicates=0 ' "$work/verify.out" || gw_die "verify: loss or duplicates"
  "$build/uplink/uplink-cat" --kafka "$bootstrap" --topic telemetry-aggregates --idle-exit-ms 2000 \
    >"$work/aggregates.jsonl"
  python3 "$src/tests/e2e/devices_check.py" "$work" || gw_die "devices_check failed (work dir kept with KEEP=1)"
}
