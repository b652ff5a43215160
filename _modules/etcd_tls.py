"""Execution functions for etcd-formula's TLS material: members, the CA minion, bundles.

Members make their private keys locally and send only public keys to the CA minion
(Salt's x509_v2 remote signing through the master's peer system). Nothing here returns
key material: only paths, serials, names and days left.
"""

import os
import pwd
import sys

for _name in ("etcd_settings", "etcd_releases", "etcd_tls"):
    sys.modules.pop(_name, None)

import etcd_settings  # noqa: E402
import etcd_tls  # noqa: E402

__virtualname__ = "etcd_tls"

MINE_CA = "etcd_ca_certs"
KINDS = etcd_tls.KINDS
POLICY = {"server": "etcd_server", "peer": "etcd_peer", "admin": "etcd_admin", "client": "etcd_client"}
CA_FILES = {"client_ca": "client-ca", "peer_ca": "peer-ca"}


def __virtual__():
    return __virtualname__


def _settings():
    return __salt__["etcd_cluster.settings"]()


def _ids(s, what):
    owner = etcd_settings.TLS_FILES[what][1]
    user = s["user"] if owner == "etcd" else owner
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return -1, -1
    return pw.pw_uid, pw.pw_gid


def _sans(s, kind):
    if not KINDS[kind]["sans"]:
        return None
    return etcd_settings.member_sans(s, __opts__["id"], __grains__.get("host"))


def plan():
    """
    Which member certificates need (re)issuing and why, judged locally: missing, within
    ``etcd:tls:renew_days`` of expiry, SANs or usages no longer as the settings want, not
    matching the key, or not signed by the trusted CA. Empty lists mean nothing to do.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_tls.plan
    """
    s = _settings()
    out = {}
    for kind, k in KINDS.items():
        out[kind] = etcd_tls.judge(
            etcd_settings.tls_path(s, k["cert"]),
            etcd_settings.tls_path(s, k["key"]),
            etcd_settings.tls_path(s, k["ca"]),
            _sans(s, kind),
            k["eku"],
            s["tls"]["renew_days"],
        )
    return out


def status():
    """
    Every certificate of this member with its serial, subject, SANs and days left.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_tls.status
    """
    s = _settings()
    out = {}
    for what in etcd_tls.CERTS:
        path = etcd_settings.tls_path(s, what)
        cert = etcd_tls.load_cert(path)
        out[path] = etcd_tls.facts(cert) if cert else {"days_left": None, "missing": True}
    return out


def _ensure_key(s, what):
    path = etcd_settings.tls_path(s, what)
    if os.path.exists(path):
        return False
    uid, gid = _ids(s, what)
    etcd_tls.make_key(path, s["tls"]["key_type"], uid, gid)
    return True


def issue(kind):
    """
    Make this member's key for ``kind`` (server, peer, admin) if missing, and have the
    CA minion sign its public key (x509_v2, ``ca_server``). Returns the new certificate's
    serial and days left; the key never leaves the node.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_tls.issue server
    """
    s = _settings()
    k = KINDS[kind]
    key_path = etcd_settings.tls_path(s, k["key"])
    cert_path = etcd_settings.tls_path(s, k["cert"])
    new_key = _ensure_key(s, k["key"])
    sans = _sans(s, kind)
    request = {"CN": f"etcd-admin-{__opts__['id']}" if kind == "admin" else __opts__["id"]}
    if sans:
        request["subjectAltName"] = etcd_tls.san_string(sans)
    pem = __salt__["x509.create_certificate"](
        ca_server=s["tls"]["ca_minion"], signing_policy=POLICY[kind], private_key=key_path, **request
    )
    uid, gid = _ids(s, k["cert"])
    tmp = cert_path + ".new"
    etcd_tls.write_public(tmp, pem, uid, gid)
    problems = etcd_tls.judge(tmp, key_path, etcd_settings.tls_path(s, k["ca"]), sans, k["eku"], s["tls"]["renew_days"])
    fatal = [p for p in problems if "days left" not in p]  # a short validity is the policy's call
    if fatal:
        os.unlink(tmp)
        raise RuntimeError(f"the CA returned an unusable {kind} certificate: {'; '.join(fatal)}")
    os.replace(tmp, cert_path)
    facts = etcd_tls.facts(etcd_tls.load_cert(cert_path))
    return {"kind": kind, "serial": facts["serial"], "days_left": facts["days_left"], "new_key": new_key}


