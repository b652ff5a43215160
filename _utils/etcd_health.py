"""The cluster health report: gather facts through the JSON gateway, then judge them.

`gather` makes the requests (all in parallel, each bounded by the client's timeout): per
started member `/health` and `/v3/maintenance/status`; once `/v3/cluster/member/list`,
the alarm list, `/version` and the local member's `/metrics`. `assess` is pure: it turns
those facts and the settings into a verdict (ok / degraded / critical) with reasons,
each a machine-readable code, the member it concerns and a sentence.
"""

import concurrent.futures
import json
import math
import re
import time

import etcd_backup
import etcd_client
import etcd_keys
import etcd_membership
import etcd_metrics
import etcd_topology

VERDICTS = ("ok", "degraded", "critical")
ERROR = "error"  # the check itself failed: nothing is known about the cluster
# What may stand in an event tag or a cache key; anything else is reported as "unknown".
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CRITICAL_ALARMS = ("NOSPACE", "CORRUPT")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LE = re.compile(r'le="([^"]+)"')
METRICS = (
    "etcd_server_quota_backend_bytes",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_server_has_leader",
)


def parse_metrics(text, wanted=METRICS):
    """Prometheus text → {name: value} for plain samples, {name_bucket: [(le, count)]}."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#" or not line.startswith(wanted):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        if name.endswith("_bucket"):
            le = _LE.search(labels or "")
            if le:
                out.setdefault(name, []).append((float(le.group(1)), number))
        else:
            out[name] = number
    return out


def histogram(metrics, name):
    """Count, mean and the p99 upper bound (ms) of a histogram since the process started."""
    count = metrics.get(f"{name}_count", 0)
    if not count:
        return {"count": 0, "mean_ms": None, "p99_ms": None}
    mean = metrics.get(f"{name}_sum", 0) / count * 1000
    p99 = None
    for le, cumulative in sorted(metrics.get(f"{name}_bucket", [])):
        if cumulative >= 0.99 * count:
            p99 = None if math.isinf(le) else le * 1000
            break
    return {"count": int(count), "mean_ms": round(mean, 3), "p99_ms": p99}


def membership_findings(settings, listing):
    """The live member list against pillar: what is missing, extra, unstarted or wrong."""
    findings = []
    live = listing["members"]
    by_peer = {u: m for m in live for u in m["peer_urls"]}
    matched = set()
    for name in settings["members"]:
        want_peer = etcd_topology.peer_url(settings, name)
        want_client = etcd_topology.client_url(settings, name)
        m = next((x for x in live if x["name"] == name), None) or by_peer.get(want_peer)
        if m is None:
            findings.append(_reason("member_missing", name, f"{name} is in pillar but not a member of the cluster"))
            continue
        matched.add(m["id"])
        if not m["name"]:
            findings.append(_reason("member_unstarted", name, f"{name} was added but has never started"))
        elif m["name"] != name:
            findings.append(_reason("member_name_mismatch", name, f"{want_peer} is member {m['name']}, not {name}"))
        if m["peer_urls"] != [want_peer]:
            findings.append(
                _reason("peer_urls_mismatch", name, f"{name} has peer URLs {m['peer_urls']}, pillar wants {want_peer}")
            )
        if m["name"] and m["client_urls"] != [want_client]:
            findings.append(
                _reason(
                    "client_urls_mismatch",
                    name,
                    f"{name} advertises {m['client_urls']}, pillar wants {want_client}",
                )
            )
        if m["is_learner"]:
            findings.append(_reason("learner_pending", name, f"{name} is a learner, not yet promoted"))
    for m in live:
        if m["id"] not in matched:
            label = m["name"] or etcd_client.member_hex(m["id"])
            findings.append(_reason("member_extra", label, f"member {label} ({m['peer_urls']}) is not in pillar"))
    return findings


def _reason(code, member, text, level="degraded"):
    return {"code": code, "member": member, "level": level, "text": text}


def gather(client, settings, me):
    """Every fact the report needs, in one parallel wave; never raises.

    One thread per member endpoint, its requests in a row on one kept-alive connection:
    with TLS a handshake per member, not per request. This member's requests go to its
    local endpoint; only members the list names at unexpected URLs cost a second wave.
    """
    started = time.monotonic()
    local = etcd_topology.local_endpoint(settings, me) if me in settings["members"] else None
    mine = etcd_topology.client_url(settings, me) if local else None
    facts = {"local": me if local else None, "errors": []}
    chains = {}
    if local:
        chains[local] = [
            ("listing", client.member_list, (local,)),
            ("alarms", client.alarms, (local,)),
            ("metrics", _metrics, (client, etcd_metrics.local_url(settings, me), local)),
            ("version", client.version, (local,)),
            (("status", mine), client.status, (local,)),
            (("health", mine), client.health, (local,)),
            ("backup_latest", client.get, (etcd_keys.backup_latest(settings["cluster"]["name"]), local)),
            ("backup_since", client.get, (etcd_keys.backup_since(settings["cluster"]["name"]), local)),
        ]
    for url in (etcd_topology.client_url(settings, n) for n in settings["members"]):
        if url != mine:
            chains[url] = [(("status", url), client.status, (url,)), (("health", url), client.health, (url,))]
    results = _run_chains(client, chains)
    listing = results.pop("listing", None)
    if isinstance(listing, etcd_client.EtcdError):
        # This member's etcd is down (stopped, crash-looping): the report that matters
        # most then, so ask the others instead of failing the check.
        facts["errors"].append(f"listing: {listing}")
        listing = None
    if listing is None:
        try:
            listing = client.member_list(None)  # this member is down: ask the others
        except etcd_client.EtcdError as exc:
            facts["errors"].append(f"member list: {exc}")
    if not local:
        results["alarms"] = _one(facts, "alarms", client.alarms, None)
    if listing is not None:
        extra = [m["client_urls"][0] for m in listing["members"] if m["client_urls"]]
        extra = [u for u in extra if ("status", u) not in results]
        results.update(
            _run_chains(
                client, {u: [(("status", u), client.status, (u,)), (("health", u), client.health, (u,))] for u in extra}
            )
        )
    for key, value in list(results.items()):
        if isinstance(value, etcd_client.EtcdError):
            facts["errors"].append(f"{key if isinstance(key, str) else ' '.join(key)}: {value}")
            results[key] = None
    facts["listing"] = listing
    facts["members"] = {}
    for m in (listing or {}).get("members", []):
        url = (m["client_urls"] or [None])[0]
        facts["members"][m["id"]] = {"status": results.get(("status", url)), "health": results.get(("health", url))}
    facts["alarms"] = results.get("alarms") or []
    facts["metrics"] = parse_metrics(results.get("metrics") or "")
    facts["version"] = results.get("version") or {}
    facts["backup"] = {"latest": _record(results.get("backup_latest")), "since": _record(results.get("backup_since"))}
    facts["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return facts


def _record(value):
    """A JSON record the formula keeps in etcd, as a dict, or None. Any client with a
    certificate can write these keys: a value that is not such a record is ignored."""
    try:
        record = json.loads(value) if value else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _metrics(client, listener, local):
    """The local member's metrics: from its metrics listener (plain http, no TLS handshake)
    when the pillar turns one on, else, or while the member has not restarted with it yet
    (the listener comes with a guarded restart), from its client URL."""
    if listener:
        try:
            return client.metrics(listener, max(METRICS) + "~")
        except etcd_client.EtcdError:
            pass
    return client.metrics(local, max(METRICS) + "~")


def _run_chains(client, chains):
    """{key: result or EtcdError}: each endpoint's calls in a row, endpoints in parallel."""
    if not chains:
        return {}

    def run(calls):
        out = {}
        for key, fn, args in calls:
            try:
                out[key] = fn(*args)
            except etcd_client.EtcdError as exc:
                out[key] = exc
        return out

    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(chains)) as pool:
        for part in pool.map(run, chains.values()):
            results.update(part)
    return results


