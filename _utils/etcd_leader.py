"""The leader of a live cluster: who it is, handing leadership over, waiting to catch up.

Shared by the guarded restart (the leader goes last and hands over first) and by
membership changes (a leaving leader hands over before it is removed; a new member is
promoted once it has applied what the leader committed).
"""

import time

import etcd_client


def status(client, url):
    """A member's status, or None when it does not answer."""
    try:
        return client.status(url)
    except etcd_client.EtcdError:
        return None


def find(client, listing):
    """(leader id, its client URL), as the first member that answers reports it."""
    for m in listing["members"]:
        for url in m["client_urls"][:1]:
            st = status(client, url)
            if st and st["leader"]:
                leader = next((x for x in listing["members"] if x["id"] == st["leader"]), None)
                return st["leader"], (leader["client_urls"] or [None])[0] if leader else None
    return None, None


def hand_over(client, listing, leader_id, leader_url, wait=10.0):
    """Move leadership from `leader_id` (asked at `leader_url`) to the most caught-up other
    voting member. None when it moved, else why not."""
    best, best_index, skipped = None, -1, []
    for m in listing["members"]:
        if m["id"] == leader_id or m["is_learner"] or not m["client_urls"]:
            continue
        st = status(client, m["client_urls"][0])
        if st is None:
            skipped.append(m["name"])
            continue
        if st["raft_applied_index"] > best_index:
            best, best_index = m, st["raft_applied_index"]
    if best is None:
        return f"no caught-up voting member to hand leadership to (not answering: {', '.join(skipped) or 'none'})"
    try:
        client.transfer_leadership(best["id"], leader_url)
    except etcd_client.EtcdError as exc:
        return f"handing leadership to {best['name']} failed: {exc}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        st = status(client, leader_url)
        if st and st["leader"] and st["leader"] != leader_id:
            return None
        time.sleep(0.1)
    return f"leadership did not move within {wait:.0f} s"


def caught_up(client, local, timeout, learner=False, give_up=None):
    """Wait, bounded, until the member at `local` answers and has applied what the leader
    had committed when it first answered. A learner does not serve /health: its status
    is enough. `give_up`: called each round; a true answer ends the wait (False), e.g.
    etcd_journal.CrashWatch when the member crash-loops."""
    deadline = time.monotonic() + timeout
    target = None
    while time.monotonic() < deadline:
        if give_up and give_up():
            return False
        if learner or client.health(local):
            if target is None:
                st = status(client, local)
                listing = client.member_list(None) if st else None
                _, leader_url = find(client, listing) if listing else (None, None)
                lst = status(client, leader_url) if leader_url else None
                target = lst["raft_index"] if lst else None
            st = status(client, local)
            if st and target is not None and st["raft_applied_index"] >= target:
                return True
        time.sleep(0.1)
    return False
