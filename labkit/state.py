"""A lab run's identity and record: what it made, so `down` can undo exactly that.

Every run gets a short random id; its bridge, veths, network namespaces, /24, cgroups and
run directory are all named from it, so two runs on one machine never collide and a run
never touches another's leftovers.
"""

import fcntl
import json
import os
import secrets
import subprocess
from contextlib import contextmanager
from pathlib import Path

from labkit.errors import LabError

RUNS = Path("/run/etcd-lab")
SUBNET_BASE = "10.213"  # a private /16; each run takes one free /24 of it
CA_NODE = "ca1"


@contextmanager
def _allocation_lock():
    RUNS.mkdir(parents=True, exist_ok=True)
    with open(RUNS / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _subnets_in_use():
    used = set()
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        addr = line.split()[3]
        if addr.startswith(SUBNET_BASE + "."):
            used.add(int(addr.split(".")[2]))
    for path in RUNS.glob("*/state.json"):
        try:
            used.add(int(json.loads(path.read_text())["prefix"].split(".")[2]))
        except (ValueError, KeyError, OSError):
            continue
    return used


def node_names(count):
    return [f"etcd{i}" for i in range(1, count + 1)] + [CA_NODE]


class RunState(dict):
    """The JSON record of one run, kept in /run/etcd-lab/<id>/state.json."""

    @property
    def dir(self):
        return RUNS / self["id"]

    def save(self):
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(self, indent=2, sort_keys=True))
        os.replace(tmp, self.dir / "state.json")

    @classmethod
    def create(cls, nodes, repo):
        if not 1 <= nodes <= 20:
            raise LabError(f"--nodes must be between 1 and 20, not {nodes}")
        with _allocation_lock():
            used = _subnets_in_use()
            free = [n for n in range(1, 255) if n not in used]
            if not free:
                raise LabError(f"no free /24 left in {SUBNET_BASE}.0.0/16: run `./lab down --all`")
            run_id = secrets.token_hex(2)
            while (RUNS / run_id).exists():
                run_id = secrets.token_hex(2)
            prefix = f"{SUBNET_BASE}.{free[0]}"
            state = cls(
                id=run_id,
                prefix=prefix,
                bridge=f"eb-{run_id}",
                gateway=f"{prefix}.1",
                repo=str(repo),
                nodes={},
                master={},
                mirror={},
            )
            for i, name in enumerate(node_names(nodes)):
                host = 10 + i + 1 if name != CA_NODE else 9
                state["nodes"][name] = {
                    "ip": f"{prefix}.{host}",
                    "netns": f"elab-{run_id}-{name}",
                    "veth": f"vb-{run_id}-{name}"[:15],
                }
            state.dir.mkdir(parents=True)
            state.save()
        return state

    @classmethod
    def load(cls, run_id=None):
        """The run named by id (or $LAB_RUN), or the only run on this machine."""
        run_id = run_id or os.environ.get("LAB_RUN")
        if run_id:
            path = RUNS / run_id / "state.json"
            if not path.exists():
                raise LabError(f"no lab run {run_id!r} on this machine: `./lab status` lists them")
            return cls(json.loads(path.read_text()))
        runs = list_runs()
        if not runs:
            raise LabError("no lab is running: start one with `./lab up`")
        if len(runs) > 1:
            ids = ", ".join(r["id"] for r in runs)
            raise LabError(f"several lab runs ({ids}): choose one with LAB_RUN=<id> ./lab ...")
        return runs[0]


def list_runs():
    runs = []
    for path in sorted(RUNS.glob("*/state.json")):
        try:
            runs.append(RunState(json.loads(path.read_text())))
        except (ValueError, OSError):
            continue
    return runs
