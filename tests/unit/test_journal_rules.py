"""Which line of etcd's log is the reason it stopped (pure; the lab's garbage-WAL test in
the fault catalogue reads it from a real journal (test_reliability.py))."""

import json

import etcd_journal
import pytest


def zap(level, msg, **fields):
    return json.dumps({"level": level, "ts": "2026-12-06T23:21:51.058Z", "msg": msg, **fields})


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        # etcd 3.5.1 on a WAL overwritten with random bytes (measured on the real binary).
        (
            [
                zap("info", "starting an etcd server"),
                zap("info", "closed etcd server"),
                zap("fatal", "discovery failed", error="wal: max entry size limit exceeded", stacktrace="a\n\tb"),
            ],
            "discovery failed: wal: max entry size limit exceeded",
        ),
        # A panic through the logger, without an error field.
        ([zap("panic", "failed to recover v3 backend from snapshot")], "failed to recover v3 backend from snapshot"),
        # A Go panic outside the logger; the goroutine dump after it is no reason.
        (
            ["panic: runtime error: index out of range", "goroutine 1 [running]:"],
            "panic: runtime error: index out of range",
        ),
        # The last fatal line wins: an earlier one may have been a different start.
        ([zap("fatal", "first", error="a"), zap("fatal", "second", error="b")], "second: b"),
        # Warnings and errors are not why etcd stopped; nothing fatal, no reason.
        ([zap("warn", "slow fdatasync"), zap("error", "failed to publish", error="timeout")], None),
        # A flag etcd cannot parse (3.5.1, measured): a warning, then exit 1. Final too.
        (
            [
                zap(
                    "warn",
                    "failed to verify flags",
                    error='invalid value "lots" for ETCD_MAX_REQUEST_BYTES: parse error',
                )
            ],
            'failed to verify flags: invalid value "lots" for ETCD_MAX_REQUEST_BYTES: parse error',
        ),
        # The same from 3.4.23 without the zap logger (capnslog text, measured).
        (
            [
                '2026-12-07 03:10:36.869093 E | etcdmain: error verifying flags, invalid value "lots" for '
                "ETCD_MAX_REQUEST_BYTES: parse error. See 'etcd --help'."
            ],
            'failed to verify flags: invalid value "lots" for ETCD_MAX_REQUEST_BYTES: parse error',
        ),
        # Not JSON, JSON that is no object, nothing at all.
        (["{not json", "[1, 2]", "plain text"], None),
        ([], None),
    ],
)
def test_the_reason_is_etcds_last_fatal_line(lines, reason):
    assert etcd_journal.fatal(lines) == reason


def test_a_reason_is_one_bounded_line():
    got = etcd_journal.fatal([zap("fatal", "x", error="e\n" * 400)])
    assert "\n" not in got and len(got) <= etcd_journal.LIMIT


@pytest.mark.parametrize("unit", ["", "etcd; reboot", "../etcd", "etcd service", None, 7])
def test_a_unit_name_is_checked_before_any_command(unit):
    with pytest.raises(ValueError):
        etcd_journal.last_run_fatal(unit)


def entry(run, message):
    return json.dumps({"_SYSTEMD_INVOCATION_ID": run, "MESSAGE": message})


A, B, C = "a" * 32, "b" * 32, "c" * 32


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        # A crash loop read while its newest run has only just started: the run before counts.
        (
            [
                entry(A, zap("fatal", "old", error="x")),
                entry(B, zap("fatal", "discovery failed", error="wal: y")),
                entry(C, zap("info", "starting an etcd server")),
            ],
            "discovery failed: wal: y",
        ),
        # The newest run's own reason wins over the one before.
        ([entry(B, zap("fatal", "first", error="x")), entry(C, zap("fatal", "second", error="y"))], "second: y"),
        # A fatal line three runs ago is history, not why the member is down now.
        (
            [entry(A, zap("fatal", "old", error="x")), entry(B, zap("info", "ready")), entry(C, zap("info", "ready"))],
            None,
        ),
        # systemd's own lines about the unit (no invocation field, no JSON message) are no reason.
        ([json.dumps({"MESSAGE": "etcd.service: Main process exited"}), "not json", "[]"], None),
    ],
)
def test_the_reason_is_from_the_last_two_runs(entries, reason):
    assert etcd_journal.latest_fatal(entries) == reason


class FakeUnit:
    """systemd's NRestarts and the journal's reason, as a crash loop moves them on."""

    def __init__(self, monkeypatch, reason="discovery failed: wal: max entry size limit exceeded"):
        self.count, self.now, self.asked = 5, 100.0, 0
        monkeypatch.setattr(etcd_journal, "restarts", self._restarts)
        monkeypatch.setattr(etcd_journal, "last_run_fatal", lambda unit: reason)

    def _restarts(self, unit):
        self.asked += 1
        return self.count


def test_a_crash_loop_is_seen_after_two_restarts_and_at_most_once_a_second(monkeypatch):
    unit = FakeUnit(monkeypatch)
    watch = etcd_journal.CrashWatch("etcd", clock=lambda: unit.now)
    assert watch() is None and unit.asked == 1  # before the first second: not even asked
    unit.now += 1.0
    unit.count += 1  # one restart since the watch began: a slow start may still serve
    assert watch() is None and unit.asked == 2
    unit.now += 0.5
    unit.count += 1
    assert watch() is None and unit.asked == 2  # within the second: systemctl not asked
    unit.now += 0.5
    assert watch() == "discovery failed: wal: max entry size limit exceeded" == watch.seen


def test_restarts_without_a_reason_keep_the_wait_going(monkeypatch):
    unit = FakeUnit(monkeypatch, reason=None)
    watch = etcd_journal.CrashWatch("etcd", clock=lambda: unit.now)
    unit.count += 3
    unit.now += 1.0
    assert watch() is None  # the caller waits on to its timeout
