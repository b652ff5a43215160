"""The master's store of etcd backups, and its half of a restore.

A member pushes a verified snapshot with ``cp.push`` (the master needs ``file_recv:
true``; Salt writes it into the minion's cache, ``<cachedir>/minions/<id>/files/``, which
``salt-key -d`` deletes with the minion) and then calls ``accept`` through ``peer_run``.
``accept`` moves it into ``etcd_backup_store/<cluster>/`` (master option, default
``/var/lib/etcd-formula-backups``), mode 0600 in 0700 directories, after checking that the
sender is a member of that cluster by the master's own pillar and that the file's sha256
is what its record says. A snapshot holds every secret in etcd: the store is outside the
file roots and never served by the fileserver; a restore sends a copy only to the members
being restored (``send``: chunks sealed under a key only those members can unwrap, since
Salt's job cache keeps every publish's arguments).
"""

import base64
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import time

import salt.cache
import salt.client
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

__virtualname__ = "etcd_store"
DEFAULT_STORE = "/var/lib/etcd-formula-backups"
SILENCE_BANK = "etcd/silenced"
# Repeated from the minion side on purpose (runners have no minion _utils): etcd_backup.FILE,
# etcd_backup.SHA256, etcd_names.NAME, etcd_backup.UPLOAD_ROOT. Every name below becomes a
# path on the master only after matching these.
FILE = re.compile(
    r"^(?P<cluster>[A-Za-z0-9][A-Za-z0-9._-]{0,62})-(?P<when>\d{8}T\d{6}Z)-r(?P<rev>\d{1,20})\.db(\.gz)?$"
)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
UPLOAD_ROOT = "etcd-backups"
RECORD_MAX = 64 * 1024
# A restore's transfer (``send``): bytes per chunk, and chunks in flight. Each chunk is one
# publish, answered by every member; Salt's job cache keeps each publish with its
# arguments, hence the sealing (etcd_transfer on the member side). Measured in the lab
# (LocalClient.cmd waits on the event bus and took 17 s per MiB; run_job and the returns
# read back took 0.5 s per MiB at 1 MiB chunks, 0.27 s at 4 MiB): 4 MiB, 2 in flight.
CHUNK = 4 << 20
IN_FLIGHT = 2
WRAP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def __virtual__():
    return __virtualname__


def _store(cluster=None):
    root = __opts__.get("etcd_backup_store") or DEFAULT_STORE
    return os.path.join(root, cluster) if cluster else root


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_record(path):
    try:
        if os.path.getsize(path) > RECORD_MAX:
            return None
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _refuse(comment, *leftovers):
    for path in leftovers:
        if os.path.isfile(path):
            os.unlink(path)
    log.warning("etcd backup refused: %s", comment)
    return {"result": False, "comment": comment}


def accept(cluster, name):
    """
    Take in a snapshot a member pushed (called by the member through ``peer_run``; the
    caller is the minion the master authenticated). Refused, and the pushed files deleted,
    unless the sender is a member of ``cluster`` by its pillar, the name is a snapshot name
    of that cluster and the file's sha256 is its record's. Idempotent: a copy already in
    the store with that sha256 is accepted again. Applies the store's retention
    (``etcd:backup:store_keep``, ``store_max_age_days`` of the sender's pillar).

    CLI Example:

    .. code-block:: bash

        # members call it: salt-call publish.runner etcd_store.accept arg='[storageos, <name>]'
        salt-run etcd_store.accept storageos storageos-20261206T120000Z-r42.db.gz
    """
    sender = __opts__.get("id")
    if not isinstance(cluster, str) or not NAME.match(cluster):
        return _refuse(f"{cluster!r} is not a cluster name")
    match = FILE.match(name) if isinstance(name, str) else None
    if not match or match.group("cluster") != cluster:
        return _refuse(f"{name!r} is not a snapshot name of cluster {cluster}")
    pushed = os.path.join(__opts__["cachedir"], "minions", str(sender), "files", UPLOAD_ROOT, cluster, name)
    refusal = __salt__["etcd.sender_refusal"](sender, cluster)
    if refusal:
        return _refuse(f"{name} from {sender}: {refusal}", pushed, pushed + ".json")
    final = os.path.join(_store(cluster), name)
    if not os.path.isfile(pushed):
        stored = _read_record(final + ".json")
        if stored and os.path.isfile(final) and _sha256(final) == stored.get("sha256"):
            return {"result": True, "comment": f"{name} is in the store", "sha256": stored["sha256"], "path": final}
        return _refuse(f"{name}: nothing pushed by {sender} (cp.push needs file_recv: true on the master)")
    record = _read_record(pushed + ".json")
    got = _sha256(pushed)
    if not record or record.get("name") != name or record.get("cluster") != cluster:
        return _refuse(
            f"{name} from {sender}: its record is missing or names another snapshot", pushed, pushed + ".json"
        )
    if record.get("sha256") != got:
        return _refuse(
            f"{name} from {sender}: sha256 {got} is not its record's {record.get('sha256')!r}", pushed, pushed + ".json"
        )
    os.makedirs(_store(cluster), mode=0o700, exist_ok=True)
    os.chmod(_store(), 0o700)
    os.chmod(_store(cluster), 0o700)
    os.chmod(pushed, 0o600)
    shutil.move(pushed, final)
    kept = dict(record, member=sender, sha256=got, received=time.time(), verified=True)
    _write_record(final + ".json", kept)
    os.unlink(pushed + ".json")
    pruned = _prune(cluster, _retention(sender))
    comment = f"{name} from {sender} stored, sha256 verified" + (f"; retention removed {len(pruned)}" if pruned else "")
    return {"result": True, "comment": comment, "sha256": got, "path": final, "pruned": pruned}


