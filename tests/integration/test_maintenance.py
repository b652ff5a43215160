"""Maintenance on real nodes with the README's example site (TLS, schedules on):
staggered defragmentation of a 100+ MiB database under a writer, and a NOSPACE alarm
cleared by the scheduled maintenance job without a person."""

import json
import time

import pytest
from results import MEMBERS, form_cluster, host_client_bundle, ok, tls_site

from labkit.traffic import Traffic, assert_no_loss, etcd_client, urls

MiB = 1024**2


@pytest.fixture(scope="module")
def ca(lab):
    lab.salt("ca1", "saltutil.sync_all")
    ok(lab.apply("ca1", sls="etcd.ca")["ca1"])
    return lab


def site(lab, cluster, **maintenance):
    s = tls_site(lab, cluster, MEMBERS)
    s["etcd"]["maintenance"] = maintenance
    s["etcd"]["backup"] = {"schedule": False}  # not what this module is about
    return s


def client(lab, timeout=10):
    return etcd_client.Client(urls(lab, MEMBERS, "https"), timeout, *lab.writer_tls)


def maintenance_events(lab, listener, cluster, after, what="*"):
    got = listener.get_events([(lab.master.id, f"etcd/{cluster}/maintenance/{what}")], after_time=after)
    return [(e.tag.rsplit("/", 1)[1], e.data["data"]) for e in sorted(got, key=lambda e: e.stamp)]


def test_defragmentation_visits_one_member_at_a_time_and_the_writer_barely_notices(ca, lab, tmp_path, event_listener):
    form_cluster(lab, site(lab, "defraglab"))
    lab.writer_tls = host_client_bundle(lab, tmp_path)
    c = client(lab, timeout=30)
    blob = "x" * MiB
    for i in range(110):  # 110 MiB of values, then deleted: the file stays, mostly free
        c.put(f"/bulk/{i:03d}", blob)
    for i in range(110):
        c.delete(f"/bulk/{i:03d}")
    c.compact(c.revision())
    before = {m: c.status(u)["db_size"] for m, u in zip(MEMBERS, urls(lab, MEMBERS, "https"), strict=True)}
    assert min(before.values()) >= 100 * MiB, before
    after = time.time()
    with Traffic(urls(lab, MEMBERS, "https"), "defrag", tls=lab.writer_tls) as traffic:
        out, err = lab.salt_run(
            "state.orch", "etcd.orch.defrag", "pillar={etcd_orch: {cluster: defraglab}}", timeout=600
        )
        time.sleep(1)
    assert "Failed:    0" in out, out + err
    visits = [d for what, d in maintenance_events(lab, event_listener, "defraglab", after, "defrag")]
    assert sorted(v["name"] for v in visits) == MEMBERS, visits
    # One at a time: each visit ends before the next begins.
    spans = sorted((v["started"], v["started"] + v["seconds"]) for v in visits)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)), spans
    leader_last = visits[-1]["name"]
    assert all(v["after"] < v["before"] / 4 for v in visits), visits  # most of the file given back
    acked = assert_no_loss(lab, traffic)
    gap = traffic.longest_gap()
    print(
        f"defrag: {[(v['name'], round(v['before'] / MiB), round(v['after'] / MiB), v['seconds']) for v in visits]}; "
        f"writer {acked} acked, longest gap {gap:.2f} s, last visited {leader_last}"
    )
    assert gap < 1.0, gap
    # Nothing left to free: the next run visits nobody.
    again = lab.salt("etcd2", "etcd_maintenance.defrag")["etcd2"]
    assert again["result"] is True and again["comment"] == "no member needs a defragmentation", again


def test_nospace_is_cleared_by_the_scheduled_job_without_a_person(ca, lab, tmp_path, event_listener):
    # The quota is a flag: set at bootstrap, so that nothing restarts in this test.
    s = site(lab, "nospacelab", interval=10)
    s["etcd"]["tuning"]["quota_backend_bytes"] = 16 * MiB
    form_cluster(lab, s)
    lab.writer_tls = host_client_bundle(lab, tmp_path)
    c = client(lab)
    after = time.time()
    value = "y" * (512 * 1024)
    full = False
    for i in range(200):  # overwrites of one key: history, not live data, fills the quota
        try:
            c.put("/fill/one", value + str(i))
        except etcd_client.EtcdError as exc:
            assert "space" in str(exc), exc
            full = True
            break
    # One alarm per member whose backend crossed the quota: one or more, all NOSPACE.
    assert full and {a["alarm"] for a in c.alarms()} == {"NOSPACE"}
    deadline = time.monotonic() + 90
    while c.alarms() and time.monotonic() < deadline:
        time.sleep(1)
    assert c.alarms() == [], "the maintenance job did not clear NOSPACE"
    c.put("/fill/after", "written")  # writes work again
    # The job sends its events after the etcd calls they report: the last ones may reach the
    # master a moment after the alarm is gone (a CI run read the events too early).
    until = time.monotonic() + 20
    while True:
        seen = [what for what, _ in maintenance_events(lab, event_listener, "nospacelab", after)]
        if "disarmed" in seen or time.monotonic() > until:
            break
        time.sleep(1)
    assert "compacted" in seen and "disarmed" in seen and seen.count("defrag") == 3, seen
    health = lab.salt("etcd1", "etcd_health.healthy")["etcd1"]
    assert health["healthy"] is True, health
    print(f"nospace: cleared {round(deadline - time.monotonic())} s before the deadline; events {json.dumps(seen)}")
