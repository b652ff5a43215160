"""A verified snapshot of the cluster's data, taken on a member before a version change.

The gateway streams snapshots as base64 JSON chunks; the node's own ``etcdctl`` writes
them natively, so the formula runs it (3.4 and 3.5 both have ``snapshot save`` and
``snapshot status``). Free space is checked first; the file appears under its final name
only once ``snapshot status`` has read it back (revision, key count, hash).
"""

import json
import os
import shutil
import subprocess
import time

HEADROOM = 64 * 1024**2  # beyond twice the database: the file system must not fill up


class SnapshotError(Exception):
    """No usable snapshot; the message says why and what to do."""


def needed_bytes(db_size):
    return 2 * int(db_size) + HEADROOM


def _run(argv, timeout):
    env = dict(os.environ, ETCDCTL_API="3")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SnapshotError(f"{argv[0]} {argv[-2]}: {exc}") from exc
    if proc.returncode != 0:
        raise SnapshotError(f"{' '.join(argv[-3:])} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return proc.stdout


def save(etcdctl, endpoint, tls, directory, db_size, label, keep=3, timeout=300):
    """Snapshot `endpoint` into `directory`/<label>.db, verified; keep the newest `keep`.
    `tls` is (ca, cert, key) or (None, None, None)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < needed_bytes(db_size):
        raise SnapshotError(
            f"{directory} has {free // 1024**2} MiB free; a snapshot of the {int(db_size) // 1024**2} MiB database "
            f"needs {needed_bytes(db_size) // 1024**2} MiB: free space there or set etcd:upgrade:snapshot_dir"
        )
    final = os.path.join(directory, f"{label}.db")
    part = final + ".part"
    ca, cert, key = tls
    argv = [etcdctl, f"--endpoints={endpoint}", "--command-timeout=" + f"{timeout}s"]
    if ca:
        argv += [f"--cacert={ca}", f"--cert={cert}", f"--key={key}"]
    started = time.monotonic()
    _run([*argv, "snapshot", "save", part], timeout)
    try:
        facts = json.loads(_run([etcdctl, "snapshot", "status", part, "-w", "json"], 60))
    except ValueError as exc:
        raise SnapshotError(f"snapshot status of {part} is not JSON: {exc}") from exc
    if not facts.get("revision") or not facts.get("totalSize"):
        raise SnapshotError(f"snapshot {part} reads back empty: {facts}")
    os.chmod(part, 0o600)
    os.replace(part, final)
    _prune(directory, keep)
    return {
        "path": final,
        "revision": facts["revision"],
        "keys": facts.get("totalKey"),
        "bytes": facts["totalSize"],  # the database; the file also carries its sha256 (32 bytes)
        "file_bytes": os.path.getsize(final),
        "hash": facts.get("hash"),
        "seconds": round(time.monotonic() - started, 2),
    }


def _prune(directory, keep):
    snaps = sorted(
        (os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".db")), key=os.path.getmtime
    )
    for old in snaps[: max(0, len(snaps) - keep)]:
        os.unlink(old)