def _one(facts, key, fn, *args):
    try:
        return fn(*args)
    except etcd_client.EtcdError as exc:
        facts["errors"].append(f"{key}: {exc}")
        return None


# etcd preallocates each WAL segment at 64 MiB: with less free on the data dir's
# filesystem the next segment cannot be made and etcd exits ("no space left on device")
# long before its NOSPACE alarm, which only guards the quota, could help.
DISK_FULL_BYTES = 64 * 1024 * 1024


def disk_findings(member, disk):
    """The data dir's filesystem as a reason (pure): `disk` is {"path", "free_bytes",
    "total_bytes"} read on the member, None when it could not be read."""
    if not isinstance(disk, dict) or not isinstance(disk.get("free_bytes"), int):
        return []
    free = disk["free_bytes"]
    if free >= DISK_FULL_BYTES:
        return []
    text = (
        f"{disk.get('path')} has {free >> 20} MiB free (< {DISK_FULL_BYTES >> 20} MiB, one WAL segment): "
        "etcd stops with 'no space left on device'; grow the filesystem or move the data dir (README: Reliability)"
    )
    return [_reason("disk_full", member, text, "critical")]


def assess(facts, settings, certificates=None, disk=None):  # noqa: PLR0912, PLR0915 (the verdict table, one rule per reason code)
    """The report: members, leader, quota, alarms, versions, findings and the verdict.
    `certificates` and `disk` are what the member read locally (they count even when no
    member answers)."""
    h = settings["health"]
    reasons = disk_findings(facts.get("local"), disk)
    report = {
        "cluster": settings["cluster"]["name"],
        "local": facts.get("local"),
        "duration_ms": facts.get("duration_ms"),
        "errors": facts.get("errors", []),
        "certificates": certificates or {},
        "disk": disk,
    }
    listing = facts.get("listing")
    if listing is None:
        reasons.append(_reason("unreachable", None, "no member answers a member-list request", "critical"))
        return _verdict(report, reasons, members=[])

    metrics = facts.get("metrics") or {}
    quota = metrics.get("etcd_server_quota_backend_bytes") or settings["tuning"]["quota_backend_bytes"]
    rows, voters, serving_voters, leaders, cluster_ids = [], 0, 0, set(), set()
    # /health says false under any alarm, but a NOSPACE cluster still serves reads and
    # deletes: then a member that answers status and follows a leader counts as serving.
    nospace = any(a["alarm"] == "NOSPACE" for a in facts.get("alarms") or [])
    for m in listing["members"]:
        got = facts["members"].get(m["id"], {})
        st = got.get("status") or {}
        row = {
            "name": m["name"] or etcd_client.member_hex(m["id"]),
            "id": etcd_client.member_hex(m["id"]),
            "endpoint": (m["client_urls"] or [None])[0],
            "started": bool(m["name"]),
            "learner": m["is_learner"],
            "serving": bool(got.get("health")) or (nospace and bool(st.get("leader"))),
            "answers": bool(st),
            "leader": False,
            "version": st.get("version"),
            "raft_term": st.get("raft_term"),
            "raft_index": st.get("raft_index"),
            "applied_index": st.get("raft_applied_index"),
            "db_size": st.get("db_size"),
            "db_in_use": st.get("db_size_in_use"),
            "db_pct": round(100.0 * st["db_size"] / quota, 1) if st and quota else None,
            # In use vs size: what a defragmentation would give back after a compaction.
            "db_in_use_pct": round(100.0 * st["db_size_in_use"] / quota, 1) if st and quota else None,
            "lag": None,
        }
        if st:
            cluster_ids.add(st["cluster_id"])
            if st["leader"]:
                leaders.add(st["leader"])
        if not m["is_learner"]:
            voters += 1
            serving_voters += row["serving"]
        if row["started"] and not row["serving"]:
            what = "does not answer" if not st else "answers but does not serve (no leader or no quorum)"
            reasons.append(_reason("member_down", row["name"], f"{row['name']} {what}"))
        rows.append(row)

    leader_id = next(iter(leaders)) if len(leaders) == 1 else None
    leader = next((r for r in rows if r["id"] == etcd_client.member_hex(leader_id or 0)), None)
    if leader:
        leader["leader"] = True
        for r in rows:
            if r["raft_index"] is not None and leader["raft_index"] is not None:
                r["lag"] = max(0, leader["raft_index"] - r["raft_index"])
                if r["lag"] > h["max_lag"]:
                    reasons.append(_reason("raft_lag", r["name"], f"{r['name']} is {r['lag']} entries behind"))
    quorum = etcd_membership.quorum(voters)
    if serving_voters < quorum:
        reasons.append(
            _reason(
                "no_quorum", None, f"{serving_voters} of {voters} voting members serve, quorum is {quorum}", "critical"
            )
        )
    if not leader:
        reasons.append(_reason("no_leader", None, "the members agree on no leader", "critical"))
    if len(cluster_ids) > 1:
        reasons.append(_reason("cluster_id_split", None, f"members report {len(cluster_ids)} cluster IDs", "critical"))

    alarms = []
    for a in facts.get("alarms") or []:
        owner = next((r["name"] for r in rows if r["id"] == etcd_client.member_hex(a["member_id"])), None)
        alarms.append({"alarm": a["alarm"], "member": owner or etcd_client.member_hex(a["member_id"])})
        level = "critical" if a["alarm"] in CRITICAL_ALARMS else "degraded"
        reasons.append(_reason(f"alarm_{a['alarm'].lower()}", alarms[-1]["member"], f"alarm {a['alarm']}", level))

    for r in rows:
        if r["db_pct"] is None:
            continue
        if r["db_pct"] >= h["quota_critical_pct"]:
            reasons.append(
                _reason("quota_critical", r["name"], f"{r['name']} DB at {r['db_pct']}% of quota", "critical")
            )
        elif r["db_pct"] >= h["quota_warning_pct"]:
            reasons.append(_reason("quota_high", r["name"], f"{r['name']} DB at {r['db_pct']}% of quota"))

    versions = sorted({r["version"] for r in rows if r["version"]})
    if len(versions) > 1:
        reasons.append(_reason("version_skew", None, f"members run {', '.join(versions)}"))

    reasons += membership_findings(settings, listing)

    wal = histogram(metrics, "etcd_disk_wal_fsync_duration_seconds")
    if wal["p99_ms"] is not None and wal["p99_ms"] > h["wal_fsync_p99_ms"]:
        reasons.append(
            _reason(
                "slow_disk",
                facts.get("local"),
                f"WAL fsync p99 is at most {wal['p99_ms']} ms (>{h['wal_fsync_p99_ms']})",
            )
        )
    if not settings.get("tls_chosen", True):
        reasons.append(
            _reason(
                "plain_http_implicit",
                facts.get("local"),
                "plain HTTP without client authentication because etcd:tls:enabled is not set: "
                "set it (false keeps plain HTTP, true turns TLS on)",
            )
        )
    for path, cert in (certificates or {}).items():
        days = cert.get("days_left")
        if days is not None and days < 0:
            reasons.append(_reason("cert_expired", facts.get("local"), f"{path} expired", "critical"))
        elif days is not None and days < h["cert_days"]:
            reasons.append(_reason("cert_expiring", facts.get("local"), f"{path} expires in {days} days"))
        if cert.get("not_yet_valid"):
            text = f"{path} is not valid for another {cert['starts_in_s']} s: peers and clients refuse it"
            reasons.append(_reason("cert_not_yet_valid", facts.get("local"), text, "critical"))

    backup = facts.get("backup") or {}
    since = (backup.get("since") or {}).get("time")
    reasons += etcd_backup.findings(
        settings, backup.get("latest"), since if isinstance(since, (int, float)) else None, time.time()
    )

    report.update(
        backup=_backup_summary(backup.get("latest")),
        cluster_id=etcd_client.member_hex(listing["cluster_id"]),
        leader=leader["name"] if leader else None,
        raft_term=leader["raft_term"] if leader else None,
        quota_bytes=int(quota),
        alarms=alarms,
        versions={"members": versions, "cluster": facts.get("version", {}).get("etcdcluster")},
        quorum={"voters": voters, "serving": serving_voters, "needed": quorum},
        wal_fsync=wal,
    )
    return _verdict(report, reasons, rows)


