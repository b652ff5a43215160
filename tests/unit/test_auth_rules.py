"""The rules of etcd auth (``etcd:auth``), read as a specification: which pillar is
refused and why, what etcd must hold, in which order it is created, which keys nobody
but root could reach, and when auth may be turned on.

Groundwork of issue 21: nothing applies these yet (no state, no pillar key); the client
half (tokens, renewal, auth disable) is proven against etcd 3.5.1 in
tests/functional/test_auth_client.py."""

import etcd_auth
import pytest
from etcd_validate import Findings

STORAGE = {"prefixes": ["/storageos/"], "permission": "readwrite"}


def errors(auth, cns=()):
    f = Findings()
    etcd_auth.validate(auth, list(cns), f)
    return [(e["key"], e["message"]) for e in f.errors]


@pytest.mark.parametrize(
    ("auth", "cns", "key", "words"),
    [
        ({"enabled": True, "clients": {"storageos": STORAGE}}, ["storageos"], None, None),
        ({"enabled": False, "clients": {}}, ["storageos"], None, None),  # off: nobody is locked out
        # On, a bundle without grants would read and write nothing from that moment.
        ({"enabled": True, "clients": {}}, ["storageos"], "etcd:auth:clients:storageos", "has no grants"),
        ({"enabled": "yes", "clients": {}}, [], "etcd:auth:enabled", "true or false"),
        ({"enabled": False, "clients": []}, [], "etcd:auth:clients", "mapping of CN"),
        ({"enabled": False, "clients": {"root": STORAGE}}, [], "etcd:auth:clients:root", "formula's own identity"),
        (
            {"enabled": False, "clients": {"etcd-formula": STORAGE}},
            [],
            "etcd:auth:clients:etcd-formula",
            "own identity",
        ),
        ({"enabled": False, "clients": {"a b": STORAGE}}, [], "etcd:auth:clients:a b", "not a certificate CN"),
        (
            {"enabled": False, "clients": {"x": {"prefixes": ["/x/"], "role": "admin"}}},
            [],
            "etcd:auth:clients:x",
            "must be",
        ),
        ({"enabled": False, "clients": {"x": {"prefixes": []}}}, [], "etcd:auth:clients:x:prefixes", "list of key"),
        (
            {"enabled": False, "clients": {"x": {"prefixes": ["x/"]}}},
            [],
            "etcd:auth:clients:x:prefixes",
            "not a key prefix",
        ),
        ({"enabled": False, "clients": {"x": {"prefixes": ["/x\n"]}}}, [], "etcd:auth:clients:x:prefixes", "not a key"),
        (
            {"enabled": False, "clients": {"x": {"prefixes": ["/x/"], "permission": "all"}}},
            [],
            "etcd:auth:clients:x:permission",
            "one of",
        ),
        # The formula's lock and failure markers are nobody else's: neither the prefix nor one above it.
        (
            {"enabled": False, "clients": {"x": {"prefixes": ["/etcd-formula/c/"]}}},
            [],
            "etcd:auth:clients:x:prefixes",
            "formula's own keys",
        ),
        (
            {"enabled": False, "clients": {"x": {"prefixes": ["/"]}}},
            [],
            "etcd:auth:clients:x:prefixes",
            "formula's own keys",
        ),
        (
            {"enabled": False, "clients": {"x": {"prefixes": ["/etcd"]}}},
            [],
            "etcd:auth:clients:x:prefixes",
            "formula's own keys",
        ),
    ],
)
def test_what_the_pillar_may_say(auth, cns, key, words):
    found = errors(auth, cns)
    if key is None:
        assert found == []
    else:
        assert [k for k, _ in found] == [key] and words in found[0][1], found


