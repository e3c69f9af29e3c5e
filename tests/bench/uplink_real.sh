#!/usr/bin/env bash
# bench-uplink against a real Apache Kafka and a real Apache Pulsar (not a ctest; run on demand):
# one KRaft node of tests/support/kafka.sh and a Pulsar standalone of tests/support/pulsar.sh on
# loopback, the same records sent by the Kafka sink (idempotent, then exactly_once), by a plain
# librdkafka producer one stored payload per message, by a plain producer of our batch values, and
# by the Pulsar sink through the WebSocket API (build/uplink/bench-uplink --brokers --pulsar).
# Besides its lines, prints what each Kafka topic takes in the broker's log (its partition's record
# batches, with their headers) per record: the bytes on the wire, near enough (plus request
# framing); and what the Pulsar topic stores per record (its ledgers' entries, from the admin API).
#   tests/bench/uplink_real.sh [BUILD_DIR] [bench-uplink flags, e.g. --records 200000]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
shift $(($# > 0 ? 1 : 0))
source "$src/tests/e2e/lib.sh"
source "$src/tests/support/kafka.sh"
source "$src/tests/support/pulsar.sh"
work=$(mktemp -d /tmp/gw-bench-uplink.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT
cmake --build "$build" --target bench-uplink >/dev/null

topics=(uplink-idempotent uplink-exactly-once plain-per-record plain-batches)
gw_kafka_start "$work/kafka" 1
for t in "${topics[@]}"; do gw_kafka_create_topic "$t" >/dev/null; done
gw_pulsar_start "$work/pulsar"
gw_log "Apache Kafka at $KAFKA_BOOTSTRAP, Apache Pulsar at $PULSAR_WS_URL"
"$build/uplink/bench-uplink" --brokers "$KAFKA_BOOTSTRAP" --pulsar "$PULSAR_WS_URL" "$@" | tee "$work/bench.out"
records=100000 prev=
for arg in "$@"; do
  [[ $arg == --quick ]] && records=20000
  [[ $prev == --records ]] && records=$arg
  prev=$arg
done
declare -A bytes
for t in "${topics[@]}"; do
  # The record batches only: a partition's index files are preallocated (10 MiB each).
  bytes[$t]=$(cat "$work/kafka/node1/data/$t-0"/*.log | wc -c)
  awk -v t="$t" -v b="${bytes[$t]}" -v n="$records" 'BEGIN { printf "BENCH log_bytes.%s %.2f bytes/record\n", t, b / n }'
done
awk -v a="${bytes[uplink-idempotent]}" -v b="${bytes[plain-per-record]}" \
  'BEGIN { printf "RATIO log_bytes.uplink_vs_plain_per_record %.3f\n", a / b }'
pulsar_bytes=$(gw_pulsar_admin GET persistent/public/default/uplink-pulsar/internalStats | jq '.totalSize')
awk -v b="$pulsar_bytes" -v n="$records" 'BEGIN { printf "BENCH stored_bytes.pulsar_uplink %.2f bytes/record\n", b / n }'
