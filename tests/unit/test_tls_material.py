"""TLS settings, flags and the local certificate checks that decide renewal."""

import datetime
import ipaddress
import os
import stat

import etcd_flags
import etcd_node
import etcd_settings
import etcd_tls
import etcd_topology
import etcd_validate
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def site(**tls):
    pillar = {
        "cluster": {"name": "lab"},
        "members": {"etcd1": {"address": "10.0.0.11", "fqdn": "etcd1.lab"}, "etcd2": {"address": "10.0.0.12"}},
        "tls": dict({"enabled": True, "ca_minion": "ca1"}, **tls),
    }
    return pillar, etcd_settings.merge(pillar)


def test_tls_flags_come_from_one_place_and_peer_trust_is_separate():
    _, s = site()
    env = etcd_flags.flags(s, "etcd1")
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "https://10.0.0.11:2379"
    assert env["ETCD_INITIAL_CLUSTER"].startswith("etcd1=https://10.0.0.11:2380")
    assert env["ETCD_CERT_FILE"] == etcd_settings.tls_path(s, "server_cert")
    assert env["ETCD_TRUSTED_CA_FILE"] == etcd_settings.tls_path(s, "client_ca")
    assert env["ETCD_PEER_TRUSTED_CA_FILE"] == etcd_settings.tls_path(s, "peer_ca")
    assert env["ETCD_PEER_TRUSTED_CA_FILE"] != env["ETCD_TRUSTED_CA_FILE"]
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert not [k for k in env if "AUTO_TLS" in k]


def test_member_sans_name_every_way_in():
    _, s = site(extra_sans=["etcd.storageos.svc", "10.96.0.50"])
    sans = etcd_topology.member_sans(s, "etcd1")
    assert sans["ip"] == ["10.0.0.11", "127.0.0.1", "::1", "10.96.0.50"]
    assert sans["dns"] == ["etcd.storageos.svc", "etcd1", "etcd1.lab", "localhost"]


@pytest.mark.parametrize(
    ("tls", "key", "words"),
    [
        ({"ca_minion": None}, "etcd:tls:ca_minion", "no CA minion"),
        ({"ca_minion": "etcd2"}, "etcd:tls:ca_minion", "is an etcd member"),
        ({"mode": "vault"}, "etcd:tls:mode", "unknown TLS mode"),
        ({"mode": "files", "files": {"server_cert": "/x"}}, "etcd:tls:files:server_key", "needs the path"),
        ({"mode": "files", "files": {"server_crt": "/x"}}, "etcd:tls:files:server_crt", "did you mean"),
        ({"mode": "files", "files": {"gateway_cert": "/x"}}, "etcd:tls:files:gateway_key", "goes together"),
        ({"key_type": "dsa"}, "etcd:tls:key_type", "unknown key type"),
        ({"dir": "pki"}, "etcd:tls:dir", "not an absolute path"),
        ({"enabled": "yes"}, "etcd:tls:enabled", "true or false"),
        ({"renew_schedule": "on"}, "etcd:tls:renew_schedule", "true or false"),
        ({"renew_interval": 1}, "etcd:tls:renew_interval", "whole number from 10"),
    ],
)
def test_tls_mistakes_name_their_key(tls, key, words):
    pillar, s = site(**tls)
    report = etcd_validate.validate(pillar, s, "etcd1")
    hits = [e for e in report["errors"] if e["key"] == key]
    assert hits and words in hits[0]["message"] + hits[0]["fix"], report["errors"]


def _ca(tmp_path, name):
    key = tmp_path / f"{name}.key"
    crt = tmp_path / f"{name}.crt"
    etcd_tls.make_key(str(key))
    etcd_tls.self_signed_ca(str(key), str(crt), name, 10)
    return str(key), str(crt)


def _leaf(
    tmp_path,
    ca,
    name,
    sans,
    days=100,
    eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    starts=datetime.timedelta(minutes=-1),
):
    ca_key, ca_crt = ca
    key_path = tmp_path / f"{name}.key"
    etcd_tls.make_key(str(key_path))
    key = etcd_tls.load_key(str(key_path))
    issuer = etcd_tls.load_cert(ca_crt).subject
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017
    alt = [x509.DNSName(d) for d in sans["dns"]]
    alt += [x509.IPAddress(ipaddress.ip_address(i)) for i in sans["ip"]]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + starts)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        .sign(etcd_tls.load_key(ca_key), hashes.SHA256())
    )
    crt_path = tmp_path / f"{name}.crt"
    etcd_tls.write_public(str(crt_path), cert.public_bytes(serialization.Encoding.PEM))
    return str(crt_path), str(key_path)


