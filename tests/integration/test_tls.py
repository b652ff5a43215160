"""TLS end to end on real nodes: a CA minion (ca1) signing through x509_v2, mutual TLS on
both ports with separate client and peer CAs, keys that never travel, renewal in place.
"""

import datetime
import json
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from results import MEMBERS, by_id, changed, ok, set_site, wipe

from labkit.preflight import REPO

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
    site["etcd"]["tls"].update(enabled=enabled, ca_minion=CA, bundle_minions=["etcd4"])
    site["etcd"]["health"] = {"schedule": False}
    return site


def test_turning_tls_on_for_a_running_plain_cluster_is_refused(lab):
    lab.salt(CA, "saltutil.sync_all")
    wipe(lab, MEMBERS)
    lab.set_site(tls_site(lab, "tlsplain", enabled=False))
    ret = apply(lab, MEMBERS)
    for name in MEMBERS:
        ok(ret[name])
    lab.set_site(tls_site(lab, "tlsplain", enabled=True))
    ok(apply(lab, CA, sls="etcd.ca")[CA])
    before = lab.digest("etcd1")
    first = apply(lab, "etcd1")["etcd1"][0]
    assert first["result"] is False
    assert "etcd:tls:enabled" in first["comment"] and "Turning TLS on for a running cluster" in first["comment"]
    assert lab.digest("etcd1") == before
    assert "http://" in lab.exec("etcd1", "cat", "/etc/etcd/etcd.env").stdout


@pytest.fixture(scope="module")
def tls(lab):
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
    assert salt(tls, "etcd3", "etcd_cluster.healthy")["etcd3"]["healthy"] is True


def test_server_certificate_names_and_usages(tls):
    status = salt(tls, "etcd1", "etcd_tls.status")["etcd1"]
    server = status[f"{PKI}/server.crt"]
    assert set(server["ip"]) == {tls.ip("etcd1"), "127.0.0.1", "::1"}
    assert {"etcd1", "localhost"} <= set(server["dns"])
    assert server["eku"] == ["clientAuth", "serverAuth"]
    peer = status[f"{PKI}/peer.crt"]
    assert tls.ip("etcd1") in peer["ip"] and peer["issuer"] != server["issuer"]
    assert status[f"{PKI}/admin.crt"]["eku"] == ["clientAuth"]


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
            name, "stat", "-c", "%n %a %U", *(f"{PKI}/{f}" for f in ("server.key", "peer.key", "admin.key"))
        )
        assert stat.stdout.split("\n")[:3] == [
            f"{PKI}/server.key 600 etcd",
            f"{PKI}/peer.key 600 etcd",
            f"{PKI}/admin.key 600 root",
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
    site["etcd"]["tls"]["renew_days"] = 400  # every 365-day certificate is now due
    tls.set_site(site)
    ret = apply(tls, MEMBERS)
    for name in MEMBERS:
        issued = by_id(ok(ret[name]))["etcd-tls-certificates-etcd_tls-certificates"]["changes"]["issued"]
        assert sorted(issued) == ["admin", "peer", "server"]
        after = _serials(tls, name)  # fresh TLS connections to both ports
        status = salt(tls, name, "etcd_tls.status")[name]
        assert after == [status[f"{PKI}/server.crt"]["serial"], status[f"{PKI}/peer.crt"]["serial"]]
        assert after[0] != before[name][0] and after[1] != before[name][1]
        assert tls.exec(name, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip() == pids[name]
    assert salt(tls, "etcd1", "etcd_cluster.healthy")["etcd1"]["healthy"] is True
    site["etcd"]["tls"]["renew_days"] = 30
    tls.set_site(site)
    since = time.time()
    ret = apply(tls, MEMBERS)  # the threshold is back: certificates are fine, only the settings record changes
    for name in MEMBERS:
        assert changed(ok(ret[name])) == ["etcd-config-settings-file-serialize"], ret[name]
    ret = apply(tls, MEMBERS)
    for name in MEMBERS:
        assert changed(ok(ret[name])) == [], ret[name]
    assert _ca_sign_jobs(event_listener, tls.master, since) == []  # checked locally: no CA call


def test_client_bundle_for_the_storage_operator(tls):
    ok(apply(tls, CA, sls="etcd.ca")[CA])  # policies know bundle_minions
    tls.salt("etcd4", "saltutil.refresh_pillar", "wait=True")
    tls.exec("etcd4", "rm", "-rf", "/etc/etcd-client")  # test_kubernetes may have made one
    got = salt(tls, "etcd4", "etcd_tls.client_bundle", "/etc/etcd-client", "cn=storageos")["etcd4"]
    assert got["changed"] is True, got
    stat = tls.exec("etcd4", "stat", "-c", "%n %a", *got["files"].values()).stdout.split("\n")[:3]
    assert stat == [
        "/etc/etcd-client/etcd-client-ca.crt 644",
        "/etc/etcd-client/etcd-client.crt 644",
        "/etc/etcd-client/etcd-client.key 600",
    ]
    d = "/etc/etcd-client"
    body = tls.exec(
        "etcd4",
        "curl", "-s", "--cacert", f"{d}/etcd-client-ca.crt", "--cert", f"{d}/etcd-client.crt",
        "--key", f"{d}/etcd-client.key", "-X", "POST", "-d", '{"key": "L3Rscy9wcm9iZQ=="}',
        f"https://{tls.ip('etcd2')}:2379/v3/kv/range",
    ).stdout  # fmt: skip
    assert "b3Zlci1tdGxz" in body, body  # base64("over-mtls")
    again = salt(tls, "etcd4", "etcd_tls.client_bundle", "/etc/etcd-client", "cn=storageos")["etcd4"]
    assert again["changed"] is False and again["serial"] == got["serial"]


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
    # The same files as etcd1 has: only the settings record changes, then nothing.
    assert changed(ok(apply(tls, "etcd1")["etcd1"])) == ["etcd-config-settings-file-serialize"]
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
    assert salt(tls, "etcd1", "etcd_cluster.healthy")["etcd1"]["healthy"] is True


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
