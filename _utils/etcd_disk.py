"""fdatasync latency of a filesystem, measured the way etcd's hardware guide does.

The guide's fio job writes 2300-byte blocks sequentially, with an fdatasync after each,
22 MiB in all, and reads the 99th percentile of the sync latency (under 10 ms for etcd).
Here the same pattern is bounded by time as well: a 10 ms disk would need about 100 s
for the full 22 MiB, so it stops at `seconds` and reports how many samples it took.
"""

import math
import os
import statistics
import tempfile
import time

BLOCK = 2300
TOTAL = 22 * 1024 * 1024


def existing_dir(path):
    """`path` or its nearest existing parent: the filesystem the data dir will live on."""
    path = os.path.abspath(path)
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    return path


def percentile(sorted_values, pct):
    """Nearest-rank percentile (as fio reports them)."""
    if not sorted_values:
        return None
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def measure(path, seconds=10.0, total=TOTAL, block=BLOCK):
    """Write `block`-byte records with fdatasync after each until `total` bytes or `seconds`."""
    directory = existing_dir(path)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".etcd-formula-disk-")
    payload = os.urandom(block)
    latencies = []
    started = time.monotonic()
    try:
        written = 0
        while written < total and time.monotonic() - started < seconds:
            os.write(fd, payload)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - t0)
            written += block
    finally:
        os.close(fd)
        os.unlink(name)
    elapsed = time.monotonic() - started
    latencies.sort()
    ms = [v * 1000 for v in latencies]
    return {
        "directory": directory,
        "samples": len(ms),
        "bytes": len(ms) * block,
        "complete": len(ms) * block >= total,
        "seconds": round(elapsed, 3),
        "p50_ms": round(statistics.median(ms), 3) if ms else None,
        "p99_ms": round(percentile(ms, 99), 3) if ms else None,
        "max_ms": round(ms[-1], 3) if ms else None,
        "iops": round(len(ms) / elapsed, 1) if elapsed else None,
    }
