"""Compares what the consumer readers printed (JSON lines of `python -m gwbatch` and of the Java
ConsumerExample) with what firmware-sim published: every manifest reading once (count, device,
boot id, seq) with the values it was published with (firmware-sim --record: time_ms and metrics,
exactly), and the aggregate lines of the readers equal to each other.

  consumers_check.py --manifest M --published P --reader NAME=FILE ... [--aggregates NAME=FILE ...]

Prints one line per reader and exits 1 on any difference.
"""
import argparse
import json
import sys


def load_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--manifest", required=True)
    p.add_argument("--published", required=True)
    p.add_argument("--reader", action="append", default=[])
    p.add_argument("--aggregates", action="append", default=[])
    a = p.parse_args()
    manifest = []
    with open(a.manifest) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[-1] != "resent":
                manifest.append((parts[0], int(parts[2]) if len(parts) > 2 else 0, int(parts[1])))
    published = {(r["device"], r.get("boot_id", 0), r["seq"]): r for r in load_lines(a.published)}
    failed = False
    for spec in a.reader:
        name, _, path = spec.partition("=")
        got = load_lines(path)
        ids = [(r["device"], r["boot_id"], r["device_seq"]) for r in got]
        problems = []
        if len(got) != len(manifest):
            problems.append(f"{len(got)} records printed, {len(manifest)} in the manifest")
        if sorted(ids) != sorted(manifest):
            missing = set(manifest) - set(ids)
            extra = set(ids) - set(manifest)
            problems.append(f"identities differ: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
                            f"{len(extra)} not in the manifest (e.g. {sorted(extra)[:3]})")
        wrong = 0
        for r in got:
            want = published.get((r["device"], r["boot_id"], r["device_seq"]))
            if want is None or want["time_ms"] != r["time_ms"] or want["metrics"] != r["metrics"] or \
                    want.get("tags", {}) != r["tags"]:
                wrong += 1
                if wrong <= 3:
                    problems.append(f"values differ: printed {json.dumps(r)} published {json.dumps(want)}")
        gateway_seqs = [(r["gateway"], r["seq"]) for r in got]
        if len(set(gateway_seqs)) != len(gateway_seqs):
            problems.append("a (gateway, seq) printed twice")
        print(f"consumers-check: {name} records={len(got)} manifest={len(manifest)} values_differ={wrong} "
              + ("OK" if not problems else "FAIL: " + "; ".join(problems)))
        failed |= bool(problems)
    outputs = []
    for spec in a.aggregates:
        name, _, path = spec.partition("=")
        outputs.append((name, sorted(load_lines(path), key=lambda r: r["seq"])))
    for name, lines in outputs:
        same = lines == outputs[0][1]
        print(f"consumers-check: {name} aggregates={len(lines)} "
              + ("OK" if lines and same else f"FAIL: {'none' if not lines else 'differs from ' + outputs[0][0]}"))
        failed |= not lines or not same
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
