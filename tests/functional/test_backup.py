"""Backups on a member through Salt's real loader, against a real etcd (one TLS member run
as a plain process by the test). No master here, so no copy off the node (push: false):
the copy to the master, its verification there and the restore are proven in the lab
(tests/integration/test_backups.py)."""

import base64
import gzip
import hashlib
import json
import os
import re
import stat
import sys
import time

import pytest

from labkit.preflight import REPO

sys.path.insert(0, str(REPO / "_utils"))
import etcd_keys  # noqa: E402
import etcd_snapshot  # noqa: E402
import etcd_topology  # noqa: E402

ME = "functional"


@pytest.fixture
def member(etcd_tls_member, set_pillar, loaders):
    bindir = etcd_tls_member.root / "bin"
    bindir.mkdir(exist_ok=True)
    release = next((etcd_tls_member.root / "release").glob("etcd-v*"))
    for tool in ("etcdctl", "etcdutl"):
        (bindir / tool).symlink_to(release / tool)
    site = etcd_tls_member.site()
    backups = etcd_tls_member.root / "backups"
    site["etcd"]["backup"] = {"push": False, "dir": str(backups), "keep": 2, "interval": 3600, "compress": True}
    set_pillar(site)
    etcd_tls_member.backups = backups
    return etcd_tls_member


def client(loaders):
    return etcd_topology.client(loaders.modules.etcd_cluster.settings(), ME)


def test_a_snapshot_is_verified_compressed_0600_and_recorded(member, loaders):
    c = client(loaders)
    for i in range(25):
        c.put(f"/app/{i}", "v" * 100)
    got = loaders.modules.etcd_backup.save()
    assert got["result"] is True, got
    path = member.backups / got["name"]
    assert path.suffix == ".gz" and stat.S_IMODE(path.stat().st_mode) == 0o600
    record = json.loads((member.backups / (got["name"] + ".json")).read_text())
    assert record["sha256"] == etcd_snapshot.etcd_node.sha256_file(str(path)) and record["size"] == path.stat().st_size
    assert record["keys"] >= 25 and record["cluster"] == "functional" and record["member"] == ME
    assert record["off_node"] is False and re.fullmatch(
        r"[0-9a-f]{1,16}", record["cluster_id"]
    )  # etcdctl: no zero padding
    # What was kept reads back as a snapshot of the same revision.
    plain = member.root / "plain.db"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    assert etcd_snapshot.status(str(member.root / "bin" / "etcdutl"), str(plain))["revision"] == record["revision"]
    assert not [p for p in os.listdir(member.backups) if ".part" in p or p.startswith(".taking")]
    assert [s["name"] for s in loaders.modules.etcd_backup.snapshots()] == [got["name"]]


def test_retention_on_the_member_keeps_the_newest(member, loaders):
    names = []
    for i in range(3):
        client(loaders).put("/app/x", str(i))
        names.append(loaders.modules.etcd_backup.save()["name"])
        time.sleep(1.1)  # one name per second
    kept = sorted(s["name"] for s in loaders.modules.etcd_backup.snapshots())
    assert kept == sorted(names[1:]), kept
    assert sorted(os.listdir(member.backups)) == sorted([*kept, *(n + ".json" for n in kept)])


def test_one_snapshot_per_interval_however_often_the_job_runs(member, loaders):
    first = loaders.modules.etcd_backup.scheduled()
    assert first["action"] == "done", first  # the only member: leader, no follower to defer to
    again = [loaders.modules.etcd_backup.scheduled()["action"] for _ in range(3)]
    assert again == ["done"] * 3
    assert len(loaders.modules.etcd_backup.snapshots()) == 1
    c = client(loaders)
    assert c.get(etcd_keys.backup_done("functional", first["slot"]))
    assert json.loads(c.get(etcd_keys.backup_since("functional")))["member"] == ME
    assert not c.get(etcd_keys.backup_claim("functional", first["slot"]))  # the claim is released


def test_a_claimed_interval_is_left_to_its_holder(member, loaders):
    c = client(loaders)
    s = loaders.modules.etcd_cluster.settings()
    from etcd_backup import slot

    c.put(etcd_keys.backup_claim("functional", slot(time.time(), s["backup"]["interval"])), '{"member": "etcd9"}')
    got = loaders.modules.etcd_backup.scheduled()
    assert got["action"] == "busy" and "etcd9" in got["comment"], got
    assert loaders.modules.etcd_backup.snapshots() == []


def test_a_failed_snapshot_is_recorded_and_not_claimed_again_in_its_interval(member, loaders):
    member.backups.write_text("a file where the backup directory belongs")
    first = loaders.modules.etcd_backup.scheduled()
    assert first["action"] == "failed", first
    c = client(loaders)
    assert list(c.get_prefix(etcd_keys.backup_failed("functional", first["slot"]))) == [ME]
    assert not c.get(etcd_keys.backup_claim("functional", first["slot"]))  # freed for another member
    again = loaders.modules.etcd_backup.scheduled()
    assert again["action"] == "tried" and again["slot"] == first["slot"], again
    assert "another member takes it" in again["comment"]


