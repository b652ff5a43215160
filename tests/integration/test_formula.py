"""`state.apply etcd` on real nodes: a healthy 3-member cluster from the site pillar.

The tests run in file order and share the lab: dry run, bad pillars, bootstrap, re-run,
changes that only report a pending restart, a refused checksum, a wiped member, a
second cluster of 3.4.23 from the salt:// fileserver, and a masterless single node.
"""

import json

import pytest
import yaml
from results import ETCDCTL, MEMBERS, by_id, changed, ok, set_site, wipe


@pytest.fixture(scope="module", autouse=True)
def plain_http(lab):
    """Issue 3's behaviour over plain HTTP; TLS has its own module (test_tls.py)."""
    left = [n for n in MEMBERS if lab.exec(n, "test", "-e", "/etc/systemd/system/etcd.service").returncode == 0]
    assert not left, f"{left}: an earlier module left etcd installed (end it with results.tear_down)"
    site = lab.site()
    site["etcd"]["tls"]["enabled"] = False
    set_site(lab, site)


def etcd_pid(lab, name):
    return lab.exec(name, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip()


def test_dry_run_on_fresh_nodes_changes_nothing(lab):
    before = {n: lab.digest(n) for n in MEMBERS}
    ret = lab.apply(MEMBERS, "test=True")
    for name in MEMBERS:
        states = by_id(ret[name])
        assert all(r["result"] in (None, True) for r in ret[name]), ret[name]
        running = states["etcd-service-running-etcd_cluster-running"]
        assert running["result"] is None
        assert "would start etcd (new, initial-cluster-state new)" in running["comment"]
        assert (
            "would download and verify etcd 3.5.1" in states["etcd-install-binaries-etcd_install-installed"]["comment"]
        )
        assert lab.digest(name) == before[name]
    assert lab.exec("etcd1", "test", "-e", "/usr/local/bin/etcd").returncode == 1


def _set(site, path, value):
    node = site["etcd"]
    keys = path.split(":")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is KeyError:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value


BAD = [
    ("cluster:name", KeyError, "etcd:cluster:name"),
    ("members", {}, "etcd:members"),
    ("members:etcd2:address", "LAB:etcd1", "etcd:members:etcd2:address"),
    ("members:etcd2:address", "etcd2.lan", "etcd:members:etcd2:address"),
    ("members:etcd1:address", "LAB:unused", "is not an address of this node (etcd1)"),
    ("ports:client", 70000, "etcd:ports:client"),
    ("ports:client", 2380, "etcd:ports:peer"),
    ("advertise", "dns", "etcd:advertise"),
    ("version", "3.5", "etcd:version"),
    ("version", "3.5.99", "etcd:source:checksums"),
    ("source:checksums:3.5.1", "not-a-sha", "etcd:source:checksums:3.5.1"),
    ("tuning:election_timeout", 2000, "etcd:tuning:election_timeout"),
    ("tunning", {"heartbeat_interval": 100}, "did you mean `tuning`"),
]


@pytest.mark.parametrize(("path", "value", "expect"), BAD, ids=[b[0] + "=" + str(b[1]) for b in BAD])
def test_bad_pillar_fails_at_the_first_state_and_changes_nothing(lab, site, path, value, expect):
    if value == "LAB:etcd1":
        value = lab.ip("etcd1")
    elif value == "LAB:unused":  # in the lab's subnet, on no node
        value = lab.ip("etcd1").rsplit(".", 1)[0] + ".250"
    _set(site, path, value)
    lab.set_site(site)
    before = lab.digest("etcd1")
    results = lab.apply("etcd1")["etcd1"]
    first = results[0]
    assert first["__id__"] == "etcd-validate-settings-etcd_cluster-validated"
    assert first["result"] is False
    assert expect in first["comment"] and "fix:" in first["comment"]
    ran = [
        (r["__id__"], r["comment"])
        for r in results[1:]
        if r["result"] is not False and r["__id__"] != "etcd-unit-module-run"
    ]
    assert not ran, ran
    assert lab.digest("etcd1") == before


def test_minion_that_is_not_a_member_is_refused(lab):
    # etcd4 gets the site pillar but is not listed and holds no etcd.
    before = lab.digest("etcd4")
    first = lab.apply("etcd4")["etcd4"][0]
    assert first["result"] is False
    assert "this minion (etcd4) is not a member" in first["comment"]
    assert lab.digest("etcd4") == before


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [("members:etcd4", "LAB:etcd4", "etcd:members"), ("tuning:quota_backend_bytes", 16 * 1024**3, "etcd:tuning:quota")],
)
def test_even_members_and_big_quota_warn(lab, site, path, value, key):
    if value == "LAB:etcd4":
        value = {"address": lab.ip("etcd4")}
    _set(site, path, value)
    lab.set_site(site)
    lab.salt("etcd1", "saltutil.refresh_pillar", "wait=True")  # exec calls read the minion's pillar
    report = lab.salt("etcd1", "etcd_cluster.validate")["etcd1"]
    assert report["valid"] is True
    assert [w for w in report["warnings"] if w["key"].startswith(key)], report


