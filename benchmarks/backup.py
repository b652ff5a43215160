"""Backups and recovery against the plain commands, on a database of 110 MiB live data.

In one lab run (`./lab up --apply`: the example site, mutual TLS, 3 members):
- the formula's snapshot (`etcd_backup.save push=False`: snapshot, read back, gzip,
  sha256, record; the copy to the master excluded), as the record's own
  `prepared_seconds`, against `etcdctl snapshot save` of the same database on the same
  member, timed in the node;
- the formula's restore of all 3 members (`salt-run state.orch etcd.orch.restore`:
  plan, sending, restore, the formula's apply with its health gate) against etcd's
  recovery guide as a shell script run by an operator from the host: per member stop,
  set aside, `etcdutl snapshot restore` with the member's flags, chown, start; then wait
  until the cluster is healthy.

Run: `make bench` (or .venv/bin/python -m benchmarks.backup [--rounds 3]).
Targets (issue 18): snapshot / etcdctl <= 1.2; restore / shell <= 1.5.
"""

import argparse
import json
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from labkit import lab, node
from labkit.state import RunState

REPO = Path(__file__).resolve().parent.parent
MEMBERS = ["etcd1", "etcd2", "etcd3"]
FILL = (
    "head -c 786432 /dev/urandom | base64 -w0 > /tmp/blob && "
    "for i in $(seq 110); do etcdctl put /bulk/$i < /tmp/blob > /dev/null || exit 1; done"
)
TIMED = (
    "import subprocess, sys, time; t = time.monotonic(); "
    "subprocess.run(sys.argv[1:], check=True, capture_output=True); print(time.monotonic() - t)"
)


def salt(state, *args, timeout=600):
    proc = lab.salt(state, "--out=json", "--static", *args, timeout=timeout)
    return json.loads(proc.stdout)


def timed_in_node(state, name, *argv):
    return float(node.sh(state, name, "python3", "-c", TIMED, *argv, check=True, timeout=600).stdout.strip())


def manual_restore(state, snapshot, cluster):
    """etcd's recovery guide, member by member, as a script run from the host."""
    ips = {n: state["nodes"][n]["ip"] for n in MEMBERS}
    initial = ",".join(f"{n}=https://{ip}:2380" for n, ip in ips.items())
    token = f"{cluster}-manual-{int(time.time())}"
    started = time.monotonic()
    for name in MEMBERS:
        root = node.node_dir(state, name) / "root"
        # The node's /tmp is its own tmpfs: the copy goes where the operator's scp would.
        shutil.copyfile(snapshot, root / "root" / "restore.db")
        script = (
            "systemctl stop etcd; mv /var/lib/etcd /var/lib/etcd.manual-$(date +%s) && "
            f"etcdutl snapshot restore /root/restore.db --name {name} --initial-cluster {initial} "
            f"--initial-cluster-token {token} --initial-advertise-peer-urls https://{ips[name]}:2380 "
            "--data-dir /var/lib/etcd > /dev/null && chown -R etcd:etcd /var/lib/etcd && "
            "systemctl start --no-block etcd"
        )
        node.sh(state, name, "bash", "-c", script, check=True, timeout=300)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if node.sh(state, "etcd1", "etcdctl", "endpoint", "health", "--cluster").returncode == 0:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError("the manual restore did not become healthy in 120 s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = subprocess.run([str(REPO / "lab"), "up", "--apply"], capture_output=True, text=True, check=True).stdout
    state = RunState.load(re.search(r"lab (\w+) up", out).group(1))
    try:
        cluster = json.loads(node.sh(state, "etcd1", "cat", "/etc/etcd/formula-settings.json", check=True).stdout)[
            "cluster"
        ]["name"]
        node.sh(state, "etcd1", "bash", "-c", FILL, check=True, timeout=600)
        plain = [
            timed_in_node(state, "etcd2", "etcdctl", "snapshot", "save", "/tmp/plain.db") for _ in range(args.rounds)
        ]
        base = statistics.median(plain)
        print(f"etcdctl snapshot save: median {base:.2f} s; {args.rounds} rounds")
        for compress in (False, True):
            runs = [
                salt(state, "etcd2", "etcd_backup.save", "push=False", f"compress={compress}")["etcd2"]
                for _ in range(args.rounds)
            ]
            total = statistics.median(r["prepared_seconds"] for r in runs)
            saved = statistics.median(r["seconds"] for r in runs)
            got = runs[-1]
            print(
                f"formula, compress={compress}: median {total:.2f} s for {got['db_bytes'] / 1024**2:.0f} MiB "
                f"(snapshot and read back {saved:.2f} s; {got['size'] / 1024**2:.0f} MiB kept)"
            )
            print(f"snapshot / etcdctl ratio, compress={compress}: {total / base:.2f} (target <= 1.2)")
        # Restore: the formula's orchestration, then the guide's script, each from lost data.
        run = lab.salt(state, "etcd.backup", cluster, "--out=json", timeout=600, tool="salt-run")
        taken = json.loads(run.stdout)
        for name in MEMBERS:
            node.sh(state, name, "bash", "-c", "systemctl stop etcd && rm -rf /var/lib/etcd/member", check=True)
        pillar = json.dumps({"etcd": {"restore": {"cluster": cluster, "snapshot": taken["name"]}}})
        started = time.monotonic()
        orch = lab.salt(state, "state.orch", "etcd.orch.restore", f"pillar={pillar}", timeout=900, tool="salt-run")
        formula_restore = time.monotonic() - started
        if "Failed:    0" not in orch.stdout:
            raise RuntimeError(orch.stdout[-3000:])
        sent = float(re.search(r"copied to [^\n]* in ([0-9.]+) s", orch.stdout).group(1))
        snapshot = state.dir / "backups" / cluster / taken["name"]  # the same database, uncompressed
        shell_restore = manual_restore(state, snapshot, cluster)
        print(
            f"restore of 3 members: formula {formula_restore:.1f} s (plan, send {sent:.1f} s, restore, apply with "
            f"health gate), recovery guide as a shell script {shell_restore:.1f} s (the copy to each node included)"
        )
        print(f"restore / shell ratio: {formula_restore / shell_restore:.2f} (target <= 1.5)")
        print(f"restore / shell ratio without the send: {(formula_restore - sent) / shell_restore:.2f}")
    finally:
        lab.teardown(state)


if __name__ == "__main__":
    main()
