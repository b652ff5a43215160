"""The rules of etcd membership changes, as pure functions over a member list.

etcd's rules, which every change here keeps: one change at a time (the cluster lock); a
new member joins as a learner, which does not vote and cannot cost quorum, and is
promoted once it has caught up; a removed member's data dir is never reused; no change
may leave fewer healthy voting members than a quorum.

A member list is what ``etcd_client.Client.member_list`` returns: ``members`` with
``id``, ``name`` (empty until it started), ``peer_urls``, ``client_urls``, ``is_learner``.
"""


def quorum(voters):
    return voters // 2 + 1


def voting(listing):
    return [m for m in listing["members"] if not m["is_learner"]]


def find(listing, name, peer_url=None):
    """The member called `name`, or (never started, so nameless) the one at `peer_url`."""
    for m in listing["members"]:
        if m["name"] == name or (peer_url and peer_url in m["peer_urls"]):
            return m
    return None


def label(m):
    return m["name"] or f"{m['id']:x} ({', '.join(m['peer_urls'])})"


def initial_cluster(listing, name, peer_url):
    """ETCD_INITIAL_CLUSTER for a member joining `listing` (which already lists it):
    etcd checks that it names exactly the live members, by peer URL."""
    parts = []
    for m in listing["members"]:
        n = name if peer_url in m["peer_urls"] else m["name"]
        parts += [f"{n}={u}" for u in m["peer_urls"]]
    return ",".join(parts)


def add_refusal(listing, healthy_ids, name):
    """None when `name` may be added as a learner now, else why not."""
    pending = [m for m in listing["members"] if (m["is_learner"] or not m["name"]) and m["name"] != name]
    if pending:
        return (
            f"{label(pending[0])} is still joining (a learner, or added and never started): one membership "
            "change at a time. Apply etcd on that node to finish it, or remove it (README: Membership)"
        )
    voters = voting(listing)
    down = [label(m) for m in voters if m["id"] not in healthy_ids]
    if down:
        return f"voting members {', '.join(down)} do not serve: a member is added to a fully healthy cluster only"
    return None


def removal_refusal(listing, healthy_ids, target_id, min_members, replacing=False, force=False):
    """None when member `target_id` may be removed now, else why not (quorum first).

    A replacement is for a failed member: one that is started and serves is refused
    unless forced, since replacing it throws away a working member's data and ID."""
    target = next((m for m in listing["members"] if m["id"] == target_id), None)
    if target is None or target["is_learner"]:
        return None  # a learner does not vote: removing it costs nothing
    if replacing and not force and target_id in healthy_ids:
        return (
            f"{label(target)} is started and serves: it has not failed, and replacing it would set its intact "
            "data aside. Replace only a failed member; if you mean it, force it "
            "(etcd_orch: {force: true}; etcd_membership.remove NAME replace=True force=True)"
        )
    voters = voting(listing)
    left = [m for m in voters if m["id"] != target_id]
    healthy_left = [m for m in left if m["id"] in healthy_ids]
    need = quorum(len(voters))
    if len(healthy_left) < need:
        return (
            f"removing {label(target)} would leave {len(healthy_left)} healthy voting members; a quorum of the "
            f"current {len(voters)} is {need}: bring the members that are down back first"
        )
    if not replacing and len(left) < min_members:
        return (
            f"removing {label(target)} would leave {len(left)} voting members, fewer than "
            f"etcd:membership:min_members ({min_members}): add a member first, or lower min_members"
        )
    return None


CLEAN_FORCE = """pillar='{"etcd": {"clean": {"force": true}}}'"""
CLEAN_WHOLE = """pillar='{"etcd": {"clean": {"force": true, "whole_cluster": true}}}'"""


def clean_step(action, force, whole_cluster):
    """What etcd.clean does about membership, from `plan(leaving=True)`'s action:
    ("leave", None) the guarded removal first, ("stop", None) no membership change,
    ("nothing", None), or ("refuse", why). A live member is cleaned only when forced;
    a whole cluster goes only with its own flag; a node nobody can judge, never blind."""
    if action == "unknown":
        if force and whole_cluster:
            return "stop", None
        return "refuse", (
            "cannot tell whether this node is still a member (no member answers): etcd.clean never takes a "
            f"member out blind. To tear down the whole cluster on purpose: {CLEAN_WHOLE}"
        )
    if action == "remove":
        if not force:
            return "refuse", (
                "this node is a member of the cluster: etcd.clean refuses to take a live member out. To remove it, "
                "take it out of etcd:members and apply etcd (README: Scale in), or force the clean, which removes "
                f"it through the guarded removal first: {CLEAN_FORCE}"
            )
        return ("stop", None) if whole_cluster else ("leave", None)
    if action == "retire":
        return "stop", None
    return "nothing", None


def summary(voters_before, voters_after):
    """The quorum before and after a change, as a plan reports it."""
    return {
        "voters_before": voters_before,
        "quorum_before": quorum(voters_before),
        "voters_after": voters_after,
        "quorum_after": quorum(voters_after) if voters_after else 0,
        "failures_tolerated_after": voters_after - quorum(voters_after) if voters_after else 0,
    }
