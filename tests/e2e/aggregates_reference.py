"""The reference the forwarded aggregates are checked against (tests/e2e/devices_check.py,
tests/chaos/check.py): count, sum, min and max per (device, metric, tumbling window), folded from
readings as firmware-sim --record wrote them (each reading once, its original event time)."""
import math


def fold(readings, window_ms):
    """{(device, metric, window_start_ms): [count, sum, min, max]} over the readings' metrics."""
    ref = {}
    for e in readings:
        start = e["time_ms"] - e["time_ms"] % window_ms
        for metric, value in e["metrics"].items():
            a = ref.setdefault((e["device"], metric, start), [0, 0.0, math.inf, -math.inf])
            a[0] += 1
            a[1] += value
            a[2] = min(a[2], value)
            a[3] = max(a[3], value)
    return ref
