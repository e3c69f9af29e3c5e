# Real Apache Pulsar for the tests (source it after tests/e2e/lib.sh; defines functions only): Pulsar
# standalone (one broker, one bookie, RocksDB metadata, the WebSocket service inside the broker,
# functions worker and stream storage off) on free loopback ports, fetched by
# toolchains/fetch-brokers.sh (the version its pom pins). Start-up is waited for by asking the
# broker: its admin API must list the public/default namespace, which standalone creates last.
#
#   gw_pulsar_start DIR [KEY=VALUE ...]   start it under DIR, extra broker properties appended; sets
#                                         PULSAR_WS_URL (ws://127.0.0.1:PORT), PULSAR_HTTP_URL,
#                                         PULSAR_URL (pulsar://127.0.0.1:PORT) and PULSAR_LIB
#   gw_pulsar_kill / gw_pulsar_restart    SIGKILL the broker / start it again on the same ports and data
#   gw_pulsar_admin METHOD PATH [CURL ARGS...]   the admin REST API (as the superuser when tokens are on)
#   gw_pulsar_verify MANIFEST TOPIC [ARGS...]    the independent verifier (pulsar_verify.py: the
#                                         official Python client, in the venv of toolchains/python-env.sh;
#                                         MANIFEST "" with --record-type aggregate)
# With GW_PULSAR_TOKENS=1, token authentication and authorization are on (a secret key of its own;
# PULSAR_ADMIN_TOKEN is the superuser's token; gw_pulsar_token ROLE makes a role's token, and
# gw_pulsar_grant ROLE ACTIONS grants it on public/default). With GW_PULSAR_TLS_PEM and
# GW_PULSAR_TLS_KEY set (a certificate chain and its key, PEM), the web service also listens with
# TLS and PULSAR_WSS_URL names it. The broker is tracked with gw_track, so gw_stop_all stops it.
# JVM heap: PULSAR_HEAP (default 384m).

GW_PULSAR_DIR= GW_PULSAR_PID=

