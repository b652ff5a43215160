"""Scheduled health checks on real nodes: events on the master, the reactor's alerts, the report.

A fresh 3-member cluster with a 4 MiB quota and a 3 s check interval; then a crash, a
partition and a full database, each seen by the scheduled checks, and each healed.
"""

import json
import time
from pathlib import Path

import pytest
from results import MEMBERS, changed, ok, set_site, wipe

CLUSTER = "healthlab"
CA = "ca1"
# The example site's TLS: on members the etcdctl wrapper sets the endpoint and the admin
# certificate; an --endpoints given here replaces only the endpoint.
ETCDCTL = ["etcdctl"]
INTERVAL = 3
QUOTA = 4 * 1024**2


@pytest.fixture(scope="module")
def cluster(lab):
    site = lab.site()
    wipe(lab, MEMBERS)
    site["etcd"]["cluster"].update(name=CLUSTER, bootstrap=True)
    site["etcd"]["tuning"]["quota_backend_bytes"] = QUOTA
    site["etcd"]["health"] = {"interval": INTERVAL, "splay": 0}
    assert site["etcd"]["tls"]["enabled"] and site["etcd"]["tls"]["ca_minion"] == CA  # the example's default
    set_site(lab, site)
    lab.salt(CA, "saltutil.sync_all")
    ok(lab.apply(CA, sls="etcd.ca")[CA])
    ret = lab.apply(MEMBERS)
    for name in MEMBERS:
        ok(ret[name])
    yield lab
    for name in MEMBERS:
        lab.salt(name, "schedule.delete", "etcd-health")
    wipe(lab, MEMBERS)


