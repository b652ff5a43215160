"""Backups on real nodes with the README's example site (TLS, health schedule on): the
schedule, the copy to the master's store, retention, the health report, a damaged copy,
and disaster recovery of every member from one verified snapshot.

A 20 s interval (each member checks every 10 s), so that several intervals pass in a test.
"""

import hashlib
import json
import os
import stat
import time
from pathlib import Path

import pytest
import yaml
from results import MEMBERS, changed, form_cluster, host_client_bundle, ok, tear_down, tls_site

from labkit import s3
from labkit.traffic import Traffic, assert_no_loss, etcd_client, urls

CLUSTER = "backuplab"
INTERVAL = 20


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    lab.salt("ca1", "saltutil.sync_all")
    site = tls_site(lab, CLUSTER, MEMBERS)
    site["etcd"]["backup"] = {"interval": INTERVAL, "splay": 0, "keep": 2, "store_keep": 3}
    ok(lab.apply("ca1", sls="etcd.ca")["ca1"])
    form_cluster(lab, site)
    lab.writer_tls = host_client_bundle(lab, tmp_path_factory.mktemp("bundle"))
    lab.store = lab.state.dir / "backups" / CLUSTER
    yield lab
    # test_formula, next in file order, starts from nodes where etcd never ran.
    tear_down(lab, MEMBERS)


def store_records(lab):
    return {p.name[:-5]: json.loads(p.read_text()) for p in lab.store.glob("*.json")}


def run_json(lab, *args, timeout=300):
    out, err = lab.salt_run(*args, "--out=json", timeout=timeout)
    try:
        return json.loads(out)
    except ValueError as exc:
        raise AssertionError(out + err) from exc


def cluster_id(lab):
    return lab.salt("etcd1", "etcd_cluster.members")["etcd1"]["cluster_id"]


def leader(lab):
    return lab.salt("etcd1", "etcd_health.health")["etcd1"]["leader"]


def test_one_follower_snapshots_each_interval_and_the_master_verifies_the_copy(cluster, event_listener):
    after = time.time()
    led = leader(cluster)
    time.sleep(3.5 * INTERVAL)
    events = event_listener.get_events([(cluster.master.id, f"etcd/{CLUSTER}/backup/*")], after_time=after)
    done = [e.data for e in events if e.tag.endswith("/done")]
    assert not [e.data for e in events if e.tag.endswith("/failed")]
    slots = [d["data"]["slot"] for d in done]
    # Exactly one snapshot per interval: no interval twice, none skipped.
    assert len(slots) >= 3 and len(set(slots)) == len(slots), slots
    assert sorted(slots) == list(range(min(slots), max(slots) + 1)), slots
    takers = sorted(d["id"] for d in done)
    assert set(takers) <= set(MEMBERS), takers
    print(f"backups: {len(slots)} intervals, one snapshot each, taken by {takers}; leader {led}")
    # The leader leaves the snapshot to its healthy followers, once they have had a look:
    # in the first interval after the job is installed every member looks at the same
    # moment, and the leader may win that one.
    by_slot = {d["data"]["slot"]: d["id"] for d in done}
    if leader(cluster) == led:
        assert led not in [by_slot[s] for s in sorted(by_slot)[1:]], (led, by_slot)
    assert all(d["data"]["off_node"] and d["data"]["stored_sha256"] == d["data"]["sha256"] for d in done)
    # The store: per cluster, 0600 files in a 0700 directory, sha256 as recorded, retention 3.
    records = store_records(cluster)
    assert 1 <= len(records) <= 3, sorted(records)
    assert stat.S_IMODE(cluster.store.stat().st_mode) == 0o700
    for name, rec in records.items():
        path = cluster.store / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["sha256"] and rec["verified"] is True
        assert rec["member"] in MEMBERS and rec["cluster"] == CLUSTER
    # Nothing left in the minions' cache on the master (salt-key -d would delete it).
    cache = cluster.master.config["cachedir"]
    assert not list(Path(cache).glob("minions/*/files/etcd-backups/*/*")), "left in the cache"
    # Retention on the members: at most `keep` each.
    for name in MEMBERS:
        kept = cluster.salt(name, "etcd_backup.snapshots")[name]
        assert len(kept) <= 2, kept
    # The runner's table and JSON, and the health report's backup age.
    # The schedule keeps running: the store read just before and just after the runner
    # brackets what it may list (an interval can end in between).
    before = sorted(store_records(cluster), reverse=True)
    rows = run_json(cluster, "etcd.backups", CLUSTER, "verify=True")
    listed = [r["name"] for r in rows]
    assert listed in (before, sorted(store_records(cluster), reverse=True)), (listed, before)
    assert all(r["verified"] for r in rows), rows
    table, _ = cluster.salt_run("etcd.backups", CLUSTER)
    newest = {listed[0], sorted(store_records(cluster))[-1]}
    assert "VERIFIED" in table and any(name in table for name in newest), table
    report = cluster.salt("etcd2", "etcd_health.health")["etcd2"]
    assert "backup_stale" not in [r["code"] for r in report["reasons"]], report["reasons"]
    # The newest copy the report names may be newer than `records` (the schedule runs on:
    # CI at aa82ce1 saw one taken after the read): it is in the store once it is pushed.
    deadline = time.monotonic() + INTERVAL
    while report["backup"]["name"] not in store_records(cluster) and time.monotonic() < deadline:
        time.sleep(1)
    assert report["backup"]["name"] in store_records(cluster), (report["backup"], sorted(store_records(cluster)))
    assert time.time() - report["backup"]["time"] < 2 * INTERVAL


