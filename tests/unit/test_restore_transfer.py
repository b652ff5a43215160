"""A restore's snapshot in transit, read as a specification: what the master seals
(_runners/etcd_store.py) only the member it was wrapped for opens, at the offset and for
the file it was sealed for; anything else is refused before a byte is written.

The lab sends a real 134 MiB snapshot this way (benchmarks/backup.py, test_backups)."""

import base64
import os

import etcd_transfer
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NAME = "storageos-20261207T111722Z-r125.db"


@pytest.fixture(scope="module")
def store(runner_module):
    return runner_module("etcd_store")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A master's pki_dir with two accepted minions, and each minion's private key."""
    root = tmp_path_factory.mktemp("pki")
    (root / "minions").mkdir()
    pems = {}
    for minion in ("etcd1", "etcd2"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = root / f"{minion}.pem"
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        (root / "minions" / minion).write_bytes(pub)
        pems[minion] = str(pem)
    return root, pems


def seal(store, key, name, offset, data):
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, data, store.aad(name, offset))).decode()


def test_both_halves_bind_a_chunk_to_the_same_name_and_offset(store):
    for offset in (0, 4 << 20, 10**12):
        assert store.aad(NAME, offset) == etcd_transfer.aad(NAME, offset)


def test_the_key_opens_only_for_the_member_it_was_wrapped_for(store, pki):
    root, pems = pki
    store.__opts__ = {"pki_dir": str(root)}
    key = AESGCM.generate_key(bit_length=256)
    wrapped, missing = store._wrapped_keys(key, ["etcd1", "etcd2", "etcd9"])
    assert missing == ["etcd9"]  # no accepted key: the send is refused before anything moves
    assert etcd_transfer.unwrap(etcd_transfer.check_wrapped(wrapped["etcd1"]), pems["etcd1"]) == key
    with pytest.raises(etcd_transfer.TransferError, match="not wrapped for this minion"):
        etcd_transfer.unwrap(etcd_transfer.check_wrapped(wrapped["etcd1"]), pems["etcd2"])


@pytest.mark.parametrize(
    ("sealed_for", "opened_as", "damage", "refusal"),
    [
        ((NAME, 0), (NAME, 0), None, None),  # as sent
        ((NAME, 0), (NAME, 4 << 20), None, "does not open"),  # moved to another offset
        ((NAME, 0), ("storageos-20261207T000000Z-r1.db", 0), None, "does not open"),  # another file
        ((NAME, 0), (NAME, 0), "flip", "does not open"),  # damaged in transit
        ((NAME, 0), (NAME, 0), "short", "shorter than its nonce"),
        ((NAME, 0), (NAME, 0), "not base64", "not base64"),
        ((NAME, 0), (NAME, -1), None, "not a whole number"),
        ((NAME, 0), (NAME, True), None, "not a whole number"),
    ],
)
def test_a_chunk_opens_only_where_it_was_sealed_for(store, sealed_for, opened_as, damage, refusal):
    key, data = AESGCM.generate_key(bit_length=256), os.urandom(1000)
    sealed = seal(store, key, *sealed_for, data)
    if damage == "flip":
        raw = bytearray(base64.b64decode(sealed))
        raw[40] ^= 1
        sealed = base64.b64encode(bytes(raw)).decode()
    elif damage == "short":
        sealed = base64.b64encode(b"x" * 20).decode()
    elif damage == "not base64":
        sealed = "!!" + sealed
    if refusal is None:
        assert etcd_transfer.open_chunk(key, *opened_as, sealed) == data
    else:
        with pytest.raises(etcd_transfer.TransferError, match=refusal):
            etcd_transfer.open_chunk(key, *opened_as, sealed)


def test_chunks_written_in_any_order_make_the_file(tmp_path):
    blocks = [os.urandom(1000) for _ in range(4)]
    path = tmp_path / "copy.db"
    for index in (2, 0, 3, 1):
        etcd_transfer.write_at(str(path), index * 1000, blocks[index])
    assert path.read_bytes() == b"".join(blocks)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
