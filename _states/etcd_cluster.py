"""States: settings validated, the disk checked, the member running (safe bootstrap),
the cluster healthy.

A running member whose version, unit, flags or trusted CA changed is restarted only
through ``etcd_rolling.restart``: the one guarded path, one member at a time cluster-wide.
"""

import os
import time

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_client, etcd_journal, etcd_node, etcd_settings, etcd_topology) = etcd_fresh.load(
    "etcd_client", "etcd_journal", "etcd_node", "etcd_settings", "etcd_topology"
)

__virtualname__ = "etcd_cluster"


def __virtual__():
    return __virtualname__


def _ret(name):
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def _fmt(findings):
    return "; ".join(f"{i['key']}: {i['message']} (fix: {i['fix']})" for i in findings)


def validated(name, member=True):
    """
    Fail, before anything on the node changes, when the merged settings are invalid.
    Each error names the pillar key and the fix; warnings pass with a comment.
    ``member=False``: without the rules about this minion being a member (etcd.clean).

    .. code-block:: yaml

        etcd-validate:
          etcd_cluster.validated:
            - name: etcd
    """
    ret = _ret(name)
    report = __salt__["etcd_cluster.validate"](member=member)
    if report["errors"]:
        ret["result"] = False
        ret["comment"] = "invalid etcd pillar: " + _fmt(report["errors"])
    else:
        ret["comment"] = "etcd settings are valid"
        if member and not __opts__["test"]:
            __salt__["etcd_cluster.announce"]()  # the mine only: nothing on the node changes
    if report["warnings"]:
        ret["warnings"] = [_fmt([w]) for w in report["warnings"]]
        ret["comment"] += "; warnings: " + _fmt(report["warnings"])
    return ret


def _wait_serving(s, me, timeout, service):
    """(True, None) once this member serves; else (False, etcd's own fatal reason or None),
    at the timeout or as soon as the unit crash-loops on a fatal error."""
    local = etcd_topology.local_endpoint(s, me)
    c = etcd_topology.client(s, me, [local])
    deadline = time.monotonic() + timeout
    crash_loop = etcd_journal.CrashWatch(service)
    while time.monotonic() < deadline:
        if c.health(local):
            return True, None
        try:
            if c.status(local)["is_learner"]:
                return True, None  # a learner never serves /health: its join is finished below
        except etcd_client.EtcdError:
            pass
        if crash_loop():
            return False, crash_loop.seen
        time.sleep(0.1)
    return False, etcd_journal.last_run_fatal(service)


def running(name, timeout=None, enable=True):
    """
    Enable the unit for boot (``enable``; enabling never starts anything), and start this
    member's etcd when it is not running, choosing how with
    ``etcd_cluster.bootstrap_plan``: its data (plain start), a new cluster (only when
    bootstrap is allowed, nobody answers, the data dir is empty and no cluster ID was
    recorded), or joining as a listed, never-started member. Anything else is refused.

    The start does not block on ``Type=notify`` (a first member waits for quorum), then
    waits, bounded, until this member serves. A running member is never restarted.

    .. code-block:: yaml

        etcd-service-running:
          etcd_cluster.running:
            - name: etcd
    """
    if not __opts__["test"]:
        # Before the settings are read: while the cluster is half on TLS the marker makes
        # every later read ask where the members serve, also after this member's restart.
        __salt__["etcd_cluster.mark_tls_migration"]()
    s = __salt__["etcd_cluster.live_settings"]()
    service = s["service"]["name"]
    active, enabled = etcd_node.unit_state(service)
    enabling = enable and not enabled
    if enabling and not __opts__["test"] and not etcd_node.enable_unit(service):
        ret = _ret(name)
        ret.update(result=False, comment=f"systemctl enable {service} failed: see journalctl -u {service}")
        return ret
    ret = _start(_ret(name), s, service, timeout, active)
    if enabling:
        ret["changes"] = dict(ret["changes"], enabled=True)
        if __opts__["test"] and ret["result"] is True:
            ret.update(result=None, comment=f"would enable {service}; {ret['comment']}")
    return ret


