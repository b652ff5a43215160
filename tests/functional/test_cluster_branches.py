"""The formula's execution and state branches through Salt's real loader, against a real
etcd (one TLS member the test runs as a plain process on 127.0.0.1, files under a
temporary root). No systemd here: nothing in this file starts or stops a unit; what
needs systemd or several nodes is proven in the lab (tests/integration)."""

import os
import re
import sys
import time

import pytest

from labkit.preflight import REPO

sys.path.insert(0, str(REPO / "_utils"))
import etcd_topology  # noqa: E402

ME = "functional"  # the loaders' minion id, and the member's name


@pytest.fixture
def member(etcd_tls_member, set_pillar, loaders):
    assert loaders.opts["id"] == ME
    set_pillar(etcd_tls_member.site())
    return etcd_tls_member


def site_with(member, **changes):
    """The member's pillar with `changes` laid over `etcd` (one level deep)."""
    site = member.site()
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(site["etcd"].get(key), dict):
            site["etcd"][key] = dict(site["etcd"][key], **value)
        else:
            site["etcd"][key] = value
    return site


def _raw(s, path, body):
    """A request the formula never makes (raising an alarm), through its own client."""
    return etcd_topology.client(s, ME).post(path, body)


# -- settings: a pure read, once per job ------------------------------------------------


def test_settings_follow_a_pillar_change_and_callers_get_their_own_copy(member, set_pillar, loaders):
    first = loaders.modules.etcd_cluster.settings()
    assert first["ports"]["client"] == member.client_port
    first["ports"]["client"] = 1  # a caller changing its copy changes nobody else's
    assert loaders.modules.etcd_cluster.settings()["ports"]["client"] == member.client_port
    set_pillar(site_with(member, tuning={"snapshot_count": 5000}))
    assert loaders.modules.etcd_cluster.settings()["tuning"]["snapshot_count"] == 5000


def test_reading_the_settings_writes_nothing(member, loaders):
    state_dir = member.site()["etcd"]["paths"]["state"]
    loaders.modules.etcd_cluster.settings()
    loaders.modules.etcd_cluster.live_settings()
    assert not os.path.exists(state_dir)
    # A cluster formed with TLS is not moving to TLS: no marker, nothing to do.
    got = loaders.modules.etcd_cluster.mark_tls_migration()
    assert got == {"result": True, "comment": "no TLS migration in progress", "changes": {}}
    assert not os.path.exists(state_dir)


# -- the one definition of healthy --------------------------------------------------------


def test_a_serving_member_is_healthy_and_reports_ok(member, loaders):
    gate = loaders.modules.etcd_health.healthy()
    assert gate["healthy"] is True, gate
    assert gate["members"] == [ME] and gate["problems"] == [], gate
    assert re.fullmatch(r"[0-9a-f]{1,16}", gate["cluster_id"]), gate  # unpadded, as etcdctl spells it
    report = loaders.modules.etcd_health.health()
    assert report["verdict"] == "ok", report["reasons"]
    assert report["cluster_id"] == gate["cluster_id"] and report["leader"] == ME
    days = {os.path.basename(p): c["days_left"] for p, c in report["certificates"].items()}
    assert days["server.crt"] == 364 and days["client-ca.crt"] == 3649


def _alarm(loaders, action):
    member_id = loaders.modules.etcd_cluster.members()["members"][0]["id"]
    _raw(
        loaders.modules.etcd_cluster.live_settings(),
        "/v3/maintenance/alarm",
        {"action": action, "memberID": str(int(member_id, 16)), "alarm": "NOSPACE"},
    )


def test_an_alarm_blocks_every_guarded_change_and_the_report_is_critical(member, set_pillar, loaders):
    set_pillar(site_with(member, service={"health_timeout": 1}))
    _alarm(loaders, "ACTIVATE")
    try:
        gate = loaders.modules.etcd_health.healthy()
        assert gate["healthy"] is False
        assert [r["code"] for r in gate["reasons"]] == ["alarm_nospace"], gate
        report = loaders.modules.etcd_health.health()
        assert report["verdict"] == "critical" and "alarm_nospace" in {r["code"] for r in report["reasons"]}
        # The state that gates the next change waits (bounded), then fails with the reason.
        started = time.monotonic()
        ret = loaders.states.etcd_health.healthy("etcd")
        assert ret.result is False and "alarm NOSPACE" in ret.comment, ret
        assert time.monotonic() - started < 10
    finally:
        _alarm(loaders, "DEACTIVATE")
    assert loaders.modules.etcd_health.healthy()["healthy"] is True


def test_a_pillar_member_missing_from_the_cluster_blocks_and_is_a_finding(member, set_pillar, loaders):
    site = member.site()
    site["etcd"]["members"]["etcd9"] = {"address": "127.0.0.9"}
    set_pillar(site)
    gate = loaders.modules.etcd_health.healthy()
    assert gate["healthy"] is False
    assert {(r["code"], r["member"]) for r in gate["reasons"]} >= {("member_missing", "etcd9")}
    found = loaders.modules.etcd_health.check_membership()
    assert found["verdict"] == "mismatch" and [f["code"] for f in found["findings"]] == ["member_missing"]


