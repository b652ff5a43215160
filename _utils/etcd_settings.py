"""The formula's settings: defaults, merge with pillar, validation, and derived values.

This is the one place that knows the defaults. `map.jinja` gets the merged settings from
`etcd_cluster.settings`, and every execution and state function reads the same dict, so
the SLS files, the templates and the health checks can never disagree on a path or port.
"""

import copy
import difflib
import ipaddress
import os
import re

import etcd_client
import etcd_flags
import etcd_migration
import etcd_releases

try:
    import salt.utils.secret

    _HAS_SECRET = True
except ImportError:  # Salt before 3008 does not mask pillar
    _HAS_SECRET = False


def expose(raw):
    """Pillar values as plain data: Salt 3008 masks them outside templates."""
    return salt.utils.secret.expose(raw) if _HAS_SECRET else raw


# The seed's values (the vendor guide's flags); heartbeat/election in ms.
DEFAULTS = {
    "cluster": {"name": None, "token": None, "bootstrap": False},
    "members": {},
    "advertise": "ip",
    "listen_localhost": True,
    "ports": {"client": 2379, "peer": 2380},
    "version": etcd_releases.DEFAULT_VERSION,
    "source": {"url": etcd_releases.UPSTREAM_URL, "checksums": {}},
    "paths": {
        "install": "/opt/etcd",
        "bin": "/usr/local/bin",
        "config_dir": "/etc/etcd",
        "data": "/var/lib/etcd",
        "unit": "/etc/systemd/system/etcd.service",
        "state": "/var/lib/etcd-formula",
    },
    "user": "etcd",
    "group": "etcd",
    "service": {
        "name": "etcd",
        "start_timeout": 120,
        "probe_timeout": 2,
        "health_timeout": 120,
        # The guarded restart: how long to wait for the cluster lock, the lock lease's
        # TTL (kept alive while the member restarts), and for the member to serve again.
        "lock_wait": 600,
        "lock_ttl": 60,
        "restart_timeout": 120,
    },
    "tuning": {
        "heartbeat_interval": 500,
        "election_timeout": 5000,
        "snapshot_count": 100000,
        "max_snapshots": 10,
        "max_wals": 10,
        "quota_backend_bytes": 8 * 1024**3,
        "auto_compaction_mode": "revision",
        "auto_compaction_retention": "20000",
    },
    "extra_flags": {},
    # TLS on every client and peer URL (see README: TLS). Peers and clients trust two CAs.
    "tls": {
        "enabled": False,
        "mode": "ca_minion",  # ca_minion: a CA minion signs (x509_v2); files: made elsewhere
        "ca_minion": None,
        "generate_ca": True,  # false: bring your own CA, placed on the CA minion only
        "ca_dir": "/etc/pki/etcd-ca",  # on the CA minion
        "dir": "/etc/etcd/pki",  # on every member
        "days_valid": 365,
        "ca_days_valid": 3650,
        "renew_days": 30,
        "key_type": "ec",  # ec (P-256) or rsa (2048 bits)
        "extra_sans": [],
        "bundle_minions": [],  # minions allowed a client bundle: [id, ...] or {id: certificate CN}
        "files": {},  # mode files: <what>: <path on the node>, see TLS_FILES
    },
    # Kubernetes objects for consumers in a cluster (salt/etcd/kubernetes.sls).
    "kubernetes": {
        "minion": None,  # the minion that writes (and may apply) the manifests
        "namespace": "storageos",
        "service": "storageos-etcd",
        "secret": "storageos-etcd-client",  # with TLS: the client bundle
        "legacy_endpoints": False,  # also a v1 Endpoints (marked not to be mirrored)
        "manifest": "/etc/etcd-formula/kubernetes/etcd.yaml",
        "bundle_dir": "/etc/etcd-client",
        "apply": False,  # kubectl apply -f, when kubectl is there
        "kubectl": "kubectl",
        "kubeconfig": None,
    },
    # Before a version change the first member to restart takes a verified snapshot.
    "upgrade": {"snapshot": True, "snapshot_dir": "/var/lib/etcd-formula/snapshots", "keep": 3},
    # Membership changes (learner add and promote, removal of a leaving member).
    "membership": {
        "min_members": 3,  # a removal that would leave fewer voting members is refused
        "join_timeout": 120,  # a new member: start, catch up as a learner, promotion
    },
    # Disk latency check before the first install (etcd's hardware guide: fdatasync p99).
    "preflight": {"mode": "warn", "p99_ms": 10, "seconds": 10},
    # etcd.clean: what it may do on a node (README: Removing etcd from a node). All off: on a
    # live member it refuses; `force` lets it leave through the guarded removal first;
    # `whole_cluster` (with force) stops it without a removal, for tearing a cluster down;
    # `delete_data` deletes the data set aside instead of keeping it.
    "clean": {"force": False, "whole_cluster": False, "delete_data": False},
    # Scheduled health checks (etcd_cluster.health through the minion's scheduler).
    "health": {
        "schedule": True,
        "enabled": True,
        "interval": 60,
        "splay": 5,
        "timeout": 1,
        "max_lag": 1000,
        "quota_warning_pct": 80,
        "quota_critical_pct": 95,
        "wal_fsync_p99_ms": 10,
        "cert_days": 30,
    },
    "lookup": {},
}
OS_FAMILY = {"Debian": {}, "RedHat": {}, "Suse": {}, "Arch": {}}
MEMBER_KEYS = {"address": None, "fqdn": None}
# Maps whose keys are the user's own (minion ids, versions, flag names): no typo check.
FREE_MAPS = {"members", "source:checksums", "extra_flags", "lookup", "tls:files", "tls:bundle_minions"}
TLS_MODES = ("ca_minion", "files")
KEY_TYPES = ("ec", "rsa")
# The certificate material of a member: file name in tls:dir, owner, mode.
TLS_FILES = {
    "client_ca": ("client-ca.crt", "root", 0o644),  # signs server, admin and client certs
    "peer_ca": ("peer-ca.crt", "root", 0o644),  # signs peer certs only
    "server_cert": ("server.crt", "root", 0o644),
    "server_key": ("server.key", "etcd", 0o600),
    "peer_cert": ("peer.crt", "root", 0o644),
    "peer_key": ("peer.key", "etcd", 0o600),
    "admin_cert": ("admin.crt", "root", 0o644),
    "admin_key": ("admin.key", "root", 0o600),
}
ADVERTISE_MODES = ("ip", "fqdn")
COMPACTION_MODES = ("revision", "periodic")
MAX_QUOTA = 8 * 1024**3
# Flags the formula renders itself: in extra_flags they would fight the managed value.
MANAGED_FLAGS = {
    "name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
    "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-token",
    "initial-cluster-state", "cert-file", "key-file", "trusted-ca-file", "client-cert-auth",
    "peer-cert-file", "peer-key-file", "peer-trusted-ca-file", "peer-client-cert-auth", "auto-tls",
    "peer-auto-tls",
}  # fmt: skip


