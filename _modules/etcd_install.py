"""Fetch, verify and install etcd releases: versioned directories, atomic switch.

Layout: ``<install>/<version>/{etcd,etcdctl,etcdutl}`` per release, and links in
``<bin>`` pointing at the active one. A new version is staged beside the old; the
links switch in one rename each, so a crash never leaves a half-written binary.
"""

import os
import shutil
import tarfile
import tempfile

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_node, etcd_package, etcd_releases) = etcd_fresh.load("etcd_node", "etcd_package", "etcd_releases")

from salt.exceptions import CommandExecutionError, MinionError  # noqa: E402

__virtualname__ = "etcd_install"

BINARIES = ("etcd", "etcdctl", "etcdutl")


def __virtual__():
    return __virtualname__


def _versions():
    """Binary versions asked in this job (etcd_node.binary_version's memo)."""
    return __context__.setdefault("etcd_binary_versions", {})


def active_version(bin_dir="/usr/local/bin"):
    """
    The version the active ``etcd`` binary reports about itself (None if absent).

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_install.active_version
    """
    return etcd_node.binary_version(os.path.join(bin_dir, "etcd"), _versions())


def staged(version, install_dir="/opt/etcd"):
    """
    Whether ``<install_dir>/<version>`` holds a binary that reports that version.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_install.staged 3.5.33
    """
    return etcd_node.binary_version(os.path.join(install_dir, version, "etcd"), _versions()) == version


def fetch(version, url, sha256, install_dir="/opt/etcd"):
    """
    Download the release tarball, refuse it unless its sha256 matches, and unpack it into
    ``<install_dir>/<version>``. Nothing outside a temporary directory changes before the
    checksum is verified.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_install.fetch 3.5.33 https://mirror/etcd-v3.5.33-linux-amd64.tar.gz <sha256>
    """
    if etcd_releases.parse(version) is None:
        raise CommandExecutionError(f"etcd version {version!r} is not X.Y.Z")
    url = url.format(version=version)
    os.makedirs(install_dir, mode=0o755, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".fetch-{version}-", dir=install_dir)
    try:
        tarball = os.path.join(work, etcd_releases.tarball_name(version))
        try:
            got = __salt__["cp.get_url"](url, tarball)
        except MinionError as exc:  # a mirror down or a 404: its words, not a traceback
            raise CommandExecutionError(
                f"could not download {url}: {exc}; refused, nothing installed. Check etcd:source:url and the mirror"
            ) from exc
        if isinstance(got, str) and os.path.isfile(got):
            tarball = got  # file:// URLs are read in place, not copied
        if not got or not os.path.isfile(tarball):
            raise CommandExecutionError(f"could not download {url}: check etcd:source:url")
        digest = etcd_node.sha256_file(tarball)
        if digest != sha256.lower():
            raise CommandExecutionError(
                f"checksum mismatch for {url}: got sha256 {digest}, expected {sha256}; refused, nothing installed. "
                f"Fix etcd:source:checksums:{version} or the mirror's file"
            )
        unpacked = os.path.join(work, "unpacked")
        with tarfile.open(tarball) as tar:
            tar.extractall(unpacked, filter="data")
        top = os.path.join(unpacked, f"etcd-v{version}-linux-amd64")
        if not os.path.isfile(os.path.join(top, "etcd")):
            raise CommandExecutionError(f"{url} has no etcd-v{version}-linux-amd64/etcd: not an etcd release tarball")
        dest = os.path.join(work, version)
        os.makedirs(dest, mode=0o755)
        for binary in BINARIES:
            src = os.path.join(top, binary)
            if os.path.isfile(src):
                shutil.copy2(src, os.path.join(dest, binary))
                os.chmod(os.path.join(dest, binary), 0o755)
        reported = etcd_node.binary_version(os.path.join(dest, "etcd"))
        if reported != version:
            raise CommandExecutionError(f"{url}: its etcd reports version {reported}, not {version}")
        final = os.path.join(install_dir, version)
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.rename(dest, final)
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def activate(version, install_dir="/opt/etcd", bin_dir="/usr/local/bin"):
    """
    Point ``<bin_dir>/{etcd,etcdctl,etcdutl}`` at ``<install_dir>/<version>``, one atomic
    rename per link. A binary the release lacks (3.4 has no etcdutl) loses its link.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_install.activate 3.5.33
    """
    src_dir = os.path.join(install_dir, version)
    if not staged(version, install_dir):
        raise CommandExecutionError(f"etcd {version} is not staged in {src_dir}")
    os.makedirs(bin_dir, mode=0o755, exist_ok=True)
    for binary in BINARIES:
        link = os.path.join(bin_dir, binary)
        target = os.path.join(src_dir, binary)
        if not os.path.exists(target):
            if os.path.islink(link):
                os.unlink(link)
            continue
        tmp = f"{link}.etcd-formula-tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)
    return active_version(bin_dir)


