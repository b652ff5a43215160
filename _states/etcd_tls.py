"""States for etcd-formula's TLS: the CA on the CA minion, trust and certificates on members.

Re-runs decide locally (files, expiry, SANs, usages, key match, issuer) and only call the
CA minion when a certificate must be (re)issued. Returns name files and serials, never
key material.
"""

import os

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_client, etcd_node, etcd_rotation, etcd_settings, etcd_tls, etcd_topology) = etcd_fresh.load(
    "etcd_client", "etcd_node", "etcd_rotation", "etcd_settings", "etcd_tls", "etcd_topology"
)

__virtualname__ = "etcd_tls"

POLICY_GRAIN = "x509_signing_policies"  # x509_v2 reads it through config.get
MINE_CA = "etcd_ca_certs"
CA_NAMES = {"client_ca": "etcd client CA", "peer_ca": "etcd peer CA"}
ROTATION = (
    "the CA was replaced outright: members would stop trusting each other's certificates. "
    "Put the old CA back on the CA minion and rotate instead: salt <ca minion> etcd_tls.rotate_ca "
    "(README: TLS, CA rotation)"
)


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
          etcd_tls.ca_managed:
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
    policies = __salt__["etcd_tls.signing_policies"]()
    if __grains__.get(POLICY_GRAIN) != policies:
        changes["signing_policies"] = sorted(policies)
        if not test:
            __salt__["grains.setval"](POLICY_GRAIN, policies, refresh_pillar=False)
    # Members read the CA certificates from the mine: publish when it differs.
    current = None if (test and changes) else __salt__["etcd_tls.ca_certs"]()
    mined = (__salt__["mine.get"](__opts__["id"], MINE_CA) or {}).get(__opts__["id"])
    if current is None or mined != current:
        changes["mine"] = f"CA certificates published as {MINE_CA}"
        if not test:
            __salt__["mine.send"](MINE_CA, mine_function="etcd_tls.ca_certs")
    if test and changes:
        ret.update(result=None, comment="would update: " + ", ".join(changes), changes=changes)
        return ret
    ret["changes"] = changes
    ret["comment"] = (
        "updated: " + ", ".join(changes) if changes else "CA, policies and published certificates are current"
    )
    return ret


def _write_ca_files(s, cas, test):
    changed = {}
    for what in ("client_ca", "peer_ca"):
        path = etcd_settings.tls_path(s, what)
        want = cas.get(what)
        have = open(path).read() if os.path.exists(path) else None
        if have != want:
            changed[what] = path
            if not test:
                etcd_tls.write_public(path, want)
    return changed


def _etcd_runs(s):
    return etcd_node.unit_active(s["service"]["name"]) and etcd_node.has_data(s["paths"]["data"])


def trusted(name):
    """
    On a member: the CA certificates it trusts (client CA for the client port, peer CA
    for the peer port), as the CA minion published them to the mine; during a CA
    rotation each is a bundle, the new CA first. etcd reads trust files only when it
    starts: a change here is followed by a guarded restart (``etcd_cluster.running``).
    Adding a CA is always safe. Dropping one while etcd runs waits until no member holds
    a certificate from it (every member's record in etcd); a CA replaced outright,
    without a rotation, is refused with the procedure.

    .. code-block:: yaml

        etcd-tls-trust:
          etcd_tls.trusted:
            - name: etcd
    """
    ret = _ret(name)
    s = __salt__["etcd_cluster.settings"]()
    cas = __salt__["etcd_tls.trusted_cas"]()
    missing = [w for w in ("client_ca", "peer_ca") if not cas.get(w)]
    if missing:
        ret.update(
            result=False,
            comment=f"no {', '.join(missing)} in the mine from {s['tls']['ca_minion']}: "
            f"apply etcd.ca on {s['tls']['ca_minion']} first (README: TLS)",
        )
        return ret
    would = _write_ca_files(s, cas, test=True)
    refusal = _trust_change_refusal(s, cas) if would and _etcd_runs(s) else None
    if refusal:
        ret.update(result=False, comment=f"not changing {', '.join(would.values())}: {refusal}")
        return ret
    if __opts__["test"] and would:
        ret.update(result=None, comment=f"would write {', '.join(would.values())}", changes={"written": would})
        return ret
    os.makedirs(s["tls"]["dir"], mode=0o755, exist_ok=True)
    written = _write_ca_files(s, cas, test=False)
    if written:
        ret["changes"] = {"written": written}
    ret["comment"] = "trusted CAs written" if written else "trusted CAs are current"
    if written and _etcd_runs(s):
        ret["comment"] += ": etcd trusts them after its guarded restart (etcd_cluster.running)"
    return ret


def _trust_change_refusal(s, cas):
    """Why the running member must not take the mine's trust now, or None."""
    old = {w: etcd_node.file_fingerprints(etcd_settings.tls_path(s, w)) for w in ("client_ca", "peer_ca")}
    new = {w: etcd_node.pem_fingerprints(cas[w]) for w in ("client_ca", "peer_ca")}
    change = etcd_rotation.trust_change(old, new)
    if any(c["added"] and c["removed"] for c in change.values()):
        return ROTATION
    removed = [fp for c in change.values() for fp in c["removed"]]
    if not removed:
        return None
    try:
        got = __salt__["etcd_tls.records"]()
    except etcd_client.EtcdError as exc:
        return f"cannot read the members' TLS records to drop the old CA: {exc}"
    return etcd_rotation.removal_refusal(got["records"], got["members"], removed)


