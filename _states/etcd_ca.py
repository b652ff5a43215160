"""The CA minion's state: its two CAs, the signing policies, the CA certificates in the mine."""

import os

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_tls,) = etcd_fresh.load("etcd_tls")

__virtualname__ = "etcd_ca"

POLICY_GRAIN = "x509_signing_policies"  # x509_v2 reads it through config.get
MINE_CA = "etcd_ca_certs"
CA_NAMES = {"client_ca": "etcd client CA", "peer_ca": "etcd peer CA"}


def __virtual__():
    return __virtualname__


def _ret(name):
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def ca_managed(name):  # noqa: PLR0912 (each CA: made, kept, or refused; read as one list)
    """
    On the CA minion: the client CA and the peer CA (keys 0600 in ``tls:ca_dir``, made
    here unless ``tls:generate_ca`` is false, then the operator's files are checked), the
    signing policies (a grain x509_v2 reads), and the CA certificates in the mine.

    .. code-block:: yaml

        etcd-ca:
          etcd_ca.ca_managed:
            - name: etcd
    """
    ret = _ret(name)
    s = __salt__["etcd_cluster.settings"]()
    t = s["tls"]
    if __opts__["id"] in s["members"]:
        ret.update(result=False, comment=f"{__opts__['id']} is an etcd member: the CA key must not live on a member")
        return ret
    test = __opts__["test"]
    changes = {}
    if t["generate_ca"] and not os.path.isdir(t["ca_dir"]) and not test:
        os.makedirs(t["ca_dir"], mode=0o700)
    for what, stem in (("client_ca", "client-ca"), ("peer_ca", "peer-ca")):
        key = os.path.join(t["ca_dir"], f"{stem}.key")
        crt = os.path.join(t["ca_dir"], f"{stem}.crt")
        cert = etcd_tls.load_cert(crt)
        have_key = os.path.exists(key)
        if not t["generate_ca"]:
            if not have_key or cert is None:
                ret.update(
                    result=False,
                    comment=f"tls:generate_ca is false but {key if not have_key else crt} is missing: "
                    f"put your CA's key and certificate there (mode 0600 for the key)",
                )
                return ret
            if os.stat(key).st_mode & 0o077:
                ret.update(result=False, comment=f"{key} is readable by others: chmod 600 {key} (a CA key)")
                return ret
            continue
        fine = have_key and cert is not None and not etcd_tls.judge(crt, key, crt, None, (), 30)
        if fine:
            continue
        changes[what] = f"new {CA_NAMES[what]} in {crt}"
        if not test:
            if not have_key:
                etcd_tls.make_key(key, t["key_type"])
            etcd_tls.self_signed_ca(key, crt, f"{CA_NAMES[what]} ({s['cluster']['name']})", t["ca_days_valid"])
    policies = __salt__["etcd_ca.signing_policies"]()
    if __grains__.get(POLICY_GRAIN) != policies:
        changes["signing_policies"] = sorted(policies)
        if not test:
            __salt__["grains.setval"](POLICY_GRAIN, policies, refresh_pillar=False)
    # Members read the CA certificates from the mine: publish when it differs.
    current = None if (test and changes) else __salt__["etcd_ca.ca_certs"]()
    mined = (__salt__["mine.get"](__opts__["id"], MINE_CA) or {}).get(__opts__["id"])
    if current is None or mined != current:
        changes["mine"] = f"CA certificates published as {MINE_CA}"
        if not test:
            __salt__["mine.send"](MINE_CA, mine_function="etcd_ca.ca_certs")
    if test and changes:
        ret.update(result=None, comment="would update: " + ", ".join(changes), changes=changes)
        return ret
    ret["changes"] = changes
    ret["comment"] = (
        "updated: " + ", ".join(changes) if changes else "CA, policies and published certificates are current"
    )
    return ret
