"""Execution functions for etcd-formula's TLS material: members, the CA minion, bundles.

Members make their private keys locally and send only public keys to the CA minion
(Salt's x509_v2 remote signing through the master's peer system). Nothing here returns
key material: only paths, serials, names and days left.
"""

import json
import logging
import os
import pwd
import time

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(
    etcd_client,
    etcd_keys,
    etcd_migration,
    etcd_names,
    etcd_node,
    etcd_policies,
    etcd_renamed,
    etcd_rotation,
    etcd_settings,
    etcd_tls,
    etcd_topology,
) = etcd_fresh.load(
    "etcd_client",
    "etcd_keys",
    "etcd_migration",
    "etcd_names",
    "etcd_node",
    "etcd_policies",
    "etcd_renamed",
    "etcd_rotation",
    "etcd_settings",
    "etcd_tls",
    "etcd_topology",
)

from salt.exceptions import CommandExecutionError  # noqa: E402

__virtualname__ = "etcd_tls"
log = logging.getLogger(__name__)

MINE_CA = "etcd_ca_certs"
KINDS = etcd_tls.KINDS
POLICY = etcd_policies.POLICY
POLICY_GRAIN = etcd_policies.GRAIN
CA_FILES = etcd_policies.CA_STEMS


def __virtual__():
    return __virtualname__


def _settings():
    return __salt__["etcd_cluster.live_settings"]()


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
    # From the site pillar only (address, fqdn, id, extra_sans): the CA pins the same SANs
    # in this member's policy, so a certificate names nothing the member merely claims.
    return etcd_topology.member_sans(s, __opts__["id"])


def plan(against_mine=False):
    """
    Which member certificates need (re)issuing and why, judged locally: missing, within
    ``etcd:tls:renew_days`` of expiry, SANs or usages no longer as the settings want, not
    matching the key, or not signed by the trusted CA. Empty lists mean nothing to do.
    ``against_mine``: judged against the CAs in the mine (what the next apply's trust
    step writes) instead of the trust files on disk, e.g. on a node that slept through a
    CA rotation.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_tls.plan
    """
    s = _settings()
    mined = trusted_cas() if against_mine else {}
    out = {}
    for kind, k in etcd_tls.kinds(s).items():
        out[kind] = etcd_tls.judge(
            etcd_settings.tls_path(s, k["cert"]),
            etcd_settings.tls_path(s, k["key"]),
            etcd_settings.tls_path(s, k["ca"]),
            _sans(s, kind),
            k["eku"],
            s["tls"]["renew_days"],
            ca_pem=mined.get(k["ca"]),
            # The CA minion pins it (an admin certificate of an earlier release says
            # etcd-admin-<id>, and is reissued once); files made elsewhere are the site's.
            subject=k["subject"] if s["tls"]["mode"] == "ca_minion" else None,
        )
    return out


def renew_due():
    """
    The scheduled renewal (the ``etcd-tls-renew`` job runs it on every member): when a
    certificate of this member is inside its renewal window (``etcd:tls:renew_days``),
    expired, or not valid yet (notBefore more than 5 minutes ahead of this node's clock),
    the certificates state runs alone (``state.single etcd_tls.certificates``, the same
    judgement, CA-rotation rule and swap an apply makes) and the event
    ``etcd/<cluster>/tls/renewed`` (serials, days left) or ``.../renew_failed`` goes to
    the master. Judged locally first: the CA minion is asked only when something is due.
    Nothing restarts (etcd reads its certificates per TLS connection). Other reasons to
    reissue (SANs, usages, a new CA) are left to the next apply.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_tls.renew_due
    """
    s = _settings()
    if not etcd_settings.tls_on(s) or s["tls"]["mode"] != "ca_minion":
        return {"result": True, "renewed": {}, "comment": "no certificates from a CA minion on this member"}
    due = {kind: reasons for kind, reasons in plan().items() if _timely(reasons)}
    if not due:
        return {
            "result": True,
            "renewed": {},
            "comment": f"nothing inside its renewal window ({s['tls']['renew_days']} days)",
        }
    got = __salt__["state.single"]("etcd_tls.certificates", "etcd")
    ran = next(iter(got.values()), None) if isinstance(got, dict) else None
    if not isinstance(ran, dict):  # a list of strings: e.g. an apply holds the state run lock
        out = {"result": False, "renewed": {}, "due": sorted(due), "comment": f"not run: {'; '.join(map(str, got))}"}
    else:
        issued = (ran.get("changes") or {}).get("issued") or {}
        out = {"result": bool(ran["result"]), "renewed": issued, "due": sorted(due), "comment": ran["comment"]}
    what = "renewed" if out["result"] else "renew_failed"
    __salt__["event.send"](f"etcd/{s['cluster']['name']}/tls/{what}", dict(out, member=__opts__["id"]))
    return out