def _merge(base, over):
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def merge(pillar_etcd, os_family=None):
    """defaults → OS family → pillar `etcd:lookup` → pillar `etcd`, like template-formula."""
    settings = copy.deepcopy(DEFAULTS)
    _merge(settings, OS_FAMILY.get(os_family or "", {}))
    pillar_etcd = pillar_etcd if isinstance(pillar_etcd, dict) else {}
    lookup = pillar_etcd.get("lookup")
    if isinstance(lookup, dict):
        _merge(settings, lookup)
    over = {k: v for k, v in pillar_etcd.items() if k != "lookup"}
    if isinstance(over.get("preflight"), str):  # `preflight: enforce` is short for its mode
        over["preflight"] = {"mode": over["preflight"]}
    _merge(settings, over)
    if not settings["cluster"].get("token") and settings["cluster"].get("name"):
        settings["cluster"]["token"] = f"{settings['cluster']['name']}-etcd"
    # Derived, not a pillar key: whether the site chose plain HTTP or TLS explicitly.
    settings["tls_chosen"] = tls_chosen(pillar_etcd)
    return settings


def tls_chosen(pillar_etcd):
    """Whether the site pillar says `tls:enabled` itself (true or false), in `etcd` or
    `etcd:lookup`; the default alone is no choice."""
    for source in (pillar_etcd, (pillar_etcd or {}).get("lookup") if isinstance(pillar_etcd, dict) else None):
        tls = source.get("tls") if isinstance(source, dict) else None
        if isinstance(tls, dict) and isinstance(tls.get("enabled"), bool):
            return True
    return False


class Findings:
    """Errors and warnings, each naming the pillar key and the fix."""

    def __init__(self):
        self.errors, self.warnings = [], []

    def error(self, key, message, fix):
        self.errors.append({"key": f"etcd:{key}", "message": message, "fix": fix})

    def warn(self, key, message, fix):
        self.warnings.append({"key": f"etcd:{key}", "message": message, "fix": fix})

    def as_dict(self):
        return {"valid": not self.errors, "errors": self.errors, "warnings": self.warnings}


def _unknown_keys(given, schema, path, findings):
    for key, value in (given or {}).items():
        full = f"{path}:{key}" if path else str(key)
        if full in FREE_MAPS:
            continue
        if key not in schema:
            near = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1)
            hint = f"did you mean `{(path + ':') if path else ''}{near[0]}`?" if near else "remove it"
            findings.error(full, f"unknown key `etcd:{full}`", hint)
        elif isinstance(schema[key], dict) and isinstance(value, dict):
            _unknown_keys(value, schema[key], full, findings)


def _int(findings, key, value, low, high, fix):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        findings.error(key, f"must be a whole number from {low} to {high}, not {value!r}", fix)
        return None
    return value


