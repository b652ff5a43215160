"""The CA minion's side of TLS: its CA certificates for the mine, CA rotation and
retirement, and the x509_v2 signing policies computed from the site pillar. The member's
side (trust, certificates, records) is etcd_tls.
"""

import logging
import os
import time

import etcd_fresh
from salt.exceptions import CommandExecutionError

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_actions, etcd_policies, etcd_settings, etcd_tls) = etcd_fresh.load(
    "etcd_actions", "etcd_policies", "etcd_settings", "etcd_tls"
)

__virtualname__ = "etcd_ca"
log = logging.getLogger(__name__)

MINE_CA = "etcd_ca_certs"
POLICY_GRAIN = etcd_policies.GRAIN
CA_FILES = etcd_policies.CA_STEMS


def __virtual__():
    return __virtualname__


def _settings():
    return __salt__["etcd_cluster.settings"]()


def _ca_file(s, what, generation=""):
    return os.path.join(s["tls"]["ca_dir"], f"{CA_FILES[what]}{generation}")


def ca_certs():
    """
    On the CA minion: the CA certificates members trust (client CA, peer CA), as PEM
    text; during a rotation each is a bundle, the new (signing) CA first, then the one
    being rotated out. The formula publishes this to the mine, where members read it.

    CLI Example:

    .. code-block:: bash

        salt ca1 etcd_ca.ca_certs
    """
    s = _settings()
    out = {}
    for what in CA_FILES:
        texts = []
        for generation in ("", ".previous"):
            try:
                with open(_ca_file(s, what, generation) + ".crt", encoding="ascii") as fh:
                    texts.append(fh.read())
            except OSError:
                continue
        out[what] = "".join(texts) if texts else None
    return out


def _which(which):
    chosen = list(CA_FILES) if which in ("both", None) else [which]
    unknown = [w for w in chosen if w not in CA_FILES]
    if unknown:
        raise CommandExecutionError(f"which={which!r}: use both, client_ca or peer_ca")
    return chosen


def rotate_ca(which="both", cert=None, key=None):
    """
    On the CA minion: start a CA rotation. The current CA (``which``: both, client_ca or
    peer_ca) becomes the previous one, still trusted; a new CA signs from now on: made
    here, or, with ``tls:generate_ca: false``, the operator's (``cert`` and ``key``:
    paths on the CA minion). Members then trust both, take new certificates once all
    trust the new CA, and keep trusting the old one until ``etcd_ca.retire_ca``
    (README: TLS, CA rotation; ``etcd.orch.rotate_ca`` drives the passes). Refused
    while an earlier rotation is not retired. Returns fingerprints, never key material.

    CLI Example:

    .. code-block:: bash

        salt ca1 etcd_ca.rotate_ca
        salt ca1 etcd_ca.rotate_ca peer_ca
    """
    s = _settings()
    t = s["tls"]
    chosen = _which(which)
    if not t["generate_ca"] and not (cert and key):
        raise CommandExecutionError("tls:generate_ca is false: give the new CA as cert=<path> key=<path>")
    for what in chosen:
        if os.path.exists(_ca_file(s, what, ".previous") + ".crt"):
            raise CommandExecutionError(f"a rotation of the {what} is not finished: run etcd_ca.retire_ca first")
        if etcd_tls.load_cert(_ca_file(s, what) + ".crt") is None:
            raise CommandExecutionError(f"no {what} to rotate in {t['ca_dir']}: apply etcd.ca first")
    if cert and key and len(chosen) != 1:
        raise CommandExecutionError("an operator's CA replaces one CA at a time: which=client_ca or which=peer_ca")
    out = {}
    stamp = time.strftime("%Y-%m-%dT%H%M")
    for what in chosen:
        base = _ca_file(s, what)
        previous = etcd_tls.load_cert(base + ".crt")
        for ext in (".crt", ".key"):
            os.replace(base + ext, _ca_file(s, what, ".previous") + ext)
        if cert and key:
            with open(key, "rb") as fh:
                etcd_tls.write_private(base + ".key", fh.read())
            with open(cert, "rb") as fh:
                etcd_tls.write_public(base + ".crt", fh.read())
        else:
            etcd_tls.make_key(base + ".key", t["key_type"])
            name = f"etcd {what.replace('_ca', '')} CA ({s['cluster']['name']}) {stamp}"  # no comma: RFC 4514
            etcd_tls.self_signed_ca(base + ".key", base + ".crt", name, t["ca_days_valid"])
        new = etcd_tls.load_cert(base + ".crt")
        out[what] = {
            "new": etcd_tls.fingerprint(new),
            "new_subject": etcd_tls.facts(new)["subject_cn"],
            "previous": etcd_tls.fingerprint(previous),
        }
    __salt__["mine.send"](MINE_CA, mine_function="etcd_ca.ca_certs")
    return etcd_actions.outcome(
        __context__, True, f"new {', '.join(out)}: sign from now on, the previous stay trusted until retire_ca", out
    )


