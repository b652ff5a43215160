"""The health report's judgement: metrics parsing, membership findings, verdicts and reasons.

The facts are shaped as `etcd_health.gather` returns them; the lab tests gather real ones.
"""

import copy

import etcd_health
import etcd_settings
import pytest

IDS = {"etcd1": 11, "etcd2": 12, "etcd3": 13}
METRICS = """# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 90
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"} 95
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.004"} 99
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.008"} 100
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 100
etcd_disk_wal_fsync_duration_seconds_sum 0.1
etcd_disk_wal_fsync_duration_seconds_count 100
etcd_server_has_leader 1
etcd_server_quota_backend_bytes 1.048576e+06
grpc_server_handled_total{grpc_code="OK",grpc_method="Range"} 7
"""


def settings():
    s = etcd_settings.merge(
        {
            "cluster": {"name": "lab"},
            "members": {n: {"address": f"10.0.0.{i}"} for n, i in IDS.items()},
            "tls": {"enabled": False},
        }
    )
    return s


def member(name, learner=False, started=True):
    return {
        "id": IDS[name],
        "name": name if started else "",
        "peer_urls": [f"http://10.0.0.{IDS[name]}:2380"],
        "client_urls": [f"http://10.0.0.{IDS[name]}:2379"] if started else [],
        "is_learner": learner,
    }


def status(name, leader="etcd1", index=100, db=100_000, in_use=None):
    return {
        "cluster_id": 99,
        "member_id": IDS[name],
        "leader": IDS[leader] if leader else 0,
        "version": "3.5.1",
        "db_size": db,
        "db_size_in_use": db if in_use is None else in_use,
        "raft_term": 3,
        "raft_index": index,
        "raft_applied_index": index,
        "is_learner": False,
        "errors": [],
    }


def healthy_facts():
    return {
        "local": "etcd1",
        "errors": [],
        "listing": {"cluster_id": 99, "members": [member(n) for n in IDS]},
        "members": {IDS[n]: {"status": status(n), "health": True} for n in IDS},
        "alarms": [],
        "metrics": etcd_health.parse_metrics(METRICS),
        "version": {"etcdserver": "3.5.1", "etcdcluster": "3.5.0"},
        "duration_ms": 12.0,
    }


def verdict(facts, s=None):
    return etcd_health.assess(facts, s or settings())


def codes(report):
    return sorted((r["code"], r["member"]) for r in report["reasons"])


def test_parse_metrics_reads_the_quota_and_the_fsync_histogram_only():
    m = etcd_health.parse_metrics(METRICS)
    assert m["etcd_server_quota_backend_bytes"] == 1048576
    assert "grpc_server_handled_total" not in m
    h = etcd_health.histogram(m, "etcd_disk_wal_fsync_duration_seconds")
    assert h == {"count": 100, "mean_ms": 1.0, "p99_ms": 4.0}


def test_healthy_cluster_is_ok_with_quota_from_metrics():
    report = verdict(healthy_facts())
    assert report["verdict"] == "ok", report["reasons"]
    assert report["leader"] == "etcd1"
    assert report["quota_bytes"] == 1048576
    assert {m["name"]: m["db_pct"] for m in report["members"]}["etcd2"] == pytest.approx(9.5, abs=0.1)
    assert report["quorum"] == {"voters": 3, "serving": 2 + 1, "needed": 2}


def test_in_use_share_of_the_quota_is_reported_beside_the_size():
    # After a compaction the file keeps its size; the in-use share shows what a defrag frees.
    facts = healthy_facts()
    facts["members"][IDS["etcd2"]]["status"] = status("etcd2", db=800_000, in_use=200_000)
    row = {m["name"]: m for m in verdict(facts)["members"]}["etcd2"]
    assert (row["db_pct"], row["db_in_use_pct"]) == (pytest.approx(76.3, abs=0.1), pytest.approx(19.1, abs=0.1))


def test_one_member_down_is_degraded_and_names_it():
    facts = healthy_facts()
    facts["members"][IDS["etcd3"]] = {"status": None, "health": None}
    report = verdict(facts)
    assert report["verdict"] == "degraded"
    assert codes(report) == [("member_down", "etcd3")]