def validate(pillar_etcd, settings, minion_id, node_has_etcd=False, as_member=True):  # noqa: PLR0912, PLR0915 (one rule per key, in pillar order)
    """Check merged settings before anything changes; return {valid, errors, warnings}.

    `node_has_etcd`: the node holds etcd data or a unit. A minion that does, but is no
    longer a member, is *leaving* (handled by membership changes), not misconfigured.
    `as_member=False`: a consumer of the cluster (the Kubernetes minion), never a member.
    """
    f = Findings()
    schema = dict(DEFAULTS)
    given = dict(pillar_etcd) if isinstance(pillar_etcd, dict) else {}
    if isinstance(given.get("preflight"), str):
        given["preflight"] = {"mode": given["preflight"]}
    _unknown_keys(given, schema, "", f)

    cluster = settings.get("cluster") or {}
    if not cluster.get("name"):
        f.error("cluster:name", "the cluster has no name", "set `etcd:cluster:name` (e.g. storageos)")

    members = settings.get("members")
    if not isinstance(members, dict) or not members:
        f.error(
            "members",
            "no members are listed" if not members else f"must be a mapping, not a {type(members).__name__}",
            "list each member under `etcd:members` as `<minion id>: {address: <IP>}`",
        )
        members = {}
    seen = {}
    for name, member in members.items():
        key = f"members:{name}"
        if not isinstance(member, dict):
            f.error(key, f"member {name} must be a mapping", f"write `etcd:members:{name}: {{address: <IP>}}`")
            continue
        for mk in member:
            if mk not in MEMBER_KEYS:
                near = difflib.get_close_matches(str(mk), list(MEMBER_KEYS), n=1)
                fix = f"did you mean `{key}:{near[0]}`?" if near else "remove it"
                f.error(f"{key}:{mk}", f"unknown key `etcd:{key}:{mk}`", fix)
        addr = member.get("address")
        try:
            ipaddress.ip_address(str(addr))
        except ValueError:
            f.error(f"{key}:address", f"{addr!r} is not an IP address", f"set `etcd:{key}:address` to the member's IP")
            continue
        if str(addr) in seen:
            f.error(
                f"{key}:address", f"{addr} is also the address of {seen[str(addr)]}", "give every member its own IP"
            )
        seen[str(addr)] = name
    if members and len(members) % 2 == 0:
        f.warn(
            "members", f"{len(members)} members tolerate no more failures than {len(members) - 1}", "use an odd count"
        )
    if as_member and members and minion_id not in members and not node_has_etcd:
        f.error(
            "members",
            f"this minion ({minion_id}) is not a member and holds no etcd data",
            f"add `etcd:members:{minion_id}` or stop targeting this minion with etcd",
        )

    mode = settings.get("advertise")
    if mode not in ADVERTISE_MODES:
        f.error("advertise", f"unknown advertise mode {mode!r}", "set `etcd:advertise` to ip or fqdn")
    elif mode == "fqdn":
        for name, member in members.items():
            if isinstance(member, dict) and not member.get("fqdn"):
                f.error(
                    f"members:{name}:fqdn",
                    f"advertise is fqdn but {name} has no fqdn",
                    f"set `etcd:members:{name}:fqdn`",
                )

    ports = settings.get("ports") or {}
    client = _int(f, "ports:client", ports.get("client"), 1, 65535, "use a free TCP port, e.g. 2379")
    peer = _int(f, "ports:peer", ports.get("peer"), 1, 65535, "use a free TCP port, e.g. 2380")
    if client and client == peer:
        f.error("ports:peer", f"client and peer port are both {client}", "use two ports, e.g. 2379 and 2380")

    _validate_release(settings, f)
    _validate_tuning(settings, f)
    _validate_health(settings, f)
    _validate_membership(settings, f)
    _validate_clean(settings, f)
    _validate_upgrade(settings, f)
    _validate_tls(settings, f)
    _validate_k8s_and_preflight(settings, f)
    _validate_extra_flags(settings, f)
    _validate_names_and_paths(given, settings, f)
    if as_member and not settings.get("tls_chosen", True):
        choose = (
            "set `etcd:tls:enabled: true` with `etcd:tls:ca_minion: <a minion that is not a member>` "
            "(production), or `etcd:tls:enabled: false` (a lab)"
        )
        if node_has_etcd:  # a running plain cluster keeps running; it is told every apply
            f.warn("tls:enabled", "not set: this cluster serves plain HTTP and asks clients for no certificate", choose)
        else:
            f.error(
                "tls:enabled", "not set: a new cluster needs an explicit choice, plain HTTP is never silent", choose
            )
    return f.as_dict()


