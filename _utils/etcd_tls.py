"""Keys and certificates on the node, with `cryptography` (a Salt dependency).

Private keys are made here, on the node that uses them, written with mode 0600 from the
first byte (never world-readable, not even briefly), and never returned: functions
return paths, serials, names and dates only. What a certificate must say is computed by
`etcd_settings`; this module reads certificates and judges them against that.
"""

import datetime
import hashlib
import ipaddress
import os
import re
import tempfile

import etcd_settings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The admin certificate's CN: etcdctl over gRPC is the etcd user its CN names, with auth
# on (etcd_auth.ADMIN_USER); one name on every member, so a member that joins needs no
# user of its own. The gateway certificate has no CN: with auth on, the JSON gateway
# refuses a client certificate that has one (the formula's calls log in instead).
ADMIN_CN = "root"
GATEWAY_SUBJECT = "O=etcd-formula"
# A member's certificates: their files (etcd_settings.TLS_FILES), the CA that must have
# signed each, its extended key usages, whether it names the member (SANs), and the
# subject the CA minion pins (None: the member's id as CN).
KINDS = {
    "server": {
        "cert": "server_cert",
        "key": "server_key",
        "ca": "client_ca",
        "eku": ("serverAuth", "clientAuth"),
        "sans": True,
        "subject": None,
    },
    "peer": {
        "cert": "peer_cert",
        "key": "peer_key",
        "ca": "peer_ca",
        "eku": ("serverAuth", "clientAuth"),
        "sans": True,
        "subject": None,
    },
    "admin": {
        "cert": "admin_cert",
        "key": "admin_key",
        "ca": "client_ca",
        "eku": ("clientAuth",),
        "sans": False,
        "subject": f"CN={ADMIN_CN}",
    },
    "gateway": {
        "cert": "gateway_cert",
        "key": "gateway_key",
        "ca": "client_ca",
        "eku": ("clientAuth",),
        "sans": False,
        "subject": GATEWAY_SUBJECT,
    },
}
# Kinds a member can do without (etcd_settings.OPTIONAL_FILES): the formula's own calls
# use the admin pair meanwhile (etcd_topology.client_tls), so a rotation may keep them waiting.
OPTIONAL_KINDS = tuple(kind for kind, k in KINDS.items() if k["cert"] in etcd_settings.OPTIONAL_FILES)
# Every certificate a member may hold, CAs included (what status and the health report
# show: those of them etcd_settings.tls_files names).
CERTS = ("client_ca", "peer_ca", "server_cert", "peer_cert", "admin_cert", "gateway_cert")


def kinds(settings):
    """{kind: KINDS[kind]} of the certificates this member holds (etcd_settings.tls_files)."""
    held = set(etcd_settings.tls_files(settings))
    return {kind: k for kind, k in KINDS.items() if k["cert"] in held}


def certs(settings):
    """The CERTS this member holds."""
    held = set(etcd_settings.tls_files(settings))
    return [what for what in CERTS if what in held]


EKU = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}