def test_what_etcd_must_hold():
    want = etcd_auth.wanted(
        {"clients": {"storageos": STORAGE, "ops": {"prefixes": ["/app/", "/cfg/"], "permission": "read"}}}
    )
    assert want["users"] == {
        "root": {"roles": ["root"], "password": False},  # the admin certificate (CN root) behind etcdctl
        "etcd-formula": {"roles": ["root"], "password": True},  # the gateway maps no CN: a password
        "ops": {"roles": ["ops"], "password": False},
        "storageos": {"roles": ["storageos"], "password": False},
    }
    assert want["roles"] == {
        "root": [],
        "ops": [("/app/", "/app0", "READ"), ("/cfg/", "/cfg0", "READ")],
        "storageos": [("/storageos/", "/storageos0", "READWRITE")],
    }


EMPTY = {"users": {}, "roles": {}}
WANT = etcd_auth.wanted({"clients": {"storageos": STORAGE}})
GRANT = ("/storageos/", "/storageos0", "READWRITE")


@pytest.mark.parametrize(
    ("have", "steps"),
    [
        # From nothing: roles and grants, then users and their roles (auth enable is the caller's last step).
        (
            EMPTY,
            [
                ("role_add", "root"),
                ("role_add", "storageos"),
                ("role_grant", "storageos", *GRANT),
                ("user_add", "root", False),
                ("user_grant", "root", "root"),
                ("user_add", "etcd-formula", True),
                ("user_grant", "etcd-formula", "root"),
                ("user_add", "storageos", False),
                ("user_grant", "storageos", "storageos"),
            ],
        ),
        # Everything there: nothing to do (a second apply changes nothing).
        (
            {
                "users": {"root": ["root"], "etcd-formula": ["root"], "storageos": ["storageos"]},
                "roles": {"root": [], "storageos": [GRANT]},
            },
            [],
        ),
        # A grant beyond pillar on a managed role is revoked; an unmanaged user and role are left alone.
        (
            {
                "users": {"root": ["root"], "etcd-formula": ["root"], "storageos": ["storageos"], "alice": ["x"]},
                "roles": {"root": [], "storageos": [GRANT, ("/", "\0", "READWRITE")], "x": [("/", "\0", "READ")]},
            },
            [("role_revoke", "storageos", "/", "\0", "READWRITE")],
        ),
        # A role taken away by hand is given back.
        (
            {
                "users": {"root": ["root"], "etcd-formula": [], "storageos": ["storageos"]},
                "roles": {"root": [], "storageos": [GRANT]},
            },
            [("user_grant", "etcd-formula", "root")],
        ),
    ],
)
def test_the_plan_creates_before_it_grants_and_never_touches_what_it_does_not_manage(have, steps):
    assert etcd_auth.plan(WANT, have) == steps


def test_the_ranges_nobody_but_root_may_reach():
    want = etcd_auth.wanted({"clients": {"storageos": STORAGE, "ops": {"prefixes": ["/app/"], "permission": "read"}}})
    assert etcd_auth.gaps(want) == [
        ("\0", "/app/"),
        ("/app0", "/etcd-formula/"),
        ("/etcd-formula0", "/storageos/"),
        ("/storageos0", "\0"),  # to the end of the keyspace
    ]
    # Nested and overlapping grants leave no gap between them.
    nested = etcd_auth.wanted({"clients": {"a": {"prefixes": ["/a/", "/a/b/"]}}})
    assert etcd_auth.gaps(nested) == [("\0", "/a/"), ("/a0", "/etcd-formula/"), ("/etcd-formula0", "\0")]


@pytest.mark.parametrize(
    ("ready", "healthy", "strays", "words"),
    [
        (["etcd1", "etcd2", "etcd3"], True, [], None),
        (["etcd1", "etcd2", "etcd3"], False, [], "not healthy"),
        # A member still calling with its admin certificate (a CN) would be refused at once.
        (["etcd1", "etcd3"], True, [], "etcd2 do(es) not call etcd with the formula's gateway identity"),
        # Keys outside every grant: their writer would be locked out (a wrong default prefix).
        (["etcd1", "etcd2", "etcd3"], True, ["/ondat/x"], "'/ondat/x' are in no client's prefixes"),
    ],
)
def test_when_auth_may_be_turned_on(ready, healthy, strays, words):
    why = etcd_auth.enable_refusal(["etcd1", "etcd2", "etcd3"], ready, healthy, strays)
    assert why is None if words is None else words in why, why