def test_what_does_not_block_a_change_is_still_reported(member, set_pillar, loaders):
    # A certificate inside the reporting window: degraded in the report, no gate.
    set_pillar(site_with(member, health={"cert_days": 400, "schedule": False}))
    report = loaders.modules.etcd_health.health()
    assert report["verdict"] == "degraded" and "cert_expiring" in {r["code"] for r in report["reasons"]}
    assert loaders.modules.etcd_health.healthy()["healthy"] is True


def test_the_healthy_state_in_test_mode_changes_nothing(member, loaders):
    ret = loaders.states.etcd_health.healthy("etcd", test=True)
    assert ret.result is True and ret.comment == "cluster is healthy" and ret.changes == {}


# -- the lock: one contract for actions ---------------------------------------------------


def test_the_lock_refuses_a_second_holder_with_a_retcode(member, loaders):
    got = loaders.modules.etcd_lock.lock(purpose="defrag", ttl=30)
    assert got["result"] is True and got["changes"] == {"lock": {"holder": ME, "purpose": "defrag"}}
    assert "retcode" not in loaders.context
    try:
        held = loaders.modules.etcd_lock.holder()
        assert held["holder"] == ME and held["purpose"] == "defrag" and 0 < held["ttl_left"] <= 30
        again = loaders.modules.etcd_lock.lock(wait=0)
        assert again["result"] is False and again["changes"] == {} and "held by" in again["comment"]
        assert loaders.context["retcode"] == 1  # the CLI, scripts and orchestrations stop on it
    finally:
        released = loaders.modules.etcd_lock.unlock()
    assert released["result"] is True and released["changes"] == {"lock": {"released": ME}}
    assert loaders.modules.etcd_lock.holder() is None
    nothing = loaders.modules.etcd_lock.unlock()
    assert nothing["result"] is True and nothing["changes"] == {} and nothing["comment"] == "the cluster lock is free"


def test_the_old_names_answer_for_one_release(member, loaders):
    assert loaders.modules.etcd_cluster.healthy()["healthy"] is True
    report = loaders.modules.etcd_cluster.health()
    assert report["verdict"] == "ok", report["reasons"]
    assert loaders.modules.etcd_cluster.lock_holder() is None
    assert loaders.modules.etcd_cluster.kv_backend_address() == f"https://127.0.0.1:{member.client_port}"
    doc = loaders.modules.sys.doc("etcd_cluster.health")["etcd_cluster.health"]
    assert "Renamed to ``etcd_health.health``" in doc
    # The CA minion's side: a master's peer setting may still name the old function.
    doc = loaders.modules.sys.doc("etcd_tls.refresh_policies")["etcd_tls.refresh_policies"]
    assert "Renamed to ``etcd_ca.refresh_policies``" in doc
    assert loaders.modules.etcd_tls.signing_policies() == loaders.modules.etcd_ca.signing_policies()


# -- membership: the quorum rule refuses, a non-member is nothing to do ----------------------


def test_removing_the_only_member_is_refused_and_a_stranger_is_nothing_to_do(member, loaders):
    refused = loaders.modules.etcd_membership.remove(ME)
    assert refused["result"] is False and refused["removed"] is False and "not removed" in refused["comment"]
    assert loaders.context.pop("retcode") == 1
    assert [m["name"] for m in loaders.modules.etcd_cluster.members()["members"]] == [ME]
    absent = loaders.modules.etcd_membership.remove("etcd9")
    assert absent["result"] is True and absent["changes"] == {} and absent["absent"] is True
    assert "retcode" not in loaders.context


# -- how a stopped member would start --------------------------------------------------------


def test_a_member_with_data_starts_with_it(member, loaders):
    plan = loaders.modules.etcd_bootstrap.plan()
    assert plan["action"] == "start", plan


def test_a_started_member_whose_data_is_gone_is_refused_never_rebootstrapped(member, set_pillar, loaders, tmp_path):
    empty = tmp_path / "empty-data"
    set_pillar(site_with(member, paths=dict(member.site()["etcd"]["paths"], data=str(empty))))
    plan = loaders.modules.etcd_bootstrap.plan()
    assert plan["action"] == "refuse" and "its data is lost" in plan["reason"], plan


def test_a_member_the_running_cluster_does_not_list_is_added_as_a_learner(set_pillar, loaders, tmp_path):
    from etcd_process import EtcdProcess, free_port

    # A running cluster whose one member is named otherwise and has another peer URL.
    other = EtcdProcess(tmp_path / "other", name="other").start()
    try:
        site = other.site()
        site["etcd"]["members"] = {ME: {"address": "127.0.0.1"}}
        site["etcd"]["ports"]["peer"] = free_port()
        site["etcd"]["paths"]["data"] = str(tmp_path / "new-data")
        set_pillar(site)
        plan = loaders.modules.etcd_bootstrap.plan()
    finally:
        other.stop()
    assert plan["action"] == "add" and f"running without {ME}" in plan["reason"], plan


