"""One lab node: an overlay of the host's / booted by systemd-nspawn with systemd as PID 1."""

import os
import subprocess
import time
from pathlib import Path

from labkit.errors import LabError
from labkit.preflight import REPO, VENV
from labkit.sh import ok, run

MIRROR_PORT = 8080  # labkit.mirror serves artifacts/etcd-releases here

# Paths where an etcd could live on the host; a node hides each one that exists (an overlay
# whiteout), so the only etcd a node has is the one the formula installs.
HOST_ETCD_PATHS = [
    "/usr/bin/etcd",
    "/usr/bin/etcdctl",
    "/usr/bin/etcdutl",
    "/usr/local/bin/etcd",
    "/usr/local/bin/etcdctl",
    "/usr/local/bin/etcdutl",
    "/usr/local/sbin/etcd3",
    "/usr/local/sbin/etcdctl",
    "/opt/etcd",
    "/etc/etcd",
    "/etc/etcd.conf",
    "/etc/default/etcd",
    "/var/lib/etcd",
    "/var/lib/storageos-etcd",
    "/lib/systemd/system/etcd.service",
    "/etc/systemd/system/etcd.service",
    "/etc/systemd/system/etcd3.service",
]
ACCOUNT_FILES = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"]
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MINION_UNIT = """\
# Written by the etcd-formula lab.
[Unit]
Description=Salt minion (etcd-formula lab)
After=network.target

[Service]
Type=simple
Environment=PATH={path}
ExecStart={venv}/bin/salt-minion -c /etc/salt
# As Salt's own unit: a minion restart must not kill the jobs it started.
KillMode=process
Restart=on-failure
RestartSec=1
# A graceful node halt otherwise waits on the slow minion stop.
TimeoutStopSec=3

[Install]
WantedBy=multi-user.target
"""


def node_dir(state, name):
    return state.dir / "nodes" / name


def root(state, name):
    return node_dir(state, name) / "root"


def _whiteout(upper, path):
    target = upper / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.mknod(target, 0o600 | 0o020000, os.makedev(0, 0))


def _enabled_host_units():
    """Units the host image enables (services, timers, sockets, paths) that a node must not run."""
    units = set()
    for wants in Path("/etc/systemd/system").glob("*.wants"):
        for link in wants.iterdir():
            if link.suffix in (".service", ".timer", ".socket", ".path"):
                units.add((wants.name, link.name))
    return units


def _hide_host_etcd(upper):
    for path in HOST_ETCD_PATHS:
        if os.path.lexists(path):
            _whiteout(upper, path)
    for path in Path("/etc/systemd/system").glob("*.wants/etcd*"):
        _whiteout(upper, str(path))
    for path in ACCOUNT_FILES:
        if not os.path.exists(path):
            continue
        lines = Path(path).read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("etcd:")]
        if kept != lines:
            dst = upper / path.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text("".join(kept))
            os.chmod(dst, os.stat(path).st_mode & 0o7777)


def prepare(state, name, master_port, publish_port, log_level="info"):
    """Mount the node's overlay and write its identity, masks and salt-minion."""
    nd = node_dir(state, name)
    for sub in ("upper", "work", "root"):
        (nd / sub).mkdir(parents=True, exist_ok=True)
    upper, r = nd / "upper", nd / "root"
    _hide_host_etcd(upper)
    for wants, unit in _enabled_host_units():
        if unit.startswith("etcd"):
            continue  # hidden above; never mask a name the formula uses (a /dev/null link)
        _whiteout(upper, f"/etc/systemd/system/{wants}/{unit}")
        mask = upper / "etc/systemd/system" / unit
        if not os.path.lexists(mask):
            mask.symlink_to("/dev/null")
    # apt sees only the site mirror's repository (Debian's etcd packages, README: Installing
    # from the OS's packages): the host's sources cannot be reached from a node.
    for listed in Path("/etc/apt/sources.list.d").glob("*"):
        _whiteout(upper, str(listed))
    sources = upper / "etc/apt/sources.list"
    sources.parent.mkdir(parents=True, exist_ok=True)
    sources.write_text(f"deb [trusted=yes] http://{state['gateway']}:{MIRROR_PORT}/debian ./\n")
    # This machine's image (from Docker's) blocks every package's service start with a
    # policy-rc.d; a Debian VM has none, and the formula's own guard must do that work.
    _whiteout(upper, "/usr/sbin/policy-rc.d")
    if not os.path.ismount(r):
        run("mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={upper},workdir={nd / 'work'}", r)

    # A fresh machine-id, written (not deleted) so systemd does not run first-boot presets.
    machine_id = run("systemd-id128", "new").stdout.strip()
    (r / "etc/machine-id").write_text(machine_id + "\n")
    dbus_id = r / "var/lib/dbus/machine-id"
    if os.path.lexists(dbus_id):
        dbus_id.unlink()
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    (r / "etc/hostname").write_text(name + "\n")
    hosts = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    hosts += [f"{n['ip']} {nm}" for nm, n in state["nodes"].items()]
    (r / "etc/hosts").write_text("\n".join(hosts) + "\n")
    # No resolver is reachable from a node: fail lookups at once instead of timing out.
    resolv = r / "etc/resolv.conf"
    if os.path.lexists(resolv):
        resolv.unlink()
    resolv.write_text("# etcd-formula lab: no DNS; names come from /etc/hosts\n")

    conf = r / "etc/systemd/system.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "10-lab.conf").write_text("[Manager]\nDefaultTimeoutStopSec=5s\n")

    salt = r / "etc/salt"
    salt.mkdir(parents=True, exist_ok=True)
    (salt / "minion").write_text(
        "# Written by the etcd-formula lab.\n"
        f"id: {name}\n"
        f"master: {state['gateway']}\n"
        f"master_port: {master_port}\n"
        f"publish_port: {publish_port}\n"
        "acceptance_wait_time: 1\n"
        "random_reauth_delay: 0\n"
        "enable_fqdns_grains: false\n"
        "enable_gpu_grains: false\n"
        f"log_level_logfile: {log_level}\n"
    )
    units = r / "etc/systemd/system"
    (units / "salt-minion.service").write_text(MINION_UNIT.format(venv=VENV, path=NODE_PATH))
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "salt-minion.service"
    if not os.path.lexists(link):
        link.symlink_to("/etc/systemd/system/salt-minion.service")


