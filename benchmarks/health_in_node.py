"""Runs inside a lab node (with the repository's venv): the health function against etcdctl.

`etcd_health.health` is loaded through Salt's loader from the minion's configuration and
synced modules, as the scheduler runs it, and timed inside this one process; the etcdctl
commands that gather the same facts are timed as the subprocesses they are. Prints JSON.
"""

import json
import statistics
import subprocess
import sys
import time

import salt.config
import salt.loader

ETCDCTL = [
    ["endpoint", "health", "--cluster"],
    ["endpoint", "status", "--cluster", "-w", "json"],
    ["alarm", "list"],
    ["member", "list"],
]


def main(rounds):
    opts = salt.config.minion_config("/etc/salt/minion")
    opts["file_client"] = "local"  # no master round trip: the check reads the applied settings
    opts["pillar"] = {}
    mods = salt.loader.minion_mods(opts)
    health = mods["etcd_health.health"]
    verdict = health()["verdict"]  # warm: the loader has imported everything once
    fn_times, ctl_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        report = health()
        fn_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for args in ETCDCTL:
            # The node's etcdctl: with TLS the formula's wrapper (admin certificate), as an operator runs it.
            subprocess.run(["etcdctl", *args], capture_output=True, check=True)
        ctl_times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "verdict": verdict,
                "members": len(report["members"]),
                "function_s": statistics.median(fn_times),
                "function_self_reported_ms": report["duration_ms"],
                "etcdctl_s": statistics.median(ctl_times),
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
