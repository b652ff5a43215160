"""The health of the cluster as this member sees it: the gate of every guarded change
(``healthy``) and the report the scheduler sends to the master (``health``). Both are the
one verdict of ``_utils/etcd_health.py``: ``healthy`` is that report without the reasons
that do not block a change (a slow disk, a quota warning, a certificate to renew).
"""

import json
import logging
import os
import time

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_client, etcd_disk, etcd_health, etcd_journal, etcd_metrics, etcd_mine, etcd_settings, etcd_tls, etcd_topology) = (
    etcd_fresh.load(
        "etcd_client",
        "etcd_disk",
        "etcd_health",
        "etcd_journal",
        "etcd_metrics",
        "etcd_mine",
        "etcd_settings",
        "etcd_tls",
        "etcd_topology",
    )
)

log = logging.getLogger(__name__)

__virtualname__ = "etcd_health"

HEALTH_JOB = "etcd-health"  # the scheduler job salt/etcd/health.sls installs


def __virtual__():
    return __virtualname__


def _settings():
    return __salt__["etcd_cluster.live_settings"]()


def _applied():
    """The settings of the last apply (the scheduled check judges the cluster by what the
    node runs), or this minion's before the first."""
    return __salt__["etcd_cluster.applied_settings"]() or __salt__["etcd_cluster.settings"]()


def healthy():
    """
    Whether a guarded change (restart, join, removal) may go ahead: the health report's
    reasons that block one (``etcd_health.GATE``: no quorum, no agreed leader, two
    cluster IDs, an alarm, a pillar member missing, unstarted, down or a learner, a
    learner anywhere), as ``problems``; ``reasons`` has them with their codes.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_health.healthy
    """
    s = _settings()
    me = __opts__["id"]
    client = etcd_topology.client(s, me)
    report = etcd_health.assess(etcd_health.gather(client, s, me), s)
    blocking = etcd_health.blocking(report)
    return {
        "healthy": not blocking,
        "problems": [r["text"] for r in blocking],
        "reasons": blocking,
        "cluster_id": report.get("cluster_id"),
        "members": sorted(m["name"] for m in report["members"]),
    }


# A new member's minion announces itself at its first state, seconds before the members
# reach a gate when all apply at once; the grace covers a minion that starts late.
ANNOUNCE_GRACE = 15


def wait_healthy(timeout):
    """
    Wait, bounded by ``timeout`` seconds, until ``healthy`` finds nothing that blocks a
    change; its last answer, with ``waited`` (s). It stops early, with
    ``without_minion``, for a pillar member missing from the cluster whose minion never
    announced that it applies the formula: waiting cannot add it. The state
    ``etcd_health.healthy`` and the guarded restart both wait here.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_health.wait_healthy 30
    """
    started = time.monotonic()
    while True:
        report = healthy()
        waited = time.monotonic() - started
        absent = _without_minion(report) if waited >= ANNOUNCE_GRACE else []
        if report["healthy"] or absent or waited > timeout:
            report.update(waited=round(waited, 1), without_minion=absent)
            return report
        time.sleep(0.5)


def without_minion_text(names):
    """Why a gate stopped for pillar members without a minion, and the fix."""
    return (
        f"{', '.join(names)} in etcd:members but no minion of that name applies the formula (none "
        f"announced itself in the mine within {ANNOUNCE_GRACE}s): apply it there (salt {names[0]} "
        "state.apply etcd) or remove it from etcd:members"
    )


def _without_minion(report):
    missing = [r["member"] for r in report["reasons"] if r["code"] == "member_missing"]
    if not missing or __opts__.get("file_client") == "local":
        return []  # masterless: no mine to ask, the timeout decides
    try:
        announced = __salt__["mine.get"](",".join(missing), etcd_mine.ANNOUNCE, tgt_type="list") or {}
    except Exception:  # noqa: BLE001  a master that does not answer: wait as before
        return []
    return etcd_health.without_minion(report["reasons"], announced, _settings()["cluster"]["name"])


def check_membership():
    """
    The live member list against pillar: findings (missing, extra, never started,
    learner, wrong peer or client URLs, name mismatch) and a verdict.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_health.check_membership
    """
    s = _settings()
    listing = etcd_topology.client(s, __opts__["id"]).member_list(None)
    findings = etcd_health.membership_findings(s, listing)
    return {
        "verdict": "ok" if not findings else "mismatch",
        "cluster_id": etcd_client.member_hex(listing["cluster_id"]),
        "findings": findings,
    }


def _health_file(s):
    return os.path.join(s["paths"]["state"], "health.json")


def health(event=False):
    """
    One health report for the local member and the cluster: every member's health,
    the leader, raft term/index and lag, DB size against the quota, alarms, versions,
    membership findings against pillar and the local WAL fsync latency, with a verdict
    (ok / degraded / critical) and reasons. Bounded by ``etcd:health:timeout`` per
    request, all requests in parallel; it reports its own duration.

    event
        Also send the report to the master as ``etcd/<cluster>/health/<verdict>``,
        keep it as this minion's latest (``etcd_health.last_health``) and publish
        that to the mine for ``salt-run etcd.report``. The scheduled job does this.
        A check that fails with an exception then still reports: verdict ``error``,
        the exception in ``error`` (the scheduler keeps no return of its own).

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_health.health
        salt 'etcd*' etcd_health.health event=True
    """
    if not event:
        return _health(_applied())
    s = None
    try:
        s = _applied()
        report = _health(s)
    except Exception as exc:  # the job's only witness: a failure must reach the master
        report = etcd_health.error_report(exc, s or {}, __opts__["id"])
    _publish(s, report)
    return report


