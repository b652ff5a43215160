"""Real Salt loaders over the repository's modules, no daemons."""

import sys

import pytest
import yaml
from saltfactories.utils.functional import Loaders

from labkit.master import file_roots
from labkit.preflight import REPO

# Test modules import the formula's utils by name, as its loader modules do. etcd_fresh
# drops every util it did not import itself at its first load() (it cannot tell whether
# such a copy is current), which would leave a test module holding a second
# etcd_client.EtcdError that pytest.raises does not catch: CI failed so whenever a
# loader test ran before the auth tests. Imported here through etcd_fresh, before any
# test module, tests and loaders hold one copy of each.
sys.path.insert(0, str(REPO / "_utils"))
import etcd_fresh  # noqa: E402

etcd_fresh.load(*sorted(p.stem for p in (REPO / "_utils").glob("etcd_*.py") if p.stem != "etcd_fresh"))


@pytest.fixture(scope="package")
def pillar_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pillar")
    (path / "top.sls").write_text("base:\n  '*':\n    - site\n")
    (path / "site.sls").write_text("{}\n")
    return path


@pytest.fixture(scope="package")
def minion_opts(salt_factories, repo, tmp_path_factory, pillar_dir):
    factory = salt_factories.salt_minion_daemon(
        "functional",
        overrides={
            "file_client": "local",
            "enable_fqdns_grains": False,
            "enable_gpu_grains": False,
            "module_dirs": [str(repo / "_modules")],
            "states_dirs": [str(repo / "_states")],
            "utils_dirs": [str(repo / "_utils")],
            "pillar_roots": {"base": [str(pillar_dir)]},
            "file_roots": {"base": file_roots(tmp_path_factory.mktemp("extensions"))},
        },
    )
    return factory.config.copy()


@pytest.fixture
def set_pillar(loaders, pillar_dir):
    """Give the loaders this pillar (compiled by Salt from a pillar tree, as a minion would)."""

    def setter(data):
        (pillar_dir / "site.sls").write_text(yaml.safe_dump(data))
        loaders.reload_all()

    yield setter
    (pillar_dir / "site.sls").write_text("{}\n")


@pytest.fixture(scope="package")
def _package_loaders(minion_opts):
    return Loaders(minion_opts)


@pytest.fixture
def loaders(_package_loaders):
    """Salt's loaders as a fresh minion has them: one Loaders for the package (building it
    costs about 2.5 s, mostly grains and the file mapping), reloaded for every test, which
    gives each test new modules, __context__, opts, grains and pillar (1 s)."""
    _package_loaders.reload_all()
    yield _package_loaders
    _package_loaders.reset_state()


@pytest.fixture
def etcd_tls_member(tmp_path):
    """A real etcd with mutual TLS, one member as a plain process on 127.0.0.1."""
    from etcd_process import EtcdProcess

    member = EtcdProcess(tmp_path / "member").start()
    yield member
    member.stop()
