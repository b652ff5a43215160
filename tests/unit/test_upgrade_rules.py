"""Which version changes a running cluster may take (no 3.6 binary here: the rules alone),
and the snapshot before one."""

import etcd_lock
import etcd_snapshot
import etcd_upgrade
import pytest


@pytest.mark.parametrize(
    ("running", "cluster", "target", "allowed"),
    [
        (["3.4.23"] * 3, "3.4.0", "3.5.1", True),  # one minor up
        (["3.5.1", "3.5.1", "3.5.1"], "3.5.0", "3.5.33", True),  # patch step
        (["3.4.23", "3.5.1", "3.5.1"], "3.4.0", "3.5.1", True),  # a roll half done
        (["3.5.33"] * 3, "3.5.0", "3.6.4", True),
        (["3.5.33"] * 3, "3.5.0", "3.5.33", True),
    ],
)
def test_supported_steps_pass(running, cluster, target, allowed):
    assert (etcd_upgrade.judge(running, cluster, target) is None) is allowed


@pytest.mark.parametrize(
    ("running", "cluster", "target", "words"),
    [
        (["3.4.23"] * 3, "3.4.0", "3.6.4", "skips a minor"),
        (["3.4.23", "3.5.1", "3.5.1"], "3.4.0", "3.6.0", "skips a minor"),  # judged from the lowest member
        (["3.5.1"] * 3, "3.5.0", "3.4.23", "downgrade"),
        (["3.5.33", "3.5.1"], "3.5.0", "3.5.20", "downgrade"),
        (["3.5.10"] * 3, "3.5.0", "3.6.4", "3.5.20 or newer"),
        (["3.5.33"] * 3, "3.5.0", "4.0.0", "skips a minor"),
    ],
)
def test_unsupported_steps_name_the_reason(running, cluster, target, words):
    assert words in etcd_upgrade.judge(running, cluster, target)


def test_36_needs_no_v2_and_35_with_auth_needs_the_fix():
    assert "enable-v2" in etcd_upgrade.judge(["3.5.33"], "3.5.0", "3.6.4", extra_flags={"enable-v2": True})
    assert "auth" in etcd_upgrade.judge(["3.4.23"], "3.4.0", "3.5.1", auth_enabled=True)
    assert etcd_upgrade.judge(["3.4.23"], "3.4.0", "3.5.5", auth_enabled=True) is None


def test_lock_ttl_respects_etcds_minimum():
    # etcd raises any TTL below 1.5 election timeouts: ask for at least that.
    assert etcd_lock.min_ttl(5000, 5) == 8
    assert etcd_lock.min_ttl(1000, 60) == 60


def test_snapshot_refused_before_anything_runs_when_the_disk_is_too_full(tmp_path):
    huge = 1 << 60  # more than any disk here: refused by the free-space check alone
    with pytest.raises(etcd_snapshot.SnapshotError, match="etcd:upgrade:snapshot_dir"):
        etcd_snapshot.save("/nonexistent/etcdctl", "http://127.0.0.1:1", (None, None, None), str(tmp_path), huge, "x")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_etcdctl_leaves_no_snapshot_under_its_final_name(tmp_path):
    with pytest.raises(etcd_snapshot.SnapshotError, match="snapshot save"):
        etcd_snapshot.save("/bin/false", "http://127.0.0.1:1", (None, None, None), str(tmp_path), 1024, "x")
    assert not (tmp_path / "x.db").exists()
