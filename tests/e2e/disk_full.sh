#!/usr/bin/env bash
# End-to-end: the disk really fills up. The buffer lives on a small filesystem of its own (an ext4
# image on a loop device; a size-limited tmpfs where loop devices are not available). With Kafka
# down the buffer grows; once it has grown to its first map (16 MiB), a filler file takes every
# free block, so reserving the larger map fails with ENOSPC. Then:
# - the gateway keeps serving HTTP (/healthz, /status) while full;
# - /status says buffer.no_space (no_space_total counts) and appends wait (blocked_appends, as
#   under overflow = block), and ingest stops storing (events_stored stalls);
# - once the filler is deleted the append resumes by itself, Kafka comes back, and every reading
#   reaches Kafka exactly once: firmware-sim verify lost=0 duplicates=0.
# MODE plugin (the default; mosquitto runs the gateway's plugin): while the disk is full the box
# refuses (no PUBACK, the device is disconnected) and the devices, with an outbox as a device SDK
# keeps one, send again after their reconnect: every reading they published must arrive. MODE
# subscribe: the broker acknowledges and queues for the gateway's session meanwhile, and every
# acknowledged reading must arrive.
# Needs root (mount); exits 77 (ctest SKIP) when no small filesystem can be mounted.
# GW_DISK_FULL_FS=tmpfs skips the ext4 image (to run the tmpfs variant where loop devices work).
#   tests/e2e/disk_full.sh BUILD_DIR SOURCE_DIR [MODE]
set -euo pipefail
build=$1 src=$2 mode=${3:-plugin}
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-e2e-diskfull.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"

