#!/usr/bin/env bash
# The batch format with the command-line tools alone (uplink/FORMAT.md): the real gateway forwards
# simulator records (XOR-encoded columns) and Intel Lab replays (decimal columns) to kafka-mock;
# each message is fetched with kcat, decompressed with `zstd -d`, turned into JSON with
# `flatc --json --raw-binary uplink/batch.fbs`, and the records are rebuilt from FORMAT.md's rules
# by the short Python script below. They must equal what uplink-cat (the project's decoder) prints.
#   tests/uplink/decode_cli.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
source "$src/tests/e2e/lib.sh"
source "$src/tests/e2e/uplink_lib.sh"
work=$(mktemp -d /tmp/gw-decode-cli.XXXXXX)
trap 'gw_stop_all; [[ ${KEEP:-} ]] || rm -rf "$work"' EXIT
for tool in kcat zstd flatc python3 jq; do command -v $tool >/dev/null || gw_die "$tool not installed"; done

http_port=$(gw_free_port)
gw_start_brokers "$build" "$src" "$work"
gw_uplink_config "$work/gateway.toml" "$work" "$mqtt_port" "$http_port" "$bootstrap"
"$build/gateway/edge-gateway" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_track $!
gw_wait_gateway_ready "$http_port" "$work/gateway.log"
sim() { "$build/firmware-sim/firmware-sim" --broker "tcp://127.0.0.1:$mqtt_port" --qos 1 --rate 50 "$@" >/dev/null; }
sim --devices 3 --count 20 --device-prefix sim-
sim --devices 2 --count 10 --device-prefix boot- --boot-id  # the batches' boot_ids column
gw_wait_caught_up "$http_port" 60 >/dev/null || gw_die "uplink did not catch up"
data="$src/../shared/data/intel-lab-ibrl"
if [[ -d $data ]]; then
  sim --devices 4 --count 20 --device-prefix mote- --data "$data"
  gw_wait_caught_up "$http_port" 60 >/dev/null || gw_die "uplink did not catch up"
fi

"$build/uplink/uplink-cat" --kafka "$bootstrap" --topic telemetry --idle-exit-ms 1000 >"$work/expected.jsonl"
messages=$(timeout 30 kcat -C -b "$bootstrap" -t telemetry -p 0 -o beginning -e -q -f '%o\n' | wc -l)
((messages >= 1)) || gw_die "no message in the topic"
: >"$work/rebuilt.jsonl"
for ((off = 0; off < messages; off++)); do
  timeout 30 kcat -C -b "$bootstrap" -t telemetry -p 0 -o $off -c 1 -e -q -f '%s' >"$work/m$off.zst"
  zstd -q -d "$work/m$off.zst" -o "$work/m$off.bin"
  flatc --json --strict-json --defaults-json --raw-binary -o "$work" "$src/uplink/batch.fbs" -- "$work/m$off.bin"
  python3 - "$work/m$off.json" >>"$work/rebuilt.jsonl" <<'PY'
import json, struct, sys
M = (1 << 64) - 1
b = json.load(open(sys.argv[1]))
assert b["format_version"] == 2
cols = {c["metric"]: c for c in b["columns"]}
nxt, prev = {m: 0 for m in cols}, {}
out, j = [], 0
for run, (dev, n) in enumerate(zip(b["devices"], b["run_lengths"])):
    for k in range(n):
        sd, dd, td = b["seq_deltas"][j], b["device_seq_deltas"][j], b["time_deltas"][j]
        seq = (b["first_seq"] + sd) if k == 0 else seq + sd
        dseq = dd & M if k == 0 else (dseq + dd) & M
        if k == 0: t = td
        elif k == 1: d = td; t += d
        else: d += td; t += d
        metrics = {}
        for m in b["shapes"][b["shape_ids"][j]]["metrics"]:
            c, i = cols[m], nxt[m]
            first = prev.get(m, (None,))[0] != run
            if c["encoding"] == "decimal_delta":
                v = c["deltas"][i] if first else prev[m][1] + c["deltas"][i]
                value = v / 10 ** c["scale"]
            else:
                v = c["bits"][i] if first else prev[m][1] ^ c["bits"][i]
                value = struct.unpack("<d", struct.pack("<Q", v))[0]
            prev[m], nxt[m] = (run, v), i + 1
            metrics[b["metric_names"][m]] = value
        boot = b["boot_ids"][j] if b.get("boot_ids") else 0
        out.append({"gateway": b["gateway_id"], "seq": seq, "device": dev, "device_seq": dseq, "boot_id": boot,
                    "time_ms": t, "metrics": metrics})
        j += 1
for r in sorted(out, key=lambda r: r["seq"]):
    print(json.dumps(r))
PY
done
python3 - "$work/expected.jsonl" "$work/rebuilt.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
for x, y in zip(a, b):
    assert x == y, (x, y)
print(f"decode_cli: {len(a)} records rebuilt with zstd + flatc match uplink-cat")
PY
grep -h '"encoding"' "$work"/m*.json | sort | uniq -c
