"""State: etcd installed at a version, verified by checksum, switched atomically."""

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_node, etcd_package, etcd_releases) = etcd_fresh.load("etcd_node", "etcd_package", "etcd_releases")

from salt.exceptions import CommandExecutionError  # noqa: E402

__virtualname__ = "etcd_install"


def __virtual__():
    return __virtualname__


def installed(name, source, checksums=None, install_dir="/opt/etcd", bin_dir="/usr/local/bin", service="etcd"):
    """
    Ensure etcd ``name`` (a version) is the active binary.

    The decision reads the installed binary's own ``--version``, never a marker file. A
    different version is downloaded and verified against its sha256 before anything is
    unpacked. While the etcd service runs, a new version is only staged beside the old
    one: the switch belongs to a guarded restart, so a crash keeps running the old one.

    .. code-block:: yaml

        etcd-install:
          etcd_install.installed:
            - name: 3.5.33
            - source: https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-amd64.tar.gz
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    mod = __salt__
    active = mod["etcd_install.active_version"](bin_dir)
    if active == name:
        ret["comment"] = f"etcd {name} is installed"
        return ret
    sha256 = etcd_releases.checksum(name, checksums)
    if not sha256:
        ret["result"] = False
        ret["comment"] = f"no sha256 known for etcd {name}: add etcd:source:checksums:{name}"
        return ret
    running = etcd_node.unit_active(service) if active else False
    if running:
        # Judged before the download: a version the guarded restart would refuse is never
        # fetched or staged (a refused downgrade used to leave its release on every member).
        refusal = mod["etcd_rolling.version_refusal"](name)
        if refusal:
            ret["result"] = False
            ret["comment"] = f"not fetching etcd {name}: refusing the version change: {refusal}"
            return ret
    is_staged = mod["etcd_install.staged"](name, install_dir)
    switch = not running
    if __opts__["test"]:
        ret["result"] = None
        steps = [] if is_staged else [f"download and verify etcd {name}"]
        steps.append(
            f"switch {bin_dir}/etcd from {active or 'nothing'} to {name}" if switch else "stage it (restart pending)"
        )
        ret["comment"] = "would " + ", then ".join(steps)
        ret["changes"] = {"version": {"old": active, "new": name}}
        return ret
    try:
        if not is_staged:
            mod["etcd_install.fetch"](name, source, sha256, install_dir)
            ret["changes"]["staged"] = name
        if switch:
            now = mod["etcd_install.activate"](name, install_dir, bin_dir)
            ret["changes"]["version"] = {"old": active, "new": now}
            ret["comment"] = f"etcd {now} installed"
        else:
            ret["comment"] = (
                f"etcd {name} staged in {install_dir}/{name}; etcd {active} keeps running: restart pending "
                "(the switch happens in a guarded restart)"
            )
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret


def packages_installed(name, packages, package_version, service="etcd", bin_dir="/usr/bin", refresh=True):
    """
    Ensure etcd ``name`` (its version) runs from the OS's ``packages``, pinned to
    ``package_version`` and held.

    Where etcd does not run yet (or runs from a tarball at this version: the unit already
    names the package's binary), the packages are installed now, with the packages' own
    service actions blocked (policy-rc.d 101). Under a running member a package change
    (another version or revision) is only downloaded: the install belongs to the guarded
    restart, like a tarball's switch. Needs the formula's unit in place first (the SLS
    requires it): the package's postinst then finds ours.

    .. code-block:: yaml

        etcd-install-packages:
          etcd_install.packages_installed:
            - name: 3.4.23
            - packages: [etcd-server, etcd-client]
            - package_version: 3.4.23-4+b4
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    mod = __salt__
    label = f"{', '.join(packages)} {package_version}"
    try:
        have = mod["etcd_install.packages"](packages)
    except CommandExecutionError as exc:
        return dict(ret, result=False, comment=str(exc))
    at_pin = not etcd_package.off_pin(have, package_version)
    if at_pin and all(p["held"] for p in have.values()):
        ret["comment"] = f"{label} installed and held"
        return ret
    if at_pin:
        if __opts__["test"]:
            return dict(ret, result=None, comment=f"would hold {label}", changes={"held": packages})
        mod["pkg.hold"](pkgs=packages)
        return dict(ret, comment=f"{label} installed, now held", changes={"held": packages})
    old = {n: p["version"] for n, p in have.items()}
    running = etcd_node.unit_active(service)
    running_version = mod["etcd_cluster.local_version"]() if running else None
    if running and running_version != name:
        refusal = mod["etcd_rolling.version_refusal"](name)
        if refusal:
            return dict(ret, result=False, comment=f"not fetching {label}: refusing the version change: {refusal}")
    # Under a running member, only a move from the tarball to the same etcd installs now.
    pending = running and (any(old.values()) or running_version != name)
    if __opts__["test"]:
        what = "download" if pending else "install and hold"
        then = " (the install happens in a guarded restart)" if pending else ""
        return dict(
            ret,
            result=None,
            comment=f"would {what} {label}{then}",
            changes={"packages": {"old": old, "new": package_version}},
        )
    try:
        if pending:
            mod["etcd_install.package_install"](packages, package_version, service, refresh, download_only=True)
            ret["comment"] = (
                f"{label} downloaded; etcd {running_version} keeps running: restart pending "
                "(the package install happens in a guarded restart)"
            )
            return ret
        mod["etcd_install.package_install"](packages, package_version, service, refresh)
    except CommandExecutionError as exc:
        return dict(ret, result=False, comment=str(exc))
    now = mod["etcd_install.active_version"](bin_dir)
    ret["changes"]["packages"] = {"old": old, "new": package_version}
    if now != name:
        return dict(ret, result=False, comment=f"{label} installed, but {bin_dir}/etcd reports {now}, not {name}")
    ret["comment"] = f"{label} installed and held (etcd {now})"
    return ret


def account(name, group, home, shell="/usr/sbin/nologin"):
    """
    The system user (and its group) etcd runs as. Checked from the passwd and group
    databases first: an apply with nothing to change costs no subprocess. Otherwise
    Salt's ``group.present`` and ``user.present`` do the work.

    .. code-block:: yaml

        etcd-install-account:
          etcd_install.account:
            - name: etcd
            - group: etcd
            - home: /var/lib/etcd
    """
    import grp
    import pwd

    ret = {"name": name, "result": True, "changes": {}, "comment": f"user {name} (group {group}) is present"}
    try:
        gr = grp.getgrnam(group)
        pw = pwd.getpwnam(name)
        if (pw.pw_gid, pw.pw_dir, pw.pw_shell) == (gr.gr_gid, home, shell):
            return ret
    except KeyError:
        pass
    steps = (
        ("group", __states__["group.present"], {"name": group, "system": True}),
        ("user", __states__["user.present"], {
            "name": name, "gid": group, "system": True, "home": home, "createhome": False, "shell": shell,
        }),
    )  # fmt: skip
    comments = []
    for what, state, kwargs in steps:
        got = state(**kwargs)
        comments.append(got["comment"])
        if got["changes"]:
            ret["changes"][what] = got["changes"]
        if got["result"] is False or (got["result"] is None and ret["result"] is True):
            ret["result"] = got["result"]
        if got["result"] is False:
            break
    ret["comment"] = "; ".join(c for c in comments if c)
    return ret


def disk_checked(name):
    """
    Before the first install on a node: measure fdatasync latency where the data dir
    ``name`` will live (``etcd_health.check_disk``) and, by ``etcd:preflight:mode``,
    warn or refuse when the p99 is over ``etcd:preflight:p99_ms``. A node that already
    runs etcd is not measured again; ``test=True`` measures nothing.

    .. code-block:: yaml

        etcd-disk:
          etcd_install.disk_checked:
            - name: /var/lib/etcd
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    s = __salt__["etcd_cluster.settings"]()
    p = s["preflight"]
    if p["mode"] == "off":
        ret["comment"] = "disk preflight is off (etcd:preflight:mode)"
        return ret
    # Data, not the unit: with OS packages the unit is written before the first install.
    if etcd_node.has_data(s["paths"]["data"]):
        ret["comment"] = "etcd is installed here: the disk preflight runs before the first install only"
        return ret
    if __opts__["test"]:
        ret.update(result=None, comment=f"would measure fdatasync latency under {name} for up to {p['seconds']} s")
        return ret
    m = __salt__["etcd_health.check_disk"](name, p["seconds"])
    figures = (
        f"fdatasync p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, {m['iops']} IOPS, {m['samples']} samples of 2300 B "
        f"in {m['seconds']} s on {m['directory']} ({m['filesystem'] or 'unknown filesystem'})"
    )
    if m["no_disk"]:
        figures += f"; these figures say nothing about a disk: {m['no_disk']}"
    if m["p99_ms"] is not None and m["p99_ms"] > p["p99_ms"]:
        message = (
            f"disk too slow for etcd: {figures}; etcd:preflight:p99_ms is {p['p99_ms']} ms (etcd's hardware guide: "
            "p99 under 10 ms). Fix: put the data dir (etcd:paths:data) on a faster disk (SSD), or set "
            "etcd:preflight:mode to warn"
        )
        if p["mode"] == "enforce":
            ret.update(result=False, comment="refusing to install: " + message)
            return ret
        ret["warnings"] = [message]
        ret["comment"] = message
        return ret
    ret["comment"] = f"disk fast enough: {figures}"
    return ret
