"""Which line of etcd's log is the reason it stopped (pure; the lab's garbage-WAL test in
test_formula reads it from a real journal)."""

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
