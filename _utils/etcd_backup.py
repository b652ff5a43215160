"""Scheduled backups: the rules, pure (each with a table-driven unit test).

Every member runs the backup job (``etcd_backup.scheduled``) every ``check_seconds``; the
cluster takes at most one snapshot per interval (a *slot*, ``floor(time / interval)``),
claimed in etcd by the first member whose turn it is. ``turn`` says whose turn it is,
``prune`` what retention deletes, ``findings`` what the health report says about the
newest verified off-node copy, ``validate`` the pillar rules of ``etcd:backup``.
"""

import re
import time

# A snapshot's file name: <cluster>-<UTC time>-r<revision>.db[.gz]. The master accepts a
# pushed file only under a name of this shape (it becomes a path there).
FILE = re.compile(
    r"^(?P<cluster>[A-Za-z0-9][A-Za-z0-9._-]{0,62})-(?P<when>\d{8}T\d{6}Z)-r(?P<rev>\d{1,20})\.db(\.gz)?$"
)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # a restored cluster's token (etcd_names.NAME)


def file_name(cluster, when, revision, compressed):
    """The snapshot's name: sortable by time, unique per cluster and revision."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"{cluster}-{stamp}-r{int(revision)}.db" + (".gz" if compressed else "")


def slot(now, interval):
    return int(now // interval)


def check_seconds(interval):
    """How often each member's job looks: four times per interval (so a failed claim is
    retried by another member within the same slot), never more than every 10 s."""
    return max(10, int(interval) // 4)


def leader_waits(interval):
    """Seconds into a slot before the leader takes it: all but its last check period, so
    that every follower has looked at least once (three times at interval = 4 checks),
    and the leader still looks once before the slot ends (a share of the interval would
    fall between two of its looks when the interval is under 4 check periods)."""
    return int(interval) - check_seconds(interval)


def turn(done, claimed, am_leader, healthy_followers, elapsed, interval, failed_here=False):
    """What this member's job does now, `elapsed` seconds into the current slot:

    - ``done``: the slot has its verified snapshot;
    - ``busy``: another member holds the slot's claim (its lease ends if it dies);
    - ``tried``: this member's snapshot failed in this slot (``failed_here``): another
      member takes it, and this one does not hold the claim again to fail once more (a
      claim held by a failing follower in the leader's only look lost the slot);
    - ``defer``: this member is the leader, a healthy follower that has not failed in this
      slot can take it (``healthy_followers`` leaves out those that have), and the slot is
      not yet in its last check period (a snapshot costs the leader the most);
    - ``claim``: take the claim and snapshot. A follower whose snapshot fails records that
      and frees the claim, so another follower, or in the end the leader, takes the slot.
    """
    if done:
        return "done"
    if claimed:
        return "busy"
    if failed_here:
        return "tried"
    if am_leader and healthy_followers and elapsed < leader_waits(interval):
        return "defer"
    return "claim"


def prune(entries, keep, max_age_days, now):
    """Names to delete: beyond the newest `keep`, or older than `max_age_days` (0: no age
    limit). The newest verified copy is never deleted, whatever its age, so a cluster whose
    backups stopped still has its last one. `entries`: [{"name", "time"}]."""
    ordered = sorted(entries, key=lambda e: (e["time"], e["name"]), reverse=True)
    gone = []
    for index, entry in enumerate(ordered):
        too_many = index >= keep
        too_old = bool(max_age_days) and now - entry["time"] > max_age_days * 86400
        if index > 0 and (too_many or too_old):
            gone.append(entry["name"])
    return gone


def max_age(settings):
    """Seconds after which the newest verified off-node copy is stale: pillar
    ``backup:max_age`` or two intervals."""
    b = settings["backup"]
    return b.get("max_age") or 2 * b["interval"]


def findings(settings, latest, since, now):
    """Reasons for the health report about backups (degraded, never blocking a change).
    `latest`: the record of the newest verified off-node copy ({time, name, member,
    revision}) or None; `since`: when this cluster's backup job first ran, or None."""
    b = settings.get("backup") or {}
    if not b.get("schedule"):
        return []
    limit = max_age(settings)
    if latest and isinstance(latest.get("time"), (int, float)):
        age = now - latest["time"]
        if age > limit:
            return [
                _stale(
                    f"the newest verified off-node backup ({latest.get('name')}) is {_dur(age)} old (> {_dur(limit)})"
                )
            ]
        return []
    if since and now - since > limit:
        return [_stale(f"no verified off-node backup since backups were scheduled {_dur(now - since)} ago")]
    return []


def _stale(text):
    return {"code": "backup_stale", "member": None, "level": "degraded", "text": text}


def _dur(seconds):
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def validate(settings, findings_):
    """The rules of `etcd:backup` (`findings_` is etcd_validate.Findings)."""
    b = findings_.section(settings, "backup")
    if b is None:
        return
    findings_.booleans("backup", b, ("schedule", "enabled", "compress", "push"))
    rules = (
        ("interval", 20, 7 * 86400, "seconds between snapshots, e.g. 3600"),
        ("splay", 0, 3600, "seconds of random delay of each check, e.g. 10"),
        ("keep", 1, 1000, "snapshots kept on the member that took them, e.g. 3"),
        ("max_age_days", 0, 3650, "days a snapshot is kept on the member (0: no limit), e.g. 7"),
        ("store_keep", 1, 100000, "verified copies kept on the master per cluster, e.g. 48"),
        ("store_max_age_days", 0, 3650, "days a copy is kept on the master (0: no limit), e.g. 30"),
        ("timeout", 10, 86400, "seconds a snapshot and its copy may take, e.g. 600"),
    )
    findings_.wholes("backup", b, rules)
    age = b.get("max_age")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int) or age < 60):
        findings_.error(
            "backup:max_age", f"must be null or at least 60 seconds, not {age!r}", "e.g. 7200 (null: 2 x interval)"
        )
    interval, splay = b.get("interval"), b.get("splay")
    if isinstance(interval, int) and isinstance(splay, int) and splay >= check_seconds(interval):
        findings_.error(
            "backup:splay",
            f"splay {splay} s is not under the check period {check_seconds(interval)} s (interval / 4)",
            "use a smaller splay",
        )
    if b.get("push") is False and b.get("schedule"):
        findings_.warn(
            "backup:push",
            "snapshots stay on the members: a lost node takes its backups with it",
            "set `etcd:backup:push: true` and let the master receive them (README: Backups)",
        )