def test_two_members_down_lose_quorum_and_are_critical():
    facts = healthy_facts()
    for n in ("etcd2", "etcd3"):
        facts["members"][IDS[n]] = {"status": None, "health": None}
    facts["members"][IDS["etcd1"]] = {"status": status("etcd1", leader=None), "health": False}
    report = verdict(facts)
    assert report["verdict"] == "critical"
    assert {"no_quorum", "no_leader"} <= {c for c, _ in codes(report)}


def test_election_after_a_leader_crash_is_rechecked_but_lost_quorum_is_not():
    # The leader etcd1 crashed; etcd2 and etcd3 answer, with no leader yet: an election.
    facts = healthy_facts()
    facts["members"][IDS["etcd1"]] = {"status": None, "health": None}
    for n in ("etcd2", "etcd3"):
        facts["members"][IDS[n]] = {"status": status(n, leader=None), "health": False}
    report = verdict(facts)
    assert report["verdict"] == "critical" and etcd_health.electing(report)
    # Before they notice: both still name etcd1, which does not answer, and neither serves.
    for n in ("etcd2", "etcd3"):
        facts["members"][IDS[n]] = {"status": status(n), "health": False}
    report = verdict(facts)
    assert report["verdict"] == "critical" and etcd_health.electing(report)
    # Two of three gone: one answering member is no quorum, no election can end it.
    facts["members"][IDS["etcd2"]] = {"status": None, "health": None}
    assert not etcd_health.electing(verdict(facts))
    # A leader and one member down is plain degraded, nothing to look at twice.
    assert not etcd_health.electing(verdict(healthy_facts()))


def test_nospace_is_critical_but_members_still_serve_reads():
    facts = healthy_facts()
    facts["alarms"] = [{"member_id": IDS["etcd2"], "alarm": "NOSPACE"}]
    for n in IDS:
        facts["members"][IDS[n]]["health"] = False  # /health is false under any alarm
    report = verdict(facts)
    assert report["verdict"] == "critical"
    assert ("alarm_nospace", "etcd2") in codes(report)
    assert report["quorum"]["serving"] == 3
    assert report["alarms"] == [{"alarm": "NOSPACE", "member": "etcd2"}]


def test_quota_lag_skew_and_slow_disk_are_degraded():
    facts = healthy_facts()
    facts["members"][IDS["etcd2"]]["status"] = status("etcd2", db=900_000)  # 86% of 1 MiB
    facts["members"][IDS["etcd3"]]["status"] = dict(status("etcd3", index=5000), version="3.4.23")
    facts["members"][IDS["etcd1"]]["status"] = status("etcd1", index=7000)
    s = settings()
    s["health"]["wal_fsync_p99_ms"] = 2
    report = verdict(facts, s)
    assert report["verdict"] == "degraded"
    found = {c for c, _ in codes(report)}
    assert {"quota_high", "raft_lag", "version_skew", "slow_disk"} <= found
    assert ("raft_lag", "etcd3") in codes(report) and ("raft_lag", "etcd2") in codes(report)


def test_quota_over_critical_threshold_is_critical():
    facts = healthy_facts()
    facts["members"][IDS["etcd2"]]["status"] = status("etcd2", db=1_040_000)
    assert ("quota_critical", "etcd2") in codes(verdict(facts))
    assert verdict(facts)["verdict"] == "critical"


def test_membership_findings_missing_extra_unstarted_learner_and_urls():
    s = settings()
    s["members"]["etcd4"] = {"address": "10.0.0.14"}
    listing = {
        "cluster_id": 99,
        "members": [
            member("etcd1"),
            dict(member("etcd2"), client_urls=["http://10.9.9.9:2379"]),
            dict(member("etcd3"), is_learner=True),
            {"id": 77, "name": "", "peer_urls": ["http://10.0.0.77:2380"], "client_urls": [], "is_learner": True},
        ],
    }
    found = codes({"reasons": etcd_health.membership_findings(s, listing)})
    assert found == [
        ("client_urls_mismatch", "etcd2"),
        ("learner_pending", "etcd3"),
        ("member_extra", "4d"),
        ("member_missing", "etcd4"),
    ]


