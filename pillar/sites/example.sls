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
    metrics: 2381                # etcd:metrics below; 12381 beside a control plane's etcd

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

  # TLS on every URL. Peers and clients trust two different CAs (a client certificate
  # cannot speak raft). The CA minion keeps both CA keys: never a member, never the master.
  tls:
    enabled: true
    mode: ca_minion              # ca_minion: signed remotely (x509_v2); files: made elsewhere
    ca_minion: ca1               # CHANGE
    generate_ca: true            # false: put your own CA key and cert in ca_dir on the CA minion
    ca_dir: /etc/pki/etcd-ca     # on the CA minion: client-ca.{key,crt}, peer-ca.{key,crt}
    dir: /etc/etcd/pki           # on members
    days_valid: 365
    ca_days_valid: 3650
    renew_days: 30               # renew when fewer days are left: on apply, and by the job
    renew_schedule: true         # the renewal job: renews without anyone applying
    renew_interval: 21600        # s between its looks (a look with nothing due asks no CA)
    key_type: ec                 # ec (P-256) or rsa (2048)
    extra_sans: []               # e.g. the Kubernetes Service names: [etcd.storageos.svc]
    bundle_minions: []           # client bundles: {minion: CN}, e.g. {k8s-master1: storageos}
    files: {}                    # mode files: server_cert, server_key, peer_cert, peer_key,
    #                              admin_cert, admin_key, client_ca, peer_ca: paths on the node

  # etcd's /metrics on a port of its own, plain http, for Prometheus without a client
  # certificate (README: Metrics for Prometheus). It shows sizes, rates and member names,
  # never keys or values; firewall it to your Prometheus.
  metrics:
    enabled: true
    address: member              # member: scraped from elsewhere; localhost: this node only
    scheme: http                 # the only one: https there would ask for a client certificate
    textfile: null               # e.g. /var/lib/prometheus/node-exporter/etcd_formula.prom:
    #                              the health verdict for node_exporter's textfile collector

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

  # Scheduled backups (README: Backups and recovery): at most one verified snapshot per
  # interval, taken by one member, copied to the master's store and verified there.
  backup:
    schedule: true               # false removes the scheduler job
    enabled: true
    interval: 3600               # s
    splay: 10                    # s of random delay of each member's look (4 per interval)
    dir: /var/lib/etcd-formula/backups
    keep: 3                      # on the member that took them
    max_age_days: 7
    compress: false              # true: gzip (smaller copies, about 3x the snapshot's time)
    push: true                   # to the master (file_recv, peer_run: README)
    store_keep: 48               # in the master's store, per cluster
    store_max_age_days: 30
    max_age: null                # s before the health report says backup_stale (null: 2 x interval)
    timeout: 600

  # The maintenance job (README: Defragmentation and alarms): one member at a time under
  # the cluster lock, followers first.
  maintenance:
    schedule: true
    enabled: true
    interval: 300                # s between looks
    defrag_interval: 86400       # s: at most one defragmentation run per interval
    defrag_in_use_pct: 50        # defragment a member whose file is less than this in use
    defrag_min_free_mib: 64      # ... and only when that gives back at least this much
    defrag_timeout: 300          # s per member
    disarm_nospace: true         # compact, defragment, then disarm with room to spare
    nospace_margin_pct: 20

  # Disk check before the first install on a node: fdatasync p99 as etcd's hardware
  # guide measures it (2300-byte writes, up to 22 MiB or `seconds`).
  preflight:
    mode: warn                   # warn | enforce (refuse the install) | off
    p99_ms: 10
    seconds: 10

  # Kubernetes objects for the storage operator (salt <minion> state.apply etcd.kubernetes):
  # a Service without selector, an EndpointSlice of the members, and with TLS a Secret
  # holding the client bundle (made on that minion; list it in tls:bundle_minions).
  kubernetes:
    minion: null                 # CHANGE: e.g. a control-plane node with kubectl (refused elsewhere)
    namespace: storageos
    service: storageos-etcd
    secret: storageos-etcd-client
    legacy_endpoints: false      # also a v1 Endpoints, marked not to be mirrored
    manifest: /etc/etcd-formula/kubernetes/etcd.yaml   # mode 0600: holds the client key
    bundle_dir: /etc/etcd-client
    apply: false                 # kubectl apply -f until this content is applied (retried after a failure)
    kubectl: kubectl
    kubeconfig: null
