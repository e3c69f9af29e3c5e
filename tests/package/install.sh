#!/usr/bin/env bash
# Package test: cpack -G DEB in BUILD_DIR, `apt-get install ./edge-gateway_*.deb`, checks what the
# package put in place (user, state directory, conffiles, unit), starts the installed edge-gateway
# as its systemd unit would (no systemd as PID 1 needed: ExecStart read from the unit, run as the
# unit's User/Group with NoNewPrivileges, against a private mosquitto that loads the package's
# drop-in with the gateway's plugin (ingest mode plugin: mosquitto as its own user connects to the
# gateway's socket through the group), and the installed kafka-mock), checks /healthz and that
# published events reach Kafka,
# stops it with the unit's KillSignal, then purges the package and checks nothing is left.
#   tests/package/install.sh BUILD_DIR SOURCE_DIR
# Exit 77 (ctest: skipped) when not root or when an edge-gateway package is already installed.
set -euo pipefail
build=$1 src=$2
if [[ $(id -u) -ne 0 ]]; then echo "package test: needs root (installs a package); skipped"; exit 77; fi
if dpkg-query -W -f='${Status}' edge-gateway 2>/dev/null | grep -q 'installed'; then
  echo "package test: an edge-gateway package is already installed here; skipped (not touching it)"
  exit 77
fi
source "$src/tests/e2e/lib.sh"
work=$(mktemp -d /tmp/gw-pkg.XXXXXX)
chmod 0755 "$work"
installed=0
cleanup() {
  gw_stop_all
  if ((installed)); then apt-get purge -y -qq edge-gateway >/dev/null 2>&1 || dpkg --purge edge-gateway || true; fi
  [[ ${KEEP:-} ]] || rm -rf "$work"
  rm -rf /run/edge-gateway  # what systemd's RuntimeDirectory= would remove
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive

# 1. Build and install the package (cpack installs from the build tree: bring it up to date first,
#    a no-op after the usual build).
cmake --build "$build" >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; gw_die "build failed"; }
(cd "$build" && cpack -G DEB -B "$work/deb" >"$work/cpack.log") || { cat "$work/cpack.log"; gw_die "cpack failed"; }
deb=$(ls "$work"/deb/edge-gateway_*.deb)
gw_log "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"
dpkg-deb -f "$deb" Package Version Architecture Depends
installed=1
apt-get install -y -qq --no-install-recommends "$deb" >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; gw_die "apt-get install failed"; }

# 2. What the package put in place: for this system's Debian release (its version names it; Debian
# 13 has merged /usr and keeps units in /usr/lib/systemd, Debian 12 in /lib/systemd).
release=$(. /etc/os-release && echo "$VERSION_ID")
systemd=/lib/systemd/system
((release >= 13)) && systemd=/usr/lib/systemd/system
version=$(dpkg-query -W -f='${Version}' edge-gateway)
[[ $version == *"~deb$release" ]] || gw_die "package version $version does not name Debian $release"
dpkg -L edge-gateway | grep -qx "$systemd/edge-gateway.service" ||
  gw_die "the unit is not in $systemd: $(dpkg -L edge-gateway | grep 'edge-gateway.service$')"
unit=$systemd/edge-gateway.service
conf=/etc/edge-gateway/edge-gateway.toml
for f in /usr/bin/edge-gateway /usr/bin/firmware-sim /usr/bin/uplink-cat /usr/bin/kafka-mock "$unit" "$conf" \
  /etc/mosquitto/conf.d/edge-gateway.conf /usr/lib/edge-gateway/edge_gateway_mosquitto.so \
  "$systemd/mosquitto.service.d/edge-gateway.conf"; do
  [[ -e $f ]] || gw_die "package did not install $f"
done
getent passwd edge-gateway >/dev/null || gw_die "postinst did not create the user edge-gateway"
id -nG edge-gateway | grep -qw mosquitto || gw_die "postinst did not put edge-gateway in the group mosquitto"
grep -q '^After=edge-gateway.service' "$systemd/mosquitto.service.d/edge-gateway.conf" ||
  gw_die "mosquitto is not ordered after the gateway"
[[ $(stat -c '%U:%G %a' /var/lib/edge-gateway) == "edge-gateway:edge-gateway 750" ]] ||
  gw_die "/var/lib/edge-gateway is $(stat -c '%U:%G %a' /var/lib/edge-gateway)"
dpkg-query --control-show edge-gateway conffiles | grep -qx "$conf" || gw_die "$conf is not a conffile"
for key in NoNewPrivileges=yes ProtectSystem=strict Restart=on-failure TimeoutStopSec= User=edge-gateway; do
  grep -q "^$key" "$unit" || gw_die "unit lacks $key"
done
if command -v systemd-analyze >/dev/null; then
  # Verifies the unit's syntax and that ExecStart exists (warnings about the missing systemd
  # instance in a container are expected; errors on our unit are not).
  systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || true
  if grep -i 'edge-gateway.service' "$work/verify.log" | grep -qiv 'warning\|Failed to\|not found\|fake'; then
    cat "$work/verify.log"; gw_die "systemd-analyze verify complains about the unit"
  fi
fi
/usr/bin/edge-gateway --check-config "$conf" || gw_die "the shipped config does not pass --check-config"