cleanup() {
  gw_stop_all
  local i
  for ((i = 0; i < 20; i++)); do
    mountpoint -q "$mnt" || break
    umount "$mnt" 2>/dev/null && break
    sleep 0.25
  done
  mountpoint -q "$mnt" && umount -l "$mnt" 2>/dev/null || true
  [[ ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

# The small filesystem: ext4 on a loop device (closest to a real device), else tmpfs with a size.
fs_kind=
if [[ $(id -u) -ne 0 ]]; then
  echo "e2e.disk_full: SKIP (mounting a filesystem needs root)"
  exit 77
fi
if [[ ${GW_DISK_FULL_FS:-ext4} == ext4 ]] && command -v mkfs.ext4 >/dev/null && truncate -s 96M "$work/fs.img" && mkfs.ext4 -q -F -m 0 "$work/fs.img" &&
  mount -o loop "$work/fs.img" "$mnt" 2>"$work/mount.err"; then
  fs_kind=ext4-loop
elif mount -t tmpfs -o size=96m tmpfs "$mnt" 2>>"$work/mount.err"; then
  fs_kind=tmpfs
else
  echo "e2e.disk_full: SKIP (neither a loop-mounted ext4 image nor a tmpfs could be mounted: $(tr '\n' ' ' <"$work/mount.err"))"
  exit 77
fi
gw_log "buffer on $fs_kind at $mnt: $(df -h --output=size,avail "$mnt" | tail -n1)"
avail_bytes() { df -B1 --output=avail "$mnt" | tail -n1 | tr -d ' '; }

http_port=$(gw_free_port)
base=http://127.0.0.1:$http_port
gw_start_brokers_for "$mode" "$build" "$src" "$work"
gw_uplink_config "$work/gateway.toml" "$mnt" "$mqtt_port" "$http_port" "$bootstrap" "$mode"
# max_bytes far above the filesystem: the disk, not the budget, is what runs out. The dead letters
# stay off the small filesystem (nothing here is malformed anyway).
sed -i "s/^durability = \"os\"\$/durability = \"os\"\nmax_bytes = \"1GiB\"\noverflow = \"block\"/" "$work/gateway.toml"
sed -i "s|^\\[ingest\\]\$|[ingest]\ndead_letters_path = \"$work/dead-letters\"|" "$work/gateway.toml"
"$build/gateway/edge-gateway" --check-config "$work/gateway.toml" >/dev/null
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gateway_pid=$!
gw_track $gateway_pid
gw_wait_box_ready "$mode" "$build" "$src" "$work" "$http_port"
status=$(gw_http "$base/status")
map0=$(jq -r '.buffer.map_bytes' <<<"$status")
gw_log "gateway up: map $map0 bytes, $(avail_bytes) bytes free on $fs_kind"

gw_start_verifier "$build" "$work" "$bootstrap"

# Kafka down: nothing is trimmed, so the buffer must grow, and the disk decides.
echo down >&7
gw_log "kafka down"
# The filler takes every free block now (the first map is already reserved), so the first growth
# meets ENOSPC.
filler=$mnt/filler
fallocate -l "$(($(avail_bytes) - 64 * 1024))" "$filler" 2>/dev/null ||
  dd if=/dev/zero of="$filler" bs=1M status=none 2>/dev/null || true
gw_log "filler $(stat -c %s "$filler") bytes; $(avail_bytes) bytes free"

outbox=()
[[ $mode == plugin ]] && outbox=(--outbox --drain-timeout 120)
"$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --devices 40 --rate 100 --duration 60 \
  --qos 1 --seed 21 --format json "${outbox[@]}" --manifest "$work/manifest.txt" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
gw_track $sim_pid

# Until the buffer reports the disk full (bounded; 4000 events/s fill the 16 MiB map in about 15 s).
status=
for ((i = 0; i < 450; i++)); do
  status=$(gw_http "$base/status" || true)
  [[ $(jq -r '.buffer.no_space // false' <<<"$status") == true ]] && break
  kill -0 "$sim_pid" 2>/dev/null || break
  sleep 0.2
done
[[ $(jq -r '.buffer.no_space' <<<"$status") == true ]] ||
  gw_die "the buffer never reported no_space: $(jq -c .buffer <<<"$status") (see $work/gateway.log)"
grep -q 'ENOSPC' "$work/gateway.log" || gw_die "the gateway did not log the full filesystem"
stored1=$(jq -r '.ingest.events_stored' <<<"$status")
published1=$(gw_manifest_readings "$work/manifest.txt")
gw_log "disk full: $(jq -c '.buffer | {records, bytes, map_bytes, no_space, no_space_total, blocked_appends, full}' <<<"$status")"

# While full: HTTP keeps answering, the block is shown, and ingest does not store.
for ((i = 0; i < 5; i++)); do
  gw_http "$base/healthz" >/dev/null || gw_die "/healthz did not answer while the disk was full"
  status=$(gw_http "$base/status") || gw_die "/status did not answer while the disk was full"
  gw_http "$base/metrics" >/dev/null || gw_die "/metrics did not answer while the disk was full"
  sleep 1
done
stored2=$(jq -r '.ingest.events_stored' <<<"$status")
gw_log "still full after 5 s: stored $stored1 -> $stored2, $(jq -c '.buffer | {no_space, no_space_total, blocked_appends, blocked_total}' <<<"$status")"
[[ $(jq -r '.buffer.no_space' <<<"$status") == true ]] || gw_die "no_space cleared while the disk was still full"
(($(jq -r '.buffer.no_space_total' <<<"$status") >= 2)) || gw_die "no_space_total does not count the retries"
(($(jq -r '.buffer.blocked_appends' <<<"$status") >= 1)) || gw_die "/status shows no blocked append"
(($(jq -r '.buffer.blocked_total' <<<"$status") >= 1)) || gw_die "blocked_total does not count the episode"
# 4000 events/s arrive; only what fits in pages freed inside the map (windowing state) may go in.
((stored2 - stored1 <= 150)) || gw_die "ingest kept storing while the disk was full ($stored1 -> $stored2)"
kill -0 "$gateway_pid" 2>/dev/null || gw_die "the gateway died on the full disk"

# Space returns: the waiting append grows the map by itself (its retry backoff is at most 5 s).
rm -f "$filler"
gw_log "filler deleted: $(avail_bytes) bytes free"
resumed=0
for ((i = 0; i < 100; i++)); do
  status=$(gw_http "$base/status" || true)
  if [[ $(jq -r '.buffer.no_space' <<<"$status") == false ]] &&
    (($(jq -r '.ingest.events_stored' <<<"$status") > stored2 + 150)); then
    resumed=1
    break
  fi
  sleep 0.2
done
((resumed)) || gw_die "ingest did not resume after space returned: $(jq -c .buffer <<<"$status")"
gw_log "resumed: map $(jq -r '.buffer.map_bytes' <<<"$status") bytes, stored $(jq -r '.ingest.events_stored' <<<"$status")"
grep -q 'appends resume' "$work/gateway.log" || gw_die "the gateway did not log the resumption"

echo up >&7
gw_log "kafka up"
if [[ $mode == plugin ]]; then
  gw_outbox_drained_and_verify "$http_port" "$work" "$sim_pid" "$verify_pid"
else
  gw_drain_and_verify "$http_port" "$work" "$sim_pid" "$published1" "$verify_pid"
fi
echo "e2e.disk_full: mode=$mode fs=$fs_kind acked=$acked no_space_total=$(jq -r '.buffer.no_space_total' <<<"$status") OK"
