"""The lab itself: minions answer, systemd runs the nodes, faults are real and heal."""

import os
import re
import subprocess

import pytest

from labkit import lab
from labkit.state import RunState

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_minion_answers(lab_session):
    assert lab_session.salt("*", "test.ping") == {n: True for n in lab_session.state["nodes"]}


def test_service_resolves_to_systemd_inside_a_node(lab_session):
    grains = lab_session.salt("etcd1", "grains.item", "init", "virtual")["etcd1"]
    assert grains == {"init": "systemd", "virtual": "systemd-nspawn"}
    assert lab_session.salt("etcd1", "service.status", "salt-minion") == {"etcd1": True}
    assert lab_session.salt("etcd1", "service.available", "systemd-timesyncd")["etcd1"] is True
    # The host's enabled units are masked in the node, not running.
    assert lab_session.salt("etcd1", "service.status", "systemd-timesyncd") == {"etcd1": False}


def test_nodes_have_no_route_off_the_lab(lab_session):
    routes = lab_session.exec("etcd1", "ip", "route").stdout
    assert "default" not in routes
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "0"


def test_crash_is_observable_and_boot_recovers(lab_session):
    lab_session.crash("etcd2")
    assert not lab_session.running("etcd2")
    assert lab_session.salt("etcd2", "test.ping", "-t", "3").get("etcd2") is not True
    lab_session.boot("etcd2")
    assert lab_session.salt("etcd2", "test.ping") == {"etcd2": True}


def test_partition_cuts_only_the_pair_and_heals(lab_session):
    ip1, ip3 = lab_session.ip("etcd1"), lab_session.ip("etcd3")
    gw = lab_session.state["gateway"]
    port = lab_session.state["master"]["ret_port"]
    assert lab_session.tcp_open("etcd1", gw, port)
    lab_session.partition("etcd1", "etcd3")
    try:
        # sshd is not there; the master's port on the gateway stands in for "reachable".
        assert not lab_session.tcp_open("etcd1", ip3, 22)
        assert lab_session.exec("etcd1", "ip", "route", "get", ip3).returncode != 0
        assert lab_session.exec("etcd3", "ip", "route", "get", ip1).returncode != 0
        assert lab_session.exec("etcd2", "ip", "route", "get", ip3).returncode == 0
        assert lab_session.tcp_open("etcd1", gw, port)
    finally:
        lab_session.heal()
    assert lab_session.exec("etcd1", "ip", "route", "get", ip3).returncode == 0


def test_isolated_node_misses_the_master_until_healed(lab_session):
    lab_session.isolate("etcd3")
    try:
        assert lab_session.salt("etcd3", "test.ping", "-t", "3").get("etcd3") is not True
    finally:
        lab_session.heal()
    lab_session.wait(lambda: lab_session.salt("etcd3", "test.ping", "-t", "5") == {"etcd3": True}, 60, 1, "etcd3 back")


def _lab(*args, env=None, check=True):
    proc = subprocess.run([os.path.join(REPO, "lab"), *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def host_etcd_decoys():
    """Files where a host-installed etcd would sit; the lab must hide them from nodes."""
    decoys = ["/etc/default/etcd", "/etc/etcd.conf"]
    made = [p for p in decoys if not os.path.exists(p)]
    for path in made:
        with open(path, "w") as fh:
            fh.write("# decoy written by tests/integration/test_lab.py\n")
    yield decoys
    for path in made:
        os.unlink(path)


def test_cli_run_beside_another_hides_host_etcd_and_leaves_nothing(lab_session, host_etcd_decoys):
    up = _lab("up", "--nodes", "1")
    run_id = re.search(r"lab (\w+) up", up.stdout).group(1)
    env = dict(os.environ, LAB_RUN=run_id)
    state = RunState.load(run_id)
    try:
        assert state["prefix"] != lab_session.state["prefix"]
        assert state["bridge"] != lab_session.state["bridge"]
        pong = _lab("salt", "*", "test.ping", "--out=json", "--static", env=env).stdout
        assert '"etcd1": true' in pong and '"ca1": true' in pong
        for decoy in host_etcd_decoys:
            assert _lab("exec", "etcd1", "test", "-e", decoy, env=env, check=False).returncode == 1
        assert "running" in _lab("status", env=env).stdout
    finally:
        _lab("down", env=env)
    assert lab.leftovers(state) == []
    # Idempotent, and the other run is untouched.
    assert _lab("down", env=env, check=False).returncode == 1  # "no lab run <id>": nothing to do
    assert lab_session.salt("etcd1", "test.ping") == {"etcd1": True}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--nodes", "0"], "--nodes must be between 1 and 20"),
        (["exec", "nosuch", "true"], "no node 'nosuch'"),
        (["frobnicate"], "unknown or incomplete command"),
    ],
)
def test_wrong_arguments_get_one_line(lab_session, args, message):
    env = dict(os.environ, LAB_RUN=lab_session.state["id"])
    proc = _lab(*args, env=env, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_non_root_gets_one_line():
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", os.path.join(REPO, "lab"), "up"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "lab: the lab needs root (it creates bridges, mounts and containers): run it as root"
