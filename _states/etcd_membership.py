"""States: a minion that left the site pillar leaves the cluster.

A node that is no longer under ``etcd:members`` but still holds etcd data or a unit is
*leaving*: its member is removed (one member per apply, under the cluster lock, refused
when it would cost quorum or go below ``etcd:membership:min_members``), then etcd is
stopped and disabled here and the data dir is set aside, never to be reused. Joining is
part of ``etcd_cluster.running``: a pillar member the cluster does not list is added as a
learner and promoted.
"""

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
    if plan.get("refused"):
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
