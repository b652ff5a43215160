"""Checks that turn a missing prerequisite into one line naming the fix."""

import os
import shutil
from pathlib import Path

from labkit.errors import LabError

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
RELEASES = REPO / "artifacts" / "etcd-releases"


def check_host():
    """Refuse early, before anything is created, when the host cannot run a lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it creates bridges, mounts and containers): run it as root")
    if not shutil.which("systemd-nspawn"):
        raise LabError("systemd-nspawn is missing: run `make deps` (apt-get install systemd-container)")
    if not shutil.which("ip"):
        raise LabError("ip is missing: run `make deps` (apt-get install iproute2)")
    if not (VENV / "bin" / "salt-minion").exists():
        raise LabError(f"the Python environment is missing ({VENV}): run `make venv`")
    if not (RELEASES / "SHA256SUMS").exists():
        raise LabError(f"the etcd artifacts are missing ({RELEASES}): run `make artifacts`")
