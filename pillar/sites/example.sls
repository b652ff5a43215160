# Example site: a 3-member etcd outside Kubernetes (the storage operator's backend).
# Copy it to sites/<site>.sls and change what is marked CHANGE. Everything else has
# the defaults shown; remove a key to get the default. `salt '*' etcd_cluster.validate`
# checks a pillar before you apply it.
etcd:
  cluster:
    name: storageos              # CHANGE: names the cluster, its token and its records
    token: storageos-etcd        # default: <name>-etcd; unique per cluster on a network
    # Allows `initial-cluster-state new` on the very first apply. Even when true, a
    # member bootstraps only if no member answers, its data dir is empty and no cluster
    # ID was ever recorded for this site. Set it back to false once the cluster formed.
    bootstrap: true

  # Members keyed by minion id (the id is also the etcd member name).
  members:                       # CHANGE
    etcd1: {address: 192.0.2.11, fqdn: etcd1.example.com}
    etcd2: {address: 192.0.2.12, fqdn: etcd2.example.com}
    etcd3: {address: 192.0.2.13, fqdn: etcd3.example.com}

  advertise: ip                  # ip | fqdn: what goes in the advertised URLs
  listen_localhost: true         # also listen on 127.0.0.1 (the formula's own calls use it)
  ports:
    # On Kubernetes control-plane nodes 2379/2380 belong to the cluster's own etcd:
    # use e.g. 12379/12380 there.
    client: 2379
    peer: 2380

  version: 3.5.33                # a current patched release (3.5.0-3.5.2: never)
  source:
    # An http(s):// mirror ({version} is filled in), or salt://... for air-gapped sites.
    url: https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-amd64.tar.gz
    checksums: {}                # version: sha256, for releases the formula does not know

  paths:
    install: /opt/etcd           # one directory per release
    bin: /usr/local/bin          # etcd, etcdctl, etcdutl links to the active release
    config_dir: /etc/etcd
    data: /var/lib/etcd
    unit: /etc/systemd/system/etcd.service
    state: /var/lib/etcd-formula

  # The vendor guide's values. etcd's own defaults are 100/1000 ms.
  tuning:
    heartbeat_interval: 500      # ms
    election_timeout: 5000       # ms, at least 5 x heartbeat
    snapshot_count: 100000
    max_snapshots: 10
    max_wals: 10
    quota_backend_bytes: 8589934592
    auto_compaction_mode: revision
    auto_compaction_retention: '20000'

  # Any other etcd flag, without the leading dashes.
  extra_flags: {}
  #   experimental-initial-corrupt-check: true

  # The scheduled health check on every member: events etcd/<cluster>/health/<verdict>
  # to the master, `salt-run etcd.report` for the table (README: Health checks).
  health:
    schedule: true               # false removes the scheduler job
    enabled: true                # false keeps the job, disabled
    interval: 60                 # s
    splay: 5                     # s of random delay, under the interval
    timeout: 1                   # s per request
    max_lag: 1000                # raft entries behind the leader
    quota_warning_pct: 80
    quota_critical_pct: 95
    wal_fsync_p99_ms: 10         # etcd's hardware guide
    cert_days: 30