def _write_record(path, record):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def _retention(minion):
    etcd = __salt__["etcd.cached_pillar"](minion).get("etcd") or {}
    b = etcd.get("backup") if isinstance(etcd.get("backup"), dict) else {}
    keep = b.get("store_keep") if isinstance(b.get("store_keep"), int) else 48
    days = b.get("store_max_age_days") if isinstance(b.get("store_max_age_days"), int) else 30
    return max(1, keep), max(0, days)


def _prune(cluster, retention):
    """Beyond the newest `keep`, or older than `days`; never the newest copy. (The rule is
    etcd_backup.prune's, repeated here: runners have no minion _utils.)"""
    keep, days = retention
    ordered = _records(cluster)
    now, gone = time.time(), []
    for index, rec in enumerate(ordered):
        old = bool(days) and now - (rec.get("time") or 0) > days * 86400
        if index > 0 and (index >= keep or old):
            for path in (
                os.path.join(_store(cluster), rec["name"]),
                os.path.join(_store(cluster), rec["name"] + ".json"),
            ):
                if os.path.exists(path):
                    os.unlink(path)
            gone.append(rec["name"])
    return gone


def _records(cluster):
    """The store's records of `cluster`, newest first (only names of the formula's shape)."""
    directory = _store(cluster)
    if not os.path.isdir(directory):
        return []
    out = []
    for entry in os.listdir(directory):
        name = entry.removesuffix(".json")
        if entry.endswith(".json") and FILE.match(name):
            record = _read_record(os.path.join(directory, entry))
            if record:
                out.append(dict(record, name=name))
    return sorted(out, key=lambda r: (r.get("time") or 0, r["name"]), reverse=True)


def listing(cluster, verify=False):
    """
    The verified copies of ``cluster`` in the store, newest first: time, member,
    revision, keys, size, sha256, age; with ``verify=True`` each file's sha256 is computed
    again (``verified`` false for a damaged copy).

    CLI Example:

    .. code-block:: bash

        salt-run etcd_store.listing storageos verify=True
    """
    if not isinstance(cluster, str) or not NAME.match(cluster):
        return []
    now, out = time.time(), []
    for rec in _records(cluster):
        path = os.path.join(_store(cluster), rec["name"])
        row = {k: rec.get(k) for k in ("name", "time", "member", "revision", "keys", "size", "sha256", "etcd_version")}
        row["cluster_id"] = rec.get("cluster_id")
        row["age_s"] = round(now - (rec.get("time") or now))
        row["verified"] = os.path.isfile(path) and (not verify or _sha256(path) == rec.get("sha256"))
        s3 = rec.get("s3") if isinstance(rec.get("s3"), dict) else {}
        row["s3"] = s3.get("object") if s3.get("verified") else None  # etcd_s3.sync recorded it
        out.append(row)
    return out


def _members(cluster):
    """{minion: address} of `cluster` by the master's cached pillars: the members every
    minion that names the cluster agrees on, or None when they disagree."""
    client = salt.cache.factory(__opts__)
    seen = set()
    for minion in client.list("pillar") or []:
        if not NAME.match(str(minion)):
            continue
        etcd = (__salt__["etcd.cached_pillar"](minion) or {}).get("etcd") or {}
        if (etcd.get("cluster") or {}).get("name") == cluster and minion in (etcd.get("members") or {}):
            seen.add(tuple(sorted(etcd["members"])))
    if len(seen) != 1:
        return None
    return list(seen.pop())


