"""A restore's snapshot on its way from the master's store to a member: the member's half.

Salt has no master-to-minion transfer that stays out of the master's job cache: every
publish (``salt-cp --chunked`` too) is stored there with its arguments, and a snapshot
holds every secret in etcd. So the master (``etcd_store.send``) seals each chunk with
AES-256-GCM under a key made for this one transfer, and wraps that key for each member
with the member's own Salt key (RSA-OAEP, SHA-256; the master holds every accepted
minion's public key). The job cache and the event bus then see only ciphertext that no
one but the members being restored can open. The key stays wrapped on the member's disk
(0600) and is unwrapped per chunk in memory.

Each chunk names its offset and is bound to it and to the snapshot's name (the AEAD's
associated data), so chunks may arrive in any order, and one moved or replayed into
another file fails to open. Both halves must agree on ``aad``; the master's half is in
``_runners/etcd_store.py`` (runners have no minion _utils).
"""

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
MAX_CHUNK = 16 << 20  # what the master sends is 4 MiB; anything far larger is not ours
WRAPPED_MAX = 1024  # an RSA-4096 ciphertext is 512 bytes


class TransferError(Exception):
    pass


def aad(name, offset):
    return f"etcd-formula restore {name} @ {int(offset)}".encode()


def _b64(text, what, limit):
    if not isinstance(text, str) or len(text) > limit * 4 // 3 + 8:
        raise TransferError(f"{what} is not base64 text of at most {limit} bytes")
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TransferError(f"{what} is not base64: {exc}") from exc


def check_wrapped(text):
    """The wrapped key as the master sent it (base64), checked for shape only."""
    return _b64(text, "the wrapped key", WRAPPED_MAX)


def unwrap(wrapped, minion_pem):
    """The transfer's AES key, unwrapped with this minion's private key (a PEM path)."""
    with open(minion_pem, "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    try:
        plain = key.decrypt(
            wrapped, padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        )
    except ValueError as exc:
        raise TransferError("the key was not wrapped for this minion") from exc
    if len(plain) != 32:
        raise TransferError("the unwrapped key is not an AES-256 key")
    return plain


def open_chunk(key, name, offset, sealed_text):
    """The plain bytes of one chunk (nonce + ciphertext, base64), or TransferError."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise TransferError(f"offset {offset!r} is not a whole number of bytes")
    sealed = _b64(sealed_text, "a chunk", MAX_CHUNK + NONCE_BYTES + 16)
    if len(sealed) < NONCE_BYTES + 16:
        raise TransferError("a chunk is shorter than its nonce and tag")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad(name, offset))
    except InvalidTag as exc:
        raise TransferError(f"the chunk at {offset} does not open: damaged, or not for this file") from exc


def write_at(path, offset, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