def _health(s):
    me = __opts__["id"]
    client = etcd_topology.client(s, me, timeout=s["health"]["timeout"])
    certs, disk = _certificate_days(s), _disk(s)
    report = etcd_health.assess(etcd_health.gather(client, s, me), s, certs, disk)
    if etcd_health.electing(report):
        # Do not page for an election: look again, once a second, for up to two election
        # timeouts (etcd randomises each follower's timeout within that), then judge.
        first, started = report["verdict"], time.monotonic()
        deadline = started + 2 * s["tuning"]["election_timeout"] / 1000 + 1
        while etcd_health.electing(report) and time.monotonic() < deadline:
            time.sleep(1)
            report = etcd_health.assess(etcd_health.gather(client, s, me), s, certs, disk)
        report["rechecked"] = {"first_verdict": first, "after_s": round(time.monotonic() - started, 1)}
    _own_reason(s, report, me)
    report["minion"] = me
    return report


def _own_reason(s, report, me):
    """When this member is down, etcd's own last fatal line goes into its member_down
    reason (a damaged WAL says so; "does not answer" alone sends the operator guessing).
    The journal is read only then."""
    for reason in report.get("reasons", []):
        if reason.get("code") == "member_down" and reason.get("member") == me:
            why = etcd_journal.last_run_fatal(s["service"]["name"])
            if why:
                reason["etcd_error"] = why
                reason["text"] = f"{reason['text']}: etcd exits with: {why}"


def _disk(s):
    """Free space where etcd writes: the data dir, or the nearest parent that exists."""
    path = s["paths"]["data"]
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return {"path": path, "free_bytes": st.f_bavail * st.f_frsize, "total_bytes": st.f_blocks * st.f_frsize}


def _certificate_days(s):
    if not etcd_settings.tls_on(s) or s["tls"]["mode"] not in etcd_settings.TLS_MODES:
        return {}
    out = {}
    for what in etcd_tls.certs(s):
        cert = etcd_tls.load_cert(etcd_settings.tls_path(s, what))
        if cert is None and what in etcd_settings.OPTIONAL_FILES:
            continue  # not issued yet (the next apply does): the calls use the admin pair
        f = etcd_tls.facts(cert) if cert else {"days_left": -1, "starts_in_s": 0, "not_yet_valid": False}
        out[etcd_settings.tls_path(s, what)] = {k: f[k] for k in ("days_left", "starts_in_s", "not_yet_valid")}
    return out


def _publish(s, report):
    path = _health_file(s or etcd_settings.DEFAULTS)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh)
    os.replace(tmp, path)
    textfile = ((s or {}).get("metrics") or {}).get("textfile")
    if textfile:
        try:
            etcd_metrics.write_textfile(textfile, etcd_metrics.textfile(report, report["cluster"], __opts__["id"]))
        except (OSError, ValueError) as exc:  # the event below must still go out
            log.warning("etcd_health: could not write %s: %s", textfile, exc)
    __salt__["event.send"](f"etcd/{report['cluster']}/health/{report['verdict']}", report)
    etcd_mine.send(__opts__, __salt__["event.fire"], "etcd_health", report)


def last_health():
    """
    The latest report the scheduled health check made on this minion (None before the first).

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_health.last_health
    """
    return _last_report(_applied())


def _last_report(s):
    try:
        with open(_health_file(s), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def job():
    """
    The scheduled health check on this minion, as ``salt-run etcd.report`` explains an
    empty mine: whether the ``etcd-health`` job is installed and enabled, its interval,
    and the time, verdict and error of the latest check.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_health.job
    """
    job = (__salt__["schedule.list"](return_yaml=False) or {}).get(HEALTH_JOB)
    s = _applied()
    last = _last_report(s) or {}
    return {
        "cluster": s["cluster"]["name"],
        "scheduled": isinstance(job, dict),
        "enabled": bool(job.get("enabled", True)) if isinstance(job, dict) else None,
        "seconds": job.get("seconds") if isinstance(job, dict) else None,
        "last": {k: last.get(k) for k in ("time", "verdict", "error")} if last else None,
    }


def check_disk(path=None, seconds=10):
    """
    fdatasync latency where ``path`` (default: the data dir, or its nearest existing
    parent) lives, as etcd's hardware guide measures it: sequential 2300-byte writes with
    an fdatasync after each, up to 22 MiB or ``seconds``. Reports p50/p99/max in ms, IOPS,
    samples and whether the full 22 MiB was written; leaves no file behind.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_health.check_disk
        salt etcd1 etcd_health.check_disk /var/lib/etcd seconds=30
    """
    return etcd_disk.measure(path or __salt__["etcd_cluster.settings"]()["paths"]["data"], float(seconds))
