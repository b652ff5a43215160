"""etcd from the OS's packages: the pillar rules, the versions, the policy-rc.d guard and
the restart reasons, read as a specification. The install itself is proven in the lab
(tests/integration/test_packages.py)."""

import os
import subprocess

import etcd_node
import etcd_package
import etcd_settings
import pytest
from test_settings import check, with_

PACKAGE = {"source__type": "package", "version": "3.4.23", "source__package_version": "3.4.23-4+b4"}

# (pillar changes on top of a package site, key of the error, words of the error)
REFUSED = [
    ({"source__package_version": KeyError}, "source:package_version", "is required"),
    ({"source__package_version": 3.4}, "source:package_version", "not a package version"),
    ({"source__package_version": "3.4.23-4;reboot"}, "source:package_version", "not a package version"),
    (
        {"source__package_version": "3.5.1-1"},
        "source:package_version",
        "holds etcd 3.5.1, but `etcd:version` is 3.4.23",
    ),
    ({"source__packages": []}, "source:packages", "no package to install"),
    ({"source__packages": "etcd-server"}, "source:packages", "no package to install"),
    ({"source__packages": ["etcd-server", "-o Dpkg::x"]}, "source:packages", "not a package name"),
    ({"source__refresh": "yes"}, "source:refresh", "not true or false"),
    ({"source__type": "rpm"}, "source:type", "is not one of tarball, package"),
]


@pytest.mark.parametrize(("changes", "key", "words"), REFUSED)
def test_bad_package_pillar_is_refused_with_its_key(changes, key, words):
    errors = check(with_(**{**PACKAGE, **changes}))["errors"]
    assert [e for e in errors if e["key"] == f"etcd:{key}" and words in e["message"]], errors


def test_a_package_site_needs_no_checksum_or_url_and_runs_the_packages_binaries():
    pillar = with_(**PACKAGE)
    assert check(pillar)["errors"] == []
    s = etcd_settings.merge(pillar, "Debian")
    assert s["source"]["packages"] == ["etcd-server", "etcd-client"]
    assert s["paths"]["bin"] == "/usr/bin"
    assert etcd_settings.merge(pillar, "RedHat")["source"]["packages"] == ["etcd"]
    # The example's paths:bin (the tarball's links) is not used, and the site is told.
    example = with_(**PACKAGE, paths__bin="/usr/local/bin")
    assert etcd_settings.merge(example, "Debian")["paths"]["bin"] == "/usr/bin"
    warned = check(example)["warnings"]
    assert [w for w in warned if w["key"] == "etcd:paths:bin" and "not used" in w["message"]], warned
    assert check(with_(**PACKAGE, paths__bin="/usr/bin"))["warnings"] == []
    assert etcd_settings.merge(with_(), "Debian")["paths"]["bin"] == "/usr/local/bin"


@pytest.mark.parametrize(
    ("version", "upstream"),
    [("3.4.23-4+b4", "3.4.23"), ("1:3.4.23-4+b4", "3.4.23"), ("3.4.23", "3.4.23"), ("3.5.1-0+lab1", "3.5.1")],
)
def test_upstream_version_is_what_etcd_reports(version, upstream):
    assert etcd_package.upstream(version) == upstream


# (started with, wanted, reason or None)
REASONS = [
    (None, "3.4.23-4+b4", "package: started from the tarball, wanted package 3.4.23-4+b4"),
    ("3.4.23-4+b4", "3.4.23-4+b4+lab1", "package: started from package 3.4.23-4+b4, wanted package 3.4.23-4+b4+lab1"),
    ("3.4.23-4+b4", None, "package: started from package 3.4.23-4+b4, wanted the tarball"),
    ("3.4.23-4+b4", "3.4.23-4+b4", None),
    (None, None, None),  # a tarball site's records (no package key) restart nothing new
]


@pytest.mark.parametrize(("started", "wanted", "reason"), REASONS)
def test_a_package_change_is_a_restart_reason(started, wanted, reason):
    base = {"version": "3.4.23", "flags": {}, "unit": "u"}
    was = dict(base, **({"package": started} if started else {}))
    want = dict(base, **({"package": wanted} if wanted else {}))
    got = etcd_node.restart_reasons(was, want, "3.4.23")
    assert got == ([reason] if reason else [])


def _policy(path, service, action="start"):
    return subprocess.run([str(path), service, action], check=False).returncode


def test_the_guard_refuses_etcd_and_nothing_else_and_leaves_no_trace(tmp_path):
    path = tmp_path / "policy-rc.d"
    with etcd_package.services_blocked(["etcd", "etcd-main"], str(path)):
        assert _policy(path, "etcd") == 101
        assert _policy(path, "etcd.service", "restart") == 101
        assert _policy(path, "etcd-main") == 101
        assert _policy(path, "ssh") == 0
    assert not path.exists()


def test_the_sites_own_policy_is_kept_and_asked_for_other_services(tmp_path):
    path = tmp_path / "policy-rc.d"
    site = '#!/bin/sh\n[ "$1" = postgresql ] && exit 101\nexit 0\n'
    path.write_text(site)
    os.chmod(path, 0o755)
    with etcd_package.services_blocked(["etcd"], str(path)):
        assert _policy(path, "etcd") == 101
        assert _policy(path, "postgresql") == 101  # the site's rule still holds
        assert _policy(path, "ssh") == 0
    assert path.read_text() == site


def test_a_guard_left_by_a_run_that_died_is_replaced_and_the_sites_restored(tmp_path):
    path = tmp_path / "policy-rc.d"
    site = "#!/bin/sh\nexit 0\n"
    (tmp_path / "policy-rc.d.etcd-formula-site").write_text(site)
    path.write_text(etcd_package.policy_script(["etcd"], str(tmp_path / "policy-rc.d.etcd-formula-site")))
    os.chmod(path, 0o755)
    with etcd_package.services_blocked(["etcd"], str(path)):
        assert _policy(path, "etcd") == 101
    assert path.read_text() == site
    assert not (tmp_path / "policy-rc.d.etcd-formula-site").exists()


def test_dpkg_query_lines_give_version_and_hold():
    text = (
        "etcd-server 3.4.23-4+b4 hold installed\n"
        "etcd-client 3.4.23-4+b4 install installed\n"
        "etcd-old  deinstall config-files\n"
    )
    assert etcd_package.parse_dpkg_query(text) == {
        "etcd-server": {"version": "3.4.23-4+b4", "held": True},
        "etcd-client": {"version": "3.4.23-4+b4", "held": False},
        "etcd-old": {"version": None, "held": False},
    }


def test_off_pin_names_every_package_not_at_the_pin():
    have = {"etcd-server": {"version": "3.4.23-4+b4"}, "etcd-client": {"version": None}}
    assert etcd_package.off_pin(have, "3.4.23-4+b4") == ["etcd-client"]
    assert etcd_package.off_pin(have, "3.4.23-4+b4+lab1") == ["etcd-server", "etcd-client"]
    assert etcd_package.off_pin({"etcd-server": {"version": "3.4.23-4+b4"}}, "3.4.23-4+b4") == []


@pytest.mark.parametrize("service", ["etcd;reboot", "etcd) exit 0 ;; *", "", 7])
def test_the_guard_takes_only_unit_names_and_leaves_the_sites_policy_in_place(tmp_path, service):
    path = tmp_path / "policy-rc.d"
    path.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(ValueError, match="not systemd unit names"):
        with etcd_package.services_blocked([service], str(path)):
            pass
    assert path.read_text() == "#!/bin/sh\nexit 0\n"
    assert not (tmp_path / "policy-rc.d.etcd-formula-site").exists()