# Names that reach files, tags, keys in etcd and commands: checked by pattern first.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # cluster names, tokens, minion ids
CN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # a client certificate's CN (an etcd user, later)
POSIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
FQDN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# Directories the formula writes into or may delete: never a system directory itself.
OWN_DIRS = (
    "paths:install", "paths:config_dir", "paths:data", "paths:state", "tls:dir", "tls:ca_dir",
    "upgrade:snapshot_dir", "kubernetes:bundle_dir",
)  # fmt: skip
OTHER_PATHS = ("paths:bin", "paths:unit", "kubernetes:manifest")
SYSTEM_DIRS = {
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run",
    "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/local/bin",
    "/usr/local/sbin", "/usr/sbin", "/usr/share", "/var", "/var/cache", "/var/lib", "/var/log", "/var/run",
    "/var/tmp", "/etc/systemd", "/etc/systemd/system",
}  # fmt: skip


def _get(settings, path):
    node = settings
    for part in path.split(":"):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def path_problem(value, own):
    """(what is wrong, the fix) for a path, or None. `own`: a directory the formula writes
    into or may delete, which is never a system directory nor one component long."""
    if not isinstance(value, str) or not value:
        return "is not a path", "give an absolute path, e.g. /var/lib/etcd"
    if not value.startswith("/"):
        return f"{value!r} is not an absolute path", "start it with /"
    if CONTROL.search(value):
        return f"{value!r} contains a control character", "one line of text"
    if ".." in value.split("/") or os.path.normpath(value) != value:
        return f"{value!r} is not a normalised path", f"write it as {os.path.normpath(value)!r}, without .. or //"
    if own and (value in SYSTEM_DIRS or value.count("/") < 2):
        return (
            f"{value} is a system directory or too short: the formula writes into it and may delete it",
            "use a directory of its own with at least two components, e.g. /var/lib/etcd",
        )
    return None


def _validate_names_and_paths(given, settings, f):
    """Every value that reaches a file, a path, an etcd key or a command: type and pattern."""
    for key, text in _strings(given, ""):
        if CONTROL.search(text):
            f.error(key, "contains a control character (a newline would add a line to a file)", "one line of text")
    cluster = settings.get("cluster") or {}
    for part in ("name", "token"):
        value = cluster.get(part)
        if value is not None and (not isinstance(value, str) or not NAME.match(value)):
            f.error(
                f"cluster:{part}",
                f"{value!r} is not a plain name (letters, digits, . _ -, up to 63, no / or spaces)",
                f"set `etcd:cluster:{part}` to e.g. storageos",
            )
    members = settings.get("members")
    for name, member in (members if isinstance(members, dict) else {}).items():
        if not isinstance(name, str) or not NAME.match(name):
            f.error(f"members:{name}", f"{name!r} is not a minion id", "use the member's minion id, e.g. etcd1")
        fqdn = member.get("fqdn") if isinstance(member, dict) else None
        if fqdn is not None and (not isinstance(fqdn, str) or not FQDN.match(fqdn)):
            f.error(f"members:{name}:fqdn", f"{fqdn!r} is not a DNS name", "e.g. etcd1.example.com")
    for part in ("user", "group"):
        value = settings.get(part)
        if not isinstance(value, str) or not POSIX_NAME.match(value):
            f.error(part, f"{value!r} is not a user or group name", f"set `etcd:{part}` to e.g. etcd")
        elif value == "root":
            f.error(part, "etcd must not run as root", f"set `etcd:{part}` to etcd (the formula creates it)")
    for key in OWN_DIRS + OTHER_PATHS:
        value = _get(settings, key)
        problem = path_problem(value, key in OWN_DIRS)
        if problem:
            f.error(key, *problem)


