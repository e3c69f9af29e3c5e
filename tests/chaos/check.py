#!/usr/bin/env python3
"""Checks one policy's chaos run (tests/chaos/run.sh) from the files in its work directory:

  manifest.txt      DEVICE SEQ BOOT per reading the broker acknowledged (firmware-sim --manifest)
  published.jsonl   every valid event published, as JSON (firmware-sim --record)
  records.jsonl     the telemetry topic, decoded (uplink-cat, consumed during the run)
  aggregates.jsonl  the aggregates topic, decoded (uplink-cat, consumed during the run)
  verify.out        firmware-sim verify --kafka (consumed during the run)
  late.json         GET /late at the end; status.json GET /status at the end

Prints one summary line and exits 1 if a check failed (each failure is printed before it)."""
import argparse
import collections
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import aggregates_reference  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--policy", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--seconds", type=int, required=True)
ap.add_argument("--kills", type=int, required=True)
ap.add_argument("--outages", type=int, required=True)
ap.add_argument("--full-seen", default="false")
ap.add_argument("--verify-rc", type=int, default=0)
ap.add_argument("--window-ms", type=int, default=1000)
args = ap.parse_args()
w = lambda name: os.path.join(args.work, name)
failures = []


def fail(why):
    failures.append(why)
    print(f"chaos[{args.policy}]: FAIL: {why}", file=sys.stderr)


def lines(name):
    with open(w(name)) as f:
        for line in f:
            line = line.strip()
            if line:
                yield line


acked = set()
for line in lines("manifest.txt"):
    dev, seq = line.split()[:2]  # the run's devices send no boot id
    acked.add((dev, int(seq)))
published = {}
for line in lines("published.jsonl"):
    e = json.loads(line)
    published[(e["device"], e["seq"])] = e
status = json.load(open(w("status.json")))
late_doc = json.load(open(w("late.json")))
late_list = late_doc if isinstance(late_doc, list) else late_doc.get("late", late_doc.get("events", []))

# The raw topic: each (gateway, seq) once, each acknowledged (device, seq) once.
raw_seqs = collections.Counter()
delivered = collections.Counter()
for line in lines("records.jsonl"):
    r = json.loads(line)
    if r.get("type") == "aggregate":
        fail("an aggregate in the telemetry topic")
        continue
    raw_seqs[(r["gateway"], r["seq"])] += 1
    delivered[(r["device"], r["device_seq"])] += 1
duplicates = sum(n - 1 for n in raw_seqs.values() if n > 1)
redelivered = sum(n - 1 for n in delivered.values() if n > 1)
missing = sorted(k for k in acked if k not in delivered)
unexpected = sum(1 for k in delivered if k not in acked)
lost = len(missing)

# firmware-sim verify's own figures must agree with this count.
vline = ""
if os.path.exists(w("verify.out")):
    for line in lines("verify.out"):
        if line.startswith("delivered="):
            vline = line
vm = dict(re.findall(r"(\w+)=(\d+)", vline))
if not vm:
    fail(f"no verify line (verify rc={args.verify_rc})")
else:
    if int(vm["lost"]) != lost:
        fail(f"verify says lost={vm['lost']}, the topic read by uplink-cat misses {lost}")
    if int(vm.get("skipped_offsets", 0)):
        fail(f"verify read too slowly: {vm['skipped_offsets']} offsets were gone before it read them")
    if int(vm["duplicates"]) != 0 or int(vm.get("redelivered", 0)) != 0:
        fail(f"verify: {vline}")
if duplicates or redelivered:
    fail(f"raw topic: {duplicates} (gateway, seq) twice, {redelivered} (device, seq) twice")
if any(k not in published for k in acked):
    fail("an acknowledged event is missing from firmware-sim's --record file")

buf = status["buffer"]
cursors = {c["name"]: c for c in buf["cursors"]}
tele_cursor = status["uplink"]["kafka"]["cursor"]
agg_cursor = status["uplink"]["kafka_aggregates"]["cursor"]
win_cursors = [n for n in cursors if n not in (tele_cursor, agg_cursor)]
tele_evicted = cursors[tele_cursor]["evicted"]
agg_evicted = cursors[agg_cursor]["evicted"]
win_evicted = sum(cursors[n]["evicted"] for n in win_cursors)
evicted = buf["evicted_total"]

# run.sh kept Kafka down until the buffer was full and the policy had acted (appends blocked,
# records evicted or summarized away); a run where that did not happen within its bound proves less.
if args.full_seen != "true":
    fail("the buffer was not driven full (or the policy did not act) during the long outage")
if args.policy == "block":
    if lost or evicted or args.verify_rc != 0:
        fail(f"block: lost={lost} evicted={evicted} verify rc={args.verify_rc}")
else:
    # Every missing event is accounted for by the telemetry cursor's eviction counter (checked
    # exactly below, once the aggregates tell how many aggregate records it also counts).
    if lost > tele_evicted:
        fail(f"{lost} acknowledged events missing upstream, telemetry cursor evicted only {tele_evicted}")
    if evicted == 0:
        fail("the buffer was full but nothing was evicted")
    if args.policy == "summarize" and win_evicted:
        fail(f"summarize evicted {win_evicted} records the windowing stage had not counted")

# Reference aggregates: acknowledged events once, malformed never (not in --record), minus the
# late events the gateway lists (they missed their window).
late_keys = set()
for e in late_list:
    late_keys.add((e["device"], e["seq"]))
