"""States: a minion that left the site pillar leaves the cluster.

A node that is no longer under ``etcd:members`` but still holds etcd data or a unit is
*leaving*: its member is removed (one member per apply, under the cluster lock, refused
when it would cost quorum or go below ``etcd:membership:min_members``), then etcd is
stopped and disabled here and the data dir is set aside, never to be reused. Joining is
part of ``etcd_cluster.running``: a pillar member the cluster does not list is added as a
learner and promoted.
"""

import os

import etcd_fresh

(etcd_membership,) = etcd_fresh.load("etcd_membership")

__virtualname__ = "etcd_membership"


def __virtual__():
    return __virtualname__


def left(name):
    """
    Remove this minion's member from the cluster and retire etcd on the node.

    .. code-block:: yaml

        etcd-leave-member-etcd_membership-left:
          etcd_membership.left:
            - name: etcd
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    me = __opts__["id"]
    plan = __salt__["etcd_membership.plan"]()
    action = plan["action"]
    if action == "unknown":
        ret.update(result=False, comment=f"cannot tell whether {me} is still a member: {plan['reason']}")
        return ret
    if action == "none":
        ret["comment"] = f"{me} is not a member and etcd is retired here"
        return ret
    if action not in ("remove", "retire"):
        ret.update(result=False, comment=f"{me} is leaving (not in etcd:members) but the cluster plans {action}")
        return ret
    quorum = (
        f"voting members {plan['voters_before']} (quorum {plan['quorum_before']}) -> {plan['voters_after']} "
        f"(quorum {plan['quorum_after']})"
    )
    # Outside test mode the removal itself decides, under the cluster lock: a plan made
    # before the lock can see another member half-way out and refuse for the wrong reason.
    if plan.get("refused") and __opts__["test"]:
        ret.update(result=False, comment=f"{me} not removed: {plan['reason']}")
        return ret
    if __opts__["test"]:
        what = f"would remove {me} from the cluster ({quorum}), then " if action == "remove" else "would "
        ret.update(
            result=None,
            comment=what + "stop and disable etcd here and set its data dir aside",
            changes={"membership": {"action": action, "member": me}},
        )
        return ret
    got = __salt__["etcd_membership.leave"]()
    if not got["left"]:
        ret.update(result=False, comment=got["comment"])
        return ret
    ret["changes"] = {"membership": {"removed": got["removal"].get("removed"), **got["local"]}}
    ret["comment"] = f"{me} left: {got['comment']}" + (f" ({quorum})" if action == "remove" else "")
    return ret


def cleaned(name, force=False, whole_cluster=False, delete_data=False):
    """
    etcd.clean's first step: this node is no member of the cluster any more and etcd is
    stopped here. A live member is refused unless ``force``: then it leaves through the
    guarded removal (cluster lock, quorum, ``min_members``, leader hand-over), so a clean
    applied to every member at once takes out one per turn and stops at ``min_members``.
    ``whole_cluster`` (with ``force``) stops it without a removal, to tear a cluster down.
    The data dir is set aside (``<data>.removed-<time>``); ``delete_data`` deletes that copy.

    .. code-block:: yaml

        etcd-clean-member-etcd_membership-cleaned:
          etcd_membership.cleaned:
            - name: etcd
            - force: false
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    me = __opts__["id"]
    plan = __salt__["etcd_membership.plan"](leaving=True)
    step, why = etcd_membership.clean_step(plan["action"], force, whole_cluster)
    if step == "refuse":
        ret.update(result=False, comment=f"{me}: {why} ({plan['reason']})")
        return ret
    if step == "nothing":
        ret["comment"] = f"{me} is not a member and etcd holds nothing here"
        return ret
    if step == "leave" and plan.get("refused") and __opts__["test"]:  # else the locked removal decides
        ret.update(result=False, comment=f"{me} not removed, nothing cleaned: {plan['reason']}")
        return ret
    data = "delete the data dir" if delete_data else "set the data dir aside"
    if __opts__["test"]:
        what = {
            "leave": f"would remove {me} from the cluster (voting members {plan.get('voters_before')} -> "
            f"{plan.get('voters_after')}), then stop etcd and {data}",
            "stop": f"would stop etcd without a membership change ({plan['reason']}) and {data}",
        }[step]
        ret.update(result=None, comment=what, changes={"membership": {"step": step, "member": me}})
        return ret
    if step == "leave":
        got = __salt__["etcd_membership.leave"](in_pillar=True)
        if not got["left"]:
            ret.update(result=False, comment=f"{me} not removed, nothing cleaned: {got['comment']}")
            return ret
        local, ret["comment"] = got["local"], f"{me} left the cluster: {got['comment']}"
        ret["changes"]["removed"] = got["removal"].get("member_id")
    else:
        local = __salt__["etcd_membership.set_aside"]()
        ret["comment"] = f"etcd stopped on {me} without a membership change"
        if whole_cluster and __salt__["etcd_cluster.forget_cluster_id"]():
            ret["changes"]["cluster_id_forgotten"] = True  # the torn-down name may bootstrap again
    ret["changes"].update(local)
    if delete_data and local.get("data_set_aside"):
        __salt__["file.remove"](local["data_set_aside"])
        ret["changes"]["data_deleted"] = ret["changes"].pop("data_set_aside")
    data_dir = __salt__["etcd_cluster.settings"]()["paths"]["data"]
    if os.path.isdir(data_dir) and not os.listdir(data_dir):
        os.rmdir(data_dir)  # the empty one set_aside leaves for a member that comes back
    return ret
