"""The formula's settings: defaults and their merge with pillar (pure).

This is the one place that knows the defaults. `map.jinja` gets the merged settings from
`etcd_cluster.settings`, and every execution and state function reads the same dict, so
the SLS files, the templates and the health checks can never disagree on a path or port.
What the settings must satisfy is `etcd_validate`; the URLs and the client they give,
`etcd_topology`; the flags they render, `etcd_flags`.
"""

import copy
import os

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
    "ports": {"client": 2379, "peer": 2380, "metrics": 2381},
    "version": etcd_releases.DEFAULT_VERSION,
    # tarball: the release from `url`, verified by sha256; package: the OS's packages
    # (README: Installing from the OS's packages), pinned to `package_version` and held.
    "source": {
        "type": "tarball",
        "url": etcd_releases.UPSTREAM_URL,
        "checksums": {},
        "packages": [],  # by OS family below
        "package_version": None,
        "refresh": True,  # refresh the package lists before an install
    },
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
        # The renewal job (ca_minion mode): every member looks this often and renews what
        # is inside renew_days without an apply; a look that finds nothing asks no CA.
        "renew_schedule": True,
        "renew_interval": 21600,
        "key_type": "ec",  # ec (P-256) or rsa (2048 bits)
        "extra_sans": [],
        "bundle_minions": [],  # minions allowed a client bundle: [id, ...] or {id: certificate CN}
        "files": {},  # mode files: <what>: <path on the node>, see TLS_FILES
    },
    # etcd's own /metrics listener (README: Metrics for Prometheus): plain http on a port of
    # its own, without the keyspace; `member` for a Prometheus elsewhere. `textfile`: the
    # health verdict also written for node_exporter's textfile collector (a .prom path).
    "metrics": {"enabled": True, "address": "localhost", "scheme": "http", "textfile": None},
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
    # Scheduled health checks (etcd_health.health through the minion's scheduler).
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
    # Scheduled snapshots (README: Backups and recovery): one member per interval takes a
    # verified snapshot and pushes it to the master's store (cp.push + etcd_store.accept).
    "backup": {
        "schedule": True,
        "enabled": True,
        "interval": 3600,  # s: at most one verified snapshot per interval
        "splay": 10,  # s of random delay of each member's check
        "dir": "/var/lib/etcd-formula/backups",
        "keep": 3,  # on the member that took them
        "max_age_days": 7,  # on the member (0: no age limit); the newest is always kept
        "compress": False,  # gzip before the copy: smaller, but ~3x the time (benchmarks/backup.py)
        "push": True,  # copy to the master's store, verified by sha256
        "store_keep": 48,  # copies per cluster in the master's store
        "store_max_age_days": 30,
        "max_age": None,  # s: the health report says backup_stale past this (default 2 x interval)
        "timeout": 600,  # s: the claim's lease (a member that dies mid-backup frees it)
    },
    # The maintenance job (README: Defragmentation and alarms): staggered defragmentation
    # when it frees space, and a NOSPACE alarm cleared without a person when it can be.
    "maintenance": {
        "schedule": True,
        "enabled": True,
        "interval": 300,  # s between looks (alarms are handled at the next look)
        "defrag_interval": 86400,  # s: at most one defragmentation run per interval
        "defrag_in_use_pct": 50,  # defragment a member whose file is less than this in use
        "defrag_min_free_mib": 64,  # ... and only when that gives back at least this much
        "defrag_timeout": 300,  # s per member
        "disarm_nospace": True,  # compact, defragment, disarm when below quota by the margin
        "nospace_margin_pct": 20,
    },
    "lookup": {},
}
OS_FAMILY = {
    "Debian": {"source": {"packages": ["etcd-server", "etcd-client"]}},
    "RedHat": {"source": {"packages": ["etcd"]}},
    "Suse": {},
    "Arch": {},
}
SOURCE_TYPES = ("tarball", "package")
PACKAGE_BIN = "/usr/bin"  # where the packages put etcd and etcdctl
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
    # The formula's own gateway calls: a client certificate without a CN (with etcd auth
    # on, the gateway refuses one that has a CN; etcd_auth).
    "gateway_cert": ("gateway.crt", "root", 0o644),
    "gateway_key": ("gateway.key", "root", 0o600),
}
# Mode files: what a site may leave out (the formula's calls then use the admin pair).
OPTIONAL_FILES = ("gateway_cert", "gateway_key")
ADVERTISE_MODES = ("ip", "fqdn")
COMPACTION_MODES = ("revision", "periodic")
MAX_QUOTA = 8 * 1024**3
# Flags the formula renders itself: in extra_flags they would fight the managed value.
MANAGED_FLAGS = {
    "name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
    "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-token",
    "initial-cluster-state", "cert-file", "key-file", "trusted-ca-file", "client-cert-auth",
    "peer-cert-file", "peer-key-file", "peer-trusted-ca-file", "peer-client-cert-auth", "auto-tls",
    "peer-auto-tls", "listen-metrics-urls",
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
    # The packages put etcd in /usr/bin: the unit runs it from there, whatever paths:bin
    # says (it names where the tarball's links go; etcd_validate warns when it differs).
    if settings["source"].get("type") == "package":
        settings["paths"]["bin"] = PACKAGE_BIN
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


def tls_on(settings):
    return bool((settings.get("tls") or {}).get("enabled"))


def scheme(settings):
    return "https" if tls_on(settings) else "http"


def tls_path(settings, what):
    """Where a member keeps one piece of its TLS material (TLS_FILES): the one place."""
    return os.path.join(settings["tls"]["dir"], TLS_FILES[what][0])


def tls_files(settings):
    """The TLS_FILES a member holds: all of them when the CA minion issues them; in mode
    files, those `tls:files` gives (the optional gateway pair may be left out)."""
    if settings["tls"].get("mode") != "files":
        return list(TLS_FILES)
    given = settings["tls"].get("files") or {}
    return [w for w in TLS_FILES if w not in OPTIONAL_FILES or w in given]
