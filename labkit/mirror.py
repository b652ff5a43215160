"""The site mirror: the etcd release tarballs served over HTTP on the lab's bridge only."""

import subprocess
import sys
import time

from labkit.errors import LabError
from labkit.master import _stop_group, port_open
from labkit.node import MIRROR_PORT
from labkit.preflight import RELEASES

PORT = MIRROR_PORT


def url(state):
    return f"http://{state['gateway']}:{PORT}"


def start(state):
    log = open(state.dir / "mirror.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(PORT), "--bind", state["gateway"], "--directory", str(RELEASES)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    state["mirror"] = {"pid": proc.pid, "url": url(state)}
    state.save()
    deadline = time.monotonic() + 10
    while not port_open(state["gateway"], PORT):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise LabError(f"the mirror did not start: see {state.dir}/mirror.log")
        time.sleep(0.05)


def stop(state):
    pid = (state.get("mirror") or {}).get("pid")
    if pid:
        _stop_group(pid, 5)


def running(state):
    """Whether the mirror answers (a fault row stops it and starts it again)."""
    return bool((state.get("mirror") or {}).get("pid")) and port_open(state["gateway"], PORT)
