"""The lab as a session fixture: a factories salt-master and real systemd nodes.

Teardown runs when setup fails, when a test fails and on Ctrl-C/SIGTERM.
"""

import os

import pytest

from labkit import lab
from labkit.master import MASTER_ID, overrides
from labkit.preflight import REPO, check_host
from labkit.session import LabSession
from labkit.state import RunState

LAB_NODES = int(os.environ.get("LAB_NODES", "4"))


@pytest.fixture(scope="session")
def lab_session(salt_factories):
    check_host()
    state = RunState.create(LAB_NODES, REPO)
    try:
        lab.setup(state)
        master = salt_factories.salt_master_daemon(MASTER_ID, overrides=overrides(state, "debug"))
        with master.started(start_timeout=60):
            state["master"] = {
                "kind": "factories",
                "conf_dir": str(master.config_dir),
                "ret_port": master.config["ret_port"],
                "publish_port": master.config["publish_port"],
            }
            state.save()
            starts = lab.MinionStarts(state)
            try:
                lab.start_nodes(state, log_level="debug")
                lab.wait_minions(state, starts=starts)
            finally:
                starts.close()
            if os.environ.get("PROBE") == "fail-setup":  # tests/integration/test_teardown.py
                raise RuntimeError("lab setup fails on purpose")
            session = LabSession(state)
            session.master = master
            yield session
    finally:
        lab.teardown(state)
