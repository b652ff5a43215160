"""The fault catalogue (issue 19): one fault per row against a 3-member cluster of the
README's example site (TLS), each with the same continuous writer and the same checker
(every acknowledged write read back, the members' hashkv compared), and a table of what
was survived and what was lost.

`make test` runs the rows CI can afford (CI_ROWS); `make reliability` runs them all
(RELIABILITY=all) and prints the table, which the README's Reliability section shows.
Each row says what is expected of it next to the fault.
"""

import json
import os
import sys
import threading
import time

import pytest
from results import MEMBERS, by_id, form_cluster, host_client_bundle, ok, pids, set_site, tls_site, wipe

from labkit.preflight import REPO
from labkit.traffic import Traffic, assert_no_loss, urls

sys.path.insert(0, str(REPO / "_utils"))
import etcd_client  # noqa: E402
import etcd_lock  # noqa: E402

CLUSTER = "catlab"
SERVICE = {"restart_timeout": 30, "lock_ttl": 10, "health_timeout": 15, "lock_wait": 180}
# While a fault lasts: a member refuses its restart after 5 s of an unhealthy cluster (the
# members wait one after the other under the lock, so this sets how long a row takes).
QUICK = dict(SERVICE, health_timeout=5)
RUNNING = "etcd-service-running-etcd_cluster-running"
GATE = "etcd-health-cluster-etcd_health-healthy"
LOCK = f"/etcd-formula/{CLUSTER}/lock"
CI_ROWS = {"crash mid-apply", "garbage data dir", "leader partition during a roll"}
ROWS = []  # filled by each row, printed and written at the end of the module
TABLE = REPO / "build" / "reliability.md"


def row_enabled(fault):
    if fault not in CI_ROWS and os.environ.get("RELIABILITY") != "all":
        pytest.skip(f"'{fault}': make reliability runs this row (RELIABILITY=all)")


def site(lab, service=SERVICE, **etcd):
    s = tls_site(lab, CLUSTER, MEMBERS)
    s["etcd"]["tuning"].update(heartbeat_interval=100, election_timeout=1000)
    s["etcd"]["service"] = dict(service)
    s["etcd"]["health"] = {"schedule": False}
    s["etcd"]["tuning"].update(etcd.pop("tuning", {}))
    s["etcd"].update(etcd)
    return s


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    lab.salt("ca1", "saltutil.sync_all")
    set_site(lab, site(lab))
    ok(lab.apply("ca1", sls="etcd.ca")["ca1"])
    form_cluster(lab, site(lab))
    lab.writer_tls = host_client_bundle(lab, tmp_path_factory.mktemp("bundle"))
    yield lab
    lab.heal()
    if ROWS:
        text = table(ROWS)
        TABLE.parent.mkdir(exist_ok=True)
        TABLE.write_text(text)
        print("\n" + text)
    wipe(lab, MEMBERS)


class Fault:
    """The same writer and checker for every row: Traffic's writes rotating over the
    members, and every 100 ms how many members are up (their etcd answers), counting the
    members this row cut off as down whatever they answer. Up, not /health: during the
    election after a leader is lost no member serves for a second or so, yet no quorum
    is lost (the writer's longest gap shows that second)."""

    def __init__(self, lab, fault, expected):
        self.lab, self.fault, self.expected = lab, fault, expected
        self.traffic = Traffic(urls(lab, MEMBERS, "https"), fault.replace(" ", "-"), tls=lab.writer_tls)
        self.cut = set()
        self.serving = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample)
        self.row = {"fault": fault, "expected": expected, "marks": {}}
        self._started = time.monotonic()

    def mark(self, what):
        """When a step of the row ended, in s from its start (printed with the row)."""
        self.row["marks"][what] = round(time.monotonic() - self._started, 1)

    def __enter__(self):
        self.traffic.__enter__()
        self._sampler.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._sampler.join()
        self.traffic.__exit__(*exc)

    def _sample(self):
        c = etcd_client.Client(urls(self.lab, MEMBERS, "https"), 0.09, *self.lab.writer_tls)
        while not self._stop.is_set():
            up = [n for n, u in zip(MEMBERS, c.endpoints, strict=True) if n not in self.cut and self._up(c, u)]
            self.serving.append(len(up))
            self._stop.wait(0.1)

    @staticmethod
    def _up(c, url):
        try:
            c.version(url)
            return True
        except etcd_client.EtcdError:
            return False

    def healthy_again(self, since, timeout=120):
        """Seconds from `since` (the fault removed: a boot, a heal; or struck, for a fault
        nobody removes) until the gate finds nothing wrong (asked on etcd1)."""

        def healthy():
            return self.lab.salt("etcd1", "etcd_health.healthy")["etcd1"].get("healthy") is True

        self.lab.wait(healthy, timeout, 1, f"{self.fault}: a healthy cluster again")
        return time.monotonic() - since

    def record(self, said, healed_in, operator="none"):
        acked = assert_no_loss(self.lab, self.traffic)  # raises on any lost acknowledged write
        self.row.update(
            said=said,
            quorum_kept=min(self.serving, default=0) >= 2,
            min_serving=min(self.serving, default=0),
            acked=acked,
            lost=0,
            gap=round(self.traffic.longest_gap(), 2),
            healed_in=round(healed_in, 1),
            operator=operator,
        )
        ROWS.append(self.row)
        print(f"\n{self.fault}: {json.dumps(self.row)}")
        return self.row


