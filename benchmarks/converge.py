"""Cold converge of 3 fresh nodes with `state.apply etcd` versus a plain shell bring-up.

Both use the same 3.5.1 tarball from the lab mirror on the same nodes, with etcd's
default raft timing (100/1000 ms): with the seed's 500/5000 the first election alone is
random between 1 and 4.5 s. Each side is timed from the host, wall clock, median of
--runs samples; the install part and the election (start until every member serves) are
reported apart. Then a second apply (zero changes) against `state.apply` of one no-op
state on the same minions.

The formula is run through Salt's Python API (LocalClient, what the `salt` CLI calls),
so a second of interpreter start-up that any Salt command pays is not counted against
it; the CLI wall time is printed too. The shell side is run both ways an operator
would: all nodes at once, and node after node as the manual procedure does.

Run: `make bench` (or .venv/bin/python -m benchmarks.converge [--runs 5]).
Targets (issue 3): converge / shell <= 1.8; second apply / no-op apply <= 1.2.
"""

import argparse
import concurrent.futures
import copy
import re
import statistics
import subprocess
import time
from pathlib import Path

import yaml

from labkit import lab, pillar
from labkit.session import LabSession, state_results
from labkit.state import RunState

REPO = Path(__file__).resolve().parent.parent
MEMBERS = ["etcd1", "etcd2", "etcd3"]
# Runs inside a node only (through nsenter): leaves it as fresh as the lab booted it.
RESET = (
    "systemctl stop etcd 2>/dev/null; rm -rf /var/lib/etcd /opt/etcd /opt/shell-etcd /usr/local/bin/etcd "
    "/usr/local/bin/etcdctl /usr/local/bin/etcdutl /etc/etcd /etc/systemd/system/etcd.service "
    "/var/lib/etcd-formula /run/etcd-formula /tmp/etcd.tgz; systemctl daemon-reload; "
    "userdel etcd 2>/dev/null; groupdel etcd 2>/dev/null; true"
)
# What an operator would type by hand, per node: download, verify, unpack, user, data
# dir, unit, start; then wait until the member serves.
SHELL = """set -e
t0=$(date +%s.%N)
curl -sf -o /tmp/etcd.tgz {url}
echo "{sha}  /tmp/etcd.tgz" | sha256sum -c --quiet
mkdir -p /opt/shell-etcd && tar -xzf /tmp/etcd.tgz -C /opt/shell-etcd --strip-components=1
useradd --system --no-create-home --shell /usr/sbin/nologin etcd
install -d -o etcd -g etcd -m 0700 /var/lib/etcd
printf '%s\\n' '[Service]' 'Type=notify' 'User=etcd' 'ExecStart=/opt/shell-etcd/etcd {flags}' \
  > /etc/systemd/system/etcd.service
systemctl daemon-reload
t1=$(date +%s.%N)
systemctl start --no-block etcd
echo "$t0 $t1"
"""
WAIT = """until curl -sf http://127.0.0.1:2379/health | grep -q '"health":"true"'; do sleep 0.05; done
date +%s.%N
"""


def reset(session):
    with concurrent.futures.ThreadPoolExecutor(len(MEMBERS)) as pool:
        list(pool.map(lambda n: session.exec(n, "bash", "-c", RESET), MEMBERS))


def shell_bringup(session, run, parallel=True):
    site = session.site()["etcd"]
    url = session.state["mirror"]["url"] + "/etcd-v3.5.1-linux-amd64.tar.gz"
    sha = site["source"]["checksums"]["3.5.1"]
    cluster = ",".join(f"{n}=http://{session.ip(n)}:2380" for n in MEMBERS)

    def one(name):
        ip = session.ip(name)
        flags = (
            f"--name {name} --data-dir /var/lib/etcd "
            f"--listen-client-urls http://{ip}:2379,http://127.0.0.1:2379 --advertise-client-urls http://{ip}:2379 "
            f"--listen-peer-urls http://{ip}:2380 --initial-advertise-peer-urls http://{ip}:2380 "
            f"--initial-cluster {cluster} --initial-cluster-token shell-{run} --initial-cluster-state new"
        )
        script = SHELL.format(url=url, sha=sha, flags=flags)
        return session.exec(name, "bash", "-c", script, check=True, timeout=120).stdout.split()

    def wait(name):
        return session.exec(name, "bash", "-c", WAIT, check=True, timeout=120).stdout.split()

    start = time.monotonic()
    # Node after node is the manual procedure: each node installed and started (without
    # blocking: a first member waits for quorum), then the next; then wait for all.
    with concurrent.futures.ThreadPoolExecutor(len(MEMBERS) if parallel else 1) as pool:
        stamps = [list(map(float, s)) for s in pool.map(one, MEMBERS)]
    with concurrent.futures.ThreadPoolExecutor(len(MEMBERS)) as pool:
        for s, served in zip(stamps, pool.map(wait, MEMBERS), strict=True):
            s.append(float(served[0]))
    total = time.monotonic() - start
    install = max(s[1] - s[0] for s in stamps)
    election = max(s[2] for s in stamps) - max(s[1] for s in stamps)
    return total, install, election


class Api:
    """`state.apply` through salt.client.LocalClient, in this process."""

    def __init__(self, state):
        import salt.client
        import salt.config

        opts = salt.config.client_config(str(Path(state["master"]["conf_dir"]) / "master"))
        self.client = salt.client.LocalClient(mopts=opts)

    def apply(self, sls="etcd"):
        ret = self.client.cmd(MEMBERS, "state.apply", [sls], tgt_type="list", timeout=600)
        return {m: state_results(ret.get(m, "no return")) for m in MEMBERS}


