# Real Apache Kafka for the tests (source it after tests/e2e/lib.sh; defines functions only): KRaft
# nodes, each broker and controller at once, on free loopback ports, fetched by
# toolchains/fetch-brokers.sh (the version its pom pins). One node, or a cluster of three with
# replication factor 3 and min.insync.replicas 2. Start-up is waited for by asking the cluster:
# every node must be listed in the metadata a client gets (kcat -L), and a topic must be created
# with the cluster's replication factor.
#
#   gw_kafka_start DIR NODES [KEY=VALUE ...]   start NODES (1 or 3) nodes under DIR, extra broker
#                                              properties appended to every node's; sets
#                                              KAFKA_BOOTSTRAP and KAFKA_LIB
#   gw_kafka_kill I / gw_kafka_start_node I    SIGKILL node I (1-based) / start it again
#   gw_kafka_create_topic NAME [KEY=VALUE ...] create a topic (1 partition, the cluster's RF)
#   gw_kafka_tool CLASS ARGS...                run one of Kafka's command-line tools' classes
#   gw_kafka_verify MANIFEST TOPIC [ARGS...]   the independent verifier (kafka_verify.py, in the venv
#                                              of toolchains/python-env.sh) over the whole topic
# Nodes are tracked with gw_track, so gw_stop_all stops them. JVM heap: KAFKA_HEAP (default 384m).
# With GW_KAFKA_TLS_PEM set (a PEM file: the node's private key, unencrypted, and its certificate
# chain), every node also gets a SASL_SSL listener (mechanisms SCRAM-SHA-512 and PLAIN) and
# KAFKA_SECURE_BOOTSTRAP names those; GW_KAFKA_USERS ("user=password ...") are its users, for both
# mechanisms (SCRAM credentials written at format time). The PLAINTEXT listener (KAFKA_BOOTSTRAP)
# stays for the tests' tools and verifiers (principal ANONYMOUS).

GW_KAFKA_DIR= GW_KAFKA_NODES=0
declare -ga GW_KAFKA_PIDS=() GW_KAFKA_PORTS=()

gw_kafka_start() {
  local dir=$1 nodes=$2 i voters= cluster_id rf min_isr
  shift 2
  GW_KAFKA_DIR=$dir GW_KAFKA_NODES=$nodes
  KAFKA_LIB=$("$(dirname "${BASH_SOURCE[0]}")/../../toolchains/fetch-brokers.sh" kafka) || gw_die "fetching Kafka failed"
  rf=$((nodes < 3 ? nodes : 3)) min_isr=$((nodes < 3 ? 1 : 2))
  local controllers=() secure=() format_args=() user plain_users=
  for user in ${GW_KAFKA_USERS:-}; do
    format_args+=(--add-scram "SCRAM-SHA-512=[name=${user%%=*},password=${user#*=}]")
    plain_users+=" user_${user%%=*}=\"${user#*=}\""
  done
  KAFKA_SECURE_BOOTSTRAP=
  for ((i = 1; i <= nodes; i++)); do
    GW_KAFKA_PORTS[i]=$(gw_free_port)
    controllers[i]=$(gw_free_port)
    if [[ -n ${GW_KAFKA_TLS_PEM:-} ]]; then
      secure[i]=$(gw_free_port)
      KAFKA_SECURE_BOOTSTRAP+="${KAFKA_SECURE_BOOTSTRAP:+,}127.0.0.1:${secure[i]}"
    fi
    voters+="${voters:+,}$i@127.0.0.1:${controllers[i]}"
  done
  # A KRaft cluster id: 16 random bytes, base64url without padding; drawn again while it starts with
  # '-' (the storage tool would take it for an option: 1 start in 64 failed so; Kafka's own
  # Uuid.randomUuid() redraws the same way).
  cluster_id=-
  while [[ $cluster_id == -* ]]; do cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); done
  KAFKA_BOOTSTRAP=
  for ((i = 1; i <= nodes; i++)); do
    mkdir -p "$dir/node$i"
    cat >"$dir/node$i/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${GW_KAFKA_PORTS[i]},CONTROLLER://127.0.0.1:${controllers[i]}${secure[i]:+,SASL_SSL://127.0.0.1:${secure[i]}}
advertised.listeners=PLAINTEXT://127.0.0.1:${GW_KAFKA_PORTS[i]}${secure[i]:+,SASL_SSL://127.0.0.1:${secure[i]}}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$dir/node$i/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
PROPS
    if [[ -n ${secure[i]:-} ]]; then
      cat >>"$dir/node$i/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain_users;
ssl.keystore.type=PEM
ssl.keystore.location=$GW_KAFKA_TLS_PEM
PROPS
    fi
    printf '%s\n' "$@" >>"$dir/node$i/server.properties"
    cat >"$dir/node$i/log4j2.properties" <<LOG
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/node$i/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
LOG
    java -cp "$KAFKA_LIB/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/node$i/server.properties" "${format_args[@]}" \
      >"$dir/node$i/format.log" 2>&1 || gw_die "formatting Kafka node $i failed (see $dir/node$i/format.log)"
    KAFKA_BOOTSTRAP+="${KAFKA_BOOTSTRAP:+,}127.0.0.1:${GW_KAFKA_PORTS[i]}"
  done
  for ((i = 1; i <= nodes; i++)); do gw_kafka_start_node "$i"; done
  gw_kafka_wait_ready 120 || gw_die "Kafka ($nodes node(s)) not ready in time (see $dir/node*/server.log)"
}

gw_kafka_start_node() {
  local i=$1 d=$GW_KAFKA_DIR/node$1
  java -Xmx"${KAFKA_HEAP:-384m}" -Xms64m -XX:+UseSerialGC -Dlog4j2.configurationFile="$d/log4j2.properties" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$d/server.properties" >>"$d/stdout.log" 2>&1 &
  GW_KAFKA_PIDS[i]=$!
  gw_track $!
}

gw_kafka_kill() {
  kill -KILL "${GW_KAFKA_PIDS[$1]}" 2>/dev/null || true
  wait "${GW_KAFKA_PIDS[$1]}" 2>/dev/null || true
}

# gw_kafka_wait_ready SECONDS: until a client's metadata lists every node and a probe topic with the
# cluster's replication factor can be created.
gw_kafka_wait_ready() {
  local deadline=$((SECONDS + $(gw_scaled "$1"))) brokers
  while ((SECONDS < deadline)); do
    brokers=$(timeout 5 kcat -L -J -b "$KAFKA_BOOTSTRAP" 2>/dev/null | jq '.brokers | length' 2>/dev/null || echo 0)
    if ((brokers == GW_KAFKA_NODES)) && gw_kafka_create_topic gw-ready-probe >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}

gw_kafka_create_topic() {
  local name=$1 configs=() kv
  shift
  for kv in "$@"; do configs+=(--config "$kv"); done
  gw_kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions 1 "${configs[@]}"
}

gw_kafka_tool() {
  local class=$1
  shift
  java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlog4j2.level=WARN -cp "$KAFKA_LIB/*" "$class" "$@"
}

gw_kafka_verify() {
  local manifest=$1 topic=$2 python
  shift 2
  python=$("$(dirname "${BASH_SOURCE[0]}")/../../toolchains/python-env.sh") || gw_die "making the Python venv failed"
  "$python" "$(dirname "${BASH_SOURCE[0]}")/kafka_verify.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$topic" \
    --manifest "$manifest" --timeout "$(gw_scaled 120)" "$@"
}
