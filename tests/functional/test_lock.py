"""The cluster lock and the restart announcement against a real etcd (one TLS member run
as a plain process on 127.0.0.1 by the test): the keyspace etcd_lock owns."""

import sys
import time

import pytest

from labkit.preflight import REPO

sys.path.insert(0, str(REPO / "_utils"))
import etcd_client  # noqa: E402
import etcd_lock  # noqa: E402


@pytest.fixture
def client(etcd_tls_member):
    pki = etcd_tls_member.tls_dir
    url = f"https://127.0.0.1:{etcd_tls_member.client_port}"
    return etcd_client.Client([url], 2, str(pki / "client-ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))


def test_a_waiting_member_is_announced_until_its_block_ends(client):
    assert etcd_lock.pending(client, "functional") == []
    with etcd_lock.Pending(client, "functional", "etcd2", "flags changed: ETCD_SNAPSHOT_COUNT", 30) as announced:
        assert etcd_lock.pending(client, "functional") == ["etcd2"]
        assert client.get(announced.key) == "flags changed: ETCD_SNAPSHOT_COUNT"
    assert etcd_lock.pending(client, "functional") == []  # revoked with its lease, not left to expire


def test_an_announcement_outlives_its_ttl_while_alive_and_expires_when_its_waiter_dies(client):
    # The fault catalogue's crash row: a member crashed while announced, and the leader
    # waited out lock_wait for it. Now the lease is short and renewed while the block runs.
    with etcd_lock.Pending(client, "functional", "etcd2", "flags changed", 2) as announced:
        time.sleep(4)  # two TTLs: renewed meanwhile
        assert etcd_lock.pending(client, "functional") == ["etcd2"]
        announced._stop.set()  # what a crash does to the renewing thread (the block never ends)
        announced._thread.join()
        time.sleep(3.5)
        assert etcd_lock.pending(client, "functional") == []  # expired on its own, within its TTL


def test_the_lock_has_one_holder_at_a_time(client):
    with etcd_lock.Lock(client, "functional", "etcd1", ttl=10, wait=2.0) as held:
        assert etcd_lock.holder(client, "functional")["holder"] == "etcd1"
        with pytest.raises(etcd_lock.LockTimeout):
            etcd_lock.Lock(client, "functional", "etcd2", ttl=10, wait=1.0).acquire()
        assert held.lease
    assert etcd_lock.holder(client, "functional") is None


def test_the_member_list_as_of_now(client, etcd_tls_member):
    # A linearizable read first, on the member that then lists the members.
    listed = client.member_list(current=True)
    assert [m["name"] for m in listed["members"]] == [etcd_tls_member.name] and listed["cluster_id"]
