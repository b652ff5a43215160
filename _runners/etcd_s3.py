"""Copies of the master's backup store in an S3-compatible bucket, sealed before they leave.

Configured in the master's configuration only (credentials never in pillar)::

    etcd_backup_s3:
      endpoint: s3.example.com:9000        # host[:port] of the S3 API
      bucket: etcd-backups
      keyid: AKIA...                       # explicit credentials: no instance metadata
      key: ...
      encryption_key_file: /etc/salt/etcd-backup-s3.key   # 32 random bytes, 0600
      path_style: true                     # bucket in the path (most S3-compatible servers)
      https: true
      verify_ssl: true
      location: us-east-1
      prefix: ""                           # object names: <prefix><cluster>/<name>.enc

``sync`` (run it from the master's scheduler) uploads every verified copy of the store that
the bucket does not hold yet, through Salt's own S3 client (``salt.utils.s3``; Salt 3008
core has no s3 execution module), then reads each object back and compares its sha256
before recording it. Each object is sealed with AES-256-GCM in 8 MiB segments, each bound
to the object's name, its index and whether it is the last, so a truncated, reordered or
renamed object does not open. Salt's client sends an object in one PUT read whole into
memory: S3 takes at most 5 GiB per PUT, so larger copies are refused with that reason.
``fetch`` brings a copy back into the store (after the master's store was lost), opened
and checked against its record's sha256.
"""

import hashlib
import json
import logging
import os
import re
import struct
import tempfile
import time

import salt.utils.s3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "etcd_s3"
DEFAULT_STORE = "/var/lib/etcd-formula-backups"
# Repeated from _runners/etcd_store.py on purpose: runners are loader modules, which call
# each other's public functions through __salt__ but cannot import each other's names.
# Every name becomes an object name or a path only after matching these.
FILE = re.compile(
    r"^(?P<cluster>[A-Za-z0-9][A-Za-z0-9._-]{0,62})-(?P<when>\d{8}T\d{6}Z)-r(?P<rev>\d{1,20})\.db(\.gz)?$"
)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ENDPOINT = re.compile(r"^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$")
PREFIX = re.compile(r"^([A-Za-z0-9._-]{1,64}/){0,4}$")
MAGIC = b"EFS3\x01"
SEGMENT = 8 << 20
PUT_LIMIT = 5 * 1024**3  # S3's single-request upload limit
CONFIG_KEYS = {
    "endpoint": None,
    "bucket": None,
    "keyid": None,
    "key": None,
    "encryption_key_file": None,
    "path_style": True,
    "https": True,
    "verify_ssl": True,
    "location": "us-east-1",
    "prefix": "",
}


def __virtual__():
    return __virtualname__


def config_problems(conf):
    """What is wrong with ``etcd_backup_s3`` (each naming the key and the fix), or []."""
    if not isinstance(conf, dict):
        return ["etcd_backup_s3 is not set in the master's configuration: see README, Backups and recovery"]
    out = [f"etcd_backup_s3:{k} is not a setting: use {', '.join(CONFIG_KEYS)}" for k in conf if k not in CONFIG_KEYS]
    for key in ("endpoint", "bucket", "keyid", "key", "encryption_key_file"):
        if not isinstance(conf.get(key), str) or not conf.get(key):
            out.append(f"etcd_backup_s3:{key} is required (a string)")
    if isinstance(conf.get("endpoint"), str) and not ENDPOINT.match(conf["endpoint"]):
        out.append("etcd_backup_s3:endpoint must be host[:port], without scheme or path (set https instead)")
    if isinstance(conf.get("bucket"), str) and not BUCKET.match(conf["bucket"]):
        out.append("etcd_backup_s3:bucket must be an S3 bucket name: lower case, digits, . and -")
    if not PREFIX.match(conf.get("prefix", "") if isinstance(conf.get("prefix", ""), str) else "?"):
        out.append("etcd_backup_s3:prefix must be empty or plain path parts ending in /, e.g. site1/")
    for key in ("path_style", "https", "verify_ssl"):
        if not isinstance(conf.get(key, True), bool):
            out.append(f"etcd_backup_s3:{key} must be true or false")
    path = conf.get("encryption_key_file")
    if isinstance(path, str) and path and not out:
        try:
            st = os.stat(path)
        except OSError:
            return [
                f"etcd_backup_s3:encryption_key_file {path} does not exist: make it with "
                f"`head -c 32 /dev/urandom > {path} && chmod 600 {path}` and keep a copy away from the master"
            ]
        if st.st_size != 32:
            out.append(f"etcd_backup_s3:encryption_key_file {path} must hold exactly 32 bytes")
        if st.st_mode & 0o077:
            out.append(f"etcd_backup_s3:encryption_key_file {path} must be mode 0600 (chmod 600 {path})")
    return out