def ca_certs():
    """
    On the CA minion: the public CA certificates (client CA, peer CA), as PEM text. The
    formula publishes this to the mine, where members read it.

    CLI Example:

    .. code-block:: bash

        salt ca1 etcd_tls.ca_certs
    """
    s = _settings()
    out = {}
    for what, stem in CA_FILES.items():
        path = os.path.join(s["tls"]["ca_dir"], f"{stem}.crt")
        try:
            with open(path, encoding="ascii") as fh:
                out[what] = fh.read()
        except OSError:
            out[what] = None
    return out


def trusted_cas():
    """
    The CA certificates members should trust, from the mine (published by the CA minion).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_tls.trusted_cas
    """
    s = _settings()
    ca = s["tls"]["ca_minion"]
    mined = __salt__["mine.get"](ca, MINE_CA) or {}
    return mined.get(ca) or {}


def signing_policies():
    """
    On the CA minion: the x509_v2 signing policies for this site, one per use. Each pins
    the signing CA, basic constraints, key and extended key usages, the validity, and the
    minions allowed to ask (the members; for client bundles also ``tls:bundle_minions``).

    CLI Example:

    .. code-block:: bash

        salt ca1 etcd_tls.signing_policies
    """
    s = _settings()
    t = s["tls"]
    members = sorted(s["members"])
    base = {
        "basicConstraints": "critical, CA:false",
        "keyUsage": "critical, digitalSignature, keyEncipherment",
        "days_valid": t["days_valid"],
    }

    def policy(ca, eku, minions):
        return dict(
            base,
            signing_private_key=os.path.join(t["ca_dir"], f"{CA_FILES[ca]}.key"),
            signing_cert=os.path.join(t["ca_dir"], f"{CA_FILES[ca]}.crt"),
            extendedKeyUsage=eku,
            minions="L@" + ",".join(minions),
        )

    return {
        "etcd_server": policy("client_ca", "serverAuth, clientAuth", members),
        "etcd_peer": policy("peer_ca", "serverAuth, clientAuth", members),
        "etcd_admin": policy("client_ca", "clientAuth", members),
        "etcd_client": policy("client_ca", "clientAuth", sorted(set(members) | set(t["bundle_minions"]))),
    }


def client_bundle(directory, cn="etcd-client", user="root"):
    """
    A client bundle for a consumer of the cluster (e.g. the storage operator), with the
    file names it expects: ``etcd-client-ca.crt``, ``etcd-client.crt`` and
    ``etcd-client.key``. The key is made here (mode 0600, owner ``user``) and never
    returned; the CA minion signs its public key (policy ``etcd_client``). An existing
    bundle is kept while its certificate has more than ``tls:renew_days`` left.

    CLI Example:

    .. code-block:: bash

        salt k8s-master1 etcd_tls.client_bundle /etc/etcd-client cn=storageos
    """
    s = _settings()
    os.makedirs(directory, mode=0o755, exist_ok=True)
    pw = pwd.getpwnam(user)
    ca_path = os.path.join(directory, "etcd-client-ca.crt")
    cert_path = os.path.join(directory, "etcd-client.crt")
    key_path = os.path.join(directory, "etcd-client.key")
    ca_pem = trusted_cas().get("client_ca")
    if not ca_pem:
        raise RuntimeError(f"no client CA in the mine from {s['tls']['ca_minion']}: apply etcd.ca there first")
    etcd_tls.write_public(ca_path, ca_pem, pw.pw_uid, pw.pw_gid)
    reasons = etcd_tls.judge(cert_path, key_path, ca_path, None, ("clientAuth",), s["tls"]["renew_days"])
    changed = bool(reasons)
    if reasons:
        if not os.path.exists(key_path):
            etcd_tls.make_key(key_path, s["tls"]["key_type"], pw.pw_uid, pw.pw_gid)
        pem = __salt__["x509.create_certificate"](
            ca_server=s["tls"]["ca_minion"], signing_policy=POLICY["client"], private_key=key_path, CN=cn
        )
        etcd_tls.write_public(cert_path, pem, pw.pw_uid, pw.pw_gid)
    facts = etcd_tls.facts(etcd_tls.load_cert(cert_path))
    return {
        "changed": changed,
        "reasons": reasons,
        "files": {"ca": ca_path, "cert": cert_path, "key": key_path},
        "serial": facts["serial"],
        "days_left": facts["days_left"],
    }
