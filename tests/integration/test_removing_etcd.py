"""`etcd.clean` on real nodes, on the example site's TLS, under a continuous writer.

A 4-member cluster (min_members 3): the clean refuses a live member and changes nothing;
forced on all four at once, exactly one member leaves through the guarded removal and is
cleaned, the three others refuse at min_members, and no two members are ever down together;
the whole cluster goes only with its own flag, after which the same name bootstraps again.
"""

import json
import time

import pytest
from results import by_id, form_cluster, host_client_bundle, ok, set_site, tls_site, wipe

from labkit.traffic import Traffic, assert_no_loss, urls

FOUR = ["etcd1", "etcd2", "etcd3", "etcd4"]
CA = "ca1"
CLEANED = "etcd-clean-member-etcd_membership-cleaned"
SERVICE = {"restart_timeout": 30, "lock_ttl": 10, "health_timeout": 60, "lock_wait": 180}
GONE = ["/etc/systemd/system/etcd.service", "/etc/etcd", "/opt/etcd", "/usr/local/bin/etcd", "/usr/local/sbin/etcdctl"]


def site_of(lab, names):
    site = tls_site(lab, "cleanlab", names)
    site["etcd"]["tuning"].update(heartbeat_interval=100, election_timeout=1000)
    site["etcd"]["service"] = dict(SERVICE)
    site["etcd"]["membership"] = {"min_members": 3}
    return site


def clean_pillar(**flags):
    return "pillar=" + json.dumps({"etcd": {"clean": flags}})


def pid(lab, name):
    return lab.exec(name, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip()


def member_names(lab, via):
    out = lab.exec(via, "etcdctl", "member", "list", "-w", "json", check=True).stdout
    return sorted(m.get("name", "") for m in json.loads(out)["members"])


def cleaned_away(lab, name):
    """Nothing of etcd left on `name` but its data, set aside."""
    left = [p for p in GONE if lab.exec(name, "test", "-e", p).returncode == 0]
    aside = lab.exec(name, "bash", "-c", "ls -d /var/lib/etcd.removed-*/member").stdout.split()
    schedule = lab.salt(name, "schedule.list", "return_yaml=False")[name]
    active = lab.exec(name, "systemctl", "is-active", "etcd").stdout.strip() == "active"
    return {"left": left, "aside": aside, "active": active, "scheduled": "etcd-health" in (schedule or {})}


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    lab.salt(CA, "saltutil.sync_all")
    ok(lab.apply(CA, sls="etcd.ca")[CA])
    for name in FOUR:  # whatever earlier modules left: set-aside data, formula state
        lab.exec(name, "bash", "-c", "rm -rf /var/lib/etcd.removed-* /var/lib/etcd-formula/started.json", check=True)
    form_cluster(lab, site_of(lab, FOUR), members=FOUR)
    lab.writer_tls = host_client_bundle(lab, tmp_path_factory.mktemp("bundle"))
    yield lab
    wipe(lab, FOUR)
    for name in FOUR:
        lab.exec(name, "bash", "-c", "rm -rf /var/lib/etcd.removed-*", check=True)


def files(lab, name):
    """The node's files against the host image, without etcd's own (the raft log moves on)
    and the scheduled health check's report (the example site's schedule is on)."""
    moving = ("var/lib/etcd/member/", "var/lib/etcd-formula/health.json")
    return {k: v for k, v in lab.digest(name).items() if not k.startswith(moving)}


def test_clean_refuses_a_live_member_and_changes_nothing(cluster):
    before, running = files(cluster, "etcd2"), pid(cluster, "etcd2")
    first = by_id(cluster.apply("etcd2", sls="etcd.clean")["etcd2"])[CLEANED]
    assert first["result"] is False and "refuses to take a live member out" in first["comment"], first
    assert '"force": true' in first["comment"]  # it names the way to insist
    assert files(cluster, "etcd2") == before and pid(cluster, "etcd2") == running
    assert member_names(cluster, "etcd1") == FOUR


def test_forced_clean_on_all_four_takes_one_out_and_stops_at_min_members(cluster):
    dry = by_id(cluster.apply("etcd4", "test=True", clean_pillar(force=True), sls="etcd.clean")["etcd4"])[CLEANED]
    assert dry["result"] is None and "would remove etcd4 from the cluster (voting members 4 -> 3)" in dry["comment"]
    assert member_names(cluster, "etcd1") == FOUR
    with Traffic(urls(cluster, FOUR, "https"), "clean", tls=cluster.writer_tls) as traffic:
        ret = cluster.apply(FOUR, clean_pillar(force=True), sls="etcd.clean")
        time.sleep(1)
    results = {n: by_id(ret[n])[CLEANED] for n in FOUR}
    gone = [n for n, r in results.items() if r["result"] is True]
    refused = [n for n, r in results.items() if r["result"] is False]
    assert len(gone) == 1 and len(refused) == 3, results
    assert "left the cluster" in results[gone[0]]["comment"]
    for name in refused:
        assert "min_members" in results[name]["comment"], results[name]
        assert not [i for i, r in by_id(ret[name]).items() if r["changes"]], "a refused clean changed something"
        assert pid(cluster, name) != "0" and cluster.exec(name, "test", "-e", "/etc/etcd/etcd.env").returncode == 0
    state = cleaned_away(cluster, gone[0])
    assert state == {"left": [], "aside": state["aside"], "active": False, "scheduled": False}, state
    assert len(state["aside"]) == 1, state
    assert member_names(cluster, refused[0]) == sorted(refused)
    assert traffic.worst_sample() <= 1, "two members were down at the same moment"
    assert_no_loss(cluster, traffic, refused)
    cluster.remaining = refused


def test_whole_cluster_goes_only_with_its_flag_and_the_name_bootstraps_again(cluster):
    three = cluster.remaining
    old_id = cluster.salt(three[0], "etcd_cluster.recorded_cluster_id")[three[0]]
    assert old_id
    ret = cluster.apply(three, clean_pillar(force=True, whole_cluster=True), sls="etcd.clean")
    for name in three:
        states = by_id(ok(ret[name]))
        assert "without a membership change" in states[CLEANED]["comment"], states[CLEANED]
        state = cleaned_away(cluster, name)
        assert state["left"] == [] and len(state["aside"]) == 1 and not state["active"], state
        assert cluster.salt(name, "etcd_cluster.recorded_cluster_id")[name] is None
    # The torn-down name forms a new cluster on the same nodes (a new ID, no old data).
    set_site(cluster, site_of(cluster, three))
    again = cluster.apply(three)
    for name in three:
        ok(again[name])
    new_id = cluster.salt(three[0], "etcd_cluster.recorded_cluster_id")[three[0]]
    assert new_id and new_id != old_id, (old_id, new_id)
    assert member_names(cluster, three[0]) == sorted(three)
