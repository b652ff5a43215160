"""The rules of scheduled backups, read as a specification: whose turn an interval is,
what retention deletes, when the health report calls backups stale, and the pillar rules.

The lab proves them on a real cluster and master (tests/integration/test_backups.py)."""

import copy

import etcd_backup
import etcd_settings
import pytest
from test_settings import check, with_


@pytest.mark.parametrize(
    ("done", "claimed", "leader", "followers", "elapsed", "interval", "action"),
    [
        (True, False, False, ["etcd2"], 360, 3600, "done"),  # the interval has its snapshot
        (True, True, True, [], 3500, 3600, "done"),
        (False, True, False, ["etcd2"], 360, 3600, "busy"),  # another member is taking it
        (False, False, False, ["etcd2"], 360, 3600, "claim"),  # a follower takes it
        (False, False, True, ["etcd2", "etcd3"], 360, 3600, "defer"),  # the leader leaves it to them
        (False, False, True, ["etcd2"], 2699, 3600, "defer"),
        (False, False, True, ["etcd2"], 2700, 3600, "claim"),  # its last check period: the followers could not
        (False, False, True, [], 0, 3600, "claim"),  # no healthy follower: the leader takes it
        # Short intervals: the check period is at least 10 s, so at 20 s the leader waits
        # 10 s, not 3/4 of the slot (two looks 10 s apart could both miss the last quarter).
        (False, False, True, ["etcd2"], 9, 20, "defer"),
        (False, False, True, ["etcd2"], 10, 20, "claim"),
        (False, False, True, ["etcd2"], 29, 40, "defer"),
        (False, False, True, ["etcd2"], 30, 40, "claim"),
    ],
)
def test_whose_turn_an_interval_is(done, claimed, leader, followers, elapsed, interval, action):
    assert etcd_backup.turn(done, claimed, leader, followers, elapsed, interval) == action


@pytest.mark.parametrize(
    ("claimed", "leader", "followers", "elapsed", "failed_here", "action"),
    [
        # A member whose snapshot failed in this interval does not claim it again: its
        # claim would be held (and fail) when the leader has its one look in its window.
        (False, False, ["etcd3"], 5, True, "tried"),
        (False, True, [], 15, True, "tried"),  # the leader failed too: the next interval
        (True, False, ["etcd3"], 5, True, "busy"),
        # The caller leaves out of `followers` those that failed here: with none left the
        # leader takes the interval at once, not only in its last check period.
        (False, True, [], 2, False, "claim"),
        (False, True, ["etcd3"], 2, False, "defer"),
    ],
)
def test_a_failed_snapshot_is_not_retried_by_the_same_member(claimed, leader, followers, elapsed, failed_here, action):
    assert etcd_backup.turn(False, claimed, leader, followers, elapsed, 20, failed_here) == action


@pytest.mark.parametrize("interval", [20, 30, 39, 40, 60, 100, 3600, 86400])
@pytest.mark.parametrize("phase", [0, 1, 4.9, 5, 9.9, 14, 19.5])
def test_the_leader_always_gets_a_look_in_its_window(interval, phase):
    """Checks every check period from any phase: the leader's window (after
    leader_waits, before the slot ends) holds at least one of them in every slot."""
    period = etcd_backup.check_seconds(interval)
    looks = [phase + k * period for k in range(int(10 * interval / period) + 2)]
    for slot in range(1, 9):
        start = slot * interval
        window = [t for t in looks if start + etcd_backup.leader_waits(interval) <= t < start + interval]
        assert window, (interval, phase, slot)


DAY = 86400
NOW = 100 * DAY


def entries(*ages_days):
    return [{"name": f"s{i}", "time": NOW - age * DAY} for i, age in enumerate(ages_days)]


