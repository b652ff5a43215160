"""Metrics for Prometheus on real nodes with the README's example site (TLS, metrics on
the member address): turning the listener on for a running cluster is one guarded roll,
a real Prometheus (Debian's, unpacked by the artifact step) scrapes every member without
a client certificate and fires the shipped no-leader alert, the verdict reaches
node_exporter's textfile, and a member killed with SIGKILL is back without Salt."""

import ctypes
import http.client
import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import yaml
from results import MEMBERS, assert_rolled_once, form_cluster, host_client_bundle, ok, pids, set_site, tls_site

from labkit.preflight import REPO
from labkit.traffic import Traffic, etcd_client, urls

CLUSTER = "metricslab"
RUNNING = "etcd-service-running-etcd_cluster-running"
PROMETHEUS = REPO / "artifacts" / "prometheus"
RULES = REPO / "salt" / "etcd" / "files" / "prometheus" / "etcd-alerts.yml"
TEXTFILE = "/var/lib/prometheus/node-exporter/etcd_formula.prom"


def site(lab, **metrics):
    """The lab's current site (what the last test wrote, not the example afresh) with `metrics`."""
    s = tls_site(lab, CLUSTER, MEMBERS)
    assert s["etcd"]["metrics"]["address"] == "member"  # the example's: a Prometheus elsewhere scrapes
    s["etcd"]["metrics"].update(metrics)
    s["etcd"]["backup"] = {"schedule": False}  # not what this module is about
    s["etcd"]["maintenance"] = {"schedule": False}
    return s


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    """A cluster from before the metrics listener: formed with it off."""
    lab.salt("ca1", "saltutil.sync_all")
    ok(lab.apply("ca1", sls="etcd.ca")["ca1"])
    form_cluster(lab, site(lab, enabled=False))
    lab.writer_tls = host_client_bundle(lab, tmp_path_factory.mktemp("bundle"))
    return lab


