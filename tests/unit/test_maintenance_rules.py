"""The rules of maintenance, read as a specification: which members a defragmentation
visits and in what order, and when a NOSPACE alarm may be disarmed.

The lab runs both on a real cluster (tests/integration/test_maintenance.py)."""

import etcd_maintenance
import pytest
from test_settings import check, with_

MiB = 1024**2


def row(name, leader=False, serving=True, size=100, in_use=100):
    return {
        "name": name,
        "leader": leader,
        "serving": serving,
        "status": {"db_size": size * MiB, "db_size_in_use": in_use * MiB},
    }


@pytest.mark.parametrize(
    ("rows", "threshold", "force", "order"),
    [
        (
            [row("etcd1", leader=True, in_use=10), row("etcd2", in_use=10), row("etcd3", in_use=10)],
            50,
            False,
            ["etcd2", "etcd3", "etcd1"],
        ),
        (
            [row("etcd1", in_use=90), row("etcd2", leader=True, in_use=10), row("etcd3", size=200, in_use=98)],
            50,
            False,
            ["etcd3", "etcd2"],
        ),
        ([row("etcd1", in_use=60), row("etcd2", in_use=80)], 50, False, []),  # nothing worth it
        ([row("etcd1", in_use=60), row("etcd2", leader=True, in_use=80)], 50, True, ["etcd1", "etcd2"]),  # forced
        ([row("etcd1", serving=False, in_use=1), row("etcd2", in_use=1)], 50, False, ["etcd2"]),  # down: skipped
        ([row("etcd1", size=0, in_use=0)], 50, False, []),  # an empty file: 100 % in use
        ([row("etcd1", size=70, in_use=1), row("etcd2", size=60, in_use=1)], 50, False, ["etcd1"]),  # etcd2 frees <64
        ([row("etcd1", size=1, in_use=0)], 50, True, ["etcd1"]),  # forced: small files too
    ],
)
def test_defragmentation_visits_followers_first_and_only_when_it_frees_space(rows, threshold, force, order):
    assert etcd_maintenance.defrag_order(rows, threshold, force, min_free=64 * MiB) == order


@pytest.mark.parametrize(
    ("sizes", "margin", "disarm"),
    [
        ({"etcd1": 10 * MiB, "etcd2": 11 * MiB}, 20, True),  # well below the 16 MiB quota
        ({"etcd1": 10 * MiB, "etcd2": 13 * MiB}, 20, False),  # above 80 % of it: would fill again
        ({"etcd1": 12 * MiB}, 30, False),
        ({"etcd1": None}, 20, False),  # a member that did not say: never disarm blind
    ],
)
def test_nospace_is_disarmed_only_with_room_to_spare(sizes, margin, disarm):
    problem = etcd_maintenance.disarm_verdict(sizes, 16 * MiB, margin)
    assert (problem is None) is disarm
    if problem:
        assert "quota_backend_bytes" in problem and "MiB" in problem


@pytest.mark.parametrize(
    ("arg", "bad", "key"),
    [
        ("maintenance__interval", 1, "maintenance:interval"),
        ("maintenance__defrag_in_use_pct", 0, "maintenance:defrag_in_use_pct"),
        ("maintenance__defrag_min_free_mib", -1, "maintenance:defrag_min_free_mib"),
        ("maintenance__nospace_margin_pct", 95, "maintenance:nospace_margin_pct"),
        ("maintenance__disarm_nospace", "yes", "maintenance:disarm_nospace"),
        ("maintenance", "daily", "maintenance"),
    ],
)
def test_bad_maintenance_pillar_is_named(arg, bad, key):
    report = check(with_(**{arg: bad}))
    assert not report["valid"] and f"etcd:{key}" in [e["key"] for e in report["errors"]], report["errors"]


@pytest.mark.parametrize(
    ("rows", "clearer"),
    [
        ([row("etcd2"), row("etcd1", leader=True), row("etcd3")], "etcd1"),
        ([row("etcd1", serving=False), row("etcd3"), row("etcd2")], "etcd2"),  # the first that serves
        ([row("etcd1", serving=False)], None),
    ],
)
def test_one_member_by_name_clears_nospace(rows, clearer):
    assert etcd_maintenance.nospace_clearer(rows) == clearer
