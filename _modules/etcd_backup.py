"""Backups on a member: verified snapshots, their copy to the master, and the member's
half of a restore.

The scheduled job (``scheduled``, installed by ``salt/etcd/backup.sls`` on every member)
takes at most one snapshot per interval for the whole cluster: the first member whose turn
it is (``etcd_backup.turn``: a follower while one is healthy) claims the interval in etcd
on a lease, snapshots its own member, reads the file back, compresses it, pushes it to the
master (``cp.push``) and asks the master's store to accept it (``etcd_store.accept``
through ``publish.runner``: the master checks the sender is a member of the cluster by its
own pillar, and the sha256). Only then is the interval marked done and the copy recorded
as the newest verified off-node backup, which the health check judges. A member that fails
records that in etcd and frees the claim, so another member takes the same interval (and
the failed one does not claim it again).
"""

import json
import logging
import os
import shutil
import subprocess
import time

import etcd_fresh

(
    etcd_actions,
    etcd_backup,
    etcd_client,
    etcd_health,
    etcd_keys,
    etcd_node,
    etcd_snapshot,
    etcd_topology,
    etcd_transfer,
) = etcd_fresh.load(
    "etcd_actions",
    "etcd_backup",
    "etcd_client",
    "etcd_health",
    "etcd_keys",
    "etcd_node",
    "etcd_snapshot",
    "etcd_topology",
    "etcd_transfer",
)

log = logging.getLogger(__name__)

__virtualname__ = "etcd_backup"

BACKUP_JOB = "etcd-backup"  # the scheduler job salt/etcd/backup.sls installs
STORE_ACCEPT = "etcd_store.accept"  # the master's runner (peer_run)
UPLOAD_ROOT = "etcd-backups"  # under the master's minions/<id>/files/


def __virtual__():
    return __virtualname__


def _applied():
    return __salt__["etcd_cluster.applied_settings"]() or __salt__["etcd_cluster.settings"]()


def _client(s):
    return etcd_topology.client(s, __opts__["id"], timeout=max(2, s["health"]["timeout"]))


def _event(s, what, data):
    __salt__["event.send"](f"etcd/{s['cluster']['name']}/backup/{what}", data)


def scheduled():
    """
    The scheduled backup (the ``etcd-backup`` job runs it on every member): if this
    interval has no verified off-node snapshot yet and it is this member's turn, claim
    the interval, snapshot, verify, push to the master and record it. Sends
    ``etcd/<cluster>/backup/done`` or ``.../failed``; a member that is not to act
    returns why (``done``, ``busy``, ``tried``, ``defer``, ``not serving``).

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_backup.scheduled
    """
    s = _applied()
    me, b, cluster = __opts__["id"], s["backup"], s["cluster"]["name"]
    now = time.time()
    client = _client(s)
    local = etcd_topology.local_endpoint(s, me)
    try:
        client.create(etcd_keys.backup_since(cluster), json.dumps({"time": now, "member": me}))
        slot = etcd_backup.slot(now, b["interval"])
        done = client.get(etcd_keys.backup_done(cluster, slot), endpoint=local)
        claimed = client.get(etcd_keys.backup_claim(cluster, slot), endpoint=local)
        failed = set(client.get_prefix(etcd_keys.backup_failed(cluster, slot), keys_only=True, endpoint=local))
    except etcd_client.EtcdError as exc:
        return {"action": "skip", "comment": f"this member does not serve: {exc}"}
    report = etcd_health.assess(etcd_health.gather(client, s, me), s)
    rows = {m["name"]: m for m in report["members"]}
    if not (rows.get(me) or {}).get("serving"):
        return {"action": "skip", "comment": "this member does not serve: no snapshot from it"}
    followers = [
        n for n, m in rows.items() if m["serving"] and not m["leader"] and not m["learner"] and n not in failed
    ]
    elapsed = now % b["interval"]
    action = etcd_backup.turn(
        bool(done), bool(claimed), report.get("leader") == me, followers, elapsed, b["interval"], me in failed
    )
    if action != "claim":
        return {"action": action, "slot": slot, "comment": _why(action, claimed)}
    try:
        lease = client.lease_grant(b["timeout"])
        claimed = client.create(etcd_keys.backup_claim(cluster, slot), json.dumps({"member": me, "time": now}), lease)
    except etcd_client.EtcdError as exc:  # e.g. NOSPACE: etcd grants no lease
        return {"action": "skip", "slot": slot, "comment": f"the interval cannot be claimed: {exc}"}
    if not claimed:
        client.lease_revoke(lease)
        return {"action": "busy", "slot": slot, "comment": "another member claimed this interval first"}
    try:
        got = _backup(s, client, local, slot=slot)
    except Exception as exc:  # the job's only witness: a failure must reach the master
        _failed(client, b, cluster, slot, me)
        client.lease_revoke(lease)  # another member takes the interval
        _event(s, "failed", {"member": me, "slot": slot, "error": str(exc)[:500]})
        return {"action": "failed", "slot": slot, "comment": str(exc)}
    done_lease = client.lease_grant(2 * b["interval"] + b["timeout"])
    client.put(etcd_keys.backup_done(cluster, slot), json.dumps(got["record"]), lease=done_lease)
    client.lease_revoke(lease)
    return {"action": "done", "slot": slot, "comment": got["comment"], **got["record"]}


