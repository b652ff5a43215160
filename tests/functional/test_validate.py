"""etcd_cluster.validate and settings through the loader, reading pillar as Salt gives it."""


def test_validate_reads_pillar_and_names_keys(loaders, set_pillar):
    set_pillar({"etcd": {"cluster": {"nmae": "x"}, "members": {loaders.opts["id"]: {"address": "10.1.1.1"}}}})
    report = loaders.modules.etcd_cluster.validate()
    assert not report["valid"]
    found = {e["key"]: e for e in report["errors"]}
    assert "etcd:cluster:name" in found
    assert "did you mean `cluster:name`" in found["etcd:cluster:nmae"]["fix"]


def test_settings_are_the_merged_defaults(loaders, set_pillar):
    set_pillar({"etcd": {"cluster": {"name": "site"}, "tuning": {"heartbeat_interval": 100}}})
    s = loaders.modules.etcd_cluster.settings()
    assert s["tuning"]["heartbeat_interval"] == 100
    assert s["tuning"]["election_timeout"] == 5000
    assert s["cluster"]["token"] == "site-etcd"
