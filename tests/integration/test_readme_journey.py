"""The README's walkthrough, run as a new user runs it: `make lab`, then every command of
the README's "Walkthrough" block in its order, on the example site with its defaults
(TLS on, the seed's 500/5000 ms raft timing, the health schedule every 60 s).

The commands are read from the README itself: the test fails when the README's list and
the steps below differ, so the manual and this test change together. Each step checks
what the README's comment says the user will see. The test adds only `LAB_RUN` (its own
run, beside any other) and, to read a `./lab salt` answer as data, `--out=json --static`
where the README's command sets no output format. It makes its own lab run through
`make lab` (a detached master, as a user gets), and `./lab down` removes it, also when a
step fails.
"""

import json
import os
import re
import shlex
import subprocess
import time

import pytest

from labkit import lab
from labkit.preflight import REPO
from labkit.state import RunState, list_runs

README = (REPO / "README.md").read_text()
MEMBERS = ["etcd1", "etcd2", "etcd3"]


def walkthrough():
    """The commands of the README's walkthrough block, comments stripped, in order."""
    section = README.split("## Walkthrough", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


class User:
    """A shell in the checkout, as the user has it, pointed at one lab run."""

    def __init__(self):
        self.env = dict(os.environ)
        self.done = []
        self.background = None

    def run(self, command, timeout=120, check=True):
        self.done.append(command)
        return self.probe(command, timeout, check)

    def probe(self, command, timeout=120, check=True):
        """A look of the test's own (not one of the README's commands)."""
        proc = subprocess.run(
            ["bash", "-c", command], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert proc.returncode == 0, f"$ {command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    def salt(self, command, timeout=120):
        """A `./lab salt` command of the README, its answer as data."""
        self.done.append(command)
        argv = [*shlex.split(command)[1:], "--out=json", "--static"]
        proc = subprocess.run(["./lab", *argv], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"$ {command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return json.loads(proc.stdout)

    def start(self, command):
        """`command &`: started in the background, awaited by `wait`."""
        self.done.append(command + " &")
        self.background = subprocess.Popen(
            ["bash", "-c", command], cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait(self, timeout=90):
        self.done.append("wait")
        out, err = self.background.communicate(timeout=timeout)
        assert self.background.returncode == 0, err[-3000:]
        return out


def events(out):
    """[(tag, data)] of `salt-run state.event` output (a tag, a tab, the JSON)."""
    parsed = []
    for line in out.splitlines():
        if "\t" in line:
            tag, data = line.split("\t", 1)
            parsed.append((tag, json.loads(data)))
    return parsed


def until(what, probe, timeout, interval=1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def down_windows(user, name):
    """(stop began, ready again) of the member's last etcd restart, on the monotonic clock
    every node shares with the host (one kernel)."""
    props = "ActiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic"
    out = user.probe(f"./lab exec {name} systemctl show etcd -p {props}")
    values = dict(line.split("=", 1) for line in out.split())
    return int(values["ActiveExitTimestampMonotonic"]), int(values["ActiveEnterTimestampMonotonic"])


@pytest.fixture
def user():
    before = {s["id"] for s in list_runs()}
    user = User()
    yield user
    if user.background and user.background.poll() is None:
        user.background.kill()
    for state in list_runs():  # the run `make lab` made, whatever step failed
        if state["id"] not in before:
            subprocess.run(["./lab", "down"], cwd=REPO, env=dict(os.environ, LAB_RUN=state["id"]), check=False)


def test_the_readme_walkthrough_as_written(user):  # noqa: PLR0915 (one story, step by step)
    steps = walkthrough()
    assert steps[0] == "make lab" and steps[-1] == "./lab down", steps
    before = {s["id"] for s in list_runs()}
    out = user.run("make lab", timeout=600)
    ours = [s for s in list_runs() if s["id"] not in before]
    assert len(ours) == 1, out[-2000:]
    user.env["LAB_RUN"] = ours[0]["id"]
    assert out.count("| started |") == 3 and "healthy: true" in out, out[-3000:]

    out = user.run("./lab exec etcd1 etcdctl member list -w table")
    rows = [r for r in out.splitlines() if "| started |" in r]
    assert sorted(r.split("|")[3].strip() for r in rows) == MEMBERS
    assert all("https://" in r and "http://" not in r for r in rows), out

    out = user.run("./lab salt etcd1 etcd_health.healthy --out=yaml")
    assert "healthy: true" in out and "problems: []" in out, out

    reports = user.salt("./lab salt 'etcd*' etcd_health.health")
    assert sorted(reports) == MEMBERS
    for name, report in reports.items():
        assert report["verdict"] == "ok", (name, report["reasons"])
        days = {os.path.basename(p): c["days_left"] for p, c in report["certificates"].items()}
        assert set(days) == {"client-ca.crt", "peer-ca.crt", "server.crt", "peer.crt", "admin.crt", "gateway.crt"}, days
        assert all(d > 300 for d in days.values()), days

    # The schedule every 60 s: each member's own check, sent by the minion daemon.
    out = user.run("./lab salt-run state.event 'etcd/*/health/*' count=3", timeout=150)
    seen = events(out)
    assert len(seen) == 3 and all(tag == "etcd/storageos/health/ok" for tag, _ in seen), out[-3000:]
    assert all(d["data"]["certificates"] and d["data"]["minion"] == d["id"] for _, d in seen)

    out = user.run("./lab salt-run etcd.report")
    assert re.search(r"^cluster storageos \(\w+\): OK,", out, re.M), out
    for name in MEMBERS:
        row = next(r for r in out.splitlines() if r.strip().startswith(name + " "))
        assert " yes " in row and " 364 " in row and " ok " in row, row

    out = user.run("./lab salt-run etcd.backup storageos", timeout=300)
    assert "copied to the master and verified there by sha256" in out, out
    name = re.search(r"storageos-\d{8}T\d{6}Z-r\d+\.db(\.gz)?", out).group(0)
    out = user.run("./lab salt-run etcd.backups storageos")
    row = next(r for r in out.splitlines() if r.endswith(name))
    assert " yes " in row and any(f" {m} " in row for m in MEMBERS), out

    user.start("./lab salt-run state.event 'etcd/*/alert' count=1")
    time.sleep(2)  # the listener subscribes before anything happens
    user.run("./lab crash etcd3")
    answer = user.salt("./lab salt etcd1 schedule.run_job etcd-health")
    assert answer["etcd1"]["result"] is True, answer

    def degraded():
        text = subprocess.run(
            ["./lab", "salt-run", "etcd.report"], cwd=REPO, env=user.env, capture_output=True, text=True, check=False
        ).stdout
        return text if "DEGRADED" in text and "[member_down] etcd3" in text else None

    user.done.append("./lab salt-run etcd.report")
    until("a degraded report naming etcd3", degraded, timeout=30)
    (tag, alert), *_ = events(user.wait(timeout=60))
    # Fired on the master by the runner: the alert is the event's data itself.
    assert tag == "etcd/storageos/alert" and alert["verdict"] == "degraded", alert
    assert {"code": "member_down", "member": "etcd3"}.items() <= alert["reasons"][0].items()

    user.run("./lab boot etcd3")
    user.done.append("./lab salt etcd1 etcd_health.healthy --out=yaml")  # retried until true
    until(
        "the cluster healthy again",
        lambda: "healthy: true" in user.probe("./lab salt etcd1 etcd_health.healthy --out=yaml", check=False),
        timeout=90,
        interval=2,
    )

    out = user.run("./lab pillar set etcd:extra_flags '{enable-pprof: true}'")
    user.run("./lab salt '*' saltutil.refresh_pillar")
    ret = user.salt("./lab salt 'etcd*' state.apply etcd", timeout=600)
    windows = {}
    for name in MEMBERS:
        results = {v["__id__"]: v for v in ret[name].values()}
        assert all(v["result"] for v in results.values()), [v["comment"] for v in results.values() if not v["result"]]
        running = results["etcd-service-running-etcd_cluster-running"]
        assert "ETCD_ENABLE_PPROF" in str(running["changes"]["restarted"]["reasons"]), running
        windows[name] = down_windows(user, name)
        assert "ETCD_ENABLE_PPROF=true" in user.probe(f"./lab exec {name} cat /etc/etcd/etcd.env")
    # One member at a time: no two members' restarts (stop began .. ready again) overlap.
    spans = sorted(windows.values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), windows

    ret = user.salt("./lab salt 'etcd*' state.apply etcd", timeout=600)
    for name in MEMBERS:
        changed = [v["__id__"] for v in ret[name].values() if v["changes"]]
        assert all(v["result"] for v in ret[name].values()) and changed == [], (name, changed)

    state = RunState.load(user.env["LAB_RUN"])
    user.run("./lab down")
    assert state["id"] not in {s["id"] for s in list_runs()}
    assert lab.leftovers(state) == []  # no node, mount, bridge, veth or master process

    assert user.done == steps, "the README's walkthrough and this test differ"
