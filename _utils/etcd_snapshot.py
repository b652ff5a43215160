"""Verified snapshots of the cluster's data: before a version change, and the backups.

The gateway streams snapshots as base64 JSON chunks; the node's own ``etcdctl`` writes
them natively, so the formula runs it (3.4 and 3.5 both have ``snapshot save``). Reading a
snapshot back (``snapshot status``) and restoring one is ``etcdutl``'s job from 3.5 on
(etcdctl's are deprecated there) and etcdctl's in 3.4: ``offline_tool`` picks it. Free
space is checked first; the file appears under its final name only once it has been read
back (revision, key count, hash).
"""

import concurrent.futures
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import time

import etcd_node

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
    facts = _read_back(offline_tool(os.path.dirname(etcdctl)), part)
    os.chmod(part, 0o600)
    os.replace(part, final)
    if keep:
        _prune(directory, keep)
    return dict(facts, path=final, file_bytes=os.path.getsize(final), seconds=round(time.monotonic() - started, 2))


def _read_back(tool, path):
    """`status` and the file's sha256 in one pass of time: the tool reads the file while
    Python hashes it (both from the page cache; hashlib and the wait release the GIL)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(status, tool, path)
        sha256 = etcd_node.sha256_file(path)
        return dict(pending.result(), sha256=sha256)


def offline_tool(bin_dir):
    """The binary that reads and restores snapshot files: etcdutl where the active
    release has it (3.5+), else etcdctl (3.4)."""
    etcdutl = os.path.join(bin_dir, "etcdutl")
    return etcdutl if os.path.exists(etcdutl) else os.path.join(bin_dir, "etcdctl")


def status(tool, path):
    """What a snapshot file holds, read back by `tool`: revision, key count, database
    size and hash. Raises SnapshotError when it does not read back (truncated, garbage)."""
    try:
        facts = json.loads(_run([tool, "snapshot", "status", path, "-w", "json"], 120))
    except ValueError as exc:
        raise SnapshotError(f"snapshot status of {path} is not JSON: {exc}") from exc
    if not isinstance(facts.get("revision"), int) or not facts.get("totalSize"):
        raise SnapshotError(f"snapshot {path} reads back empty: {facts}")
    return {
        "revision": facts["revision"],
        "keys": facts.get("totalKey"),
        "bytes": facts["totalSize"],  # the database; the file also carries its sha256 (32 bytes)
        "hash": facts.get("hash"),
    }


class _Hashing:
    """A file object that hashes what is written through it (one pass, not a second read)."""

    def __init__(self, raw):
        self.raw, self.sha = raw, hashlib.sha256()

    def write(self, data):
        self.sha.update(data)
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()


def compress(path):
    """gzip `path` next to itself (0600, written under .part first), remove the original:
    (the new path, its sha256), hashed as it is written."""
    final = path + ".gz"
    part = final + ".part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(path, "rb") as src, os.fdopen(fd, "wb") as raw:
        hashed = _Hashing(raw)
        with gzip.GzipFile(fileobj=hashed, mode="wb", compresslevel=1, mtime=0) as out:
            shutil.copyfileobj(src, out, 1 << 20)
    os.replace(part, final)
    os.unlink(path)
    return final, hashed.sha.hexdigest()


def plain_copy(path, directory):
    """A readable .db of `path` in `directory` (decompressed when .gz), 0600: what
    ``snapshot status`` and ``snapshot restore`` read."""
    # Its own name: next to an uncompressed source, the source's name would truncate it.
    out = os.path.join(directory, ".plain-" + os.path.basename(path).removesuffix(".gz"))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise SnapshotError(f"{path} does not decompress: {exc}") from exc
    return out


def verify(path, sha256, tool, workdir):
    """Facts of a snapshot file after checking its sha256 and reading it back; raises
    SnapshotError naming what does not match."""
    got = etcd_node.sha256_file(path)
    if got != sha256:
        raise SnapshotError(f"{os.path.basename(path)} has sha256 {got}, its record says {sha256}: the copy is damaged")
    plain = plain_copy(path, workdir)
    try:
        return status(tool, plain)
    finally:
        os.unlink(plain)


def restore(tool, snapshot, data_dir, name, initial_cluster, token, peer_url, timeout=600):
    """`snapshot restore` into `data_dir` (which must not exist): a new cluster of the
    members in `initial_cluster`, with cluster token `token`."""
    _run(
        [
            tool, "snapshot", "restore", snapshot, f"--name={name}", f"--initial-cluster={initial_cluster}",
            f"--initial-cluster-token={token}", f"--initial-advertise-peer-urls={peer_url}", f"--data-dir={data_dir}",
        ],
        timeout,
    )  # fmt: skip


def _prune(directory, keep):
    snaps = sorted(
        (os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".db")), key=os.path.getmtime
    )
    for old in snaps[: max(0, len(snaps) - keep)]:
        os.unlink(old)