def _backup_summary(latest):
    """The newest verified off-node copy as the report shows it (typed fields only)."""
    if not latest or not isinstance(latest.get("time"), (int, float)):
        return None
    name = latest.get("name")
    return {
        "name": name if isinstance(name, str) and etcd_backup.FILE.match(name) else None,
        "time": latest["time"],
        "member": latest.get("member") if isinstance(latest.get("member"), str) else None,
        "revision": latest.get("revision") if isinstance(latest.get("revision"), int) else None,
    }


# The reasons that stop a guarded change (restart, join, removal): the cluster as a whole
# (quorum, one leader, one cluster ID, any alarm) and every member the change counts on
# (missing, never started, down, a learner). Not a slow disk, a quota warning, an
# expiring certificate, URLs that differ from pillar or a member pillar no longer names:
# those are reported, and a guarded restart is often how they get fixed.
GATE = frozenset(
    {
        "unreachable",
        "no_quorum",
        "no_leader",
        "cluster_id_split",
        "member_down",
        "member_missing",
        "member_unstarted",
        "member_name_mismatch",
        "learner_pending",
    }
)


def without_minion(reasons, announced, cluster):
    """The pillar members the gate waits for in vain: missing from the cluster, and no
    minion of that name has announced, in the mine, that it applies this site's formula
    (etcd_cluster.announce, the formula's first state). Waiting cannot add them: only an
    apply on that minion does. `announced`: mine.get's answer, {minion: {"cluster": ...}}."""
    missing = sorted({r["member"] for r in reasons if r["code"] == "member_missing" and r.get("member")})
    return [
        name
        for name in missing
        if not (isinstance(announced.get(name), dict) and announced[name].get("cluster") == cluster)
    ]