def test_unstarted_member_found_by_peer_url():
    listing = {"cluster_id": 99, "members": [member("etcd1"), member("etcd2"), member("etcd3", started=False)]}
    found = codes({"reasons": etcd_health.membership_findings(settings(), listing)})
    assert found == [("member_unstarted", "etcd3")]


def test_no_member_answering_is_critical_unreachable():
    facts = {"local": "etcd1", "errors": ["member list: refused"], "listing": None, "members": {}, "alarms": []}
    report = verdict(facts)
    assert report["verdict"] == "critical"
    assert codes(report) == [("unreachable", None)]


def test_expiring_and_expired_certificates():
    report = etcd_health.assess(
        healthy_facts(), settings(), certificates={"/etc/etcd/pki/server.crt": {"days_left": 3}}
    )
    assert ("cert_expiring", "etcd1") in codes(report) and report["verdict"] == "degraded"
    report = etcd_health.assess(
        copy.deepcopy(healthy_facts()), settings(), certificates={"/etc/etcd/pki/peer.crt": {"days_left": -1}}
    )
    assert report["verdict"] == "critical"
    future = {"/etc/etcd/pki/peer.crt": {"days_left": 365, "starts_in_s": 7200, "not_yet_valid": True}}
    report = etcd_health.assess(copy.deepcopy(healthy_facts()), settings(), certificates=future)
    assert ("cert_not_yet_valid", "etcd1") in codes(report) and report["verdict"] == "critical"
    assert "7200 s" in report["reasons"][0]["text"], report["reasons"]


class DownHere:
    """A client whose requests to this member's own (loopback) endpoint fail, as they do
    when its etcd is stopped or crash-looping while the minion runs."""

    def __init__(self):
        self.s = settings()

    def _check(self, endpoint):
        if endpoint is not None and "127.0.0.1" in endpoint:
            raise etcd_health.etcd_client.EtcdError(f"{endpoint}: connection refused")

    def member_list(self, endpoint=None):
        self._check(endpoint)
        return {"cluster_id": 99, "members": [member(n) for n in IDS]}

    def status(self, endpoint):
        self._check(endpoint)
        name = next(n for n, i in IDS.items() if f"10.0.0.{i}:" in endpoint)
        if name == "etcd1":
            raise etcd_health.etcd_client.EtcdError(f"{endpoint}: connection refused")
        return status(name, leader="etcd2")

    def health(self, endpoint):
        return "127.0.0.1" not in endpoint and "10.0.0.11:" not in endpoint

    def alarms(self, endpoint=None):
        self._check(endpoint)
        return []

    def metrics(self, endpoint, until=None):
        self._check(endpoint)
        return METRICS

    def version(self, endpoint):
        self._check(endpoint)
        return {"etcdserver": "3.5.1", "etcdcluster": "3.5.0"}

    def get(self, key, endpoint=None):  # the backup records: none
        self._check(endpoint)


def test_local_member_down_is_reported_through_the_others():
    s = settings()
    facts = etcd_health.gather(DownHere(), s, "etcd1")
    assert [m["name"] for m in facts["listing"]["members"]] == ["etcd1", "etcd2", "etcd3"]
    assert any(e.startswith("listing: ") for e in facts["errors"]), facts["errors"]
    report = verdict(facts, s)
    assert report["verdict"] == "degraded"
    assert ("member_down", "etcd1") in codes(report)


# --- A health check that failed: its own report ----------------------------------------

ERROR_CASES = [
    # (settings or raw pillar, cluster named in the report and its event tag)
    ({"cluster": {"name": "storageos"}}, "storageos"),
    ({"cluster": {"name": "../../mine/ca1"}}, "unknown"),  # never a path or a tag part
    ({"cluster": {"name": "two words"}}, "unknown"),
    ({"cluster": {"name": None}}, "unknown"),
    ({"cluster": ["storageos"]}, "unknown"),  # a wrong type in pillar, not a traceback
    ("not a mapping", "unknown"),
    (None, "unknown"),
]


