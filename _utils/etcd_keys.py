"""The formula's own keys in etcd, all under ``/etcd-formula/<cluster>/``: the one place
that names them (the cluster name is checked by etcd_names.NAME before it gets here).

- ``lock``: the cluster lock (etcd_lock), on the holder's lease
- ``restart-pending/<member>``: a member waiting for the lock to restart, on its lease
- ``restart-failed``: a guarded restart that did not come back; blocks the next ones
- ``upgrade-snapshot/<from>-to-<to>``: the verified snapshot before an upgrade
- ``tls/<member>``: each member's TLS record (what its running etcd trusts and holds)
- ``backup/claim/<slot>``: the member taking this interval's snapshot, on its lease
- ``backup/failed/<slot>/<member>``: that member's snapshot failed in this interval (on a lease)
- ``backup/done/<slot>``: the interval's verified off-node copy (kept a day, on a lease)
- ``backup/latest``: the newest verified off-node copy (what the health check judges)
- ``backup/since``: when the backup job first ran for this cluster
- ``maintenance/defrag/<slot>``: this defragmentation interval's run is done (on a lease)
"""

ROOT = "/etcd-formula/"  # every cluster's keys; no client role may reach it (etcd_auth)


def prefix(cluster):
    return f"{ROOT}{cluster}"


def lock(cluster):
    return f"{prefix(cluster)}/lock"


def pending_prefix(cluster):
    return f"{prefix(cluster)}/restart-pending/"


def pending(cluster, member):
    return pending_prefix(cluster) + member


def restart_failed(cluster):
    return f"{prefix(cluster)}/restart-failed"


def upgrade_snapshot(cluster, running, target):
    """Where the verified snapshot taken before upgrading `running` -> `target` is recorded."""
    return f"{prefix(cluster)}/upgrade-snapshot/{running}-to-{target}"


def tls_records(cluster):
    return f"{prefix(cluster)}/tls/"


def tls_record(cluster, member):
    return tls_records(cluster) + member


def backup_claim(cluster, slot):
    return f"{prefix(cluster)}/backup/claim/{int(slot)}"


def backup_failed(cluster, slot):
    """The prefix of the members whose snapshot failed in `slot`: a key per member."""
    return f"{prefix(cluster)}/backup/failed/{int(slot)}/"


def backup_done(cluster, slot):
    return f"{prefix(cluster)}/backup/done/{int(slot)}"


def backup_latest(cluster):
    return f"{prefix(cluster)}/backup/latest"


def backup_since(cluster):
    return f"{prefix(cluster)}/backup/since"


def defrag_done(cluster, slot):
    return f"{prefix(cluster)}/maintenance/defrag/{int(slot)}"