def test_apply_on_all_members_forms_a_healthy_cluster(lab):
    ret = lab.apply(MEMBERS)
    for name in MEMBERS:
        ok(ret[name])
    listing = lab.salt("etcd1", "etcd_cluster.members")["etcd1"]
    assert sorted(m["name"] for m in listing["members"]) == MEMBERS
    assert all(m["started"] and not m["is_learner"] for m in listing["members"])
    assert {m["client_urls"][0] for m in listing["members"]} == {f"http://{lab.ip(n)}:2379" for n in MEMBERS}
    health = lab.salt("etcd2", "etcd_health.healthy")["etcd2"]
    assert health["healthy"] is True, health
    # A write through one member is read back through another.
    assert lab.exec("etcd1", *ETCDCTL, "put", "/formula/probe", "written-on-etcd1").returncode == 0
    got = lab.exec("etcd3", *ETCDCTL, "get", "--print-value-only", "/formula/probe").stdout.strip()
    assert got == "written-on-etcd1"


def test_files_modes_owner_and_unit(lab):
    stat = lab.exec("etcd1", "stat", "-c", "%a %U %G", "/var/lib/etcd", "/etc/etcd/etcd.env", "/etc/etcd").stdout
    assert stat.split("\n")[:3] == ["700 etcd etcd", "640 root etcd", "750 root etcd"]
    assert lab.exec("etcd1", "systemd-analyze", "verify", "/etc/systemd/system/etcd.service").returncode == 0
    props = lab.exec(
        "etcd1", "systemctl", "show", "etcd", "-p", "Type,User,Restart,LimitNOFILE,TimeoutStopUSec,NoNewPrivileges"
    ).stdout
    for want in ("Type=notify", "User=etcd", "Restart=always", "LimitNOFILE=40000", "NoNewPrivileges=yes"):
        assert want in props
    stop = next(line for line in props.splitlines() if line.startswith("TimeoutStopUSec="))
    assert stop.split("=")[1] in ("20s", "25s", "30s") or "min" in stop
    assert lab.exec("etcd1", "/usr/local/bin/etcd", "--version").stdout.startswith("etcd Version: 3.5.1")


def test_second_apply_changes_nothing(lab):
    ret = lab.apply(MEMBERS)
    for name in MEMBERS:
        assert changed(ok(ret[name])) == [], ret[name]


def files(lab, name):
    """The node's files against the host image, without etcd's own raft log and snapshots
    (a running cluster writes them by itself, e.g. the cluster version after forming)."""
    return {k: v for k, v in lab.digest(name).items() if not k.startswith("var/lib/etcd/member/")}


# Issue 16's cases, all in one pillar: each is named in the first state's comment.
MANY_BAD = [
    ("extra_flags", {"log-level": "info\nETCD_INITIAL_CLUSTER_STATE=new"}, "etcd:extra_flags:log-level"),
    ("extra_flags:client_cert_auth", "false", "etcd:extra_flags:client_cert_auth"),
    ("extra_flags:LISTEN_CLIENT_URLS", "http://0.0.0.0:2379", "etcd:extra_flags:LISTEN_CLIENT_URLS"),
    ("cluster:name", "../../../tmp/evil", "etcd:cluster:name"),
    ("paths:data", "var/lib/etcd", "etcd:paths:data"),
    ("paths:config_dir", "/etc", "etcd:paths:config_dir"),
    ("user", "root", "etcd:user"),
    ("members:etcd1:fqdn", "bad_name!", "etcd:members:etcd1:fqdn"),
]


