"""Copies for S3, read as a specification: what `_runners/etcd_s3.py` seals opens only
whole, in order, under its own name and key; its configuration is refused with the key
and the fix. The lab uploads to and fetches from a real S3-compatible server
(tests/integration/test_backups.py)."""

import os

import pytest

OBJ = "storageos/storageos-20261207T120000Z-r9.db.enc"


@pytest.fixture(scope="module")
def s3(runner_module):
    module = runner_module("etcd_s3")
    module.SEGMENT = 1000  # small segments: several per test file
    return module


def sealed(s3, tmp_path, data, key, obj=OBJ):
    src, dst = tmp_path / "plain", tmp_path / "sealed"
    src.write_bytes(data)
    s3.seal(key, obj, str(src), str(dst))
    return dst


def opened(s3, tmp_path, path, key, obj=OBJ):
    out = tmp_path / "opened"
    s3.unseal(key, obj, str(path), str(out))
    return out.read_bytes()


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 3500])
def test_what_is_sealed_opens_whole(s3, tmp_path, size):
    key, data = os.urandom(32), os.urandom(size)
    path = sealed(s3, tmp_path, data, key)
    # Plain text must not show through; under 16 bytes a chance match in the ciphertext
    # is likely (a 1-byte copy failed so in a run), so only longer data is looked for.
    assert size < 16 or data not in path.read_bytes()
    assert opened(s3, tmp_path, path, key) == data


def _segments(raw):
    """(magic, [segment bytes]) of a sealed file."""
    magic, rest, out = raw[:5], raw[5:], []
    while rest:
        length = int.from_bytes(rest[:4], "big")
        out.append(rest[: 4 + 12 + length])
        rest = rest[4 + 12 + length :]
    return magic, out


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("truncate the last segment", "is truncated in segment 3"),
        ("drop the last segment", "ends before its last segment"),
        ("swap two segments", "does not open at segment 0"),
        ("flip a byte", "does not open"),
        ("another name", "does not open at segment 0"),
        ("another key", "does not open at segment 0"),
        ("not sealed", "not a sealed etcd-formula copy"),
        ("data after the end", "data after its last segment"),
    ],
)
def test_anything_else_does_not_open(s3, tmp_path, change, says):
    key, data = os.urandom(32), os.urandom(3500)
    path = sealed(s3, tmp_path, data, key)
    magic, segs = _segments(path.read_bytes())
    obj, use_key = OBJ, key
    if change == "truncate the last segment":
        segs[-1] = segs[-1][:-10]
    elif change == "drop the last segment":
        segs = segs[:-1]
    elif change == "swap two segments":
        segs[0], segs[1] = segs[1], segs[0]
    elif change == "flip a byte":
        segs[1] = segs[1][:30] + bytes([segs[1][30] ^ 1]) + segs[1][31:]
    elif change == "another name":
        obj = "storageos/storageos-20261207T120000Z-r8.db.enc"
    elif change == "another key":
        use_key = os.urandom(32)
    elif change == "not sealed":
        magic = b"PLAIN"
    elif change == "data after the end":
        segs.append(segs[0])
    path.write_bytes(magic + b"".join(segs))
    with pytest.raises(s3.CommandExecutionError, match=says):
        opened(s3, tmp_path, path, use_key, obj)


GOOD = {"endpoint": "127.0.0.1:9000", "bucket": "etcd-backups", "keyid": "id", "key": "secret"}


@pytest.mark.parametrize(
    ("conf", "says"),
    [
        (None, "etcd_backup_s3 is not set"),
        (dict(GOOD, encryption_key_file=None), "etcd_backup_s3:encryption_key_file is required"),
        (dict(GOOD, endpoint="https://s3.example.com"), "etcd_backup_s3:endpoint must be host[:port]"),
        (dict(GOOD, bucket="Etcd_Backups"), "etcd_backup_s3:bucket must be an S3 bucket name"),
        (dict(GOOD, prefix="../x"), "etcd_backup_s3:prefix must be empty or plain path parts"),
        (dict(GOOD, https="yes"), "etcd_backup_s3:https must be true or false"),
        (dict(GOOD, region="eu"), "etcd_backup_s3:region is not a setting"),
        ("missing", "does not exist: make it with `head -c 32 /dev/urandom"),
        ("short", "must hold exactly 32 bytes"),
        ("readable", "must be mode 0600"),
        ("good", None),
    ],
)
def test_the_configuration_is_refused_with_the_key_and_the_fix(s3, tmp_path, conf, says):
    if isinstance(conf, str):
        path = tmp_path / "s3.key"
        if conf != "missing":
            path.write_bytes(os.urandom(16 if conf == "short" else 32))
            path.chmod(0o644 if conf == "readable" else 0o600)
        conf = dict(GOOD, encryption_key_file=str(path))
    problems = s3.config_problems(conf)
    if says is None:
        assert problems == []
    else:
        assert any(says in p for p in problems), problems