gw_pulsar_start() {
  local dir=$1
  shift
  GW_PULSAR_DIR=$dir
  PULSAR_LIB=$("$(dirname "${BASH_SOURCE[0]}")/../../toolchains/fetch-brokers.sh" pulsar) || gw_die "fetching Pulsar failed"
  mkdir -p "$dir"
  local web=$(gw_free_port) broker=$(gw_free_port) bookie=$(gw_free_port) web_tls=
  [[ -n ${GW_PULSAR_TLS_PEM:-} ]] && web_tls=$(gw_free_port)
  PULSAR_HTTP_URL=http://127.0.0.1:$web PULSAR_WS_URL=ws://127.0.0.1:$web PULSAR_URL=pulsar://127.0.0.1:$broker
  PULSAR_WSS_URL=${web_tls:+wss://127.0.0.1:$web_tls}
  echo "$bookie" >"$dir/bookie.port"
  cat >"$dir/standalone.conf" <<PROPS
clusterName=standalone
bindAddress=127.0.0.1
advertisedAddress=127.0.0.1
brokerServicePort=$broker
webServicePort=$web
${web_tls:+webServicePortTls=$web_tls}
${web_tls:+tlsCertificateFilePath=$GW_PULSAR_TLS_PEM}
${web_tls:+tlsKeyFilePath=$GW_PULSAR_TLS_KEY}
webSocketServiceEnabled=true
functionsWorkerEnabled=false
transactionCoordinatorEnabled=false
managedLedgerDefaultEnsembleSize=1
managedLedgerDefaultWriteQuorum=1
managedLedgerDefaultAckQuorum=1
brokerShutdownTimeoutMs=3000
loadBalancerEnabled=false
PROPS
  if [[ -n ${GW_PULSAR_TOKENS:-} ]]; then
    head -c 32 /dev/urandom >"$dir/secret.key"
    PULSAR_ADMIN_TOKEN=$(gw_pulsar_token admin)
    cat >>"$dir/standalone.conf" <<PROPS
authenticationEnabled=true
authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken
tokenSecretKey=file://$dir/secret.key
authorizationEnabled=true
superUserRoles=admin
brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken
brokerClientAuthenticationParameters=token:$PULSAR_ADMIN_TOKEN
PROPS
  fi
  printf '%s\n' "$@" >>"$dir/standalone.conf"
  cat >"$dir/log4j2.properties" <<LOG
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/broker.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
LOG
  local started=$SECONDS
  gw_pulsar_restart
  PULSAR_START_SECONDS=$((SECONDS - started))
}

gw_pulsar_restart() {
  local d=$GW_PULSAR_DIR
  (cd "$d" && exec java -Xmx"${PULSAR_HEAP:-384m}" -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$d/log4j2.properties" -Dpulsar.allocator.exit_on_oom=true \
    -Dio.netty.tryReflectionSetAccessible=true --add-opens java.base/java.nio=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.misc=ALL-UNNAMED --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-exports java.base/jdk.internal.platform=ALL-UNNAMED --add-exports java.management/sun.management=ALL-UNNAMED \
    -cp "$PULSAR_LIB/*" org.apache.pulsar.PulsarStandaloneStarter --config "$d/standalone.conf" \
    --no-functions-worker --no-stream-storage --metadata-dir "$d/metadata" --bookkeeper-dir "$d/bookkeeper" \
    --bookkeeper-port "$(<"$d/bookie.port")" >>"$d/stdout.log" 2>&1) &
  GW_PULSAR_PID=$!
  gw_track $!
  gw_pulsar_wait_ready 180 || gw_die "Pulsar not ready in time (see $d/broker.log, $d/stdout.log)"
}

gw_pulsar_kill() {
  kill -KILL "$GW_PULSAR_PID" 2>/dev/null || true
  wait "$GW_PULSAR_PID" 2>/dev/null || true
}

gw_pulsar_admin() {
  local method=$1 path=$2
  shift 2
  curl -fsS --max-time 10 -X "$method" ${PULSAR_ADMIN_TOKEN:+-H "Authorization: Bearer $PULSAR_ADMIN_TOKEN"} \
    "$PULSAR_HTTP_URL/admin/v2/$path" "$@"
}

# gw_pulsar_wait_ready SECONDS: until the admin API lists public/default (standalone's last step).
gw_pulsar_wait_ready() {
  local deadline=$((SECONDS + $(gw_scaled "$1")))
  while ((SECONDS < deadline)); do
    kill -0 "$GW_PULSAR_PID" 2>/dev/null || return 1
    gw_pulsar_admin GET namespaces/public 2>/dev/null | jq -e 'index("public/default") != null' >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

# gw_pulsar_token ROLE: an HS256 JWT with subject ROLE signed with the broker's secret key (what
# Pulsar's `tokens create --secret-key` makes).
gw_pulsar_token() {
  local b64url='base64 -w0 | tr "+/" "-_" | tr -d "="' header payload signature
  header=$(printf '{"alg":"HS256"}' | eval "$b64url")
  payload=$(printf '{"sub":"%s"}' "$1" | eval "$b64url")
  signature=$(printf '%s.%s' "$header" "$payload" |
    openssl dgst -sha256 -mac HMAC -macopt hexkey:"$(od -An -tx1 -v "$GW_PULSAR_DIR/secret.key" | tr -d ' \n')" -binary |
    eval "$b64url")
  echo "$header.$payload.$signature"
}

gw_pulsar_grant() {
  gw_pulsar_admin POST "namespaces/public/default/permissions/$1" -H 'Content-Type: application/json' \
    -d "$(jq -cn --arg a "$2" '$a | split(",")')"
}

gw_pulsar_verify() {
  local manifest=$1 topic=$2 python
  shift 2
  python=$("$(dirname "${BASH_SOURCE[0]}")/../../toolchains/python-env.sh") || gw_die "making the Python venv failed"
  "$python" "$(dirname "${BASH_SOURCE[0]}")/pulsar_verify.py" --service-url "$PULSAR_URL" --topic "$topic" \
    ${manifest:+--manifest "$manifest"} --timeout "$(gw_scaled 120)" ${PULSAR_ADMIN_TOKEN:+--token "$PULSAR_ADMIN_TOKEN"} "$@"
}
