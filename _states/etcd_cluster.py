"""States: settings validated, the member running (safe bootstrap), the cluster healthy.

No state here restarts a running etcd. A running member whose binary, unit or flags
changed is reported as "restart pending" with the reason; restarts belong to one guarded
path that takes one member at a time.
"""

import os
import sys
import time

for _name in ("etcd_settings", "etcd_releases", "etcd_client", "etcd_node"):
    sys.modules.pop(_name, None)

import etcd_client  # noqa: E402
import etcd_node  # noqa: E402
import etcd_settings  # noqa: E402

__virtualname__ = "etcd_cluster"

BOOTSTRAP_ENV = "/run/etcd-formula/bootstrap.env"


def __virtual__():
    return __virtualname__


def _ret(name):
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def _fmt(findings):
    return "; ".join(f"{i['key']}: {i['message']} (fix: {i['fix']})" for i in findings)


def validated(name):
    """
    Fail, before anything on the node changes, when the merged settings are invalid.
    Each error names the pillar key and the fix; warnings pass with a comment.

    .. code-block:: yaml

        etcd-validate:
          etcd_cluster.validated:
            - name: etcd
    """
    ret = _ret(name)
    report = __salt__["etcd_cluster.validate"]()
    if report["errors"]:
        ret["result"] = False
        ret["comment"] = "invalid etcd pillar: " + _fmt(report["errors"])
    else:
        ret["comment"] = "etcd settings are valid"
    if report["warnings"]:
        ret["warnings"] = [_fmt([w]) for w in report["warnings"]]
        ret["comment"] += "; warnings: " + _fmt(report["warnings"])
    return ret


def _wanted(s, me):
    unit_path = s["paths"]["unit"]
    env_path = os.path.join(s["paths"]["config_dir"], "etcd.env")
    unit = open(unit_path).read() if os.path.exists(unit_path) else ""
    env_text = open(env_path).read() if os.path.exists(env_path) else ""
    env = dict(line.split("=", 1) for line in env_text.splitlines() if "=" in line and not line.startswith("#"))
    return {
        "version": s["version"],
        "flags": etcd_settings.restart_relevant(env),
        "unit": etcd_node.sha256_text(unit),
    }


def _restart_reasons(started, wanted, running_version):
    reasons = []
    if running_version and running_version != wanted["version"]:
        reasons.append(f"version: running {running_version}, wanted {wanted['version']}")
    if started is None:
        return reasons
    old, new = started.get("flags", {}), wanted["flags"]
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        reasons.append("flags changed: " + ", ".join(changed))
    if started.get("unit") != wanted["unit"]:
        reasons.append("unit file changed")
    return reasons


def _wait_serving(s, me, timeout):
    local = etcd_settings.local_endpoint(s, me)
    c = etcd_client.Client([local], timeout=s["service"]["probe_timeout"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.health(local):
            return True
        time.sleep(0.1)
    return False


def running(name, timeout=None):
    """
    Start this member's etcd when it is not running, choosing how with
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
    ret = _ret(name)
    s = __salt__["etcd_cluster.settings"]()
    me = __opts__["id"]
    service = s["service"]["name"]
    fp_path = os.path.join(s["paths"]["state"], "started.json")
    timeout = timeout or s["service"]["start_timeout"]
    wanted = _wanted(s, me)

    if __salt__["service.status"](service):
        started = etcd_node.read_json(fp_path)
        running_version = __salt__["etcd_cluster.local_version"]()
        reasons = _restart_reasons(started, wanted, running_version)
        if started is None and not __opts__["test"]:
            # Started outside the formula: adopt what runs now as the baseline.
            etcd_node.write_json(fp_path, dict(wanted, version=running_version or wanted["version"]))
        if reasons:
            ret["comment"] = f"{service} is running; restart pending: " + "; ".join(reasons)
            ret["warnings"] = [ret["comment"]]
        else:
            ret["comment"] = f"{service} is running"
        if not __opts__["test"]:
            _after_start(s)
        return ret

    plan = __salt__["etcd_cluster.bootstrap_plan"]()
    if plan["action"] == "refuse":
        ret["result"] = False
        ret["comment"] = f"refusing to start {service}: {plan['reason']}"
        return ret
    state = "new" if plan["action"] == "new" else "existing"
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"would start {service} ({plan['action']}, initial-cluster-state {state}): {plan['reason']}"
        ret["changes"] = {service: {"old": "stopped", "new": "running"}}
        return ret

    if state == "new":
        os.makedirs(os.path.dirname(BOOTSTRAP_ENV), mode=0o755, exist_ok=True)
        with open(BOOTSTRAP_ENV, "w") as fh:
            fh.write("# etcd-formula: one-time bootstrap of a new cluster; removed once it formed.\n")
            fh.write("ETCD_INITIAL_CLUSTER_STATE=new\n")
    etcd_node.write_json(fp_path, wanted)
    __salt__["service.start"](service, no_block=True)
    if not _wait_serving(s, me, timeout):
        ret["result"] = False
        ret["comment"] = (
            f"{service} started ({plan['action']}) but did not serve within {timeout}s: a new cluster needs a "
            f"quorum of members started together (apply on all members at once); see journalctl -u {service}"
        )
        ret["changes"] = {service: {"old": "stopped", "new": "started, not serving"}}
        return ret
    _after_start(s)
    ret["changes"] = {service: {"old": "stopped", "new": "running", "how": plan["action"]}}
    ret["comment"] = f"{service} started ({plan['action']}: {plan['reason']})"
    return ret


def _after_start(s):
    """Once the member serves: record the cluster ID, drop the one-time bootstrap file.
    Runs on every apply, so it asks the cluster only while something is left to do."""
    if __salt__["etcd_cluster.recorded_cluster_id"]() and not os.path.exists(BOOTSTRAP_ENV):
        return
    try:
        cluster_id = __salt__["etcd_cluster.members"]()["cluster_id"]
    except Exception:  # noqa: BLE001  (not serving yet: nothing to record)
        return
    if __salt__["etcd_cluster.recorded_cluster_id"]() != cluster_id:
        __salt__["etcd_cluster.record_cluster_id"](cluster_id)
    if os.path.exists(BOOTSTRAP_ENV):
        os.unlink(BOOTSTRAP_ENV)


def healthy(name, timeout=None):
    """
    Wait, bounded, until the cluster is healthy: every pillar member listed and started,
    one cluster ID, a leader, no alarms, no learners, this member answering.

    .. code-block:: yaml

        etcd-health:
          etcd_cluster.healthy:
            - name: etcd
    """
    ret = _ret(name)
    s = __salt__["etcd_cluster.settings"]()
    timeout = timeout or s["service"]["health_timeout"]
    if __opts__["test"]:
        report = __salt__["etcd_cluster.healthy"]()
        ret["result"] = True if report["healthy"] else None
        ret["comment"] = (
            "cluster is healthy" if report["healthy"] else "would wait for: " + "; ".join(report["problems"])
        )
        return ret
    deadline = time.monotonic() + timeout
    while True:
        report = __salt__["etcd_cluster.healthy"]()
        if report["healthy"]:
            ret["comment"] = f"cluster {report['cluster_id']} is healthy: {', '.join(report['members'])}"
            return ret
        if time.monotonic() > deadline:
            ret["result"] = False
            ret["comment"] = f"cluster not healthy after {timeout}s: " + "; ".join(report["problems"])
            return ret
        time.sleep(0.5)
