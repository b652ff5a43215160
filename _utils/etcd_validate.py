"""Validation of the merged settings: every error names the pillar key and the fix.

Pure: `validate()` gets the pillar, the merged settings and what the caller knows about
the node; `etcd_cluster.validate` adds the checks that need the node itself.
"""

import difflib
import ipaddress
import re

import etcd_backup
import etcd_flags
import etcd_maintenance
import etcd_metrics
import etcd_package
import etcd_releases
from etcd_names import CN, CONTROL, FQDN, NAME, OTHER_PATHS, OWN_DIRS, POSIX_NAME, UNIT, path_problem
from etcd_settings import (
    ADVERTISE_MODES,
    COMPACTION_MODES,
    DEFAULTS,
    FREE_MAPS,
    KEY_TYPES,
    MANAGED_FLAGS,
    MAX_QUOTA,
    MEMBER_KEYS,
    OPTIONAL_FILES,
    PACKAGE_BIN,
    SOURCE_TYPES,
    TLS_FILES,
    TLS_MODES,
)

PAIR = " (the gateway pair goes together: a client certificate without a CN, and its key)"


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

    # The shared rules of a settings section (etcd_backup, etcd_maintenance use them too).
    def section(self, settings, name):
        """`settings[name]` when it is a mapping, else None and the error."""
        value = settings.get(name)
        if not isinstance(value, dict):
            self.error(name, f"must be a mapping, not {type(value).__name__}", "see pillar/sites/example.sls")
            return None
        return value

    def booleans(self, name, section, keys):
        for key in keys:
            if not isinstance(section.get(key), bool):
                self.error(
                    f"{name}:{key}", f"must be true or false, not {section.get(key)!r}", f"set `etcd:{name}:{key}`"
                )

    def wholes(self, name, section, rules):
        """`whole` for each (key, low, high, fix) of a section's table of rules."""
        for key, low, high, fix in rules:
            self.whole(f"{name}:{key}", section.get(key), low, high, fix)

    def whole(self, key, value, low, high, fix):
        """`value` when it is a whole number from `low` to `high`, else None and the error."""
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(key, f"must be a whole number from {low} to {high}, not {value!r}", fix)
            return None
        return value


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
    return findings.whole(key, value, low, high, fix)


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

    _validate_release(settings, f, _get(given, "paths:bin"))
    _validate_tuning(settings, f)
    _validate_health(settings, f)
    etcd_backup.validate(settings, f)
    etcd_maintenance.validate(settings, f)
    etcd_metrics.validate(settings, f)
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


def _get(settings, path):
    node = settings
    for part in path.split(":"):
        node = node.get(part) if isinstance(node, dict) else None
    return node


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
    _validate_unit_name(settings, f)
    for key in OWN_DIRS + OTHER_PATHS:
        value = _get(settings, key)
        problem = path_problem(value, key in OWN_DIRS)
        if problem:
            f.error(key, *problem)


def _validate_unit_name(settings, f):
    unit = _get(settings, "service:name")
    if not isinstance(unit, str) or not UNIT.match(unit):  # goes into systemctl, journalctl and a path
        f.error("service:name", f"{unit!r} is not a systemd unit name", "set `etcd:service:name` to e.g. etcd")


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


def _validate_release(settings, f, pillar_bin=None):
    version = settings.get("version")
    source = settings.get("source") or {}
    kind = source.get("type")
    if kind not in SOURCE_TYPES:
        f.error("source:type", f"{kind!r} is not one of {', '.join(SOURCE_TYPES)}", "set `etcd:source:type: tarball`")
        return
    if kind == "package":
        _validate_package(settings, source, f, pillar_bin)
        return
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


