"""Master-side views of the etcd clusters that etcd-formula manages.

The scheduled check on every member (``etcd_health.health event=True``) publishes its
latest report to the mine as ``etcd_health`` and sends it as an event
``etcd/<cluster>/health/<verdict>``. ``report`` reads the mine; ``alert`` is what the
example reactor (``salt://etcd/reactor/health.sls``) calls on degraded and critical.
"""

import logging
import re
import time

import salt.cache
import salt.client

log = logging.getLogger(__name__)

__virtualname__ = "etcd"
ALERT_BANK = "etcd/alerts"
# Repeated from the minion side on purpose: runners run on the master, which has no
# minion _utils to import (etcd_health.ERROR, etcd_health.HEALTH_JOB).
ERROR = "error"  # a member's check failed (etcd_health.error_report)
HEALTH_JOB = "etcd-health"
HEALTH_INTERVAL = 60  # etcd:health:interval's default (etcd_settings.DEFAULTS)
# Event and mine data come from minions: a cluster name or minion id is used (cache key,
# tag, log line) only when it matches these (as etcd_names.NAME does on minions) and
# the sender is a member of that cluster by its pillar as the master compiled it.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MINION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def __virtual__():
    return __virtualname__


def _latest_reports(cluster=None):
    mined = __salt__["mine.get"]("*", "etcd_health") or {}
    clusters = {}
    for minion, rep in mined.items():
        if not isinstance(rep, dict) or "verdict" not in rep:
            continue
        if cluster and rep.get("cluster") != cluster:
            continue
        if _trust_refusal(minion, rep.get("cluster")):
            continue  # a report for a cluster its sender is not a member of
        clusters.setdefault(rep.get("cluster"), {})[minion] = rep
    return clusters


def _trust_refusal(minion, cluster):
    """None when `minion` may report on `cluster`, else why not. The master decides from
    its own data: the sender's pillar as the master last compiled it (the minion data
    cache, ``minion_data_cache: true``, Salt's default), never from fields of the report.
    One cache read per report, no pillar compile."""
    if not isinstance(cluster, str) or not NAME.match(cluster):
        return "the cluster name is not a plain name"
    if not isinstance(minion, str) or not MINION.match(minion):
        return "the sender is not a minion id"
    pillar = _cached_pillar(minion)
    etcd = pillar.get("etcd") if isinstance(pillar, dict) else None
    if not isinstance(etcd, dict):
        return f"the master has no etcd pillar cached for {minion}"
    name = (etcd.get("cluster") or {}).get("name") if isinstance(etcd.get("cluster"), dict) else None
    members = etcd.get("members") if isinstance(etcd.get("members"), dict) else {}
    if name != cluster or minion not in members:
        return f"{minion} is not a member of {cluster} by its pillar"
    return None


def _summary(name, by_minion, now):
    # A member whose own check failed (verdict "error") says nothing about the cluster:
    # the cluster is judged by the newest report that judged it, the failures are listed.
    judged = {m: r for m, r in by_minion.items() if r["verdict"] != ERROR} or by_minion
    newest = max(judged.values(), key=lambda r: r.get("time", 0))
    members = []
    for row in newest.get("members", []):
        own = by_minion.get(row["name"], {})
        days = [c.get("days_left") for c in own.get("certificates", {}).values() if c.get("days_left") is not None]
        alarms = [a["alarm"] for a in newest.get("alarms", []) if a.get("member") == row["name"]]
        members.append(
            {
                "name": row["name"],
                "serving": row["serving"],
                "leader": row["leader"],
                "learner": row["learner"],
                "version": row["version"],
                "db_size": row["db_size"],
                "db_pct": row["db_pct"],
                "db_in_use_pct": row.get("db_in_use_pct"),
                "lag": row["lag"],
                "alarms": alarms,
                "cert_days": min(days) if days else None,
                "own_verdict": own.get("verdict"),
                "own_report_age_s": round(now - own["time"]) if own.get("time") else None,
            }
        )
    age = round(now - newest.get("time", now))
    interval = _health_interval(newest.get("minion"))
    return {
        "cluster": name,
        "cluster_id": newest.get("cluster_id"),
        "verdict": newest["verdict"],
        "reported_by": newest.get("minion"),
        "report_age_s": age,
        # No member's check reached the mine for two of its intervals: the verdict is old
        # news (the minions, the schedule or the master's mine are down, not etcd).
        "stale": age > 2 * interval,
        "health_interval": interval,
        "leader": newest.get("leader"),
        "quorum": newest.get("quorum"),
        "versions": newest.get("versions"),
        "alarms": newest.get("alarms", []),
        "reasons": newest.get("reasons", []),
        "members": members,
        "check_errors": [
            {"minion": m, "error": r.get("error"), "age_s": round(now - r.get("time", now))}
            for m, r in sorted(by_minion.items())
            if r["verdict"] == ERROR
        ],
        "last_alert": _cache().fetch(ALERT_BANK, name) or None,
        "backup": _backup_age(newest.get("backup"), now),
    }


