"""The lab fixture leaves nothing behind when setup fails, a test fails, or on Ctrl-C."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from labkit import lab
from labkit.state import RUNS, RunState

PROBE = Path(__file__).parent / "probes" / "probe_lab.py"


def _new_runs(before):
    return {p.name for p in RUNS.iterdir() if p.is_dir()} - before


@pytest.mark.parametrize("mode", ["fail-setup", "fail", "wait"])
def test_fixture_cleans_up(mode, tmp_path):
    before = {p.name for p in RUNS.iterdir() if p.is_dir()} if RUNS.exists() else set()
    # A temp dir of its own (short: the master's sockets live under it) shows what the
    # session leaves there.
    tmp = Path(tempfile.mkdtemp(prefix="td-"))
    env = dict(os.environ, PROBE=mode, LAB_NODES="1", TMPDIR=str(tmp))
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", str(PROBE)],
        env=env,
        stdout=open(tmp_path / "out", "w"),
        stderr=subprocess.STDOUT,
    )
    run_id, state = None, None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        new = _new_runs(before) if RUNS.exists() else set()
        if new and run_id is None:
            run_id = new.pop()
        if run_id and state is None and (RUNS / run_id / "state.json").exists():
            state = RunState.load(run_id)
        if mode == "wait" and "probe-run" in (tmp_path / "out").read_text():
            child.send_signal(signal.SIGINT)  # what Ctrl-C sends
            break
        time.sleep(0.2)
    rc = child.wait(timeout=120)
    output = (tmp_path / "out").read_text()
    assert run_id and state, output
    assert rc != 0, output  # each mode ends in a failure or an interruption
    state = RunState(dict(state, nodes=state["nodes"]))
    assert lab.leftovers(state) == [], output
    left = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("pytest-of-"))
    shutil.rmtree(tmp, ignore_errors=True)
    assert left == [], f"the session left {left} in its temp dir\n{output}"
