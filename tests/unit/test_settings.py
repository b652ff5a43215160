"""The settings model: merge order, every validation rule, and the flags it renders."""

import copy

import etcd_flags
import etcd_settings
import etcd_topology
import etcd_validate
import pytest

SITE = {
    "cluster": {"name": "storageos", "bootstrap": True},
    "members": {
        "etcd1": {"address": "10.0.0.11", "fqdn": "etcd1.example.com"},
        "etcd2": {"address": "10.0.0.12", "fqdn": "etcd2.example.com"},
        "etcd3": {"address": "10.0.0.13", "fqdn": "etcd3.example.com"},
    },
    "tls": {"enabled": False},  # plain HTTP on purpose: these tests are about other keys
}


def check(pillar, minion="etcd1", has_etcd=False):
    settings = etcd_settings.merge(pillar, "Debian")
    return etcd_validate.validate(pillar, settings, minion, has_etcd)


def keys(findings):
    return [e["key"] for e in findings]


def with_(**changes):
    pillar = copy.deepcopy(SITE)
    for path, value in changes.items():
        node = pillar
        parts = path.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is KeyError:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return pillar


def test_example_site_is_valid_and_merges_the_seed_defaults():
    report = check(SITE)
    assert report == {"valid": True, "errors": [], "warnings": []}
    s = etcd_settings.merge(SITE, "Debian")
    assert s["tuning"]["heartbeat_interval"] == 500
    assert s["tuning"]["quota_backend_bytes"] == 8589934592
    assert s["cluster"]["token"] == "storageos-etcd"
    assert s["ports"] == {"client": 2379, "peer": 2380, "metrics": 2381}


def test_merge_order_is_defaults_then_lookup_then_pillar():
    pillar = with_(lookup={"paths": {"data": "/srv/etcd", "bin": "/opt/bin"}}, paths={"data": "/data/etcd"})
    s = etcd_settings.merge(pillar, "Debian")
    assert s["paths"]["data"] == "/data/etcd"  # pillar beats lookup
    assert s["paths"]["bin"] == "/opt/bin"  # lookup beats defaults
    assert s["paths"]["config_dir"] == "/etc/etcd"  # defaults fill the rest