@pytest.mark.parametrize(
    ("bootstrap", "recorded", "action", "words"),
    [
        (True, None, "new", "bootstrap allowed"),
        (False, None, "refuse", "`etcd:cluster:bootstrap` is false"),
        (True, "8e9e05c52164694d", "refuse", "refusing to bootstrap a second cluster"),
    ],
    ids=["new-allowed", "bootstrap-off", "cluster-recorded"],
)
def test_nobody_answering_bootstraps_only_under_all_four_conditions(
    member, set_pillar, loaders, tmp_path, bootstrap, recorded, action, words
):
    from etcd_process import free_port

    paths = dict(member.site()["etcd"]["paths"], data=str(tmp_path / "nothing"))
    site = site_with(member, paths=paths, ports={"client": free_port(), "peer": free_port()})
    site["etcd"]["cluster"]["bootstrap"] = bootstrap
    set_pillar(site)
    if recorded:
        loaders.modules.grains.setval("etcd_cluster_ids", {"functional": recorded}, refresh_pillar=False)
    try:
        plan = loaders.modules.etcd_bootstrap.plan()
    finally:
        loaders.modules.grains.delkey("etcd_cluster_ids", force=True)
    assert plan["action"] == action and words in plan["reason"], plan


# -- the guarded restart refuses before it touches anything -----------------------------------


def test_a_failed_restart_marker_stops_every_guarded_restart_until_removed(member, loaders):
    s = loaders.modules.etcd_cluster.live_settings()
    client = etcd_topology.client(s, ME)
    marker = "/etcd-formula/functional/restart-failed"
    client.put(marker, '{"member": "etcd2", "reasons": ["flags changed"]}')
    pid = member.proc.pid
    try:
        got = loaders.modules.etcd_rolling.restart(reasons=["flags changed: ETCD_SNAPSHOT_COUNT"])
        assert got["result"] is False and got["restarted"] is False and got["changes"] == {}
        assert "an earlier guarded restart failed" in got["comment"] and marker in got["comment"], got
        assert loaders.context.pop("retcode") == 1
        # Nothing was touched: the same etcd serves, and nobody holds the lock.
        assert member.proc.poll() is None and member.proc.pid == pid
        assert loaders.modules.etcd_lock.holder() is None
        assert loaders.modules.etcd_health.healthy()["healthy"] is True
    finally:
        assert client.delete(marker) == 1
    assert client.get(marker) is None


def test_tls_status_names_every_certificate_with_its_days(member, loaders):
    status = loaders.modules.etcd_tls.status()
    days = {os.path.basename(p): c.get("days_left") for p, c in status.items()}
    assert days["server.crt"] == 364 and days["peer.crt"] == 364 and days["admin.crt"] == 364, status


def _days(s):
    # The certificate days the health report carries (a private helper of the module).
    return sys.modules["salt.loaded.ext.module.etcd_health"]._certificate_days(s)


def test_the_formula_calls_with_the_gateway_pair_and_with_the_admin_pair_until_it_has_one(member, set_pillar, loaders):
    site = member.site()
    site["etcd"]["tls"].update(mode="ca_minion", ca_minion="ca1")  # the pair is the CA minion's to issue
    set_pillar(site)
    s = loaders.modules.etcd_cluster.live_settings()
    pki = member.tls_dir
    # The CN-less certificate is accepted by the gateway (auth off): the health check's
    # calls, and its certificate days, include it.
    assert etcd_topology.client_tls(s)[1] == str(pki / "gateway.crt")
    assert loaders.modules.etcd_health.healthy()["healthy"] is True
    assert str(pki / "gateway.crt") in _days(s)
    # A member the new release reached before its apply: no pair yet, the admin pair
    # serves, and the report does not call a certificate it never had expired.
    for name in ("gateway.crt", "gateway.key"):
        (pki / name).unlink()
    assert etcd_topology.client_tls(s)[1] == str(pki / "admin.crt")
    assert loaders.modules.etcd_health.healthy()["healthy"] is True
    days = _days(s)
    assert str(pki / "gateway.crt") not in days and days[str(pki / "admin.crt")]["days_left"] == 364, days
    assert "gateway" in loaders.modules.etcd_tls.plan()  # the next apply issues it
    assert loaders.modules.etcd_tls.plan()["gateway"] == ["no certificate yet"]


def test_a_node_without_a_certificate_during_a_ca_rotation_fails_clearly(member, set_pillar, loaders):
    # A trust file with two CAs is a rotation in progress; this node has no admin
    # certificate, and none may be issued until every member trusts the new CA.
    site = member.site()
    site["etcd"]["tls"].update(mode="ca_minion", ca_minion="ca1")
    set_pillar(site)
    pki = member.tls_dir
    (pki / "client-ca.crt").write_text((pki / "client-ca.crt").read_text() + (pki / "peer-ca.crt").read_text())
    (pki / "admin.crt").unlink()
    ret = loaders.states.etcd_tls.certificates("etcd")
    assert ret.result is False and ret.changes == {}, ret
    assert "no admin certificate on this node" in ret.comment and "Finish the rotation first" in ret.comment
    assert not (pki / "admin.crt").exists()