def _failed(client, b, cluster, slot, me):
    """Record that this member's snapshot failed in `slot`, so that it does not claim the
    slot again and the leader stops leaving the slot to it. Best effort: etcd may refuse
    the write (e.g. NOSPACE), and then the member merely tries again at its next look."""
    try:
        lease = client.lease_grant(2 * b["interval"] + b["timeout"])
        client.put(etcd_keys.backup_failed(cluster, slot) + me, json.dumps({"time": time.time()}), lease=lease)
    except etcd_client.EtcdError as exc:
        log.warning("etcd_backup: the failure in interval %s could not be recorded: %s", slot, exc)


def _why(action, claimed):
    if action == "busy":
        return f"{_holder(claimed)} is taking this interval's snapshot"
    if action == "tried":
        return "this member's snapshot failed in this interval: another member takes it"
    if action == "defer":
        return "the leader leaves the snapshot to a healthy follower"
    return "this interval has its verified snapshot"


def _holder(claimed):
    """Who holds a claim, for the comment (any client can write the key: never trusted)."""
    try:
        return str(json.loads(claimed).get("member"))[:64]
    except (TypeError, ValueError, AttributeError):
        return "another member"


def save(push=None, compress=None):
    """
    Take a verified snapshot of this member now (outside the schedule), keep it in
    ``etcd:backup:dir`` and, unless ``push=False`` (or ``etcd:backup:push`` is false),
    copy it to the master's store, verified by sha256. ``compress`` overrides
    ``etcd:backup:compress`` for this snapshot.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_backup.save
        salt etcd1 etcd_backup.save push=False compress=False
    """
    s = _applied()
    client = _client(s)
    try:
        if compress is not None:
            s["backup"]["compress"] = bool(compress)
        got = _backup(s, client, etcd_topology.local_endpoint(s, __opts__["id"]), push)
    except (etcd_snapshot.SnapshotError, etcd_client.EtcdError, OSError) as exc:
        _event(s, "failed", {"member": __opts__["id"], "error": str(exc)[:500]})
        return etcd_actions.outcome(__context__, False, f"no backup: {exc}", {})
    return etcd_actions.outcome(__context__, True, got["comment"], {"backup": got["record"]["name"]}, **got["record"])