def _cgroup_dirs(state, name):
    """A cgroup of its own per node (v1 name=systemd and v2), or units of the same name in
    different nodes share a directory and fail with status=219/CGROUP."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base / "etcd-lab" / state["id"] / name]
    return [base / h / "etcd-lab" / state["id"] / name for h in ("systemd", "unified") if (base / h).is_dir()]


def boot(state, name):
    """Start the node's systemd-nspawn, detached, so it outlives the command that booted it."""
    cgroups = _cgroup_dirs(state, name)
    for cg in cgroups:
        cg.mkdir(parents=True, exist_ok=True)

    def enter_cgroup():
        for cg in cgroups:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    node = state["nodes"][name]
    console = open(node_dir(state, name) / "console.log", "ab")
    cmd = [
        "systemd-nspawn",
        "-D", root(state, name),
        "-M", name,
        "--register=no",
        "--keep-unit",
        "--link-journal=no",
        f"--network-namespace-path=/run/netns/{node['netns']}",
        # The checkout (venv, formula, artifacts) at the same path: a node's /tmp is its own
        # tmpfs, so a checkout under /tmp would otherwise be invisible inside.
        f"--bind-ro={REPO}",
        "--console=read-only",
        "-b",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=enter_cgroup,
        env={"PATH": NODE_PATH, "SYSTEMD_NSPAWN_LOCK": "0"},
    )
    console.close()
    node["nspawn_pid"] = proc.pid
    return proc.pid


def alive(pid):
    """True while pid runs (a zombie counts as gone: its PID 1 may reap it late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def leader(state, name, timeout=10.0):
    """PID of the node's PID 1 as the host sees it: nspawn's child in another pid namespace."""
    pid = state["nodes"][name].get("nspawn_pid")
    deadline = time.monotonic() + timeout
    while pid and alive(pid):
        try:
            own = os.readlink(f"/proc/{pid}/ns/pid")
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            for child in children:
                if os.readlink(f"/proc/{child}/ns/pid") != own:
                    return int(child)
        except OSError:
            pass  # nspawn's short-lived intermediate child: look again
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise LabError(f"node {name} is not running: `./lab boot {name}` starts it")


def exec_argv(state, name, argv):
    env = ["env", "-i", f"PATH={NODE_PATH}", "HOME=/root", "LANG=C.UTF-8", "TERM=xterm"]
    return ["nsenter", "-t", str(leader(state, name)), "-a", *env, *argv]


def sh(state, name, *argv, check=True, timeout=60):
    return run(*exec_argv(state, name, argv), check=check, timeout=timeout)


def wait_running(state, name, timeout=30.0):
    """Wait until the node's systemd says `running`; `degraded` is an error naming the units."""
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        status = sh(state, name, "systemctl", "is-system-running", check=False).stdout.strip()
        if status == "running":
            return
        if status == "degraded":
            failed = sh(state, name, "systemctl", "--failed", "--no-legend", "--plain", check=False).stdout
            units = ", ".join(line.split()[0] for line in failed.splitlines() if line.strip())
            raise LabError(f"node {name} booted degraded: failed units: {units or '?'}")
        time.sleep(0.1)
    raise LabError(f"node {name} did not finish booting in {timeout:.0f}s (systemd says {status!r})")


def kill(state, name, timeout=10.0):
    """SIGKILL the node's PID 1 and wait for its nspawn to exit (bounded)."""
    node = state["nodes"][name]
    pid = node.get("nspawn_pid")
    if not pid or not alive(pid):
        return
    try:
        os.kill(leader(state, name, timeout=1), 9)
    except (LabError, ProcessLookupError):
        pass
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(pid):
        os.kill(pid, 9)  # last resort; its PID 1 is gone already
        time.sleep(0.2)


def kill_all(state, timeout=10.0):
    """SIGKILL every node's PID 1 at once, then wait for all their nspawns (bounded)."""
    pids = []
    for name, n in state["nodes"].items():
        pid = n.get("nspawn_pid")
        if pid and alive(pid):
            pids.append(pid)
            try:
                os.kill(leader(state, name, timeout=1), 9)
            except (LabError, ProcessLookupError):
                pass
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        if alive(pid):
            os.kill(pid, 9)


def remove(state, name):
    """Stop the node and remove everything it had on the host."""
    kill(state, name)
    r = root(state, name)
    for _ in range(20):
        if not os.path.ismount(r):
            break
        if not ok("umount", r):
            time.sleep(0.1)
    if os.path.ismount(r):
        run("umount", "-l", r, check=False)
    for cg in _cgroup_dirs(state, name):
        _rmdir_tree(cg)
    run("rm", "-rf", node_dir(state, name), check=False)


def _rmdir_tree(path):
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass
