"""Guarded rolling restarts on real nodes, under a continuous writer, on the example site's TLS.

A 3.4.23 cluster (etcd's default raft timing, 100/1000 ms) takes a flag change, refuses
to restart while a member is down, upgrades to 3.5.1 with one `state.apply` on all
members at once, refuses a downgrade, and stops at a member that does not come back. A
roll whose lock holder crashed is a row of the fault catalogue (test_reliability.py).
"""

import json
import sys
import time

import pytest
from results import MEMBERS, assert_rolled_once, by_id, form_cluster, host_client_bundle, ok, pids, set_site, wipe

from labkit.preflight import REPO
from labkit.traffic import Traffic, assert_no_loss, urls

sys.path.insert(0, str(REPO / "_utils"))
import etcd_client  # noqa: E402
import etcd_envfile  # noqa: E402

SERVICE = {"restart_timeout": 30, "lock_ttl": 10, "health_timeout": 15, "lock_wait": 180}
CA = "ca1"
RUNNING = "etcd-service-running-etcd_cluster-running"
INSTALL = "etcd-install-binaries-etcd_install-installed"


def rolling_site(lab, **etcd):
    site = lab.site()
    site["etcd"]["cluster"].update(name="rolllab", bootstrap=True)
    assert site["etcd"]["tls"]["enabled"] and site["etcd"]["tls"]["ca_minion"] == CA  # the example's default
    site["etcd"]["tuning"].update(heartbeat_interval=100, election_timeout=1000)
    site["etcd"]["service"] = dict(SERVICE)
    site["etcd"]["source"]["url"] = "salt://etcd-releases/etcd-v{version}-linux-amd64.tar.gz"
    site["etcd"]["tuning"].update(etcd.pop("tuning", {}))  # raft timing stays 100/1000
    site["etcd"].update(etcd)
    return site


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    lab.salt(CA, "saltutil.sync_all")
    set_site(lab, rolling_site(lab, version="3.4.23"))
    ok(lab.apply(CA, sls="etcd.ca")[CA])
    form_cluster(lab, rolling_site(lab, version="3.4.23"))
    lab.writer_tls = host_client_bundle(lab, tmp_path_factory.mktemp("bundle"))
    yield lab
    wipe(lab, MEMBERS)


def https(lab):
    return urls(lab, MEMBERS, "https")


def client(lab, timeout):
    return etcd_client.Client(https(lab), timeout, *lab.writer_tls)


def writer(lab, tag):
    return Traffic(https(lab), tag, tls=lab.writer_tls)


# The sandbox directives this release added to the unit (issue 16): a member started by the
# previous release runs without them.
SANDBOX = (
    "ProtectClock=", "ProtectHostname=", "ProtectKernelLogs=", "ProtectProc=", "RestrictNamespaces=", "RemoveIPC=",
    "MemoryDenyWriteExecute=", "SystemCallArchitectures=", "SystemCallFilter=", "SystemCallErrorNumber=", "UMask=",
)  # fmt: skip
UNIT = "/etc/systemd/system/etcd.service"
STARTED = "/var/lib/etcd-formula/started.json"


def exposure(lab, name):
    """`systemd-analyze security etcd` inside a member: the overall exposure (0 to 10)."""
    out = lab.exec(name, "systemd-analyze", "security", "--no-pager", "etcd", check=True).stdout
    return float(out.rsplit("Overall exposure level for etcd.service:", 1)[1].split()[0])


