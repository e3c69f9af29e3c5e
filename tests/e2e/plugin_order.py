"""Checks strace output of ingest mode plugin in fsync (tests/e2e/plugin_order.sh): each PUBACK that
mosquitto writes to a device follows a sync of the gateway's buffer that completed after the
gateway read the message's request from the plugin socket.

    plugin_order.py GATEWAY_TRACE MOSQUITTO_TRACE EXPECTED_PUBACKS

Events, by wall-clock time (strace -ttt; -T gives a call's duration, so a sync's end is known):
- R: the gateway's first read of a request from a Unix socket (the plugin's connection: the first
  read on it since the gateway's last 1-byte answer on it) returns (the request is there);
- S: the gateway's fdatasync/fsync of the buffer's data.mdb, or an msync (its map), ends;
- P: mosquitto writes a PUBACK (0x40 0x02) to a TCP socket.
The plugin's requests are one at a time, so the k-th R and the k-th P belong to the same message.
"""
import re
import sys

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(?:.*<(\d+\.\d+)>)?\s*$")
UNFINISHED = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)\s+<unfinished \.\.\.>\s*$")
RESUMED = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(-?\d+|\?)(?:.*<(\d+\.\d+)>)?\s*$")


def events(path):
    """(start, end, call, args, ret) of each finished call; a call another thread interrupted in
    the trace (`<unfinished ...>`, then `<... call resumed>`) is joined again."""
    pending = {}
    for line in open(path, errors="replace"):
        line = line.strip()
        m = LINE.match(line)
        if m:
            _, start, call, args, ret, took = m.groups()
            yield float(start), float(start) + float(took or 0), call, args, ret
            continue
        m = UNFINISHED.match(line)
        if m:
            tid, start, call, args = m.groups()
            pending[tid] = (float(start), call, args)
            continue
        m = RESUMED.match(line)
        if m and m.group(1) in pending:
            tid, _, call, rest, ret, took = m.groups()
            start, call0, args = pending.pop(tid)
            yield start, start + float(took or 0), call0, args + rest, ret


requests, syncs, pubacks = [], [], []
answered = {}  # a plugin connection (fd and socket) -> its last request has been answered
for start, end, call, args, ret in sorted(events(sys.argv[1])):
    connection = args.split(",", 1)[0]
    if call == "read" and "<UNIX-STREAM:" in args and ret not in ("?", "0") and int(ret) > 0:
        if answered.get(connection, True):
            requests.append(end)  # the read returns when the request is there
        answered[connection] = False
    elif call in ("sendto", "write") and "<UNIX-STREAM:" in args and ret == "1":
        answered[connection] = True
    elif call in ("fdatasync", "fsync") and "data.mdb" in args and ret == "0":
        syncs.append(end)
    elif call == "msync" and ret == "0":
        syncs.append(end)
for start, end, call, args, ret in events(sys.argv[2]):
    if call in ("write", "sendto") and "<TCP:" in args and '"\\x40\\x02' in args:
        pubacks.append(start)
requests.sort()
pubacks.sort()

expected = int(sys.argv[3])
print(f"plugin_order: requests={len(requests)} syncs={len(syncs)} pubacks={len(pubacks)}")
failures = []
if len(pubacks) < expected:
    failures.append(f"{len(pubacks)} PUBACKs traced, {expected} expected")
if len(requests) != len(pubacks):
    failures.append(f"{len(requests)} requests but {len(pubacks)} PUBACKs")
syncs.sort()
unsynced = 0
for k, (r, p) in enumerate(zip(requests, pubacks)):
    if not any(r < s < p for s in syncs):
        unsynced += 1
        if unsynced <= 3:
            failures.append(f"PUBACK {k} at {p:.6f}: no sync of the buffer between its request ({r:.6f}) and it")
if unsynced:
    failures.append(f"{unsynced} PUBACKs without a sync before them")
for f in failures:
    print("plugin_order: FAIL:", f)
print(f"plugin_order: {len(pubacks) - unsynced} of {len(pubacks)} PUBACKs follow the sync of their message "
      + ("OK" if not failures else "FAIL"))
sys.exit(1 if failures else 0)
