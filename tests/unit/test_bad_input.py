"""Untrusted pillar, rule x key: every value that reaches a file, a path, an etcd key or a
command is refused by type and pattern, with its key named, before anything changes."""

import etcd_settings
import pytest
from test_settings import check, with_

OWN_DIRS = {
    "paths:install": "paths__install",
    "paths:config_dir": "paths__config_dir",
    "paths:data": "paths__data",
    "paths:state": "paths__state",
    "tls:dir": "tls__dir",
    "tls:ca_dir": "tls__ca_dir",
    "upgrade:snapshot_dir": "upgrade__snapshot_dir",
    "kubernetes:bundle_dir": "kubernetes__bundle_dir",
    "backup:dir": "backup__dir",
}
OTHER_PATHS = {"paths:bin": "paths__bin", "paths:unit": "paths__unit", "kubernetes:manifest": "kubernetes__manifest"}
# (bad value, words the refusal says) for every path.
ANY_PATH = [
    ("var/lib/etcd", "not an absolute path"),
    ("/var/lib/../../etc", "not a normalised path"),
    ("/var//lib/etcd", "not a normalised path"),
    ("/var/lib/etcd/", "not a normalised path"),
    (42, "is not a path"),
    ("/var/lib/etcd\nETCD_X=1", "control character"),
]
# ... and for directories the formula writes into or may delete.
OWN_DIR = [("/etc", "system directory"), ("/var/lib", "system directory"), ("/etcd", "too short"), ("/", "system")]

CASES = [(key, arg, bad, words) for key, arg in {**OWN_DIRS, **OTHER_PATHS}.items() for bad, words in ANY_PATH]
CASES += [(key, arg, bad, words) for key, arg in OWN_DIRS.items() for bad, words in OWN_DIR]
CASES += [
    ("cluster:name", "cluster__name", "../../../tmp/evil", "not a plain name"),
    ("cluster:name", "cluster__name", "my cluster", "not a plain name"),
    ("cluster:name", "cluster__name", "x" * 64, "not a plain name"),
    ("cluster:name", "cluster__name", 7, "not a plain name"),
    ("cluster:name", "cluster__name", "-lead", "not a plain name"),
    ("cluster:token", "cluster__token", "tok en", "not a plain name"),
    ("cluster:token", "cluster__token", "a/b", "not a plain name"),
    ("members:etcd 4", "members__etcd 4", {"address": "10.0.0.14"}, "not a minion id"),
    ("members:../x", "members__../x", {"address": "10.0.0.14"}, "not a minion id"),
    ("members:etcd1:fqdn", "members__etcd1__fqdn", "bad_name!", "not a DNS name"),
    ("members:etcd1:fqdn", "members__etcd1__fqdn", "a..b", "not a DNS name"),
    ("members:etcd1:fqdn", "members__etcd1__fqdn", ["etcd1.lab"], "not a DNS name"),
    ("user", "user", "root", "must not run as root"),
    ("user", "user", "Etcd", "not a user or group name"),
    ("user", "user", "1etcd", "not a user or group name"),
    ("user", "user", "etcd;id", "not a user or group name"),
    ("group", "group", "root", "must not run as root"),
    ("group", "group", 0, "not a user or group name"),
    ("members", "members", ["etcd1", "etcd2"], "must be a mapping, not a list"),
    ("cluster:name", "cluster__name", "lab\nETCD_INITIAL_CLUSTER_STATE=new", "control character"),
    ("tls:extra_sans:0", "tls__extra_sans", ["etcd.svc\nx"], "control character"),
    ("clean:force", "clean__force", "yes", "must be true or false"),
    ("clean:whole_cluster", "clean__whole_cluster", 1, "must be true or false"),
    ("clean:delete_data", "clean__delete_data", "true", "must be true or false"),
    ("clean", "clean", ["force"], "must be a mapping"),
    ("service:name", "service__name", "etcd;reboot", "not a systemd unit name"),
    ("service:name", "service__name", "../etcd", "not a systemd unit name"),
    ("service:name", "service__name", "", "not a systemd unit name"),
    ("service:name", "service__name", 7, "not a systemd unit name"),
]


@pytest.mark.parametrize(("key", "arg", "bad", "words"), CASES, ids=[f"{c[0]}={c[2]!r}"[:60] for c in CASES])
def test_each_bad_value_is_refused_with_its_key(key, arg, bad, words):
    report = check(with_(**{arg: bad}))
    assert not report["valid"]
    named = [e for e in report["errors"] if e["key"] == f"etcd:{key}"]
    assert named, report["errors"]
    assert any(words in e["message"] + " " + e["fix"] for e in named), named


def test_the_table_is_broad():
    assert len({(c[0], repr(c[2])) for c in CASES}) >= 60


@pytest.mark.parametrize("path", ["/usr/local/bin", "/usr/bin", "/opt/etcd/bin"])
def test_bin_may_be_a_system_directory_it_only_holds_links(path):
    assert check(with_(paths__bin=path))["valid"]


def test_many_bad_keys_at_once_are_all_named():
    pillar = with_(cluster__name="a b", user="root", paths__data="data", extra_flags={"client_cert_auth": "false"})
    keys = {e["key"] for e in check(pillar)["errors"]}
    assert {"etcd:cluster:name", "etcd:user", "etcd:paths:data", "etcd:extra_flags:client_cert_auth"} <= keys


def test_the_example_defaults_pass_every_rule():
    s = etcd_settings.merge(with_(), "Debian")
    assert check(with_())["valid"] and s["paths"]["data"] == "/var/lib/etcd"