def as_the_previous_release_left_it(lab, name):
    """The unit without the sandbox, etcd restarted with it, started.json recording it: a
    member as the release before this one left it (one member at a time, healthy between)."""
    unit = lab.exec(name, "cat", UNIT, check=True).stdout
    old = "".join(line for line in unit.splitlines(True) if not line.startswith(SANDBOX))
    assert old != unit
    record = (
        "import hashlib, json, sys; u, p = sys.argv[1:]; d = json.load(open(p)); "
        "d['unit'] = hashlib.sha256(open(u).read().encode()).hexdigest(); json.dump(d, open(p, 'w'))"
    )
    lab.exec(name, "python3", "-c", f"open({UNIT!r}, 'w').write({old!r})", check=True)
    lab.exec(name, "python3", "-c", record, UNIT, STARTED, check=True)
    lab.exec(name, "systemctl", "daemon-reload", check=True)
    lab.exec(name, "systemctl", "restart", "etcd", check=True, timeout=60)
    lab.wait(lambda: lab.salt(name, "etcd_health.healthy")[name].get("healthy"), 60, 0.5, f"{name} healthy")


def test_the_sandbox_reaches_running_members_in_one_guarded_roll(cluster):
    for name in MEMBERS:
        # A 3.4 cluster from the Salt fileserver (the fixture's): 3.4's flags, e.g. pre-vote.
        assert "ETCD_PRE_VOTE=true" in cluster.exec(name, "cat", "/etc/etcd/etcd.env").stdout
        version = cluster.exec(name, "/usr/local/bin/etcd", "--version").stdout
        assert version.split()[2] == "3.4.23", version
        as_the_previous_release_left_it(cluster, name)
    before = {n: exposure(cluster, n) for n in MEMBERS}
    pid_before = pids(cluster)
    plans = {n: cluster.salt(n, "etcd_rolling.plan")[n] for n in MEMBERS}
    assert all(p["reasons"] == ["unit file changed"] and p["refusal"] is None for p in plans.values()), plans
    with writer(cluster, "sandbox") as traffic:
        ret = cluster.apply(MEMBERS)
        time.sleep(1)
    for name in MEMBERS:
        running = by_id(ok(ret[name]))[RUNNING]
        # Announced in the apply: why this member restarted, once, through the guarded path.
        assert running["changes"]["restarted"]["reasons"] == ["unit file changed"], running
        assert running["comment"].startswith("etcd restarted (unit file changed)"), running
    after = pids(cluster)
    assert all(after[n] != pid_before[n] for n in MEMBERS)
    assert traffic.worst_sample() <= 1, "two members were down at the same moment"
    assert_no_loss(cluster, traffic)
    now = {n: exposure(cluster, n) for n in MEMBERS}
    print(f"\nsystemd-analyze security etcd (etcd 3.4.23): before {before}, after {now}")
    assert all(e <= 2.5 for e in now.values()), now
    assert all(cluster.salt(n, "etcd_rolling.plan")[n]["reasons"] == [] for n in MEMBERS)


def test_quoting_alone_restarts_nothing(cluster):
    before = pids(cluster)
    for name in MEMBERS:  # the same values, every one quoted (as a hand edit or another writer might)
        script = (
            "import re; p = '/etc/etcd/etcd.env'; t = open(p).read(); "
            "open(p, 'w').write(re.sub(r'^(ETCD_[A-Z0-9_]+)=(.*)$', r\"\\1='\\2'\", t, flags=re.M))"
        )
        cluster.exec(name, "python3", "-c", script, check=True)
        assert "ETCD_NAME='" in cluster.exec(name, "cat", "/etc/etcd/etcd.env").stdout
    assert all(cluster.salt(n, "etcd_rolling.plan")[n]["reasons"] == [] for n in MEMBERS)
    ret = cluster.apply(MEMBERS)
    for name in MEMBERS:
        states = by_id(ok(ret[name]))
        assert states["etcd-config-env-file-managed"]["changes"], "the apply writes the file back"
        assert states[RUNNING]["changes"] == {}, states[RUNNING]
        assert "ETCD_NAME=" + name in cluster.exec(name, "cat", "/etc/etcd/etcd.env").stdout
    assert pids(cluster) == before


