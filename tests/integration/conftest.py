"""The lab as a session fixture: a factories salt-master and real systemd nodes.

Teardown runs when setup fails, when a test fails and on Ctrl-C/SIGTERM.
"""

import copy
import os

import pytest

from labkit import lab as labrun
from labkit.master import MASTER_ID, overrides
from labkit.preflight import REPO, check_host
from labkit.session import LabSession
from labkit.state import RunState

LAB_NODES = int(os.environ.get("LAB_NODES", "5"))


@pytest.fixture(scope="session")
def lab_session(salt_factories):
    check_host()
    state = RunState.create(LAB_NODES, REPO)
    try:
        labrun.setup(state)
        master = salt_factories.salt_master_daemon(MASTER_ID, overrides=overrides(state, "debug"))
        with master.started(start_timeout=60):
            state["master"] = {
                "kind": "factories",
                "conf_dir": str(master.config_dir),
                "ret_port": master.config["ret_port"],
                "publish_port": master.config["publish_port"],
            }
            state.save()
            starts = labrun.MinionStarts(state)
            try:
                labrun.start_nodes(state, log_level="debug")
                labrun.wait_minions(state, starts=starts)
            finally:
                starts.close()
            if os.environ.get("PROBE") == "fail-setup":  # tests/integration/test_teardown.py
                raise RuntimeError("lab setup fails on purpose")
            session = LabSession(state)
            session.master = master
            yield session
    finally:
        labrun.teardown(state)


@pytest.fixture(scope="module")
def lab(lab_session):
    """The lab with the extension synced to every node; the site pillar is restored after the module."""
    assert len(lab_session.etcd_nodes) >= 4, "these tests need LAB_NODES>=4 (a spare node)"
    original = lab_session.site()
    synced = lab_session.salt("-L", ",".join(lab_session.etcd_nodes), "saltutil.sync_all")
    assert all("modules.etcd_cluster" in str(v) or v for v in synced.values()), synced
    yield lab_session
    lab_session.set_site(original)


@pytest.fixture
def site(lab):
    """The lab site pillar, to change for one test; restored afterwards."""
    original = lab.site()
    yield copy.deepcopy(original)
    lab.set_site(original)
