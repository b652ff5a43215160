"""A whole 3-member roll through the formula versus one guarded restart of one member.

On a 3-member 3.4.23 cluster formed by the formula (etcd's default raft timing,
100/1000 ms, plain HTTP), under a writer (20 writes/s rotating over the members, 300 ms
per request):

- one guarded restart: a flag change applied on one member only (`state.apply etcd` on
  it: lock, health gate, restart, catch-up), once per member;
- the whole roll: another flag change with one `state.apply etcd` on all three at once;
- the upgrade 3.4.23 -> 3.5.1 with one apply on all three (snapshot included).

Each is timed from the host (salt CLI wall time). The longest gap between two
acknowledged writes is reported for every roll.

Run: `make bench` (or .venv/bin/python -m benchmarks.roll [--runs 3]).
Targets (issue 8): whole roll <= 4x one guarded restart; longest write gap <= 1 s.
"""

import argparse
import re
import statistics
import subprocess
import time
from pathlib import Path

from labkit import lab
from labkit.session import LabSession
from labkit.state import RunState
from labkit.traffic import MEMBERS, Traffic, assert_no_loss, urls

REPO = Path(__file__).resolve().parent.parent
RUNNING = "etcd-service-running-etcd_cluster-running"


def site_for(session, version, snapshot_count):
    site = session.site()
    etcd = site["etcd"]
    etcd["cluster"].update(name="rollbench", bootstrap=True)
    etcd["members"] = {n: {"address": session.ip(n)} for n in MEMBERS}
    etcd["tls"]["enabled"] = False
    etcd["health"] = {"schedule": False}
    etcd["preflight"] = {"mode": "off"}
    etcd["tuning"].update(heartbeat_interval=100, election_timeout=1000, snapshot_count=snapshot_count)
    etcd["service"] = {"restart_timeout": 60, "lock_ttl": 10, "health_timeout": 30, "lock_wait": 300}
    etcd["source"]["url"] = "salt://etcd-releases/etcd-v{version}-linux-amd64.tar.gz"
    etcd["version"] = version
    return site


def set_site(session, site):
    session.set_site(site)
    session.salt("-L", ",".join(MEMBERS), "saltutil.refresh_pillar", "wait=True")


def apply(session, names):
    """Apply on `names` at once; (seconds, restarted members), failing loudly."""
    start = time.monotonic()
    ret = session.apply(names)
    seconds = time.monotonic() - start
    restarted = []
    for name in names:
        states = ret[name]
        failed = [r["comment"] for r in states if r["result"] is False]
        assert not failed, (name, failed)
        if any(r["__id__"] == RUNNING and r["changes"].get("restarted") for r in states):
            restarted.append(name)
    return seconds, restarted


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out = subprocess.run([str(REPO / "lab"), "up", "--nodes", "3"], capture_output=True, text=True, check=True).stdout
    state = RunState.load(re.search(r"lab (\w+) up", out).group(1))
    session = LabSession(state)
    count = 100000
    try:
        session.salt("-L", ",".join(MEMBERS), "saltutil.sync_all")
        set_site(session, site_for(session, "3.4.23", count))
        apply(session, MEMBERS)
        singles, rolls, gaps = [], [], []
        for run in range(args.runs):
            count += 1000
            set_site(session, site_for(session, "3.4.23", count))
            with Traffic(urls(session), f"single{run}") as traffic:
                for name in MEMBERS:
                    seconds, restarted = apply(session, [name])
                    assert restarted == [name], restarted
                    singles.append(seconds)
            assert_no_loss(session, traffic)
            count += 1000
            set_site(session, site_for(session, "3.4.23", count))
            with Traffic(urls(session), f"roll{run}") as traffic:
                seconds, restarted = apply(session, MEMBERS)
                time.sleep(0.5)
            assert sorted(restarted) == MEMBERS, restarted
            acked = assert_no_loss(session, traffic)
            rolls.append(seconds)
            gaps.append(traffic.longest_gap())
            print(f"roll {run + 1}: {seconds:.1f} s, longest write gap {gaps[-1]:.2f} s, {acked} writes, 0 lost")
        single, roll = statistics.median(singles), statistics.median(rolls)
        print(f"one guarded restart (apply on one member): median {single:.2f} s over {len(singles)}")
        print(f"whole 3-member roll (apply on all at once): median {roll:.2f} s over {len(rolls)}")
        print(f"roll / one guarded restart: {roll / single:.2f} (target <= 4)")
        print(f"longest write gap over the rolls: {max(gaps):.2f} s (target <= 1)")

        set_site(session, site_for(session, "3.5.1", count))
        with Traffic(urls(session), "upgrade") as traffic:
            seconds, restarted = apply(session, MEMBERS)
            time.sleep(0.5)
        acked = assert_no_loss(session, traffic)
        print(
            f"upgrade 3.4.23 -> 3.5.1 (snapshot included): {seconds:.1f} s = {seconds / single:.2f}x one guarded "
            f"restart; longest write gap {traffic.longest_gap():.2f} s; {acked} writes, 0 lost"
        )
    finally:
        lab.teardown(state)


if __name__ == "__main__":
    main()
