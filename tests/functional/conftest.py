"""Real Salt loaders over the repository's modules, no daemons."""

import pytest
import yaml
from saltfactories.utils.functional import Loaders

from labkit.master import file_roots


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


@pytest.fixture
def loaders(minion_opts):
    loaders = Loaders(minion_opts)
    yield loaders
    loaders.reset_state()


@pytest.fixture
def etcd_tls_member(tmp_path):
    """A real etcd with mutual TLS, one member as a plain process on 127.0.0.1."""
    from etcd_process import EtcdProcess

    member = EtcdProcess(tmp_path / "member").start()
    yield member
    member.stop()
