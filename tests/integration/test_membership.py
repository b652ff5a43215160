"""Membership changes on real nodes, under a continuous writer, on the example site's TLS.

A 3-member cluster grows to 5 with one `state.apply` on all five at once (two learners
added one after the other, each promoted), shrinks back to 3 the same way, refuses
removals below min_members or below quorum, replaces a member whose disk was lost, and
finishes an add that a partition interrupted.
"""

import threading
import time

import pytest
from results import MEMBERS, by_id, changed, form_cluster, host_client_bundle, ok, pids, set_site, tls_site, wipe

from labkit.traffic import Traffic, assert_no_loss, urls

FIVE = MEMBERS + ["etcd4", "etcd5"]
RUNNING = "etcd-service-running-etcd_cluster-running"
LEFT = "etcd-leave-member-etcd_membership-left"
# The members applied with the new ones wait (health_timeout) until both have joined.
SERVICE = {"restart_timeout": 30, "lock_ttl": 10, "health_timeout": 120, "lock_wait": 180}
ETCDCTL = ["etcdctl"]  # the formula's wrapper on a member: https and the admin certificate
CA = "ca1"
DELAY_START = (
    "mkdir -p /run/systemd/system/etcd.service.d && printf '[Service]\\nExecStartPre=/bin/sleep 5\\n' "
    "> /run/systemd/system/etcd.service.d/delay.conf && systemctl daemon-reload"
)


def site_of(lab, names, **etcd):
    site = tls_site(lab, "memberlab", names)
    site["etcd"]["tuning"].update(heartbeat_interval=100, election_timeout=1000)
    site["etcd"]["service"] = dict(SERVICE)
    site["etcd"]["membership"] = {"join_timeout": 60}
    site["etcd"].update(etcd)
    return site


def member_list(lab, via="etcd1"):
    """{name: (id, is_learner)} as etcdctl on `via` reports the live members; a member
    that never started has no name yet: it is known by its peer URL's address."""
    out = lab.exec(via, *ETCDCTL, "member", "list", "-w", "simple", check=True).stdout
    rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()]
    by_ip = {f"//{lab.ip(n)}:": n for n in FIVE}
    named = {}
    for r in rows:
        name = r[2] or next((n for ip, n in by_ip.items() if ip in r[3]), r[3])
        named[name] = (r[0], r[-1] == "true")
    return named


def healthy_everywhere(lab, names):
    eps = ",".join(urls(lab, names, "https"))
    return lab.exec("etcd1", "etcdctl", f"--endpoints={eps}", "endpoint", "health").returncode == 0


def retired(lab, name):
    """etcd stopped and disabled on `name`, its data dir empty and the old one set aside."""
    active = lab.exec(name, "systemctl", "is-active", "etcd").stdout.strip()
    enabled = lab.exec(name, "systemctl", "is-enabled", "etcd").stdout.strip()
    member_dir = lab.exec(name, "test", "-e", "/var/lib/etcd/member").returncode == 0
    aside = lab.exec(name, "bash", "-c", "ls -d /var/lib/etcd.removed-*/member").stdout.split()
    return active != "active" and enabled == "disabled" and not member_dir and len(aside) == 1


def reset(lab, names):
    """The nodes as if etcd never ran: data, set-aside data and formula state removed."""
    wipe(lab, names)
    for name in names:
        lab.exec(name, "bash", "-c", "rm -rf /var/lib/etcd.removed-* /var/lib/etcd-formula/started.json", check=True)
    for name in set(names) - set(MEMBERS):  # the new members: no certificates yet, as on a fresh node
        lab.exec(name, "rm", "-rf", "/etc/etcd/pki", check=True)


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    assert len(lab.etcd_nodes) >= 5, "membership tests need LAB_NODES>=5"
    reset(lab, FIVE)
    lab.salt(CA, "saltutil.sync_all")
    set_site(lab, site_of(lab, MEMBERS))
    ok(lab.apply(CA, sls="etcd.ca")[CA])  # the README's first TLS apply: the CA knows etcd1-3 only
    form_cluster(lab, site_of(lab, MEMBERS))
    lab.writer_tls = host_client_bundle(lab, tmp_path_factory.mktemp("bundle"))
    yield lab
    reset(lab, FIVE)