def _start(ret, s, service, timeout, active):  # noqa: PLR0912, PLR0915 (issue 17: one decision tree per case, to split)
    me = __opts__["id"]
    fp_path = etcd_node.started_path(s)
    timeout = timeout or s["service"]["start_timeout"]
    wanted = etcd_node.wanted(s)

    if active:
        started = etcd_node.read_json(fp_path)
        running_version = __salt__["etcd_cluster.local_version"]()
        if __opts__["test"]:
            # A dry run writes no files: the same plan as etcd_rolling.plan (rendered flags,
            # unit and CAs; the refusal the guarded path would give).
            planned = __salt__["etcd_rolling.plan"]()
            reasons = planned["reasons"]
        else:
            reasons = etcd_node.restart_reasons(started, wanted, running_version)
        if started is None and not __opts__["test"]:
            # Started outside the formula: adopt what runs now as the baseline.
            etcd_node.write_json(fp_path, dict(wanted, version=running_version or wanted["version"]))
        if not reasons:
            ret["comment"] = f"{service} is running"
            if _is_learner(s, me):
                return _join(ret, s, service)
            if not __opts__["test"]:
                _after_start(s)
            return ret
        if __opts__["test"] and planned["refusal"]:
            ret.update(result=False, comment=f"would not restart {service}: {planned['refusal']}")
            return ret
        if __opts__["test"]:
            turn = "last: it is the leader" if _is_leader(s, me) else "before the leader"
            ret.update(
                result=None,
                comment=f"would restart {service} through the guarded path (cluster lock, full health first, "
                f"one member at a time, the leader last), this member {turn}: " + "; ".join(reasons),
                changes={"restart": reasons, "order": turn},
            )
            return ret
        got = __salt__["etcd_rolling.restart"](reasons)
        if not got["restarted"]:
            ret.update(result=False, comment=f"{service} not restarted: {got['comment']}")
            return ret
        ret["changes"] = {"restarted": {"reasons": reasons, "seconds": got.get("seconds")}}
        ret["comment"] = f"{service} {got['comment']}"
        _after_start(s)
        return ret

    plan = __salt__["etcd_bootstrap.plan"]()
    if plan["action"] == "refuse":
        ret["result"] = False
        ret["comment"] = f"refusing to start {service}: {plan['reason']}"
        return ret
    if plan["action"] == "add":
        return _join(ret, s, service)
    if plan["action"] == "unknown":  # test mode only (etcd_cluster.bootstrap_plan)
        ret.update(result=None, comment=f"would start {service}: {plan['reason']}")
        return ret
    state = "new" if plan["action"] == "new" else "existing"
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"would start {service} ({plan['action']}, initial-cluster-state {state}): {plan['reason']}"
        ret["changes"] = {service: {"old": "stopped", "new": "running"}}
        return ret

    if plan["action"] != "start":
        etcd_node.write_bootstrap(state)  # without member data, the unit starts only with it
    etcd_node.write_json(fp_path, wanted)
    __salt__["service.start"](service, no_block=True)
    served, fatal = _wait_serving(s, me, timeout, service)
    if not served:
        ret["result"] = False
        if fatal:
            # etcd's own words: the formula's guess below would blame the wrong thing.
            ret["comment"] = (
                f"{service} started ({plan['action']}) and exits with: {fatal}; its data dir is kept as it is "
                f"(nothing is wiped): see journalctl -u {service}, and README 'Replace a failed member' when "
                "the data cannot be read"
            )
        else:
            ret["comment"] = (
                f"{service} started ({plan['action']}) but did not serve within {timeout}s: a new cluster needs a "
                f"quorum of members started together (apply on all members at once); see journalctl -u {service}"
            )
        ret["changes"] = {service: {"old": "stopped", "new": "started, not serving"}}
        return ret
    if _is_learner(s, me):  # its data says learner: an add cut short, promoted now
        return _join(ret, s, service)
    _after_start(s)
    ret["changes"] = {service: {"old": "stopped", "new": "running", "how": plan["action"]}}
    ret["comment"] = f"{service} started ({plan['action']}: {plan['reason']})"
    return ret


def _local_status(s, me):
    local = etcd_topology.local_endpoint(s, me)
    c = etcd_topology.client(s, me, [local])
    try:
        return c.status(local)
    except etcd_client.EtcdError:
        return {}


def _is_learner(s, me):
    return bool(_local_status(s, me).get("is_learner"))


def _is_leader(s, me):
    st = _local_status(s, me)
    return bool(st) and st["leader"] == st["member_id"]


def _join(ret, s, service):
    """A pillar member the cluster does not list (or lists as a learner): the guarded join."""
    if __opts__["test"]:
        p = __salt__["etcd_membership.plan"]()
        ret.update(
            result=None if not p.get("refused") else False,
            comment=f"would {p['action']} {p['member']}: {p['reason']}; voting members {p.get('voters_before')} "
            f"(quorum {p.get('quorum_before')}) -> {p.get('then', p).get('voters_after')} "
            f"(quorum {p.get('then', p).get('quorum_after')}) once promoted",
            changes={"membership": {k: p.get(k) for k in ("action", "member", "voting_members")}},
        )
        return ret
    got = __salt__["etcd_membership.join"]()
    if not got["joined"]:
        ret.update(result=False, comment=f"{service}: {got['comment']}")
        if got.get("added"):
            ret["changes"] = {"membership": {"added_as_learner": __opts__["id"]}}
        return ret
    _after_start(s)
    ret["changes"] = {"membership": {k: got.get(k) for k in ("added", "member_id", "seconds", "lock_held")}}
    ret["comment"] = f"{service}: {got['comment']}"
    return ret


def _after_start(s):
    """Once the member serves: the cluster ID recorded, the one-time bootstrap file gone,
    then its TLS record (for CA rotations and the move to TLS) published in this cluster.
    Runs on every apply, so it asks the cluster only while something is left to do."""
    if not __salt__["etcd_cluster.recorded_cluster_id"]() or os.path.exists(etcd_node.BOOTSTRAP_ENV):
        try:
            cluster_id = __salt__["etcd_cluster.members"]()["cluster_id"]
        except Exception:  # noqa: BLE001  (not serving yet: nothing to record)
            return
        if __salt__["etcd_cluster.recorded_cluster_id"]() != cluster_id:
            __salt__["etcd_cluster.record_cluster_id"](cluster_id)
        etcd_node.drop_bootstrap()
    if etcd_settings.tls_on(s):
        try:
            __salt__["etcd_tls.publish_record"]()
        except etcd_client.EtcdError:
            pass  # published by the next apply; a rotation waits for it meanwhile