SANS = {"dns": ["etcd1", "localhost"], "ip": ["10.0.0.11", "127.0.0.1", "::1"]}
EKU = ("serverAuth", "clientAuth")


def test_keys_are_private_from_the_start(tmp_path):
    path = tmp_path / "k.key"
    etcd_tls.make_key(str(path), "rsa")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_a_good_certificate_needs_nothing(tmp_path):
    ca = _ca(tmp_path, "client-ca")
    crt, key = _leaf(tmp_path, ca, "server", SANS)
    assert etcd_tls.judge(crt, key, ca[1], SANS, EKU, 30) == []


def test_each_reason_to_reissue(tmp_path):
    ca = _ca(tmp_path, "client-ca")
    other = _ca(tmp_path, "peer-ca")
    crt, key = _leaf(tmp_path, ca, "server", SANS, days=10)
    assert etcd_tls.judge(crt, key, ca[1], SANS, EKU, 30) == ["9 days left, renewal threshold is 30"]
    crt, key = _leaf(tmp_path, ca, "server", SANS)
    wider = {"dns": SANS["dns"], "ip": [*SANS["ip"], "10.0.0.99"]}
    assert "SANs" in etcd_tls.judge(crt, key, ca[1], wider, EKU, 30)[0]
    assert "not issued by the trusted CA" in etcd_tls.judge(crt, key, other[1], SANS, EKU, 30)
    crt2, key2 = _leaf(tmp_path, ca, "other", SANS)
    assert "certificate does not belong to the private key" in etcd_tls.judge(crt, key2, ca[1], SANS, EKU, 30)
    client, ckey = _leaf(tmp_path, ca, "client", SANS, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    assert "extended key usage lacks serverAuth" in etcd_tls.judge(client, ckey, ca[1], SANS, EKU, 30)
    assert etcd_tls.judge(str(tmp_path / "none.crt"), key, ca[1], SANS, EKU, 30) == ["no certificate yet"]
    # A pinned subject: an admin certificate of an earlier release (CN etcd-admin-<id>)
    # is reissued as root; one that says what is pinned needs nothing.
    assert etcd_tls.judge(crt, key, ca[1], SANS, EKU, 30, subject="CN=root") == ["subject 'CN=server' is not 'CN=root'"]
    assert etcd_tls.judge(crt, key, ca[1], SANS, EKU, 30, subject="CN=server") == []


def test_mode_files_may_leave_out_the_gateway_pair_then_the_formula_calls_with_the_admin_pair(tmp_path):
    given = {w: f"/srv/pki/{w}" for w in etcd_settings.TLS_FILES if w not in etcd_settings.OPTIONAL_FILES}
    pillar, s = site(mode="files", files=given, dir=str(tmp_path))
    assert [e for e in etcd_validate.validate(pillar, s, "etcd1")["errors"] if "tls" in e["key"]] == []
    assert "gateway_cert" not in etcd_settings.tls_files(s) and "gateway" not in etcd_tls.kinds(s)
    for what in ("gateway_cert", "gateway_key"):
        (tmp_path / etcd_settings.TLS_FILES[what][0]).write_text("x")
    # A pair left from the CA minion's mode is not the site's any more: the admin pair.
    assert etcd_topology.client_tls(s)[1] == etcd_settings.tls_path(s, "admin_cert")
    # The CA minion's mode issues the pair: once on disk, the formula calls with it.
    _, ca_mode = site(dir=str(tmp_path))
    assert "gateway" in etcd_tls.kinds(ca_mode)
    assert etcd_topology.client_tls(ca_mode)[1:] == (
        etcd_settings.tls_path(ca_mode, "gateway_cert"),
        etcd_settings.tls_path(ca_mode, "gateway_key"),
    )
    assert etcd_topology.etcdctl_tls(ca_mode)[1] == etcd_settings.tls_path(ca_mode, "admin_cert")


# When a certificate is valid, against this node's clock: (notBefore from now, days to
# notAfter) -> the reasons judge() gives, by their leading words. Expired and not yet valid
# are reissued by the next apply and by the renewal job; a notBefore a little ahead is a CA
# clock a little ahead, no reason to ask again.
VALIDITY = [
    (datetime.timedelta(minutes=-1), 100, []),
    (datetime.timedelta(seconds=30), 100, []),
    (datetime.timedelta(hours=2), 100, [etcd_tls.NOT_YET_VALID]),
    (datetime.timedelta(days=-10), -1, ["expired at"]),
]


@pytest.mark.parametrize(("starts", "days", "leading"), VALIDITY)
def test_validity_in_time(tmp_path, starts, days, leading):
    ca = _ca(tmp_path, "client-ca")
    crt, key = _leaf(tmp_path, ca, "server", SANS, days=days, starts=starts)
    reasons = etcd_tls.judge(crt, key, ca[1], SANS, EKU, 30)
    assert [r for r in reasons if not any(r.startswith(w) for w in leading)] == [], reasons
    assert len(reasons) == len(leading), reasons


def test_a_node_that_slept_through_a_rotation_is_judged_by_the_cas_the_apply_will_write(tmp_path):
    retired, current = _ca(tmp_path, "retired-ca"), _ca(tmp_path, "current-ca")
    crt, key = _leaf(tmp_path, retired, "server", SANS)
    # On disk the node still trusts the retired CA: its certificate looks fine there ...
    assert etcd_tls.judge(crt, key, retired[1], SANS, EKU, 30) == []
    # ... but the mine's CA, which the apply's trust step writes first, did not issue it.
    mined = open(current[1]).read()
    assert "not issued by the trusted CA" in etcd_tls.judge(crt, key, retired[1], SANS, EKU, 30, ca_pem=mined)


def test_a_trust_bundle_names_the_previous_ca_and_fingerprints_match(tmp_path):
    new, old = _ca(tmp_path, "new-ca"), _ca(tmp_path, "old-ca")
    bundle = tmp_path / "bundle.crt"
    bundle.write_text(open(new[1]).read() + open(old[1]).read())  # the current CA first
    from_old, key = _leaf(tmp_path, old, "server", SANS)
    assert etcd_tls.judge(from_old, key, str(bundle), SANS, EKU, 30) == [etcd_tls.PREVIOUS_CA]
    from_new, key2 = _leaf(tmp_path, new, "server2", SANS)
    assert etcd_tls.judge(from_new, key2, str(bundle), SANS, EKU, 30) == []
    fps = etcd_node.file_fingerprints(str(bundle))  # without cryptography
    assert fps == [etcd_tls.fingerprint(etcd_tls.load_cert(new[1])), etcd_tls.fingerprint(etcd_tls.load_cert(old[1]))]
    assert etcd_node.pem_fingerprints(bundle.read_text()) == fps
    assert etcd_tls.issuer_fingerprint(from_old, str(bundle)) == fps[1]
    stranger = _ca(tmp_path, "stranger")
    assert etcd_tls.issuer_fingerprint(from_old, stranger[1]) is None


def test_each_member_policy_pins_its_own_names_whatever_is_asked():
    import etcd_policies
    import salt.utils.x509

    _, s = site(bundle_minions=["k8s-master1"])
    policies = etcd_policies.signing_policies(s)
    assert sorted(policies) == sorted(
        [f"etcd_{kind}:{m}" for kind in ("server", "peer", "admin", "gateway", "client") for m in s["members"]]
        + ["etcd_client:k8s-master1"]
    )
    server = policies[etcd_policies.policy_name("server", "etcd1")]
    assert server["minions"] == "etcd1"  # a plain id: no other minion may use it
    assert policies["etcd_peer:etcd2"]["signing_cert"].endswith("/peer-ca.crt")
    assert policies["etcd_client:k8s-master1"]["minions"] == "k8s-master1"
    assert policies["etcd_client:k8s-master1"]["CN"] == "etcd-client"  # the list form's default
    # etcd1 asks for etcd2's address and another CN: x509_v2's merge keeps the pinned ones.
    asked = {"CN": "etcd2", "subjectAltName": "IP:10.0.0.12, DNS:etcd2"}
    merged = salt.utils.x509.merge_signing_policy(server, dict(asked))
    assert merged["CN"] == "etcd1"
    assert merged["subjectAltName"] == etcd_tls.san_string(etcd_topology.member_sans(s, "etcd1"))
    assert "10.0.0.12" not in merged["subjectAltName"]
    # The admin certificate is root in etcd (auth on) on every member, whatever is asked.
    admin = salt.utils.x509.merge_signing_policy(policies["etcd_admin:etcd2"], {"CN": "etcd-admin-etcd2"})
    assert admin["CN"] == "root"
    # The gateway certificate has no CN at all, even when the request names one: the
    # pinned subject is what x509_v2 builds the name from (a request's CN is ignored).
    gateway = salt.utils.x509.merge_signing_policy(policies["etcd_gateway:etcd2"], {"CN": "root"})
    name = salt.utils.x509._get_dn(gateway.get("subject") or gateway)
    assert name.rfc4514_string() == "O=etcd-formula" and name.get_attributes_for_oid(NameOID.COMMON_NAME) == []


def test_a_bundle_minion_gets_the_cn_pillar_gives_it_never_its_own_choice():
    import etcd_policies
    import salt.utils.x509

    _, s = site(bundle_minions={"k8s-master1": "storageos"})
    policy = etcd_policies.signing_policies(s)["etcd_client:k8s-master1"]
    assert salt.utils.x509.merge_signing_policy(policy, {"CN": "root"})["CN"] == "storageos"
    s["kubernetes"].update(minion="k8s-master2", service="storageos-etcd")
    s["tls"]["bundle_minions"] = ["k8s-master2", "reader"]
    assert etcd_topology.bundle_cns(s) == {
        "etcd1": "etcd-client", "etcd2": "etcd-client", "k8s-master2": "storageos-etcd", "reader": "etcd-client"
    }  # fmt: skip


# The CA minion's answer to the policy refresh, and how long it took -> down (stop asking)?
CA_ANSWERS = [
    ({"client": "ok"}, 0.4, False),  # answered
    ("'etcd_ca.refresh_policies' is not available.", 0.2, False),  # refused: its words say why
    (None, 0.1, False),  # nothing at once: the master's peer setting refused the publish
    (None, 29.2, True),  # nothing after the whole wait: down or not connected
    (None, 31.0, True),
]


@pytest.mark.parametrize(("answer", "waited", "down"), CA_ANSWERS)
def test_a_ca_minion_that_is_down_is_told_from_one_that_refuses(answer, waited, down):
    assert etcd_tls.ca_down(answer, waited, 30) is down


BUNDLE_DEFAULT = {"cn": "etcd-client", "dir": "/etc/etcd-client", "user": "root"}


@pytest.mark.parametrize(
    ("given", "app1"),
    [
        (["app1"], BUNDLE_DEFAULT),  # the list form: every default
        ({"app1": "storageos"}, dict(BUNDLE_DEFAULT, cn="storageos")),  # the map form: the CN
        ({"app1": {"dir": "/srv/app1/etcd"}}, dict(BUNDLE_DEFAULT, dir="/srv/app1/etcd")),
        (
            {"app1": {"cn": "app1", "dir": "/srv/app1/etcd", "user": "app1"}},
            {"cn": "app1", "dir": "/srv/app1/etcd", "user": "app1"},
        ),
    ],
)
def test_a_bundle_minion_gets_cn_dir_and_owner_from_pillar(given, app1):
    _, s = site(bundle_minions=given)
    specs = etcd_topology.bundle_specs(s)
    assert specs["app1"] == app1
    assert specs["etcd1"] == BUNDLE_DEFAULT  # members may hold one too
    assert etcd_topology.bundle_cns(s)["app1"] == app1["cn"]


@pytest.mark.parametrize(
    ("spec", "key", "says"),
    [
        ({"cn": "app 1"}, "tls:bundle_minions:app1:cn", "not a certificate CN"),
        ({"dir": "/etc"}, "tls:bundle_minions:app1:dir", "system directory"),
        ({"dir": "srv/app1"}, "tls:bundle_minions:app1:dir", "not an absolute path"),
        ({"dir": "/srv/../etc/x"}, "tls:bundle_minions:app1:dir", "not a normalised path"),
        ({"user": "Root;rm"}, "tls:bundle_minions:app1:user", "not a user name"),
        ({"owner": "app1"}, "tls:bundle_minions:app1:owner", "not a bundle setting"),
    ],
)
def test_a_bad_bundle_setting_is_named_with_its_fix(spec, key, says):
    pillar, s = site(bundle_minions={"app1": spec})
    errors = etcd_validate.validate(pillar, s, "etcd1", False)["errors"]
    found = [e for e in errors if e["key"] == "etcd:" + key]
    assert found and says in found[0]["message"] and found[0]["fix"], errors