def _checked_dir(directory):
    """A bundle directory from the command line or pillar, checked before it is used."""
    problem = etcd_names.path_problem(directory, True)
    if problem:
        raise CommandExecutionError(f"directory {directory!r} refused: {problem[0]} ({problem[1]})")


def _timely(reasons):
    """The reasons that time alone makes due (inside the window, expired, not valid yet):
    what a renewal job acts on. Others (SANs, usages, a new CA) wait for an apply."""
    timely = (etcd_tls.RENEWAL, etcd_tls.NOT_YET_VALID)
    return [r for r in reasons if any(t in r for t in timely)]


def bundle_spec():
    """
    This minion's client bundle as the site pillar pins it (``tls:bundle_minions``):
    CN, directory and owner; None when this minion may hold none.

    CLI Example:

    .. code-block:: bash

        salt k8s-master1 etcd_tls.bundle_spec
    """
    return etcd_topology.bundle_specs(_settings()).get(__opts__["id"])


def bundle_due(directory):
    """
    Why the client bundle in ``directory`` is due for renewal by time alone (inside
    ``tls:renew_days``, expired, not valid yet), judged locally: [] when it is not, or
    when there is no bundle there to renew.

    CLI Example:

    .. code-block:: bash

        salt k8s-master1 etcd_tls.bundle_due /etc/etcd-client
    """
    _checked_dir(directory)
    cert = os.path.join(directory, "etcd-client.crt")
    if not os.path.exists(cert):
        return []
    s = _settings()
    key, ca = os.path.join(directory, "etcd-client.key"), os.path.join(directory, "etcd-client-ca.crt")
    return _timely(etcd_tls.judge(cert, key, ca, None, ("clientAuth",), s["tls"]["renew_days"]))


def bundle_facts(directory):
    """
    The serial and days left of the client bundle's certificate in ``directory`` (never
    the key).

    CLI Example:

    .. code-block:: bash

        salt k8s-master1 etcd_tls.bundle_facts /etc/etcd-client
    """
    _checked_dir(directory)
    cert = etcd_tls.load_cert(os.path.join(directory, "etcd-client.crt"))
    facts = etcd_tls.facts(cert) if cert else {}
    return {"serial": facts.get("serial"), "days_left": facts.get("days_left")}