def test_when_the_followers_fail_the_leader_takes_the_interval(cluster, event_listener):
    """Both followers' snapshots fail (a 4 KiB filesystem under their backup dir): each
    records the failure and frees its claim, does not claim that interval again, and the
    leader takes every interval once both have failed it (or in its last check period)."""
    led = leader(cluster)
    followers = [m for m in MEMBERS if m != led]
    where = cluster.salt(led, "etcd_cluster.settings")[led]["backup"]["dir"]
    try:
        for name in followers:
            cluster.exec(name, "mount", "-t", "tmpfs", "-o", "size=4k,mode=0700", "tmpfs", where)
        after = time.time()
        time.sleep(2.5 * INTERVAL)
        events = event_listener.get_events([(cluster.master.id, f"etcd/{CLUSTER}/backup/*")], after_time=after)
    finally:
        for name in followers:
            cluster.exec(name, "umount", where)
    assert leader(cluster) == led, "the leader changed during the test"
    failed = [e.data for e in events if e.tag.endswith("/failed")]
    done = [e.data for e in events if e.tag.endswith("/done")]
    assert failed and {f["id"] for f in failed} <= set(followers), failed
    assert all("MiB free" in f["data"]["error"] for f in failed), failed
    tries = [(f["id"], f["data"]["slot"]) for f in failed]
    assert len(set(tries)) == len(tries), f"a follower claimed an interval it had failed again: {tries}"
    slots = [d["data"]["slot"] for d in done]
    assert len(slots) >= 2 and len(set(slots)) == len(slots), slots
    assert {d["id"] for d in done} == {led}, done
    # The leader took each interval only once both followers had failed it, or in its last
    # check period (a follower that had not looked yet).
    waits = INTERVAL - cluster.salt(led, "etcd_backup.check_seconds")[led]
    failed_in = {s: {m for m, t in tries if t == s} for s in slots}
    phases = [round(d["data"]["time"] % INTERVAL, 1) for d in done]
    early = [d["data"]["slot"] for d in done if d["data"]["time"] % INTERVAL < waits]
    assert all(failed_in[s] == set(followers) for s in early), (failed_in, phases)
    print(
        f"backups with failing followers: {len(failed)} failures from {sorted({f['id'] for f in failed})}, "
        f"{len(slots)} intervals taken by the leader {led} at {phases} s into them"
    )


def test_a_non_member_cannot_store_a_backup(cluster):
    # etcd4 has the site's pillar but is not one of its members.
    name = f"{CLUSTER}-20261206T000000Z-r1.db"
    cluster.exec(
        "etcd4", "bash", "-c", f"mkdir -p /tmp/fake && echo x > /tmp/fake/{name} && echo {{}} > /tmp/fake/{name}.json"
    )
    for suffix in ("", ".json"):
        pushed = cluster.salt(
            "etcd4", "cp.push", f"/tmp/fake/{name}{suffix}", f"upload_path=/etcd-backups/{CLUSTER}/{name}{suffix}"
        )
        assert pushed["etcd4"] is True, pushed
    answer = cluster.salt("etcd4", "publish.runner", "etcd_store.accept", f"arg=[{CLUSTER}, {name}]")["etcd4"]
    assert answer["result"] is False and "not a member of backuplab" in answer["comment"], answer
    assert not (cluster.store / name).exists()
    leftovers = list(
        __import__("pathlib")
        .Path(cluster.master.config["cachedir"])
        .glob(f"minions/etcd4/files/etcd-backups/{CLUSTER}/*")
    )
    assert leftovers == [], leftovers  # the refused push is deleted


