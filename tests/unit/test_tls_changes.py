"""CA rotation gates (when members may take certificates from a new CA, and drop the old)
and the stages of turning TLS on for a running cluster."""

import etcd_flags
import etcd_migration
import etcd_node
import etcd_rotation
import etcd_settings
import etcd_topology

OLD, NEW, PEER_OLD, PEER_NEW = "f0", "f1", "p0", "p1"
MEMBERS = ["etcd1", "etcd2", "etcd3"]


def rec(client=(OLD,), peer=(PEER_OLD,), server=OLD, peer_cert=PEER_OLD, admin=OLD):
    return {
        "trusts": {"client_ca": list(client), "peer_ca": list(peer)},
        "issuers": {"server": server, "peer": peer_cert, "admin": admin},
    }


def test_trust_changes_are_additions_or_removals():
    old = {"client_ca": [OLD], "peer_ca": [PEER_OLD]}
    both = {"client_ca": [NEW, OLD], "peer_ca": [PEER_NEW, PEER_OLD]}
    assert etcd_rotation.trust_change(old, both) == {
        "client_ca": {"added": [NEW], "removed": []},
        "peer_ca": {"added": [PEER_NEW], "removed": []},
    }
    assert etcd_rotation.trust_change(both, {"client_ca": [NEW], "peer_ca": [PEER_NEW]})["client_ca"] == {
        "added": [],
        "removed": [OLD],
    }
    assert etcd_rotation.trust_change(old, old) == {}


def test_new_certificates_wait_until_every_running_member_trusts_the_new_ca():
    current = {"client_ca": NEW, "peer_ca": PEER_NEW}
    both = rec(client=(NEW, OLD), peer=(PEER_NEW, PEER_OLD))
    records = {"etcd1": both, "etcd2": both, "etcd3": rec()}  # etcd3 has not restarted yet
    why = etcd_rotation.reissue_refusal(records, MEMBERS, current)
    assert "etcd3 (client_ca)" in why and "etcd3 (peer_ca)" in why and "etcd1" not in why
    records["etcd3"] = both
    assert etcd_rotation.reissue_refusal(records, MEMBERS, current) is None
    # Only the peer CA rotates: the client trust is not asked about.
    peer_only = {"etcd1": rec(peer=(PEER_NEW, PEER_OLD))}
    assert etcd_rotation.reissue_refusal(peer_only, ["etcd1"], {"peer_ca": PEER_NEW}) is None
    assert "no TLS record from etcd2" in etcd_rotation.reissue_refusal(peer_only, ["etcd1", "etcd2"], current)


def test_the_old_ca_goes_only_when_no_member_holds_a_certificate_from_it():
    moved = rec(client=(NEW, OLD), server=NEW, admin=NEW, peer_cert=PEER_NEW)
    records = {"etcd1": moved, "etcd2": moved, "etcd3": dict(moved, issuers=dict(moved["issuers"], admin=OLD))}
    why = etcd_rotation.removal_refusal(records, MEMBERS, [OLD, PEER_OLD])
    assert why.startswith("etcd3's admin certificate") and "etcd1" not in why
    records["etcd3"] = moved
    assert etcd_rotation.removal_refusal(records, MEMBERS, [OLD, PEER_OLD]) is None
    assert "no TLS record from etcd2" in etcd_rotation.removal_refusal({"etcd1": moved}, ["etcd1", "etcd2"], [OLD])


def test_running_trust_is_what_etcd_started_with():
    want = {"trust": "d2", "trusted": {"client_ca": [NEW, OLD]}}
    assert etcd_node.running_trust({"trust": "d1", "trusted": {"client_ca": [OLD]}}, want) == {"client_ca": [OLD]}
    # A start recorded before fingerprints were: the files' trust only when unchanged since.
    assert etcd_node.running_trust({"trust": "d2"}, want) == {"client_ca": [NEW, OLD]}
    assert etcd_node.running_trust({"trust": "d1"}, want) is None
    assert etcd_node.running_trust(None, want) is None


def test_turning_tls_on_goes_through_peer_credentials_first():
    plain = {"ETCD_LISTEN_PEER_URLS": "http://10.0.0.11:2380"}
    creds = dict(plain, ETCD_PEER_CERT_FILE="/etc/etcd/pki/peer.crt")
    full = {"ETCD_LISTEN_PEER_URLS": "https://10.0.0.11:2380", "ETCD_PEER_CERT_FILE": "/etc/etcd/pki/peer.crt"}
    assert [etcd_migration.stage_of(f) for f in (plain, creds, full)] == ["http", "peer-creds", "https"]
    names = ["etcd1", "etcd2"]
    assert etcd_migration.wanted_stage("http", {}, names) == "peer-creds"
    # https only once every live member runs with peer credentials (it may dial https peers).
    assert etcd_migration.wanted_stage("peer-creds", {"etcd1": {"peer_tls": True}}, names) == "peer-creds"
    both = {"etcd1": {"peer_tls": True}, "etcd2": {"peer_tls": True}}
    assert etcd_migration.wanted_stage("peer-creds", both, names) == "https"
    listing = {
        "members": [
            {"name": "etcd1", "peer_urls": ["https://a:2380"], "client_urls": ["https://a:2379"]},
            {"name": "etcd2", "peer_urls": ["http://b:2380"], "client_urls": ["http://b:2379"]},
            {"name": "", "peer_urls": ["http://c:2380"], "client_urls": []},
        ]
    }
    assert etcd_migration.serving(listing) == {"etcd1": "https", "etcd2": "http"}
    assert not etcd_migration.finished(listing)


def test_peer_credentials_stage_renders_http_urls_with_peer_tls_only():
    pillar = {
        "cluster": {"name": "lab"},
        "members": {"etcd1": {"address": "10.0.0.11"}, "etcd2": {"address": "10.0.0.12"}},
        "tls": {"enabled": True, "ca_minion": "ca1"},
    }
    s = etcd_settings.merge(pillar)
    s["tls_stage"] = "peer-creds"
    env = etcd_flags.flags(s, "etcd1", "3.5.1")
    assert env["ETCD_LISTEN_PEER_URLS"] == "http://10.0.0.11:2380"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.0.0.11:2379"
    assert env["ETCD_PEER_CERT_FILE"].endswith("peer.crt") and env["ETCD_PEER_TRUSTED_CA_FILE"].endswith("peer-ca.crt")
    assert "ETCD_CERT_FILE" not in env and "ETCD_CLIENT_CERT_AUTH" not in env
    s["tls_stage"] = "https"
    env = etcd_flags.flags(s, "etcd1", "3.5.1")
    assert env["ETCD_LISTEN_PEER_URLS"] == "https://10.0.0.11:2380" and env["ETCD_CLIENT_CERT_AUTH"] == "true"
    # The formula's own calls go where each member serves meanwhile.
    s["serving"] = {"etcd2": "http"}
    assert etcd_topology.client_url(s, "etcd2") == "http://10.0.0.12:2379"
    assert etcd_topology.client_url(s, "etcd1") == "https://10.0.0.11:2379"


def test_records_parse_and_names_come_from_the_listing():
    raw = {"etcd1": '{"peer_tls": true}', "etcd2": "not json"}
    assert etcd_rotation.parse_records(raw) == {"etcd1": {"peer_tls": True}}
    listing = {"members": [{"name": "etcd1"}, {"name": ""}]}
    assert etcd_rotation.member_names(listing) == ["etcd1"]
