"""`./lab up --apply`: the README's main job, the formula applied to the lab site."""

import subprocess
import time

from labkit import node, pillar
from labkit.preflight import VENV


def _salt(state, *args, quiet=False):
    cmd = [str(VENV / "bin/salt"), "-c", state["master"]["conf_dir"], *args]
    print("$ ./lab salt " + " ".join(args), flush=True)
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run(cmd, check=False, stdout=out).returncode


def apply_formula(state):
    etcd = pillar.read(state)["etcd"]
    members = ",".join(n for n in etcd["members"])
    tls = etcd.get("tls") or {}
    ca = tls.get("ca_minion") if tls.get("enabled") and tls.get("mode", "ca_minion") == "ca_minion" else None
    start = time.monotonic()
    rc = _salt(state, "-L", ",".join([members, ca] if ca else [members]), "saltutil.sync_all", quiet=True)
    if ca:  # the CA first: members read its certificates from the mine
        rc = rc or _salt(state, ca, "state.apply", "etcd.ca", "--state-output=terse")
    rc = rc or _salt(state, "-L", members, "state.apply", "etcd", "--state-output=terse")
    print(f"# formula applied in {time.monotonic() - start:.1f}s", flush=True)
    first = members.split(",")[0]
    print(f"$ ./lab exec {first} etcdctl member list -w table", flush=True)
    subprocess.run(node.exec_argv(state, first, ["etcdctl", "member", "list", "-w", "table"]), check=False)
    _salt(state, first, "etcd_health.healthy", "--out=yaml")
    print(f"\nExplore: ./lab exec {first} etcdctl member list -w table   |   ./lab down", flush=True)
    return rc