@pytest.mark.parametrize(
    ("pillar", "key", "words"),
    [
        (with_(cluster__name=KeyError), "etcd:cluster:name", "no name"),
        (with_(members={}), "etcd:members", "no members"),
        (with_(members__etcd2={"address": "10.0.0.11"}), "etcd:members:etcd2:address", "also the address of etcd1"),
        (with_(members__etcd2={"address": "etcd2.lan"}), "etcd:members:etcd2:address", "not an IP"),
        (with_(advertise="dns"), "etcd:advertise", "unknown advertise mode"),
        (with_(ports={"client": 70000}), "etcd:ports:client", "1 to 65535"),
        (with_(ports={"client": 2380, "peer": 2380}), "etcd:ports:peer", "both 2380"),
        (with_(version="3.5"), "etcd:version", "not a version"),
        (with_(version="3.5.99"), "etcd:source:checksums", "no sha256 is known"),
        (
            with_(version="3.5.99", source={"checksums": {"3.5.99": "abc"}}),
            "etcd:source:checksums:3.5.99",
            "not a sha256",
        ),
        (with_(tuning={"heartbeat_interval": 500, "election_timeout": 2000}), "etcd:tuning:election_timeout", "5 x"),
        (with_(tunning={"heartbeat_interval": 100}), "tunning", "did you mean `tuning`"),
        (with_(cluster__nmae="x"), "etcd:cluster:nmae", "did you mean `cluster:name`"),
        (with_(members__etcd1={"adress": "10.0.0.11"}), "etcd:members:etcd1:adress", "did you mean"),
        (
            with_(extra_flags={"initial-cluster-state": "new"}),
            "etcd:extra_flags:initial-cluster-state",
            "set by the formula",
        ),
        # One flag vocabulary: every spelling of a managed flag is refused, with its key.
        (with_(extra_flags={"client_cert_auth": "false"}), "etcd:extra_flags:client_cert_auth", "set by the formula"),
        (
            with_(extra_flags={"LISTEN_CLIENT_URLS": "http://0.0.0.0:2379"}),
            "etcd:extra_flags:LISTEN_CLIENT_URLS",
            "--listen-client-urls is set by the formula",
        ),
        (with_(extra_flags={"--trusted_ca_file": "/x"}), "etcd:extra_flags:--trusted_ca_file", "set by the formula"),
        (with_(extra_flags={"Peer-Auto-TLS": True}), "etcd:extra_flags:Peer-Auto-TLS", "set by the formula"),
        (with_(extra_flags={"enable-ppro": True}), "etcd:extra_flags:enable-ppro", "did you mean enable-pprof"),
        (
            with_(version="3.4.23", extra_flags={"unsafe-no-fsync": True}),
            "etcd:extra_flags:unsafe-no-fsync",
            "etcd 3.4 has no --unsafe-no-fsync",
        ),
        (with_(extra_flags={"log level": "info"}), "etcd:extra_flags:log level", "not a flag name"),
        (
            with_(extra_flags={"log-level": "info\nETCD_INITIAL_CLUSTER_STATE=new"}),
            "etcd:extra_flags:log-level",
            "control character",
        ),
        (with_(extra_flags={"log-level": ["info"]}), "etcd:extra_flags:log-level", "a single value"),
        (with_(extra_flags={"enable-pprof": True, "ENABLE_PPROF": True}), "etcd:extra_flags:ENABLE_PPROF", "twice"),
        (with_(extra_flags=["enable-pprof"]), "etcd:extra_flags", "must be a mapping"),
        (with_(source={"url": "ftp://mirror/etcd.tgz"}), "etcd:source:url", "not an http"),
        (with_(health={"interval": 10, "splay": 10}), "etcd:health:splay", "not under the interval"),
        (with_(health={"interval": 1}), "etcd:health:interval", "2 to 86400"),
        (with_(health={"enabled": "yes"}), "etcd:health:enabled", "true or false"),
        (with_(health={"quota_warning_pct": 96}), "etcd:health:quota_warning_pct", "above the critical"),
        (with_(health={"timeout": 0}), "etcd:health:timeout", "0.1 to 30"),
        (with_(health={"intervall": 5}), "etcd:health:intervall", "did you mean `health:interval`"),
    ],
)
def test_each_mistake_names_its_key_and_a_fix(pillar, key, words):
    report = check(pillar)
    assert not report["valid"]
    hits = [e for e in report["errors"] if e["key"].endswith(key.removeprefix("etcd:"))]
    assert hits, report["errors"]
    text = hits[0]["message"] + " " + hits[0]["fix"]
    assert words in text
    assert hits[0]["fix"]


def test_minion_outside_the_members_is_an_error_unless_it_holds_etcd():
    assert "etcd:members" in keys(check(SITE, minion="etcd9")["errors"])
    # A node with etcd data or a unit is leaving: membership handles it, not validation.
    assert check(SITE, minion="etcd9", has_etcd=True)["valid"]


@pytest.mark.parametrize(
    ("pillar", "key"),
    [
        (with_(members__etcd4={"address": "10.0.0.14"}), "etcd:members"),
        (with_(tuning={"quota_backend_bytes": 16 * 1024**3}), "etcd:tuning:quota_backend_bytes"),
        (with_(version="3.5.1", source={"checksums": {"3.5.1": "a" * 64}}), "etcd:version"),
    ],
)
def test_warnings_do_not_block(pillar, key):
    report = check(pillar)
    assert report["valid"], report["errors"]
    assert key in keys(report["warnings"])


def test_fqdn_mode_needs_every_fqdn():
    pillar = with_(advertise="fqdn", members__etcd3={"address": "10.0.0.13"})
    assert "etcd:members:etcd3:fqdn" in keys(check(pillar)["errors"])