def restore_plan(cluster, snapshot="latest", force=False):
    """
    What ``etcd.orch.restore`` would do, or why it refuses: the snapshot (``latest``: the
    newest verified copy), checked again by sha256 and against the cluster it belongs to;
    the members (from the master's pillar); whether any member still serves (refused
    unless ``force``); the new cluster token. Read-only.

    CLI Example:

    .. code-block:: bash

        salt-run etcd_store.restore_plan storageos
        salt-run etcd_store.restore_plan storageos snapshot=storageos-20261206T120000Z-r42.db.gz
    """
    if not isinstance(cluster, str) or not NAME.match(cluster):
        return {"result": False, "comment": f"refused: {cluster!r} is not a cluster name"}
    records = _records(cluster)
    if snapshot in (None, "", "latest"):
        chosen = next(iter(records), None)
    elif isinstance(snapshot, str) and FILE.match(snapshot):
        chosen = next((r for r in records if r["name"] == snapshot), None)
    else:
        return {"result": False, "comment": f"refused: {snapshot!r} is not a snapshot name"}
    if not chosen:
        return {"result": False, "comment": f"refused: no snapshot {snapshot} of {cluster} in {_store(cluster)}"}
    path = os.path.join(_store(cluster), chosen["name"])
    problem = _verify_copy(path, chosen, cluster)
    if problem:
        return {"result": False, "comment": f"refused: {chosen['name']} {problem}; nothing was changed"}
    members = _members(cluster)
    if not members:
        return {"result": False, "comment": f"refused: the master's pillar names no one member list for {cluster}"}
    answered, silent = _serving(members)
    if silent:
        return {
            "result": False,
            "comment": f"refused: the minions {', '.join(silent)} do not answer; nothing was changed",
        }
    if answered and not force:
        return {
            "result": False,
            "comment": f"refused: {', '.join(answered)} of {cluster} still serve: restoring would discard what "
            "they hold; stop them, or pass force: true",
        }
    return {
        "result": True,
        "comment": f"restore {chosen['name']} (revision {chosen.get('revision')}, {chosen.get('keys')} keys, "
        f"taken by {chosen.get('member')}) on {', '.join(members)}",
        "snapshot": chosen["name"],
        "sha256": chosen["sha256"],
        "revision": chosen.get("revision"),
        "members": members,
        "serving": answered,
        "token": f"{cluster}-etcd-r{time.strftime('%Y%m%d%H%M%S', time.gmtime())}",
    }


def _verify_copy(path, record, cluster):
    """None when the stored copy is intact and is `cluster`'s, else what is wrong."""
    if record.get("cluster") != cluster:
        return f"belongs to cluster {record.get('cluster')!r}, not {cluster}"
    if not os.path.isfile(path):
        return "is missing from the store"
    got = _sha256(path)
    if got != record.get("sha256"):
        return f"is damaged: sha256 {got}, recorded {record.get('sha256')}"
    if path.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as fh:
                while fh.read(1 << 20):
                    pass
        except (OSError, EOFError) as exc:
            return f"does not decompress: {exc}"
    return None


def _serving(members, timeout=15):
    """(members whose etcd answers, members whose minion does not), asked through each
    member's minion."""
    with salt.client.get_local_client(mopts=__opts__) as client:
        answers = client.cmd(members, "etcd_cluster.probe", tgt_type="list", timeout=timeout) or {}
    serving = sorted({n for a in answers.values() if isinstance(a, dict) for n in a.get("answered", [])})
    return serving, sorted(m for m in members if not isinstance(answers.get(m), dict))


def send(cluster, snapshot, members):
    """
    Copy a stored snapshot to the members being restored, to each member's
    ``etcd_backup.restore_path`` (0600), and check its sha256 there. The chunks are
    sealed (AES-256-GCM, bound to the name and offset) under a key made for this transfer
    and wrapped for each member with its own accepted Salt key: the master's job cache,
    which keeps every publish, holds only what those members can open.

    CLI Example:

    .. code-block:: bash

        salt-run etcd_store.send storageos storageos-20261206T120000Z-r42.db.gz '[etcd1, etcd2, etcd3]'
    """
    return _answer(_send(cluster, snapshot, members))


def _answer(ret):
    """An orchestration's salt.runner step fails when the runner sets a retcode."""
    __context__["retcode"] = 0 if ret["result"] else 1
    return ret


def aad(name, offset):
    """What a chunk is bound to; the same as etcd_transfer.aad on the member side."""
    return f"etcd-formula restore {name} @ {int(offset)}".encode()


def _wrapped_keys(key, members):
    """{member: the transfer key wrapped with its accepted public key (base64)} or the
    members without an accepted key."""
    wrapped, missing = {}, []
    for member in members:
        try:
            with open(os.path.join(__opts__["pki_dir"], "minions", member), "rb") as fh:
                pub = serialization.load_pem_public_key(fh.read())
        except (OSError, ValueError):
            missing.append(member)
            continue
        wrapped[member] = base64.b64encode(pub.encrypt(key, WRAP)).decode()
    return wrapped, missing


