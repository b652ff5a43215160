"""A site unlike the example on every axis the example leaves at its default, run live
(issue 20, item 4): members advertised by FQDN (resolved through /etc/hosts, as a site
without DNS for them would), an extra SAN, nothing of etcd's on 127.0.0.1
(`listen_localhost: false`), and the ports moved to 12379/12380/12381 as beside a
Kubernetes control plane's own etcd. Everything else is the example's: TLS, the CA
minion, the health, backup and maintenance schedules. Then a second site with a cluster
of its own beside it (issue 20, item 5): `salt-run etcd.report` across both, and a
cluster whose reports stopped shown as stale."""

import copy
import json
import socket
import ssl
import time

import pytest
from cryptography import x509
from results import MEMBERS, changed, form_cluster, host_client_bundle, ok, tear_down, tls_site

from labkit import pillar

CLUSTER = "variantlab"
DOMAIN = "etcd.lab.example"
EXTRA = ["etcd-vip.lab.example", "10.213.250.1"]
PORTS = {"client": 12379, "peer": 12380, "metrics": 12381}
HOSTS_MARK = "# etcd-formula test_site_variants"


def fqdn(name):
    return f"{name}.{DOMAIN}"


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    lab.salt("ca1", "saltutil.sync_all")
    site = tls_site(lab, CLUSTER, MEMBERS)
    etcd = site["etcd"]
    for name in MEMBERS:
        etcd["members"][name]["fqdn"] = fqdn(name)
    etcd.update(advertise="fqdn", listen_localhost=False)
    etcd["ports"] = dict(PORTS)
    etcd["tls"]["extra_sans"] = list(EXTRA)
    etcd["health"].update(interval=20, splay=2)  # reports reach the master within the test
    assert etcd["metrics"]["enabled"] and etcd["metrics"]["address"] == "member"  # the example's
    lines = "".join(f"{lab.ip(n)} {fqdn(n)} {HOSTS_MARK}\n" for n in MEMBERS)
    for name in MEMBERS:
        lab.exec(name, "bash", "-c", f"printf '%s' '{lines}' >> /etc/hosts", check=True)
    ok(lab.apply("ca1", sls="etcd.ca")["ca1"])
    form_cluster(lab, site)
    lab.writer_tls = host_client_bundle(lab, tmp_path_factory.mktemp("bundle"))
    yield lab
    tear_down(lab, MEMBERS)
    for name in MEMBERS:
        lab.exec(name, "sed", "-i", f"/{HOSTS_MARK}/d", "/etc/hosts")


def reported(lab, name, timeout=90):
    """The runner's JSON summary of cluster `name` once an ok report arrived."""
    deadline = time.monotonic() + timeout
    while True:
        out, _ = lab.salt_run("etcd.report", "--out=json")
        data = json.loads(out or "{}")
        if data.get(name, {}).get("verdict") == "ok":
            return data[name]
        assert time.monotonic() < deadline, out
        time.sleep(2)


def listening(lab, name):
    """The TCP addresses etcd listens on in `name` ("ip:port")."""
    out = lab.exec(name, "ss", "-Htlnp", check=True).stdout
    return sorted({line.split()[3] for line in out.splitlines() if '"etcd"' in line})


def test_members_advertise_their_fqdns_on_the_moved_ports(cluster):
    listing = cluster.salt("etcd1", "etcd_cluster.members")["etcd1"]
    got = {m["name"]: (m["peer_urls"], m["client_urls"]) for m in listing["members"]}
    want = {n: ([f"https://{fqdn(n)}:12380"], [f"https://{fqdn(n)}:12379"]) for n in MEMBERS}
    assert got == want, got