def _backup(s, client, local, push=None, slot=None):
    """Snapshot, read back, compress, keep (retention), copy to the master: the record."""
    b, me = s["backup"], __opts__["id"]
    push = b["push"] if push is None else bool(push)
    started = time.monotonic()
    status = client.status(local)
    facts = etcd_snapshot.save(
        os.path.join(s["paths"]["bin"], "etcdctl"),
        local,
        etcd_topology.etcdctl_tls(s),
        b["dir"],
        status.get("db_size", 0),
        f".taking-{int(time.time())}",
        keep=0,
        timeout=b["timeout"],
    )
    name = etcd_backup.file_name(s["cluster"]["name"], time.time(), facts["revision"], b["compress"])
    path = os.path.join(b["dir"], name.removesuffix(".gz"))
    os.replace(facts["path"], path)
    if b["compress"]:
        path, sha256 = etcd_snapshot.compress(path)
    else:
        sha256 = facts["sha256"]  # hashed while it was read back
    record = {
        "name": name,
        "cluster": s["cluster"]["name"],
        "cluster_id": etcd_client.member_hex(status["cluster_id"]),
        "member": me,
        "revision": facts["revision"],
        "keys": facts["keys"],
        "hash": facts["hash"],
        "db_bytes": facts["bytes"],
        "etcd_version": status.get("version"),
        "sha256": sha256,
        "size": os.path.getsize(path),
        "compressed": b["compress"],
        "time": time.time(),
        "seconds": facts["seconds"],  # snapshot and read back
        "prepared_seconds": round(time.monotonic() - started, 2),  # + compressed, hashed: before the copy
        "off_node": False,
        "slot": slot,  # the interval it was taken for (None: on demand)
    }
    etcd_node.write_json(path + ".json", record, mode=0o600)
    pruned = _prune_local(b)
    comment = f"snapshot {name} (revision {record['revision']}, {record['keys']} keys, {record['size']} bytes) verified"
    if push:
        stored = _push(s, path, record)
        record.update(off_node=True, stored_sha256=stored["sha256"])
        etcd_node.write_json(path + ".json", record, mode=0o600)
        client.put(etcd_keys.backup_latest(s["cluster"]["name"]), json.dumps(_latest(record)))
        comment += ", copied to the master and verified there by sha256"
    if pruned:
        comment += f"; retention removed {len(pruned)} older"
    _event(s, "done", record)
    return {"record": record, "comment": comment}


def _latest(record):
    return {k: record[k] for k in ("name", "member", "revision", "sha256", "size", "time")}


def _push(s, path, record):
    """cp.push the snapshot and its record, then the master's store takes them in; raises
    unless the store's sha256 is the snapshot's."""
    if __opts__.get("file_client") == "local" or "master_uri" not in __opts__:
        raise etcd_snapshot.SnapshotError("no master to copy the snapshot to (masterless): set etcd:backup:push false")
    upload = f"/{UPLOAD_ROOT}/{record['cluster']}/{record['name']}"
    for src, dst in ((path + ".json", upload + ".json"), (path, upload)):
        if not __salt__["cp.push"](src, upload_path=dst):
            raise etcd_snapshot.SnapshotError(
                f"cp.push of {src} was refused by the master: set file_recv: true and a file_recv_max_size (MB) "
                f"above {record['size'] // 1024**2 + 1} in its configuration (README: Backups)"
            )
    answer = __salt__["publish.runner"](
        STORE_ACCEPT, arg=[record["cluster"], record["name"]], timeout=s["backup"]["timeout"]
    )
    if not isinstance(answer, dict) or answer.get("result") is not True:
        raise etcd_snapshot.SnapshotError(
            f"the master's store did not accept {record['name']}: {answer or 'no answer'} "
            f"(peer_run must allow {STORE_ACCEPT} for members: README: Backups)"
        )
    if answer.get("sha256") != record["sha256"]:
        raise etcd_snapshot.SnapshotError(f"the master's copy of {record['name']} has sha256 {answer.get('sha256')}")
    return answer


def _prune_local(b):
    entries = []
    for meta in os.listdir(b["dir"]):
        name = meta.removesuffix(".json")
        if meta.endswith(".json") and etcd_backup.FILE.match(name):
            record = etcd_node.read_json(os.path.join(b["dir"], meta), {}) or {}
            entries.append({"name": name, "time": record.get("time") or 0})
    gone = etcd_backup.prune(entries, b["keep"], b["max_age_days"], time.time())
    for name in gone:
        for path in (os.path.join(b["dir"], name), os.path.join(b["dir"], name + ".json")):
            if os.path.exists(path):
                os.unlink(path)
    return gone