def test_stale_backups_make_the_report_degraded_never_the_gate(member, set_pillar, loaders):
    c = client(loaders)
    c.put(etcd_keys.backup_since("functional"), json.dumps({"time": time.time() - 10000}))
    report = loaders.modules.etcd_health.health()
    stale = [r for r in report["reasons"] if r["code"] == "backup_stale"]
    assert report["verdict"] == "degraded" and stale and "no verified off-node backup" in stale[0]["text"]
    assert loaders.modules.etcd_health.healthy()["healthy"] is True  # reported, never blocking
    c.put(etcd_keys.backup_latest("functional"), json.dumps({"name": "x", "time": time.time(), "member": ME}))
    report = loaders.modules.etcd_health.health()
    assert report["verdict"] == "ok" and report["backup"]["member"] == ME, report["reasons"]
    c.put(etcd_keys.backup_latest("functional"), "not json")  # any client can write the key
    assert [r["code"] for r in loaders.modules.etcd_health.health()["reasons"]] == ["backup_stale"]


def test_a_damaged_copy_is_refused_before_anything_changes(member, loaders, tmp_path):
    got = loaders.modules.etcd_backup.save()
    assert got["result"] is True, got
    path = member.backups / got["name"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(etcd_snapshot.SnapshotError, match="damaged"):
        etcd_snapshot.verify(str(path), got["sha256"], str(member.root / "bin" / "etcdutl"), str(tmp_path))
    # A file that matches its sha256 but is no snapshot (truncated before it was recorded).
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\0" * 4096)
    with pytest.raises(etcd_snapshot.SnapshotError):
        etcd_snapshot.verify(
            str(junk),
            etcd_snapshot.etcd_node.sha256_file(str(junk)),
            str(member.root / "bin" / "etcdutl"),
            str(tmp_path),
        )


def test_restore_refuses_bad_arguments_and_names(member, loaders):
    bad = loaders.modules.etcd_backup.restore("../../etc/passwd", "0" * 64, "tok")
    assert bad["result"] is False and "not a snapshot name" in bad["comment"]
    bad = loaders.modules.etcd_backup.restore("functional-20261206T120000Z-r1.db", "0" * 64, "tok en")
    assert bad["result"] is False and "not a cluster token" in bad["comment"]
    missing = loaders.modules.etcd_backup.restore("functional-20261206T120000Z-r1.db", "0" * 64, "tok")
    assert missing["result"] is False and "nothing changed" in missing["comment"]
    assert member.proc.poll() is None  # etcd still runs


def test_an_uncompressed_snapshot_verifies_in_its_own_directory_unharmed(member, loaders):
    got = loaders.modules.etcd_backup.save(compress=False)
    path = member.backups / got["name"]
    assert path.suffix == ".db" and got["compressed"] is False, got
    facts = etcd_snapshot.verify(str(path), got["sha256"], str(member.root / "bin" / "etcdutl"), str(member.backups))
    assert facts["revision"] == got["revision"]
    assert etcd_snapshot.etcd_node.sha256_file(str(path)) == got["sha256"]  # the copy beside it left it whole
    assert not [p for p in os.listdir(member.backups) if p.startswith(".plain-")]


def test_a_sealed_snapshot_arrives_whole_and_only_for_this_minion(member, loaders, tmp_path, runner_module):
    """The member's half of etcd_store.send with the master's half sealing: chunks in any
    order make the file; a chunk sealed for another offset or a key wrapped for another
    minion is refused and writes nothing; the transfer's key is gone afterwards."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    store = runner_module("etcd_store")
    pki = loaders.opts["pki_dir"]
    os.makedirs(pki, exist_ok=True)
    pem = os.path.join(pki, "minion.pem")
    if not os.path.exists(pem):  # this functional minion never ran, so never made its key
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with open(pem, "wb") as fh:
            fh.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
    with open(pem, "rb") as fh:
        public = serialization.load_pem_private_key(fh.read(), None).public_key()
    (tmp_path / "minions").mkdir()
    for minion, pub in (
        (ME, public),
        ("other", rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()),
    ):
        pem_pub = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        (tmp_path / "minions" / minion).write_bytes(pem_pub)
    store.__opts__ = {"pki_dir": str(tmp_path)}
    name = "functional-20261207T120000Z-r9.db"
    secret = AESGCM.generate_key(bit_length=256)
    wrapped, missing = store._wrapped_keys(secret, [ME, "other"])
    assert not missing
    backup = loaders.modules.etcd_backup
    path = backup.restore_path(name)

    refused = backup.receive_begin(name, wrapped["other"])
    assert refused.startswith("refused:") and "not wrapped for this minion" in refused, refused
    assert not os.path.exists(path)

    data = os.urandom(3 * 1000 + 17)
    blocks = [(offset, data[offset : offset + 1000]) for offset in range(0, len(data), 1000)]

    def sealed(offset, block, bound_to=None):
        nonce = os.urandom(12)
        aad = store.aad(name, offset if bound_to is None else bound_to)
        return base64.b64encode(nonce + AESGCM(secret).encrypt(nonce, block, aad)).decode()

    assert backup.receive_begin(name, wrapped[ME]) is True
    moved = backup.receive_chunk(name, 1000, sealed(1000, blocks[0][1], bound_to=0))
    assert moved.startswith("refused:") and "does not open" in moved, moved
    assert os.path.getsize(path) == 0  # nothing written
    for offset, block in reversed(blocks):
        assert backup.receive_chunk(name, offset, sealed(offset, block)) is True
    digest = backup.receive_end(name)
    assert digest == hashlib.sha256(data).hexdigest()
    assert open(path, "rb").read() == data
    assert (
        stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    )
    assert not os.path.exists(path + ".key")
    late = backup.receive_chunk(name, 0, sealed(0, blocks[0][1]))
    assert late.startswith("refused:") and "no transfer" in late, late  # the key is gone: no more writes