@pytest.mark.parametrize(
    "bad", [MANY_BAD, [("members", ["etcd1", "etcd2", "etcd3"], "etcd:members")]], ids=["many-at-once", "members-list"]
)
def test_bad_pillar_on_a_running_cluster_is_named_at_the_first_state_and_changes_nothing(lab, site, bad):
    for path, value, _ in bad:
        _set(site, path, value)
    lab.set_site(site)
    before = {n: (files(lab, n), etcd_pid(lab, n)) for n in MEMBERS}
    ret = lab.apply(MEMBERS)
    for name in MEMBERS:
        first = ret[name][0]
        assert first["__id__"] == "etcd-validate-settings-etcd_cluster-validated" and first["result"] is False
        missing = [key for _, _, key in bad if key not in first["comment"]]
        assert not missing, (missing, first["comment"])
        assert "Traceback" not in json.dumps(ret[name])
        assert (files(lab, name), etcd_pid(lab, name)) == before[name], f"{name} changed"


def test_flag_change_dry_run_plans_a_guarded_restart_and_restarts_nothing(lab, site):
    pids = {n: etcd_pid(lab, n) for n in MEMBERS}
    site["etcd"].setdefault("tuning", {})["heartbeat_interval"] = 400
    lab.set_site(site)
    ret = lab.apply(MEMBERS, "test=True")
    for name in MEMBERS:
        running = by_id(ret[name])["etcd-service-running-etcd_cluster-running"]
        assert "would restart etcd through the guarded path" in running["comment"]
        assert "flags changed: ETCD_HEARTBEAT_INTERVAL" in running["comment"]
        assert etcd_pid(lab, name) == pids[name]


def test_initial_flags_never_count_as_a_change(lab, site):
    pid = etcd_pid(lab, "etcd1")
    site["etcd"]["cluster"]["token"] = "another-token"
    lab.set_site(site)
    ret = lab.apply(["etcd1"])["etcd1"]
    assert "etcd-config-env-file-managed" in changed(ok(ret))
    assert by_id(ret)["etcd-service-running-etcd_cluster-running"]["comment"] == "etcd is running"
    assert etcd_pid(lab, "etcd1") == pid


def test_back_to_the_site_values_nothing_restarts(lab):
    pids = {n: etcd_pid(lab, n) for n in MEMBERS}
    ret = lab.apply(MEMBERS)
    for name in MEMBERS:
        assert by_id(ok(ret[name]))["etcd-service-running-etcd_cluster-running"]["comment"] == "etcd is running"
        assert etcd_pid(lab, name) == pids[name]


def test_checksum_mismatch_fails_clearly_and_keeps_the_binary(lab, site):
    # Stop etcd on one member so the install would switch binaries if it accepted the file.
    lab.exec("etcd3", "systemctl", "stop", "etcd", check=True)
    try:
        site["etcd"]["version"] = "3.4.23"
        site["etcd"]["source"]["checksums"]["3.4.23"] = "0" * 64
        lab.set_site(site)
        install = by_id(lab.apply("etcd3")["etcd3"])["etcd-install-binaries-etcd_install-installed"]
        assert install["result"] is False
        assert "checksum mismatch" in install["comment"] and "refused" in install["comment"]
        assert lab.exec("etcd3", "/usr/local/bin/etcd", "--version").stdout.startswith("etcd Version: 3.5.1")
        assert lab.exec("etcd3", "test", "-e", "/opt/etcd/3.4.23").returncode == 1
    finally:
        lab.exec("etcd3", "systemctl", "start", "etcd", check=True)


# A damaged WAL is a row of the fault catalogue (test_reliability.py: garbage data dir).


def test_wiped_member_is_refused_not_rebootstrapped(lab):
    lab.exec("etcd3", "systemctl", "stop", "etcd", check=True)
    lab.exec("etcd3", "rm", "-rf", "/var/lib/etcd/member", check=True)
    running = by_id(lab.apply("etcd3")["etcd3"])["etcd-service-running-etcd_cluster-running"]
    assert running["result"] is False
    assert "its data is lost" in running["comment"] and "never re-bootstrap" in running["comment"]
    assert lab.exec("etcd3", "systemctl", "is-active", "etcd").stdout.strip() != "active"
    assert lab.exec("etcd3", "test", "-e", "/var/lib/etcd/member").returncode == 1
    # The other two keep quorum and the data.
    got = lab.exec("etcd1", *ETCDCTL, "get", "--print-value-only", "/formula/probe").stdout.strip()
    assert got == "written-on-etcd1"