# etcd from the OS's packages (etcd:source:type: package); why the guard: etcd_package.
def _blocked_names(service):
    return ["etcd", service]  # the package's own unit is etcd.service whatever ours is named


def packages(names):
    """
    What dpkg says of each package: ``{name: {"version": str or None, "held": bool}}``.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_install.packages '[etcd-server, etcd-client]'
    """
    names = _package_names(names)
    if __grains__.get("os_family") != "Debian":
        versions = {n: __salt__["pkg.version"](n) or None for n in names}
        holds = " ".join(__salt__["pkg.list_holds"]()) if "pkg.list_holds" in __salt__ else ""
        return {n: {"version": v, "held": bool(v) and f"{n}-{v}" in holds} for n, v in versions.items()}
    fmt = "${Package} ${Version} ${db:Status-Want} ${db:Status-Status}\n"
    out = __salt__["cmd.run_all"](["dpkg-query", "-W", "-f", fmt, *names], python_shell=False, ignore_retcode=True)
    known = etcd_package.parse_dpkg_query(out["stdout"])
    return {n: known.get(n, {"version": None, "held": False}) for n in names}


def _package_names(names):
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names:
        raise CommandExecutionError(f"{names!r}: give a list of package names (etcd:source:packages)")
    for name in names:
        if not isinstance(name, str) or not etcd_package.NAME.match(name):
            raise CommandExecutionError(f"{name!r} is not a package name (etcd:source:packages)")
    return names


def _package_version(version):
    if not isinstance(version, str) or not etcd_package.VERSION.match(version):
        raise CommandExecutionError(f"{version!r} is not a package version (etcd:source:package_version)")
    return version


def package_install(names, version, service="etcd", refresh=True, download_only=False):
    """
    Install (or only download) ``names`` at ``version`` with Salt's ``pkg`` module, while
    the packages' own scripts may not start, stop or restart etcd (policy-rc.d answers
    101), and hold them afterwards: only the guarded path ever restarts etcd. Returns
    what changed (``pkg.install``'s changes); raises with apt's words on failure.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_install.package_install '[etcd-server, etcd-client]' 3.4.23-4+b4
    """
    names, version = _package_names(names), _package_version(version)
    wanted = [{n: version} for n in names]
    try:
        with etcd_package.services_blocked(_blocked_names(service)):
            changes = __salt__["pkg.install"](pkgs=wanted, refresh=refresh, downloadonly=download_only)
    except ValueError as exc:  # the guard refused the service name before writing anything
        raise CommandExecutionError(str(exc)) from exc
    except CommandExecutionError as exc:
        errors = "; ".join((getattr(exc, "info", None) or {}).get("errors") or []) or str(exc)
        raise CommandExecutionError(
            f"could not install {', '.join(names)} {version}: {errors.strip()}; check the repository "
            "(apt-cache policy) and etcd:source:package_version"
        ) from exc
    if download_only:
        return changes
    __salt__["pkg.hold"](pkgs=names)
    now = packages(names)
    wrong = etcd_package.off_pin(now, version)
    if wrong:
        raise CommandExecutionError(
            f"after the install {', '.join(wrong)} are not at {version}: {now}; check etcd:source:package_version"
        )
    return changes
