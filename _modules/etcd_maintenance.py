"""Maintenance of a live cluster: staggered defragmentation and alarms.

The ``etcd-maintenance`` job (``salt/etcd/maintenance.sls``) runs ``scheduled`` on every
member. Whatever it does to the cluster it does under the cluster lock (the same lock as
guarded restarts and membership changes, so maintenance never overlaps a roll), one
member at a time, followers first, the leader after handing leadership over, with a
health gate between members. Every action sends ``etcd/<cluster>/maintenance/<what>``.

- NOSPACE: compact to the current revision, defragment every member, and disarm only when
  every database is then below the quota by ``nospace_margin_pct`` (otherwise the alarm
  stays and the run reports critical: disarming would only let the next writes raise it).
- CORRUPT: reported critical, never disarmed automatically.
- Otherwise, once per ``defrag_interval``: defragment the members whose file is less than
  ``defrag_in_use_pct`` in use (what a defragmentation gives back is worth it).
"""

import time

import etcd_fresh

(etcd_actions, etcd_client, etcd_health, etcd_keys, etcd_leader, etcd_lock, etcd_maintenance, etcd_topology) = (
    etcd_fresh.load(
        "etcd_actions",
        "etcd_client",
        "etcd_health",
        "etcd_keys",
        "etcd_leader",
        "etcd_lock",
        "etcd_maintenance",
        "etcd_topology",
    )
)

__virtualname__ = "etcd_maintenance"


def __virtual__():
    return __virtualname__


class Stop(Exception):
    """A run stops between members; the message says why."""


def _applied():
    return __salt__["etcd_cluster.applied_settings"]() or __salt__["etcd_cluster.settings"]()


def _event(s, what, data):
    __salt__["event.send"](f"etcd/{s['cluster']['name']}/maintenance/{what}", dict(data, member=__opts__["id"]))


def _report(s, client):
    return etcd_health.assess(etcd_health.gather(client, s, __opts__["id"]), s)