def formula_bringup(session, api, base, run, cli=False):
    site = copy.deepcopy(base)
    site["etcd"]["cluster"]["name"] = f"bench{run}{'c' if cli else ''}"  # fresh site: nothing recorded
    site["etcd"]["tuning"].update(heartbeat_interval=100, election_timeout=1000)
    site["etcd"]["tls"]["enabled"] = False  # the shell side is plain HTTP: compare like with like
    session.set_site(site)
    start = time.monotonic()
    ret = session.apply(MEMBERS) if cli else api.apply()
    total = time.monotonic() - start
    installs, elections = [], []
    for name in MEMBERS:
        states = ret[name]
        failed = [r["comment"] for r in states if r["result"] is False]
        assert not failed, failed
        split = next(i for i, r in enumerate(states) if r["__id__"] == "etcd-service-running-etcd_cluster-running")
        installs.append(sum(r.get("duration", 0) for r in states[:split]) / 1000)
        elections.append(sum(r.get("duration", 0) for r in states[split:]) / 1000)
    return total, max(installs), max(elections)


def timed(fn, runs):
    samples = []
    for _ in range(runs):
        start = time.monotonic()
        fn()
        samples.append(time.monotonic() - start)
    return statistics.median(samples)


def medians(samples):
    return [statistics.median(column) for column in zip(*samples, strict=True)]


def static_sls(rendered):
    """The states `state.show_sls` rendered for one minion, as one plain-YAML SLS file:
    the same states without the formula's files to fetch, Jinja to compile and includes."""
    chunks = []
    for sid, body in rendered.items():
        for module, args in body.items():
            if module.startswith("__"):
                continue
            function = next(a for a in args if isinstance(a, str))
            kwargs, order = [], 0
            for arg in (a for a in args if isinstance(a, dict)):
                key, value = next(iter(arg.items()))
                if key == "order":
                    order = value
                    continue
                if key in ("require", "onchanges", "watch"):
                    value = [r for r in value if "sls" not in r]  # one file: no SLS to require
                    if not value:
                        continue
                kwargs.append({key: value})
            chunks.append((order, sid, {f"{module}.{function}": kwargs}))
    return "#!yaml\n" + yaml.safe_dump({sid: body for _, sid, body in sorted(chunks)}, sort_keys=False)


def layout(session, api, runs):
    """Where the second apply's time goes, on etcd1 alone: the formula, the very same states
    from one static SLS file, and the no-op."""
    name = "etcd1"
    rendered = session.salt(name, "state.show_sls", "etcd")[name]
    (session.state.dir / "extensions" / "lab" / "static.sls").write_text(static_sls(rendered))

    def apply(sls):
        ret = api.client.cmd([name], "state.apply", [sls], tgt_type="list", timeout=600)
        changed = [r["__id__"] for r in state_results(ret.get(name, "no return")) if r.get("changes")]
        assert not changed, (sls, changed)

    apply("lab.static")
    noop, static, formula = (timed(lambda s=sls: apply(s), runs) for sls in ("lab.noop", "lab.static", "etcd"))
    print(
        f"{name} alone: second apply {formula:.2f}s ({formula / noop:.2f}), the same {len(rendered)} states from "
        f"one static SLS {static:.2f}s ({static / noop:.2f}), no-op {noop:.2f}s"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    out = subprocess.run([str(REPO / "lab"), "up", "--nodes", "3"], capture_output=True, text=True, check=True).stdout
    state = RunState.load(re.search(r"lab (\w+) up", out).group(1))
    session = LabSession(state)
    try:
        base = pillar.read(state)
        session.salt("-L", ",".join(MEMBERS), "saltutil.sync_all")
        api = Api(state)
        shell, serial, formula, cli = [], [], [], []
        for run in range(args.runs):
            for samples, fn in (
                (shell, lambda r=run: shell_bringup(session, r)),
                (serial, lambda r=run: shell_bringup(session, r, parallel=False)),
                (formula, lambda r=run: formula_bringup(session, api, base, r)),
                (cli, lambda r=run: formula_bringup(session, api, base, r, cli=True)),
            ):
                reset(session)
                samples.append(fn())
        rows = {
            "shell, all nodes at once": (medians(shell), "start to serving"),
            "shell, node after node": (medians(serial), "start to serving"),
            "formula (Salt API)": (medians(formula), "start to healthy"),
            "formula (salt CLI)": (medians(cli), "start to healthy"),
        }
        for label, ((total, inst, elec), what) in rows.items():
            print(f"{label:26} median {total:5.2f}s  (install {inst:.2f}s, {what} {elec:.2f}s)")
        f_total, s_total, q_total = rows["formula (Salt API)"][0][0], medians(shell)[0], medians(serial)[0]
        print(f"cold converge ratio vs shell node after node: {f_total / q_total:.2f} (target <= 1.8)")
        print(f"cold converge ratio vs shell all at once:     {f_total / s_total:.2f}")
        print(f"  (salt CLI wall time vs all at once: {medians(cli)[0] / s_total:.2f}; {args.runs} samples each)")

        second = timed(api.apply, args.runs)
        noop = timed(lambda: api.apply("lab.noop"), args.runs)
        print(f"second apply (zero changes): median {second:.2f}s; no-op state.apply: median {noop:.2f}s")
        print(f"second apply ratio: {second / noop:.2f} (target <= 1.2)")
        layout(session, api, args.runs)
    finally:
        lab.teardown(state)


if __name__ == "__main__":
    main()