def test_systemd_reads_etcd_env_as_the_formula_writes_it(cluster):
    # The values sh and the formula read back alike (tests/unit/test_envfile.py), read by
    # a node's systemd through EnvironmentFile=, as the etcd unit does.
    values = {"ETCD_A": "a b  c", "ETCD_B": "$HOME `id` ${X}", "ETCD_C": 'it\'s "q" \\n', "ETCD_D": "k=v,#x;y"}
    text = "\n".join(etcd_envfile.lines(values)) + "\n"
    cluster.exec("etcd1", "python3", "-c", f"open('/run/probe.env', 'w').write({text!r})", check=True)
    out = cluster.exec(
        "etcd1", "systemd-run", "--quiet", "--pipe", "--wait", "-p", "EnvironmentFile=/run/probe.env",
        "/usr/bin/env", "-0", check=True,
    ).stdout  # fmt: skip
    seen = dict(kv.split("=", 1) for kv in out.split("\0") if kv.startswith("ETCD_"))
    assert seen == values, (text, seen)


def test_flag_change_rolls_one_member_at_a_time(cluster):
    before = pids(cluster)
    set_site(
        cluster,
        rolling_site(cluster, version="3.4.23", tuning={"snapshot_count": 50000}, extra_flags={"enable-pprof": True}),
    )
    # Plan, dry run and apply agree: the same reasons before anything is written.
    plans = {n: cluster.salt(n, "etcd_rolling.plan")[n] for n in MEMBERS}
    want = ["flags changed: ETCD_ENABLE_PPROF, ETCD_SNAPSHOT_COUNT"]
    assert all(p["reasons"] == want and p["refusal"] is None for p in plans.values()), plans
    planned = cluster.apply(MEMBERS, "test=True")
    turns = []
    for name in MEMBERS:
        running = by_id(planned[name])[RUNNING]
        assert "would restart etcd through the guarded path" in running["comment"]
        assert running["changes"]["restart"] == plans[name]["reasons"], (running, plans[name])
        turns.append(running["changes"]["order"])
    assert sorted(turns) == ["before the leader", "before the leader", "last: it is the leader"], turns
    assert pids(cluster) == before
    with writer(cluster, "flag") as traffic:
        ret = cluster.apply(MEMBERS)
        time.sleep(1)
    assert_rolled_once(cluster, ret, plans, before, traffic)
    print(f"\nflag roll: longest write gap {traffic.longest_gap():.2f} s over {len(traffic.acked)} writes")
    assert cluster.salt("etcd1", "etcd_health.healthy")["etcd1"]["healthy"] is True


def test_unhealthy_cluster_restarts_nothing(cluster):
    before = pids(cluster)
    cluster.crash("etcd3")
    try:
        # A short health wait: each member waits it out under the lock, one after the other.
        quick = dict(SERVICE, health_timeout=5)
        set_site(cluster, rolling_site(cluster, version="3.4.23", tuning={"snapshot_count": 60000}, service=quick))
        ret = cluster.apply(["etcd1", "etcd2"])
        for name in ("etcd1", "etcd2"):
            running = by_id(ret[name])["etcd-service-running-etcd_cluster-running"]
            assert running["result"] is False and "not fully healthy" in running["comment"], running
        after = pids(cluster, ["etcd1", "etcd2"])
        assert after["etcd1"] == before["etcd1"] and after["etcd2"] == before["etcd2"]
    finally:
        cluster.boot("etcd3")
    cluster.wait(lambda: cluster.salt("etcd1", "etcd_health.healthy")["etcd1"].get("healthy"), 60, 1, "healthy")
    for states in cluster.apply(MEMBERS).values():
        ok(states)