def _returns(client, pub, members, timeout):
    got = {}
    if not pub or not pub.get("jid"):
        return got
    for part in client.get_cli_returns(pub["jid"], members, timeout=timeout):
        got.update({m: r.get("ret") for m, r in part.items() if isinstance(r, dict)})
    return got


def _send(cluster, snapshot, members):
    if (
        not isinstance(cluster, str)
        or not NAME.match(cluster)
        or not isinstance(snapshot, str)
        or not FILE.match(snapshot)
    ):
        return {"result": False, "comment": "refused: a cluster name and a snapshot name are needed"}
    if not isinstance(members, list) or not members or not all(isinstance(m, str) and NAME.match(m) for m in members):
        return {"result": False, "comment": f"refused: {members!r} is not a list of minion ids"}
    record = _read_record(os.path.join(_store(cluster), snapshot + ".json")) or {}
    path = os.path.join(_store(cluster), snapshot)
    key = AESGCM.generate_key(bit_length=256)
    wrapped, missing = _wrapped_keys(key, members)
    if missing:
        return {"result": False, "comment": f"refused: no accepted Salt key for {', '.join(missing)}"}
    sealer = AESGCM(key)
    started = time.monotonic()
    with salt.client.get_local_client(mopts=__opts__) as client:
        for member in members:
            pub = client.run_job([member], "etcd_backup.receive_begin", [snapshot, wrapped[member]], tgt_type="list")
            got = _returns(client, pub, [member], 30)
            if got.get(member) is not True:
                return {"result": False, "comment": f"{member} did not start the copy: {got.get(member)!r}"}
        failed = _send_chunks(client, sealer, path, snapshot, members)
        pub = client.run_job(members, "etcd_backup.receive_end", [snapshot], tgt_type="list")
        sums = _returns(client, pub, members, 120)
    if failed:
        return {"result": False, "comment": failed}
    bad = [m for m in members if sums.get(m) != record.get("sha256")]
    if bad:
        return {
            "result": False,
            "comment": f"the copy on {', '.join(bad)} does not match sha256 {record.get('sha256')}",
        }
    seconds = round(time.monotonic() - started, 1)
    return {"result": True, "comment": f"{snapshot} copied to {', '.join(members)} in {seconds} s, sha256 verified"}


def _send_chunks(client, sealer, path, snapshot, members):
    """Publish every chunk to all members, IN_FLIGHT at a time: why it failed, or None."""
    flight = []

    def land():
        offset, pub = flight.pop(0)
        got = _returns(client, pub, members, 120)
        bad = [m for m in members if got.get(m) is not True]
        if bad:
            return f"the chunk at {offset} did not reach {', '.join(bad)}: {[got.get(m) for m in bad]}"
        return None

    with open(path, "rb") as fh:
        offset = 0
        while True:
            block = fh.read(CHUNK)
            if not block:
                break
            nonce = os.urandom(12)
            sealed = base64.b64encode(nonce + sealer.encrypt(nonce, block, aad(snapshot, offset))).decode()
            pub = client.run_job(members, "etcd_backup.receive_chunk", [snapshot, offset, sealed], tgt_type="list")
            flight.append((offset, pub))
            offset += len(block)
            if len(flight) >= IN_FLIGHT:
                failed = land()
                if failed:
                    return failed
    while flight:
        failed = land()
        if failed:
            return failed
    return None


def silence(cluster, seconds=1800):
    """
    Silence ``etcd.alert`` for ``cluster`` for ``seconds`` (a restore does this).

    CLI Example:

    .. code-block:: bash

        salt-run etcd_store.silence storageos seconds=900
    """
    if not isinstance(cluster, str) or not NAME.match(cluster):
        return {"result": False, "comment": f"{cluster!r} is not a cluster name"}
    until = time.time() + float(seconds)
    salt.cache.factory(__opts__).store(SILENCE_BANK, cluster, {"until": until})
    return {"result": True, "comment": f"alerts for {cluster} silenced for {float(seconds):.0f} s"}


def unsilence(cluster):
    """
    End a silence of ``cluster``'s alerts.

    CLI Example:

    .. code-block:: bash

        salt-run etcd_store.unsilence storageos
    """
    if not isinstance(cluster, str) or not NAME.match(cluster):
        return {"result": False, "comment": f"{cluster!r} is not a cluster name"}
    salt.cache.factory(__opts__).flush(SILENCE_BANK, cluster)
    return {"result": True, "comment": f"alerts for {cluster} are on again"}


def silenced(cluster):
    """
    Seconds the silence of ``cluster``'s alerts has left (0: none).

    CLI Example:

    .. code-block:: bash

        salt-run etcd_store.silenced storageos
    """
    entry = salt.cache.factory(__opts__).fetch(SILENCE_BANK, cluster) or {}
    return max(0, round(entry.get("until", 0) - time.time()))
