"""Facts about the etcd on this node, read from the files it owns (no Salt needed)."""

import hashlib
import json
import os
import re
import subprocess

VERSION_RE = re.compile(r"etcd Version:\s*(\d+\.\d+\.\d+)")


def has_data(data_dir):
    """True when the data dir holds a member (etcd writes <data>/member/{wal,snap})."""
    return os.path.isdir(os.path.join(data_dir, "member"))


def has_etcd(settings):
    return has_data(settings["paths"]["data"]) or os.path.exists(settings["paths"]["unit"])


def binary_version(path):
    """The version an etcd binary reports about itself, or None."""
    if not os.access(path, os.X_OK):
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = VERSION_RE.search(out)
    return match.group(1) if match else None


def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text):
    return hashlib.sha256(text.encode()).hexdigest()


def read_json(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def write_json(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
