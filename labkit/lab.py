"""Bring a lab run up and down: bridge, mirror, master, nodes; and act on its nodes."""

import json
import os
import subprocess
import time
import warnings
from pathlib import Path

import yaml

from labkit import mirror, network, node, pillar
from labkit.errors import LabError
from labkit.master import DetachedMaster, stop_master
from labkit.preflight import VENV, check_host
from labkit.sh import run
from labkit.state import RunState


def _host_prep():
    nspawn_run = Path("/run/systemd/nspawn")
    if not os.path.ismount(nspawn_run):
        nspawn_run.mkdir(parents=True, exist_ok=True)
        run("mount", "-t", "tmpfs", "tmpfs", nspawn_run)


def setup(state):
    """Everything before the master: node tmpfs, bridge, lab pillar, mirror."""
    _host_prep()
    nodes_dir = state.dir / "nodes"
    nodes_dir.mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(nodes_dir):
        run("mount", "-t", "tmpfs", "-o", "size=8g,mode=755", f"etcd-lab-{state['id']}", nodes_dir)
    network.bridge_up(state)
    pillar.write(state, pillar.lab_site(state))
    mirror.start(state)


class MinionStarts:
    """Listens on the master's event bus for `salt/minion/<id>/start`, which a minion sends
    once it is ready for jobs: cheaper and sooner than polling with the salt CLI."""

    def __init__(self, state):
        import salt.utils.event  # deferred: only up() and the fixture need salt here

        # Salt 3008 warns about its own event subscriber at exit even after destroy().
        warnings.filterwarnings("ignore", message="Unclosed transport")

        conf = yaml.safe_load((Path(state["master"]["conf_dir"]) / "master").read_text())
        sock_dir = Path(conf.get("root_dir", "/")) / conf.get("sock_dir", "run/master")
        self.bus = salt.utils.event.MasterEvent(str(sock_dir), listen=True)
        self.started = set()

    def wait(self, names, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not set(names) <= self.started and time.monotonic() < deadline:
            event = self.bus.get_event(wait=0.5, tag="salt/minion/", full=True)
            if event and event["tag"].endswith("/start"):
                self.started.add(event["tag"].split("/")[2])
        return self.started

    def close(self):
        self.bus.destroy()


def start_nodes(state, names=None, log_level="info"):
    """Prepare and boot nodes in parallel, then wait for systemd `running` in each."""
    m = state["master"]
    names = names or list(state["nodes"])
    for name in names:
        network.node_net_up(state, name)
        node.prepare(state, name, m["ret_port"], m["publish_port"], log_level)
        node.boot(state, name)
        state.save()
    for name in names:
        node.wait_running(state, name)


def salt(state, *args, timeout=120, tool="salt"):
    """Run a Salt CLI (salt, salt-run) against the run's master; return the CompletedProcess."""
    return run(VENV / "bin" / tool, "-c", state["master"]["conf_dir"], *args, check=False, timeout=timeout)


def wait_minions(state, names=None, timeout=60.0, starts=None):
    """Wait until every minion answers; `starts` (a MinionStarts opened before the nodes
    booted) saves the CLI polling, which costs a second per call and more per miss."""
    names = names or list(state["nodes"])
    deadline = time.monotonic() + timeout
    answered = set()
    if starts is not None and set(names) <= starts.wait(names, timeout):
        return  # a minion sends its start event once it takes jobs
    while time.monotonic() < deadline:
        out = salt(state, "--out=json", "--static", "-t", "3", "-L", ",".join(names), "test.ping").stdout
        try:
            answered = {k for k, v in json.loads(out or "{}").items() if v is True}
        except ValueError:
            answered = set()
        if answered >= set(names):
            return
        time.sleep(0.3)
    missing = ", ".join(sorted(set(names) - answered))
    raise LabError(
        f"minions did not answer within {timeout:.0f}s: {missing} (see ./lab exec NODE journalctl -u salt-minion)"
    )


def teardown(state):
    """Remove all the run made; idempotent, and works from the record alone."""
    node.kill_all(state)
    for name in state["nodes"]:
        node.remove(state, name)
    network.net_down(state)
    stop_master(state)
    mirror.stop(state)
    nodes_dir = state.dir / "nodes"
    if os.path.ismount(nodes_dir):
        run("umount", nodes_dir, check=False)
    for base in ("/sys/fs/cgroup/etcd-lab", "/sys/fs/cgroup/systemd/etcd-lab", "/sys/fs/cgroup/unified/etcd-lab"):
        node._rmdir_tree(Path(base) / state["id"])
        try:
            Path(base).rmdir()  # shared by runs: goes with the last one
        except OSError:
            pass
    if not os.path.ismount(nodes_dir):
        run("rm", "-rf", state.dir, check=False)


def up(nodes=3, log_level="info"):
    """`./lab up`: a run with a detached master; torn down again if any step fails."""
    check_host()
    state = RunState.create(nodes, Path(__file__).resolve().parent.parent)
    try:
        setup(state)
        DetachedMaster(state).start(log_level)
        starts = MinionStarts(state)
        try:
            start_nodes(state, log_level=log_level)
            wait_minions(state, starts=starts)
        finally:
            starts.close()
    except BaseException:
        teardown(state)
        raise
    return state


def crash(state, name):
    node.kill(state, name)


def boot(state, name):
    pid = state["nodes"][name].get("nspawn_pid")
    if pid and node.alive(pid):
        raise LabError(f"node {name} is already running")
    node.boot(state, name)
    state.save()
    node.wait_running(state, name)


def node_status(state, name):
    n = state["nodes"][name]
    pid = n.get("nspawn_pid")
    if not pid or not node.alive(pid):
        return "down"
    if "UP" not in run("ip", "-br", "link", "show", n["veth"], check=False).stdout:
        return "running (isolated)"
    systemd = node.sh(state, name, "systemctl", "is-system-running", check=False).stdout.strip()
    routes = run("ip", "-n", n["netns"], "route", "show", "type", "blackhole", check=False).stdout
    cut = [line.split()[1] for line in routes.splitlines() if line.startswith("blackhole")]
    return f"{systemd}" + (f" (cut from {', '.join(cut)})" if cut else "")


def leftovers(state):
    """What of this run is still on the machine (empty after a clean `down`)."""
    found = []
    if Path(state.dir).exists():
        found.append(f"run dir {state.dir}")
    mounts = Path("/proc/mounts").read_text()
    if str(state.dir) in mounts:
        found.append("mounts")
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    for n in state["nodes"].values():
        if n["veth"] in links:
            found.append(f"veth {n['veth']}")
        if Path(f"/run/netns/{n['netns']}").exists():
            found.append(f"netns {n['netns']}")
        if n.get("nspawn_pid") and node.alive(n["nspawn_pid"]):
            found.append(f"nspawn pid {n['nspawn_pid']}")
    if state["bridge"] in links:
        found.append(f"bridge {state['bridge']}")
    for what in ("mirror", "master"):
        pid = (state.get(what) or {}).get("pid")
        if pid and node.alive(pid):
            found.append(f"{what} pid {pid}")
    marker = str(state.dir).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                found.append(f"process {cmdline.parent.name}")
        except OSError:
            continue
    return found