def certificates(name):
    """
    On a member: the server, peer and admin client certificates, (re)issued only when the
    local checks say so (missing, within ``tls:renew_days`` of expiry, SANs or usages no
    longer as wanted, not matching the key, not from the trusted CA). Keys are made here
    and stay here. A running etcd picks up renewed server and peer certificates on its
    next TLS handshake: nothing restarts.

    .. code-block:: yaml

        etcd-tls-certificates:
          etcd_tls.certificates:
            - name: etcd
    """
    ret = _ret(name)
    # A dry run writes no trust files: judge against the CAs the apply would write.
    plan = {k: v for k, v in __salt__["etcd_tls.plan"](against_mine=__opts__["test"]).items() if v}
    if not plan:
        ret["comment"] = "certificates are current"
        return ret
    waiting = _rotation_wait(__salt__["etcd_cluster.settings"](), plan)
    if waiting:
        plan = {k: v for k, v in plan.items() if k not in waiting["kinds"]}
        ret["comment"] = f"{', '.join(waiting['kinds'])} wait for the new CA: {waiting['why']}"
        if not plan:
            return ret
    if __opts__["test"]:
        ret.update(
            result=None,
            comment="would issue " + "; ".join(f"{k} ({', '.join(v)})" for k, v in plan.items()),
            changes={"would_issue": sorted(plan)},
        )
        return ret
    issued, errors = {}, []
    for kind, reasons in plan.items():
        try:
            got = __salt__["etcd_tls.issue"](kind)
        except Exception as exc:  # noqa: BLE001  (the CA minion's answer, reported as is)
            errors.append(f"{kind}: {exc}")
            continue
        issued[kind] = {"serial": got["serial"], "days_left": got["days_left"], "why": reasons}
    if issued:
        ret["changes"] = {"issued": issued}
    if errors:
        ret.update(result=False, comment="could not issue " + "; ".join(errors))
    else:
        ret["comment"] = "; ".join(filter(None, ["issued " + ", ".join(sorted(issued)), ret["comment"]]))
    return ret


def _rotation_wait(s, plan):
    """During a CA rotation (a trust file holds more than the current CA), certificates
    come from the new CA only once every member's running etcd trusts it: else
    {kinds, why} of those that must wait."""
    current, kinds = {}, []
    for kind in plan:
        what = etcd_tls.KINDS[kind]["ca"]
        fps = etcd_node.file_fingerprints(etcd_settings.tls_path(s, what))
        if len(fps) > 1:
            current[what] = fps[0]
            kinds.append(kind)
    if not kinds:
        return None
    try:
        got = __salt__["etcd_tls.records"]()
    except etcd_client.EtcdError as exc:
        return {"kinds": kinds, "why": f"cannot read the members' TLS records: {exc}"}
    why = etcd_rotation.reissue_refusal(got["records"], got["members"], current)
    return {"kinds": kinds, "why": why} if why else None


def files_installed(name):
    """
    Mode ``files``: certificates and keys made elsewhere, given as paths on the node in
    ``tls:files``. They are copied into ``tls:dir`` with the formula's owners and modes,
    and checked (key match, issuer, SANs, usages, expiry) before etcd ever reads them.

    .. code-block:: yaml

        etcd-tls-files:
          etcd_tls.files_installed:
            - name: etcd
    """
    ret = _ret(name)
    s = __salt__["etcd_cluster.settings"]()
    src = s["tls"]["files"]
    missing = [f"{w}: {p}" for w, p in src.items() if not os.path.isfile(p)]
    if missing:
        ret.update(result=False, comment="missing TLS files (etcd:tls:files): " + "; ".join(missing))
        return ret
    problems = []
    me = __opts__["id"]
    for kind, k in etcd_tls.KINDS.items():
        want = etcd_topology.member_sans(s, me) if k["sans"] else None
        found = etcd_tls.judge(src[k["cert"]], src[k["key"]], src[k["ca"]], want, k["eku"], 0)
        problems += [f"{kind} ({src[k['cert']]}): {p}" for p in found]
    if problems:
        ret.update(result=False, comment="refusing TLS files: " + "; ".join(problems))
        return ret
    if not __opts__["test"]:  # a dry run creates nothing
        os.makedirs(s["tls"]["dir"], mode=0o755, exist_ok=True)
    copied = {}
    for what, (_fname, owner, mode) in etcd_settings.TLS_FILES.items():
        dst = etcd_settings.tls_path(s, what)
        with open(src[what], "rb") as fh:
            data = fh.read()
        current = open(dst, "rb").read() if os.path.exists(dst) else None
        user = s["user"] if owner == "etcd" else owner
        if current == data and _owner_mode(dst) == (user, mode):
            continue
        copied[what] = dst
        if not __opts__["test"]:
            uid, gid = __salt__["file.user_to_uid"](user), __salt__["file.group_to_gid"](user)
            etcd_tls.write_private(dst, data, uid, gid, mode)
    if __opts__["test"] and copied:
        ret.update(result=None, comment=f"would install {', '.join(copied.values())}", changes={"installed": copied})
        return ret
    if copied:
        ret["changes"] = {"installed": copied}
    ret["comment"] = "TLS files installed" if copied else "TLS files are current"
    return ret


def _owner_mode(path):
    import pwd

    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, st.st_mode & 0o777
