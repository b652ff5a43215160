"""`./lab up` for 3 and 5 nodes, resident memory per node, `./lab down`.

Run: `make bench` (or .venv/bin/python -m benchmarks.lab_up [--runs N]).
Targets (issue 2): up 3 nodes <= 15 s, 5 nodes <= 20 s, <= 200 MiB per node, down <= 10 s.
"""

import argparse
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

from labkit import node
from labkit.state import RunState

REPO = Path(__file__).resolve().parent.parent


def lab(*args, env=None):
    start = time.monotonic()
    out = subprocess.run([str(REPO / "lab"), *args], capture_output=True, text=True, env=env, check=True).stdout
    return time.monotonic() - start, out


def node_rss_mib(state, name):
    """Resident memory of every process in the node's PID namespace (systemd, minion, ...)."""
    ns = os.readlink(f"/proc/{node.leader(state, name)}/ns/pid")
    total_kib = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "ns/pid") != ns:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def one_run(nodes):
    up, out = lab("up", "--nodes", str(nodes))
    run_id = re.search(r"lab (\w+) up", out).group(1)
    env = dict(os.environ, LAB_RUN=run_id)
    state = RunState.load(run_id)
    rss = [node_rss_mib(state, n) for n in state["nodes"]]
    down, _ = lab("down", env=env)
    return up, down, rss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for nodes, target in ((3, 15.0), (5, 20.0)):
        ups, downs, rss = [], [], []
        for _ in range(args.runs):
            up, down, node_rss = one_run(nodes)
            ups.append(up)
            downs.append(down)
            rss += node_rss
        up_med, down_med = statistics.median(ups), statistics.median(downs)
        print(
            f"lab up {nodes} etcd nodes (+ca1): median {up_med:.1f}s of {args.runs} "
            f"(target {target:.0f}s, ratio to target {up_med / target:.2f}); "
            f"down median {max(downs) and down_med:.1f}s (target 10s, ratio {down_med / 10:.2f}); "
            f"RSS per node max {max(rss):.0f} MiB, median {statistics.median(rss):.0f} MiB (target 200 MiB)"
        )


if __name__ == "__main__":
    main()