def renew_bundle():
    """
    The scheduled renewal of this minion's client bundle (the ``etcd-client-renew`` job
    that ``etcd.client`` installs): when the bundle in its pillar directory is inside
    ``tls:renew_days``, expired or not valid yet, a new certificate is issued for the same
    key in place (``client_bundle``) and ``etcd/<cluster>/tls/renewed`` (bundle, serial,
    days left) or ``.../renew_failed`` goes to the master. Judged locally first: the CA
    minion is asked only when something is due. Consumers that read the files per
    connection (etcd's clients do) need no restart.

    CLI Example:

    .. code-block:: bash

        salt k8s-master1 etcd_tls.renew_bundle
    """
    s = _settings()
    spec = etcd_topology.bundle_specs(s).get(__opts__["id"])
    if spec is None or not etcd_settings.tls_on(s) or s["tls"]["mode"] != "ca_minion":
        return {"result": True, "renewed": {}, "comment": "no client bundle from a CA minion for this minion"}
    due = bundle_due(spec["dir"])
    if not due:
        return {"result": True, "renewed": {}, "comment": f"{spec['dir']}: nothing inside its renewal window"}
    try:
        got = client_bundle(spec["dir"], cn=spec["cn"], user=spec["user"])
        out = {"result": True, "renewed": {"bundle": got["serial"]}, "days_left": got["days_left"]}
        out["comment"] = f"client bundle in {spec['dir']} renewed: {'; '.join(due)}"
    except Exception as exc:  # noqa: BLE001 (the job's only witness: a failure must reach the master)
        out = {"result": False, "renewed": {}, "comment": f"client bundle in {spec['dir']} not renewed: {exc}"}
    out.update(due=due, bundle=spec["dir"], minion=__opts__["id"])
    what = "renewed" if out["result"] else "renew_failed"
    __salt__["event.send"](f"etcd/{s['cluster']['name']}/tls/{what}", out)
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
    for what in etcd_tls.certs(s):
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
    Make this member's key for ``kind`` (server, peer, admin, gateway) if missing, and have the
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
    # What the policy pins wins (etcd_policies); the request says the same, for clarity.
    request = {"subject": k["subject"]} if k["subject"] else {"CN": __opts__["id"]}
    if sans:
        request["subjectAltName"] = etcd_tls.san_string(sans)
    _ask_ca_to_refresh(s)
    try:
        pem = __salt__["x509.create_certificate"](
            ca_server=s["tls"]["ca_minion"],
            signing_policy=etcd_policies.policy_name(kind, __opts__["id"]),
            private_key=key_path,
            **request,
        )
    except CommandExecutionError as exc:
        raise CommandExecutionError(_refusal_advice(s, kind, exc)) from None
    uid, gid = _ids(s, k["cert"])
    tmp = cert_path + ".new"
    etcd_tls.write_public(tmp, pem, uid, gid)
    problems = etcd_tls.judge(
        tmp, key_path, etcd_settings.tls_path(s, k["ca"]), sans, k["eku"], s["tls"]["renew_days"], subject=k["subject"]
    )
    fatal = [p for p in problems if etcd_tls.RENEWAL not in p]  # a short validity is the policy's call
    if fatal:
        os.unlink(tmp)
        raise CommandExecutionError(f"the CA returned an unusable {kind} certificate: {'; '.join(fatal)}")
    os.replace(tmp, cert_path)
    facts = etcd_tls.facts(etcd_tls.load_cert(cert_path))
    return {"kind": kind, "serial": facts["serial"], "days_left": facts["days_left"], "new_key": new_key}


def _ask_ca_to_refresh(s):
    """Have the CA minion recompute its signing policies from the master's pillar, once
    per job: a member added to pillar gets its policy without an ``etcd.ca`` apply first."""
    ca = s["tls"]["ca_minion"]
    if __context__.get("etcd_tls.ca_refreshed") is etcd_tls.CA_DOWN:
        raise CommandExecutionError(etcd_tls.ca_down_text(ca, etcd_tls.CA_TIMEOUT_S))
    if "etcd_tls.ca_refreshed" in __context__:
        return
    answer = None
    # The new name first; a master whose peer setting still allows only the old one (it
    # answers for one release: README, upgrade notes) is asked by that.
    for function in ("etcd_ca.refresh_policies", "etcd_tls.refresh_policies"):
        started = time.monotonic()
        answer = (__salt__["publish.publish"](ca, function, timeout=etcd_tls.CA_TIMEOUT_S) or {}).get(ca)
        if isinstance(answer, dict):
            break
        if etcd_tls.ca_down(answer, time.monotonic() - started, etcd_tls.CA_TIMEOUT_S):
            # Down, not refusing: asking again, or x509's own call, would wait as long again.
            __context__["etcd_tls.ca_refreshed"] = etcd_tls.CA_DOWN
            raise CommandExecutionError(etcd_tls.ca_down_text(ca, etcd_tls.CA_TIMEOUT_S))
    if not isinstance(answer, dict):
        # The CA's policies stay as its last refresh or etcd.ca; a refusal below says what to do.
        log.warning(
            "the CA minion %s did not refresh its signing policies: %s",
            ca,
            answer
            if isinstance(answer, str)
            else "no answer (allow etcd_ca.refresh_policies under the master's peer setting: README, "
            "Add the formula to your master)",
        )
    __context__["etcd_tls.ca_refreshed"] = answer


