"""One health run against the etcdctl commands that gather the same facts.

In one lab run (3 nodes, the formula applied: mutual TLS, as in the example site): inside
etcd1, `etcd_health.health` timed in a running Python process (as the minion's scheduler
runs it) against
`etcdctl endpoint health --cluster`, `endpoint status --cluster -w json`, `alarm list`
and `member list`. A fresh interpreter alone costs more than those commands, so the
process is started once and warmed.

Run: `make bench` (or .venv/bin/python -m benchmarks.health [--rounds 20]).
Target (issue 6): health / etcdctl <= 0.2.
"""

import argparse
import json
import re
import subprocess
from pathlib import Path

from labkit import lab, node
from labkit.state import RunState

REPO = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    out = subprocess.run([str(REPO / "lab"), "up", "--apply"], capture_output=True, text=True, check=True).stdout
    state = RunState.load(re.search(r"lab (\w+) up", out).group(1))
    try:
        py = str(REPO / ".venv/bin/python")
        proc = node.sh(
            state, "etcd1", py, str(REPO / "benchmarks/health_in_node.py"), str(args.rounds), check=True, timeout=300
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"health function: median {r['function_s'] * 1000:.1f} ms "
            f"(self-reported {r['function_self_reported_ms']} ms, verdict {r['verdict']}, {r['members']} members)"
        )
        print(f"etcdctl (4 commands): median {r['etcdctl_s'] * 1000:.1f} ms; {r['rounds']} rounds each")
        print(f"health / etcdctl ratio: {r['function_s'] / r['etcdctl_s']:.2f} (target <= 0.2)")
    finally:
        lab.teardown(state)


if __name__ == "__main__":
    main()