def _strings(node, path):
    """(key, text) of every string in the given pillar, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            full = f"{path}:{key}" if path else str(key)
            if isinstance(key, str):
                yield full, key
            yield from _strings(value, full)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}:{i}")
    elif isinstance(node, str):
        yield path, node


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _validate_extra_flags(settings, f):
    """One vocabulary: every spelling of a flag is normalised before any check."""
    extra = settings.get("extra_flags")
    if extra is None:
        return
    if not isinstance(extra, dict):
        f.error("extra_flags", "must be a mapping of flag: value", "e.g. {enable-pprof: true}")
        return
    minor = ".".join(str(settings.get("version", "")).split(".")[:2])
    known = etcd_flags.known(minor)
    if known is None:
        f.warn(
            "extra_flags",
            f"no flag list for etcd {minor}: extra_flags are not checked",
            "add it to _utils/etcd_flags.py",
        )
    seen = {}
    for raw, value in extra.items():
        key = f"extra_flags:{raw}"
        name = etcd_flags.normal(raw)
        if name is None:
            f.error(key, f"{raw!r} is not a flag name", "write it as etcd does, e.g. enable-pprof")
            continue
        if name in MANAGED_FLAGS:
            f.error(key, f"--{name} is set by the formula", "remove it from `etcd:extra_flags`")
        elif known is not None and name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            f.error(key, f"etcd {minor} has no --{name}", f"did you mean {near[0]}?" if near else "see etcd --help")
        if name in seen:
            f.error(key, f"--{name} is given twice (also as {seen[name]!r})", "keep one spelling")
        seen[name] = raw
        if isinstance(value, (dict, list)) or value is None:
            f.error(key, "must be a single value (text, number or true/false)", "e.g. enable-pprof: true")
        # Control characters in values: _validate_names_and_paths, for every string.


def _validate_release(settings, f):
    version = settings.get("version")
    source = settings.get("source") or {}
    checksums = source.get("checksums") or {}
    for ver, digest in checksums.items():
        if not etcd_releases.SHA256_RE.match(str(digest).lower()):
            f.error(f"source:checksums:{ver}", f"{digest!r} is not a sha256 (64 hex digits)", "copy it from SHA256SUMS")
    if etcd_releases.parse(version) is None:
        f.error("version", f"{version!r} is not a version X.Y.Z", "set `etcd:version` like 3.5.33")
    elif not etcd_releases.checksum(version, checksums):
        f.error(
            "source:checksums",
            f"no sha256 is known for etcd {version}",
            f"add `etcd:source:checksums:{version}: <sha256 of {etcd_releases.tarball_name(version)}>`",
        )
    elif version in etcd_releases.UNSAFE_VERSIONS:
        f.warn("version", f"etcd {version}: {etcd_releases.UNSAFE_VERSIONS[version]}", "use 3.5.3 or newer")
    url = str(source.get("url") or "")
    if not url.startswith(("http://", "https://", "salt://", "file://")):
        f.error("source:url", f"{url!r} is not an http(s)://, salt:// or file:// URL", "set `etcd:source:url`")


def _validate_tuning(settings, f):
    t = settings.get("tuning") or {}
    hb = _int(f, "tuning:heartbeat_interval", t.get("heartbeat_interval"), 1, 60000, "etcd's default is 100 (ms)")
    el = _int(f, "tuning:election_timeout", t.get("election_timeout"), 1, 60000, "etcd's default is 1000 (ms)")
    if hb and el and el < 5 * hb:
        f.error(
            "tuning:election_timeout",
            f"election timeout {el} ms is under 5 x heartbeat {hb} ms: etcd refuses to start",
            f"raise `etcd:tuning:election_timeout` to at least {5 * hb}",
        )
    for key in ("snapshot_count", "max_snapshots", "max_wals"):
        _int(f, f"tuning:{key}", t.get(key), 0, 10**9, "use a whole number (0 = unlimited for max_*)")
    quota = _int(f, "tuning:quota_backend_bytes", t.get("quota_backend_bytes"), 0, 2**40, "use bytes, e.g. 8589934592")
    if quota and quota > MAX_QUOTA:
        f.warn("tuning:quota_backend_bytes", f"{quota} bytes is over etcd's suggested 8 GiB", "keep it at most 8 GiB")
    if t.get("auto_compaction_mode") not in COMPACTION_MODES:
        f.error(
            "tuning:auto_compaction_mode",
            f"{t.get('auto_compaction_mode')!r} is not a mode",
            "use revision or periodic",
        )


def _validate_tls(settings, f):  # noqa: PLR0912 (one rule per tls key)
    t = settings.get("tls") or {}
    for key in ("enabled", "generate_ca"):
        if not isinstance(t.get(key), bool):
            f.error(f"tls:{key}", f"must be true or false, not {t.get(key)!r}", f"set `etcd:tls:{key}: true`")
    if not t.get("enabled"):
        return
    mode = t.get("mode")
    if mode not in TLS_MODES:
        f.error("tls:mode", f"unknown TLS mode {mode!r}", "set `etcd:tls:mode` to ca_minion or files")
    if mode == "ca_minion":
        ca = t.get("ca_minion")
        if not ca:
            f.error(
                "tls:ca_minion", "no CA minion is named", "set `etcd:tls:ca_minion` to the minion that keeps the CA"
            )
        elif ca in (settings.get("members") or {}):
            f.error(
                "tls:ca_minion",
                f"{ca} is an etcd member: the CA key would live on a member",
                "name a minion that is not a member (and not the master's host)",
            )
    if mode == "files":
        files = t.get("files") or {}
        for what in files:
            if what not in TLS_FILES:
                near = difflib.get_close_matches(str(what), list(TLS_FILES), n=1)
                f.error(
                    f"tls:files:{what}",
                    f"unknown TLS file {what!r}",
                    f"did you mean `{near[0]}`?" if near else "remove it",
                )
        for what in TLS_FILES:
            if what not in files:
                f.error(f"tls:files:{what}", f"mode files needs the path of {what}", f"set `etcd:tls:files:{what}`")
            elif "key" in what and not str(files[what]).startswith("/"):
                f.error(
                    f"tls:files:{what}", "must be an absolute path on the node", "keys stay files, never pillar text"
                )
    if t.get("key_type") not in KEY_TYPES:
        f.error("tls:key_type", f"unknown key type {t.get('key_type')!r}", "use ec or rsa")
    days = _int(f, "tls:days_valid", t.get("days_valid"), 1, 3650, "e.g. 365")
    renew = _int(f, "tls:renew_days", t.get("renew_days"), 0, 3650, "e.g. 30")
    _int(f, "tls:ca_days_valid", t.get("ca_days_valid"), 1, 36500, "e.g. 3650")
    if days and renew is not None and renew >= days:
        f.warn("tls:renew_days", f"{renew} days is not under the validity {days}: every apply renews", "lower it")
    if not isinstance(t.get("extra_sans"), list):
        f.error("tls:extra_sans", "must be a list of DNS names or IPs", "e.g. [etcd.storageos.svc]")
    bundles = t.get("bundle_minions")
    if isinstance(bundles, list):
        bundles = {m: "etcd-client" for m in bundles}
    if not isinstance(bundles, dict):
        f.error("tls:bundle_minions", "must be a list of minion ids or a map id: CN", "e.g. {k8s-master1: storageos}")
    else:
        for minion, cn in bundles.items():
            if not isinstance(minion, str) or not NAME.match(minion):
                f.error(f"tls:bundle_minions:{minion}", f"{minion!r} is not a minion id", "e.g. k8s-master1")
            elif not isinstance(cn, str) or not CN.match(cn):
                f.error(f"tls:bundle_minions:{minion}", f"{cn!r} is not a certificate CN", "e.g. storageos")


PREFLIGHT_MODES = ("warn", "enforce", "off")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _validate_k8s_and_preflight(settings, f):
    p = settings.get("preflight") or {}
    if p.get("mode") not in PREFLIGHT_MODES:
        f.error("preflight:mode", f"unknown preflight mode {p.get('mode')!r}", "use warn, enforce or off")
    ms = p.get("p99_ms")
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms <= 0:
        f.error("preflight:p99_ms", f"must be a positive number of ms, not {ms!r}", "etcd's guide says 10")
    _int(f, "preflight:seconds", p.get("seconds"), 1, 600, "time bound of the disk check, e.g. 10")
    k = settings.get("kubernetes") or {}
    for key in ("namespace", "service", "secret"):
        if not K8S_NAME.match(str(k.get(key) or "")):
            f.error(f"kubernetes:{key}", f"{k.get(key)!r} is not a Kubernetes name", "lower case, digits and '-'")
    if not str(k.get("service") or "a")[0].isalpha():  # a Service name is a DNS-1035 label
        f.error("kubernetes:service", f"{k.get('service')!r} must start with a letter", "e.g. storageos-etcd")
    if k.get("minion") is not None and not (isinstance(k["minion"], str) and k["minion"]):
        f.error("kubernetes:minion", f"{k['minion']!r} is not a minion ID", "name the minion that writes the manifests")
    for key in ("legacy_endpoints", "apply"):
        if not isinstance(k.get(key), bool):
            f.error(f"kubernetes:{key}", f"must be true or false, not {k.get(key)!r}", f"set `etcd:kubernetes:{key}`")


def _validate_upgrade(settings, f):
    u = settings.get("upgrade") or {}
    if not isinstance(u.get("snapshot"), bool):
        f.error("upgrade:snapshot", f"must be true or false, not {u.get('snapshot')!r}", "set `etcd:upgrade:snapshot`")
    _int(f, "upgrade:keep", u.get("keep"), 1, 100, "snapshots to keep, e.g. 3")


def _validate_membership(settings, f):
    m = settings.get("membership") or {}
    _int(f, "membership:min_members", m.get("min_members"), 1, 99, "voting members a removal must leave, e.g. 3")
    _int(f, "membership:join_timeout", m.get("join_timeout"), 5, 3600, "seconds for a new member to join, e.g. 120")


def _validate_clean(settings, f):
    c = settings.get("clean")
    if not isinstance(c, dict):
        f.error("clean", f"must be a mapping, not {type(c).__name__}", "e.g. `etcd:clean: {force: true}`")
        return
    for key in ("force", "whole_cluster", "delete_data"):
        if not isinstance(c.get(key), bool):
            f.error(f"clean:{key}", f"must be true or false, not {c.get(key)!r}", f"set `etcd:clean:{key}: true`")


def _validate_health(settings, f):
    h = settings.get("health") or {}
    for key in ("schedule", "enabled"):
        if not isinstance(h.get(key), bool):
            f.error(f"health:{key}", f"must be true or false, not {h.get(key)!r}", f"set `etcd:health:{key}: true`")
    interval = _int(f, "health:interval", h.get("interval"), 2, 86400, "seconds between checks, e.g. 60")
    splay = _int(f, "health:splay", h.get("splay"), 0, 3600, "seconds of random delay, e.g. 5")
    if interval and splay and splay >= interval:
        f.error(
            "health:splay", f"splay {splay} s is not under the interval {interval} s", "use a splay under the interval"
        )
    timeout = h.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.1 <= timeout <= 30:
        f.error("health:timeout", f"must be 0.1 to 30 seconds, not {timeout!r}", "per-request timeout, e.g. 1")
    _int(f, "health:max_lag", h.get("max_lag"), 1, 10**9, "raft entries a member may trail, e.g. 1000")
    warn = _int(f, "health:quota_warning_pct", h.get("quota_warning_pct"), 1, 100, "e.g. 80")
    crit = _int(f, "health:quota_critical_pct", h.get("quota_critical_pct"), 1, 100, "e.g. 95")
    if warn and crit and warn > crit:
        f.error("health:quota_warning_pct", f"{warn}% is above the critical {crit}%", "keep warning under critical")
    _int(f, "health:wal_fsync_p99_ms", h.get("wal_fsync_p99_ms"), 1, 10000, "etcd's hardware guide says 10")
    _int(f, "health:cert_days", h.get("cert_days"), 0, 3650, "days before expiry to report, e.g. 30")


def host_of(settings, name):
    member = settings["members"][name]
    return member["fqdn"] if settings["advertise"] == "fqdn" else member["address"]


def _url(scheme, host, port):
    host = f"[{host}]" if ":" in str(host) else host
    return f"{scheme}://{host}:{port}"


def tls_on(settings):
    return bool((settings.get("tls") or {}).get("enabled"))


def scheme(settings):
    return "https" if tls_on(settings) else "http"


def tls_path(settings, what):
    """Where a member keeps one piece of its TLS material (TLS_FILES): the one place."""
    return os.path.join(settings["tls"]["dir"], TLS_FILES[what][0])


def client_tls(settings):
    """(ca, cert, key) for the formula's own calls, or Nones without TLS."""
    if not tls_on(settings):
        return None, None, None
    return tuple(tls_path(settings, w) for w in ("client_ca", "admin_cert", "admin_key"))


