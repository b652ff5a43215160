"""etcd from the OS's packages, live (issue 20, item 1): the nodes install Debian 12's
etcd-server/etcd-client from the site mirror's apt repository (artifacts/etcd-releases/
debian, built by scripts/build-artifacts with a re-versioned +lab1 copy of the same files).

A running TLS cluster of the example site moves from the tarball to the packages through
the guarded path; a fleet-wide `apt-get upgrade` restarts nothing (held, and policy-rc.d
refuses the packages' own restarts while the formula runs dpkg); a new package revision
rolls one member at a time with a writer running (and systemd starts etcd once per member:
the packages' own restart is blocked); and a cluster forms from packages on members
without them."""

import json
import time

import pytest
from results import (
    MEMBERS,
    assert_rolled_once,
    by_id,
    changed,
    form_cluster,
    host_client_bundle,
    ok,
    pids,
    set_site,
    tear_down,
    tls_site,
    wipe,
)

from labkit.traffic import Traffic, assert_no_loss, urls

CLUSTER = "pkglab"
VERSION = "3.4.23"
DEB = "3.4.23-4+b4"
REBUILT = DEB + "+lab1"
PACKAGES = ["etcd-server", "etcd-client"]
RUNNING = "etcd-service-running-etcd_cluster-running"
INSTALL = "etcd-install-packages-etcd_install-packages_installed"


def package_site(lab, package_version=None):
    site = tls_site(lab, CLUSTER, MEMBERS)
    etcd = site["etcd"]
    etcd["version"] = VERSION
    etcd["tuning"].update(heartbeat_interval=100, election_timeout=1000)
    etcd.setdefault("service", {}).update(restart_timeout=30, lock_ttl=10, health_timeout=15, lock_wait=180)
    if package_version:
        # What the README says to change: the source, and no paths:bin (the tarball's links).
        etcd["source"] = {"type": "package", "package_version": package_version}
        etcd.get("paths", {}).pop("bin", None)
    return site


def dpkg(lab, name):
    """{package: (version, selection)} as dpkg sees it on `name`."""
    out = lab.exec(name, "dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Want}\n", *PACKAGES).stdout
    return {p: (v, w) for p, v, w in (line.split() for line in out.splitlines() if len(line.split()) == 3)}


def runs_from(lab, name):
    pid = lab.exec(name, "systemctl", "show", "-p", "MainPID", "--value", "etcd", check=True).stdout.strip()
    return lab.exec(name, "readlink", f"/proc/{pid}/exe", check=True).stdout.strip()


def starts(lab, name, since):
    """How often systemd started etcd on `name` since the epoch second `since`: the guard
    is what keeps a package install under the lock from adding a start of its own."""
    out = lab.exec(
        name, "journalctl", "-q", "-u", "etcd", "_COMM=systemd", f"--since=@{int(since)}", "-o", "cat"
    ).stdout
    return sum(line.startswith("Started ") for line in out.splitlines())


