r"""etcd's flag vocabulary: names normalised one way everywhere, and which flags each minor has.

The lists are `etcd --help` of the releases the lab runs (3.4.23, 3.5.1), one per minor;
for a new minor: `etcd --help | grep -oE '^\s+--[a-z0-9-]+' | sed 's/^ *--//' | sort -u`. A flag is named in pillar
as etcd spells it, with any case, `-` or `_`, and leading dashes: `normal()` makes one
spelling of all of them before any check, so a managed flag cannot slip through as
`CLIENT_CERT_AUTH` or `--client_cert_auth`.
"""

import re

import etcd_metrics
import etcd_migration
import etcd_releases
from etcd_settings import scheme, tls_on, tls_path
from etcd_topology import host_of, initial_cluster, url

NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


FLAGS = {
    "3.4": frozenset(
        """
        advertise-client-urls auth-token auth-token-ttl auto-compaction-mode
        auto-compaction-retention auto-tls backend-batch-interval backend-batch-limit
        bcrypt-cost cert-file cipher-suites client-cert-allowed-hostname
        client-cert-auth client-crl-file cors data-dir debug discovery
        discovery-fallback discovery-proxy discovery-srv discovery-srv-name
        election-timeout enable-pprof enable-v2 experimental-backend-bbolt-freelist-type
        experimental-compaction-batch-limit experimental-corrupt-check-time
        experimental-enable-lease-checkpoint experimental-enable-v2v3
        experimental-initial-corrupt-check
        experimental-peer-skip-client-san-verification
        experimental-warning-apply-duration experimental-watch-progress-notify-interval
        force-new-cluster grpc-keepalive-interval grpc-keepalive-min-time
        grpc-keepalive-timeout heartbeat-interval host-whitelist
        initial-advertise-peer-urls initial-cluster initial-cluster-state
        initial-cluster-token initial-election-tick-advance key-file listen-client-urls
        listen-metrics-urls listen-peer-urls log-level log-outputs log-package-levels
        logger max-concurrent-streams max-request-bytes max-snapshots max-txn-ops
        max-wals metrics name peer-auto-tls peer-cert-allowed-cn
        peer-cert-allowed-hostname peer-cert-file peer-client-cert-auth peer-crl-file
        peer-key-file peer-trusted-ca-file pre-vote proxy proxy-dial-timeout
        proxy-failure-wait proxy-read-timeout proxy-refresh-interval proxy-write-timeout
        quota-backend-bytes snapshot-count strict-reconfig-check trusted-ca-file wal-dir
        """.split()
    ),
    "3.5": frozenset(
        """
        advertise-client-urls auth-token auth-token-ttl auto-compaction-mode
        auto-compaction-retention auto-tls backend-batch-interval backend-batch-limit
        backend-bbolt-freelist-type bcrypt-cost cert-file cipher-suites
        client-cert-allowed-hostname client-cert-auth client-crl-file cors data-dir
        discovery discovery-fallback discovery-proxy discovery-srv discovery-srv-name
        election-timeout enable-log-rotation enable-pprof enable-v2
        experimental-bootstrap-defrag-threshold-megabytes
        experimental-compaction-batch-limit experimental-corrupt-check-time
        experimental-distributed-tracing-address
        experimental-distributed-tracing-instance-id
        experimental-distributed-tracing-service-name
        experimental-enable-distributed-tracing experimental-enable-lease-checkpoint
        experimental-enable-v2v3 experimental-initial-corrupt-check
        experimental-peer-skip-client-san-verification
        experimental-txn-mode-write-with-shared-buffer
        experimental-warning-apply-duration experimental-watch-progress-notify-interval
        force-new-cluster grpc-keepalive-interval grpc-keepalive-min-time
        grpc-keepalive-timeout heartbeat-interval host-whitelist
        initial-advertise-peer-urls initial-cluster initial-cluster-state
        initial-cluster-token initial-election-tick-advance key-file listen-client-urls
        listen-metrics-urls listen-peer-urls log-level log-outputs
        log-rotation-config-json logger max-request-bytes max-snapshots max-txn-ops
        max-wals metrics name peer-auto-tls peer-cert-allowed-cn
        peer-cert-allowed-hostname peer-cert-file peer-client-cert-auth peer-crl-file
        peer-key-file peer-trusted-ca-file pre-vote proxy proxy-dial-timeout
        proxy-failure-wait proxy-read-timeout proxy-refresh-interval proxy-write-timeout
        quota-backend-bytes self-signed-cert-validity snapshot-count
        socket-reuse-address socket-reuse-port strict-reconfig-check trusted-ca-file
        unsafe-no-fsync v2-deprecation wal-dir
        """.split()
    ),
}


def normal(raw):
    """One spelling of a flag name: lower case, `-` between words, no leading dashes.
    None when what is left is not a flag name at all."""
    if not isinstance(raw, str):
        return None
    name = raw.strip().lstrip("-").lower().replace("_", "-")
    return name if NAME.match(name) else None


def known(minor):
    """The flags of etcd `minor` ("3.5"), or None when the project has no list for it."""
    return FLAGS.get(minor)


def flags(settings, name, version=None):
    """The ETCD_* environment for member `name` (etcd reads every flag from ETCD_<FLAG>).

    While a running cluster moves to TLS, `tls_stage` (set by etcd_cluster.settings)
    may say `peer-creds`: http URLs, with the peer credentials only (etcd_migration)."""
    s, t = settings, settings["tuning"]
    addr = s["members"][name]["address"]
    peer_creds_only = tls_on(s) and s.get("tls_stage") == etcd_migration.PEER_CREDS
    sch = "http" if peer_creds_only else scheme(s)
    listen_client = [url(sch, addr, s["ports"]["client"])]
    if s.get("listen_localhost"):
        listen_client.append(url(sch, "127.0.0.1", s["ports"]["client"]))
    env = {
        "ETCD_NAME": name,
        "ETCD_DATA_DIR": s["paths"]["data"],
        "ETCD_LISTEN_CLIENT_URLS": ",".join(listen_client),
        "ETCD_ADVERTISE_CLIENT_URLS": url(sch, host_of(s, name), s["ports"]["client"]),
        "ETCD_LISTEN_PEER_URLS": url(sch, addr, s["ports"]["peer"]),
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": url(sch, host_of(s, name), s["ports"]["peer"]),
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
    metrics = etcd_metrics.listen_urls(s, name)
    if metrics:
        env["ETCD_LISTEN_METRICS_URLS"] = ",".join(metrics)
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
        key = "ETCD_" + (normal(flag) or str(flag)).upper().replace("-", "_")
        env[key] = str(value).lower() if isinstance(value, bool) else value
    return {k: str(v) for k, v in env.items()}


def restart_relevant(env):
    """The flags whose change needs a restart: etcd ignores --initial-* once it has data."""
    return {k: v for k, v in env.items() if not k.startswith("ETCD_INITIAL_")}