@pytest.mark.parametrize(
    ("ages", "keep", "max_days", "gone"),
    [
        ((0, 1, 2), 3, 7, []),
        ((0, 1, 2, 3), 3, 7, ["s3"]),  # the oldest beyond the count
        ((3, 0, 2, 1), 2, 7, ["s0", "s2"]),  # by time, not by listing order
        ((0, 8, 9), 10, 7, ["s1", "s2"]),  # too old
        ((30, 40), 10, 7, ["s1"]),  # the newest stays, however old: backups stopped, keep the last
        ((0, 8), 10, 0, []),  # 0 days: no age limit
        ((), 3, 7, []),
    ],
)
def test_retention_keeps_the_newest_always(ages, keep, max_days, gone):
    assert sorted(etcd_backup.prune(entries(*ages), keep, max_days, NOW)) == sorted(gone)


def settings(**backup):
    s = copy.deepcopy(etcd_settings.DEFAULTS)
    s["backup"].update(interval=3600, **backup)
    return s


@pytest.mark.parametrize(
    ("backup", "latest_age", "since_age", "stale"),
    [
        ({}, 60, None, False),
        ({}, 7201, None, True),  # default threshold: 2 x interval
        ({"max_age": 600}, 601, None, True),
        ({"max_age": 600}, 599, None, False),
        ({}, None, 60, False),  # just scheduled: not stale yet
        ({}, None, 7300, True),  # scheduled two intervals ago and nothing since
        ({}, None, None, False),  # the job never ran (no since): nothing to judge
        ({"schedule": False}, 99999, 99999, False),  # no schedule, no verdict on backups
    ],
)
def test_backup_age_in_the_health_report(backup, latest_age, since_age, stale):
    now = 10**9
    latest = {"name": "x", "time": now - latest_age} if latest_age is not None else None
    since = now - since_age if since_age is not None else None
    got = etcd_backup.findings(settings(**backup), latest, since, now)
    assert [r["code"] for r in got] == (["backup_stale"] if stale else [])
    assert all(r["level"] == "degraded" for r in got)  # reported, never blocking a change


def test_a_file_name_sorts_by_time_and_is_what_the_master_accepts():
    name = etcd_backup.file_name("storageos", 1_765_000_000, 42, True)
    assert name == "storageos-20251206T054640Z-r42.db.gz"
    m = etcd_backup.FILE.match(name)
    assert m and m.group("cluster") == "storageos" and m.group("rev") == "42"
    for bad in (
        "../x-20251206T054640Z-r42.db",
        "storageos-20251206T054640Z-r42.db/../../x",
        "a b-20251206T054640Z-r1.db",
    ):
        assert not etcd_backup.FILE.match(bad)


@pytest.mark.parametrize(("interval", "every"), [(3600, 900), (60, 15), (20, 10)])
def test_each_member_checks_four_times_an_interval(interval, every):
    assert etcd_backup.check_seconds(interval) == every


@pytest.mark.parametrize(
    ("arg", "bad", "key", "words"),
    [
        ("backup__interval", 5, "backup:interval", "whole number from 20"),
        ("backup__interval", "1h", "backup:interval", "whole number"),
        ("backup__keep", 0, "backup:keep", "whole number from 1"),
        ("backup__schedule", "yes", "backup:schedule", "true or false"),
        ("backup__compress", 1, "backup:compress", "true or false"),
        ("backup__splay", 900, "backup:splay", "not under the check period"),
        ("backup__max_age", 10, "backup:max_age", "at least 60"),
        ("backup__store_keep", True, "backup:store_keep", "whole number"),
        ("backup", ["daily"], "backup", "must be a mapping"),
    ],
)
def test_bad_backup_pillar_is_named(arg, bad, key, words):
    report = check(with_(**{arg: bad}))
    named = [e for e in report["errors"] if e["key"] == f"etcd:{key}"]
    assert not report["valid"] and named, report["errors"]
    assert any(words in e["message"] + " " + e["fix"] for e in named), named


def test_no_copy_off_the_node_is_a_warning():
    report = check(with_(backup__push=False))
    assert report["valid"] and "etcd:backup:push" in [w["key"] for w in report["warnings"]]
