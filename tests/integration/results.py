"""Shared helpers of the formula's lab tests: reading state returns, resetting members."""

import json

from labkit.traffic import assert_no_loss

MEMBERS = ["etcd1", "etcd2", "etcd3"]
ETCDCTL = ["etcdctl", "--endpoints=http://127.0.0.1:2379"]


def by_id(results):
    return {r["__id__"]: r for r in results}


def ok(results):
    failed = [f"{r['__id__']}: {r['comment']}" for r in results if r["result"] is False]
    assert not failed, failed
    return results


def changed(results):
    return [r["__id__"] for r in results if r["changes"]]


def wipe(lab, names):
    """Stop etcd and delete its member data: the node is as if etcd never ran."""
    for name in names:
        if lab.exec(name, "test", "-e", "/etc/systemd/system/etcd.service").returncode == 0:
            lab.exec(name, "systemctl", "stop", "etcd", check=True)
        lab.exec(name, "rm", "-rf", "/var/lib/etcd/member", check=True)


def tear_down(lab, names):
    """The whole cluster on `names` goes with its data (etcd.clean, forced, whole_cluster,
    delete_data): the nodes are as before etcd ran, for a module that starts from fresh nodes."""
    flags = {"force": True, "whole_cluster": True, "delete_data": True}
    ret = lab.apply(names, "pillar=" + json.dumps({"etcd": {"clean": flags}}), sls="etcd.clean")
    for name in names:
        ok(ret[name])


def set_site(lab, site):
    """Write the lab site and refresh every minion's in-memory pillar (execution calls read it)."""
    lab.set_site(site)
    lab.salt("*", "saltutil.refresh_pillar", "wait=True")


def tls_site(lab, cluster, names):
    """The README's example site (TLS with the CA minion ca1, health schedule on) for a
    cluster `cluster` of `names`, bootstrap allowed, releases from the lab's fileserver."""
    site = lab.site()
    site["etcd"]["cluster"].update(name=cluster, bootstrap=True)
    site["etcd"]["members"] = {n: {"address": lab.ip(n)} for n in names}
    assert site["etcd"]["tls"]["enabled"] and site["etcd"]["tls"]["ca_minion"] == "ca1"  # the example's default
    site["etcd"]["preflight"] = {"mode": "off"}
    site["etcd"]["source"]["url"] = "salt://etcd-releases/etcd-v{version}-linux-amd64.tar.gz"
    return site


def form_cluster(lab, site, members=MEMBERS):
    """A fresh cluster from `site` on `members`: data wiped, pillar refreshed, one apply on all."""
    wipe(lab, members)
    set_site(lab, site)
    ret = lab.apply(members)
    for name in members:
        ok(ret[name])


def host_client_bundle(lab, directory, via="etcd1"):
    """(ca, cert, key) for a writer on the host: the client CA and `via`'s admin
    certificate, copied 0600 into a test's temporary directory."""
    out = []
    for fname in ("client-ca.crt", "admin.crt", "admin.key"):
        dst = directory / fname
        dst.write_text(lab.exec(via, "cat", f"/etc/etcd/pki/{fname}", check=True).stdout)
        dst.chmod(0o600)
        out.append(str(dst))
    return tuple(out)


def pids(lab, names=MEMBERS):
    """Each member's etcd main PID (a restart changes it)."""
    return {n: lab.exec(n, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip() for n in names}


def assert_rolled_once(lab, ret, plans, before, traffic, running_id="etcd-service-running-etcd_cluster-running"):
    """One apply on every member restarted each once, for the reasons its plan gave, never
    two down at once, with every acknowledged write kept; returns the writes acknowledged."""
    for name in MEMBERS:
        running = by_id(ok(ret[name]))[running_id]
        assert running["changes"]["restarted"]["reasons"] == plans[name]["reasons"], running
    after = pids(lab)
    assert all(after[n] != before[n] for n in MEMBERS), (before, after)
    assert traffic.worst_sample() <= 1, "two members were down at the same moment"
    return assert_no_loss(lab, traffic)
