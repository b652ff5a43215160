"""etcd.clean deletes only directories etcd-formula made (its marker), through Salt's real loaders.

The whole chain on live members (refusal, forced leave, whole cluster) runs in the lab:
tests/integration/test_removing_etcd.py.
"""

MARKER = ".etcd-formula"


def made(path, *entries, marker=True):
    path.mkdir(parents=True)
    for entry in entries:
        (path / entry).write_text("x")
    if marker:
        (path / MARKER).write_text("etcd-formula made this directory")
    return str(path)


def test_a_marked_directory_is_deleted_and_a_second_run_changes_nothing(loaders, tmp_path):
    config = made(tmp_path / "etc" / "etcd", "etcd.env", "formula-settings.json")
    ret = loaders.states.etcd_clean.owned_absent(name=config)
    assert ret.result is True and ret.changes == {"deleted": config}, ret
    assert not (tmp_path / "etc" / "etcd").exists()
    again = loaders.states.etcd_clean.owned_absent(name=config)
    assert again.result is True and again.changes == {} and "not there" in again.comment


def test_a_directory_without_the_marker_is_kept_whole(loaders, tmp_path):
    theirs = made(tmp_path / "etc" / "etcd", "etcd.conf.yml", marker=False)
    ret = loaders.states.etcd_clean.owned_absent(name=theirs)
    assert ret.result is True and ret.changes == {} and "no .etcd-formula marker" in ret.comment, ret
    assert (tmp_path / "etc" / "etcd" / "etcd.conf.yml").read_text() == "x"


def test_kept_entries_stay_with_the_directory_and_its_marker(loaders, tmp_path):
    state = made(tmp_path / "var" / "lib" / "etcd-formula", "started.json", "restart-failed.json")
    (tmp_path / "var" / "lib" / "etcd-formula" / "snapshots").mkdir()
    (tmp_path / "var" / "lib" / "etcd-formula" / "snapshots" / "pre-upgrade.db").write_text("data")
    ret = loaders.states.etcd_clean.owned_absent(name=state, keep=["snapshots"])
    assert ret.result is True and ret.changes == {"deleted": ["restart-failed.json", "started.json"]}, ret
    left = sorted(p.name for p in (tmp_path / "var" / "lib" / "etcd-formula").iterdir())
    assert left == [MARKER, "snapshots"]
    assert (tmp_path / "var" / "lib" / "etcd-formula" / "snapshots" / "pre-upgrade.db").read_text() == "data"


def test_system_directories_and_odd_paths_are_never_deleted(loaders, tmp_path):
    for path in ["/etc", "/var/lib", "/", "/opt", "etc/etcd", "/etc/etcd/../../etc", str(tmp_path) + "/"]:
        ret = loaders.states.etcd_clean.owned_absent(name=path)
        assert ret.result is False and ret.changes == {}, (path, ret)