def retire_ca(which="both"):
    """
    On the CA minion: finish a CA rotation. The previous CA is no longer published, so
    members stop trusting it on their next apply (a guarded restart each), which they
    refuse while any member still holds a certificate from it. Reissue the client
    bundles of other consumers (``etcd.kubernetes``) before this. The previous key is
    deleted.

    CLI Example:

    .. code-block:: bash

        salt ca1 etcd_ca.retire_ca
    """
    s = _settings()
    out = {}
    for what in _which(which):
        crt = _ca_file(s, what, ".previous") + ".crt"
        previous = etcd_tls.load_cert(crt)
        if previous is None:
            continue
        out[what] = {"retired": etcd_tls.fingerprint(previous)}
        os.unlink(crt)
        if os.path.exists(_ca_file(s, what, ".previous") + ".key"):
            os.unlink(_ca_file(s, what, ".previous") + ".key")
    if out:
        __salt__["mine.send"](MINE_CA, mine_function="etcd_ca.ca_certs")
    comment = f"retired the previous {', '.join(out)}" if out else "no previous CA to retire"
    return etcd_actions.outcome(__context__, True, comment, out)


def signing_policies():
    """
    On the CA minion: the x509_v2 signing policies for this site. Each member has its own
    server, peer and admin policy (``etcd_server:<id>`` ...), usable by that minion only,
    with its CN and SANs pinned from the site pillar, so a member cannot obtain a
    certificate naming another member. ``etcd_client`` is for client bundles (members and
    ``tls:bundle_minions``). Each pins the signing CA, basic constraints, key and extended
    key usages and the validity.

    CLI Example:

    .. code-block:: bash

        salt ca1 etcd_ca.signing_policies
    """
    return etcd_policies.signing_policies(_settings())


def refresh_policies():
    """
    On the CA minion: compile its pillar afresh and set the signing policies it gives
    (the ``x509_signing_policies`` grain x509_v2 reads) when they changed. Members ask for
    this through the master's peer system before they request a certificate, so a member
    just added to pillar is known to the CA without anyone applying ``etcd.ca`` first.
    What it computes comes from the master's pillar only; the asking minion chooses
    nothing. Returns whether the policies changed and the members they cover.

    CLI Example:

    .. code-block:: bash

        salt ca1 etcd_ca.refresh_policies
    """
    fresh = __salt__["pillar.items"](unmask=True)  # compiled on the master now, not the pillar in memory
    s = etcd_settings.merge(etcd_settings.expose(fresh.get("etcd") or {}), __grains__.get("os_family"))
    if __opts__["id"] != s["tls"].get("ca_minion"):
        raise CommandExecutionError(f"{__opts__['id']} is not this site's etcd:tls:ca_minion")
    policies = etcd_policies.signing_policies(s)
    changed = __grains__.get(POLICY_GRAIN) != policies
    if changed:
        __salt__["grains.setval"](POLICY_GRAIN, policies, refresh_pillar=False)
        __salt__["saltutil.refresh_pillar"]()  # later jobs read the same pillar the policies came from
    return {"changed": changed, "members": sorted(s["members"])}