def _health_interval(minion):
    """The reporting member's health interval by the pillar the master compiled for it
    (never a field of the report), else the default."""
    pillar = _cached_pillar(minion) if isinstance(minion, str) and MINION.match(minion) else {}
    etcd = pillar.get("etcd") if isinstance(pillar, dict) else None
    health = etcd.get("health") if isinstance(etcd, dict) else None
    interval = health.get("interval") if isinstance(health, dict) else None
    if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
        return HEALTH_INTERVAL
    return interval


def _backup_age(backup, now):
    """The newest verified off-node backup the report names, with its age."""
    if not isinstance(backup, dict) or not isinstance(backup.get("time"), (int, float)):
        return None
    return dict(backup, age_s=round(now - backup["time"]))


def _human(size):
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _table(clusters, no_reports=None):
    if not clusters:
        return "\n".join(["no etcd health reports in the mine yet", *(no_reports or [])])
    lines = []
    for c in clusters:
        q = c.get("quorum") or {}
        verdict = c["verdict"].upper()
        if c.get("stale"):
            verdict = f"STALE (last known {c['verdict']}, {c['report_age_s']} s old, > 2 x {c['health_interval']} s)"
        lines.append(
            f"cluster {c['cluster']} ({c['cluster_id'] or '?'}): {verdict}, leader {c['leader'] or '-'}, "
            f"{q.get('serving', '?')}/{q.get('voters', '?')} voters serving (quorum {q.get('needed', '?')}), "
            f"cluster version {(c.get('versions') or {}).get('cluster') or '-'}, "
            f"report by {c['reported_by']} {c['report_age_s']} s ago"
        )
        b = c.get("backup")
        lines.append(
            f"  newest verified backup: {b['name']} by {b['member']}, revision {b['revision']}, {b['age_s']} s ago"
            if b
            else "  newest verified backup: none recorded"
        )
        head = (
            "MEMBER",
            "SERVING",
            "LEADER",
            "VERSION",
            "DB",
            "DB%",
            "IN USE%",
            "LAG",
            "ALARMS",
            "CERT DAYS",
            "OWN CHECK",
        )
        rows = [head]
        for m in c["members"]:
            rows.append(
                (
                    m["name"] + (" (learner)" if m["learner"] else ""),
                    "yes" if m["serving"] else "NO",
                    "*" if m["leader"] else "",
                    m["version"] or "-",
                    _human(m["db_size"]),
                    "-" if m["db_pct"] is None else f"{m['db_pct']:.1f}",
                    "-" if m.get("db_in_use_pct") is None else f"{m['db_in_use_pct']:.1f}",
                    "-" if m["lag"] is None else str(m["lag"]),
                    ",".join(m["alarms"]) or "-",
                    "-" if m["cert_days"] is None else str(m["cert_days"]),
                    f"{m['own_verdict']} {m['own_report_age_s']} s ago" if m["own_verdict"] else "-",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines += [f"  {r['level']}: [{r['code']}] {r['text']}" for r in c["reasons"]]
        lines += [
            f"  error: {e['minion']}'s own check failed {e['age_s']} s ago: {e['error']}" for e in c["check_errors"]
        ]
        lines.append("")
    return "\n".join(lines).rstrip()


def report(cluster=None):
    """
    Every cluster the master knows, from the members' latest scheduled health reports
    (the mine's ``etcd_health``): verdict, leader, quorum, and per member serving,
    version, DB size and % of quota, raft lag, alarms, certificate days left and the
    age of that member's own last check. A table by default; data with ``--out=json``.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.report
        salt-run etcd.report cluster=storageos --out=json
    """
    now = time.time()
    clusters = [_summary(name, reps, now) for name, reps in sorted(_latest_reports(cluster).items())]
    if __opts__.get("output") in (None, "nested", "txt", "raw"):
        return _table(clusters, None if clusters else _why_no_reports(cluster))
    return {c["cluster"]: c for c in clusters}


def _why_no_reports(cluster=None, timeout=5):
    """Lines saying what the minions know when the mine holds no report: whether each has
    the etcd-health job, and its latest check. Asked only in this case (one short call)."""
    client = salt.client.get_local_client(mopts=__opts__)
    try:
        answers = client.cmd("*", "etcd_health.job", timeout=timeout) or {}
    finally:
        client.destroy()
    lines = []
    for minion, job in sorted(answers.items()):
        if not isinstance(job, dict):  # a minion without the formula's modules
            continue
        if cluster and job.get("cluster") != cluster:
            continue
        last = job.get("last") or {}
        if not job.get("scheduled"):
            what = f"no {HEALTH_JOB} job (state.apply etcd installs it unless etcd:health:schedule is false)"
        elif not job.get("enabled"):
            what = f"the {HEALTH_JOB} job is installed but disabled (etcd:health:enabled)"
        else:
            what = f"the {HEALTH_JOB} job runs every {job.get('seconds')} s"
        if last.get("verdict") == ERROR:
            what += f"; its last check failed: {last.get('error')}"
        elif last:
            what += f"; its last check said {last.get('verdict')} (not in the mine yet)"
        else:
            what += "; it has not reported yet"
        lines.append(f"  {minion}: {what}")
    if not lines:
        lines.append("  no minion answered with etcd-formula's modules: run `salt '*' saltutil.sync_all`")
    return lines


def sender_refusal(minion, cluster):
    """
    Why ``minion`` may not speak for ``cluster`` (a report, an event, a pushed backup),
    or None when it may: judged from the master's own data, the minion's pillar as the
    master last compiled it.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.sender_refusal etcd1 storageos
    """
    return _trust_refusal(minion, cluster)


def cached_pillar(minion):
    """
    The pillar the master last compiled for ``minion`` (for the formula's runners).

    CLI Example:

    .. code-block:: bash

        salt-run etcd.cached_pillar etcd1
    """
    if not isinstance(minion, str) or not MINION.match(minion):
        return {}
    return _cached_pillar(minion)


def backups(cluster, verify=False):
    """
    The verified off-node copies of ``cluster`` in the master's store, newest first:
    time, age, member, revision, keys, size, sha256; ``verify=True`` computes each
    file's sha256 again. A table by default; data with ``--out=json``.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.backups storageos
        salt-run etcd.backups storageos verify=True --out=json
    """
    rows = __salt__["etcd_store.listing"](cluster, verify=verify)
    if __opts__.get("output") not in (None, "nested", "txt", "raw"):
        return rows
    if not rows:
        return f"no backups of {cluster} in the store"
    head = ("TIME (UTC)", "AGE", "MEMBER", "REVISION", "KEYS", "SIZE", "VERIFIED", "S3", "SHA256", "NAME")
    table = [head] + [
        (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["time"] or 0)),
            f"{r['age_s']} s",
            str(r["member"]),
            str(r["revision"]),
            str(r["keys"]),
            _human(r["size"]),
            "yes" if r["verified"] else "NO",
            "yes" if r.get("s3") else "-",
            str(r["sha256"])[:12],
            r["name"],
        )
        for r in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in table)


