#!/usr/bin/env bash
# End-to-end, the readers where the data goes (uplink/consumers): firmware-sim -> mosquitto (the
# gateway's plugin) -> edge-gateway -> a real Apache Kafka; then the Python package
# (`python -m gwbatch`, installed by uplink.consumers_python) and the Java consumer example (built by
# uplink.consumers_java) each read the telemetry topic and the aggregates topic. The records each
# prints must equal firmware-sim's manifest (count, device, boot id, seq) with the values it
# published (--record), and the two readers' aggregates must be equal (tests/e2e/consumers_check.py).
#   tests/e2e/consumers.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
source "$src/tests/support/kafka.sh"
work=$(mktemp -d /tmp/gw-e2e-consumers.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT
py=$("$src/toolchains/python-env.sh")
site=$build/consumers/python/site classpath=$build/consumers/java/classpath.txt
[[ -d $site/gwbatch ]] || gw_die "the Python package is not installed in $site (ctest uplink.consumers_python)"
[[ -f $classpath ]] || gw_die "the Java reader is not built (ctest uplink.consumers_java)"

http_port=$(gw_free_port) mqtt_port=$(gw_free_port)
gw_kafka_start "$work/kafka" 1
bootstrap=$KAFKA_BOOTSTRAP
gw_kafka_create_topic telemetry >/dev/null
gw_kafka_create_topic telemetry-aggregates >/dev/null
gw_uplink_config "$work/gateway.toml" "$work" "$mqtt_port" "$http_port" "$bootstrap" plugin
# Windows of silent devices close 2 s after their last event (the default waits a minute).
sed -i 's/^size = "1s"$/&\nidle_timeout = "2s"/' "$work/gateway.toml"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_box_ready plugin "$build" "$src" "$work" "$http_port"

sim() { "$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --qos 1 --rate 50 "$@" >/dev/null; }
sim --devices 10 --count 60 --boot-id --seed 11 --manifest "$work/m1.txt" --record "$work/r1.jsonl"
data="$src/../shared/data/intel-lab-ibrl"
if [[ -d $data ]]; then  # real sensor values: decimal columns as motes report them
  sim --devices 4 --count 40 --device-prefix mote- --data "$data" --manifest "$work/m2.txt" --record "$work/r2.jsonl"
fi
cat "$work"/m*.txt >"$work/manifest.txt"
cat "$work"/r*.jsonl >"$work/published.jsonl"
gw_publish_markers "$mqtt_port" "$work/manifest.txt" "$work" || gw_die "mosquitto_pub failed"
gw_wait_markers "http://127.0.0.1:$http_port" "$work" 60 || gw_die "not everything acknowledged was stored"
gw_wait_windows_settled "$http_port" >/dev/null || gw_die "the windows and sinks did not settle"
gw_log "$(wc -l <"$work/manifest.txt") readings acknowledged, all upstream"

java_reader() {
  timeout 120 java -cp "$build/consumers/java/target/classes:$(<"$classpath")" dev.edgegateway.batch.example.ConsumerExample \
    --bootstrap "$bootstrap" --idle-exit-ms 3000 "$@"
}
# Python with --dedup (each (gateway, seq) once; nothing to remove here), Java without.
for topic in telemetry telemetry-aggregates; do
  PYTHONPATH=$site timeout 120 "$py" -m gwbatch --bootstrap "$bootstrap" --topic "$topic" --idle-exit-ms 3000 --dedup \
    >"$work/python-$topic.jsonl" 2>>"$work/python.log" || gw_die "python -m gwbatch failed (see $work/python.log)"
  java_reader --topic "$topic" >"$work/java-$topic.jsonl" 2>>"$work/java.log" ||
    gw_die "the Java consumer failed (see $work/java.log)"
done
"$py" "$src/tests/e2e/consumers_check.py" --manifest "$work/manifest.txt" --published "$work/published.jsonl" \
  --reader "python=$work/python-telemetry.jsonl" --reader "java=$work/java-telemetry.jsonl" \
  --aggregates "python=$work/python-telemetry-aggregates.jsonl" --aggregates "java=$work/java-telemetry-aggregates.jsonl" ||
  gw_die "a reader's records differ from what was published"
# And the check can fail: a reading more in the manifest than the readers printed.
{ cat "$work/manifest.txt"; echo "dev-1 999999 0"; } >"$work/manifest-plus-one.txt"
if "$py" "$src/tests/e2e/consumers_check.py" --manifest "$work/manifest-plus-one.txt" --published "$work/published.jsonl" \
  --reader "python=$work/python-telemetry.jsonl" >"$work/negative.out"; then
  gw_die "consumers_check missed a reading the readers did not print: $(<"$work/negative.out")"
fi
echo "e2e.consumers: OK"