def table(rows):
    cols = ("fault", "what the formula said", "quorum kept (min up)", "acked / lost", "longest gap")
    cols += ("healthy again", "operator")
    out = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in rows:
        out.append(
            f"| {r['fault']} | {r['said']} | {'yes' if r['quorum_kept'] else 'NO'} ({r['min_serving']}/3) | "
            f"{r['acked']} / {r['lost']} | {r['gap']} s | {r['healed_in']} s | {r['operator']} |"
        )
    survived = sum(1 for r in rows if r["quorum_kept"] and r["lost"] == 0)
    out.append(
        f"\n{survived} of {len(rows)} faults survived with a clear outcome; acknowledged writes lost: "
        f"{sum(r['lost'] for r in rows)}."
    )
    return "\n".join(out) + "\n"


def short(text, limit=140):
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def cluster_id(lab):
    return lab.salt("etcd1", "etcd_health.healthy")["etcd1"]["cluster_id"]


def test_crash_mid_apply(cluster):
    """A node crashed while `state.apply etcd` runs on all members with a change that needs
    restarts: expected the others converge or say why, nothing is lost, and after the boot
    the next apply converges with the same cluster ID (no re-bootstrap)."""
    fault = "crash mid-apply"
    row_enabled(fault)
    before_id, before = cluster_id(cluster), pids(cluster)
    set_site(cluster, site(cluster, QUICK, tuning={"snapshot_count": 70000}))
    c = etcd_client.Client(urls(cluster, MEMBERS, "https"), 1, *cluster.writer_tls)
    with Fault(cluster, fault, "others converge or say why; same cluster ID after boot") as f:
        results = {}
        worker = threading.Thread(target=lambda: results.update(cluster.apply(MEMBERS, timeout=40)))
        worker.start()
        holder = None
        deadline = time.monotonic() + 60
        while holder is None and time.monotonic() < deadline:
            try:
                raw = c.get(LOCK)
            except etcd_client.EtcdError:
                raw = None
            holder = json.loads(raw)["holder"] if raw else None
            time.sleep(0.05)
        assert holder, "nobody took the lock"
        cluster.crash(holder)
        f.cut.add(holder)
        f.mark("crashed")
        worker.join()
        f.mark("apply returned")
        survivors = [n for n in MEMBERS if n != holder]
        said = {n: by_id(results[n])[RUNNING]["comment"] for n in survivors if isinstance(results.get(n), list | dict)}
        booted = time.monotonic()
        cluster.boot(holder)
        f.mark("booted")
        f.cut.discard(holder)
        healed = f.healthy_again(booted)  # etcd is enabled: it comes back with the node
        idle(cluster, MEMBERS)
        f.mark("jobs ended")
        set_site(cluster, site(cluster, tuning={"snapshot_count": 70000}))
        for states in cluster.apply(MEMBERS).values():
            ok(states)
        f.mark("converged")
        assert cluster_id(cluster) == before_id  # the same cluster: no re-bootstrap
        after = pids(cluster)
        assert all(after[n] != before[n] for n in MEMBERS)
        for name in MEMBERS:
            assert cluster.salt(name, "etcd_rolling.plan")[name]["reasons"] == []
    f.record(
        f"{holder} crashed holding the lock; " + "; ".join(f"{n}: {short(s, 90)}" for n, s in said.items()),
        healed,
        f"boot {holder}, apply again",
    )
    assert f.row["quorum_kept"], f.serving


