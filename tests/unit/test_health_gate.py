"""What stops a guarded change (etcd_health.blocking): the health report's reasons, read
as a table. The gate and the report are one verdict; this is the line between them."""

import etcd_health
import etcd_validate_node
import pytest


def reason(code, member=None, level="degraded"):
    return {"code": code, "member": member, "level": level, "text": f"{code} {member}"}


def row(name, learner=False):
    return {"name": name, "learner": learner}


MEMBERS = [row("etcd1"), row("etcd2"), row("etcd3")]

# (reasons in the report, members, codes that block a change)
GATE = [
    ([], MEMBERS, []),
    ([reason("no_quorum", level="critical")], MEMBERS, ["no_quorum"]),
    ([reason("no_leader", level="critical")], MEMBERS, ["no_leader"]),
    ([reason("cluster_id_split", level="critical")], MEMBERS, ["cluster_id_split"]),
    ([reason("unreachable", level="critical")], [], ["unreachable"]),
    ([reason("member_down", "etcd2")], MEMBERS, ["member_down"]),
    ([reason("member_missing", "etcd4")], MEMBERS, ["member_missing"]),
    ([reason("member_unstarted", "etcd4")], MEMBERS, ["member_unstarted"]),
    ([reason("alarm_nospace", "etcd1", "critical")], MEMBERS, ["alarm_nospace"]),
    ([reason("alarm_corrupt", "etcd1", "critical")], MEMBERS, ["alarm_corrupt"]),
    # A learner blocks, named in pillar or not (a join in progress holds the cluster).
    ([reason("learner_pending", "etcd4")], MEMBERS + [row("etcd4", True)], ["learner_pending"]),
    ([reason("member_extra", "etcd9")], MEMBERS + [row("etcd9", True)], ["learner_pending"]),
    # Reported, never blocking: a restart is often how they get fixed.
    ([reason("member_extra", "etcd9")], MEMBERS + [row("etcd9")], []),
    ([reason("slow_disk", "etcd1")], MEMBERS, []),
    ([reason("quota_high", "etcd1")], MEMBERS, []),
    ([reason("quota_critical", "etcd1", "critical")], MEMBERS, []),
    ([reason("cert_expiring", "etcd1")], MEMBERS, []),
    ([reason("cert_expired", "etcd1", "critical")], MEMBERS, []),
    ([reason("cert_not_yet_valid", "etcd1", "critical")], MEMBERS, []),
    ([reason("disk_full", "etcd1", "critical")], MEMBERS, []),  # its member_down, if any, blocks
    ([reason("raft_lag", "etcd2")], MEMBERS, []),
    ([reason("version_skew")], MEMBERS, []),
    ([reason("peer_urls_mismatch", "etcd1"), reason("client_urls_mismatch", "etcd1")], MEMBERS, []),
    ([reason("plain_http_implicit", "etcd1")], MEMBERS, []),
]


@pytest.mark.parametrize(("reasons", "members", "blocking"), GATE)
def test_what_blocks_a_guarded_change(reasons, members, blocking):
    report = {"reasons": reasons, "members": members}
    assert [r["code"] for r in etcd_health.blocking(report)] == blocking


SITE = {"members": {"etcd1": {"address": "10.0.0.1"}}, "tls": {"enabled": True}}

# (settings, as_member, address bound here, runs https with data, keys refused)
NODE = [
    (SITE, True, True, False, []),
    (SITE, True, False, False, ["etcd:members:etcd1:address"]),
    (SITE, False, False, False, []),  # a consumer (the Kubernetes minion) listens nowhere
    (dict(SITE, tls={"enabled": False}), True, True, True, ["etcd:tls:enabled"]),
    (dict(SITE, tls={"enabled": False}), True, True, False, []),  # plain HTTP from the start
    (SITE, True, True, True, []),  # TLS stays on
    ({"members": ["etcd1"]}, True, False, False, []),  # a list: etcd_validate refuses it
]


@pytest.mark.parametrize(("settings", "member", "local", "https", "keys"), NODE)
def test_the_rules_about_the_node_itself(settings, member, local, https, keys):
    found = etcd_validate_node.errors(settings, "etcd1", member, local, ["127.0.0.1", "10.0.0.7"], https)
    assert [e["key"] for e in found] == keys
    for e in found:
        assert e["fix"].startswith("set `"), e
    if "etcd:members:etcd1:address" in keys:
        assert "(it has 10.0.0.7)" in found[0]["fix"]  # the node's own addresses, no loopback
