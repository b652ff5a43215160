"""etcd's own users and roles (``etcd:auth``): the rules, pure, each with a table-driven
unit test (tests/unit/test_auth_rules.py). Nothing here talks to etcd.

Who is who once auth is on (etcd maps a gRPC client's certificate CN to the user of that
name; the JSON gateway the formula speaks maps no CN and refuses a certificate that has
one, so the formula's own calls log in with a password and carry a token):

- ``root``: the admin certificate behind the etcdctl wrapper (snapshots, restores);
- ``etcd-formula``: the formula's own gateway calls. It holds the ``root`` role: member
  changes, defragmentation, alarm disarm and compaction need admin in etcd, and the lock,
  failure markers and backup claims live under ``/etcd-formula/``, which no client role
  may reach;
- each client bundle's CN (``tls:bundle_minions``, the storage operator's
  ``kubernetes:service``): a user without a password (certificate only), with a role of
  the same name limited to the prefixes ``etcd:auth:clients:<cn>`` grants.
"""

import etcd_keys
import etcd_names
from etcd_client import prefix_end

ADMIN_USER = "root"
FORMULA_USER = "etcd-formula"
ROOT_ROLE = "root"
FORMULA_PREFIX = etcd_keys.ROOT
RESERVED = (ADMIN_USER, FORMULA_USER, ROOT_ROLE)
# etcd's names for a permission (authpb.Permission.Type), by the pillar's word.
PERMISSIONS = {"read": "READ", "write": "WRITE", "readwrite": "READWRITE"}


def overlaps(a, b):
    """Whether two key prefixes share a key (one is a prefix of the other)."""
    return a.startswith(b) or b.startswith(a)


def validate(auth, bundle_cns, findings):
    """The rules of ``etcd:auth`` (`findings`: etcd_validate.Findings). `bundle_cns`: every
    client certificate CN the site issues; with auth on, each must have its grants, or
    that client is locked out the moment auth is enabled."""
    if not isinstance(auth, dict):
        findings.error("auth", f"must be a mapping, not {type(auth).__name__}", "see pillar/sites/example.sls")
        return
    findings.booleans("auth", auth, ("enabled",))
    clients = auth.get("clients")
    if not isinstance(clients, dict):
        findings.error(
            "auth:clients",
            f"must be a mapping of CN to grants, not {clients!r}",
            "e.g. {storageos: {prefixes: [/storageos/]}}",
        )
        return
    for cn, grant in clients.items():
        _client_rules(cn, grant, findings)
    if auth.get("enabled") is True:
        for cn in sorted(set(bundle_cns) - set(clients)):
            findings.error(
                f"auth:clients:{cn}",
                f"the client certificate {cn!r} has no grants: with auth on it could read and write nothing",
                f"add `etcd:auth:clients:{cn}: {{prefixes: [/{cn}/], permission: readwrite}}` with the prefix it uses",
            )


def _client_rules(cn, grant, findings):
    key = f"auth:clients:{cn}"
    if not isinstance(cn, str) or not etcd_names.CN.match(cn):
        findings.error(key, f"{cn!r} is not a certificate CN", "letters, digits and . _ @ -, up to 64")
        return
    if cn in RESERVED:
        findings.error(key, f"{cn!r} is the formula's own identity", "give the client a certificate CN of its own")
        return
    if not isinstance(grant, dict) or set(grant) - {"prefixes", "permission"}:
        findings.error(
            key, f"must be {{prefixes: [...], permission: ...}}, not {grant!r}", "see pillar/sites/example.sls"
        )
        return
    permission = grant.get("permission", "readwrite")
    if permission not in PERMISSIONS:
        findings.error(
            f"{key}:permission", f"must be one of {sorted(PERMISSIONS)}, not {permission!r}", "e.g. readwrite"
        )
    prefixes = grant.get("prefixes")
    if not isinstance(prefixes, list) or not prefixes:
        findings.error(f"{key}:prefixes", f"must be a list of key prefixes, not {prefixes!r}", "e.g. [/storageos/]")
        return
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix.startswith("/") or not prefix.isprintable() or len(prefix) > 256:
            findings.error(f"{key}:prefixes", f"{prefix!r} is not a key prefix", "start it with /, e.g. /storageos/")
        elif overlaps(prefix, FORMULA_PREFIX):
            findings.error(
                f"{key}:prefixes",
                f"{prefix!r} reaches the formula's own keys under {FORMULA_PREFIX} (its lock and failure markers)",
                "grant a prefix of the client's own, e.g. /storageos/",
            )


def wanted(auth):
    """What etcd should hold: {"users": {name: {"roles": [...], "password": bool}},
    "roles": {name: [(key, range_end, PERMISSION), ...]}} (validated pillar only)."""
    users = {
        ADMIN_USER: {"roles": [ROOT_ROLE], "password": False},
        FORMULA_USER: {"roles": [ROOT_ROLE], "password": True},
    }
    roles = {ROOT_ROLE: []}
    for cn, grant in sorted((auth.get("clients") or {}).items()):
        perm = PERMISSIONS[grant.get("permission", "readwrite")]
        roles[cn] = sorted((p, prefix_end(p), perm) for p in grant["prefixes"])
        users[cn] = {"roles": [cn], "password": False}
    return {"users": users, "roles": roles}


def plan(want, have):
    """The steps that make etcd hold `want`, given `have` ({"users": {name: [roles]},
    "roles": {name: [(key, range_end, PERMISSION)]}}), in an order that never locks a
    client out: roles and their grants first, then users and their roles, and only then
    (the caller's last step) ``auth enable``. Grants a managed role holds beyond pillar are
    revoked; users and roles the formula does not manage are left alone."""
    steps = []
    for role, perms in want["roles"].items():
        held = set(have["roles"].get(role, ()))
        if role not in have["roles"]:
            steps.append(("role_add", role))
        steps += [("role_grant", role, *p) for p in perms if p not in held]
        if role != ROOT_ROLE:
            steps += [("role_revoke", role, *p) for p in sorted(held - set(perms))]
    for user, spec in want["users"].items():
        if user not in have["users"]:
            steps.append(("user_add", user, spec["password"]))
        steps += [("user_grant", user, r) for r in spec["roles"] if r not in have["users"].get(user, ())]
    return steps


def gaps(want):
    """The key ranges [start, end) that no role but root may reach (end "\\0": to the
    end of the keyspace, as etcd reads a range_end): with auth on, whoever writes keys
    there today is refused. The caller counts the keys in each (a count per range, not a
    read of the keyspace), and the enable refuses while any range holds one."""
    covered = sorted({(p[0], p[1]) for perms in want["roles"].values() for p in perms})
    covered = sorted([*covered, (FORMULA_PREFIX, prefix_end(FORMULA_PREFIX))])
    out, start = [], "\0"
    for key, end in covered:
        if key > start:
            out.append((start, key))
        start = max(start, end)
    out.append((start, "\0"))
    return out


def enable_refusal(members, ready, healthy, strays):
    """Why auth may not be turned on now, or None. `ready`: the members whose formula
    already calls with its gateway identity (a CN-less certificate and the password):
    one that does not would be refused from the moment auth is on."""
    if not healthy:
        return "the cluster is not healthy: auth is turned on only on a healthy cluster"
    missing = [m for m in members if m not in ready]
    if missing:
        return (
            f"{', '.join(missing)} do(es) not call etcd with the formula's gateway identity yet: apply etcd there first"
        )
    if strays:
        return (
            f"keys such as {', '.join(repr(k) for k in strays)} are in no client's prefixes: whoever writes them "
            "would be refused; add their prefix to that client's etcd:auth:clients entry"
        )
    return None