def blocking(report):
    """The reasons of `report` that stop a guarded change (GATE), a learner that pillar
    does not name included (a join in progress holds the cluster as much as any)."""
    out = [r for r in report["reasons"] if r["code"] in GATE or r["code"].startswith("alarm_")]
    named = {r["member"] for r in out if r["code"] == "learner_pending"}
    out += [
        _reason("learner_pending", m["name"], f"{m['name']} is a learner")
        for m in report["members"]
        if m["learner"] and m["name"] not in named
    ]
    return out


def electing(report):
    """Whether a critical report may be a leader election in progress: too few members
    serve (or no agreed leader), yet a quorum of the voting members answer and agree on
    one cluster. A crashed leader leaves its followers without one for up to two election
    timeouts; the check looks again before it calls that critical."""
    codes = {r["code"] for r in report.get("reasons", [])}
    if not codes & {"no_leader", "no_quorum"} or codes & {"cluster_id_split", "unreachable"}:
        return False
    q = report.get("quorum") or {}
    answering = sum(1 for m in report.get("members", []) if m["answers"] and not m["learner"])
    return answering >= q.get("needed", 1)


def _verdict(report, reasons, members):
    levels = {r["level"] for r in reasons}
    report["verdict"] = "critical" if "critical" in levels else "degraded" if levels else "ok"
    report["reasons"] = reasons
    report["members"] = members
    report["time"] = time.time()
    return report


