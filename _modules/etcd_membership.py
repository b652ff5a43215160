"""Membership changes of an etcd cluster managed by etcd-formula.

Every change (add a learner, promote it, remove a member) is made under the cluster lock
(``_utils/etcd_lock.py``, the same lock the guarded restarts take), through voting
members only (a learner refuses member and lock calls), after the quorum rules of
``_utils/etcd_membership.py`` allowed it. ``plan`` says what an apply would do here.
"""

import concurrent.futures
import os
import shutil
import time

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_actions, etcd_client, etcd_leader, etcd_lock, etcd_membership, etcd_node, etcd_topology) = etcd_fresh.load(
    "etcd_actions", "etcd_client", "etcd_leader", "etcd_lock", "etcd_membership", "etcd_node", "etcd_topology"
)

__virtualname__ = "etcd_membership"


def __virtual__():
    return __virtualname__


class MembershipError(Exception):
    """A change refused or failed; the message says why and what to do."""


def _settings():
    return __salt__["etcd_cluster.live_settings"]()


def _me_peer_url(s, me):
    if me in s["members"]:
        return etcd_topology.peer_url(s, me)
    started = etcd_node.read_json(etcd_node.started_path(s)) or {}
    return started.get("flags", {}).get("ETCD_INITIAL_ADVERTISE_PEER_URLS")


def _voters(s, me):
    """(client over the started voting members, the member list)."""
    pillar_urls = [etcd_topology.client_url(s, n) for n in s["members"] if n != me]
    if me in s["members"]:
        pillar_urls.insert(0, etcd_topology.local_endpoint(s, me))
    # As of now: right after another member's removal or add (the previous lock holder),
    # a member's own view may still list the old membership for a few milliseconds.
    listing = etcd_topology.client(s, me, pillar_urls).member_list(None, current=True)
    urls = [m["client_urls"][0] for m in etcd_membership.voting(listing) if m["client_urls"]]
    return etcd_topology.client(s, me, urls), listing


def _live(s, me):
    """(client over the started voting members, the member list, the IDs that serve)."""
    client, listing = _voters(s, me)

    def serves(m):
        return m["id"] if m["client_urls"] and client.health(m["client_urls"][0]) else None

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(listing["members"]))) as pool:
        healthy = {i for i in pool.map(serves, etcd_membership.voting(listing)) if i}
    return client, listing, healthy


def _locked(s, purpose, failed, what, work):
    """`work()` under the cluster lock (taken through the voting members); an etcd error
    becomes `failed("<what>: <error>")`, a lock that cannot be had `failed(<why>)`."""
    lock = None
    try:
        client, _ = _voters(s, __opts__["id"])
        lock = _lock(s, client, purpose)
        return work()
    except etcd_client.EtcdError as exc:
        return failed(f"{what}: {exc}")
    except MembershipError as exc:
        return failed(str(exc))
    finally:
        if lock:
            lock.release()


def _lock(s, client, purpose):
    svc = s["service"]
    ttl = etcd_lock.min_ttl(s["tuning"]["election_timeout"], svc["lock_ttl"])
    lock = etcd_lock.Lock(client, s["cluster"]["name"], __opts__["id"], ttl, svc["lock_wait"], purpose=purpose)
    try:
        lock.acquire()
    except etcd_lock.LockTimeout as exc:
        raise MembershipError(f"no membership change: {exc}") from exc
    lock.keepalive(client.endpoints)
    return lock


def plan(leaving=False):
    """
    What ``state.apply etcd`` would change in the membership for this minion: ``add``
    (a pillar member the cluster does not list: added as a learner, started, promoted),
    ``join`` (listed, never started), ``promote`` (a started learner), ``remove`` (a
    minion no longer in pillar that is still a member), ``retire`` (no longer a member,
    etcd or its data still here) or ``none``; with the voting members and quorum before
    and after. With ``leaving`` (etcd.clean), as if pillar no longer listed this minion.

    CLI Example:

    .. code-block:: bash

        salt etcd4 etcd_membership.plan
        salt etcd1 etcd_membership.plan leaving=True
    """
    s = _settings()
    me = __opts__["id"]
    if leaving:
        s = dict(s, members={k: v for k, v in s["members"].items() if k != me})
    source = ""
    try:
        _, listing, healthy = _live(s, me)
    except etcd_client.EtcdError as exc:
        # A new member has no client certificate before its first apply: plan from the
        # members' own reports (test mode and this function only; changes ask the cluster).
        listing = __salt__["etcd_bootstrap.reported_members"]()
        if not listing:
            return {"action": "unknown", "member": me, "reason": f"no member answers: {exc}"}
        healthy = set(listing["serving"])
        source = f" (from {listing['reporter']}'s health report in the mine, {listing['age']} s old)"
    out = _plan_from(s, me, listing, healthy)
    out["reason"] += source
    return out


