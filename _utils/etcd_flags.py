r"""etcd's flag vocabulary: names normalised one way everywhere, and which flags each minor has.

The lists are `etcd --help` of the releases the lab runs (3.4.23, 3.5.1), one per minor;
for a new minor: `etcd --help | grep -oE '^\s+--[a-z0-9-]+' | sed 's/^ *--//' | sort -u`. A flag is named in pillar
as etcd spells it, with any case, `-` or `_`, and leading dashes: `normal()` makes one
spelling of all of them before any check, so a managed flag cannot slip through as
`CLIENT_CERT_AUTH` or `--client_cert_auth`.
"""

import re

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
