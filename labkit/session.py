"""A lab run as a Python object: what tests (and scripts) use to drive it."""

import json
import subprocess
import time

from labkit import lab, network, node, pillar
from labkit.errors import LabError
from labkit.preflight import VENV


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

    def salt_run(self, *args, timeout=300):
        proc = subprocess.run(
            [VENV / "bin/salt-run", "-c", self.state["master"]["conf_dir"], "--out=json", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return json.loads(proc.stdout or "null")

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
