#!/usr/bin/env python3
"""Checks an e2e.devices run (tests/e2e/devices.sh) from the files in its work directory:

  published.jsonl   one JSON line per reading firmware-sim published (--record: original time_ms)
  injected.json     what firmware-sim injected (--injected): extra copies, conflicts, reboots, wraps
  status.json       GET /status at the end; metrics.txt GET /metrics; late.json GET /late;
  dlq.json          GET /dlq?reason=conflicting_duplicate
  aggregates.jsonl  the aggregates topic, decoded (uplink-cat)

The dedup counters must equal what was injected, and the forwarded aggregates (count, sum, min, max
per device, metric and 1 s window) a reference computed from the readings, minus the late events
the gateway lists. Prints one summary line; exits 1 if a check failed (each failure printed)."""
import json
import math
import os
import re
import sys

import aggregates_reference

work = sys.argv[1]
window_ms = 1000
failures = []


def fail(why):
    failures.append(why)
    print(f"devices_check: FAIL: {why}", file=sys.stderr)


def path(name):
    return os.path.join(work, name)


def jsonl(name):
    with open(path(name)) as f:
        return [json.loads(line) for line in f if line.strip()]


readings = jsonl("published.jsonl")
injected = json.load(open(path("injected.json")))
status = json.load(open(path("status.json")))
late = json.load(open(path("late.json")))
dlq = json.load(open(path("dlq.json")))
dlq = dlq if isinstance(dlq, list) else dlq.get("entries", dlq.get("letters", []))
metrics = {}
for line in open(path("metrics.txt")):
    m = re.match(r"^(gw_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line.strip())
    if m and not m.group(2):
        metrics[m.group(1)] = float(m.group(3))

# The dedup counters: /status and /metrics equal what firmware-sim injected.
b = status["buffer"]
for counter, key in [("duplicates_total", "duplicates"), ("duplicates_conflicting_total", "conflicts"),
                     ("reboots_total", "reboots"), ("seq_wraps_total", "wraps")]:
    want = injected[key]
    if b[counter] != want:
        fail(f"/status buffer.{counter} = {b[counter]}, firmware-sim injected {key} = {want}")
    if metrics.get(f"gw_buffer_{counter}") != want:
        fail(f"/metrics gw_buffer_{counter} = {metrics.get(f'gw_buffer_{counter}')}, injected {want}")
if b["stale_sequence_total"] != 0:
    fail(f"{b['stale_sequence_total']} readings refused as stale (firmware-sim sends none)")
if len(dlq) != injected["conflicts"]:
    fail(f"{len(dlq)} conflicting_duplicate dead letters, {injected['conflicts']} conflicts injected")

# Reference aggregates: every reading once, minus the late events the gateway lists.
if status["windowing"]["late_events"] != len(late):
    fail(f"/late lists {len(late)} of {status['windowing']['late_events']} late events")
late_keys = {(e["device"], e["seq"], e["time_ms"]) for e in late}
ref = aggregates_reference.fold((e for e in readings if (e["device"], e["seq"], e["time_ms"]) not in late_keys),
                                window_ms)

got = {}
for a in jsonl("aggregates.jsonl"):
    if a.get("type") != "aggregate" or a["scope"] != "device":
        continue
    key = (a["device"], a["metric"], a["window_start_ms"])
    if key in got:
        fail(f"window {key} forwarded twice")
    got[key] = a


def close(x, y):
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


mismatches = []
for key, (n, s, lo, hi) in ref.items():
    a = got.get(key)
    if a is None:
        mismatches.append(f"window {key} not forwarded (reference count {n})")
    elif a["count"] != n or not close(a["sum"], s) or not close(a["min"], lo) or not close(a["max"], hi):
        mismatches.append(f"window {key}: gateway count={a['count']} sum={a['sum']} min={a['min']} max={a['max']}, "
                          f"reference count={n} sum={s} min={lo} max={hi}")
mismatches += [f"window {k} forwarded, no reference readings" for k in got if k not in ref]
for m in mismatches[:5]:
    print(f"devices_check: {m}", file=sys.stderr)
if mismatches:
    fail(f"{len(mismatches)} of {len(ref)} windows differ from the reference")
if len(ref) == 0:
    fail("no reference windows: the check proves nothing")

print(f"devices_check: readings={len(readings)} duplicates={b['duplicates_total']} "
      f"conflicts={b['duplicates_conflicting_total']} reboots={b['reboots_total']} wraps={b['seq_wraps_total']} "
      f"gaps={b['seq_gaps_total']} late_stored={b['seq_late_total']} ambiguous_zero={b['seq_zero_ambiguous_total']} "
      f"windows={len(ref)} mismatches={len(mismatches)} late_events={len(late)}"
      + (" FAIL" if failures else " OK"))
sys.exit(1 if failures else 0)
