"""Maintenance through Salt's real loader against a real etcd (one TLS member run as a
plain process by the test): defragmentation under the cluster lock, the scheduled run
once per interval, and a held lock respected. Several members, the leader's hand-over and
NOSPACE are proven in the lab (tests/integration/test_maintenance.py)."""

import sys
import time

import pytest

from labkit.preflight import REPO

sys.path.insert(0, str(REPO / "_utils"))
import etcd_keys  # noqa: E402
import etcd_lock  # noqa: E402
import etcd_topology  # noqa: E402

ME = "functional"
KiB = 1024


@pytest.fixture
def member(etcd_tls_member, set_pillar, loaders):
    site = etcd_tls_member.site()
    # fill_and_free gives back about 12 MiB: below the 64 MiB a site defragments for.
    site["etcd"]["maintenance"] = {"defrag_min_free_mib": 8}
    set_pillar(site)
    return etcd_tls_member


def test_a_file_that_would_give_back_too_little_is_left_alone(etcd_tls_member, set_pillar, loaders):
    set_pillar(etcd_tls_member.site())  # the default: 64 MiB
    c = client(loaders)
    fill_and_free(c)
    status = c.status(f"https://127.0.0.1:{etcd_tls_member.client_port}")
    assert status["db_size_in_use"] < status["db_size"] / 2  # the share rule alone would defragment
    got = loaders.modules.etcd_maintenance.defrag()
    assert got["result"] is True and got["comment"] == "no member needs a defragmentation", got
    assert etcd_lock.holder(c, "functional") is None


def client(loaders):
    return etcd_topology.client(loaders.modules.etcd_cluster.settings(), ME, timeout=10)


def fill_and_free(c):
    for i in range(200):
        c.put(f"/bulk/{i}", "z" * (64 * KiB))
    for i in range(200):
        c.delete(f"/bulk/{i}")
    c.compact(c.revision())
    c.put("/tick", "1")  # bbolt counts freed pages once a later write commits
    time.sleep(0.5)


def test_a_forced_defragmentation_gives_the_space_back_and_frees_the_lock(member, loaders):
    c = client(loaders)
    fill_and_free(c)
    url = f"https://127.0.0.1:{member.client_port}"
    before = c.status(url)["db_size"]
    got = loaders.modules.etcd_maintenance.defrag(force=True)
    assert got["result"] is True, got
    (visit,) = got["defragmented"]
    assert visit["name"] == ME and visit["before"] == before and visit["after"] < before / 2, visit
    assert etcd_lock.holder(c, "functional") is None


def test_the_scheduled_run_defragments_once_per_interval(member, loaders):
    c = client(loaders)
    fill_and_free(c)
    first = loaders.modules.etcd_maintenance.scheduled()
    assert first["action"] == "done" and first.get("defragmented", [{}])[0].get("name") == ME, first
    again = loaders.modules.etcd_maintenance.scheduled()
    assert again["action"] == "done" and "is done" in again["comment"], again
    assert c.get_prefix(etcd_keys.prefix("functional") + "/maintenance/defrag/")


def test_a_held_lock_is_waited_for_and_nothing_is_defragmented(member, loaders):
    c = client(loaders)
    with etcd_lock.Lock(c, "functional", "etcd9", ttl=10, wait=2.0, purpose="restart"):
        got = loaders.modules.etcd_maintenance.scheduled()
    assert got["action"] == "busy" and "etcd9" in got["comment"], got
    assert not c.get_prefix(etcd_keys.prefix("functional") + "/maintenance/defrag/")


def test_a_nospace_alarm_with_room_to_spare_is_cleared(member, loaders):
    c = client(loaders)
    member_id = int(loaders.modules.etcd_cluster.members()["members"][0]["id"], 16)
    c.post("/v3/maintenance/alarm", {"action": "ACTIVATE", "memberID": str(member_id), "alarm": "NOSPACE"})
    assert [a["alarm"] for a in c.alarms()] == ["NOSPACE"]
    got = loaders.modules.etcd_maintenance.scheduled()
    assert got["result"] is True and got["disarmed"] == [ME], got
    assert c.alarms() == [] and got["compacted_to"] >= 1
    c.put("/after", "ok")