def _refusal_advice(s, kind, exc):
    ca, me = s["tls"]["ca_minion"], __opts__["id"]
    text = str(exc).replace("\n", " ")
    if "not permitted" in text or "must be specified and defined" in text:
        return (
            f"the CA minion {ca} has no {kind} signing policy for {me} ({text}). {ca} must get the same "
            f"site pillar as the members (check etcd:members:{me} in `salt {ca} pillar.get etcd:members`), "
            f"then run `salt {ca} state.apply etcd.ca` and apply here again"
        )
    return f"the CA minion {ca} did not sign {me}'s {kind} certificate: {text}"


def record():
    """
    This member's TLS record for rotations: the CAs its running etcd trusts (recorded
    when it started) and the CA that issued each of its certificates, by fingerprint.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_tls.record
    """
    return _record(_settings())


def _record(s):
    started = etcd_node.read_json(etcd_node.started_path(s))
    trusts = etcd_node.running_trust(started, etcd_node.wanted(s)) or {}
    issuers = {
        kind: etcd_tls.issuer_fingerprint(etcd_settings.tls_path(s, k["cert"]), etcd_settings.tls_path(s, k["ca"]))
        for kind, k in etcd_tls.kinds(s).items()
    }
    # Whether etcd runs with peer credentials: what turning TLS on for a running cluster
    # waits for on every member before any listens on https (etcd_migration).
    peer_tls = etcd_migration.stage_of((started or {}).get("flags")) != etcd_migration.HTTP
    return {"trusts": trusts, "issuers": issuers, "peer_tls": peer_tls}


def _cluster_client(s):
    return etcd_topology.client(s, __opts__["id"])


def records():
    """
    Every member's TLS record, as published in etcd, and the live member names.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_tls.records
    """
    s = _settings()
    return _records(s, _cluster_client(s))


def _records(s, client):
    raw = client.get_prefix(etcd_keys.tls_records(s["cluster"]["name"]))
    return {"members": etcd_rotation.member_names(client.member_list()), "records": etcd_rotation.parse_records(raw)}


def _reissue_refusal(s, client, current):
    got = _records(s, client)
    return etcd_rotation.reissue_refusal(got["records"], got["members"], current)


def publish_record():
    """
    Publish this member's record (``etcd_tls.record``) in etcd when it differs from what
    this member published last in this cluster (kept in the state dir). Returns whether
    it wrote.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_tls.publish_record
    """
    s = _settings()
    mine = _record(s)
    cache = os.path.join(s["paths"]["state"], "tls-record.json")
    published = {"cluster_id": __salt__["etcd_cluster.recorded_cluster_id"](), "record": mine}
    if etcd_node.read_json(cache) == published:  # as published last time, in this cluster: no request
        return False
    client = _cluster_client(s)
    key = etcd_keys.tls_record(s["cluster"]["name"], __opts__["id"])
    client.put(key, json.dumps(mine, sort_keys=True))
    etcd_node.write_json(cache, published)
    return True


def rotation():
    """
    Where a CA rotation stands, seen from this member: the CAs each trust file holds (the
    current first), and what blocks the next pass (taking certificates from the new CA;
    dropping the old one), from every member's record.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_tls.rotation
    """
    s = _settings()
    trust = {w: etcd_node.file_fingerprints(etcd_settings.tls_path(s, w)) for w in CA_FILES}
    got = records()
    current = {w: fps[0] for w, fps in trust.items() if fps}
    previous = sorted({fp for fps in trust.values() for fp in fps[1:]})
    return {
        "trust": trust,
        "in_progress": bool(previous),
        "reissue_blocked_by": etcd_rotation.reissue_refusal(got["records"], got["members"], current),
        "retire_blocked_by": etcd_rotation.removal_refusal(got["records"], got["members"], previous)
        if previous
        else None,
    }


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