def scheduled():
    """
    The scheduled maintenance (the ``etcd-maintenance`` job runs it on every member):
    clear a NOSPACE alarm when it can be cleared, report CORRUPT, and once per
    ``etcd:maintenance:defrag_interval`` defragment the members that would give space back.
    Returns what it did, or why nothing.

    CLI Example:

    .. code-block:: bash

        salt 'etcd*' etcd_maintenance.scheduled
    """
    s = _applied()
    m, cluster = s["maintenance"], s["cluster"]["name"]
    client = etcd_topology.client(s, __opts__["id"], timeout=max(2, s["health"]["timeout"]))
    report = _report(s, client)
    alarms = {a["alarm"] for a in report.get("alarms", [])}
    if "CORRUPT" in alarms:
        _event(s, "corrupt", {"alarms": report["alarms"], "level": "critical"})
        return {"action": "corrupt", "comment": "CORRUPT alarm: never disarmed automatically (README: Alarms)"}
    if "NOSPACE" in alarms:
        if not m["disarm_nospace"]:
            return {"action": "nospace", "comment": "NOSPACE alarm left for a person (etcd:maintenance:disarm_nospace)"}
        # etcd refuses the lock's lease under NOSPACE (and with it every guarded restart and
        # membership change): one member, chosen by name, clears it.
        clearer = etcd_maintenance.nospace_clearer(_rows(client, report))
        if clearer != __opts__["id"]:
            return {"action": "skip", "comment": f"NOSPACE: {clearer} clears it"}
        return _run(s, client, lambda lock: _clear_nospace(s, client, lock, report), wait=1.0, locked=False)
    slot = int(time.time() // m["defrag_interval"])
    try:
        if client.get(etcd_keys.defrag_done(cluster, slot)):
            return {"action": "done", "comment": "this interval's defragmentation run is done"}
    except etcd_client.EtcdError as exc:
        return {"action": "skip", "comment": f"this member does not serve: {exc}"}
    got = _run(s, client, lambda lock: _defrag_due(s, client, lock, report, False), wait=1.0)
    if got.get("action") == "done":
        lease = client.lease_grant(2 * m["defrag_interval"])
        client.put(etcd_keys.defrag_done(cluster, slot), str(time.time()), lease=lease)
    return got


def defrag(force=False):
    """
    Defragment the cluster now, one member at a time under the cluster lock, followers
    first, the leader after handing over; only members whose file is less than
    ``etcd:maintenance:defrag_in_use_pct`` in use, or every member with ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_maintenance.defrag
        salt etcd1 etcd_maintenance.defrag force=True
    """
    s = _applied()
    client = etcd_topology.client(s, __opts__["id"])
    report = _report(s, client)
    return _run(s, client, lambda lock: _defrag_due(s, client, lock, report, force), wait=s["service"]["lock_wait"])


def _run(s, client, body, wait, locked=True):
    me = __opts__["id"]
    ttl = etcd_lock.min_ttl(s["tuning"]["election_timeout"], s["service"]["lock_ttl"])
    try:
        if locked:
            with etcd_lock.Lock(client, s["cluster"]["name"], me, ttl, wait, purpose="maintenance") as lock:
                lock.keepalive(etcd_topology.client_urls(s))
                comment, changes = body(lock)
        else:
            comment, changes = body(None)
    except etcd_lock.LockTimeout as exc:
        return {"action": "busy", "result": True, "comment": f"the cluster lock is held: {exc}", "changes": {}}
    except (Stop, etcd_client.EtcdError) as exc:
        _event(s, "stopped", {"error": str(exc)[:500], "level": "critical"})
        return etcd_actions.outcome(__context__, False, f"maintenance stopped: {exc}", {}, action="stopped")
    return etcd_actions.outcome(__context__, True, comment, changes, action="done", **changes)


def _rows(client, report):
    rows = []
    for r in report["members"]:
        st = etcd_leader.status(client, r["endpoint"]) if r["endpoint"] else None
        rows.append({"name": r["name"], "leader": r["leader"], "serving": bool(st), "status": st or {}})
    return rows


def _defrag_due(s, client, lock, report, force):
    m = s["maintenance"]
    order = etcd_maintenance.defrag_order(
        _rows(client, report), m["defrag_in_use_pct"], force, min_free=m["defrag_min_free_mib"] * 1024**2
    )
    if not order:
        return "no member needs a defragmentation", {}
    visits = _visit(s, client, order, nospace=False)
    freed = sum(v["before"] - v["after"] for v in visits)
    return f"defragmented {', '.join(v['name'] for v in visits)}: {freed / 1024**2:.1f} MiB freed", {
        "defragmented": visits
    }


def _clear_nospace(s, client, lock, report):
    revision = client.revision()
    client.compact(revision)
    _event(s, "compacted", {"revision": revision})
    visits = _visit(s, client, etcd_maintenance.defrag_order(_rows(client, report), 100, force=True), nospace=True)
    sizes = {v["name"]: v["after"] for v in visits}
    quota = s["tuning"]["quota_backend_bytes"]
    problem = etcd_maintenance.disarm_verdict(sizes, quota, s["maintenance"]["nospace_margin_pct"])
    changes = {"compacted_to": revision, "defragmented": visits}
    if problem:
        _event(s, "nospace_kept", {"reason": problem, "level": "critical", "sizes": sizes})
        raise Stop(f"NOSPACE stays: {problem}")
    hex_ids = {r["name"]: r["id"] for r in report["members"]}
    disarmed = []
    for a in report["alarms"]:
        if a["alarm"] == "NOSPACE":
            client.alarm_disarm(int(hex_ids.get(a["member"], a["member"]), 16), "NOSPACE")
            disarmed.append(a["member"])
    changes["disarmed"] = disarmed
    _event(s, "disarmed", {"alarm": "NOSPACE", "members": disarmed, "sizes": sizes})
    return f"NOSPACE cleared: compacted to {revision}, defragmented, disarmed on {', '.join(disarmed)}", changes


def _visit(s, client, order, nospace):
    """Defragment `order` one member at a time: the leader hands over first, and the next
    member waits until this one serves again and the gate is clear."""
    m = s["maintenance"]
    visits = []
    for name in order:
        listing = client.member_list(None)
        target = next((x for x in listing["members"] if x["name"] == name and x["client_urls"]), None)
        if target is None:
            raise Stop(f"{name} is no longer a started member")
        url = target["client_urls"][0]
        leader_id, leader_url = etcd_leader.find(client, listing)
        if leader_id == target["id"] and len(listing["members"]) > 1:
            problem = etcd_leader.hand_over(client, listing, leader_id, leader_url)
            if problem:
                raise Stop(f"{name} is the leader and did not hand over: {problem}")
        _gate(s, client, nospace)
        before = etcd_leader.status(client, url) or {}
        started = time.time()
        client.defragment(url, timeout=m["defrag_timeout"])
        ended = time.time()
        after = _serving_again(s, client, url)
        visit = {
            "name": name,
            "before": before.get("db_size", 0),
            "after": after.get("db_size", 0),
            "started": started,
            "seconds": round(ended - started, 2),
        }
        visits.append(visit)
        _event(s, "defrag", visit)
    return visits


def _gate(s, client, nospace):
    """Raise Stop unless nothing blocks a change (alarms aside while clearing NOSPACE)."""
    deadline = time.monotonic() + s["service"]["health_timeout"]
    while True:
        blocking = etcd_health.blocking(_report(s, client))
        if nospace:
            blocking = [r for r in blocking if r["code"] != "alarm_nospace"]
        if not blocking:
            return
        if time.monotonic() > deadline:
            raise Stop("; ".join(r["text"] for r in blocking))
        time.sleep(0.5)


def _serving_again(s, client, url):
    deadline = time.monotonic() + s["service"]["health_timeout"]
    while time.monotonic() < deadline:
        st = etcd_leader.status(client, url)
        if st and st["leader"]:
            return st
        time.sleep(0.2)
    raise Stop(f"{url} did not serve again after its defragmentation")
