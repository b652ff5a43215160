"""The lab's salt-master: one configuration, two ways to run it.

Tests run it through pytest-salt-factories (which stops it with the test process);
`./lab up` runs a detached `salt-master -d` from the very configuration factories would
write, so the lab outlives the command that made it.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import yaml

from labkit.errors import LabError
from labkit.preflight import RELEASES, REPO, VENV

MASTER_ID = "lab-master"
EXTENSION_DIRS = ("_modules", "_states", "_utils", "_runners")


def file_roots(ext_root):
    """The repository's formula, its Salt extensions and the release tarballs.

    An operator's master lists the checkout itself as a root; the lab links the extension
    directories into `ext_root` instead, because the fileserver walks every file under a
    root (file_ignore_regex filters only afterwards) and the checkout holds the venv.
    """
    ext_root = Path(ext_root)
    ext_root.mkdir(parents=True, exist_ok=True)
    for name in EXTENSION_DIRS:
        link = ext_root / name
        if (REPO / name).is_dir() and not link.is_symlink():
            link.symlink_to(REPO / name)
    # A no-op SLS for the lab's benchmarks (salt://lab/noop.sls), outside the formula.
    (ext_root / "lab").mkdir(exist_ok=True)
    (ext_root / "lab" / "noop.sls").write_text("lab-noop:\n  test.succeed_without_changes: []\n")
    return [str(REPO / "salt"), str(ext_root), str(RELEASES.parent)]


def overrides(state, log_level="info"):
    """Master settings for a run: bound to the run's bridge, serving the repository."""
    return {
        "interface": state["gateway"],
        "auto_accept": True,
        # Every missed minion costs this on each CLI call (no CLI flag for it).
        "gather_job_timeout": 5,
        "timeout": 10,
        "file_roots": {"base": file_roots(state.dir / "extensions")},
        # The repository's pillar in base; the lab's site in an environment of its own, so
        # neither top.sls hides the other (Salt reads one top.sls per environment).
        "pillar_roots": {"base": [str(REPO / "pillar")], "lab": [str(state.dir / "pillar")]},
        "top_file_merging_strategy": "merge",
        "env_order": ["base", "lab"],
        "pillar_source_merging_strategy": "smart",
        # The formula's runner (salt-run etcd.report) straight from the checkout; an
        # operator's master gets it with `salt-run saltutil.sync_runners` instead.
        "runner_dirs": [str(REPO / "_runners")],
        # TLS: members (and bundle minions) ask the CA minion to sign through the master,
        # after asking it to recompute its policies from the master's pillar; the CA minion
        # checks the client policy's `minions: L@...` with match.compound_matches.
        "peer": {".*": ["x509.sign_remote_certificate", "etcd_ca.refresh_policies"]},
        "peer_run": {"ca1": ["match.compound_matches"], ".*": ["etcd_store.accept"]},
        # Backups (README: Backups and recovery): members push verified snapshots, the
        # store takes them in; the run's store lives in the run's directory.
        "file_recv": True,
        "file_recv_max_size": 1024,
        "etcd_backup_store": str(state.dir / "backups"),
        # The example reactor for the scheduled health check (docs/reactor.md).
        "reactor": [
            {"etcd/*/health/degraded": ["salt://etcd/reactor/health.sls"]},
            {"etcd/*/health/critical": ["salt://etcd/reactor/health.sls"]},
            {"etcd/*/health/error": ["salt://etcd/reactor/health.sls"]},
        ],
        "log_level_logfile": log_level,
        "enable_fqdns_grains": False,
    }


def port_open(host, port, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class DetachedMaster:
    """A salt-master daemon that outlives `./lab up`, with the factories configuration."""

    def __init__(self, state):
        self.state = state
        self.root = state.dir / "master"

    def start(self, log_level="info"):
        # Deferred: importing salt costs a second, and only `up` needs it.
        from saltfactories.daemons.master import SaltMaster

        self.root.mkdir(parents=True, exist_ok=True)
        config = SaltMaster.default_config(self.root, MASTER_ID, overrides=overrides(self.state, log_level))
        # Only a factories-run master has the log server this key points at; without it,
        # factories' log handler fails to load noisily in every salt CLI call.
        config.pop("pytest-master", None)
        conf_dir = Path(config["conf_file"]).parent
        Path(config["conf_file"]).write_text(yaml.safe_dump(config, default_flow_style=False))
        subprocess.run(
            [str(VENV / "bin/salt-master"), "-c", str(conf_dir), "-d"],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            start_new_session=True,
        )
        self.state["master"] = {
            "kind": "detached",
            "conf_dir": str(conf_dir),
            "ret_port": config["ret_port"],
            "publish_port": config["publish_port"],
            "pidfile": str(self.root / config["pidfile"]),
        }
        self.state.save()
        self.wait_listening()
        self.state["master"]["pid"] = int(Path(self.state["master"]["pidfile"]).read_text().strip())
        self.state.save()

    def wait_listening(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        m = self.state["master"]
        while time.monotonic() < deadline:
            if port_open(self.state["gateway"], m["ret_port"]) and port_open(self.state["gateway"], m["publish_port"]):
                return
            time.sleep(0.1)
        raise LabError(f"the lab's salt-master did not listen within {timeout:.0f}s: see {self.root}/logs/master.log")


def stop_master(state, timeout=10.0):
    """Stop a detached master (its pidfile's process group); factories masters stop themselves."""
    m = state.get("master") or {}
    if m.get("kind") != "detached":
        return
    pid = m.get("pid")
    if pid is None:
        try:
            pid = int(Path(m["pidfile"]).read_text().strip())
        except (OSError, ValueError):
            return
    _stop_group(pid, timeout)


def _group_alive(pgid):
    """Whether any non-zombie process is left in the process group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop_group(pid, timeout=4.0):
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        # Nothing of the run needs a graceful exit: give SIGTERM a moment only.
        deadline = time.monotonic() + (timeout / 4 if sig == signal.SIGTERM else timeout)
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
            except ChildProcessError:
                pass
            if not _group_alive(pgid):
                return
            time.sleep(0.05)