def test_upgrade_34_to_35_with_one_apply_on_all_members(cluster):
    set_site(cluster, rolling_site(cluster, version="3.5.1"))
    # Staged, not switched: install and config alone on etcd1 put 3.5.1 and its flags
    # beside what runs; etcd.env and the active binary stay 3.4's until the guarded switch.
    ok(cluster.apply(["etcd1"], sls="etcd.config")["etcd1"])
    env = cluster.exec("etcd1", "cat", "/etc/etcd/etcd.env").stdout
    staged = cluster.exec("etcd1", "cat", "/etc/etcd/etcd.env.3.5.1").stdout
    assert "ETCD_PRE_VOTE=true" in env and staged and "ETCD_PRE_VOTE" not in staged, (env, staged)
    assert "3.4.23" in cluster.exec("etcd1", "etcd", "--version").stdout
    assert cluster.salt("etcd1", "etcd_rolling.plan")["etcd1"]["reasons"] == ["version: running 3.4.23, wanted 3.5.1"]
    with writer(cluster, "upgrade") as traffic:
        started = time.monotonic()
        ret = cluster.apply(MEMBERS)
        elapsed = time.monotonic() - started
        time.sleep(1)
    for name in MEMBERS:
        ok(ret[name])
    c = client(cluster, 2)
    assert {c.version(u)["etcdserver"] for u in https(cluster)} == {"3.5.1"}
    # The cluster version follows the last member: wait for it, bounded.
    cluster.wait(lambda: c.version(https(cluster)[0])["etcdcluster"].startswith("3.5"), 30, 0.5, "cluster version 3.5")
    assert traffic.worst_sample() <= 1, "two members were down at the same moment"
    assert_no_loss(cluster, traffic)
    for name in MEMBERS:  # switched with the binary: 3.5's flags, nothing left staged
        assert "ETCD_PRE_VOTE" not in cluster.exec(name, "cat", "/etc/etcd/etcd.env").stdout
        assert cluster.exec(name, "test", "-e", "/etc/etcd/etcd.env.3.5.1").returncode != 0
    # One verified snapshot, taken by the first member to restart, before it did.
    record = json.loads(c.get("/etcd-formula/rolllab/upgrade-snapshot/3.4.23-to-3.5.1"))
    assert record["member"] in MEMBERS and record["revision"] > 0 and record["keys"] > 0, record
    found = cluster.exec(record["member"], "stat", "-c", "%a %s", record["path"], check=True).stdout.split()
    assert found == ["600", str(record["file_bytes"])] and record["file_bytes"] >= record["bytes"] > 0, found
    snapped = cluster.exec(record["member"], "ls", "/var/lib/etcd-formula/snapshots", check=True).stdout.split()
    assert len(snapped) == 1 and all(
        cluster.exec(n, "test", "-e", "/var/lib/etcd-formula/snapshots").returncode != 0
        for n in MEMBERS
        if n != record["member"]
    ), "a snapshot per member: the record should have told the others"
    print(
        f"\nupgrade snapshot: {record['bytes']} bytes, revision {record['revision']}, {record['seconds']} s on "
        f"{record['member']}"
    )
    print(
        f"\nupgrade roll: {elapsed:.1f} s; longest write gap {traffic.longest_gap():.2f} s over "
        f"{len(traffic.acked)} acknowledged writes; {len(traffic.samples)} samples"
    )
    assert traffic.longest_gap() < 5
    now = {n: exposure(cluster, n) for n in MEMBERS}
    print(f"\nsystemd-analyze security etcd (etcd 3.5.1): {now}")
    assert all(e <= 2.5 for e in now.values()), now


