"""CA rotation rules (pure): when a member may trust a new CA, take certificates from it,
and stop trusting the old one.

etcd reads its trust files only when it starts, and checks every peer and client
certificate against them. So a rotation is three passes over the members, each gated on
what every member reports in its record (in etcd, under ``record_key``): the CAs its
running etcd trusts and the CAs that issued its certificates.

1. Trust the new CA next to the old: an addition is always safe (a guarded restart each).
2. Take certificates from the new CA: only once every member's *running* etcd trusts it,
   or the members that do not would reject them.
3. Drop the old CA (after ``etcd_tls.retire_ca`` on the CA minion): only once no member
   holds a certificate from it, or that member would be cut off.

Nothing here talks to etcd or Salt; the records come in as dicts:
``{"trusts": {"client_ca": [fp, ...], "peer_ca": [...]}, "issuers": {"server": fp, ...}}``.
"""

import json


def parse_records(raw):
    """{name: record} from the raw values under `record_prefix` ({name: JSON text});
    a value that does not parse is no record."""
    out = {}
    for name, text in raw.items():
        try:
            out[name] = json.loads(text)
        except ValueError:
            continue
    return out


def member_names(listing):
    """The names of the started members of a member list (a never-started one has none)."""
    return [m["name"] for m in listing["members"] if m["name"]]


def trust_change(old, new):
    """{what: {"added": [fp], "removed": [fp]}} between two {what: [fp]} trusts."""
    out = {}
    for what in sorted(set(old or {}) | set(new or {})):
        before, after = (old or {}).get(what) or [], (new or {}).get(what) or []
        added = [f for f in after if f not in before]
        removed = [f for f in before if f not in after]
        if added or removed:
            out[what] = {"added": added, "removed": removed}
    return out


def _missing(records, members):
    return [m for m in members if not isinstance(records.get(m), dict)]


def reissue_refusal(records, members, current):
    """None when every member's running etcd trusts the `current` CA ({what: fp}) of each
    trust asked for; else why not (who does not, and what to do)."""
    missing = _missing(records, members)
    if missing:
        return f"no TLS record from {', '.join(missing)} yet: apply etcd there first"
    behind = []
    for name in members:
        trusts = records[name].get("trusts") or {}
        for what, fp in sorted(current.items()):
            if fp not in (trusts.get(what) or []):
                behind.append(f"{name} ({what})")
    if behind:
        return (
            f"the new CA is not yet trusted by the running etcd of {', '.join(behind)}: apply etcd there "
            "(each trusts it after its guarded restart), then apply again here"
        )
    return None


def removal_refusal(records, members, removed):
    """None when no member holds a certificate issued by a CA in `removed` (fingerprints);
    else which certificates still do."""
    missing = _missing(records, members)
    if missing:
        return f"no TLS record from {', '.join(missing)} yet: apply etcd there first"
    held = sorted(
        f"{name}'s {kind} certificate"
        for name in members
        for kind, fp in (records[name].get("issuers") or {}).items()
        if fp in removed
    )
    if held:
        return (
            f"{', '.join(held)} still come from the CA being dropped: apply etcd on every member "
            "(certificates are reissued from the new CA) before retiring the old one"
        )
    return None