def test_garbage_data_dir(cluster):
    """A member's WAL overwritten with random bytes: expected a clear report with etcd's own
    reason within seconds, no wipe, no re-bootstrap; the README's replace procedure
    (etcd.orch.replace_member) brings the member back."""
    fault = "garbage data dir"
    row_enabled(fault)
    before_id = cluster_id(cluster)
    with Fault(cluster, fault, "etcd's reason at once, data kept; replace_member brings it back") as f:
        cluster.exec("etcd3", "systemctl", "stop", "etcd", check=True)
        broken = time.monotonic()
        f.cut.add("etcd3")
        wal = cluster.exec(
            "etcd3", "sh", "-c", "ls /var/lib/etcd/member/wal/*.wal | head -1", check=True
        ).stdout.strip()
        cluster.exec("etcd3", "dd", "if=/dev/urandom", f"of={wal}", "bs=64k", "count=1", "conv=notrunc", check=True)
        damaged = cluster.exec("etcd3", "sha256sum", wal, check=True).stdout
        started = time.monotonic()
        running = by_id(cluster.apply("etcd3")["etcd3"])[RUNNING]
        reported_in = time.monotonic() - started
        assert running["result"] is False and "exits with: " in running["comment"] and "wal: " in running["comment"]
        assert "nothing is wiped" in running["comment"], running["comment"]
        assert cluster.exec("etcd3", "sha256sum", wal, check=True).stdout == damaged  # kept as it was
        report = cluster.salt("etcd3", "etcd_health.health")["etcd3"]
        down = [r for r in report["reasons"] if r["code"] == "member_down" and r["member"] == "etcd3"]
        assert report["verdict"] == "degraded" and down and "wal: " in down[0].get("etcd_error", ""), report
        # The documented way back (README: Replace a failed member).
        out, err = cluster.salt_run(
            "state.orch", "etcd.orch.replace_member", "pillar={etcd_orch: {member: etcd3, via: etcd1}}", timeout=300
        )
        assert "Failed:    0" in out, out + err
        aside = cluster.exec("etcd3", "bash", "-c", "ls /var/lib/etcd.removed-*/member/wal/*.wal").stdout.split()
        assert aside, "the damaged data dir was not set aside"
        f.cut.discard("etcd3")
        healed = f.healthy_again(broken)
        assert cluster_id(cluster) == before_id
    f.record(
        f"apply on etcd3 failed in {reported_in:.1f} s: {short(down[0]['etcd_error'], 70)}; health degraded, "
        "member_down with etcd_error; data kept",
        healed,
        "salt-run state.orch etcd.orch.replace_member (README: Replace a failed member)",
    )
    assert f.row["quorum_kept"], f.serving


def leader(lab):
    c = etcd_client.Client(urls(lab, MEMBERS, "https"), 1, *lab.writer_tls)
    names = {m["id"]: m["name"] for m in c.member_list()["members"]}
    for url in c.endpoints:
        try:
            return names[c.status(url)["leader"]]
        except (etcd_client.EtcdError, KeyError):
            continue
    raise AssertionError("no member names a leader")


def idle(lab, names):
    """Wait until no job runs on `names` (a CLI that timed out leaves its jobs running)."""
    lab.wait(lambda: not any(lab.salt(n, "saltutil.running")[n] for n in names), 120, 1, "the jobs to end")