def _conf():
    conf = __opts__.get("etcd_backup_s3")
    problems = config_problems(conf)
    if problems:
        raise CommandExecutionError("; ".join(problems))
    return dict(CONFIG_KEYS, **conf)


def _key(conf):
    with open(conf["encryption_key_file"], "rb") as fh:
        return fh.read()


def _aad(obj, index, last):
    return f"etcd-formula s3 {obj} #{index}{' last' if last else ''}".encode()


def seal(key, obj, src, dst):
    """Write `src` sealed into `dst`: MAGIC, then per segment its length, nonce and
    ciphertext; the last segment says so in its associated data."""
    aead = AESGCM(key)
    size = os.path.getsize(src)
    count = max(1, -(-size // SEGMENT))
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(MAGIC)
        for index in range(count):
            block = fin.read(SEGMENT)
            nonce = os.urandom(12)
            sealed = aead.encrypt(nonce, block, _aad(obj, index, index == count - 1))
            fout.write(struct.pack(">I", len(sealed)) + nonce + sealed)


def unseal(key, obj, src, dst):
    """The reverse of `seal`; CommandExecutionError when anything does not open."""
    aead = AESGCM(key)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        if fin.read(len(MAGIC)) != MAGIC:
            raise CommandExecutionError(f"{obj} is not a sealed etcd-formula copy")
        index, last = 0, False
        while True:
            head = fin.read(4)
            if not head:
                break
            if last:
                raise CommandExecutionError(f"{obj} has data after its last segment")
            (length,) = struct.unpack(">I", head)
            nonce, sealed = fin.read(12), fin.read(length)
            if len(sealed) != length or length > SEGMENT + 16:
                raise CommandExecutionError(f"{obj} is truncated in segment {index}")
            for final in (False, True):
                try:
                    fout.write(aead.decrypt(nonce, sealed, _aad(obj, index, final)))
                except InvalidTag:
                    continue
                last = final
                break
            else:
                raise CommandExecutionError(f"{obj} does not open at segment {index}: damaged, renamed or another key")
            index += 1
        if not last:
            raise CommandExecutionError(f"{obj} ends before its last segment (truncated)")


def _store(cluster=None):
    root = __opts__.get("etcd_backup_store") or DEFAULT_STORE
    return os.path.join(root, cluster) if cluster else root


def _object(conf, cluster, name):
    return f"{conf['prefix']}{cluster}/{name}.enc"


def _query(conf, method, path, **kwargs):
    return salt.utils.s3.query(
        key=conf["key"],
        keyid=conf["keyid"],
        method=method,
        bucket=conf["bucket"],
        service_url=conf["endpoint"],
        path=path,
        verify_ssl=conf["verify_ssl"],
        location=conf["location"],
        path_style=conf["path_style"],
        https_enable=conf["https"],
        **kwargs,
    )


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _upload(conf, key, cluster, name, record):
    """Seal, PUT, GET back, compare: the record's ``s3`` entry."""
    src = os.path.join(_store(cluster), name)
    obj = _object(conf, cluster, name)
    if _sha256(src) != record.get("sha256"):
        raise CommandExecutionError(f"{name} in the store does not match its record's sha256: damaged, not uploaded")
    with tempfile.TemporaryDirectory(dir=_store(cluster), prefix=".s3-") as work:
        sealed, back = os.path.join(work, "up"), os.path.join(work, "back")
        seal(key, obj, src, sealed)
        size = os.path.getsize(sealed)
        if size > PUT_LIMIT:
            raise CommandExecutionError(
                f"{name} sealed is {size // 1024**2} MiB: S3 takes at most 5 GiB in one PUT, which is all "
                "Salt's S3 client sends (set etcd:backup:compress true, or copy it with another tool)"
            )
        meta_src = os.path.join(work, "record")
        with open(meta_src, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        seal(key, obj + ".json", meta_src, os.path.join(work, "record.sealed"))
        _query(conf, "PUT", obj + ".json", local_file=os.path.join(work, "record.sealed"))
        _query(conf, "PUT", obj, local_file=sealed)
        _query(conf, "GET", obj, local_file=back)
        sent, got = _sha256(sealed), _sha256(back)
    if sent != got:
        raise CommandExecutionError(f"{obj} read back with sha256 {got}, not the {sent} sent")
    return {"object": obj, "sha256": sent, "size": size, "uploaded": time.time(), "verified": True}


def sync(cluster=None):
    """
    Upload every verified copy in the master's store that the bucket does not hold yet
    (all clusters, or ``cluster``), each read back and compared by sha256 before its
    record says so. Run it from the master's scheduler (README: Backups and recovery).

    CLI Example:

    .. code-block:: bash

        salt-run etcd_s3.sync
        salt-run etcd_s3.sync cluster=storageos
    """
    try:
        conf = _conf()
        key = _key(conf)
    except (CommandExecutionError, OSError) as exc:
        return _answer({"result": False, "comment": f"refused, nothing uploaded: {exc}"})
    if cluster is not None and (not isinstance(cluster, str) or not NAME.match(cluster)):
        return _answer({"result": False, "comment": f"refused: {cluster!r} is not a cluster name"})
    names = [cluster] if cluster else sorted(d for d in os.listdir(_store()) if NAME.match(d))
    done, failed = [], []
    for c in names:
        for entry in sorted(os.listdir(_store(c)) if os.path.isdir(_store(c)) else []):
            if not entry.endswith(".json") or not FILE.match(entry[:-5]):
                continue
            name, path = entry[:-5], os.path.join(_store(c), entry)
            with open(path, encoding="utf-8") as fh:
                record = json.load(fh)
            if not record.get("verified") or (record.get("s3") or {}).get("verified"):
                continue
            try:
                record["s3"] = _upload(conf, key, c, name, {k: v for k, v in record.items() if k != "s3"})
            except (CommandExecutionError, OSError) as exc:
                log.warning("etcd_s3: %s not uploaded: %s", name, exc)
                failed.append({"name": name, "error": str(exc)[:300]})
                continue
            tmp = path + ".part"
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=1, sort_keys=True)
            os.replace(tmp, path)
            done.append(name)
    comment = f"{len(done)} uploaded and verified" + (f", {len(failed)} failed" if failed else "")
    return _answer({"result": not failed, "comment": comment, "uploaded": done, "failed": failed})


def fetch(cluster, name):
    """
    Bring a copy back from the bucket into the master's store (after the store was
    lost): both objects opened with the encryption key, the snapshot checked against its
    record's sha256, then stored 0600 and verified, ready for ``etcd.orch.restore``.

    CLI Example:

    .. code-block:: bash

        salt-run etcd_s3.fetch storageos storageos-20261206T120000Z-r42.db
    """
    if not isinstance(cluster, str) or not NAME.match(cluster) or not isinstance(name, str):
        return _answer({"result": False, "comment": "refused: a cluster name and a snapshot name are needed"})
    match = FILE.match(name)
    if not match or match.group("cluster") != cluster:
        return _answer({"result": False, "comment": f"refused: {name!r} is not a snapshot name of {cluster}"})
    try:
        conf = _conf()
        key = _key(conf)
        obj = _object(conf, cluster, name)
        os.makedirs(_store(cluster), mode=0o700, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=_store(cluster), prefix=".s3-") as work:
            for suffix in (".json", ""):
                _query(conf, "GET", obj + suffix, local_file=os.path.join(work, "sealed" + suffix))
                unseal(key, obj + suffix, os.path.join(work, "sealed" + suffix), os.path.join(work, "plain" + suffix))
            with open(os.path.join(work, "plain.json"), encoding="utf-8") as fh:
                record = json.load(fh)
            got = _sha256(os.path.join(work, "plain"))
            if record.get("name") != name or record.get("sha256") != got:
                raise CommandExecutionError(f"{obj} opened but its sha256 {got} is not its record's")
            final = os.path.join(_store(cluster), name)
            os.chmod(os.path.join(work, "plain"), 0o600)
            os.replace(os.path.join(work, "plain"), final)
            record.update(verified=True, fetched=time.time())
            with open(os.open(final + ".json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
                json.dump(record, fh, indent=1, sort_keys=True)
    except (CommandExecutionError, OSError, ValueError) as exc:
        return _answer({"result": False, "comment": f"not fetched, the store unchanged: {exc}"})
    return _answer({"result": True, "comment": f"{name} fetched from {obj}, sha256 {got} verified", "sha256": got})


def _answer(ret):
    __context__["retcode"] = 0 if ret["result"] else 1
    return ret