def get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (the lab's own http URLs)
        return resp.status, resp.read().decode()


def test_turning_the_listener_on_is_one_guarded_roll(cluster):
    lab = cluster
    for name in MEMBERS:
        with pytest.raises(OSError):
            get(f"http://{lab.ip(name)}:2381/metrics")  # nothing listens yet
    before = pids(lab)
    set_site(lab, site(lab, enabled=True))
    plans = {n: lab.salt(n, "etcd_rolling.plan")[n] for n in MEMBERS}
    assert all(p["reasons"] == ["flags changed: ETCD_LISTEN_METRICS_URLS"] for p in plans.values()), plans
    with Traffic(urls(lab, MEMBERS, "https"), "metrics", tls=lab.writer_tls) as traffic:
        ret = lab.apply(MEMBERS)
        time.sleep(1)
    assert_rolled_once(lab, ret, plans, before, traffic)
    print(f"\nmetrics roll: longest write gap {traffic.longest_gap():.2f} s over {len(traffic.acked)} writes")
    # The metrics port answers plain http without a certificate; the client port still
    # refuses a caller without one.
    for name in MEMBERS:
        status, text = get(f"http://{lab.ip(name)}:2381/metrics")
        assert status == 200 and "etcd_server_has_leader 1" in text
        assert lab.exec(name, "curl", "-sf", "http://127.0.0.1:2381/health", check=True).stdout
        assert not _served_without_certificate(lab.ip(name), lab.writer_tls[0])
    again = lab.apply(MEMBERS)
    assert all(not [r for r in ok(again[n]) if r["changes"]] for n in MEMBERS), again


def _served_without_certificate(ip, ca):
    """Whether the client port answers GET /metrics to a caller with no client certificate."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection(ip, 2379, timeout=3, context=ctx)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):  # ssl.SSLError is an OSError
        return False
    finally:
        conn.close()


def _die_with_parent():
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphan if pytest is killed


@pytest.fixture
def prometheus(cluster, tmp_path):
    """Prometheus on the host side of the bridge, scraping the members every second, with
    the shipped rules. EtcdNoLeader's `for: 1m` becomes 5 s here: the minute is proven by
    `promtool test rules` (tests/unit/test_prometheus_rules.py), the expression here."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "EtcdNoLeader":
                rule["for"] = "5s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    targets = [f"{cluster.ip(n)}:2381" for n in MEMBERS]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [{"job_name": "etcd", "static_configs": [{"targets": targets}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            str(PROMETHEUS / "prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 (single-threaded at this point)
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(what, **params):
        _, text = get(f"{api}/{what}?{urllib.parse.urlencode(params)}")
        return json.loads(text)["data"]

    try:
        cluster.wait(lambda: _answers(api), timeout=30, what="Prometheus to answer")
        yield query
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _answers(api):
    try:
        return get(f"{api}/status/buildinfo")[0] == 200
    except OSError:
        return False


def test_prometheus_scrapes_every_member_and_fires_no_leader(cluster, prometheus):
    lab = cluster
    want = {f"{lab.ip(n)}:2381" for n in MEMBERS}

    def all_up():
        targets = prometheus("targets")["activeTargets"]
        return {t["labels"]["instance"] for t in targets if t["health"] == "up"} == want

    lab.wait(all_up, timeout=30, what="Prometheus to scrape all three members")
    leaders = prometheus("query", query='etcd_server_has_leader{job="etcd"}')["result"]
    assert sorted((r["metric"]["instance"], r["value"][1]) for r in leaders) == sorted((i, "1") for i in want)
    assert not [a for a in prometheus("alerts")["alerts"] if a["state"] == "firing"]
    survivor = "etcd3"
    try:
        for name in ("etcd1", "etcd2"):
            lab.exec(name, "systemctl", "stop", "etcd", check=True)

        def no_leader_fires():
            firing = [a for a in prometheus("alerts")["alerts"] if a["state"] == "firing"]
            return [a["labels"]["instance"] for a in firing if a["labels"]["alertname"] == "EtcdNoLeader"]

        lab.wait(no_leader_fires, timeout=90, interval=1, what="EtcdNoLeader to fire")
        assert no_leader_fires() == [f"{lab.ip(survivor)}:2381"]
    finally:
        for name in ("etcd1", "etcd2"):
            lab.exec(name, "systemctl", "start", "etcd", check=True)
    lab.wait(
        lambda: lab.salt("etcd1", "etcd_health.healthy")["etcd1"]["healthy"], timeout=60, what="the cluster healthy"
    )


def test_the_verdict_reaches_node_exporters_textfile(cluster):
    lab = cluster
    before = pids(lab)
    set_site(lab, site(lab, enabled=True, textfile=TEXTFILE))
    lab.exec("etcd1", "mkdir", "-p", TEXTFILE.rsplit("/", 1)[0], check=True)
    # The health job reads the applied settings, not the pillar: the switch takes an apply,
    # and it is no flag, so nothing restarts.
    ret = lab.apply(MEMBERS)
    for name in MEMBERS:
        ok(ret[name])
    assert pids(lab) == before
    report = lab.salt("etcd1", "etcd_health.health", "event=True")["etcd1"]
    text = lab.exec("etcd1", "cat", TEXTFILE, check=True).stdout
    code = {"ok": 0, "degraded": 1, "critical": 2}[report["verdict"]]
    assert f'etcd_formula_health_verdict{{cluster="{CLUSTER}",member="etcd1"}} {code}' in text, text
    for reason in report["reasons"]:
        assert f'code="{reason["code"]}"' in text
    assert lab.exec("etcd1", "stat", "-c", "%a", TEXTFILE, check=True).stdout.strip() == "644"
    # node_exporter's parser is Prometheus': promtool reads the file as a scrape would.
    check = subprocess.run(
        [str(PROMETHEUS / "promtool"), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_member_killed_with_sigkill_is_back_without_salt(cluster):
    lab = cluster
    name = "etcd2"
    c = etcd_client.Client(urls(lab, [name], "https"), 1, *lab.writer_tls)
    restarts = lab.exec(name, "systemctl", "show", "-p", "NRestarts", "--value", "etcd", check=True).stdout.strip()
    lab.exec(name, "systemctl", "kill", "--signal=KILL", "etcd", check=True)
    killed = time.monotonic()

    def serving():
        try:
            return c.health(urls(lab, [name], "https")[0])
        except etcd_client.EtcdError:
            return False

    time.sleep(0.5)
    lab.wait(serving, timeout=60, interval=0.1, what=f"{name} to serve again")
    back = time.monotonic() - killed
    after = lab.exec(name, "systemctl", "show", "-p", "NRestarts", "--value", "etcd", check=True).stdout.strip()
    assert int(after) == int(restarts) + 1
    print(f"\nSIGKILL: {name} serving again after {back:.1f} s (RestartSec=2s)")