def client_bundle(directory, cn=None, user="root"):
    """
    A client bundle for a consumer of the cluster (e.g. the storage operator), with the
    file names it expects: ``etcd-client-ca.crt``, ``etcd-client.crt`` and
    ``etcd-client.key``. The key is made here (mode 0600, owner ``user``) and never
    returned; the CA minion signs its public key (policy ``etcd_client``). An existing
    bundle is kept while its certificate has more than ``tls:renew_days`` left.

    CLI Example:

    .. code-block:: bash

        salt k8s-master1 etcd_tls.client_bundle /etc/etcd-client
    """
    _checked_dir(directory)
    s = _settings()
    me = __opts__["id"]
    pinned = etcd_topology.bundle_cns(s).get(me)
    if pinned is None:
        raise CommandExecutionError(
            f"{me} may not hold a client bundle: list it under etcd:tls:bundle_minions (then salt "
            f"{s['tls']['ca_minion']} state.apply etcd.ca)"
        )
    if cn is not None and cn != pinned:
        raise CommandExecutionError(
            f"cn={cn!r} refused: {me}'s client certificate is {pinned!r}, pinned by pillar "
            f"(etcd:tls:bundle_minions:{me}: {cn} to change it)"
        )
    cn = pinned
    try:
        pw = pwd.getpwnam(user)
    except KeyError:  # before anything is written
        raise CommandExecutionError(
            f"user {user!r} does not exist on {me}: create it, or set etcd:tls:bundle_minions:{me}:user"
        ) from None
    os.makedirs(directory, mode=0o755, exist_ok=True)
    ca_path = os.path.join(directory, "etcd-client-ca.crt")
    cert_path = os.path.join(directory, "etcd-client.crt")
    key_path = os.path.join(directory, "etcd-client.key")
    ca_pem = trusted_cas().get("client_ca")
    if not ca_pem:
        raise CommandExecutionError(f"no client CA in the mine from {s['tls']['ca_minion']}: apply etcd.ca there first")
    etcd_tls.write_public(ca_path, ca_pem, pw.pw_uid, pw.pw_gid)
    reasons = etcd_tls.judge(cert_path, key_path, ca_path, None, ("clientAuth",), s["tls"]["renew_days"])
    if reasons == [etcd_tls.PREVIOUS_CA]:
        # A CA rotation: the old certificate is still trusted; the new CA's only once
        # every member's running etcd trusts it (asked with this bundle's own certificate).
        urls, timeout = etcd_topology.client_urls(s), s["service"]["probe_timeout"]
        client = etcd_client.Client(urls, timeout, ca_path, cert_path, key_path)
        try:
            why = _reissue_refusal(s, client, {"client_ca": etcd_node.file_fingerprints(ca_path)[0]})
        except etcd_client.EtcdError as exc:
            why = f"cannot read the members' TLS records: {exc}"
        if why:
            reasons = [f"{etcd_tls.PREVIOUS_CA}, kept until the members trust the new CA: {why}"]
            return _bundle_facts(ca_path, cert_path, key_path, False, reasons)
    changed = bool(reasons)
    if reasons:
        if not os.path.exists(key_path):
            etcd_tls.make_key(key_path, s["tls"]["key_type"], pw.pw_uid, pw.pw_gid)
        _ask_ca_to_refresh(s)
        pem = __salt__["x509.create_certificate"](
            ca_server=s["tls"]["ca_minion"],
            signing_policy=etcd_policies.policy_name("client", me),
            private_key=key_path,
            CN=cn,
        )
        etcd_tls.write_public(cert_path, pem, pw.pw_uid, pw.pw_gid)
    return _bundle_facts(ca_path, cert_path, key_path, changed, reasons)


def _bundle_facts(ca_path, cert_path, key_path, changed, reasons):
    facts = etcd_tls.facts(etcd_tls.load_cert(cert_path))
    return {
        "changed": changed,
        "reasons": reasons,
        "files": {"ca": ca_path, "cert": cert_path, "key": key_path},
        "serial": facts["serial"],
        "days_left": facts["days_left"],
    }


# The CA minion's side moved to etcd_ca (issue 17); the old names answer for one release
# (a master's peer setting may still name etcd_tls.refresh_policies).
RENAMED = {f: f"etcd_ca.{f}" for f in ("ca_certs", "rotate_ca", "retire_ca", "signing_policies", "refresh_policies")}


etcd_renamed.aliases(globals(), __virtualname__, RENAMED)