def purge(lab, names):
    for name in names:
        lab.exec(name, "apt-mark", "unhold", *PACKAGES)
        lab.exec(name, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", *PACKAGES)


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    lab.salt("ca1", "saltutil.sync_all")
    set_site(lab, package_site(lab))
    ok(lab.apply("ca1", sls="etcd.ca")["ca1"])
    form_cluster(lab, package_site(lab))  # from the tarball, as a site that runs today
    lab.writer_tls = host_client_bundle(lab, tmp_path_factory.mktemp("bundle"))
    yield lab
    tear_down(lab, MEMBERS)
    purge(lab, MEMBERS)  # the next modules install from the tarball again


def writer(lab, tag):
    return Traffic(urls(lab, MEMBERS, "https"), tag, tls=lab.writer_tls)


def test_a_running_cluster_moves_to_the_packages_one_member_at_a_time(cluster):
    assert all(runs_from(cluster, n) == "/opt/etcd/3.4.23/etcd" for n in MEMBERS)
    before = pids(cluster)
    set_site(cluster, package_site(cluster, DEB))
    plans = {n: cluster.salt(n, "etcd_rolling.plan")[n] for n in MEMBERS}
    want = ["unit file changed", f"package: started from the tarball, wanted package {DEB}"]
    assert all(p["reasons"] == want and p["refusal"] is None for p in plans.values()), plans
    with writer(cluster, "to-packages") as traffic:
        ret = cluster.apply(MEMBERS)
        time.sleep(1)
    assert_rolled_once(cluster, ret, plans, before, traffic)
    for name in MEMBERS:
        install = by_id(ret[name])[INSTALL]
        assert install["changes"]["packages"]["new"] == DEB, install
        assert runs_from(cluster, name) == "/usr/bin/etcd"
        assert dpkg(cluster, name) == {p: (DEB, "hold") for p in PACKAGES}
        # The formula's unit, not the package's, and no guard left behind.
        assert cluster.exec(name, "systemctl", "show", "-p", "FragmentPath", "--value", "etcd").stdout.strip() == (
            "/etc/systemd/system/etcd.service"
        )
        assert cluster.exec(name, "test", "-e", "/usr/sbin/policy-rc.d").returncode == 1
    again = cluster.apply(MEMBERS)
    for name in MEMBERS:
        assert changed(ok(again[name])) == [], again[name]
    health = cluster.salt("etcd1", "etcd_health.health")["etcd1"]
    assert health["verdict"] == "ok", health


def test_apt_upgrade_on_every_member_restarts_nothing(cluster):
    """The mirror offers +lab1: a fleet-wide upgrade keeps the held packages and etcd."""
    before = pids(cluster)
    for name in MEMBERS:
        cluster.exec(name, "apt-get", "update", "-q", check=True)
        out = cluster.exec(
            name, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "upgrade", "-y", "-q", check=True
        ).stdout
        assert "kept back" in out and "etcd-server" in out, out
    assert pids(cluster) == before
    assert all(dpkg(cluster, n) == {p: (DEB, "hold") for p in PACKAGES} for n in MEMBERS)


def test_a_new_package_revision_rolls_one_member_at_a_time(cluster):
    before = pids(cluster)
    set_site(cluster, package_site(cluster, REBUILT))
    plans = {n: cluster.salt(n, "etcd_rolling.plan")[n] for n in MEMBERS}
    want = [f"package: started from package {DEB}, wanted package {REBUILT}"]
    assert all(p["reasons"] == want and p["refusal"] is None for p in plans.values()), plans
    since = time.time() - 1
    with writer(cluster, "revision") as traffic:
        ret = cluster.apply(MEMBERS)
        time.sleep(1)
    assert_rolled_once(cluster, ret, plans, before, traffic)
    assert {n: starts(cluster, n, since) for n in MEMBERS} == dict.fromkeys(MEMBERS, 1)
    for name in MEMBERS:
        # The apply only downloaded; the install came under the lock, just before the restart.
        assert "restart pending" in by_id(ret[name])[INSTALL]["comment"], by_id(ret[name])[INSTALL]
        assert dpkg(cluster, name) == {p: (REBUILT, "hold") for p in PACKAGES}
    again = cluster.apply(MEMBERS)
    for name in MEMBERS:
        assert changed(ok(again[name])) == [], again[name]


def test_a_cluster_forms_from_packages_on_nodes_without_them(cluster):
    """Members stopped, data gone, packages purged: the first install of the packages and
    a new cluster formed by one apply (the unit and certificates stay from before)."""
    wipe(cluster, MEMBERS)
    purge(cluster, MEMBERS)
    assert all(dpkg(cluster, n) == {} or all(v[1] != "hold" for v in dpkg(cluster, n).values()) for n in MEMBERS)
    with_packages = package_site(cluster, DEB)
    with_packages["etcd"]["cluster"]["name"] = CLUSTER + "2"  # a new cluster, not the old one back
    form_cluster(cluster, with_packages)
    listing = cluster.salt("etcd1", "etcd_cluster.members")["etcd1"]
    assert sorted(m["name"] for m in listing["members"]) == MEMBERS, listing
    for name in MEMBERS:
        assert runs_from(cluster, name) == "/usr/bin/etcd"
        assert dpkg(cluster, name) == {p: (DEB, "hold") for p in PACKAGES}
    health = cluster.salt("etcd1", "etcd_health.health")["etcd1"]
    assert health["verdict"] == "ok", json.dumps(health)
    with writer(cluster, "fresh") as traffic:
        time.sleep(2)
    assert_no_loss(cluster, traffic)