def test_flags_follow_the_settings():
    s = etcd_settings.merge(with_(advertise="fqdn"), "Debian")
    env = etcd_flags.flags(s, "etcd2")
    assert env["ETCD_NAME"] == "etcd2"
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "http://10.0.0.12:2379,http://127.0.0.1:2379"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://etcd2.example.com:2379"
    assert env["ETCD_LISTEN_PEER_URLS"] == "http://10.0.0.12:2380"
    assert env["ETCD_INITIAL_CLUSTER"] == (
        "etcd1=http://etcd1.example.com:2380,etcd2=http://etcd2.example.com:2380,etcd3=http://etcd3.example.com:2380"
    )
    # `new` is never in the managed file: only the guarded bootstrap adds it at runtime.
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    assert env["ETCD_HEARTBEAT_INTERVAL"] == "500"
    assert env["ETCD_AUTO_COMPACTION_RETENTION"] == "20000"
    assert "ETCD_PRE_VOTE" not in env


def test_34_gets_pre_vote_and_extra_flags_pass_through():
    s = etcd_settings.merge(with_(version="3.4.23", extra_flags={"enable-pprof": True, "--log-level": "warn"}), None)
    env = etcd_flags.flags(s, "etcd1")
    assert env["ETCD_PRE_VOTE"] == "true"
    assert env["ETCD_ENABLE_PPROF"] == "true"
    assert env["ETCD_LOG_LEVEL"] == "warn"


def test_localhost_listening_can_be_turned_off():
    s = etcd_settings.merge(with_(listen_localhost=False), None)
    assert etcd_flags.flags(s, "etcd1")["ETCD_LISTEN_CLIENT_URLS"] == "http://10.0.0.11:2379"
    assert etcd_topology.endpoints(s, "etcd1")[0] == "http://10.0.0.11:2379"


def test_initial_flags_never_count_for_a_restart():
    s = etcd_settings.merge(SITE, None)
    env = etcd_flags.flags(s, "etcd1")
    relevant = etcd_flags.restart_relevant(env)
    assert not [k for k in relevant if k.startswith("ETCD_INITIAL_")]
    assert relevant["ETCD_ELECTION_TIMEOUT"] == "5000"


def test_ipv6_members_get_bracketed_urls():
    s = etcd_settings.merge(with_(members={"etcd1": {"address": "fd00::11"}}), None)
    assert etcd_topology.peer_url(s, "etcd1") == "http://[fd00::11]:2380"


def test_a_member_address_must_be_one_of_this_nodes():
    import etcd_node

    assert etcd_node.is_local_address("127.0.0.1")
    assert not etcd_node.is_local_address("192.0.2.77")  # TEST-NET-1: on no interface here
    assert etcd_node.is_local_address("etcd2.lan")  # not an IP: validation says so, not this


@pytest.mark.parametrize("spelling", ["enable-pprof", "--enable-pprof", "ENABLE_PPROF", "enable_pprof", "Enable-Pprof"])
def test_any_spelling_of_an_allowed_flag_renders_one_variable(spelling):
    pillar = with_(extra_flags={spelling: True})
    assert check(pillar)["valid"], check(pillar)["errors"]
    env = etcd_flags.flags(etcd_settings.merge(pillar, "Debian"), "etcd1")
    assert env["ETCD_ENABLE_PPROF"] == "true"
    assert [k for k in env if "PPROF" in k] == ["ETCD_ENABLE_PPROF"]


def test_plain_http_is_never_silent():
    unset = with_(tls=KeyError)
    new = check(unset)
    assert not new["valid"] and keys(new["errors"]) == ["etcd:tls:enabled"], new["errors"]
    assert "ca_minion" in new["errors"][0]["fix"] and "enabled: false" in new["errors"][0]["fix"]
    running = check(unset, has_etcd=True)  # a running plain cluster keeps running, warned every apply
    assert running["valid"] and "etcd:tls:enabled" in keys(running["warnings"]), running
    assert check(with_(tls={"enabled": False}))["valid"]
    assert check(with_(tls=KeyError, lookup={"tls": {"enabled": False}}))["valid"]
    assert etcd_settings.merge(unset)["tls_chosen"] is False
