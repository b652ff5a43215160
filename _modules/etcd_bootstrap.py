"""How a member whose etcd is not running may start: with its data, by bootstrapping a
new cluster, or by joining the running one (the decision ``etcd_cluster.running`` acts
on). ``new`` has four conditions: no data, nobody answers, no cluster ID recorded for
the site (here or by any member, in the mine), and ``etcd:cluster:bootstrap``.
"""

import re
import time

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_client, etcd_health, etcd_node, etcd_settings, etcd_topology) = etcd_fresh.load(
    "etcd_client", "etcd_health", "etcd_node", "etcd_settings", "etcd_topology"
)

__virtualname__ = "etcd_bootstrap"


def __virtual__():
    return __virtualname__


def _recorded_anywhere(s):
    """Cluster IDs recorded for this site's cluster name, here or by any member (mine)."""
    name = s["cluster"]["name"]
    records = [__salt__["etcd_cluster.recorded_cluster_ids"]()]
    if __opts__.get("file_client") != "local":
        mined = __salt__["mine.get"](",".join(s["members"]), "etcd_cluster.recorded_cluster_ids", tgt_type="list")
        records += [v for v in (mined or {}).values() if isinstance(v, dict)]
    return sorted({r[name] for r in records if r.get(name)})


def _live_view(s):
    """The live cluster as this node can see it. In test mode a node that cannot speak
    to the cluster yet (no client certificate, or one from a CA being rotated out: the
    real apply issues a new one first) plans from the members' last health reports in
    the mine instead, and says so; the real apply always asks the cluster."""
    try:
        live = __salt__["etcd_cluster.probe"]()
    except etcd_client.EtcdError:
        if not __opts__["test"]:
            raise
        live = None  # no client material yet: tls.certificates makes it before the real start
    nobody = {"answered": [], "cluster_ids": [], "members": []}
    if live and live["answered"] or not __opts__["test"] or not etcd_settings.tls_on(s):
        return live or nobody, ""
    if live is not None and not any(__salt__["etcd_tls.plan"](against_mine=True).values()):
        return live, ""  # its certificates are fine: nobody answering is the real answer
    mined = _mined_view(s)
    if not mined:
        return live or nobody, BLIND
    return mined, f" (planned from the members' health reports in the mine, {mined['age']} s old)"


# Test mode on a node that cannot speak to the cluster yet and has no report to plan from.
BLIND = "blind"


def _mined_view(s):
    reported = reported_members()
    if not reported:
        return None
    return {
        "answered": [reported["reporter"]],
        "cluster_ids": [reported["cluster_id"]],
        "members": [etcd_client.member_view(m) for m in reported["members"]],
        "age": reported["age"],
    }


def reported_members():
    """
    The member list as this site's members last reported it in their scheduled health
    checks (the mine), for a node that cannot ask the cluster yet: a new member before
    its certificates exist, in test mode. Same shape as the live list (``members``, with
    ``serving``: the IDs that answered), plus who reported it and how many seconds ago.
    None when no member has reported. Only pillar members' reports for this site's
    cluster name are read; the real apply always asks the cluster.

    CLI Example:

    .. code-block:: bash

        salt etcd4 etcd_bootstrap.reported_members
    """
    s = __salt__["etcd_cluster.settings"]()
    if __opts__.get("file_client") == "local":
        return None
    others = [n for n in s["members"] if n != __opts__["id"]]
    got = __salt__["mine.get"](",".join(others), "etcd_health", tgt_type="list") or {}
    reports = [
        (name, r)
        for name, r in got.items()
        if name in others
        and isinstance(r, dict)
        and r.get("cluster") == s["cluster"]["name"]
        and isinstance(r.get("members"), list)
        and r["members"]
        and isinstance(r.get("time"), (int, float))
    ]
    if not reports:
        return None
    name, r = max(reports, key=lambda item: item[1]["time"])
    # A member's report is its word: the cluster ID reaches a comment only as hex.
    cluster_id = str(r.get("cluster_id"))
    cluster_id = cluster_id if re.fullmatch(r"[0-9a-f]{1,16}", cluster_id) else "unknown"
    return dict(etcd_health.listing_of(r), reporter=name, cluster_id=cluster_id, age=int(time.time() - r["time"]))


def _member_place(s, me, live):
    """Where a node without data stands in the live cluster (what bootstrap_plan decides)."""
    mine = etcd_topology.peer_url(s, me)
    listed = [m for m in live["members"] if m["name"] == me or mine in m["peer_urls"]]
    if not listed:
        return {
            "action": "add",
            "reason": f"cluster {', '.join(live['cluster_ids'])} is running without {me}: it is added as a "
            "learner, started, and promoted once caught up",
        }
    if listed[0]["is_learner"]:
        return {"action": "add", "reason": f"{me} was added as a learner and never started: completing the join"}
    if listed[0]["started"]:
        return {
            "action": "refuse",
            "reason": f"{me} is a started member of cluster {', '.join(live['cluster_ids'])} but "
            f"{s['paths']['data']} is empty: its data is lost. Replace the member (README: Replace a "
            "failed member); never re-bootstrap it",
        }
    return {"action": "join", "reason": f"{me} is listed in the live cluster and has not started yet"}


def plan():
    """
    How this member's etcd may start when it is not running: ``start`` (it has data),
    ``new`` (bootstrap a new cluster), ``join`` (listed in the live cluster, never
    started), ``add`` (not listed: added as a learner) or ``refuse`` (with the reason
    and the fix). In test mode a node without its certificates yet plans from the
    members' health reports in the mine, or says ``unknown`` when there are none.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_bootstrap.plan
    """
    s = __salt__["etcd_cluster.live_settings"]()
    me = __opts__["id"]
    if etcd_node.has_data(s["paths"]["data"]):
        return {"action": "start", "reason": f"{s['paths']['data']} holds this member's data"}
    live, source = _live_view(s)
    if live["answered"]:
        plan = _member_place(s, me, live)
        plan["reason"] += source
        return plan
    if source == BLIND:
        return {
            "action": "unknown",
            "reason": f"{me} cannot ask the cluster before its certificates exist (the apply issues them first) "
            "and no member has published a health report to plan from (the etcd-health schedule does, every "
            "interval): the apply will join it if a cluster runs, or bootstrap one if none does and "
            "etcd:cluster:bootstrap allows it",
        }
    recorded = _recorded_anywhere(s)
    if recorded:
        return {
            "action": "refuse",
            "reason": f"no member answers, but cluster {', '.join(recorded)} was formed for site "
            f"{s['cluster']['name']}: refusing to bootstrap a second cluster. Bring its members back",
        }
    if not s["cluster"].get("bootstrap"):
        return {
            "action": "refuse",
            "reason": "no member answers and `etcd:cluster:bootstrap` is false: set it to true for the "
            "first apply of a new cluster",
        }
    return {"action": "new", "reason": "no member answers, no data, no recorded cluster: bootstrap allowed"}
