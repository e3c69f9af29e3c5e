# Shared by the uplink end-to-end tests (kill.sh, outage.sh): a gateway config, and waiting until
# the uplink has acknowledged everything stored. Source it after lib.sh; defines functions only.

# gw_uplink_config FILE WORK MQTT_PORT HTTP_PORT BOOTSTRAP: a config with short uplink timeouts.
gw_uplink_config() {
  cat >"$1" <<CONF
gateway_id = "e2e-uplink"
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

# gw_wait_caught_up HTTP_PORT SECONDS: until the uplink's cursor equals the buffer's last seq
# (twice in a row, 1 s apart). Prints the last status.
gw_wait_caught_up() {
  local port=$1 deadline=$((SECONDS + $(gw_scaled "$2"))) status last acked prev=-1
  while ((SECONDS < deadline)); do
    status=$(gw_http "http://127.0.0.1:$port/status" 2>/dev/null || true)
    last=$(jq -r '.buffer.last_seq // -1' <<<"$status" 2>/dev/null || echo -1)
    acked=$(jq -r '.uplink.kafka.last_acked_seq // -2' <<<"$status" 2>/dev/null || echo -2)
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