def test_leader_partition_during_a_roll(cluster):
    """The leader cut off from both peers while a roll runs on all members: expected the
    roll stops or waits, never fewer than a quorum serving (the cut member counts as
    down), and the next apply after healing completes it. The cut is made while the
    members' applies wait at the guarded restart for the cluster lock, which the test
    holds meanwhile; each then gates on the cluster's health. (A fault in the instant
    between a member's gate and its restart is one no lock can guard against: the roll
    of 1.4 s per member left no room to cut between two restarts reliably.)"""
    fault = "leader partition during a roll"
    row_enabled(fault)
    before = pids(cluster)
    set_site(cluster, site(cluster, QUICK, tuning={"snapshot_count": 80000}))
    c = etcd_client.Client(urls(cluster, MEMBERS, "https"), 2, *cluster.writer_tls)
    with Fault(cluster, fault, "the roll stops or waits; quorum kept; completes after healing") as f:
        results = {}
        worker = threading.Thread(target=lambda: results.update(cluster.apply(MEMBERS, timeout=120)))
        with etcd_lock.Lock(c, CLUSTER, "catalogue", ttl=10, wait=60, purpose="fault"):
            worker.start()
            time.sleep(5)  # the members' applies reach the guarded restart and wait for the lock
            rolled = [n for n, p in pids(cluster).items() if p != before[n]]
            cut = leader(cluster)
            for other in MEMBERS:
                if other != cut:
                    cluster.partition(cut, other)
            f.cut.add(cut)
        worker.join()
        idle(cluster, MEMBERS)
        healed_at = time.monotonic()
        cluster.heal()
        f.cut.discard(cut)
        healed = f.healthy_again(healed_at)
        comments = {n: by_id(r)[RUNNING]["comment"] for n, r in results.items() if isinstance(r, list | dict)}
        assert not [c for c in comments.values() if "An exception occurred" in c], comments  # a reason, always
        said = {n: short(c, 80) for n, c in comments.items()}
        set_site(cluster, site(cluster, tuning={"snapshot_count": 80000}))
        for states in cluster.apply(MEMBERS).values():
            ok(states)
        for name in MEMBERS:
            assert cluster.salt(name, "etcd_rolling.plan")[name]["reasons"] == []
        assert all(pids(cluster)[n] != before[n] for n in MEMBERS)
    f.record(
        f"{', '.join(rolled) or 'no member'} restarted, then leader {cut} cut off; "
        + "; ".join(f"{n}: {s}" for n, s in sorted(said.items())),
        healed,
        "heal the network, apply again",
    )
    assert f.row["quorum_kept"], f.serving


def test_etcd_killed_with_sigkill(cluster):
    """etcd killed with SIGKILL on one member: expected systemd restarts it
    (RestartSec=2s) and the cluster is healthy again without Salt."""
    fault = "SIGKILL of etcd"
    row_enabled(fault)
    with Fault(cluster, fault, "systemd restarts it; healthy again without Salt") as f:
        pid = pids(cluster, ["etcd2"])["etcd2"]
        cluster.exec("etcd2", "kill", "-9", pid, check=True)
        killed = time.monotonic()
        cluster.wait(lambda: pids(cluster, ["etcd2"])["etcd2"] not in ("", "0", pid), 30, 0.2, "a new etcd on etcd2")
        healed = f.healthy_again(killed)
    f.record("nothing to say: no apply ran; systemd restarted etcd", healed)
    assert f.row["quorum_kept"], f.serving


def test_etcd_binary_deleted(cluster):
    """The etcd binary deleted on one member while it runs: expected the next apply
    detects and restores it (the running process serves meanwhile; a restart, if any,
    goes through the guarded path)."""
    fault = "etcd binary deleted"
    row_enabled(fault)
    with Fault(cluster, fault, "the next apply restores it; etcd keeps serving meanwhile") as f:
        before = pids(cluster, ["etcd2"])
        real = cluster.exec("etcd2", "readlink", "-f", "/usr/local/bin/etcd", check=True).stdout.strip()
        cluster.exec("etcd2", "rm", "-f", real, check=True)
        deleted = time.monotonic()
        states = ok(cluster.apply("etcd2")["etcd2"])
        assert cluster.exec("etcd2", "test", "-x", real).returncode == 0
        version = cluster.exec("etcd2", "/usr/local/bin/etcd", "--version", check=True).stdout.split("\n")[0]
        healed = f.healthy_again(deleted)
        restarted = pids(cluster, ["etcd2"]) != before
        install = by_id(states)["etcd-install-binaries-etcd_install-installed"]
    what = "restarted (guarded)" if restarted else "not restarted"
    f.record(f"install: {short(install['comment'], 80)}; {version}; etcd {what}", healed, "apply")
    assert f.row["quorum_kept"], f.serving