def writer(lab, names, tag):
    return Traffic(urls(lab, names, "https"), tag, tls=lab.writer_tls)


def test_scale_out_to_five_and_back_to_three_under_a_writer(cluster):
    # The README's scale-out on a TLS site: new nodes in pillar, synced, planned, applied;
    # no etcd.ca in between (each new member has the CA recompute its policies).
    set_site(cluster, site_of(cluster, FIVE))
    cluster.salt("-L", "etcd4,etcd5", "saltutil.sync_all")
    cluster.salt("etcd1", "schedule.run_job", "etcd-health")  # what the schedule does every interval
    time.sleep(2)
    planned = cluster.apply(["etcd4"], "test=True")["etcd4"]
    running = by_id(planned)[RUNNING]
    assert "would add etcd4" in running["comment"] and "(quorum 2) -> 4 (quorum 3)" in running["comment"], running
    assert "health report in the mine" in running["comment"], running  # etcd4 has no client certificate yet
    assert not [r for r in planned if r["result"] is False], [r for r in planned if r["result"] is False]
    assert sorted(member_list(cluster)) == MEMBERS, "a dry run changed the membership"
    assert cluster.exec("etcd4", "test", "-e", "/etc/etcd/pki/server.crt").returncode != 0, "a dry run made a cert"

    with writer(cluster, MEMBERS, "scale") as traffic:
        # A plain highstate on all five at once: the two adds queue on the cluster lock.
        grown = cluster.apply(FIVE)
        for name in FIVE:
            ok(grown[name])
        live = member_list(cluster)
        assert sorted(live) == FIVE and not any(learner for _, learner in live.values()), live
        assert healthy_everywhere(cluster, FIVE)
        windows = sorted(by_id(grown[n])[RUNNING]["changes"]["membership"]["lock_held"] for n in ("etcd4", "etcd5"))
        assert windows[0][1] <= windows[1][0], f"the two adds overlapped: {windows}"
        again = cluster.apply(FIVE)
        assert all(changed(ok(again[n])) == [] for n in FIVE), {n: changed(again[n]) for n in FIVE}

        # etcd5 leads when it is told to leave: it hands leadership over before its removal.
        every = f"--endpoints={','.join(urls(cluster, FIVE, 'https'))}"
        cluster.exec("etcd1", "etcdctl", every, "move-leader", member_list(cluster)["etcd5"][0], check=True)
        set_site(cluster, site_of(cluster, MEMBERS))
        planned = cluster.apply(["etcd5"], "test=True")["etcd5"]
        assert "would remove etcd5" in by_id(planned)[LEFT]["comment"], planned
        assert "voting members 5 (quorum 3) -> 4 (quorum 3)" in by_id(planned)[LEFT]["comment"], planned
        shrunk = cluster.apply(FIVE)
        for name in FIVE:
            ok(shrunk[name])
        time.sleep(1)
    assert sorted(member_list(cluster)) == MEMBERS
    assert healthy_everywhere(cluster, MEMBERS)
    for name in ("etcd4", "etcd5"):
        assert by_id(shrunk[name])[LEFT]["changes"]["membership"]["removed"], shrunk[name]
        assert retired(cluster, name), name
    acked = assert_no_loss(cluster, traffic)
    print(f"\nscale 3->5->3: {acked} acknowledged writes, 0 lost, longest write gap {traffic.longest_gap():.2f} s")
    again = cluster.apply(FIVE)
    assert all(changed(ok(again[n])) == [] for n in FIVE), {n: changed(again[n]) for n in FIVE}


