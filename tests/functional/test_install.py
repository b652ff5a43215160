"""etcd_install through Salt's real loaders, with the lab's release tarballs (file://).

Everything happens under pytest's tmp_path: nothing is installed on the host itself.
"""

import os

import pytest

from labkit.pillar import release_checksums
from labkit.preflight import RELEASES

URL = "file://" + str(RELEASES) + "/etcd-v{version}-linux-amd64.tar.gz"


@pytest.fixture
def dirs(tmp_path):
    return {"install_dir": str(tmp_path / "opt"), "bin_dir": str(tmp_path / "bin"), "service": "etcd-not-here"}


def installed(loaders, version, checksums, dirs):
    return loaders.states.etcd_install.installed(name=version, source=URL, checksums=checksums, **dirs)


def test_install_verify_switch_and_rerun(loaders, dirs):
    sums = release_checksums()
    ret = installed(loaders, "3.4.23", sums, dirs)
    assert ret.result is True, ret.comment
    assert ret.changes["version"] == {"old": None, "new": "3.4.23"}
    mod = loaders.modules.etcd_install
    assert mod.active_version(dirs["bin_dir"]) == "3.4.23"
    assert not os.path.exists(os.path.join(dirs["bin_dir"], "etcdutl"))  # 3.4 has none

    again = installed(loaders, "3.4.23", sums, dirs)
    assert again.result is True and again.changes == {}

    ret = installed(loaders, "3.5.1", sums, dirs)
    assert ret.changes["version"] == {"old": "3.4.23", "new": "3.5.1"}
    assert os.path.islink(os.path.join(dirs["bin_dir"], "etcdutl"))
    # The old release stays beside the new one (a rollback is a link switch).
    assert mod.staged("3.4.23", dirs["install_dir"])


def test_checksum_mismatch_is_refused_and_keeps_the_binary(loaders, dirs):
    sums = release_checksums()
    assert installed(loaders, "3.4.23", sums, dirs).result is True
    bad = dict(sums, **{"3.5.1": "0" * 64})
    ret = installed(loaders, "3.5.1", bad, dirs)
    assert ret.result is False
    assert "checksum mismatch" in ret.comment and "etcd:source:checksums:3.5.1" in ret.comment
    assert loaders.modules.etcd_install.active_version(dirs["bin_dir"]) == "3.4.23"
    assert sorted(os.listdir(dirs["install_dir"])) == ["3.4.23"]  # nothing unpacked, no temp left


@pytest.mark.parametrize(
    "where", ["http://127.0.0.1:9/etcd-v{version}-linux-amd64.tar.gz", "file:///nonexistent/x.tgz"]
)
def test_an_unreachable_mirror_is_refused_with_its_reason_and_keeps_the_binary(loaders, dirs, where):
    sums = release_checksums()
    assert installed(loaders, "3.4.23", sums, dirs).result is True
    ret = loaders.states.etcd_install.installed(name="3.5.1", source=where, checksums=sums, **dirs)
    assert ret.result is False and "could not download" in ret.comment and "etcd:source:url" in ret.comment
    assert "Traceback" not in ret.comment, ret.comment
    assert loaders.modules.etcd_install.active_version(dirs["bin_dir"]) == "3.4.23"
    assert sorted(os.listdir(dirs["install_dir"])) == ["3.4.23"]


def test_test_mode_changes_nothing(loaders, dirs, minion_opts):
    loaders.opts["test"] = True
    try:
        ret = installed(loaders, "3.5.1", release_checksums(), dirs)
    finally:
        loaders.opts["test"] = False
    assert ret.result is None
    assert "would download and verify etcd 3.5.1" in ret.comment
    assert not os.path.exists(dirs["install_dir"])


def test_unknown_version_without_checksum_fails_clearly(loaders, dirs):
    ret = installed(loaders, "3.5.99", {}, dirs)
    assert ret.result is False
    assert "etcd:source:checksums:3.5.99" in ret.comment
