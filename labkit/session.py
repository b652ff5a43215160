"""A lab run as a Python object: what tests (and scripts) use to drive it."""

import hashlib
import json
import os
import time

from labkit import lab, network, node, pillar
from labkit.errors import LabError


class LabSession:
    def __init__(self, state):
        self.state = state

    @property
    def etcd_nodes(self):
        return [n for n in self.state["nodes"] if n.startswith("etcd")]

    def ip(self, name):
        return self.state["nodes"][name]["ip"]

    def salt(self, *args, timeout=300):
        """`salt --out=json --static ARGS`, parsed; raises with stderr when the CLI fails."""
        proc = lab.salt(self.state, "--out=json", "--static", *args, timeout=timeout)
        try:
            return json.loads(proc.stdout or "{}")
        except ValueError as exc:
            raise LabError(f"salt {' '.join(args)}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}") from exc

    def salt_run(self, *args, timeout=120):
        """`salt-run ARGS` on the run's master: (stdout, stderr)."""
        proc = lab.salt(self.state, *args, timeout=timeout, tool="salt-run")
        return proc.stdout, proc.stderr

    def apply(self, targets, *args, sls="etcd", timeout=600):
        """`state.apply` on a list of minions at once: {minion: [state results in run order]}."""
        targets = [targets] if isinstance(targets, str) else list(targets)
        ret = self.salt("-t", str(timeout), "-L", ",".join(targets), "state.apply", sls, *args, timeout=timeout + 30)
        return {m: state_results(ret.get(m, "no return")) for m in targets}

    def digest(self, name):
        return upper_digest(self.state, name)

    def exec(self, name, *argv, check=False, timeout=60):
        return node.sh(self.state, name, *argv, check=check, timeout=timeout)

    def crash(self, name):
        lab.crash(self.state, name)

    def boot(self, name):
        lab.boot(self.state, name)
        lab.wait_minions(self.state, [name])

    def running(self, name):
        pid = self.state["nodes"][name].get("nspawn_pid")
        return bool(pid) and node.alive(pid)

    def partition(self, a, b):
        network.partition(self.state, a, b)

    def isolate(self, name):
        network.isolate(self.state, name)

    def heal(self):
        network.heal(self.state)

    def site(self):
        return pillar.read(self.state)

    def set_site(self, site):
        pillar.write(self.state, site)

    def set_pillar(self, key, value):
        pillar.set_key(self.state, key, value)

    def tcp_open(self, src, dst_ip, port, timeout=1.0):
        """Whether src can open a TCP connection to dst_ip:port (bash /dev/tcp, bounded)."""
        script = f"timeout {timeout} bash -c 'exec 3<>/dev/tcp/{dst_ip}/{port}'"
        return self.exec(src, "bash", "-c", script).returncode == 0

    def wait(self, predicate, timeout=30.0, interval=0.2, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# What a node writes by merely running (its minion, journal, systemd, the scheduled
# backup's snapshots): not the formula's doing.
NOISE = (
    "var/cache/salt", "var/log", "var/lib/systemd", "etc/salt/pki", "tmp", "var/tmp", "root/.cache",
    "var/lib/etcd-formula/backups",
)  # fmt: skip
# etcd's own data: any client's write changes it (the backup job's claim, a writer), so
# only which files exist counts, not what they hold.
ETCD_DATA = "var/lib/etcd/member/"


def upper_digest(state, name):
    """{path: sha256} of every file the node changed relative to the host (its overlay
    upper dir holds exactly those), minus what the node writes by just running."""
    upper = node.node_dir(state, name) / "upper"
    digest = {}
    for path in sorted(upper.rglob("*")):
        rel = str(path.relative_to(upper))
        if rel.startswith(NOISE) or path.is_dir():
            continue
        if path.is_symlink():
            digest[rel] = "-> " + os.readlink(path)
        elif path.is_file() and rel.startswith(ETCD_DATA):
            digest[rel] = "etcd data"
        elif path.is_file():
            digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest[rel] = "special"
    return digest


def state_results(minion_ret):
    """A minion's state.apply return as a list in run order (or its error strings)."""
    if not isinstance(minion_ret, dict):
        return [{"result": False, "comment": str(minion_ret), "changes": {}, "__id__": "?"}]
    items = []
    for key, raw in minion_ret.items():
        item = dict(raw, key=key)
        item.setdefault("__id__", key.split("_|-")[1] if "_|-" in key else key)
        items.append(item)
    return sorted(items, key=lambda v: v.get("__run_num__", 0))
