"""How the formula's loader modules share its _utils inside one minion process.

A state catches `etcd_client.EtcdError` raised by an execution function it called: that
works only if both modules hold the same `etcd_client` (one class object); and a
`saltutil.sync_*` that changed a util must reach every module loaded after it.
"""

import os
import sys

import pytest

# Modules whose code catches an error raised inside an execution function it calls.
CATCHERS = [("states", "etcd_cluster"), ("states", "etcd_tls"), ("modules", "etcd_membership")]


def loaded(kind, name):
    return sys.modules[f"salt.loaded.ext.{kind}.{name}"]


@pytest.fixture
def all_loaded(loaders):
    # Touch every formula module, as a state run that renders and applies etcd does.
    for name in ("etcd_cluster", "etcd_install", "etcd_tls", "etcd_rolling", "etcd_membership"):
        getattr(loaders.modules, name)
    for name in ("etcd_cluster", "etcd_install", "etcd_tls", "etcd_kubernetes", "etcd_health", "etcd_membership"):
        getattr(loaders.states, name)
    return loaders


def test_every_module_shares_one_copy_of_each_util(all_loaded):
    copies = {}
    for kind in ("module", "states"):
        for key, mod in list(sys.modules.items()):
            if key.startswith(f"salt.loaded.ext.{kind}.etcd_"):
                for util, value in vars(mod).items():
                    if util.startswith("etcd_") and os.path.basename(getattr(value, "__file__", "")) == f"{util}.py":
                        copies.setdefault(util, set()).add(id(value))
    assert copies and {u: len(ids) for u, ids in copies.items() if len(ids) > 1} == {}
    exec_client = loaded("module", "etcd_tls").etcd_client
    for kind, name in CATCHERS:
        catcher = loaded("module" if kind == "modules" else kind, name)
        assert catcher.etcd_client.EtcdError is exec_client.EtcdError, name


def test_a_synced_util_reaches_modules_loaded_afterwards(all_loaded):
    import etcd_fresh

    before = sys.modules["etcd_migration"]
    path = before.__file__  # the copy this process imported (the minion's extmods/utils)
    stat = os.stat(path)
    try:
        # What a sync that rewrote the file looks like to the process: a new mtime.
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        all_loaded.reload_all()
        all_loaded.modules.etcd_cluster  # noqa: B018 (loading it is the point)
        after = sys.modules["etcd_migration"]
        assert after is not before
        assert loaded("module", "etcd_cluster").etcd_settings.etcd_migration is after
        assert etcd_fresh.stale() == []
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