def test_downgrade_is_refused(cluster):
    before = pids(cluster)
    set_site(cluster, rolling_site(cluster, version="3.4.23"))
    plan = cluster.salt("etcd1", "etcd_rolling.plan")["etcd1"]
    assert plan["reasons"] == ["version: running 3.5.1, wanted 3.4.23"] and "downgrade" in plan["refusal"], plan
    staged = cluster.exec("etcd1", "ls", "/opt/etcd", "/etc/etcd", check=True).stdout
    # Refused at the install step, before anything is fetched: test mode and the apply say
    # the same, and nothing of 3.4.23 is downloaded again or staged (no etcd.env.3.4.23).
    dry = by_id(cluster.apply(["etcd1"], "test=True")["etcd1"])[INSTALL]
    assert dry["result"] is False and plan["refusal"] in dry["comment"], dry
    ret = by_id(cluster.apply(["etcd1"])["etcd1"])
    assert ret[INSTALL]["result"] is False and plan["refusal"] in ret[INSTALL]["comment"], (ret[INSTALL], plan)
    assert ret[RUNNING]["result"] is False, ret[RUNNING]  # by requisite: nothing restarts
    assert pids(cluster)["etcd1"] == before["etcd1"]
    assert cluster.exec("etcd1", "ls", "/opt/etcd", "/etc/etcd", check=True).stdout == staged
    assert cluster.exec("etcd1", "test", "-e", "/etc/etcd/etcd.env.3.4.23").returncode != 0
    set_site(cluster, rolling_site(cluster, version="3.5.1"))


def test_orchestration_walks_the_members_in_order(cluster):
    before = pids(cluster)
    set_site(cluster, rolling_site(cluster, version="3.5.1", tuning={"snapshot_count": 80000}))
    order = ["etcd3", "etcd1", "etcd2"]
    out, err = cluster.salt_run(
        "state.orch", "etcd.orch.rolling", f"pillar={json.dumps({'etcd_orch': {'members': order}})}",
        "--out=json", timeout=600,
    )  # fmt: skip
    steps = json.loads(out)["data"][next(iter(json.loads(out)["data"]))]
    ran = sorted(steps.values(), key=lambda r: r["__run_num__"])
    assert [r["__id__"] for r in ran] == [f"etcd-orch-rolling-{m}-salt-state" for m in order]
    assert all(r["result"] for r in ran), err
    after = pids(cluster)
    assert all(after[n] != before[n] for n in MEMBERS)
    for name in MEMBERS:
        assert cluster.salt(name, "etcd_rolling.plan")[name]["reasons"] == []


def test_a_member_that_does_not_come_back_stops_the_roll(cluster):
    # A flag etcd cannot parse: the first member to restart never serves again.
    set_site(cluster, rolling_site(cluster, version="3.5.1", extra_flags={"max-request-bytes": "lots"}))
    with writer(cluster, "marker") as traffic:
        ret = cluster.apply(MEMBERS)
        time.sleep(1)
    comments = {n: by_id(ret[n])["etcd-service-running-etcd_cluster-running"]["comment"] for n in MEMBERS}
    failed = [n for n, c in comments.items() if "did not serve and catch up" in c]
    stopped = [n for n, c in comments.items() if "an earlier guarded restart failed" in c]
    assert len(failed) == 1 and sorted(failed + stopped) == MEMBERS, comments
    assert traffic.worst_sample() <= 1, "the roll went on past the member that did not come back"
    # etcd's own reason, seen as soon as systemd restarted it twice (not after restart_timeout).
    assert 'crash-loops, etcd exits with: failed to verify flags: invalid value "lots"' in comments[failed[0]], comments
    marker = "/etcd-formula/rolllab/restart-failed"
    c = client(cluster, 2)
    record = json.loads(c.get(marker))
    assert record["member"] == failed[0] and "ETCD_MAX_REQUEST_BYTES" in record["etcd_error"], record
    # The documented way back: fix the pillar, delete the marker, apply (that member first).
    set_site(cluster, rolling_site(cluster, version="3.5.1", extra_flags={}))
    cluster.exec(stopped[0], "etcdctl", "del", marker, check=True)
    ok(cluster.apply(failed)[failed[0]])
    for states in cluster.apply(MEMBERS).values():
        ok(states)
    for name in MEMBERS:
        assert cluster.salt(name, "etcd_rolling.plan")[name]["reasons"] == []
    assert_no_loss(cluster, traffic)  # every write acknowledged meanwhile, and all three agree again