def test_restore_brings_back_every_acknowledged_write(cluster):
    with Traffic(urls(cluster, MEMBERS, "https"), "before", tls=cluster.writer_tls) as before:
        time.sleep(3)
    taken = run_json(cluster, "etcd.backup", CLUSTER, timeout=120)
    assert taken["result"] is True and taken["member"] != "", taken
    snapshot = taken["name"]
    with Traffic(urls(cluster, MEMBERS, "https"), "after", tls=cluster.writer_tls) as after_snap:
        time.sleep(2)
    old_id = cluster_id(cluster)
    pillar = json.dumps({"etcd": {"restore": {"cluster": CLUSTER, "snapshot": snapshot}}})
    # Members still serve: refused, nothing changes.
    out, err = cluster.salt_run("state.orch", "etcd.orch.restore", f"pillar={pillar}", timeout=300)
    assert "still serve" in out and "Failed:    1" in out, out + err
    assert cluster_id(cluster) == old_id
    # Every member's data is lost.
    for name in MEMBERS:
        cluster.exec(name, "systemctl", "stop", "etcd", check=True)
        cluster.exec(name, "rm", "-rf", "/var/lib/etcd/member", check=True)
    out, err = cluster.salt_run("state.orch", "etcd.orch.restore", f"pillar={pillar}", "test=True", timeout=300)
    assert f"would restore {snapshot}" in out and "Failed:    0" in out, out + err
    assert all(cluster.exec(n, "test", "-d", "/var/lib/etcd/member").returncode != 0 for n in MEMBERS)
    started = time.monotonic()
    out, err = cluster.salt_run("state.orch", "etcd.orch.restore", f"pillar={pillar}", timeout=600)
    seconds = time.monotonic() - started
    assert "Failed:    0" in out, out + err
    acked = assert_no_loss(cluster, before)  # every write acknowledged before the snapshot, hashkv equal
    c = etcd_client.Client(urls(cluster, MEMBERS, "https"), 2, *cluster.writer_tls)
    assert c.get_prefix("/roll/after/", keys_only=True) == {}  # the revision went back to the snapshot's
    new_id = cluster_id(cluster)
    assert new_id != old_id
    for name in MEMBERS:
        assert cluster.salt(name, "etcd_cluster.recorded_cluster_id")[name] == new_id
        assert cluster.exec(name, "bash", "-c", "ls -d /var/lib/etcd.before-restore-*").returncode == 0
    ret = cluster.apply(MEMBERS)
    for name in MEMBERS:
        assert changed(ok(ret[name])) == [], ret[name]
    print(
        f"restore: {acked} writes acknowledged before the snapshot, all read back; "
        f"{len(after_snap.acked)} written after it gone with the revision; orchestration {seconds:.1f} s"
    )


def test_a_damaged_copy_is_reported_and_never_restored(cluster):
    records = store_records(cluster)
    newest = sorted(records)[-1]
    path = cluster.store / newest
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    rows = {r["name"]: r for r in run_json(cluster, "etcd.backups", CLUSTER, "verify=True")}
    assert rows[newest]["verified"] is False
    old_id = cluster_id(cluster)
    pillar = json.dumps({"etcd": {"restore": {"cluster": CLUSTER, "snapshot": newest, "force": True}}})
    out, err = cluster.salt_run("state.orch", "etcd.orch.restore", f"pillar={pillar}", timeout=300)
    assert "is damaged" in out and "Failed:    1" in out, out + err
    assert cluster_id(cluster) == old_id
    assert cluster.salt("etcd1", "etcd_health.healthy")["etcd1"]["healthy"] is True