def client(settings, me, urls=None, timeout=None):
    """The formula's own client: `urls` (default: this member first, then the rest),
    bounded by `timeout` (default `service:probe_timeout`), with the admin certificate
    under TLS."""
    return etcd_client.Client(
        urls or endpoints(settings, me),
        timeout or settings["service"]["probe_timeout"],
        *client_tls(settings),
    )


def bundle_cns(settings):
    """{minion: the CN its client bundle certificate must carry}: pinned by pillar, so a
    bundle minion cannot choose its identity. `bundle_minions` as a map gives each CN; as a
    list, the Kubernetes minion's is `kubernetes:service` (the storage operator's user) and
    the others' `etcd-client`. Members may hold a bundle too (CN as for the list form)."""
    t, k = settings["tls"], settings.get("kubernetes") or {}
    given = t.get("bundle_minions") or []

    def default(minion):
        return k.get("service") if minion == k.get("minion") and k.get("service") else "etcd-client"

    out = {m: default(m) for m in settings.get("members") or {}}
    if isinstance(given, dict):
        out.update({m: cn for m, cn in given.items() if isinstance(cn, str)})
    else:
        out.update({m: default(m) for m in given})
    return out


def member_sans(settings, name):
    """What a member's server and peer certificates must name, from the site pillar only.

    Server: member IP, FQDN, minion id, localhost, 127.0.0.1, ::1 and extra SANs. Peer: the
    same, since etcd checks a peer's certificate against the address it connects from.
    The CA minion pins the same list in the member's signing policy (etcd_policies), so
    nothing a member reports about itself (its hostname grain) reaches a certificate.
    """
    member = settings["members"][name]
    dns = [d for d in (member.get("fqdn"), name, "localhost") if d]
    dns += [str(x) for x in settings["tls"].get("extra_sans") or [] if not _is_ip(x)]
    ips = [str(member["address"]), "127.0.0.1", "::1"]
    ips += [str(x) for x in settings["tls"].get("extra_sans") or [] if _is_ip(x)]
    return {"dns": sorted(set(dns)), "ip": sorted(set(ips), key=ips.index)}