def test_removals_below_min_members_or_quorum_are_refused(cluster):
    set_site(cluster, site_of(cluster, ["etcd1", "etcd2"]))
    try:
        got = cluster.apply(["etcd3"])["etcd3"]
        left = by_id(got)[LEFT]
        assert left["result"] is False and "fewer than etcd:membership:min_members (3)" in left["comment"], left
        assert sorted(member_list(cluster)) == MEMBERS
        # min_members 2 would allow it, but etcd2 is down: etcd1 alone is no quorum of 3.
        set_site(cluster, site_of(cluster, ["etcd1", "etcd2"], membership={"min_members": 2}))
        cluster.exec("etcd2", "systemctl", "stop", "etcd", check=True)
        got = cluster.apply(["etcd3"])["etcd3"]
        left = by_id(got)[LEFT]
        assert left["result"] is False and "a quorum of the current 3 is 2" in left["comment"], left
        assert cluster.exec("etcd3", "systemctl", "is-active", "etcd").stdout.strip() == "active"
    finally:
        cluster.exec("etcd2", "systemctl", "start", "etcd", check=True)
        set_site(cluster, site_of(cluster, MEMBERS))
    assert sorted(member_list(cluster)) == MEMBERS
    ok(cluster.apply(MEMBERS)["etcd3"])


def test_a_pillar_member_without_a_minion_fails_the_gate_at_once(cluster):
    # Issue 19: etcd9 is in pillar but no minion has that name. The members used to wait
    # out health_timeout (120 s) for it; now the gate asks the mine and says so.
    site = site_of(cluster, MEMBERS)
    ip = cluster.ip("etcd1").rsplit(".", 1)[0] + ".99"  # on the bridge, nobody there
    site["etcd"]["members"]["etcd9"] = {"address": ip}
    before = pids(cluster)
    set_site(cluster, site)
    try:
        started = time.monotonic()
        got = cluster.apply(MEMBERS)
        took = time.monotonic() - started
    finally:
        set_site(cluster, site_of(cluster, MEMBERS))
    for name in MEMBERS:
        gate = by_id(got[name])["etcd-health-cluster-etcd_health-healthy"]
        assert gate["result"] is False, gate
        assert "etcd9 in etcd:members but no minion of that name applies the formula" in gate["comment"], gate
        assert "salt etcd9 state.apply etcd" in gate["comment"] and "remove it from etcd:members" in gate["comment"]
    assert took < SERVICE["health_timeout"] / 2, took
    assert pids(cluster) == before  # nothing restarted for a member that does not exist
    assert sorted(member_list(cluster)) == MEMBERS
    print(f"pillar member without a minion: every member's gate failed in {took:.1f} s (timeout 120 s)")
    for states in cluster.apply(MEMBERS).values():
        ok(states)


def test_a_member_whose_disk_was_lost_is_replaced(cluster):
    old_id = member_list(cluster)["etcd3"][0]
    # Run by mistake against a healthy member: refused, nothing removed or set aside.
    out, err = cluster.salt_run(
        "state.orch", "etcd.orch.replace_member", "pillar={etcd_orch: {member: etcd3, via: etcd1}}", timeout=300
    )
    assert "etcd3 is started and serves: it has not failed" in out and "Failed:    3" in out, out + err
    assert member_list(cluster)["etcd3"][0] == old_id
    assert cluster.exec("etcd3", "test", "-d", "/var/lib/etcd/member").returncode == 0
    with writer(cluster, ["etcd1", "etcd2"], "replace") as traffic:
        cluster.exec("etcd3", "systemctl", "stop", "etcd", check=True)
        cluster.exec("etcd3", "rm", "-rf", "/var/lib/etcd/member", check=True)
        # At boot (or any start) a blank data dir never comes back as the old member.
        cluster.exec("etcd3", "systemctl", "start", "etcd")
        time.sleep(1)
        assert cluster.exec("etcd3", "systemctl", "is-active", "etcd").stdout.strip() != "active"
        refused = by_id(cluster.apply(["etcd3"])["etcd3"])[RUNNING]
        assert refused["result"] is False and "Replace the member" in refused["comment"], refused
        out, err = cluster.salt_run(
            "state.orch", "etcd.orch.replace_member", "pillar={etcd_orch: {member: etcd3, via: etcd1}}", timeout=300
        )
        assert "Failed:    0" in out, out + err
    live = member_list(cluster)
    assert sorted(live) == MEMBERS and live["etcd3"][0] != old_id and not live["etcd3"][1], live
    assert healthy_everywhere(cluster, MEMBERS)
    assert_no_loss(cluster, traffic)


