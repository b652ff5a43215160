"""etcd's users and roles through the gateway: what etcd holds, the plan of etcd_auth
carried out, and the keys no client role would reach (issue 21 groundwork: the state
that calls these, under the cluster lock, is still to come).

`client` is an etcd_client.Client allowed to manage auth: any client while auth is off,
the formula's own identity (root role) once it is on. Passwords are passed in, never
returned, and never part of a step's text."""

import etcd_auth


def have(client):
    """{"users": {name: [roles]}, "roles": {name: [(key, range_end, PERMISSION)]}}."""
    users = {u: sorted(client.user_get(u).get("roles", [])) for u in client.user_list()}
    return {"users": users, "roles": {r: client.role_get(r) for r in client.role_list()}}


def converge(client, want, formula_password):
    """Carry out etcd_auth.plan(want, have(client)); the steps done, as text without any
    password. Stops at the first error (etcd_client.EtcdError), and what was done before
    stays done: every step is one etcd request, and the plan of the next run picks up."""
    done = []
    for step in etcd_auth.plan(want, have(client)):
        kind, name, *rest = step
        if kind == "role_add":
            client.role_add(name)
        elif kind == "role_grant":
            client.role_grant(name, *rest)
        elif kind == "role_revoke":
            client.role_revoke(name, *rest[:2])
        elif kind == "user_add":
            client.user_add(name, formula_password if rest[0] else None)
        elif kind == "user_grant":
            client.user_grant_role(name, rest[0])
        done.append(describe(step))
    return done


def describe(step):
    """A step as one line for a state's changes (a user_add says whether it has a password, never which)."""
    kind, name, *rest = step
    if kind == "user_add":
        return f"user_add {name}" + (" (password)" if rest[0] else " (certificate only)")
    if kind == "role_grant":
        return f"role_grant {name} {rest[2]} [{rest[0]!r}, {rest[1]!r})"
    if kind == "role_revoke":
        return f"role_revoke {name} [{rest[0]!r}, {rest[1]!r})"
    return " ".join([kind, name, *map(str, rest)])


def strays(client, want, limit=3):
    """Up to `limit` keys (one per range) that no client role would reach once auth is
    on: one count per gap of etcd_auth.gaps, never a read of the keyspace."""
    found = []
    for start, end in etcd_auth.gaps(want):
        count, first = client.count(start, end)
        if count:
            found.append(first)
        if len(found) >= limit:
            break
    return found
