"""etcd from the OS's packages (`etcd:source:type: package`): names, versions, and the
guard that keeps a package's own scripts from starting or restarting etcd.

Debian's etcd-server starts `etcd.service` in its postinst and restarts it on every
upgrade (its prerm stops it first), so a fleet-wide `apt upgrade` would restart every
member at once. Three things keep only the guarded path restarting etcd: the formula's
unit is in place before the package arrives, `policy-rc.d` answers 101 ("action not
allowed") to every start, stop and restart of etcd while dpkg runs for the formula, and
the packages stay on hold between runs so that an `apt upgrade` leaves them alone.
"""

import contextlib
import os
import re

from etcd_names import UNIT

# Debian policy 5.6.1 and 5.6.12; RPM names and versions fit the same patterns.
NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,62}$")
VERSION = re.compile(r"^(?:[0-9]{1,5}:)?[0-9][A-Za-z0-9.+~]*(?:-[A-Za-z0-9.+~]+)?$")

POLICY_RC = "/usr/sbin/policy-rc.d"
MARK = "# etcd-formula: blocks the etcd package's own service actions"


def upstream(version):
    """The upstream part of a package version: epoch and Debian revision dropped
    ("1:3.4.23-4+b4" -> "3.4.23"), which is what `etcd --version` reports."""
    text = str(version)
    if ":" in text:
        text = text.split(":", 1)[1]
    return text.rsplit("-", 1)[0] if "-" in text else text


def policy_script(services, previous=None):
    """A policy-rc.d that refuses (101) every action on `services` (names, validated unit
    names) and hands every other service to the site's own policy-rc.d (`previous`, kept
    beside it), or allows it."""
    # The names become a shell case pattern: unit names only (a CLI argument may be anything).
    bad = [s for s in services if not isinstance(s, str) or not UNIT.match(s)]
    if bad:
        raise ValueError(f"{bad!r}: not systemd unit names (etcd:service:name)")
    names = sorted({n for s in services for n in (s, f"{s}.service")})
    other = f'exec {previous} "$@"' if previous else "exit 0"
    return (
        "#!/bin/sh\n"
        f"{MARK}\n"
        "# (while the formula runs dpkg; removed afterwards). 101: action not allowed.\n"
        f'case "$1" in {"|".join(names)}) exit 101 ;; esac\n'
        f"{other}\n"
    )


@contextlib.contextmanager
def services_blocked(services, path=POLICY_RC):
    """While the block runs, package scripts may not start, stop or restart `services`.

    A site's own policy-rc.d is moved aside and called for every other service, then put
    back. One left behind by a run that died (it carries MARK) is replaced, and the
    site's, if any, restored from beside it."""
    aside = f"{path}.etcd-formula-site"
    site_has_one = os.path.exists(aside) or (os.path.exists(path) and not _ours(path))
    text = policy_script(services, aside if site_has_one else None)  # refuses bad names first
    if os.path.exists(path) and not _ours(path):
        os.replace(path, aside)
    previous = aside if os.path.exists(aside) else None
    tmp = f"{path}.etcd-formula-tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    try:
        yield
    finally:
        if previous:
            os.replace(aside, path)
        else:
            os.unlink(path)


def _ours(path):
    try:
        with open(path) as fh:
            return MARK in fh.read(4096)
    except OSError:
        return False


def off_pin(have, version):
    """The packages of `have` ({name: {"version": ...}}, etcd_install.packages) that are
    not installed at `version`, in order: [] when all are at the pin."""
    return [name for name, p in have.items() if p["version"] != version]


def parse_dpkg_query(text):
    """`dpkg-query -W -f '${Package} ${Version} ${db:Status-Want} ${db:Status-Status}\\n'`
    as {package: {"version": str or None, "held": bool}}; a package known to dpkg but not
    installed (removed, config-files) has no version."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        name, version, want = parts[0], parts[1] if len(parts) == 4 else None, parts[-2]
        status = parts[-1]
        out[name] = {"version": version if status == "installed" else None, "held": want == "hold"}
    return out