@pytest.mark.parametrize(("settings", "cluster"), ERROR_CASES)
def test_error_report_names_the_exception_and_a_safe_cluster(settings, cluster):
    report = etcd_health.error_report(ModuleNotFoundError("No module named 'etcd_tls'"), settings, "etcd2")
    assert report["cluster"] == cluster
    assert report["verdict"] == "error" and report["minion"] == "etcd2"
    assert report["error"] == "ModuleNotFoundError: No module named 'etcd_tls'"
    assert [(r["code"], r["member"], r["level"]) for r in report["reasons"]] == [("check_failed", "etcd2", "error")]


def test_error_report_text_is_bounded():
    report = etcd_health.error_report(RuntimeError("x" * 5000), {"cluster": {"name": "c"}}, "etcd1")
    assert len(report["error"]) == 500


def test_a_site_that_never_chose_tls_is_degraded_until_it_says_so():
    s = settings()
    s["tls_chosen"] = False  # etcd:tls:enabled absent from pillar (etcd_settings.tls_chosen)
    report = etcd_health.assess(healthy_facts(), s)
    assert report["verdict"] == "degraded"
    assert [r["code"] for r in report["reasons"]] == ["plain_http_implicit"]
    assert "etcd:tls:enabled" in report["reasons"][0]["text"]


def _missing(*names):
    return [{"code": "member_missing", "member": n, "text": f"{n} is in pillar"} for n in names]


@pytest.mark.parametrize(
    ("reasons", "announced", "absent"),
    [
        (_missing("etcd9"), {}, ["etcd9"]),  # no minion ever said it applies the formula
        (_missing("etcd4"), {"etcd4": {"cluster": "storageos", "time": 1.0}}, []),  # on its way: wait
        (_missing("etcd4"), {"etcd4": {"cluster": "other", "time": 1.0}}, ["etcd4"]),  # another site's minion
        (_missing("etcd4"), {"etcd4": "garbage"}, ["etcd4"]),  # mine data is minion input: checked
        (_missing("etcd5", "etcd4"), {"etcd4": {"cluster": "storageos"}}, ["etcd5"]),
        ([{"code": "member_down", "member": "etcd2", "text": "down"}], {}, []),  # waiting may help
        ([{"code": "member_unstarted", "member": "etcd4", "text": "added"}], {}, []),  # its minion added it
    ],
)
def test_the_gate_stops_waiting_only_for_a_pillar_member_without_a_minion(reasons, announced, absent):
    assert etcd_health.without_minion(reasons, announced, "storageos") == absent


MIB = 1024 * 1024
# The data dir's filesystem: free bytes -> the reason codes it gives (64 MiB: one WAL segment).
DISK = [
    ({"path": "/var/lib/etcd", "free_bytes": 10 * 1024 * MIB, "total_bytes": 20 * 1024 * MIB}, []),
    ({"path": "/var/lib/etcd", "free_bytes": 64 * MIB, "total_bytes": 100 * MIB}, []),
    ({"path": "/var/lib/etcd", "free_bytes": 64 * MIB - 1, "total_bytes": 100 * MIB}, ["disk_full"]),
    ({"path": "/var/lib/etcd", "free_bytes": 0, "total_bytes": 100 * MIB}, ["disk_full"]),
    (None, []),  # not readable: no finding rather than a guess
    ({"path": "/var/lib/etcd", "free_bytes": "0"}, []),
]


@pytest.mark.parametrize(("disk", "found"), DISK)
def test_the_data_dir_filesystem(disk, found):
    assert [r["code"] for r in etcd_health.disk_findings("etcd1", disk)] == found


def test_a_full_disk_is_critical_even_when_no_member_answers():
    facts = {"local": "etcd1", "errors": ["member list: refused"], "listing": None, "members": {}, "alarms": []}
    disk = {"path": "/var/lib/etcd", "free_bytes": 3 * MIB, "total_bytes": 100 * MIB}
    report = etcd_health.assess(facts, settings(), disk=disk)
    assert report["verdict"] == "critical" and ("disk_full", "etcd1") in codes(report)
    assert "3 MiB free" in next(r["text"] for r in report["reasons"] if r["code"] == "disk_full")
