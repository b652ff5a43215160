"""fdatasync latency of a filesystem, measured the way etcd's hardware guide does.

The guide's fio job writes 2300-byte blocks sequentially, with an fdatasync after each,
22 MiB in all, and reads the 99th percentile of the sync latency (under 10 ms for etcd).
Here the same pattern is bounded by time as well: a 10 ms disk would need about 100 s
for the full 22 MiB, so it stops at `seconds` and reports how many samples it took.
"""

import math
import os
import re
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


RAM_FILESYSTEMS = ("tmpfs", "ramfs")
# An fdatasync that appends goes through a journal commit and a device flush: tens of µs
# at best on NVMe. Faster than this, nothing reached a device.
NO_DEVICE_P99_MS = 0.01
_OCTAL = re.compile(r"\\([0-7]{3})")


def filesystem(path, mountinfo="/proc/self/mountinfo"):
    """The type of the filesystem `path` is on (the longest mount point above it), or None."""
    path = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open(mountinfo, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not tail:
            continue
        point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), parts[4])  # the kernel writes a space as \040
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, tail.split()[0]
    return fstype


def up_to_us(ms):
    """A latency in ms, rounded up to the microsecond: a figure never understates it (a
    RAM-backed flush of 0.3 us rounded to 0.000 ms passed any threshold; CI saw it)."""
    return math.ceil(ms * 1000) / 1000


def no_disk(fstype, p99_ms):
    """Why these syncs reached no disk, or None. On RAM (tmpfs, or an overlay or a
    container whose storage is RAM, or a device whose flushes are ignored) fdatasync
    returns at once, and the figures say nothing about the hardware etcd would run on."""
    if fstype in RAM_FILESYSTEMS:
        return f"{fstype} is RAM"
    if p99_ms is not None and p99_ms < NO_DEVICE_P99_MS:
        return (
            f"a p99 of {p99_ms} ms is faster than a device acknowledges a flush: the storage is RAM or ignores flushes"
        )
    return None


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
    fstype = filesystem(directory)
    p99 = up_to_us(percentile(ms, 99)) if ms else None
    return {
        "directory": directory,
        "filesystem": fstype,
        "no_disk": no_disk(fstype, p99),
        "samples": len(ms),
        "bytes": len(ms) * block,
        "complete": len(ms) * block >= total,
        "seconds": round(elapsed, 3),
        "p50_ms": up_to_us(statistics.median(ms)) if ms else None,
        "p99_ms": p99,
        "max_ms": up_to_us(ms[-1]) if ms else None,
        "iops": round(len(ms) / elapsed, 1) if elapsed else None,
    }