def snapshots():
    """
    The snapshots kept on this member (``etcd:backup:dir``), newest first, with their
    records (revision, keys, sha256, size, time, whether copied off the node).

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_backup.snapshots
    """
    b = _applied()["backup"]
    if not os.path.isdir(b["dir"]):
        return []
    out = [
        etcd_node.read_json(os.path.join(b["dir"], f), {}) or {"name": f.removesuffix(".json")}
        for f in os.listdir(b["dir"])
        if f.endswith(".json") and etcd_backup.FILE.match(f.removesuffix(".json"))
    ]
    return sorted(out, key=lambda r: r.get("time") or 0, reverse=True)


def restore_path(name):
    """
    Where a restore's snapshot is copied to on this member (``etcd_store.send``).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_backup.restore_path storageos-20261206T120000Z-r42.db.gz
    """
    if not isinstance(name, str) or not etcd_backup.FILE.match(name):
        raise etcd_client.EtcdError(f"{name!r} is not a snapshot name of the formula's")
    return os.path.join(__salt__["etcd_cluster.settings"]()["paths"]["state"], "restore", name)


def _wrapped_key_path(name):
    return restore_path(name) + ".key"


def receive_begin(name, wrapped_key):
    """
    Start receiving a restore's snapshot from the master (``etcd_store.send`` calls it):
    keep the transfer's key, wrapped for this minion (it is unwrapped per chunk, in
    memory), and start an empty copy at ``restore_path`` (0600).

    CLI Example:

    .. code-block:: bash

        # the master calls it: salt-run etcd_store.send storageos latest '[etcd1, etcd2, etcd3]'
        salt etcd1 etcd_backup.receive_begin storageos-20261206T120000Z-r42.db.gz <wrapped key>
    """
    try:
        path = restore_path(name)
        wrapped = etcd_transfer.check_wrapped(wrapped_key)
        etcd_transfer.unwrap(wrapped, _minion_pem())  # refuse now, not at the first chunk
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        os.chmod(os.path.dirname(path), 0o700)
        for target, data in ((_wrapped_key_path(name), wrapped), (path, b"")):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(target, 0o600)
    except (etcd_transfer.TransferError, etcd_client.EtcdError, OSError) as exc:
        return f"refused: {exc}"
    return True


def receive_chunk(name, offset, sealed):
    """
    Write one sealed chunk of a restore's snapshot at its offset (any order), after
    opening it with the transfer's key: a chunk damaged, or sealed for another file or
    offset, is refused. Returns True; never the data.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_backup.receive_chunk storageos-20261206T120000Z-r42.db.gz 0 <sealed chunk>
    """
    try:
        path = restore_path(name)
        try:
            with open(_wrapped_key_path(name), "rb") as fh:
                wrapped = fh.read()
        except FileNotFoundError as exc:
            raise etcd_transfer.TransferError(f"no transfer of {name} was begun here") from exc
        key = etcd_transfer.unwrap(wrapped, _minion_pem())
        etcd_transfer.write_at(path, offset, etcd_transfer.open_chunk(key, name, offset, sealed))
    except (etcd_transfer.TransferError, etcd_client.EtcdError, OSError) as exc:
        return f"refused: {exc}"
    return True


def receive_end(name):
    """
    End receiving a restore's snapshot: drop the transfer's key and answer the copy's
    sha256 (the master compares it with the store's record).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_backup.receive_end storageos-20261206T120000Z-r42.db.gz
    """
    path = restore_path(name)
    try:
        os.unlink(_wrapped_key_path(name))
    except FileNotFoundError:
        pass
    return etcd_node.sha256_file(path) if os.path.isfile(path) else None


def _minion_pem():
    return os.path.join(__opts__["pki_dir"], "minion.pem")