def _is_ip(text):
    try:
        ipaddress.ip_address(str(text))
    except ValueError:
        return False
    return True


def peer_url(settings, name):
    return _url(scheme(settings), host_of(settings, name), settings["ports"]["peer"])


def member_scheme(settings, name):
    """The scheme member `name` serves clients on: the pillar's, except while a running
    cluster moves to TLS (etcd_migration), when the live member list says."""
    return (settings.get("serving") or {}).get(name) or scheme(settings)


def client_url(settings, name):
    return _url(member_scheme(settings, name), host_of(settings, name), settings["ports"]["client"])


def client_urls_any_scheme(settings, name):
    """A member's client URL over https, then over http: for a cluster half on TLS."""
    return [_url(sch, host_of(settings, name), settings["ports"]["client"]) for sch in ("https", "http")]


def client_urls(settings):
    """Every member's advertised client URL, in member order."""
    return [client_url(settings, n) for n in settings["members"]]


def local_endpoint(settings, name):
    """Where this member's own formula calls go: loopback when etcd listens there."""
    if settings.get("listen_localhost"):
        return _url(member_scheme(settings, name), "127.0.0.1", settings["ports"]["client"])
    return _url(member_scheme(settings, name), settings["members"][name]["address"], settings["ports"]["client"])


def endpoints(settings, me):
    """Client endpoints for the formula's own calls: this member first (loopback), then the rest."""
    eps = [local_endpoint(settings, me)] if me in settings["members"] else []
    return eps + [u for u in client_urls(settings) if u not in eps]