def _plan_from(s, me, listing, healthy):
    voters = len(etcd_membership.voting(listing))
    mine = etcd_membership.find(listing, me, _me_peer_url(s, me))
    out = {"member": me, "voting_members": sorted(m["name"] or "?" for m in etcd_membership.voting(listing))}
    if me in s["members"]:
        if mine is None:
            refusal = etcd_membership.add_refusal(listing, healthy, me)
            out.update(action="add", reason=refusal or f"{me} is in pillar and not a member")
            out.update(etcd_membership.summary(voters, voters), refused=bool(refusal))
            out["then"] = etcd_membership.summary(voters, voters + 1)  # once promoted
        elif mine["is_learner"]:
            out.update(action="join" if not mine["name"] else "promote", reason=f"{me} is a learner")
            out.update(etcd_membership.summary(voters, voters + 1), refused=False)
        elif not mine["name"]:
            out.update(action="join", reason=f"{me} is listed and has never started", refused=False)
            out.update(etcd_membership.summary(voters, voters))
        else:
            out.update(action="none", reason=f"{me} is a voting member", refused=False)
            out.update(etcd_membership.summary(voters, voters))
        return out
    if mine is not None:
        refusal = etcd_membership.removal_refusal(
            listing, healthy, mine["id"], s["membership"]["min_members"], replacing=False
        )
        after = voters - (0 if mine["is_learner"] else 1)
        out.update(action="remove", reason=refusal or f"{me} is no longer in pillar", refused=bool(refusal))
        out.update(etcd_membership.summary(voters, after))
        return out
    here = etcd_node.has_data(s["paths"]["data"]) or __salt__["service.status"](s["service"]["name"])
    out.update(action="retire" if here else "none", refused=False, reason=f"{me} is not a member of the cluster")
    out.update(etcd_membership.summary(voters, voters))
    return out


# etcd's strict reconfiguration check refuses a change until the leader has been
# connected to every voting member for 5 s: right after a join or a restart. Retried.
TRANSIENT = ("unhealthy cluster", "not enough started members", "leader changed", "no leader")


def _reconfigure(change, deadline):
    """Run `change` (a membership request), again while etcd answers with a transient error."""
    while True:
        try:
            return change()
        except etcd_client.EtcdError as exc:
            if not any(t in str(exc) for t in TRANSIENT) or time.monotonic() > deadline:
                raise
        time.sleep(1)


def _promote(s, client, member_id, deadline):
    """Promote a learner; etcd refuses until it is in sync with the leader, so retry."""
    last = None
    while time.monotonic() < deadline:
        try:
            client.member_promote(member_id)
            return None
        except etcd_client.EtcdError as exc:
            last = exc
            # etcd says "can only promote a learner member" once it is one no more (a
            # promotion whose answer was lost), "... which is in sync with leader" before.
            if "can only promote a learner member" in str(exc) and "in sync" not in str(exc):
                return None
        time.sleep(0.5)
    return f"not promoted within {s['membership']['join_timeout']} s: {last}"


def join():
    """
    Bring this pillar member into the running cluster: under the cluster lock, add it as
    a learner through a voting member (unless a half-done add already listed it), start
    etcd with ``initial-cluster-state existing`` and the live member list, wait until it
    caught up, promote it (retried, bounded by ``etcd:membership:join_timeout``), wait
    until it serves. Re-running never adds twice. Returns {joined, comment, ...}.

    CLI Example:

    .. code-block:: bash

        salt etcd4 etcd_membership.join
    """
    s = _settings()
    me = __opts__["id"]
    peer = etcd_topology.peer_url(s, me)
    started = time.monotonic()
    deadline = started + s["membership"]["join_timeout"]

    def work():
        locked_at = time.time()
        got = _join_locked(s, me, peer, started, deadline)
        got["lock_held"] = [round(locked_at, 3), round(time.time(), 3)]  # one change at a time, cluster-wide
        return got

    got = _locked(s, "member-add", lambda text: {"joined": False, "comment": text}, f"{me} did not join", work)
    done = got.pop("joined")
    changes = {"joined": me} if done else {"added": me} if got.get("added") else {}
    return etcd_actions.outcome(__context__, done, got.pop("comment"), changes, joined=done, **got)