# 3. Run the installed binary as the unit does: its User/Group, NoNewPrivileges, its
#    WorkingDirectory and ExecStart, with the shipped config changed only in the addresses (free
#    ports on loopback) and kept otherwise (buffer in /var/lib/edge-gateway).
mqtt_port=$(gw_free_port)
http_port=$(gw_free_port)
{ cat /etc/mosquitto/conf.d/edge-gateway.conf; echo "allow_anonymous true"; } >"$work/mosquitto.tmpl"
gw_start_mosquitto "$work/mosquitto" "$mqtt_port" "$work/mosquitto.tmpl"
# Not in $(...): the helper must track kafka-mock in this shell, or gw_stop_all misses it.
gw_start_kafka_mock /usr/bin/kafka-mock "$work" telemetry >"$work/bootstrap"
bootstrap=$(<"$work/bootstrap")
sed -e "s|^url = .*|url = \"tcp://127.0.0.1:$mqtt_port\"|" \
    -e "s|^brokers = .*|brokers = \"$bootstrap\"|" \
    -e "s|^listen = .*|listen = \"127.0.0.1:$http_port\"|" "$conf" >"$work/edge-gateway.toml"
chown root:edge-gateway "$work/edge-gateway.toml"; chmod 0640 "$work/edge-gateway.toml"
unit_value() { sed -n "s/^$1=//p" "$unit" | head -n1; }
user=$(unit_value User) group=$(unit_value Group) workdir=$(unit_value WorkingDirectory)
read -r -a exec_start <<<"$(unit_value ExecStart)"
exec_start=("${exec_start[@]/#$conf/$work/edge-gateway.toml}")
gw_log "ExecStart as $user:$group in $workdir: ${exec_start[*]}"
# RuntimeDirectory=edge-gateway with its mode, as systemd would create it.
install -d -o "$user" -g "$group" -m "$(unit_value RuntimeDirectoryMode)" /run/edge-gateway
(cd "$workdir" && exec setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs \
  "${exec_start[@]}") >"$work/gateway.log" 2>&1 &
gw_pid=$!
gw_track $gw_pid
gw_wait_http "http://127.0.0.1:$http_port/healthz" 20 || { tail -n 30 "$work/gateway.log"; gw_die "gateway not healthy"; }
[[ $(stat -c '%G %a' /run/edge-gateway/ingest.sock) == "mosquitto 660" ]] ||
  gw_die "plugin socket is $(stat -c '%U:%G %a' /run/edge-gateway/ingest.sock)"
gw_log "/healthz: $(gw_http "http://127.0.0.1:$http_port/healthz" | head -c 200)"
[[ $(stat -c %U /proc/$gw_pid) == "$user" ]] || gw_die "gateway does not run as $user"
[[ -n $(find /var/lib/edge-gateway -mindepth 1 -user "$user" -print -quit) ]] || gw_die "no state written in /var/lib/edge-gateway"

/usr/bin/firmware-sim --broker "tcp://127.0.0.1:$mqtt_port" --devices 5 --count 20 --rate 100 --qos 1 \
  --seed 3 --manifest "$work/manifest.txt" >"$work/sim.out"
for ((i = 0; i < 300; i++)); do
  status=$(gw_http "http://127.0.0.1:$http_port/status" || true)
  sent=$(jq -r '.uplink.kafka.last_acked_seq // 0' <<<"$status" 2>/dev/null || echo 0)
  ((sent >= 100)) && break
  sleep 0.2
done
if ((sent < 100)); then
  echo "--- /status"; echo "$status"; echo "--- gateway log (tail)"; tail -n 40 "$work/gateway.log"
  echo "--- firmware-sim"; cat "$work/sim.out"
  gw_die "uplink acknowledged $sent of 100 events"
fi

# Graceful stop, as systemd would (KillSignal, then TimeoutStopSec).
kill -"$(unit_value KillSignal | sed 's/^SIG//')" "$gw_pid"
stop_timeout=$(unit_value TimeoutStopSec | tr -dc 0-9)
for ((i = 0; i < stop_timeout * 10; i++)); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$gw_pid" 2>/dev/null; then gw_die "gateway still running ${stop_timeout}s after SIGTERM"; fi
wait "$gw_pid" && rc=0 || rc=$?
((rc == 0)) || { cat "$work/gateway.log"; gw_die "gateway exited with $rc on SIGTERM"; }

# 4. Purge: nothing of the package may remain.
installed=0
apt-get purge -y -qq edge-gateway >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; gw_die "purge failed"; }
for f in /usr/bin/edge-gateway "$unit" /etc/edge-gateway /etc/mosquitto/conf.d/edge-gateway.conf /var/lib/edge-gateway; do
  [[ ! -e $f ]] || gw_die "$f left after purge"
done
! getent passwd edge-gateway >/dev/null || gw_die "user edge-gateway left after purge"
! getent group edge-gateway >/dev/null || gw_die "group edge-gateway left after purge"
! dpkg-query -W edge-gateway >/dev/null 2>&1 || dpkg-query -W -f='${Status}' edge-gateway | grep -q 'not-installed' ||
  gw_die "dpkg still knows edge-gateway: $(dpkg-query -W -f='${Status}' edge-gateway)"
echo "package test: $(basename "$deb") installed, ran as $user (healthz ok, 100 events upstream), purged cleanly OK"