def error_report(exc, settings, minion):
    """The report of a health check that failed with `exc` (pure): verdict ``error``,
    the exception's type and message, and the cluster's name when the settings (merged,
    or the raw pillar when merging failed) hold a well-formed one."""
    cluster = settings.get("cluster") if isinstance(settings, dict) else None
    cluster = cluster.get("name") if isinstance(cluster, dict) else None
    if not isinstance(cluster, str) or not CLUSTER_NAME.match(cluster):
        cluster = "unknown"
    text = f"{type(exc).__name__}: {exc}"[:500]
    return {
        "cluster": cluster,
        "minion": minion,
        "verdict": ERROR,
        "error": text,
        "reasons": [
            {"code": "check_failed", "member": minion, "level": ERROR, "text": f"the health check failed: {text}"}
        ],
        "members": [],
        "time": time.time(),
    }


def listing_of(report):
    """A health report's member list in the shape of the live list (``member_list``):
    integer IDs, names, client URLs of started members, learner flags; and ``serving``,
    the IDs that answered. Entries that are not well formed are skipped."""
    members, serving = [], set()
    for m in report.get("members") or []:
        try:
            ident = int(str(m["id"]), 16)
        except (KeyError, TypeError, ValueError):
            continue
        started = bool(m.get("started"))
        endpoint = m.get("endpoint") if isinstance(m.get("endpoint"), str) else None
        members.append(
            {
                "id": ident,
                "name": m.get("name") if isinstance(m.get("name"), str) else "",
                "peer_urls": [],
                "client_urls": [endpoint] if started and endpoint else [],
                "is_learner": bool(m.get("learner")),
            }
        )
        if m.get("serving"):
            serving.add(ident)
    return {"members": members, "serving": sorted(serving)}