def _join_locked(s, me, peer, started, deadline):
    client, listing, healthy = _live(s, me)  # again, under the lock
    mine = etcd_membership.find(listing, me, peer)
    added = False
    if mine is None and etcd_node.has_data(s["paths"]["data"]):
        return {
            "joined": False,
            "comment": f"{s['paths']['data']} holds the data of a member the cluster no longer lists: set it aside "
            f"first (salt {me} etcd_membership.set_aside), a removed member's data is never reused",
        }
    if mine is None:
        # A member that just joined may not have published its name yet, a restarted one
        # may still be coming up: wait for a fully healthy cluster (bounded), never add
        # beside another join in flight.
        refusal = etcd_membership.add_refusal(listing, healthy, me)
        gate = time.monotonic() + s["service"]["health_timeout"]
        while refusal and time.monotonic() < min(gate, deadline):
            time.sleep(0.5)
            client, listing, healthy = _live(s, me)
            refusal = etcd_membership.add_refusal(listing, healthy, me)
        if refusal:
            return {"joined": False, "comment": f"{me} not added: {refusal}"}
        _reconfigure(lambda: client.member_add([peer], learner=True), deadline)
        listing = client.member_list(None)
        mine = etcd_membership.find(listing, me, peer)
        added = True
    etcd_node.write_bootstrap("existing", etcd_membership.initial_cluster(listing, me, peer))
    etcd_node.write_json(etcd_node.started_path(s), etcd_node.wanted(s))
    __salt__["service.start"](s["service"]["name"], no_block=True)
    local = etcd_topology.local_endpoint(s, me)
    timeout = s["membership"]["join_timeout"]
    if mine["is_learner"]:
        if not etcd_leader.caught_up(client, local, max(1.0, deadline - time.monotonic()), learner=True):
            return {
                "joined": False,
                "added": added,
                "comment": f"{me} is a learner but did not start and catch up within {timeout} s "
                f"(journalctl -u {s['service']['name']}); the next apply completes the join",
            }
        problem = _promote(s, client, mine["id"], deadline)
        if problem:
            return {"joined": False, "added": added, "comment": f"{me} {problem}; the next apply promotes it"}
    if not etcd_leader.caught_up(client, local, max(1.0, deadline - time.monotonic())):
        return {"joined": False, "added": added, "comment": f"{me} is a voting member but does not serve yet"}
    while time.monotonic() < deadline:  # started, as the others see it: its name is published
        if (etcd_membership.find(client.member_list(None), me) or {}).get("client_urls"):
            break
        time.sleep(0.1)
    return {
        "joined": True,
        "added": added,
        "comment": f"{me} {'added as a learner, ' if added else ''}started and promoted in "
        f"{time.monotonic() - started:.1f} s",
        "seconds": round(time.monotonic() - started, 2),
        "member_id": etcd_client.member_hex(mine["id"]),
    }


def _set_aside(s):
    """Stop and disable etcd here and move its data dir aside, never to be reused."""
    name = s["service"]["name"]
    out = {}
    # Also "activating": a removed member exits and systemd keeps restarting it.
    state = __salt__["cmd.run"](f"systemctl is-active {name}", ignore_retcode=True, python_shell=False).strip()
    if state not in ("inactive", "failed", "unknown", ""):
        __salt__["service.stop"](name)
        out["stopped"] = name
    if __salt__["service.enabled"](name):
        __salt__["service.disable"](name)
        out["disabled"] = name
    data = s["paths"]["data"]
    if etcd_node.has_data(data):
        aside = f"{data}.removed-{time.strftime('%Y%m%dT%H%M%S')}"
        os.rename(data, aside)
        os.makedirs(data, mode=0o700)
        shutil.chown(data, s["user"], s["group"])
        out["data_set_aside"] = aside
    etcd_node.drop_bootstrap()
    return out


