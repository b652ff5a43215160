"""TLS end to end on real nodes: a CA minion (ca1) signing through x509_v2, mutual TLS on
both ports with separate client and peer CAs, keys that never travel, renewal in place.
"""

import base64
import copy
import datetime
import json
import subprocess
import sys
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from results import MEMBERS, by_id, changed, ok, set_site, wipe

from labkit.preflight import REPO
from labkit.traffic import Traffic, assert_no_loss, urls

sys.path.insert(0, str(REPO / "_utils"))
import etcd_client  # noqa: E402

CA = "ca1"
PKI = "/etc/etcd/pki"
# "PRIVATE KEY" as text, and base64 of it at each of the three byte alignments.
SECRETS = ["PRIVATE KEY", "UFJJVkFURSBLRVk", "BSSVZBVEUgS0VZ", "QUklWQVRFIEtFW"]
RETURNS = []  # every Salt return this module saw, scanned for key material at the end


def apply(lab, targets, *args, sls="etcd"):
    ret = lab.apply(targets, *args, sls=sls)
    RETURNS.append(json.dumps(ret))
    return ret


def salt(lab, *args):
    ret = lab.salt(*args)
    RETURNS.append(json.dumps(ret))
    return ret


def tls_site(lab, name, enabled=True):
    site = lab.site()
    site["etcd"]["cluster"].update(name=name, bootstrap=True)
    site["etcd"]["tls"].update(enabled=enabled, ca_minion=CA, bundle_minions={"etcd4": "storageos"})
    site["etcd"]["health"] = {"schedule": False}
    return site


def test_turning_tls_on_for_a_running_plain_cluster_loses_no_write(lab, tmp_path):
    lab.salt(CA, "saltutil.sync_all")
    wipe(lab, MEMBERS)
    set_site(lab, tls_site(lab, "tlsplain", enabled=False))
    ret = apply(lab, MEMBERS)
    for name in MEMBERS:
        ok(ret[name])
    assert lab.exec("etcd1", "etcdctl", "put", "/tls/before", "plain").returncode == 0
    set_site(lab, tls_site(lab, "tlsplain", enabled=True))
    ok(apply(lab, CA, sls="etcd.ca")[CA])
    lab.exec("etcd4", "rm", "-rf", "/etc/etcd-client")
    salt(lab, "etcd4", "etcd_tls.client_bundle", "/etc/etcd-client", "cn=storageos")
    bundle = _host_bundle(lab, tmp_path, "migration")
    # A client that follows the switch: each member over https and over http.
    either = [u for n in MEMBERS for u in (*urls(lab, [n], "https"), *urls(lab, [n]))]
    with Traffic(either, "to-tls", tls=bundle) as traffic:
        # Pass 1: peer credentials on every member, every URL still http.
        ret = apply(lab, MEMBERS)
        for name in MEMBERS:
            running = by_id(ok(ret[name]))["etcd-service-running-etcd_cluster-running"]
            assert "ETCD_PEER_CERT_FILE" in str(running["changes"]["restarted"]["reasons"]), running
            env = dict(
                line.split("=", 1)
                for line in lab.exec(name, "cat", "/etc/etcd/etcd.env").stdout.split("\n")
                if "=" in line
            )
            assert env["ETCD_PEER_CERT_FILE"] and "ETCD_CERT_FILE" not in env, env
            for flag in ("ETCD_LISTEN_PEER_URLS", "ETCD_LISTEN_CLIENT_URLS", "ETCD_ADVERTISE_CLIENT_URLS"):
                assert "https://" not in env[flag], env
        # Pass 2: each member on https on both ports, its peer URL updated in the cluster.
        ret = apply(lab, MEMBERS)
        for name in MEMBERS:
            running = by_id(ok(ret[name]))["etcd-service-running-etcd_cluster-running"]
            assert "ETCD_LISTEN_PEER_URLS" in str(running["changes"]["restarted"]["reasons"]), running
    acked = assert_no_loss(lab, traffic)
    listing = salt(lab, "etcd2", "etcd_cluster.members")["etcd2"]["members"]
    assert all(u.startswith("https://") for m in listing for u in m["peer_urls"] + m["client_urls"]), listing
    code, _ = curl(lab, "etcd3", f"http://{lab.ip('etcd1')}:2379/version")
    assert code != "200"  # plain http is refused now
    assert lab.exec("etcd3", "etcdctl", "get", "--print-value-only", "/tls/before").stdout.strip() == "plain"
    ret = apply(lab, MEMBERS)
    for name in MEMBERS:
        assert changed(ok(ret[name])) == [], ret[name]
    assert salt(lab, "etcd1", "etcd_health.healthy")["etcd1"]["healthy"] is True
    # Back to plain HTTP is refused before anything changes.
    lab.set_site(tls_site(lab, "tlsplain", enabled=False))
    before = lab.digest("etcd1")
    first = apply(lab, "etcd1")["etcd1"][0]
    assert first["result"] is False and "etcd:tls:enabled" in first["comment"], first
    assert lab.digest("etcd1") == before
    print(f"TLS on for a running cluster: {acked} acknowledged writes, none lost, gap {traffic.longest_gap():.2f} s")
    wipe(lab, MEMBERS)


