"""Facts about the etcd on this node, read from the files it owns (no Salt needed)."""

import base64
import errno
import hashlib
import json
import os
import re
import socket
import subprocess

import etcd_envfile

VERSION_RE = re.compile(r"etcd Version:\s*(\d+\.\d+\.\d+)")

# In every directory the formula makes (install, config, TLS, state): etcd.clean deletes
# a directory only when it carries this file (_states/etcd_clean.py).
MARKER = ".etcd-formula"


def has_data(data_dir):
    """True when the data dir holds a member (etcd writes <data>/member/{wal,snap})."""
    return os.path.isdir(os.path.join(data_dir, "member"))


def has_etcd(settings):
    return has_data(settings["paths"]["data"]) or os.path.exists(settings["paths"]["unit"])


def is_local_address(address):
    """Whether this node can listen on `address`: a UDP socket bound to it (port 0), no
    packet sent. Only "address not available" says no; any other error is not judged."""
    family = socket.AF_INET6 if ":" in str(address) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((str(address), 0))
    except OSError as exc:
        return exc.errno != errno.EADDRNOTAVAIL
    return True


def binary_version(path, memo=None):
    """The version an etcd binary reports about itself, or None. With `memo` (a dict kept
    for one Salt job: the loader's __context__) asked once per binary file, as an apply
    asks at render time and again in its states."""
    if not os.access(path, os.X_OK):
        return None
    st = os.stat(path)
    ident = (os.path.realpath(path), st.st_ino, st.st_mtime_ns, st.st_size)
    if memo is not None and ident in memo:
        return memo[ident]
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = VERSION_RE.search(out)
    version = match.group(1) if match else None
    if memo is not None:
        memo[ident] = version
    return version


# What `systemctl is-active` and `is-enabled` answer 0 for.
ACTIVE_STATES = ("active", "reloading")
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient")


def unit_active(name):
    """Whether systemd runs the unit."""
    return unit_state(name)[0]


def unit_state(name):
    """(active, enabled) from one `systemctl show`, without Salt's service module, which
    also asks systemd whether unit files changed (the formula reloads systemd itself when
    it writes the unit) and costs ten times as much. Each systemctl costs about 15 ms, and
    `etcd_cluster.running` needs both on every apply."""
    try:
        cmd = ["systemctl", "show", "--property=ActiveState,UnitFileState", name]
        out = subprocess.run(cmd, timeout=30, check=False, capture_output=True, text=True).stdout
    except (OSError, subprocess.SubprocessError):
        return False, False
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return props.get("ActiveState") in ACTIVE_STATES, props.get("UnitFileState") in ENABLED_STATES


def enable_unit(name):
    """Enable the unit for boot without reloading systemd: the formula has just reloaded it
    for the new unit file, and boot reads the links afresh (saves a second reload, about
    0.2 s of a first apply)."""
    try:
        cmd = ["systemctl", "enable", "--quiet", "--no-reload", name]
        return subprocess.run(cmd, timeout=30, check=False, capture_output=True).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def read_text(path):
    """A file's text, or "" when it cannot be read."""
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def wanted(settings, env=None, unit=None, cas=None):
    """What etcd should run with now: version, restart-relevant flags (from etcd.env), the
    unit's digest and, with TLS, the digest of the trusted CA files. For a plan (dry run,
    etcd_rolling.plan) the caller gives what the apply would write instead of the files:
    `env` (flags), `unit` (text), `cas` ({"client_ca": PEM, "peer_ca": PEM})."""
    if env is None:
        env = read_env(settings)
    out = {
        "version": settings["version"],
        "flags": {k: v for k, v in env.items() if not k.startswith("ETCD_INITIAL_")},
        "unit": sha256_text(read_text(settings["paths"]["unit"]) if unit is None else unit),
    }
    source = settings.get("source") or {}
    if source.get("type") == "package":  # a new package revision is a restart too
        out["package"] = source.get("package_version")
    if env.get("ETCD_TRUSTED_CA_FILE"):
        if cas:
            client_ca, peer_ca = cas.get("client_ca") or "", cas.get("peer_ca") or ""
        else:
            client_ca = read_text(env["ETCD_TRUSTED_CA_FILE"])
            peer_ca = read_text(env.get("ETCD_PEER_TRUSTED_CA_FILE", ""))
        out["trust"] = sha256_text(client_ca + peer_ca)
        # Which CAs, by fingerprint: what a CA rotation asks of every member (etcd_rotation).
        out["trusted"] = {"client_ca": pem_fingerprints(client_ca), "peer_ca": pem_fingerprints(peer_ca)}
    return out


PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def pem_fingerprints(text):
    """SHA-256 fingerprints (of the DER) of the certificates in a PEM text, in order: the
    one way CAs are named (rotation records, trust checks), without cryptography, so the
    hot path (health checks, restart decisions) never loads it. Equal to
    etcd_tls.fingerprint() of each certificate (tests/unit/test_tls_material.py)."""
    return [hashlib.sha256(base64.b64decode("".join(b.split()))).hexdigest() for b in PEM_BLOCK.findall(text or "")]


def file_fingerprints(path):
    """pem_fingerprints of a bundle file ([] when it is missing)."""
    return pem_fingerprints(read_text(path))


def running_trust(started, want):
    """The CAs the running etcd trusts, by fingerprint: as recorded when it started, or,
    for a start recorded before fingerprints were, the files' when they are unchanged."""
    if not started:
        return None
    if "trusted" in started:
        return started["trusted"]
    if started.get("trust") and started.get("trust") == want.get("trust"):
        return want.get("trusted")
    return None


def started_path(settings):
    """Where the formula records what etcd last started with (flags, unit, trust)."""
    return os.path.join(settings["paths"]["state"], "started.json")


def read_env(settings):
    """The ETCD_* flags etcd.env holds now ({} before it is written)."""
    return etcd_envfile.parse(read_text(os.path.join(settings["paths"]["config_dir"], "etcd.env")))


def restart_reasons(started, want, running_version):
    """Why a running member must restart to run what is wanted; [] when it need not."""
    reasons = []
    if running_version and running_version != want["version"]:
        reasons.append(f"version: running {running_version}, wanted {want['version']}")
    if started is None:
        return reasons
    old, new = started.get("flags", {}), want["flags"]
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        reasons.append("flags changed: " + ", ".join(changed))
    if started.get("unit") != want["unit"]:
        reasons.append("unit file changed")
    if started.get("package") != want.get("package"):
        was, now = started.get("package"), want.get("package")
        reasons.append(f"package: started from {_package_text(was)}, wanted {_package_text(now)}")
    if started.get("trust") != want.get("trust") and "trust" in started:
        reasons.append("trusted CA changed")
    return reasons


def _package_text(version):
    return f"package {version}" if version else "the tarball"


def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text):
    return hashlib.sha256(text.encode()).hexdigest()


def read_json(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def write_json(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# Read by the unit after etcd.env (salt/etcd/files/etcd.service.jinja): the one-time first
# start of a member. In /run, so a reboot never brings it back.
BOOTSTRAP_ENV = "/run/etcd-formula/bootstrap.env"


def write_bootstrap(cluster_state, initial_cluster=None):
    """Allow one first start without member data: a new cluster (`new`), or joining one
    (`existing`, with the live member list when it differs from pillar's)."""
    os.makedirs(os.path.dirname(BOOTSTRAP_ENV), mode=0o755, exist_ok=True)
    with open(BOOTSTRAP_ENV, "w", encoding="utf-8") as fh:
        fh.write("# etcd-formula: one-time first start of this member; removed once it serves.\n")
        fh.write(f"ETCD_INITIAL_CLUSTER_STATE={cluster_state}\n")
        if initial_cluster:
            fh.write(f"ETCD_INITIAL_CLUSTER={initial_cluster}\n")


def drop_bootstrap():
    if os.path.exists(BOOTSTRAP_ENV):
        os.unlink(BOOTSTRAP_ENV)