def test_a_formed_cluster_is_never_bootstrapped_again(lab):
    # Every member lost its data: the recorded cluster ID (mine) stops a silent new cluster.
    wipe(lab, MEMBERS)
    ret = lab.apply(MEMBERS)
    for name in MEMBERS:
        running = by_id(ret[name])["etcd-service-running-etcd_cluster-running"]
        assert running["result"] is False
        assert "refusing to bootstrap a second cluster" in running["comment"]


def test_bootstrap_false_refuses_a_new_cluster(lab, site):
    site["etcd"]["cluster"]["name"] = "lab34"
    site["etcd"]["cluster"]["bootstrap"] = False
    lab.set_site(site)
    running = by_id(lab.apply(["etcd1"])["etcd1"])["etcd-service-running-etcd_cluster-running"]
    assert running["result"] is False and "etcd:cluster:bootstrap" in running["comment"]


# A 3.4 cluster from the Salt fileserver: test_rolling's fixture forms one (pre-vote checked there).


def masterless_from_readme(repo):
    """The README's Masterless section: (minion config, its salt-call commands)."""
    section = (repo / "README.md").read_text().split("### Masterless\n", 1)[1].split("\n### ", 1)[0]
    config, commands = section.split("```")[1::2]
    config = yaml.safe_load(config.split("\n", 1)[1])  # after the ```yaml line's language tag
    lines = [line.strip() for line in commands.splitlines() if line.strip().startswith("salt-call ")]
    return config, lines


def test_masterless_single_node(lab, repo):
    # The README's config and commands as written; the lab's node name (etcd4) for etcd1,
    # the formula checked out at /srv/etcd-formula (a link to this repository), and the
    # venv's salt-call (nodes have no Salt on their PATH).
    config, lines = masterless_from_readme(repo)
    assert config["id"] == "etcd1" and len(lines) == 2, (config, lines)
    assert all(line.startswith("salt-call -c /srv/etcd-local --local ") for line in lines), lines
    conf = "/srv/etcd-local"
    config["id"] = "etcd4"
    config["enable_fqdns_grains"] = False  # the lab's nodes have no DNS: a 5 s grain timeout
    ip = lab.ip("etcd4")
    site = lab.site()["etcd"]
    site.update(members={"etcd4": {"address": ip}}, version="3.5.1")
    site["cluster"] = {"name": "solo", "bootstrap": True}
    site["source"]["url"] = f"file://{repo}/artifacts/etcd-releases/etcd-v{{version}}-linux-amd64.tar.gz"
    files = {
        f"{conf}/minion": yaml.safe_dump(config),
        f"{conf}/pillar/top.sls": "base:\n  '*':\n    - site\n",
        f"{conf}/pillar/site.sls": json.dumps({"etcd": site}),
    }
    lab.exec("etcd4", "mkdir", "-p", f"{conf}/pillar", check=True)
    lab.exec("etcd4", "ln", "-sfn", str(repo), "/srv/etcd-formula", check=True)
    for path, text in files.items():
        lab.exec("etcd4", "bash", "-c", f"cat > {path} <<'EOF'\n{text}\nEOF", check=True)

    def salt_call(line):
        return [str(repo / ".venv/bin/salt-call"), *line.split()[1:], "--out=json"]

    assert lab.exec("etcd4", *salt_call(lines[0]), timeout=120).returncode == 0
    first = json.loads(lab.exec("etcd4", *salt_call(lines[1]), timeout=300).stdout)["local"]
    assert all(r["result"] for r in first.values()), first
    members = lab.exec("etcd4", *ETCDCTL, "member", "list").stdout.strip().splitlines()
    assert len(members) == 1 and "etcd4" in members[0] and "started" in members[0]
    again = json.loads(lab.exec("etcd4", *salt_call(lines[1]), timeout=300).stdout)["local"]
    assert [k for k, r in again.items() if r["changes"]] == []
    # No minion daemon to ask: the health schedule went to the configuration, once.
    schedule = lab.exec("etcd4", "cat", f"{conf}/minion.d/_schedule.conf").stdout
    assert "etcd-health" in schedule and "etcd_health.health" in schedule, schedule
    health = salt_call(f"salt-call -c {conf} --local etcd_health.health")
    report = json.loads(lab.exec("etcd4", *health, timeout=60).stdout)["local"]
    assert report["verdict"] == "ok" and [m["name"] for m in report["members"]] == ["etcd4"], report