def backup(cluster, timeout=900):
    """
    Take a backup of ``cluster`` now, on one healthy member (a follower when one is
    healthy), copied to the store: ``etcd_backup.save`` on that member.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.backup storageos
    """
    return _on_a_member(cluster, "etcd_backup.save", [], timeout)


def defrag(cluster, force=False, timeout=3600):
    """
    Defragment ``cluster`` now (``etcd_maintenance.defrag`` on one healthy member, which
    visits the members one at a time under the cluster lock, followers first); only the
    members whose file is mostly free space unless ``force=True``. ``salt-run state.orch
    etcd.orch.defrag`` runs this.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.defrag storageos
        salt-run etcd.defrag storageos force=True
    """
    return _on_a_member(cluster, "etcd_maintenance.defrag", [f"force={force is True}"], timeout)


def _on_a_member(cluster, fun, args, timeout):
    """`fun` on one serving member of `cluster` (followers first, by the mine's latest
    health reports); its return, with ``member``; a retcode when it fails."""
    if not isinstance(cluster, str) or not NAME.match(cluster):
        return _failed(f"{cluster!r} is not a cluster name")
    reports = _latest_reports(cluster).get(cluster)
    if not reports:
        return _failed(f"no health report of {cluster} in the mine: no member to choose")
    summary = _summary(cluster, reports, time.time())
    serving = [m for m in summary["members"] if m["serving"] and not m["learner"] and MINION.match(m["name"])]
    serving.sort(key=lambda m: (m["leader"], m["name"]))  # followers first
    if not serving:
        return _failed(f"no member of {cluster} serves")
    member = serving[0]["name"]
    client = salt.client.get_local_client(mopts=__opts__)
    try:
        got = client.cmd([member], fun, args, tgt_type="list", timeout=timeout) or {}
    finally:
        client.destroy()
    answer = got.get(member)
    if not isinstance(answer, dict):
        return _failed(f"{member} did not answer: {answer!r}")
    __context__["retcode"] = 0 if answer.get("result") else 1
    return dict(answer, member=member)