def test_an_add_cut_by_a_partition_is_completed_by_the_next_apply(cluster):
    names = MEMBERS + ["etcd4"]
    set_site(cluster, site_of(cluster, names, membership={"join_timeout": 15}))
    # Hold etcd4's first start for 5 s (a runtime drop-in), so that the partition lands
    # between the learner's add and its start, every time.
    cluster.exec("etcd4", "bash", "-c", DELAY_START, check=True)
    result = {}
    worker = threading.Thread(target=lambda: result.update(cluster.apply(["etcd4"], timeout=180)))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while "etcd4" not in member_list(cluster) and time.monotonic() < deadline:
            time.sleep(0.05)
        for other in MEMBERS:
            cluster.partition("etcd4", other)
        worker.join()
        first = by_id(result["etcd4"])[RUNNING]
        assert first["result"] is False and "the next apply completes the join" in first["comment"], first
        half = member_list(cluster)
        assert "etcd4" in half and half["etcd4"][1], f"etcd4 should be a learner: {half}"
        found = cluster.salt("etcd1", "etcd_health.check_membership")["etcd1"]
        codes = {f["code"] for f in found["findings"] if f["member"] == "etcd4"}
        assert codes & {"learner_pending", "member_unstarted"}, found
    finally:
        worker.join()
        cluster.heal()
        cluster.exec("etcd4", "bash", "-c", "rm -rf /run/systemd/system/etcd.service.d && systemctl daemon-reload")
    # The lock etcd4 held could not be released across the partition: it expires (TTL).
    second = cluster.apply(["etcd4"])["etcd4"]
    assert by_id(ok(second))[RUNNING]["changes"]["membership"]["added"] is False
    live = member_list(cluster)
    assert sorted(live) == names and not live["etcd4"][1], live
    assert healthy_everywhere(cluster, names)
    # Back to three through the scale orchestration: etcd4 leaves (4 -> 3 keeps min_members).
    set_site(cluster, site_of(cluster, MEMBERS))
    out, err = cluster.salt_run("state.orch", "etcd.orch.scale", "pillar={etcd_orch: {members: [etcd4]}}", timeout=300)
    assert "Failed:    0" in out, out + err
    assert sorted(member_list(cluster)) == MEMBERS


def test_concurrent_lock_users_wait_for_each_other(cluster):
    got = cluster.salt("etcd1", "etcd_lock.lock", "purpose=defrag", "ttl=60")["etcd1"]
    assert got["locked"], got
    try:
        holder = cluster.salt("etcd2", "etcd_lock.holder")["etcd2"]
        assert holder["holder"] == "etcd1" and holder["purpose"] == "defrag" and 0 < holder["ttl_left"] <= 60
        other = cluster.salt("etcd2", "etcd_lock.lock", "wait=2")["etcd2"]
        assert not other["locked"] and "held by" in other["comment"], other
        assert not cluster.salt("etcd2", "etcd_lock.unlock")["etcd2"]["unlocked"]
    finally:
        assert cluster.salt("etcd1", "etcd_lock.unlock")["etcd1"]["unlocked"]
    assert cluster.salt("etcd2", "etcd_lock.holder")["etcd2"] is None
