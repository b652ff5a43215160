"""Where the formula relies on Salt's internals to save time, a test that fails when Salt
changes them (issue 17): the mine event `etcd_mine.send` fires instead of `mine.send`, and the
view of a job `etcd_health.scheduled` compares instead of asking the minion daemon."""

import importlib.util
import inspect
import socket
import sys

import salt.minion
import salt.modules.mine
import salt.modules.schedule

from labkit.preflight import REPO

JOB = {
    "function": "etcd_health.health",
    "job_kwargs": {"event": True},
    "seconds": 60,
    "splay": 5,
    "enabled": True,
    "maxrunning": 1,
    "return_job": False,
}


def _state_module():
    sys.path.insert(0, str(REPO / "_utils"))  # the state loads its utils by name, as on a minion
    spec = importlib.util.spec_from_file_location("etcd_health_state", REPO / "_states" / "etcd_health.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_mine_event_is_the_one_mine_send_fires():
    # etcd_mine.send fires {"cmd": "_mine", "data": ..., "id": ..., "clear": False}
    # under the tag "_minion_mine", as mine.send does before its 0.5 s pause.
    assert 'fire_event(load, "_minion_mine")' in inspect.getsource(salt.modules.mine._mine_send)
    store = inspect.getsource(salt.modules.mine._mine_store)
    assert all(f in store for f in ('"cmd": "_mine"', '"data": mine_data', '"id": __opts__["id"]', '"clear": clear'))
    assert "_mine_store(mine_data)" in inspect.getsource(salt.modules.mine.send)  # clear=False
    mine = (REPO / "_utils" / "etcd_mine.py").read_text()
    assert '{"cmd": "_mine", "data": {name: data}, "id": opts["id"], "clear": False}' in mine
    assert 'fire(load, "_minion_mine")' in mine


def test_the_daemon_sends_mine_data_synchronously_so_a_down_master_is_not_asked():
    # The minion daemon's _mine_send blocks its loop (scheduler included) with retries: the
    # reason etcd_mine.send first checks that the master's port answers. When Salt makes
    # it asynchronous, that check can go.
    source = inspect.getsource(salt.minion.Minion._mine_send)
    assert "def _mine_send" in source and "async def" not in source and "tries=" in source


def test_the_master_port_check(tmp_path):
    sys.path.insert(0, str(REPO / "_utils"))
    import etcd_mine  # noqa: PLC0415

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert etcd_mine.master_reachable({"master_ip": "127.0.0.1", "master_port": port}) is True
    assert etcd_mine.master_reachable({"master_ip": "127.0.0.1", "master_port": port}) is False
    assert etcd_mine.master_reachable({"master": ["m1", "m2"]}) is True  # multi-master: the daemon chooses
    fired = []
    etcd_mine.send({"id": "etcd1", "master_ip": "127.0.0.1", "master_port": port}, lambda *a: fired.append(a), "x", {})
    assert fired == []  # nothing handed to a daemon that would block on it


def test_a_held_job_reads_as_schedule_list_shows_it(loaders):
    item = loaders.modules.schedule.build_schedule_item("etcd-health", **JOB)
    added = loaders.modules.schedule.add("etcd-health", offline=True, **JOB)
    try:
        assert added["result"] is True, added
        listed = loaders.modules.schedule.list(offline=True, return_yaml=False)["etcd-health"]
        assert _state_module()._listed(item) == listed, (item, listed)
        assert "_seconds" in salt.modules.schedule.SCHEDULE_CONF  # the key _listed drops, as list does
    finally:
        loaders.modules.schedule.delete("etcd-health", offline=True)


def test_a_health_job_under_the_old_function_name_is_migrated_by_the_next_apply(loaders):
    # Before the split by concern the job called etcd_cluster.health; health.sls now
    # wants etcd_health.health, and the state replaces the old job (the alias would run
    # it meanwhile).
    loaders.modules.schedule.add("etcd-health", offline=True, **dict(JOB, function="etcd_cluster.health"))
    try:
        ret = loaders.states.etcd_health.scheduled("etcd-health", offline=True, persist=True, **JOB)
        assert ret.result is True and ret.changes, ret
        listed = loaders.modules.schedule.list(offline=True, return_yaml=False)["etcd-health"]
        assert listed["function"] == "etcd_health.health"
        again = loaders.states.etcd_health.scheduled("etcd-health", offline=True, persist=True, **JOB)
        assert again.result is True and again.changes == {}, again
    finally:
        loaders.modules.schedule.delete("etcd-health", offline=True)
