"""Maintenance of a live cluster, the rules (pure, table-tested): which members a
defragmentation run visits and in what order, and what a NOSPACE alarm allows.

Defragmentation rewrites a member's database file and blocks that member meanwhile, so
a run visits one member at a time (under the cluster lock), followers first; the leader
hands leadership over before its own turn. It is worth it only when the file is mostly
free space: when the share in use is below `defrag_in_use_pct` and the space it would
give back is at least `defrag_min_free_mib` (a 60 KiB file half free is not worth a
blocked member: etcd's own defrag tools use both a ratio and a size).
"""


def in_use_pct(status):
    size = status.get("db_size") or 0
    return round(100.0 * (status.get("db_size_in_use") or 0) / size, 1) if size else 100.0


def free_bytes(status):
    return max(0, (status.get("db_size") or 0) - (status.get("db_size_in_use") or 0))


def defrag_order(rows, threshold_pct, force=False, min_free=0):
    """Names to defragment, followers first, the leader last. `rows`: [{"name", "leader",
    "serving", "status"}]; a member that does not serve is skipped (it is not blocked by a
    defragmentation it cannot answer, and the health gate stops the run first). Without
    `force`, a member is due when less than `threshold_pct` of its file is in use and at
    least `min_free` bytes would be given back."""

    def worth_it(status):
        return in_use_pct(status) < threshold_pct and free_bytes(status) >= min_free

    due = [r for r in rows if r["serving"] and (force or worth_it(r["status"]))]
    return [r["name"] for r in sorted(due, key=lambda r: (r["leader"], r["name"]))]


def nospace_clearer(rows):
    """The member that clears a NOSPACE alarm: the first serving member by name. Under
    NOSPACE etcd refuses new leases, so the cluster lock cannot be taken; this keeps the
    members' jobs from defragmenting at once without it."""
    serving = sorted(r["name"] for r in rows if r["serving"])
    return serving[0] if serving else None


def disarm_verdict(db_sizes, quota, margin_pct):
    """After compaction and defragmentation: None when every member's database is below
    the quota by `margin_pct`, so that the NOSPACE alarm may be disarmed without the next
    writes raising it again; else why not (it stays, and the run reports critical)."""
    limit = quota * (100 - margin_pct) / 100.0
    over = {name: size for name, size in db_sizes.items() if size is None or size >= limit}
    if not over:
        return None
    worst = max(over, key=lambda n: over[n] or 0)
    return (
        f"{worst}'s database is {_mib(over[worst])} after compaction and defragmentation, above "
        f"{100 - margin_pct}% of the {_mib(quota)} quota: the data itself is too large; delete keys or "
        "raise etcd:tuning:quota_backend_bytes, then disarm (README: Alarms)"
    )


def _mib(size):
    return "unknown" if size is None else f"{size / 1024**2:.1f} MiB"


def validate(settings, findings):
    m = findings.section(settings, "maintenance")
    if m is None:
        return
    findings.booleans("maintenance", m, ("schedule", "enabled", "disarm_nospace"))
    rules = (
        ("interval", 10, 86400, "seconds between the maintenance job's looks, e.g. 300"),
        ("defrag_interval", 60, 30 * 86400, "seconds between defragmentation runs, e.g. 86400"),
        ("defrag_in_use_pct", 1, 100, "defragment when less than this share of the file is in use, e.g. 50"),
        ("defrag_min_free_mib", 0, 65536, "defragment only when it gives back at least this many MiB, e.g. 64"),
        ("nospace_margin_pct", 1, 90, "disarm NOSPACE only this far below the quota, e.g. 20"),
        ("defrag_timeout", 10, 3600, "seconds one member's defragmentation may take, e.g. 300"),
    )
    findings.wholes("maintenance", m, rules)