def wait_events(cluster, listener, after, tag, predicate, timeout=45):
    """[(tag, data)] of master events matching `tag` since `after` that satisfy `predicate`."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        events = sorted(listener.get_events([(cluster.master.id, tag)], after_time=after), key=lambda e: e.stamp)
        seen = [(e.tag, e.data) for e in events]
        hits = [s for s in seen if predicate(*s)]
        if hits:
            return hits
        time.sleep(0.5)
    summary = [(t, d.get("id"), [r["code"] for r in d.get("data", d).get("reasons", [])]) for t, d in seen]
    raise AssertionError(f"nothing matched {tag} in {timeout} s; saw {summary[-12:]}")


def wait_reports(cluster, listener, after, predicate, timeout=45):
    """Health reports (minion, report) sent since `after` for which predicate(verdict, minion, report)."""
    hits = wait_events(
        cluster,
        listener,
        after,
        f"etcd/{CLUSTER}/health/*",
        lambda tag, data: predicate(tag.rsplit("/", 1)[1], data.get("id"), data.get("data") or {}),
        timeout,
    )
    return [(data["id"], data["data"]) for _, data in hits]


def codes(report, code):
    return [r["member"] for r in report.get("reasons", []) if r["code"] == code]


def wait_member_down(cluster, listener, after, down, reporter=None):
    """(minion, report) of the first degraded report naming `down` member_down, sent by
    `reporter` when given."""
    return wait_reports(
        cluster,
        listener,
        after,
        lambda v, m, r: v == "degraded" and down in codes(r, "member_down") and reporter in (None, m),
    )[0]


def all_ok_again(cluster, listener, after):
    for name in MEMBERS:
        wait_reports(cluster, listener, after, lambda v, m, r, n=name: m == n and v == "ok", timeout=60)


def test_schedule_fires_on_time_and_reports_ok(cluster, event_listener):
    after = time.time()
    minion, report = wait_reports(cluster, event_listener, after, lambda v, m, r: v == "ok", timeout=30)[0]
    assert report["verdict"] == "ok" and report["leader"] in MEMBERS and report["minion"] == minion
    assert {m["name"] for m in report["members"]} == set(MEMBERS)
    assert all(m["serving"] and m["lag"] is not None for m in report["members"])
    assert report["quota_bytes"] == QUOTA  # read from the member's /metrics
    assert report["wal_fsync"]["count"] > 0
    # TLS: every certificate's days left, read in the minion process that runs the schedule.
    assert len(report["certificates"]) == 6 and all(c["days_left"] > 300 for c in report["certificates"].values())
    assert 0 < report["duration_ms"] < 2000
    # Every member's own check arrives, every INTERVAL seconds.
    time.sleep(4 * INTERVAL)
    events = event_listener.get_events([(cluster.master.id, f"etcd/{CLUSTER}/health/ok")], after_time=after)
    stamps = {}
    for e in sorted(events, key=lambda e: e.stamp):
        stamps.setdefault(e.data["id"], []).append(e.stamp.timestamp())
    assert sorted(stamps) == MEMBERS
    for name, times in stamps.items():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert len(gaps) >= 2 and all(0.5 * INTERVAL <= g <= 2 * INTERVAL for g in gaps), (name, gaps)


def test_second_apply_keeps_the_schedule_unchanged(cluster):
    ret = cluster.apply(MEMBERS)
    for name in MEMBERS:
        assert changed(ok(ret[name])) == [], ret[name]
    listed = cluster.salt("etcd1", "schedule.list", "return_yaml=False")["etcd1"]
    assert listed["etcd-health"]["seconds"] == INTERVAL
    assert listed["etcd-health"]["function"] == "etcd_health.health"


def test_a_changed_interval_reaches_the_live_schedule(cluster):
    # etcd_health.scheduled answers "correct" from the job's copy of the schedule: a
    # changed job must still reach the daemon, and be stable afterwards.
    site = cluster.site()
    site["etcd"]["health"]["interval"] = INTERVAL + 2
    set_site(cluster, site)
    try:
        ret = cluster.apply(MEMBERS)
        for name in MEMBERS:
            assert "etcd-health-schedule-etcd_health-scheduled" in changed(ok(ret[name])), ret[name]
            listed = cluster.salt(name, "schedule.list", "return_yaml=False")[name]
            assert listed["etcd-health"]["seconds"] == INTERVAL + 2
        ret = cluster.apply(MEMBERS)
        for name in MEMBERS:
            assert changed(ok(ret[name])) == [], ret[name]
    finally:
        site["etcd"]["health"]["interval"] = INTERVAL
        set_site(cluster, site)
        ret = cluster.apply(MEMBERS)
    for name in MEMBERS:
        assert "etcd-health-schedule-etcd_health-scheduled" in changed(ok(ret[name]))
        assert cluster.salt(name, "schedule.list", "return_yaml=False")[name]["etcd-health"]["seconds"] == INTERVAL


def test_report_runner_shows_the_cluster(cluster):
    out, err = cluster.salt_run("etcd.report", f"cluster={CLUSTER}")
    assert f"cluster {CLUSTER}" in out and ": OK," in out, out + err
    assert all(f"  {name} " in out for name in MEMBERS), out
    data, err = cluster.salt_run("etcd.report", f"cluster={CLUSTER}", "--out=json")
    parsed = json.loads(data)[CLUSTER]
    assert parsed["verdict"] == "ok"
    assert sorted(m["name"] for m in parsed["members"]) == MEMBERS
    assert sum(m["leader"] for m in parsed["members"]) == 1
    assert "IN USE%" in out
    assert all(0 < m["db_in_use_pct"] <= m["db_pct"] for m in parsed["members"]), parsed["members"]
    assert all(m["cert_days"] > 300 for m in parsed["members"]), parsed["members"]


def test_forged_reports_from_a_non_member_are_refused(cluster, event_listener):
    """The CA minion (not a member) fires health events as a member would, with names that
    try to escape the master's cache and with the real cluster's name: the reactor hands
    them to etcd.alert, which refuses each (the event's id is not a member by its pillar)."""
    cachedir = Path(cluster.master.config["cachedir"])
    log_file = Path(cluster.master.config["log_file"])
    refusals_before = log_file.read_text().count("etcd alert refused")
    files_before = {p for p in cachedir.parent.rglob("*") if p.is_file()}
    alerts_before = {p: p.stat().st_mtime for p in (cachedir / "etcd" / "alerts").glob("*")}
    after = time.time()
    forged = {"../../mine/" + CA: "etcd/x/health/critical", "../../../../escaped/dir/x": "etcd/y/health/critical"}
    forged[CLUSTER] = f"etcd/{CLUSTER}/health/critical"
    for name, tag in forged.items():
        report = {"cluster": name, "verdict": "critical", "time": time.time(), "minion": "etcd1"}
        report["reasons"] = [{"code": "forged", "member": "etcd1", "level": "critical", "text": "forged"}]
        assert cluster.salt(CA, "event.send", tag, f"data={json.dumps(report)}")[CA] is True
    deadline = time.monotonic() + 30
    while log_file.read_text().count("etcd alert refused") < refusals_before + 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert log_file.read_text().count("etcd alert refused") == refusals_before + 3
    alerts = event_listener.get_events([(cluster.master.id, "etcd/*/alert")], after_time=after)
    assert not [e for e in alerts if "forged" in json.dumps(e.data)], [e.tag for e in alerts]
    new_files = {p for p in cachedir.parent.rglob("*") if p.is_file()} - files_before
    assert not [p for p in new_files if "escaped" in str(p) or "alerts" in str(p)], new_files
    assert {p: p.stat().st_mtime for p in (cachedir / "etcd" / "alerts").glob("*")} == alerts_before
    assert (cluster.salt("etcd1", "mine.get", CA, "etcd_ca_certs")["etcd1"] or {}).get(CA), "the CA's mine entry"


def test_crash_reports_degraded_and_the_reactor_alerts(cluster, event_listener):
    after = time.time()
    cluster.crash("etcd3")
    try:
        minion, report = wait_member_down(cluster, event_listener, after, "etcd3")
        assert minion in ("etcd1", "etcd2") and report["quorum"]["serving"] == 2
        # The master's reactor ran the example SLS: etcd.alert fired etcd/<cluster>/alert.
        _, alert = wait_events(cluster, event_listener, after, f"etcd/{CLUSTER}/alert", lambda t, d: True, 30)[0]
        assert alert["verdict"] == "degraded"
        assert {"code": "member_down", "member": "etcd3"}.items() <= alert["reasons"][0].items()
        out, _ = cluster.salt_run("etcd.report", f"cluster={CLUSTER}")
        assert "DEGRADED" in out and "[member_down] etcd3" in out, out
    finally:
        cluster.boot("etcd3")
    all_ok_again(cluster, event_listener, time.time())


def test_stopped_etcd_is_reported_by_its_own_minion(cluster, event_listener):
    # etcd down, its node and minion up (stopped, or crash-looping on a bad flag): the
    # member's own check asks the others and says so.
    after = time.time()
    cluster.exec("etcd2", "systemctl", "stop", "etcd")
    try:
        _, report = wait_member_down(cluster, event_listener, after, "etcd2", reporter="etcd2")
        assert report["quorum"]["serving"] == 2
        assert any(e.startswith("listing: ") for e in report["errors"]), report["errors"]
    finally:
        cluster.exec("etcd2", "systemctl", "start", "etcd")
    all_ok_again(cluster, event_listener, time.time())


def test_partition_reports_degraded(cluster, event_listener):
    after = time.time()
    cluster.partition("etcd1", "etcd3")
    try:
        _, report = wait_member_down(cluster, event_listener, after, "etcd3", reporter="etcd1")
        assert report["quorum"]["serving"] >= 2  # etcd2 still links both: quorum holds
    finally:
        cluster.heal()
    all_ok_again(cluster, event_listener, time.time())


def test_full_database_reports_critical_nospace(cluster, event_listener):
    after = time.time()
    # 512 KiB values under one key: every revision is kept, the 4 MiB quota fills.
    fill = "head -c 393216 /dev/urandom | base64 -w0 > /tmp/v; for i in $(seq 1 40); do "
    fill += f"{' '.join(ETCDCTL)} put /fill </tmp/v >/dev/null 2>&1 || exit 0; done; exit 1"
    assert cluster.exec("etcd1", "bash", "-c", fill, timeout=120).returncode == 0, "the quota never filled"
    minion, report = wait_reports(cluster, event_listener, after, lambda v, m, r: v == "critical")[0]
    assert codes(report, "alarm_nospace"), report["reasons"]
    assert {"alarm": "NOSPACE"}.items() <= report["alarms"][0].items()
    # Reads still work under NOSPACE: the members still serve.
    assert report["quorum"]["serving"] == 3, report["members"]
    out, _ = cluster.salt_run("etcd.report", f"cluster={CLUSTER}")
    assert "CRITICAL" in out and "NOSPACE" in out, out
    # Heal as the etcd docs say: compact, defragment, disarm.
    heal = (
        f"rev=$({' '.join(ETCDCTL)} endpoint status -w json | grep -o '\"revision\":[0-9]*' | cut -d: -f2); "
        f"{' '.join(ETCDCTL)} compact $rev && "
        f"etcdctl --endpoints={','.join(f'https://{cluster.ip(n)}:2379' for n in MEMBERS)} defrag && "
        f"{' '.join(ETCDCTL)} alarm disarm"
    )
    proc = cluster.exec("etcd1", "bash", "-c", heal, timeout=60)
    assert proc.returncode == 0, proc.stderr
    all_ok_again(cluster, event_listener, time.time())