@pytest.fixture(scope="module")
def tls(lab):
    lab.salt(CA, "saltutil.sync_all")  # the CA minion is no member: the lab syncs members only
    wipe(lab, MEMBERS)
    set_site(lab, tls_site(lab, "tlslab"))
    ok(apply(lab, CA, sls="etcd.ca")[CA])
    ret = apply(lab, MEMBERS)
    for name in MEMBERS:
        ok(ret[name])
    yield lab
    wipe(lab, MEMBERS)


def curl(lab, node, url, *tls_args):
    """HTTP status of a GET (000 when the TLS handshake is refused) and curl's exit code."""
    proc = lab.exec(node, "curl", "-s", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", *tls_args, url)
    return proc.stdout.strip(), proc.returncode


def test_tls_cluster_forms_with_https_everywhere(tls):
    listing = salt(tls, "etcd2", "etcd_cluster.members")["etcd2"]
    assert sorted(m["name"] for m in listing["members"]) == MEMBERS
    for m in listing["members"]:
        assert m["peer_urls"][0].startswith("https://") and m["client_urls"][0].startswith("https://")
    env = tls.exec("etcd1", "cat", "/etc/etcd/etcd.env").stdout
    for flag in (
        f"ETCD_CERT_FILE={PKI}/server.crt",
        f"ETCD_TRUSTED_CA_FILE={PKI}/client-ca.crt",
        "ETCD_CLIENT_CERT_AUTH=true",
        f"ETCD_PEER_CERT_FILE={PKI}/peer.crt",
        f"ETCD_PEER_TRUSTED_CA_FILE={PKI}/peer-ca.crt",
        "ETCD_PEER_CLIENT_CERT_AUTH=true",
    ):
        assert flag in env
    assert "AUTO_TLS" not in env
    # etcdctl on a node works without flags (the admin certificate), across members.
    assert tls.exec("etcd1", "etcdctl", "put", "/tls/probe", "over-mtls").returncode == 0
    assert tls.exec("etcd3", "etcdctl", "get", "--print-value-only", "/tls/probe").stdout.strip() == "over-mtls"
    other = f"--endpoints=https://{tls.ip('etcd2')}:2379"  # a flag instead of the wrapper's default
    assert tls.exec("etcd1", "etcdctl", other, "endpoint", "health").returncode == 0
    assert salt(tls, "etcd3", "etcd_health.healthy")["etcd3"]["healthy"] is True


def test_server_certificate_names_and_usages(tls):
    status = salt(tls, "etcd1", "etcd_tls.status")["etcd1"]
    server = status[f"{PKI}/server.crt"]
    assert set(server["ip"]) == {tls.ip("etcd1"), "127.0.0.1", "::1"}
    assert {"etcd1", "localhost"} <= set(server["dns"])
    assert server["eku"] == ["clientAuth", "serverAuth"]
    peer = status[f"{PKI}/peer.crt"]
    assert tls.ip("etcd1") in peer["ip"] and peer["issuer"] != server["issuer"]
    admin, gateway = status[f"{PKI}/admin.crt"], status[f"{PKI}/gateway.crt"]
    # etcdctl's certificate is root once auth is on; the formula's gateway calls carry one
    # without a CN (the gateway refuses a CN with auth on), even though etcd1 asks for one.
    assert admin["eku"] == ["clientAuth"] and admin["subject_cn"] == "root"
    assert gateway["eku"] == ["clientAuth"] and gateway["subject_cn"] is None and gateway["issuer"] == admin["issuer"]


def test_a_member_cannot_get_a_certificate_naming_another_member(tls):
    # Another member's policy: refused by the CA minion (policies are per minion).
    other = tls.salt(
        "etcd1", "x509.create_certificate", f"ca_server={CA}", "signing_policy=etcd_server:etcd2",
        f"private_key={PKI}/server.key", "CN=etcd2",
    )["etcd1"]  # fmt: skip
    assert "BEGIN CERTIFICATE" not in str(other) and "not permitted" in str(other), other
    # Its own policy, asking for etcd2's name and address: the policy's pinned values win.
    pem = tls.salt(
        "etcd1", "x509.create_certificate", f"ca_server={CA}", "signing_policy=etcd_server:etcd1",
        f"private_key={PKI}/server.key", "CN=etcd2", f"subjectAltName=DNS:etcd2,IP:{tls.ip('etcd2')}",
    )["etcd1"]  # fmt: skip
    cert = x509.load_pem_x509_certificate(pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    named = {str(v) for v in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "etcd1"
    assert tls.ip("etcd2") not in named and "etcd2" not in named and tls.ip("etcd1") in named, named


def self_signed(common_name, days, ca=False):
    """A self-signed certificate made outside the formula: (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    if ca:
        usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)  # sign certs and CRLs
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
    cert = builder.sign(key, hashes.SHA256())
    pem = serialization.PrivateFormat.PKCS8
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key.private_bytes(
        serialization.Encoding.PEM, pem, serialization.NoEncryption()
    ).decode()


def foreign_client(tls, node):
    """A client certificate from a CA the cluster never heard of, written to the node."""
    crt, key = self_signed("intruder", 1)
    files = {"/root/foreign.crt": crt, "/root/foreign.key": key}
    for path, text in files.items():
        tls.exec(node, "bash", "-c", f"umask 077; cat > {path} <<'PEM'\n{text}PEM", check=True)
    return ["--cert", "/root/foreign.crt", "--key", "/root/foreign.key"]


def test_client_port_rejects_no_certificate_and_a_foreign_ca(tls):
    url = f"https://{tls.ip('etcd1')}:2379/version"
    ca = ["--cacert", f"{PKI}/client-ca.crt"]
    admin = ["--cert", f"{PKI}/admin.crt", "--key", f"{PKI}/admin.key"]
    assert curl(tls, "etcd2", url, *ca, *admin)[0] == "200"
    assert curl(tls, "etcd2", url, *ca)[0] == "000"
    assert curl(tls, "etcd2", url, *ca, *foreign_client(tls, "etcd2"))[0] == "000"
    assert curl(tls, "etcd2", f"http://{tls.ip('etcd1')}:2379/version")[0] == "000"


def test_peer_port_rejects_client_certificates_and_a_foreign_ca(tls):
    url = f"https://{tls.ip('etcd1')}:2380/members"
    ca = ["--cacert", f"{PKI}/peer-ca.crt"]
    assert curl(tls, "etcd2", url, *ca, "--cert", f"{PKI}/peer.crt", "--key", f"{PKI}/peer.key")[0] == "200"
    # A valid client certificate (the admin's, signed by the client CA) cannot speak raft.
    assert curl(tls, "etcd2", url, *ca, "--cert", f"{PKI}/admin.crt", "--key", f"{PKI}/admin.key")[0] == "000"
    assert curl(tls, "etcd2", url, *ca, *foreign_client(tls, "etcd2"))[0] == "000"


def test_key_modes_owners_and_no_ca_key_on_members(tls):
    for name in MEMBERS:
        stat = tls.exec(
            name,
            "stat",
            "-c",
            "%n %a %U",
            *(f"{PKI}/{f}" for f in ("server.key", "peer.key", "admin.key", "gateway.key")),
        )
        assert stat.stdout.split("\n")[:4] == [
            f"{PKI}/server.key 600 etcd",
            f"{PKI}/peer.key 600 etcd",
            f"{PKI}/admin.key 600 root",
            f"{PKI}/gateway.key 600 root",
        ]
        assert not [p for p in tls.digest(name) if p.endswith("ca.key") or "etcd-ca" in p], name
    on_ca = tls.exec(CA, "stat", "-c", "%a %U", "/etc/pki/etcd-ca/client-ca.key", "/etc/pki/etcd-ca/peer-ca.key")
    assert on_ca.stdout.split("\n")[:2] == ["600 root", "600 root"]


def _ca_sign_jobs(event_listener, master, after):
    events = event_listener.get_events([(master.id, "salt/job/*/new")], after_time=after)
    return [e for e in events if e.data.get("fun") == "x509.sign_remote_certificate"]


def _serials(tls, node):
    script = (
        "import socket, ssl, sys\n"
        "from cryptography import x509\n"
        "def serial(port, ca, cert, key):\n"
        "    ctx = ssl.create_default_context(cafile=ca); ctx.load_cert_chain(cert, key)\n"
        f"    with socket.create_connection(('{tls.ip(node)}', port), timeout=3) as raw:\n"
        f"        with ctx.wrap_socket(raw, server_hostname='{tls.ip(node)}') as s:\n"
        "            return format(x509.load_der_x509_certificate(s.getpeercert(True)).serial_number, 'x')\n"
        f"print(serial(2379, '{PKI}/client-ca.crt', '{PKI}/admin.crt', '{PKI}/admin.key'),"
        f" serial(2380, '{PKI}/peer-ca.crt', '{PKI}/peer.crt', '{PKI}/peer.key'))\n"
    )
    proc = tls.exec(node, str(REPO / ".venv/bin/python"), "-c", script, check=True)
    return proc.stdout.split()


def test_short_lived_certificates_renew_in_place_then_nothing_to_do(tls, event_listener):
    pids = {n: tls.exec(n, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip() for n in MEMBERS}
    before = {n: _serials(tls, n) for n in MEMBERS}
    site = tls.site()
    # Every 365-day certificate (364 whole days left) is now due. renew_days must stay under
    # days_valid (or every run would renew again), hence the longer validity beside it.
    days_valid = site["etcd"]["tls"].get("days_valid")
    site["etcd"]["tls"].update(renew_days=365, days_valid=366)
    tls.set_site(site)
    ret = apply(tls, MEMBERS)
    for name in MEMBERS:
        issued = by_id(ok(ret[name]))["etcd-tls-certificates-etcd_tls-certificates"]["changes"]["issued"]
        assert sorted(issued) == ["admin", "gateway", "peer", "server"]
        after = _serials(tls, name)  # fresh TLS connections to both ports
        status = salt(tls, name, "etcd_tls.status")[name]
        assert after == [status[f"{PKI}/server.crt"]["serial"], status[f"{PKI}/peer.crt"]["serial"]]
        assert after[0] != before[name][0] and after[1] != before[name][1]
        assert tls.exec(name, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip() == pids[name]
    assert salt(tls, "etcd1", "etcd_health.healthy")["etcd1"]["healthy"] is True
    site["etcd"]["tls"]["renew_days"] = 30
    if days_valid is None:
        site["etcd"]["tls"].pop("days_valid")
    else:
        site["etcd"]["tls"]["days_valid"] = days_valid
    tls.set_site(site)
    since = time.time()
    ret = apply(tls, MEMBERS)  # the threshold is back: certificates are fine, only the settings record changes
    for name in MEMBERS:
        assert changed(ok(ret[name])) == ["etcd-config-settings-file-serialize"], ret[name]
    ret = apply(tls, MEMBERS)
    for name in MEMBERS:
        assert changed(ok(ret[name])) == [], ret[name]
    assert _ca_sign_jobs(event_listener, tls.master, since) == []  # checked locally: no CA call


def test_the_renewal_job_renews_without_anyone_applying(tls, event_listener):
    # Issue 20, item 3: the etcd-tls-renew job alone. One apply installs it with a 10 s
    # interval; then only the pillar changes (refreshed, never applied) so that every
    # certificate is inside its window, and the job renews on each member by itself.
    pids = {n: tls.exec(n, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip() for n in MEMBERS}
    site = tls.site()
    saved = {k: site["etcd"]["tls"].get(k) for k in ("renew_days", "days_valid", "renew_interval")}
    site["etcd"]["tls"]["renew_interval"] = 10
    tls.set_site(site)
    for name in MEMBERS:
        ok(apply(tls, name)[name])  # one at a time: the job's first look may run meanwhile
    since = time.time()
    time.sleep(12)  # a look or more with nothing due
    assert _ca_sign_jobs(event_listener, tls.master, since) == []  # judged locally: no CA call
    quiet = salt(tls, "etcd1", "etcd_tls.renew_due")["etcd1"]
    assert quiet["renewed"] == {} and "nothing inside its renewal window" in quiet["comment"], quiet
    before = {n: _serials(tls, n) for n in MEMBERS}
    left = min(c["days_left"] for c in salt(tls, "etcd1", "etcd_tls.status")["etcd1"].values())
    site["etcd"]["tls"].update(renew_days=left + 1, days_valid=left + 2)
    since = time.time()
    set_site(tls, site)  # the minions' pillar refreshed; no state runs
    tag = "etcd/tlslab/tls/*"

    def renewed():
        events = event_listener.get_events([(tls.master.id, tag)], after_time=since)
        return {e.data["id"]: e.data["data"] for e in events if e.tag.endswith("/renewed")}

    tls.wait(lambda: len(renewed()) == len(MEMBERS), 60, 1, "every member's renewal job")
    failed = event_listener.get_events([(tls.master.id, "etcd/tlslab/tls/renew_failed")], after_time=since)
    assert not failed, [e.data["data"] for e in failed]
    for name, event in renewed().items():
        assert event["member"] == name and sorted(event["renewed"]) == ["admin", "gateway", "peer", "server"], event
        after = _serials(tls, name)  # fresh TLS connections to both ports
        assert after[0] != before[name][0] and after[1] != before[name][1], (before[name], after)
        assert tls.exec(name, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip() == pids[name]
    RETURNS.extend(json.dumps(e) for e in renewed().values())  # scanned for key material too
    assert salt(tls, "etcd1", "etcd_health.healthy")["etcd1"]["healthy"] is True
    for key, value in saved.items():
        if value is None:
            site["etcd"]["tls"].pop(key, None)
        else:
            site["etcd"]["tls"][key] = value
    tls.set_site(site)
    for name, states in apply(tls, MEMBERS).items():
        ok(states)
        assert "etcd-tls-certificates-etcd_tls-certificates" not in changed(states), name


def _range_with_bundle(tls, d):
    """etcd4 reads /tls/probe from etcd2 through the gateway with the bundle in `d`."""
    return tls.exec(
        "etcd4",
        "curl", "-s", "--cacert", f"{d}/etcd-client-ca.crt", "--cert", f"{d}/etcd-client.crt",
        "--key", f"{d}/etcd-client.key", "-X", "POST", "-d", '{"key": "L3Rscy9wcm9iZQ=="}',
        f"https://{tls.ip('etcd2')}:2379/v3/kv/range",
    ).stdout  # fmt: skip


def test_client_bundle_for_the_storage_operator(tls):
    ok(apply(tls, CA, sls="etcd.ca")[CA])  # policies know bundle_minions
    tls.salt("etcd4", "saltutil.refresh_pillar", "wait=True")
    tls.exec("etcd4", "rm", "-rf", "/etc/etcd-client")  # test_kubernetes may have made one
    # The CN is pillar's: a bundle minion asking for another identity (root) is refused.
    refused = tls.salt("etcd4", "etcd_tls.client_bundle", "/etc/etcd-client", "cn=root")["etcd4"]
    assert "cn='root' refused" in str(refused) and "'storageos', pinned by pillar" in str(refused), refused
    assert tls.exec("etcd4", "test", "-e", "/etc/etcd-client/etcd-client.crt").returncode != 0
    got = salt(tls, "etcd4", "etcd_tls.client_bundle", "/etc/etcd-client", "cn=storageos")["etcd4"]
    assert got["changed"] is True, got
    stat = tls.exec("etcd4", "stat", "-c", "%n %a", *got["files"].values()).stdout.split("\n")[:3]
    assert stat == [
        "/etc/etcd-client/etcd-client-ca.crt 644",
        "/etc/etcd-client/etcd-client.crt 644",
        "/etc/etcd-client/etcd-client.key 600",
    ]
    body = _range_with_bundle(tls, "/etc/etcd-client")
    assert "b3Zlci1tdGxz" in body, body  # base64("over-mtls")
    again = salt(tls, "etcd4", "etcd_tls.client_bundle", "/etc/etcd-client", "cn=storageos")["etcd4"]
    assert again["changed"] is False and again["serial"] == got["serial"]


def _secret_serial(tls, manifest):
    """The serial of the client certificate inside the manifest's Secret on etcd4."""
    docs = yaml.safe_load_all(tls.exec("etcd4", "cat", manifest, check=True).stdout)
    secret = next(d for d in docs if d and d["kind"] == "Secret")
    pem = base64.b64decode(secret["data"]["etcd-client.crt"])
    return format(x509.load_pem_x509_certificate(pem).serial_number, "x")


def test_bundles_and_the_secret_renew_without_anyone_applying(tls, event_listener):
    # Issue 20, item 3, for the cluster's consumers: etcd.client (a bundle with its own
    # directory) and etcd.kubernetes (the Secret) on etcd4 each install a renewal job with
    # one apply; then only the pillar changes, so that both certificates are due.
    site = tls.site()
    saved = copy.deepcopy(site)
    manifest, k8s_dir, own_dir = "/etc/etcd-formula/kubernetes/etcd.yaml", "/etc/etcd-client-k8s", "/srv/app/etcd"
    site["etcd"]["tls"].update(renew_interval=10, bundle_minions={"etcd4": {"cn": "storageos", "dir": own_dir}})
    site["etcd"]["kubernetes"].update(minion="etcd4", bundle_dir=k8s_dir, manifest=manifest, apply=False)
    set_site(tls, site)
    ok(apply(tls, CA, sls="etcd.ca")[CA])  # the CA's policies know the bundle minion
    for sls in ("etcd.client", "etcd.kubernetes"):
        ok(apply(tls, "etcd4", sls=sls)["etcd4"])
    jobs = salt(tls, "etcd4", "schedule.list", "return_yaml=False")["etcd4"]
    assert {"etcd-client-renew", "etcd-kubernetes-renew"} <= set(jobs), sorted(jobs)
    before = {d: salt(tls, "etcd4", "etcd_tls.bundle_facts", d)["etcd4"] for d in (own_dir, k8s_dir)}
    assert _secret_serial(tls, manifest) == before[k8s_dir]["serial"]
    quiet = salt(tls, "etcd4", "etcd_tls.renew_bundle")["etcd4"]
    assert quiet["renewed"] == {} and "nothing inside its renewal window" in quiet["comment"], quiet
    left = before[own_dir]["days_left"]
    site["etcd"]["tls"].update(renew_days=left + 1, days_valid=left + 2)
    since = time.time()
    set_site(tls, site)  # refreshed, never applied

    def renewed():
        events = event_listener.get_events([(tls.master.id, "etcd/tlslab/tls/*")], after_time=since)
        return {e.data["data"]["bundle"]: e.data for e in events if e.tag.endswith("/renewed")}

    tls.wait(lambda: {own_dir, k8s_dir} <= set(renewed()), 60, 1, "both renewal jobs on etcd4")
    failed = event_listener.get_events([(tls.master.id, "etcd/tlslab/tls/renew_failed")], after_time=since)
    assert not failed, [e.data["data"] for e in failed]
    got = renewed()
    assert got[own_dir]["id"] == "etcd4" and got[k8s_dir]["data"]["secret"] == manifest, got
    after = {d: salt(tls, "etcd4", "etcd_tls.bundle_facts", d)["etcd4"] for d in (own_dir, k8s_dir)}
    for d in (own_dir, k8s_dir):
        assert after[d]["serial"] != before[d]["serial"], (d, before[d], after[d])
    assert _secret_serial(tls, manifest) == after[k8s_dir]["serial"]  # the Secret carries the new one
    modes = tls.exec("etcd4", "stat", "-c", "%n %a", f"{own_dir}/etcd-client.key", manifest).stdout.split()
    assert modes == [f"{own_dir}/etcd-client.key", "600", manifest, "600"], modes
    body = _range_with_bundle(tls, own_dir)
    assert '"header"' in body, body  # the renewed bundle is accepted
    RETURNS.extend(json.dumps(e) for e in got.values())  # scanned for key material too
    for sls in ("etcd.client", "etcd.kubernetes"):  # the renewed ones are outside the window
        ok(apply(tls, "etcd4", sls=sls)["etcd4"])
    again = {d: salt(tls, "etcd4", "etcd_tls.bundle_facts", d)["etcd4"]["serial"] for d in (own_dir, k8s_dir)}
    assert again == {d: after[d]["serial"] for d in after}  # nothing reissued
    set_site(tls, saved)
    tls.exec("etcd4", "rm", "-rf", own_dir, k8s_dir, manifest)
    salt(tls, "etcd4", "schedule.delete", "etcd-client-renew")
    salt(tls, "etcd4", "schedule.delete", "etcd-kubernetes-renew")


def _host_bundle(tls, tmp_path, tag):
    """The storage operator's bundle from etcd4, copied to the host for a writer there."""
    out = []
    for fname in ("etcd-client-ca.crt", "etcd-client.crt", "etcd-client.key"):
        dst = tmp_path / f"{tag}-{fname}"
        dst.write_text(tls.exec("etcd4", "cat", f"/etc/etcd-client/{fname}", check=True).stdout)
        dst.chmod(0o600)
        out.append(str(dst))
    return out


def _pids(tls):
    return {n: tls.exec(n, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip() for n in MEMBERS}


def _client_accepted(tls, ca, cert, key):
    try:
        etcd_client.Client(urls(tls, ["etcd2"], "https"), 3, ca, cert, key).put("/tls/rotation-probe", "x")
    except etcd_client.EtcdError:
        return False
    return True


def test_ca_rotation_loses_no_write_and_keeps_old_clients_until_retired(tls, tmp_path):
    old = _host_bundle(tls, tmp_path, "old")  # issued before the rotation (previous test)
    tls.exec("etcd1", "bash", "-c", f"mkdir -p /root/old-peer && cp {PKI}/peer.crt {PKI}/peer.key /root/old-peer/")
    rotated = salt(tls, CA, "etcd_ca.rotate_ca")[CA]["changes"]
    assert sorted(rotated) == ["client_ca", "peer_ca"], rotated
    assert all(r["new"] != r["previous"] for r in rotated.values())
    again = salt(tls, CA, "etcd_ca.rotate_ca")[CA]  # one rotation at a time
    assert "retire_ca first" in str(again), again
    # A consumer that already trusts both CAs, with its old certificate.
    both = tmp_path / "both-ca.crt"
    both.write_text(salt(tls, "etcd1", "etcd_tls.trusted_cas")["etcd1"]["client_ca"])  # the mine's bundle
    with Traffic(urls(tls, MEMBERS, "https"), "rotate-1", tls=(str(both), old[1], old[2])) as traffic:
        # Pass 1, on all members at once: trust both; one guarded restart each; no new certificate yet.
        ret = apply(tls, MEMBERS)
        for name in MEMBERS:
            states = by_id(ok(ret[name]))
            assert "trusted CA changed" in str(states["etcd-service-running-etcd_cluster-running"]["changes"])
            assert "wait for the new CA" in states["etcd-tls-certificates-etcd_tls-certificates"]["comment"]
            assert tls.exec(name, "grep", "-c", "BEGIN CERT", f"{PKI}/client-ca.crt").stdout.strip() == "2"
        view = salt(tls, "etcd1", "etcd_tls.rotation")["etcd1"]
        assert view["in_progress"] and view["reissue_blocked_by"] is None, view
        assert "still come from the CA being dropped" in view["retire_blocked_by"], view
        # The consumer's bundle: both CAs, a certificate from the new one.
        bundle = salt(tls, "etcd4", "etcd_tls.client_bundle", "/etc/etcd-client", "cn=storageos")["etcd4"]
        assert bundle["changed"] is True, bundle
        pids = _pids(tls)
        # Pass 2: certificates from the new CA, read by etcd per handshake: no restart.
        ret = apply(tls, MEMBERS)
        for name in MEMBERS:
            issued = by_id(ok(ret[name]))["etcd-tls-certificates-etcd_tls-certificates"]["changes"]["issued"]
            assert sorted(issued) == ["admin", "gateway", "peer", "server"]
            status = salt(tls, name, "etcd_tls.status")[name]
            assert _serials(tls, name) == [status[f"{PKI}/server.crt"]["serial"], status[f"{PKI}/peer.crt"]["serial"]]
            assert rotated["client_ca"]["new_subject"] in status[f"{PKI}/server.crt"]["issuer"]
            assert rotated["peer_ca"]["new_subject"] in status[f"{PKI}/peer.crt"]["issuer"]
        assert _pids(tls) == pids
        assert _client_accepted(tls, str(both), old[1], old[2])  # the old CA is still trusted
    acked, gap = assert_no_loss(tls, traffic), traffic.longest_gap()
    new = _host_bundle(tls, tmp_path, "new")
    ok_retire = salt(tls, CA, "etcd_ca.retire_ca")[CA]["changes"]
    assert sorted(ok_retire) == ["client_ca", "peer_ca"], ok_retire
    with Traffic(urls(tls, MEMBERS, "https"), "rotate-3", tls=new) as traffic:
        # Pass 3: the old CA dropped; one guarded restart each.
        ret = apply(tls, MEMBERS)
        for name in MEMBERS:
            states = by_id(ok(ret[name]))
            assert "trusted CA changed" in str(states["etcd-service-running-etcd_cluster-running"]["changes"])
            assert tls.exec(name, "grep", "-c", "BEGIN CERT", f"{PKI}/client-ca.crt").stdout.strip() == "1"
    acked, gap = acked + assert_no_loss(tls, traffic), max(gap, traffic.longest_gap())
    assert not _client_accepted(tls, str(both), old[1], old[2])  # the old client certificate: refused
    assert _client_accepted(tls, *new)
    refused = tls.exec(
        "etcd1", "curl", "-s", "-o", "/dev/null", "--cacert", f"{PKI}/peer-ca.crt",
        "--cert", "/root/old-peer/peer.crt", "--key", "/root/old-peer/peer.key", f"https://{tls.ip('etcd2')}:2380/members",
    )  # fmt: skip
    assert refused.returncode != 0  # an old peer certificate no longer speaks to a peer
    tls.exec("etcd1", "rm", "-rf", "/root/old-peer")
    ret = apply(tls, MEMBERS)
    for name in MEMBERS:
        assert changed(ok(ret[name])) == [], ret[name]
    assert salt(tls, "etcd1", "etcd_health.healthy")["etcd1"]["healthy"] is True
    print(f"CA rotation: {acked} acknowledged writes, none lost, longest gap {gap:.2f} s")


def test_files_mode_installs_checked_files_and_refuses_wrong_ones(tls, site):
    src = "/root/made-elsewhere"
    tls.exec("etcd1", "bash", "-c", f"mkdir -p {src} && cp -p {PKI}/* {src}/", check=True)
    files = {w: f"{src}/{f}" for w, f in {
        "client_ca": "client-ca.crt", "peer_ca": "peer-ca.crt", "server_cert": "server.crt", "server_key": "server.key",
        "peer_cert": "peer.crt", "peer_key": "peer.key", "admin_cert": "admin.crt", "admin_key": "admin.key",
    }.items()}  # fmt: skip
    site = tls.site()
    site["etcd"]["tls"].update(mode="files", files=dict(files, server_cert=f"{src}/peer.crt"))
    tls.set_site(site)
    before = tls.digest("etcd1")
    states = by_id(apply(tls, "etcd1")["etcd1"])
    refused = states["etcd-tls-files-etcd_tls-files_installed"]
    assert refused["result"] is False and "not issued by the trusted CA" in refused["comment"]
    assert tls.digest("etcd1") == before
    site["etcd"]["tls"]["files"] = files
    tls.set_site(site)
    # The same files as etcd1 has: the settings record changes and the renewal job goes
    # (files mode: certificates are renewed where they are made), then nothing.
    assert sorted(changed(ok(apply(tls, "etcd1")["etcd1"]))) == [
        "etcd-config-settings-file-serialize",
        "etcd-tls-renew-schedule-schedule-absent",
    ]
    assert "etcd-tls-renew" not in salt(tls, "etcd1", "schedule.list", "return_yaml=False")["etcd1"]
    assert changed(ok(apply(tls, "etcd1")["etcd1"])) == []


def test_bring_your_own_ca(tls):
    byo = "/etc/pki/byo-ca"
    wipe(tls, MEMBERS)
    for name in MEMBERS:
        tls.exec(name, "rm", "-rf", PKI, check=True)
    site = tls_site(tls, "tlsbyo")
    site["etcd"]["tls"].update(ca_dir=byo, generate_ca=False)
    set_site(tls, site)
    # No files yet: refused with the path to fill, and nothing made on the CA minion.
    refused = apply(tls, CA, sls="etcd.ca")[CA]
    assert any(r["result"] is False and f"{byo}/client-ca.key is missing" in r["comment"] for r in refused), refused
    assert tls.exec(CA, "test", "-e", byo).returncode != 0
    subjects = {}
    for stem in ("client-ca", "peer-ca"):
        crt, key = self_signed(f"Example Corp etcd {stem}", 365, ca=True)  # an operator's CA
        subjects[stem] = f"Example Corp etcd {stem}"
        tls.exec(CA, "bash", "-c", f"umask 077; mkdir -p {byo}; cat > {byo}/{stem}.key <<'PEM'\n{key}PEM", check=True)
        tls.exec(CA, "bash", "-c", f"cat > {byo}/{stem}.crt <<'PEM'\n{crt}PEM", check=True)
    ok(apply(tls, CA, sls="etcd.ca")[CA])
    ret = apply(tls, MEMBERS)
    for name in MEMBERS:
        ok(ret[name])
    status = salt(tls, "etcd2", "etcd_tls.status")["etcd2"]
    assert subjects["client-ca"] in status[f"{PKI}/server.crt"]["issuer"], status
    assert subjects["peer-ca"] in status[f"{PKI}/peer.crt"]["issuer"], status
    for name in MEMBERS:
        assert tls.exec(name, "bash", "-c", f"ls {PKI}/*ca.key").returncode != 0  # no CA key on a member
    assert tls.exec("etcd3", "etcdctl", "put", "/tls/byo", "yes").returncode == 0
    assert salt(tls, "etcd1", "etcd_health.healthy")["etcd1"]["healthy"] is True


def test_bring_your_own_ca_rotates_to_the_operators_next_ca(tls):
    # As test_bring_your_own_ca left it: the operator's CAs in /etc/pki/byo-ca, generate_ca false.
    subject = "Example Corp etcd client-ca, next"
    crt, key = self_signed(subject, 365, ca=True)
    script = f"umask 077; cat > /root/next-ca.key <<'PEM'\n{key}PEM\ncat > /root/next-ca.crt <<'PEM'\n{crt}PEM"
    tls.exec(CA, "bash", "-c", script, check=True)
    refused = salt(tls, CA, "etcd_ca.rotate_ca")[CA]
    assert "cert=<path> key=<path>" in str(refused), refused
    rotated = salt(tls, CA, "etcd_ca.rotate_ca", "client_ca", "cert=/root/next-ca.crt", "key=/root/next-ca.key")[CA][
        "changes"
    ]
    assert sorted(rotated) == ["client_ca"], rotated
    assert tls.exec(CA, "stat", "-c", "%a", "/etc/pki/byo-ca/client-ca.key").stdout.strip() == "600"
    tls.exec(CA, "rm", "-f", "/root/next-ca.key", "/root/next-ca.crt")
    for _ in range(2):  # trust both, then certificates from the new CA
        ret = apply(tls, MEMBERS)
        for name in MEMBERS:
            ok(ret[name])
    status = salt(tls, "etcd2", "etcd_tls.status")["etcd2"]
    assert "next" in status[f"{PKI}/server.crt"]["issuer"] and "next" in status[f"{PKI}/admin.crt"]["issuer"], status
    assert "Example Corp etcd peer-ca" in status[f"{PKI}/peer.crt"]["issuer"]  # the peer CA did not change
    assert sorted(salt(tls, CA, "etcd_ca.retire_ca")[CA]["changes"]) == ["client_ca"]
    ret = apply(tls, MEMBERS)
    for name in MEMBERS:
        ok(ret[name])
        assert tls.exec(name, "grep", "-c", "BEGIN CERT", f"{PKI}/client-ca.crt").stdout.strip() == "1"
    assert salt(tls, "etcd1", "etcd_health.healthy")["etcd1"]["healthy"] is True
    assert tls.exec(CA, "test", "-e", "/etc/pki/byo-ca/client-ca.previous.key").returncode != 0


def test_no_private_key_text_in_returns_job_cache_or_logs(tls):
    # Minions and the master log at debug level in the lab; every return was kept above.
    hits = [secret for secret in SECRETS if any(secret in r for r in RETURNS)]
    assert not hits, f"key material in a Salt return: {hits}"
    master = tls.master.config
    # The places searched really hold this module's traffic (a search of nothing finds nothing).
    control = subprocess.run(
        ["grep", "-rlF", "sign_remote_certificate", master["cachedir"], master["log_file"]],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert control.stdout.strip(), "the master's job cache and log hold no signing request"
    assert tls.exec("etcd1", "grep", "-rlF", "etcd_tls.certificates", "/var/log/salt").stdout.strip()
    for secret in SECRETS:
        proc = subprocess.run(
            ["grep", "-rlF", secret, master["cachedir"], master["log_file"]],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.stdout.strip() == "", f"{secret!r} on the master in {proc.stdout}"
        for node in [*MEMBERS, "etcd4", CA]:
            proc = tls.exec(node, "grep", "-rlF", secret, "/var/log/salt", "/var/cache/salt")
            assert proc.stdout.strip() == "", f"{secret!r} on {node} in {proc.stdout}"
