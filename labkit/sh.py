"""Small process helpers: the lab drives ip, mount, nsenter and systemd-nspawn."""

import subprocess

from labkit.errors import LabError


def run(*args, check=True, capture=True, timeout=60, input=None):
    """Run a command; return CompletedProcess. Raise LabError with its stderr on failure."""
    try:
        proc = subprocess.run(
            [str(a) for a in args],
            check=False,
            text=True,
            input=input,
            capture_output=capture,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{args[0]} is not installed: run `make deps`") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or "").strip().splitlines()
        raise LabError(f"`{' '.join(map(str, args))}` failed: {err[-1] if err else proc.returncode}")
    return proc


def ok(*args, timeout=30):
    """True when the command exits 0 (its output is discarded)."""
    return run(*args, check=False, timeout=timeout).returncode == 0