def test_nothing_listens_on_loopback_or_the_default_ports(cluster):
    for name in MEMBERS:
        addrs = listening(cluster, name)
        ip = cluster.ip(name)
        assert addrs == sorted(f"{ip}:{p}" for p in (12379, 12380, 12381)), (name, addrs)
    # And nothing answers there: a connection to 127.0.0.1:12379 is refused.
    refused = cluster.exec("etcd1", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/12379", check=False)
    assert refused.returncode != 0


def test_served_certificates_name_the_fqdn_and_the_extra_sans(cluster):
    for name in MEMBERS:
        served = x509.load_der_x509_certificate(_handshake(cluster, name, fqdn(name)))
        sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = set(sans.get_values_for_type(x509.DNSName))
        ips = {str(i) for i in sans.get_values_for_type(x509.IPAddress)}
        assert {fqdn(name), name, "etcd-vip.lab.example"} <= dns, dns
        assert {cluster.ip(name), "10.213.250.1"} <= ips, ips
        _handshake(cluster, name, "etcd-vip.lab.example")  # the extra SAN verifies too
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(cluster, name, fqdn("etcd9"))  # a name it was not issued for


def _handshake(lab, name, hostname):
    """Connect to `name`'s client port from the host by its address, verify the served
    certificate against the client CA for `hostname`, and return it (DER)."""
    ca, cert, key = lab.writer_tls
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    with socket.create_connection((lab.ip(name), 12379), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname=hostname) as tls:
            return tls.getpeercert(binary_form=True)


def test_the_formulas_own_calls_work_without_loopback(cluster):
    for name in MEMBERS:
        report = cluster.salt(name, "etcd_health.health")[name]
        assert report["verdict"] == "ok", report["reasons"]
        assert sorted(m["name"] for m in report["members"] if m["serving"]) == MEMBERS
    # The scheduled checks reach the master: the runner's report lists the cluster.
    summary = reported(cluster, CLUSTER)
    assert sorted(m["name"] for m in summary["members"]) == MEMBERS
    assert summary["leader"] in MEMBERS and summary["cluster_id"], summary
    for row in summary["members"]:
        assert row["version"] == "3.5.1" and isinstance(row["lag"], int) and 0 <= row["lag"] < 100, row
        assert isinstance(row["cert_days"], int) and row["cert_days"] > 300, row  # the example's 365 days
    # A backup without loopback: the snapshot from the member's address, copied to the
    # master's store and verified there (the example's schedule is hourly: on demand here).
    saved = cluster.salt("etcd2", "etcd_backup.save")["etcd2"]
    assert saved["result"] is True and saved["off_node"] is True, saved
    assert saved["stored_sha256"] == saved["sha256"]
    # Metrics on the moved port, plain http on the member address.
    metrics = cluster.exec("etcd1", "curl", "-sf", f"http://{cluster.ip('etcd2')}:12381/metrics", check=True).stdout
    assert "etcd_server_has_leader 1" in metrics


def test_a_second_apply_changes_nothing(cluster):
    ret = cluster.apply(MEMBERS)
    for name in MEMBERS:
        ok(ret[name])
        assert changed(ret[name]) == [], (name, changed(ret[name]))


SECOND = "reportlab"
LONE = "etcd4"


@pytest.fixture(scope="module")
def two_sites(cluster):
    """A second site beside the first: one member on etcd4, its own pillar, plain http
    on the default ports (on purpose: the CA minion serves the first site's policies)."""
    lab = cluster
    site = copy.deepcopy(lab.site())
    etcd = site["etcd"]
    etcd["cluster"] = {"name": SECOND, "bootstrap": True}
    etcd["members"] = {LONE: {"address": lab.ip(LONE)}}
    etcd.update(advertise="ip", listen_localhost=True, ports={"client": 2379, "peer": 2380, "metrics": 2381})
    etcd["tls"] = {"enabled": False}
    etcd["health"].update(interval=10, splay=0)
    pillar.write_second(lab.state, [LONE], site)
    lab.salt("*", "saltutil.refresh_pillar", "wait=True")
    ok(lab.apply([LONE])[LONE])
    yield lab
    lab.exec(LONE, "systemctl", "start", "salt-minion")
    deadline = time.monotonic() + 60
    while lab.salt(LONE, "test.ping").get(LONE) is not True and time.monotonic() < deadline:
        time.sleep(1)
    tear_down(lab, [LONE])
    lab.set_site(lab.site())  # the lab site alone again
    lab.salt("*", "saltutil.refresh_pillar", "wait=True")


def test_the_report_shows_both_clusters(two_sites):
    lab = two_sites
    first, second = reported(lab, CLUSTER), reported(lab, SECOND)
    assert [m["name"] for m in second["members"]] == [LONE] and second["leader"] == LONE
    assert first["leader"] in MEMBERS and first["cluster_id"] != second["cluster_id"]
    for summary, tls in ((first, True), (second, False)):
        assert summary["stale"] is False, summary
        for row in summary["members"]:
            assert row["serving"] and row["version"] == "3.5.1" and isinstance(row["lag"], int), row
            assert row["db_size"] > 0 and 0 <= row["db_in_use_pct"] <= 100 and row["alarms"] == [], row
            assert (isinstance(row["cert_days"], int) and row["cert_days"] > 300) if tls else row["cert_days"] is None
    table, _ = lab.salt_run("etcd.report")
    for name in (CLUSTER, SECOND):
        assert f"cluster {name} (" in table and "): OK, leader" in table, table
    for name in (*MEMBERS, LONE):
        assert f"\n  {name} " in table, table


def test_a_cluster_whose_reports_stopped_is_shown_stale(two_sites):
    lab = two_sites
    lab.exec(LONE, "systemctl", "stop", "salt-minion", check=True)  # no more checks reach the master
    time.sleep(2 * 10 + 8)
    out, _ = lab.salt_run("etcd.report", "--out=json")
    data = json.loads(out)
    assert data[SECOND]["stale"] is True and data[SECOND]["report_age_s"] > 20, data[SECOND]
    assert data[CLUSTER]["stale"] is False, data[CLUSTER]
    table, _ = lab.salt_run("etcd.report")
    line = next(x for x in table.splitlines() if x.startswith(f"cluster {SECOND} "))
    assert "STALE (last known ok" in line and "> 2 x 10 s" in line, line
    print(line)
