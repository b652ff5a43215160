"""The quorum rules of membership changes, on member lists shaped as the cluster returns them.

The lab tests make the same changes on real clusters (tests/integration/test_membership.py).
"""

import etcd_membership
import pytest


def member(i, learner=False, started=True):
    return {
        "id": i,
        "name": f"etcd{i}" if started else "",
        "peer_urls": [f"http://10.0.0.{i}:2380"],
        "client_urls": [f"http://10.0.0.{i}:2379"] if started else [],
        "is_learner": learner,
    }


def listing(*members):
    return {"cluster_id": 99, "members": list(members)}


FIVE = listing(*(member(i) for i in range(1, 6)))
THREE = listing(*(member(i) for i in range(1, 4)))


@pytest.mark.parametrize(
    ("cluster", "healthy", "target", "min_members", "refused"),
    [
        (FIVE, {1, 2, 3, 4, 5}, 5, 3, None),  # 5 -> 4
        (FIVE, {1, 2, 3, 4}, 5, 3, None),  # the dead one goes: 4 healthy left, quorum of 5 is 3
        (FIVE, {1, 2, 5}, 5, 3, "would leave 2 healthy voting members; a quorum of the current 5 is 3"),
        (THREE, {1, 2, 3}, 3, 3, "would leave 2 voting members, fewer than etcd:membership:min_members (3)"),
        (THREE, {1, 2, 3}, 3, 2, None),  # min_members 2 allows 3 -> 2
        (THREE, {1, 3}, 3, 2, "would leave 1 healthy voting members; a quorum of the current 3 is 2"),
    ],
)
def test_removal_keeps_quorum_and_min_members(cluster, healthy, target, min_members, refused):
    got = etcd_membership.removal_refusal(cluster, healthy, target, min_members)
    assert (got is None) if refused is None else (refused in got), got


def test_replacing_a_dead_member_ignores_min_members_but_never_quorum():
    # etcd3 died in a 3-member cluster: removing it leaves 2, fewer than min_members,
    # but it comes straight back; quorum of 3 (2) is still served by etcd1 and etcd2.
    assert etcd_membership.removal_refusal(THREE, {1, 2}, 3, 3, replacing=True) is None
    assert "quorum" in etcd_membership.removal_refusal(THREE, {1}, 3, 3, replacing=True)


@pytest.mark.parametrize(
    ("healthy", "force", "refused"),
    [
        ({1, 2, 3}, False, "etcd3 is started and serves"),  # run by mistake on a healthy member
        ({1, 2, 3}, True, None),  # the operator insists: quorum still holds
        ({1, 2}, False, None),  # the member has failed: what replace is for
        ({1}, True, "quorum"),  # forced never overrides quorum
    ],
)
def test_replace_refuses_a_healthy_member_unless_forced(healthy, force, refused):
    got = etcd_membership.removal_refusal(THREE, healthy, 3, 3, replacing=True, force=force)
    assert (got is None) if refused is None else (refused in got), got


def test_a_learner_is_removed_freely():
    cluster = listing(member(1), member(2), member(3), member(4, learner=True, started=False))
    assert etcd_membership.removal_refusal(cluster, {1}, 4, 3) is None


def test_add_needs_a_fully_healthy_cluster_and_no_other_join_in_flight():
    assert etcd_membership.add_refusal(THREE, {1, 2, 3}, "etcd4") is None
    assert "etcd3 do not serve" in etcd_membership.add_refusal(THREE, {1, 2}, "etcd4")
    half = listing(*THREE["members"], member(4, learner=True, started=False))
    assert "still joining" in etcd_membership.add_refusal(half, {1, 2, 3}, "etcd5")
    # ... but it is no obstacle to etcd4 itself finishing its own join.
    named = listing(*THREE["members"], member(4, learner=True))
    assert etcd_membership.add_refusal(named, {1, 2, 3}, "etcd4") is None


def test_initial_cluster_names_exactly_the_live_members_and_the_newcomer():
    cluster = listing(*THREE["members"], member(4, learner=True, started=False))
    got = etcd_membership.initial_cluster(cluster, "etcd4", "http://10.0.0.4:2380")
    assert got.split(",") == [f"etcd{i}=http://10.0.0.{i}:2380" for i in range(1, 5)]


def test_find_by_name_or_by_the_peer_url_of_a_never_started_member():
    cluster = listing(*THREE["members"], member(4, learner=True, started=False))
    assert etcd_membership.find(cluster, "etcd2")["id"] == 2
    assert etcd_membership.find(cluster, "etcd4") is None
    assert etcd_membership.find(cluster, "etcd4", "http://10.0.0.4:2380")["id"] == 4


def test_summary_reports_quorum_before_and_after():
    assert etcd_membership.summary(3, 4) == {
        "voters_before": 3,
        "quorum_before": 2,
        "voters_after": 4,
        "quorum_after": 3,
        "failures_tolerated_after": 1,
    }


@pytest.mark.parametrize(
    ("action", "force", "whole", "step", "why"),
    [
        ("remove", False, False, "refuse", "refuses to take a live member out"),  # a member: never by default
        ("remove", False, True, "refuse", '"force": true'),  # whole_cluster alone is not enough
        ("remove", True, False, "leave", None),  # forced: the guarded removal first (lock, quorum, min_members)
        ("remove", True, True, "stop", None),  # tearing the cluster down: no removal, just stop
        ("unknown", True, False, "refuse", "never takes a member out blind"),  # nobody answers
        ("unknown", True, True, "stop", None),  # ... unless the whole cluster goes on purpose
        ("retire", False, False, "stop", None),  # removed already: etcd and its data still here
        ("none", False, False, "nothing", None),  # nothing of etcd here
    ],
)
def test_clean_takes_a_member_out_only_when_forced(action, force, whole, step, why):
    got, reason = etcd_membership.clean_step(action, force, whole)
    assert got == step, (got, reason)
    assert (reason is None) if why is None else (why in reason), reason