def _validate_package(settings, source, f, pillar_bin=None):
    version = settings.get("version")
    if pillar_bin not in (None, PACKAGE_BIN):
        f.warn(
            "paths:bin",
            f"{pillar_bin} is not used with `source:type: package`: etcd runs from the packages' {PACKAGE_BIN}",
            "drop `etcd:paths:bin` from the site's pillar (it names the tarball's links)",
        )
    names = source.get("packages")
    if not isinstance(names, list) or not names:
        f.error(
            "source:packages",
            f"{names!r}: no package to install on this OS family",
            "list them, e.g. `etcd:source:packages: [etcd-server, etcd-client]` (Debian) or `[etcd]` (RHEL)",
        )
    else:
        for name in names:
            if not isinstance(name, str) or not etcd_package.NAME.match(name):
                f.error("source:packages", f"{name!r} is not a package name", "e.g. etcd-server")
    pin = source.get("package_version")
    if pin is None:
        f.error(
            "source:package_version",
            "is required with `source:type: package`: the formula installs, holds and rolls one pinned version",
            "set it to the repository's version of etcd "
            + str(version)
            + ", e.g. 3.4.23-4+b4 (apt-cache policy etcd-server)",
        )
    elif not isinstance(pin, str) or not etcd_package.VERSION.match(pin):
        f.error("source:package_version", f"{pin!r} is not a package version", "quote it in YAML, e.g. '3.4.23-4+b4'")
    elif etcd_package.upstream(pin) != str(version):
        f.error(
            "source:package_version",
            f"{pin} holds etcd {etcd_package.upstream(pin)}, but `etcd:version` is {version}",
            f"set `etcd:version: {etcd_package.upstream(pin)}` (what etcd reports), or pin a package of {version}",
        )
    if not isinstance(source.get("refresh"), bool):
        f.error("source:refresh", f"{source.get('refresh')!r} is not true or false", "set `etcd:source:refresh: true`")


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
        gateway = [w for w in OPTIONAL_FILES if w in files]
        for what in TLS_FILES:
            if what in OPTIONAL_FILES and not gateway:
                continue  # the formula's calls then use the admin pair
            if what not in files:
                f.error(
                    f"tls:files:{what}",
                    f"mode files needs the path of {what}" + (PAIR if gateway and what in OPTIONAL_FILES else ""),
                    f"set `etcd:tls:files:{what}`",
                )
            elif "key" in what and not str(files[what]).startswith("/"):
                f.error(
                    f"tls:files:{what}", "must be an absolute path on the node", "keys stay files, never pillar text"
                )
    if t.get("key_type") not in KEY_TYPES:
        f.error("tls:key_type", f"unknown key type {t.get('key_type')!r}", "use ec or rsa")
    days = _int(f, "tls:days_valid", t.get("days_valid"), 1, 3650, "e.g. 365")
    renew = _int(f, "tls:renew_days", t.get("renew_days"), 0, 3650, "e.g. 30")
    _int(f, "tls:ca_days_valid", t.get("ca_days_valid"), 1, 36500, "e.g. 3650")
    f.booleans("tls", t, ("renew_schedule",))
    _int(f, "tls:renew_interval", t.get("renew_interval"), 10, 7 * 86400, "seconds between renewal looks, e.g. 21600")
    if days and renew is not None and renew >= days:
        f.error(
            "tls:renew_days",
            f"{renew} days is not under the validity of {days} days: every certificate would be renewed on every run",
            f"set `etcd:tls:renew_days` below `etcd:tls:days_valid` (e.g. {max(days // 12, 1)})",
        )
    if not isinstance(t.get("extra_sans"), list):
        f.error("tls:extra_sans", "must be a list of DNS names or IPs", "e.g. [etcd.storageos.svc]")
    bundles = t.get("bundle_minions")
    if isinstance(bundles, list):
        bundles = {m: "etcd-client" for m in bundles}
    if not isinstance(bundles, dict):
        f.error("tls:bundle_minions", "must be a list of minion ids or a map id: CN", "e.g. {k8s-master1: storageos}")
    else:
        for minion, value in bundles.items():
            key = f"tls:bundle_minions:{minion}"
            if not isinstance(minion, str) or not NAME.match(minion):
                f.error(key, f"{minion!r} is not a minion id", "e.g. k8s-master1")
            elif isinstance(value, dict):
                _bundle_spec(f, key, value)
            elif not isinstance(value, str) or not CN.match(value):
                fix = "e.g. storageos, or {cn: storageos, dir: /etc/etcd-client}"
                f.error(key, f"{value!r} is not a certificate CN", fix)


BUNDLE_KEYS = ("cn", "dir", "user")


def _bundle_spec(f, key, spec):
    """One bundle minion given as {cn, dir, user}: each checked before it becomes a
    certificate, a directory or a file owner."""
    unknown = sorted(str(k) for k in spec if k not in BUNDLE_KEYS)
    if unknown:
        f.error(f"{key}:{unknown[0]}", "is not a bundle setting", f"use {', '.join(BUNDLE_KEYS)}")
    cn = spec.get("cn")
    if cn is not None and (not isinstance(cn, str) or not CN.match(cn)):
        f.error(f"{key}:cn", f"{cn!r} is not a certificate CN", "e.g. storageos")
    if "dir" in spec:
        problem = path_problem(spec["dir"], True)
        if problem:
            f.error(f"{key}:dir", problem[0], problem[1])
    user = spec.get("user")
    if user is not None and (not isinstance(user, str) or not POSIX_NAME.match(user)):
        f.error(f"{key}:user", f"{user!r} is not a user name", "e.g. root, or the consumer's own account")


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
