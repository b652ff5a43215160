"""Normalising the v3 JSON gateway's answers, and the release table."""

import etcd_client
import etcd_releases


def test_member_fields_omitted_by_the_gateway_get_their_zero_values():
    # A learner that never started: the gateway omits name, clientURLs and isLearner=false.
    m = etcd_client._member({"ID": "12618363216440289603", "peerURLs": ["http://10.0.0.14:2380"]})
    assert m == {
        "id": 12618363216440289603,
        "name": "",
        "peer_urls": ["http://10.0.0.14:2380"],
        "client_urls": [],
        "is_learner": False,
    }
    assert etcd_client.member_hex(m["id"]) == "af1d6e7d8ac76943"


def test_status_int64_strings_become_ints():
    raw = {
        "header": {"cluster_id": "9647316227150331567", "member_id": "8886937410429458849", "raft_term": "2"},
        "version": "3.5.1",
        "dbSize": "20480",
        "leader": "8886937410429458849",
        "raftIndex": "9",
        "raftTerm": "2",
    }
    st = etcd_client._status(raw)
    assert st["cluster_id"] == 9647316227150331567
    assert st["leader"] == st["member_id"]
    assert st["db_size"] == 20480
    assert st["raft_applied_index"] == 0  # omitted zero
    assert st["errors"] == [] and st["is_learner"] is False


def test_release_table():
    assert etcd_releases.parse("3.5.33") == (3, 5, 33)
    assert etcd_releases.parse("v3.5.33") is None
    assert etcd_releases.checksum(etcd_releases.DEFAULT_VERSION)
    assert etcd_releases.DEFAULT_VERSION not in etcd_releases.UNSAFE_VERSIONS
    assert etcd_releases.checksum("3.5.1", {"3.5.1": "AB" * 32}) == "ab" * 32
    assert all(etcd_releases.SHA256_RE.match(v) for v in etcd_releases.CHECKSUMS.values())
    assert etcd_releases.tarball_name("3.4.23") == "etcd-v3.4.23-linux-amd64.tar.gz"
