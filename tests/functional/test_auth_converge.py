"""etcd_auth's plan carried out against a real etcd (one mutual-TLS member, 3.4.23 and
3.5.1), then auth turned on: who may do what afterwards. Groundwork of issue 21: the
state that runs this under the cluster lock on a live cluster is still to come.

Identities (etcd_auth's header): the admin certificate has CN root (etcdctl), the
formula's gateway calls use a certificate without a CN and the etcd-formula user's
password, the storage operator is its certificate's CN."""

import sys

import pytest

from labkit.preflight import REPO

sys.path.insert(0, str(REPO / "_utils"))
import etcd_auth  # noqa: E402
import etcd_client  # noqa: E402
import etcd_users  # noqa: E402

PASSWORD = "f0rmula-Pw-for-the-test-only"
CLIENTS = [("storageos", "storageos"), ("ops", "ops")]  # (file, CN); admin.crt says CN=root, as the formula issues it
PILLAR = {
    "clients": {
        "storageos": {"prefixes": ["/storageos/"], "permission": "readwrite"},
        "ops": {"prefixes": ["/app/"], "permission": "read"},
    }
}


@pytest.fixture(params=["3.4.23", "3.5.1"])
def member(tmp_path, request):
    from etcd_process import EtcdProcess

    m = EtcdProcess(tmp_path / "member", clients=CLIENTS, version=request.param)
    yield m.start()
    m.stop()


def test_the_plan_makes_every_identity_before_auth_is_on_and_each_is_kept_to_its_grants(member):
    c = member.client()
    for key in ("/storageos/vol1", "/app/cfg", "/etcd-formula/functional/lock"):
        c.put(key, "before")
    c.put("/ondat/x", "a key no client's prefix reaches")
    want = etcd_auth.wanted(PILLAR)
    done = etcd_users.converge(c, want, PASSWORD)
    assert "user_add etcd-formula (password)" in done and "user_add storageos (certificate only)" in done, done
    assert not any(PASSWORD in line for line in done)
    assert etcd_users.converge(c, want, PASSWORD) == []  # a second run changes nothing
    # The enable is refused while a key lies outside every grant (its writer would be locked out).
    strays = etcd_users.strays(c, want)
    assert strays == ["/ondat/x"], strays
    assert "'/ondat/x'" in etcd_auth.enable_refusal(["m"], ["m"], True, strays)
    c.delete("/ondat/x")
    assert etcd_users.strays(c, want) == []
    c.auth_enable()

    # The storage operator: its prefix over gRPC, nothing else.
    got = member.etcdctl("storageos", "get", "--print-value-only", "/storageos/vol1")
    assert got.returncode == 0 and got.stdout.strip() == "before", got
    assert member.etcdctl("storageos", "put", "/storageos/vol2", "1").returncode == 0
    for key in ("/etcd-formula/functional/lock", "/app/cfg", "/other"):
        refused = member.etcdctl("storageos", "put", key, "taken")
        assert refused.returncode != 0 and "permission denied" in refused.stderr, (key, refused)
    refused = member.etcdctl("storageos", "del", "--prefix", "/")
    assert refused.returncode != 0 and "permission denied" in refused.stderr, refused
    # A read-only client reads its prefix and writes nothing.
    assert member.etcdctl("ops", "get", "/app/cfg").returncode == 0
    refused = member.etcdctl("ops", "put", "/app/cfg", "changed")
    assert refused.returncode != 0 and "permission denied" in refused.stderr, refused
    # The admin certificate is root: a snapshot needs it.
    snap = member.etcdctl("admin", "snapshot", "save", str(member.root / "snap.db"))
    assert snap.returncode == 0, snap
    # The formula's gateway identity: its keys, the members, alarms, and managing auth.
    f = member.client(credentials=(etcd_auth.FORMULA_USER, PASSWORD))
    assert f.get("/etcd-formula/functional/lock") == "before"
    assert len(f.member_list()["members"]) == 1 and f.alarms() == []
    assert etcd_users.converge(f, want, PASSWORD) == []
    # Without a token the gateway serves nothing.
    with pytest.raises(etcd_client.EtcdError):
        member.client().get("/storageos/vol1")

    # The way back: auth disable, and every client is what it was before.
    f.auth_disable()
    assert member.client().get("/storageos/vol1") == "before"
    assert member.etcdctl("ops", "put", "/app/cfg", "changed").returncode == 0


def test_a_grant_added_by_hand_to_a_managed_role_is_revoked(member):
    c = member.client()
    want = etcd_auth.wanted(PILLAR)
    etcd_users.converge(c, want, PASSWORD)
    c.role_grant("storageos", "/", "\0", "READWRITE")  # "just give it everything"
    c.role_add("hand-made")
    done = etcd_users.converge(c, want, PASSWORD)
    assert done == ["role_revoke storageos ['/', '\\x00')"], done
    assert c.role_get("storageos") == [("/storageos/", "/storageos0", "READWRITE")]
    assert "hand-made" in c.role_list()  # not the formula's: left alone
