"""The metrics listener's rules: which URLs each setting gives, what validation refuses,
and the textfile's labels (pure; the lab proves them on real members)."""

import copy

import etcd_flags
import etcd_metrics
import etcd_settings
import etcd_validate
import pytest

SITE = {
    "cluster": {"name": "storageos", "bootstrap": True},
    "members": {"etcd1": {"address": "10.0.0.11"}, "etcd2": {"address": "10.0.0.12"}, "etcd3": {"address": "fd00::13"}},
    "tls": {"enabled": False},
}


def settings(**top):
    pillar = copy.deepcopy(SITE)
    pillar.update(top)
    return pillar, etcd_settings.merge(pillar, "Debian")


@pytest.mark.parametrize(
    ("top", "member", "listen", "local"),
    [
        # The default: loopback only, as kubeadm does; the health check reads it there.
        ({}, "etcd1", ["http://127.0.0.1:2381"], "http://127.0.0.1:2381"),
        # For a Prometheus elsewhere: the member's address, and loopback beside it.
        (
            {"metrics": {"address": "member"}},
            "etcd2",
            ["http://10.0.0.12:2381", "http://127.0.0.1:2381"],
            "http://127.0.0.1:2381",
        ),
        (
            {"metrics": {"address": "member"}, "listen_localhost": False},
            "etcd2",
            ["http://10.0.0.12:2381"],
            "http://10.0.0.12:2381",
        ),
        (
            {"metrics": {"address": "member"}, "ports": {"metrics": 12381}},
            "etcd3",
            ["http://[fd00::13]:12381", "http://127.0.0.1:12381"],
            "http://127.0.0.1:12381",
        ),
        # Off: no listener, the health check reads the client URL.
        ({"metrics": {"enabled": False}}, "etcd1", [], None),
    ],
)
def test_listen_urls_follow_the_pillar(top, member, listen, local):
    _, s = settings(**top)
    assert etcd_metrics.listen_urls(s, member) == listen
    assert etcd_metrics.local_url(s, member) == local
    env = etcd_flags.flags(s, member)
    assert env.get("ETCD_LISTEN_METRICS_URLS") == (",".join(listen) if listen else None)


def test_scrape_targets_only_on_the_member_address():
    assert etcd_metrics.scrape_targets(settings()[1]) == []
    assert etcd_metrics.scrape_targets(settings(metrics={"address": "member"})[1]) == [
        "10.0.0.11:2381",
        "10.0.0.12:2381",
        "[fd00::13]:2381",
    ]


@pytest.mark.parametrize(
    ("top", "key", "words"),
    [
        ({"metrics": {"address": "all"}}, "etcd:metrics:address", "localhost or member"),
        ({"listen_localhost": False}, "etcd:metrics:address", "nothing of etcd's may listen on 127.0.0.1"),
        ({"metrics": {"scheme": "https"}}, "etcd:metrics:scheme", "client certificate"),
        ({"metrics": {"enabled": "yes"}}, "etcd:metrics:enabled", "true or false"),
        ({"metrics": {"textfile": "relative.prom"}}, "etcd:metrics:textfile", "not an absolute path"),
        ({"metrics": {"textfile": "/var/lib/node/etcd.txt"}}, "etcd:metrics:textfile", "does not end in .prom"),
        ({"metrics": {"textfile": "/var/lib/../etc/x.prom"}}, "etcd:metrics:textfile", "not a normalised path"),
        ({"ports": {"metrics": 2379}}, "etcd:ports:metrics", "also the client or peer port"),
        ({"ports": {"metrics": 0}}, "etcd:ports:metrics", "1 to 65535"),
        ({"metrics": {"adress": "member"}}, "etcd:metrics:adress", "did you mean `metrics:address`"),
        (
            {"extra_flags": {"listen-metrics-urls": "http://0.0.0.0:2381"}},
            "etcd:extra_flags:listen-metrics-urls",
            "set by the formula",
        ),
        # Renewing on every run is a mistake, not a warning.
        ({"tls": {"enabled": False, "renew_days": 365}}, "etcd:tls:renew_days", None),
    ],
)
def test_each_mistake_names_its_key_and_a_fix(top, key, words):
    pillar, s = settings(**top)
    if key == "etcd:tls:renew_days":  # TLS rules apply only with TLS on
        pillar["tls"] = s["tls"] = dict(s["tls"], enabled=True, ca_minion="ca1", renew_days=365)
        words = "every certificate would be renewed on every run"
    report = etcd_validate.validate(pillar, s, "etcd1")
    hits = [e for e in report["errors"] if e["key"] == key]
    assert hits, report["errors"]
    assert words in hits[0]["message"] + " " + hits[0]["fix"]
    assert hits[0]["fix"]


def test_the_example_site_passes_with_metrics_on_the_member_address():
    pillar, s = settings(metrics={"address": "member", "textfile": "/var/lib/prometheus/node-exporter/etcd.prom"})
    assert etcd_validate.validate(pillar, s, "etcd1")["errors"] == []


@pytest.mark.parametrize(("cluster", "member"), [('a"b', "etcd1"), ("storageos", "etcd1\nx 1"), ("storageos", None)])
def test_textfile_refuses_labels_that_are_not_plain_names(cluster, member):
    with pytest.raises(ValueError, match="is not a plain name"):
        etcd_metrics.textfile({"verdict": "ok"}, cluster, member)


def test_an_unknown_verdict_is_the_check_failing():
    text = etcd_metrics.textfile({"verdict": "error", "reasons": [{"code": "bad code with spaces"}]}, "c", "m")
    assert 'etcd_formula_health_verdict{cluster="c",member="m"} 3' in text
    assert "bad code" not in text