late_total = status["windowing"]["late_events"]
# /late lists the newest max_late of them (the gateway fits max_late to the buffer's size); the older
# ones are in the reference but in no window: below, each window short of them is allowed as long as
# the shortfall adds up to what so many late events can take (one value per metric).
unlisted_late = late_total - len(late_list)
if unlisted_late < 0:
    fail(f"/late lists {len(late_list)} late events, /status counts {late_total}")
for k in late_keys:
    if k not in acked:
        fail(f"late event {k} was not acknowledged to a device")
        break


def window_of(t):
    return t - t % args.window_ms


ref = aggregates_reference.fold((published[k] for k in acked if k in published and k not in late_keys),
                                args.window_ms)

agg_seqs = collections.Counter()
got = {}
for line in lines("aggregates.jsonl"):
    a = json.loads(line)
    if a.get("type") != "aggregate":
        fail("a raw record in the aggregates topic")
        continue
    agg_seqs[(a["gateway"], a["seq"], a["id"])] += 1
    if agg_seqs[(a["gateway"], a["seq"], a["id"])] > 1 or a["scope"] != "device":
        continue
    key = (a["device"], a["metric"], a["window_start_ms"])
    if key in got:
        fail(f"window {key} forwarded twice (different records)")
    got[key] = a
agg_duplicates = sum(n - 1 for n in agg_seqs.values() if n > 1)
if agg_duplicates:
    fail(f"{agg_duplicates} aggregates twice in the aggregates topic")


def close(x, y):
    return math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-3)


mismatches = 0
examples = []
late_short = 0  # windows short of unlisted late events (only when /late could not list them all)
late_shortfall = 0  # their values missing
short = 0  # windows whose count is below the reference (the windowing stage lost events to eviction)
not_forwarded = 0  # reference windows absent upstream (their aggregate record evicted, or all their events)
for key, (n, s, lo, hi) in ref.items():
    a = got.get(key)
    if unlisted_late > 0 and (a is None or (a["count"] < n and a["min"] >= lo - 1e-3 and a["max"] <= hi + 1e-3)):
        late_short += 1
        late_shortfall += n - (0 if a is None else a["count"])
        continue
    if a is None:
        mismatches += 1
        not_forwarded += 1
        examples.append(f"window {key} not forwarded (ref count {n})")
        continue
    if a["window_end_ms"] - a["window_start_ms"] != args.window_ms:
        mismatches += 1
        examples.append(f"window {key}: not {args.window_ms} ms wide")
    elif a["count"] != n or not close(a["sum"], s) or not close(a["min"], lo) or not close(a["max"], hi):
        mismatches += 1
        if a["count"] < n:
            short += 1
        examples.append(f"window {key}: gateway count={a['count']} sum={a['sum']} min={a['min']} max={a['max']}, "
                        f"reference count={n} sum={s} min={lo} max={hi}")
if unlisted_late > 0:
    most = unlisted_late * max(len(e["metrics"]) for e in published.values())
    if not unlisted_late <= late_shortfall <= most:
        fail(f"{late_shortfall} values missing from {late_short} windows; {unlisted_late} late events not "
             f"listed in /late account for {unlisted_late}..{most}")
extra = [k for k in got if k not in ref]
mismatches += len(extra)
examples += [f"window {k} forwarded, no reference events (count {got[k]['count']})" for k in extra[:3]]

if args.policy == "drop-oldest":
    # Under drop-oldest the windowing stage may lose events to eviction (its windows come out short)
    # and the aggregates sink may lose aggregate records (windows missing upstream): allowed only as
    # far as the cursors' eviction counters account for them. Any other difference is a mismatch.
    unexplained = mismatches - short - not_forwarded
    if short and not win_evicted:
        fail(f"{short} windows short of the reference, but the windowing cursor evicted nothing")
    if not_forwarded and not (agg_evicted or win_evicted):
        fail(f"{not_forwarded} windows not forwarded, but no aggregate or windowing record was evicted")
    if unexplained:
        fail(f"{unexplained} windows differ from the reference: " + "; ".join(examples[:3]))
    mismatches = unexplained
elif mismatches:
    fail(f"{mismatches} windows differ from the reference: " + "; ".join(examples[:3]))

if args.policy == "drop-oldest" and not_forwarded > agg_evicted:
    # Every window missing upstream had its aggregate record evicted before the aggregates sink sent it.
    fail(f"{not_forwarded} windows missing upstream, the aggregates cursor evicted only {agg_evicted}")
# The telemetry cursor's counter may exceed what is missing (lost <= evicted, checked above): it
# also counts aggregate records (drop-oldest) and records evicted while a batch holding them was in
# flight and then delivered (seen: summarize, evicted 1186 for 1171 missing). Shown as `over`.

if args.policy == "summarize":
    # Every evicted event's windows were forwarded (it was counted before it could go).
    unsummarized = 0
    for k in missing:
        e = published.get(k)
        if e is None or k in late_keys:
            continue
        for metric in e["metrics"]:
            if (e["device"], metric, window_of(e["time_ms"])) not in got:
                unsummarized += 1
    if unsummarized:
        fail(f"{unsummarized} values of evicted events have no forwarded window")

ok = not failures
print(f"chaos: policy={args.policy} minutes={args.seconds / 60:.1f} kills={args.kills} outages={args.outages} "
      f"events={len(acked)} lost={lost} duplicates={duplicates + redelivered} evicted={evicted} "
      f"telemetry_evicted={tele_evicted} over={tele_evicted - lost} windowing_evicted={win_evicted} aggregates_evicted={agg_evicted} "
      f"late={late_total} late_unlisted={unlisted_late} late_short={late_short} full={args.full_seen} aggregates_checked={len(ref)} short={short} "
      f"not_forwarded={not_forwarded} mismatches={mismatches} "
      f"{'OK' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