def set_aside():
    """
    Stop and disable etcd on this node and move its data dir to
    ``<data>.removed-<time>`` (a removed member's data is never reused; an empty data
    dir takes its place). For a member already removed from the cluster, or a node that
    replaces a failed member.

    CLI Example:

    .. code-block:: bash

        salt etcd3 etcd_membership.set_aside
    """
    done = _set_aside(_settings())
    return etcd_actions.outcome(
        __context__, True, ", ".join(f"{k} {v}" for k, v in done.items()) or "nothing to set aside", done, **done
    )


def remove(name, replace=False, force=False):
    """
    Remove member ``name`` from the cluster, under the cluster lock and through the
    other voting members. Refused when the healthy voting members left would be fewer
    than a quorum of the current membership, or (unless ``replace``: the member is added
    back right after) fewer than ``etcd:membership:min_members``. With ``replace``, a
    member that serves is refused unless ``force`` (a replacement is for a failed member).
    A leader hands leadership over first. Returns {removed, comment, ...}.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_membership.remove etcd3 replace=True
    """
    got = _remove(name, replace, force)
    ok = bool(got["removed"] or got.get("absent"))  # an orchestration's salt.function stops on False
    return etcd_actions.outcome(__context__, ok, got.pop("comment"), {"removed": name} if got["removed"] else {}, **got)


def _remove(name, replace, force=False):
    s = _settings()
    return _locked(
        s,
        f"member-remove {name}",
        lambda text: {"removed": False, "comment": text},
        f"{name} not removed",
        lambda: _remove_locked(s, name, replace, force),
    )


def _remove_locked(s, name, replace, force=False):
    me = __opts__["id"]
    client, listing, healthy = _live(s, me)
    target = etcd_membership.find(listing, name, _me_peer_url(s, me) if name == me else None)
    if target is None:
        return {"removed": False, "absent": True, "comment": f"{name} is not a member of the cluster: nothing to do"}
    refusal = etcd_membership.removal_refusal(
        listing, healthy, target["id"], s["membership"]["min_members"], replacing=replace, force=force
    )
    if refusal:
        return {"removed": False, "refused": True, "comment": f"{name} not removed: {refusal}"}
    voters = len(etcd_membership.voting(listing))
    leader_id, leader_url = etcd_leader.find(client, listing)
    if leader_id == target["id"]:
        problem = etcd_leader.hand_over(client, listing, leader_id, leader_url)
        if problem:
            return {"removed": False, "comment": f"{name} is the leader and kept it: {problem}"}
    others = [m["client_urls"][0] for m in etcd_membership.voting(listing) if m["id"] != target["id"]]
    via = etcd_topology.client(s, me, [u for u in others if u])
    _reconfigure(lambda: via.member_remove(target["id"]), time.monotonic() + s["service"]["health_timeout"])
    after = voters - (0 if target["is_learner"] else 1)
    return {
        "removed": True,
        "comment": f"removed {name} ({etcd_client.member_hex(target['id'])}): voting members {voters} -> {after}",
        "member_id": etcd_client.member_hex(target["id"]),
        **etcd_membership.summary(voters, after),
    }


def leave(in_pillar=False):
    """
    This minion is no longer in the site pillar: remove its member from the cluster
    (``remove``, with its quorum and ``min_members`` rules), then stop and disable etcd
    here and set its data dir aside (``set_aside``). ``in_pillar``: leave although
    pillar still lists it (etcd.clean, forced). Returns {left, comment, ...}.

    CLI Example:

    .. code-block:: bash

        salt etcd5 etcd_membership.leave
    """
    s = _settings()
    me = __opts__["id"]
    if me in s["members"] and not in_pillar:
        return etcd_actions.outcome(
            __context__, False, f"{me} is in pillar (etcd:members): remove it there first", left=False
        )
    got = _remove(me, False)
    if not got["removed"] and not got.get("absent"):
        return etcd_actions.outcome(__context__, False, got["comment"], left=False)
    local = _set_aside(s)
    changes = dict({"removed": me} if got["removed"] else {}, **local)
    return etcd_actions.outcome(__context__, True, got["comment"], changes, left=True, removal=got, local=local)
