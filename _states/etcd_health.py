"""
The health states: ``healthy`` (the gate before the next change, waiting bounded for
``etcd_health.healthy``) and ``scheduled`` (the health check's job in the minion's
schedule).

``etcd_health.scheduled`` is Salt's ``schedule.present`` (same arguments, same changes)
that first compares with the schedule the job process already holds, and asks the minion
daemon only when they differ.
"""

import etcd_fresh
from salt.modules.schedule import SCHEDULE_CONF

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_client, etcd_health) = etcd_fresh.load("etcd_client", "etcd_health")


def scheduled(name, **kwargs):
    """
    Ensure the job is in the minion's schedule, as ``schedule.present`` does.

    ``schedule.present`` asks the minion daemon for its live schedule over the event bus
    on every apply (about 45 ms, a fifth of the time a zero-change apply spent in its
    states). A job of the daemon runs with a copy of the daemon's options, whose
    ``schedule`` is that live schedule (the daemon's scheduler edits it in place), and
    ``salt-call`` reads the same saved schedule ``offline`` mode does. When the job there
    equals the wanted one, it is in the correct state; otherwise ``schedule.present``
    decides, so a stale copy costs only the time saved, never a missed change.

    .. code-block:: yaml

        etcd-health-schedule:
          etcd_health.scheduled:
            - name: etcd-health
            - function: etcd_health.health
            - seconds: 60
    """
    wanted = __salt__["schedule.build_schedule_item"](name, **kwargs)
    held = (__opts__.get("schedule") or {}).get(name)
    if isinstance(held, dict) and "result" not in wanted and _listed(held) == dict({"enabled": True}, **wanted):
        return {"name": name, "result": True, "changes": {}, "comment": f"Job {name} in correct state"}
    return __states__["schedule.present"](name, **kwargs)


def _listed(item):
    """The job as ``schedule.list`` shows it: known keys, no unset ones, enabled by default."""
    out = {"enabled": True}
    for key, value in item.items():
        if key in SCHEDULE_CONF and key != "_seconds" and value is not None:
            out[key] = {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value
    return out


def healthy(name, timeout=None):
    """
    Wait, bounded (``etcd:service:health_timeout``), until ``etcd_health.healthy``
    finds nothing that blocks a change: one cluster ID, an agreed leader, a quorum, no
    alarm, every pillar member started and serving, no learner.

    .. code-block:: yaml

        etcd-health:
          etcd_health.healthy:
            - name: etcd
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    s = __salt__["etcd_cluster.settings"]()
    timeout = timeout or s["service"]["health_timeout"]
    if __opts__["test"]:
        try:
            report = __salt__["etcd_health.healthy"]()
        except etcd_client.EtcdError as exc:  # a new member: no client certificate before the real apply
            ret.update(result=None, comment=f"would wait up to {timeout}s for the cluster to be healthy ({exc})")
            return ret
        ret["result"] = True if report["healthy"] else None
        ret["comment"] = (
            "cluster is healthy" if report["healthy"] else "would wait for: " + "; ".join(report["problems"])
        )
        return ret
    report = __salt__["etcd_health.wait_healthy"](timeout)
    if report["healthy"]:
        ret["comment"] = f"cluster {report['cluster_id']} is healthy: {', '.join(report['members'])}"
    elif report["without_minion"]:
        ret["result"] = False
        ret["comment"] = __salt__["etcd_health.without_minion_text"](report["without_minion"])
        ret["comment"] += "; " + "; ".join(report["problems"])
    else:
        ret["result"] = False
        ret["comment"] = f"cluster not healthy after {timeout}s: " + "; ".join(report["problems"])
    return ret