def restore(name, sha256, token, wait=True):
    """
    The member's half of a disaster recovery (``etcd.orch.restore`` runs it on every
    member at once): check the copy the master sent (``restore_path``) by sha256 and by
    reading it back, stop etcd, set the data dir aside (``<data>.before-restore-<time>``,
    never deleted), restore the snapshot into a fresh data dir as a new cluster of the
    pillar's members with cluster token ``token``, start etcd and wait until it serves;
    then record the new cluster ID (the bootstrap guard accepts it).

    CLI Example:

    .. code-block:: bash

        salt -L etcd1,etcd2,etcd3 etcd_backup.restore storageos-20261206T120000Z-r42.db.gz <sha256> storageos-etcd-r1
    """
    s = __salt__["etcd_cluster.settings"]()
    me = __opts__["id"]
    if not isinstance(name, str) or not etcd_backup.FILE.match(name):
        return etcd_actions.outcome(__context__, False, f"refused: {name!r} is not a snapshot name", {})
    if not isinstance(token, str) or not etcd_backup.TOKEN.match(token):
        return etcd_actions.outcome(__context__, False, f"refused: {token!r} is not a cluster token", {})
    if not isinstance(sha256, str) or not etcd_backup.SHA256.match(sha256):
        return etcd_actions.outcome(__context__, False, f"refused: {sha256!r} is not a sha256", {})
    path = restore_path(name)
    tool = etcd_snapshot.offline_tool(s["paths"]["bin"])
    work = os.path.dirname(path)
    try:
        facts = etcd_snapshot.verify(path, sha256, tool, work)
    except (etcd_snapshot.SnapshotError, OSError) as exc:
        return etcd_actions.outcome(__context__, False, f"refused, nothing changed: {exc}", {})
    service, data = s["service"]["name"], s["paths"]["data"]
    subprocess.run(["systemctl", "stop", service], check=False, capture_output=True, timeout=120)
    aside = None
    if os.path.exists(data):
        aside = f"{data}.before-restore-{time.strftime('%Y%m%dT%H%M%S')}"
        os.rename(data, aside)
    plain = etcd_snapshot.plain_copy(path, work)
    try:
        etcd_snapshot.restore(
            tool, plain, data, me, etcd_topology.initial_cluster(s), token, etcd_topology.peer_url(s, me)
        )
    except etcd_snapshot.SnapshotError as exc:
        if aside and not os.path.exists(data):
            os.rename(aside, data)  # nothing restored: the old data goes back
        return etcd_actions.outcome(__context__, False, f"restore failed, data dir put back: {exc}", {})
    finally:
        os.unlink(plain)
    os.chmod(data, 0o700)
    for root, dirs, files in os.walk(data):
        for entry in (root, *(os.path.join(root, n) for n in dirs + files)):
            shutil.chown(entry, s["user"], s["group"])
    etcd_node.drop_bootstrap()
    # --no-block: every member starts at once; a Type=notify start waits for quorum.
    subprocess.run(["systemctl", "start", "--no-block", service], check=True, capture_output=True, timeout=60)
    changes = {"restored": name, "revision": facts["revision"], "data_set_aside": aside, "token": token}
    if not wait:
        return etcd_actions.outcome(__context__, True, f"restored {name}, etcd starting", changes, **changes)
    cluster_id = _wait_serving(s, s["service"]["start_timeout"])
    if not cluster_id:
        return etcd_actions.outcome(__context__, False, f"restored {name} but etcd does not serve yet", changes)
    __salt__["etcd_cluster.record_cluster_id"](cluster_id)
    changes["cluster_id"] = cluster_id
    comment = f"restored {name} (revision {facts['revision']}, {facts['keys']} keys) as cluster {cluster_id}"
    return etcd_actions.outcome(__context__, True, comment, changes, **changes)


def _wait_serving(s, timeout):
    client = etcd_topology.client(s, __opts__["id"], urls=[etcd_topology.local_endpoint(s, __opts__["id"])])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.health(etcd_topology.local_endpoint(s, __opts__["id"])):
                return etcd_client.member_hex(client.member_list(None)["cluster_id"])
        except etcd_client.EtcdError:
            pass
        time.sleep(0.5)
    return None


def check_seconds():
    """
    How often the backup job runs on each member: four times per interval, at most
    every 10 s (``etcd_backup.check_seconds`` of ``etcd:backup:interval``).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_backup.check_seconds
    """
    return etcd_backup.check_seconds(__salt__["etcd_cluster.settings"]()["backup"]["interval"])
