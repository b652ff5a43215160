"""What etcd itself said when it stopped: the last fatal or panic line of the unit's last
run, read from the journal.

etcd (zap logger, both 3.4 and 3.5) logs one JSON object per line; a start that cannot go
on ends with ``"level":"fatal"`` (or a panic) and the cause in ``error``, e.g. "wal: max
entry size limit exceeded" for a damaged WAL. The formula's own messages ("did not serve
within 120s") only guess; this is the member's own reason.
"""

import json
import re
import subprocess
import time

from etcd_names import UNIT  # etcd:service:name is validated against it too

INVOCATION = re.compile(r"^[0-9a-f]{32}$")
LEVELS = ("fatal", "panic", "dpanic")
LIMIT = 300  # a reason goes into state comments and events: one line, bounded
# etcd logs a flag it cannot parse at warn level, then exits 1: as final as a fatal.
FINAL_MESSAGES = ("failed to verify flags",)
# The same from 3.4 without the zap logger (capnslog text).
FLAG_ERROR = re.compile(r"etcdmain: error verifying flags, (.+?)(?:\. See 'etcd --help'\.)?$")


def fatal(lines):
    """The last fatal reason in etcd's log `lines` ("<msg>: <error>"), or None. Pure."""
    found = None
    for raw in lines:
        line = raw.strip()
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and (rec.get("level") in LEVELS or rec.get("msg") in FINAL_MESSAGES):
                msg, err = str(rec.get("msg") or "").strip(), rec.get("error")
                found = f"{msg}: {err}" if err and msg else str(err or msg)
        elif line.startswith("panic: "):  # a Go panic outside the logger
            found = line
        elif FLAG_ERROR.search(line):
            found = f"failed to verify flags: {FLAG_ERROR.search(line).group(1)}"
    if not found:
        return None
    one_line = " ".join(found.split())
    return one_line[:LIMIT]


def last_run_fatal(unit, timeout=5):
    """The fatal reason of `unit`'s last run, or None when it logged none or the journal
    cannot be read. The last two invocations count: in a crash loop the current one may
    have just started and not failed yet (a CI run read it in that moment)."""
    if not isinstance(unit, str) or not UNIT.match(unit):
        raise ValueError(f"not a unit name: {unit!r}")
    try:
        got = subprocess.run(
            ["journalctl", "-u", f"{unit}.service", "-o", "json", "--no-pager", "-n", "2000"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return latest_fatal(got.stdout.splitlines())


def latest_fatal(entries, runs=2):
    """From journal entries (`journalctl -o json` lines, oldest first): the fatal reason of
    the newest of the last `runs` invocations that logged one, or None. Pure."""
    by_run = {}
    for raw in entries:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        run = entry.get("_SYSTEMD_INVOCATION_ID")
        message = entry.get("MESSAGE")
        if isinstance(run, str) and INVOCATION.match(run) and isinstance(message, str):
            by_run.setdefault(run, []).append(message)  # dicts keep the order runs appeared in
    for run in list(by_run)[-runs:][::-1]:
        why = fatal(by_run[run])
        if why:
            return why
    return None


class CrashWatch:
    """A unit's crash loop, seen while waiting for it to serve: `__call__` returns etcd's
    own fatal reason once systemd has restarted the unit `loops` times since the watch
    began and the journal names a reason, else None (also kept in `seen`). etcd's reason
    for such a loop (a damaged WAL, a full disk, a flag it cannot parse) does not change
    by waiting. Looks at most once per `every` s: systemctl costs ~15 ms."""

    def __init__(self, unit, loops=2, every=1.0, clock=time.monotonic):
        self.unit, self.loops, self.every, self.clock = unit, loops, every, clock
        self.first = restarts(unit)
        self.next = clock() + every
        self.seen = None

    def __call__(self):
        now = self.clock()
        if self.seen is None and now >= self.next:
            self.next = now + self.every
            if restarts(self.unit) - self.first >= self.loops:
                self.seen = last_run_fatal(self.unit)
        return self.seen


def restarts(unit, timeout=5):
    """How often systemd has restarted `unit` by itself (NRestarts), or 0 when unknown."""
    if not isinstance(unit, str) or not UNIT.match(unit):
        raise ValueError(f"not a unit name: {unit!r}")
    try:
        out = subprocess.run(
            ["systemctl", "show", "-p", "NRestarts", "--value", unit],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return 0
    return int(out) if out.isdigit() else 0