def write_private(path, data, uid=-1, gid=-1, mode=0o600):
    """Write `data` to `path` atomically; the temp file is 0600 before any byte lands."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_public(path, text, uid=-1, gid=-1, mode=0o644):
    write_private(path, text.encode() if isinstance(text, str) else text, uid, gid, mode)


def new_key(key_type="ec"):
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_key(path, key_type="ec", uid=-1, gid=-1):
    """Create a private key file (PKCS#8 PEM, 0600). Returns nothing about the key."""
    key = new_key(key_type)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(path, pem, uid, gid, 0o600)


def load_key(path):
    with open(path, "rb") as fh:
        return serialization.load_pem_private_key(fh.read(), password=None)


def load_cert(path):
    """The (first) certificate at `path`, or None when there is none or it does not parse."""
    certs = load_certs(path)
    return certs[0] if certs else None


PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def parse_certs(pem):
    """Every certificate in a PEM text (a trust bundle: the current CA first)."""
    data = pem.encode() if isinstance(pem, str) else pem or b""
    out = []
    for block in PEM_RE.findall(data):
        try:
            out.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            continue
    return out


def load_certs(path):
    try:
        with open(path, "rb") as fh:
            return parse_certs(fh.read())
    except OSError:
        return []


def fingerprint(cert):
    """A certificate's SHA-256 fingerprint (hex): how CAs are named in rotation records."""
    return cert.fingerprint(hashes.SHA256()).hex()


def issuer_fingerprint(cert_path, ca_bundle_path):
    """Which CA of the bundle issued the certificate at cert_path (fingerprint), or None."""
    cert = load_cert(cert_path)
    if cert is None:
        return None
    for ca in load_certs(ca_bundle_path):
        if issued_by(cert, ca):
            return fingerprint(ca)
    return None


def public_fingerprint(public_key):
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _now():
    return datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017  (Salt onedirs may run 3.10)


def facts(cert):
    """What matters about a certificate, without any key material."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = sorted(san.get_values_for_type(x509.DNSName))
        ips = sorted(str(i) for i in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        eku = sorted(name for name, oid in EKU.items() if oid in usages)
    except x509.ExtensionNotFound:
        eku = []
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    now = _now()
    return {
        "serial": f"{cert.serial_number:x}",
        "subject_cn": cn[0].value if cn else None,
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": (not_after - now).days,
        # Seconds until it becomes valid: peers and clients refuse it until then.
        "starts_in_s": max(0, int((not_before - now).total_seconds())),
        "not_yet_valid": (not_before - now).total_seconds() > CLOCK_SKEW_S,
        "dns": dns,
        "ip": ips,
        "eku": eku,
    }


def issued_by(cert, ca_cert):
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, Exception):  # InvalidSignature is not a ValueError
        return False
    return True


def judge(cert_path, key_path, ca_path, want_sans=None, want_eku=(), renew_days=30, ca_pem=None, subject=None):
    """Reasons to (re)issue a certificate; empty when it is fine. Local checks only.

    `ca_path` is a trust bundle, the current (signing) CA first: a certificate from a
    later CA in it (one being rotated out) gets the reason PREVIOUS_CA. `ca_pem`, when
    given, is that bundle's text instead of the file (what the next apply will write).
    `subject` (RFC 4514), when given, is what the certificate's subject must be."""
    cert = load_cert(cert_path)
    if cert is None:
        return ["no certificate yet"]
    reasons = []
    f = facts(cert)
    if f["days_left"] < 0:
        reasons.append(f"expired at {f['not_after']} ({RENEWAL} is {renew_days} days)")
    elif f["days_left"] < renew_days:
        reasons.append(f"{f['days_left']} days left, {RENEWAL} is {renew_days}")
    if f["not_yet_valid"]:
        reasons.append(f"{NOT_YET_VALID} until {f['not_before']}")
    if want_sans is not None:
        want_ip = sorted(str(ipaddress.ip_address(i)) for i in want_sans["ip"])
        if f["dns"] != sorted(want_sans["dns"]) or f["ip"] != want_ip:
            reasons.append(f"SANs {f['dns'] + f['ip']} differ from {sorted(want_sans['dns']) + want_ip}")
    reasons += _identity_reasons(cert, f, want_eku, subject)
    try:
        key = load_key(key_path)
        if public_fingerprint(key.public_key()) != public_fingerprint(cert.public_key()):
            reasons.append("certificate does not belong to the private key")
    except (OSError, ValueError):
        reasons.append("private key missing or unreadable")
    cas = parse_certs(ca_pem) if ca_pem else load_certs(ca_path)
    if cas and not issued_by(cert, cas[0]):
        if any(issued_by(cert, ca) for ca in cas[1:]):
            reasons.append(PREVIOUS_CA)
        else:
            reasons.append("not issued by the trusted CA")
    return reasons


def _identity_reasons(cert, f, want_eku, subject):
    """Who the certificate says its holder is, and what it may do: the subject (when one
    is pinned) and the extended key usages."""
    reasons = []
    if subject is not None and cert.subject.rfc4514_string() != subject:
        reasons.append(f"subject {cert.subject.rfc4514_string()!r} is not {subject!r}")
    missing = sorted(set(want_eku) - set(f["eku"]))
    if missing:
        reasons.append(f"extended key usage lacks {', '.join(missing)}")
    return reasons


# judge()'s words for a certificate inside its renewal window (the scheduled renewal's
# only trigger: etcd_tls.renew_due).
RENEWAL = "renewal threshold"


# judge()'s words for a certificate whose notBefore is ahead of this node's clock by more
# than CLOCK_SKEW_S (a CA with a clock ahead, a file made elsewhere): peers and clients
# refuse it, so it is reissued like one in its renewal window. A few seconds ahead is a
# CA minion's clock a little ahead of this one's, not a reason to ask again.
NOT_YET_VALID = "not valid yet"
CLOCK_SKEW_S = 300


# How long a member waits for the CA minion's answer through the master (publish). A CA
# that refuses (peer setting) answers at once; one that is down or not connected lets
# the whole wait run out, and then the member stops asking for the rest of its job.
CA_TIMEOUT_S = 30
CA_DOWN = "ca minion down"


def ca_down(answer, waited_s, timeout_s):
    """Whether the CA minion is down rather than refusing (pure): no answer at all, after
    the whole wait."""
    return not isinstance(answer, (dict, str)) and waited_s >= timeout_s - 1


def ca_down_text(ca, timeout_s):
    return (
        f"the CA minion {ca} did not answer within {timeout_s} s: it is down or not connected to the "
        f"master (salt-run manage.status). Nothing was issued; bring {ca} up and apply again"
    )


# judge()'s reason for a certificate from a CA that is being rotated out: still trusted,
# so its reissue waits until every member runs trusting the new CA (etcd_rotation).
PREVIOUS_CA = "issued by the previous CA (rotation)"


def san_string(sans):
    """x509_v2's subjectAltName syntax."""
    return ", ".join([f"DNS:{d}" for d in sans["dns"]] + [f"IP:{i}" for i in sans["ip"]])


def self_signed_ca(key_path, cert_path, common_name, days, uid=-1, gid=-1):
    """A CA certificate for the key at key_path (used on the CA minion only)."""
    key = load_key(key_path)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM), uid, gid, 0o644)
    return facts(cert)