def _failed(comment):
    __context__["retcode"] = 1
    return {"result": False, "comment": comment}


def _cached_pillar(minion):
    """The pillar the master last compiled for `minion`: bank ``pillar`` (Salt 3008), or
    the older ``minions/<id>`` data."""
    cache = _cache()
    pillar = cache.fetch("pillar", minion)
    if not pillar:
        data = cache.fetch(f"minions/{minion}", "data") or {}
        pillar = data.get("pillar") if isinstance(data, dict) else None
    return pillar or {}


def _cache():
    return salt.cache.factory(__opts__)


def alert(report=None, minion=None, repeat=3600):
    """
    Act on a degraded or critical report (called by the example reactor): log it on the
    master, fire ``etcd/<cluster>/alert`` with the verdict and reasons, and POST it to
    ``etcd_alert_webhook`` when the master's configuration sets one. The same verdict
    with the same reasons is repeated at most every ``repeat`` seconds per cluster.

    CLI Example:

    .. code-block:: bash

        salt-run etcd.alert report='{"cluster": "storageos", "verdict": "degraded", "reasons": []}'
    """
    if not isinstance(report, dict) or "cluster" not in report or "verdict" not in report:
        return {"result": False, "comment": "alert needs a health report (the event's data)"}
    cluster, verdict = report["cluster"], report["verdict"]
    if verdict not in ("ok", "degraded", "critical", ERROR):
        verdict = "unknown"
    # From the reactor, `minion` is the event's id (set by the master); from the CLI, the
    # operator's own call names no sender and only the name is checked.
    refusal = (
        _trust_refusal(minion, cluster)
        if minion is not None
        else (None if isinstance(cluster, str) and NAME.match(cluster) else "the cluster name is not a plain name")
    )
    if refusal:
        log.warning("etcd alert refused (%s): a health report that does not come from a member of its cluster", refusal)
        return {"result": False, "comment": f"refused: {refusal}", "sent": False}
    quiet = __salt__["etcd_store.silenced"](cluster)
    if quiet:
        return {"result": True, "comment": f"{cluster} is silenced for {quiet} s more (a restore)", "sent": False}
    reasons = [
        {"code": r.get("code"), "member": r.get("member"), "level": r.get("level"), "text": str(r.get("text"))[:500]}
        for r in (report.get("reasons") if isinstance(report.get("reasons"), list) else [])
        if isinstance(r, dict)
    ]
    signature = [verdict, sorted(f"{r['code']}:{r['member']}" for r in reasons)]
    cache = _cache()
    last = cache.fetch(ALERT_BANK, cluster) or {}
    now = time.time()
    if last.get("signature") == signature and now - last.get("time", 0) < float(repeat):
        return {"result": True, "comment": f"already alerted {round(now - last['time'])} s ago", "sent": False}
    alert_data = {
        "cluster": cluster,
        "verdict": verdict,
        "reasons": reasons,
        "minion": minion,
        "report_time": report.get("time"),
        "time": now,
        "signature": signature,
    }
    cache.store(ALERT_BANK, cluster, alert_data)
    text = "; ".join(r["text"] for r in reasons) or "no reason given"
    (log.error if verdict in ("critical", ERROR) else log.warning)("etcd cluster %s is %s: %s", cluster, verdict, text)
    __salt__["event.send"](f"etcd/{cluster}/alert", alert_data)
    hook = __opts__.get("etcd_alert_webhook")
    if hook:
        import requests  # a Salt dependency; only needed when a webhook is configured

        try:
            requests.post(hook, json=alert_data, timeout=5)
        except requests.RequestException as exc:
            log.warning("etcd alert webhook %s failed: %s", hook, exc)
    return {"result": True, "comment": f"{cluster} {verdict}: {text}", "sent": True}