def _one_damaged(lab, records):
    """The store's one damaged copy: the previous test's, or, if retention pruned that one
    since, the newest copy damaged here."""
    bad = [n for n, r in records.items() if hashlib.sha256((lab.store / n).read_bytes()).hexdigest() != r["sha256"]]
    if not bad:
        victim = lab.store / sorted(records)[-1]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] = (data[len(data) // 2] + 1) % 256
        victim.write_bytes(bytes(data))
        bad = [victim.name]
    assert len(bad) == 1, bad
    return bad[0]


def test_copies_go_to_s3_sealed_and_come_back(cluster, tmp_path):
    """The master's store to an S3-compatible server (moto), through Salt's S3 client:
    sealed, read back and compared, idempotent; a damaged copy is not uploaded; a copy
    fetched back after the store lost it is what was stored; a damaged object is refused."""
    import salt.utils.s3

    key_file = tmp_path / "s3.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o600)
    drop_in = Path(cluster.master.config_dir) / "master.d" / "etcd-s3.conf"
    with s3.server(tmp_path / "moto.log") as endpoint:
        conf = {
            "endpoint": endpoint, "bucket": "etcd-backups", "keyid": "testing", "key": "testing",
            "encryption_key_file": str(key_file), "https": False, "path_style": True,
        }  # fmt: skip
        ask = {"key": "testing", "keyid": "testing", "service_url": endpoint, "bucket": "etcd-backups"}
        ask.update(path_style=True, https_enable=False, location="us-east-1")
        salt.utils.s3.query(method="PUT", **ask)  # the bucket
        drop_in.parent.mkdir(exist_ok=True)
        drop_in.write_text(yaml.safe_dump({"etcd_backup_s3": conf}))
        # The schedule would add and prune copies meanwhile (store_keep 3): held still here.
        for member in MEMBERS:
            cluster.salt(member, "schedule.disable_job", "etcd-backup")
        try:
            records = store_records(cluster)
            damaged = _one_damaged(cluster, records)
            out = run_json(cluster, "etcd_s3.sync", f"cluster={CLUSTER}")
            assert [f["name"] for f in out["failed"]] == [damaged] and "damaged" in out["failed"][0]["error"], out
            # The schedule keeps taking snapshots meanwhile: new copies may join a sync.
            assert set(records) - {damaged} <= set(out["uploaded"]), out
            again = run_json(cluster, "etcd_s3.sync", f"cluster={CLUSTER}")
            assert not set(again["uploaded"]) & set(out["uploaded"]), again  # each copy once
            name = out["uploaded"][0]
            rec = store_records(cluster)[name]["s3"]
            assert rec["verified"] is True and rec["object"] == f"{CLUSTER}/{name}.enc", rec
            plain = (cluster.store / name).read_bytes()
            sealed = salt.utils.s3.query(method="GET", path=rec["object"], return_bin=True, **ask)
            assert sealed.startswith(b"EFS3") and b"/etcd-formula/" in plain and b"/etcd-formula/" not in sealed
            assert hashlib.sha256(sealed).hexdigest() == rec["sha256"]
            rows = {r["name"]: r for r in run_json(cluster, "etcd.backups", CLUSTER)}
            assert rows[name]["s3"] == rec["object"] and rows[damaged]["s3"] is None, rows
            # The store loses the copy: fetched back, the same bytes, 0600.
            stored = cluster.store / name
            aside = tmp_path / "aside"
            stored.rename(aside)
            (cluster.store / (name + ".json")).unlink()
            got = run_json(cluster, "etcd_s3.fetch", CLUSTER, name)
            assert got["result"] is True, got
            assert stored.read_bytes() == aside.read_bytes() and stat.S_IMODE(stored.stat().st_mode) == 0o600
            assert store_records(cluster)[name]["verified"] is True
            # A damaged object does not open: refused, the store as it was.
            bad = tmp_path / "bad"
            bad.write_bytes(sealed[:-40] + bytes(40))
            salt.utils.s3.query(method="PUT", path=rec["object"], local_file=str(bad), **ask)
            refused = run_json(cluster, "etcd_s3.fetch", CLUSTER, name)
            assert refused["result"] is False and "does not open" in refused["comment"], refused
            assert stored.read_bytes() == aside.read_bytes()
            print(f"s3: {len(out['uploaded'])} copies sealed, uploaded and read back; {damaged} (damaged) refused")
        finally:
            drop_in.unlink()
            for member in MEMBERS:
                cluster.salt(member, "schedule.enable_job", "etcd-backup")


def test_a_34_cluster_is_restored_with_etcdctl(cluster):
    site = tls_site(cluster, "backup34", MEMBERS)
    site["etcd"]["version"] = "3.4.23"
    site["etcd"]["backup"] = {"interval": 3600}
    form_cluster(cluster, site)
    assert "3.4.23" in cluster.exec("etcd1", "etcd", "--version").stdout
    assert cluster.exec("etcd1", "test", "-e", "/usr/local/bin/etcdutl").returncode != 0  # 3.4 has none
    c = etcd_client.Client(urls(cluster, MEMBERS, "https"), 5, *cluster.writer_tls)
    c.put("/v34/before", "kept")
    for name in MEMBERS:  # reports in the mine now, not at the next interval
        cluster.salt(name, "schedule.run_job", "etcd-health")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "backup34" not in run_json(cluster, "etcd.report"):
        time.sleep(1)
    taken = run_json(cluster, "etcd.backup", "backup34", timeout=120)
    assert taken["result"] is True and taken["etcd_version"].startswith("3.4."), taken
    c.put("/v34/after", "gone")
    for name in MEMBERS:
        cluster.exec(name, "bash", "-c", "systemctl stop etcd && rm -rf /var/lib/etcd/member", check=True)
    pillar = json.dumps({"etcd": {"restore": {"cluster": "backup34", "snapshot": "latest"}}})
    out, err = cluster.salt_run("state.orch", "etcd.orch.restore", f"pillar={pillar}", timeout=600)
    assert "Failed:    0" in out, out + err
    assert c.get("/v34/before") == "kept" and c.get("/v34/after") is None
    assert cluster.salt("etcd2", "etcd_health.healthy")["etcd2"]["healthy"] is True