def initial_cluster(settings, names=None):
    names = names if names is not None else list(settings["members"])
    return ",".join(f"{n}={peer_url(settings, n)}" for n in names)


def flags(settings, name, version=None):
    """The ETCD_* environment for member `name` (etcd reads every flag from ETCD_<FLAG>).

    While a running cluster moves to TLS, `tls_stage` (set by etcd_cluster.settings)
    may say `peer-creds`: http URLs, with the peer credentials only (etcd_migration)."""
    s, t = settings, settings["tuning"]
    addr = s["members"][name]["address"]
    peer_creds_only = tls_on(s) and s.get("tls_stage") == etcd_migration.PEER_CREDS
    sch = "http" if peer_creds_only else scheme(s)
    listen_client = [_url(sch, addr, s["ports"]["client"])]
    if s.get("listen_localhost"):
        listen_client.append(_url(sch, "127.0.0.1", s["ports"]["client"]))
    env = {
        "ETCD_NAME": name,
        "ETCD_DATA_DIR": s["paths"]["data"],
        "ETCD_LISTEN_CLIENT_URLS": ",".join(listen_client),
        "ETCD_ADVERTISE_CLIENT_URLS": _url(sch, host_of(s, name), s["ports"]["client"]),
        "ETCD_LISTEN_PEER_URLS": _url(sch, addr, s["ports"]["peer"]),
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": _url(sch, host_of(s, name), s["ports"]["peer"]),
        "ETCD_INITIAL_CLUSTER": initial_cluster(s),
        "ETCD_INITIAL_CLUSTER_TOKEN": s["cluster"]["token"],
        # `new` is only ever set by the guarded bootstrap path (a runtime drop-in).
        "ETCD_INITIAL_CLUSTER_STATE": "existing",
        "ETCD_HEARTBEAT_INTERVAL": t["heartbeat_interval"],
        "ETCD_ELECTION_TIMEOUT": t["election_timeout"],
        "ETCD_SNAPSHOT_COUNT": t["snapshot_count"],
        "ETCD_MAX_SNAPSHOTS": t["max_snapshots"],
        "ETCD_MAX_WALS": t["max_wals"],
        "ETCD_QUOTA_BACKEND_BYTES": t["quota_backend_bytes"],
        "ETCD_AUTO_COMPACTION_MODE": t["auto_compaction_mode"],
        "ETCD_AUTO_COMPACTION_RETENTION": t["auto_compaction_retention"],
        "ETCD_LOGGER": "zap",
    }
    if peer_creds_only:
        env.update(
            ETCD_PEER_CERT_FILE=tls_path(s, "peer_cert"),
            ETCD_PEER_KEY_FILE=tls_path(s, "peer_key"),
            ETCD_PEER_TRUSTED_CA_FILE=tls_path(s, "peer_ca"),
        )
    elif tls_on(s):
        # Clients and peers trust different CAs: a client certificate (signed by the
        # client CA) cannot speak raft on the peer port. No auto-tls anywhere.
        env.update(
            ETCD_CERT_FILE=tls_path(s, "server_cert"),
            ETCD_KEY_FILE=tls_path(s, "server_key"),
            ETCD_TRUSTED_CA_FILE=tls_path(s, "client_ca"),
            ETCD_CLIENT_CERT_AUTH="true",
            ETCD_PEER_CERT_FILE=tls_path(s, "peer_cert"),
            ETCD_PEER_KEY_FILE=tls_path(s, "peer_key"),
            ETCD_PEER_TRUSTED_CA_FILE=tls_path(s, "peer_ca"),
            ETCD_PEER_CLIENT_CERT_AUTH="true",
        )
    if (etcd_releases.parse(version or s["version"]) or (0, 0, 0))[:2] < (3, 5):
        # 3.5 pre-votes by default; on 3.4 a restarted follower could otherwise force an election.
        env["ETCD_PRE_VOTE"] = "true"
    for flag, value in (s.get("extra_flags") or {}).items():
        key = "ETCD_" + (etcd_flags.normal(flag) or str(flag)).upper().replace("-", "_")
        env[key] = str(value).lower() if isinstance(value, bool) else value
    return {k: str(v) for k, v in env.items()}


def restart_relevant(env):
    """The flags whose change needs a restart: etcd ignores --initial-* once it has data."""
    return {k: v for k, v in env.items() if not k.startswith("ETCD_INITIAL_")}
