"""States for etcd-formula's TLS: the CA on the CA minion, trust and certificates on members.

Re-runs decide locally (files, expiry, SANs, usages, key match, issuer) and only call the
CA minion when a certificate must be (re)issued. Returns name files and serials, never
key material.
"""

import os

import etcd_fresh
from salt.exceptions import CommandExecutionError

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
    "Put the old CA back on the CA minion and rotate instead: salt <ca minion> etcd_ca.rotate_ca "
    "(README: TLS, CA rotation)"
)


def __virtual__():
    return __virtualname__


def _ret(name):
    return {"name": name, "result": True, "changes": {}, "comment": ""}


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
    s = __salt__["etcd_cluster.live_settings"]()
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
    waiting = _rotation_wait(__salt__["etcd_cluster.live_settings"](), plan)
    if waiting:
        lacking = [k for k in waiting["kinds"] if "no certificate yet" in plan[k] and k not in etcd_tls.OPTIONAL_KINDS]
        plan = {k: v for k, v in plan.items() if k not in waiting["kinds"]}
        ret["comment"] = f"{', '.join(waiting['kinds'])} wait for the new CA: {waiting['why']}"
        if lacking:
            # A renewal may wait, the old certificate serves meanwhile; a node with none
            # cannot start, and must not look converged (it would fail later, obscurely).
            ret.update(
                result=False,
                comment=f"no {', '.join(lacking)} certificate on this node, and none can be issued during the CA "
                f"rotation: {waiting['why']}. Finish the rotation first (README: CA rotation), then apply here",
            )
            return ret
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
    s = __salt__["etcd_cluster.live_settings"]()
    src = s["tls"]["files"]
    missing = [f"{w}: {p}" for w, p in src.items() if not os.path.isfile(p)]
    if missing:
        ret.update(result=False, comment="missing TLS files (etcd:tls:files): " + "; ".join(missing))
        return ret
    problems = []
    me = __opts__["id"]
    for kind, k in etcd_tls.kinds(s).items():
        want = etcd_topology.member_sans(s, me) if k["sans"] else None
        found = etcd_tls.judge(src[k["cert"]], src[k["key"]], src[k["ca"]], want, k["eku"], 0)
        problems += [f"{kind} ({src[k['cert']]}): {p}" for p in found]
    if problems:
        ret.update(result=False, comment="refusing TLS files: " + "; ".join(problems))
        return ret
    if not __opts__["test"]:  # a dry run creates nothing
        os.makedirs(s["tls"]["dir"], mode=0o755, exist_ok=True)
    copied = {}
    for what in etcd_settings.tls_files(s):
        _fname, owner, mode = etcd_settings.TLS_FILES[what]
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


def bundle(name):
    """
    This minion's client bundle (``etcd-client-ca.crt``, ``etcd-client.crt``,
    ``etcd-client.key``) in directory ``name``, with the CN and owner the site pillar
    pins for it (``tls:bundle_minions``): made when missing, reissued when its
    certificate is due (``etcd_tls.client_bundle``), otherwise left alone. The key never
    appears in the return.

    .. code-block:: yaml

        etcd-client-bundle:
          etcd_tls.bundle:
            - name: /etc/etcd-client
    """
    ret = _ret(name)
    report = __salt__["etcd_cluster.validate"](member=False)
    if not report["valid"]:  # a bad cn, dir or user: refused before anything is written
        errors = "; ".join(f"{e['key']}: {e['message']} ({e['fix']})" for e in report["errors"])
        ret.update(result=False, comment=f"invalid pillar, nothing written: {errors}")
        return ret
    spec = __salt__["etcd_tls.bundle_spec"]()
    if spec is None:
        s = __salt__["etcd_cluster.settings"]()
        ret.update(
            result=False,
            comment=f"{__opts__['id']} may not hold a client bundle: list it under etcd:tls:bundle_minions "
            f"(then salt {s['tls']['ca_minion']} state.apply etcd.ca)",
        )
        return ret
    if __opts__["test"]:
        exists = os.path.exists(os.path.join(name, "etcd-client.crt"))
        due = __salt__["etcd_tls.bundle_due"](name) if exists else ["no bundle yet"]
        if due:
            ret.update(result=None, comment=f"would issue the client bundle in {name} ({spec['cn']}): {'; '.join(due)}")
        else:
            ret["comment"] = f"the client bundle in {name} is current"
        return ret
    try:
        got = __salt__["etcd_tls.client_bundle"](name, cn=spec["cn"], user=spec["user"])
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    if got["changed"]:
        ret["changes"] = {"issued": {"serial": got["serial"], "days_left": got["days_left"]}, "why": got["reasons"]}
        ret["comment"] = f"client bundle issued in {name} for {spec['cn']}"
    else:
        ret["comment"] = f"the client bundle in {name} is current ({got['days_left']} days left)"
    return ret
