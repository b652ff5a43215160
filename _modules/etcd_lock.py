"""The cluster lock for maintenance by hand (defragmentation, OS work on a node): the same
lock in etcd that guarded restarts and membership changes take, so they wait for it.

Actions return ``{result, comment, changes}`` and set a non-zero retcode when they refuse.
"""

import etcd_fresh

# One shared copy of each synced _utils module, all replaced after a sync (etcd_fresh).
(etcd_actions, etcd_lock, etcd_topology) = etcd_fresh.load("etcd_actions", "etcd_lock", "etcd_topology")

__virtualname__ = "etcd_lock"


def __virtual__():
    return __virtualname__


def _client(s):
    return etcd_topology.client(s, __opts__["id"])


def lock(purpose="maintenance", ttl=3600, wait=0):
    """
    Take the cluster lock (held in etcd on a lease, so it expires ``ttl`` seconds after
    it was taken if nobody releases it), for work that must not overlap a guarded
    restart or a membership change: defragmentation, OS maintenance. Those wait for it
    (``etcd:service:lock_wait``). Waits ``wait`` seconds for a holder to let go.

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_lock.lock purpose='kernel update etcd1' ttl=1800
    """
    s = __salt__["etcd_cluster.live_settings"]()
    held = etcd_lock.Lock(_client(s), s["cluster"]["name"], __opts__["id"], int(ttl), float(wait), purpose=purpose)
    try:
        held.acquire()
    except etcd_lock.LockTimeout as exc:
        return etcd_actions.outcome(__context__, False, str(exc), locked=False)
    me = __opts__["id"]
    return etcd_actions.outcome(
        __context__,
        True,
        f"{me} holds the cluster lock for {int(ttl)} s ({purpose})",
        {"lock": {"holder": me, "purpose": purpose}},
        locked=True,
        holder=me,
        purpose=purpose,
        lease=f"{held.lease:x}",
        ttl=int(ttl),
    )


def holder():
    """
    Who holds the cluster lock, for what, since when, and for how much longer (None when free).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_lock.holder
    """
    s = __salt__["etcd_cluster.live_settings"]()
    return etcd_lock.holder(_client(s), s["cluster"]["name"])


def unlock(force=False):
    """
    Release the cluster lock this minion holds; ``force=True`` releases anyone's (a
    holder that is gone for good; its lease would expire anyway).

    CLI Example:

    .. code-block:: bash

        salt etcd1 etcd_lock.unlock
    """
    s = __salt__["etcd_cluster.live_settings"]()
    client = _client(s)
    held = etcd_lock.holder(client, s["cluster"]["name"])
    if held is None:
        # Nothing to release is no failure: the wanted end state holds.
        return etcd_actions.outcome(__context__, True, "the cluster lock is free", unlocked=False)
    who = f"{held.get('holder')} ({held.get('purpose')})"
    if held.get("holder") != __opts__["id"] and not force:
        return etcd_actions.outcome(__context__, False, f"held by {who}: force=True", unlocked=False)
    client.lease_revoke(held["lease"])
    return etcd_actions.outcome(
        __context__, True, f"released the lock {who} held", {"lock": {"released": held.get("holder")}}, unlocked=True
    )
