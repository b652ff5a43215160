"""How the formula's loader modules share its _utils inside one minion process.

A state catches `etcd_client.EtcdError` raised by an execution function it called: that
works only if both modules hold the same `etcd_client` (one class object); and a
`saltutil.sync_*` that changed a util must reach every module loaded after it.
"""

import ast
import json
import os
import shutil
import subprocess
import sys

import pytest

# Modules whose code catches an error raised inside an execution function it calls.
CATCHERS = [
    ("states", "etcd_cluster"),
    ("states", "etcd_tls"),
    ("states", "etcd_health"),
    ("modules", "etcd_membership"),
]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(n[:-3] for n in os.listdir(os.path.join(REPO, "_modules")) if n.endswith(".py"))
STATES = sorted(n[:-3] for n in os.listdir(os.path.join(REPO, "_states")) if n.endswith(".py"))


def loaded(kind, name):
    return sys.modules[f"salt.loaded.ext.{kind}.{name}"]


def load_all(loaders):
    # Touch every formula module, as a state run that renders and applies etcd does.
    for name in MODULES:
        getattr(loaders.modules, name)
    for name in STATES:
        getattr(loaders.states, name)
    return loaders


@pytest.fixture
def all_loaded(loaders):
    return load_all(loaders)


def split_copies():
    """{util: number of copies} for every util that loaded modules hold more than once."""
    copies = {}
    for kind in ("module", "states"):
        for key, mod in list(sys.modules.items()):
            if key.startswith(f"salt.loaded.ext.{kind}.etcd_"):
                for util, value in vars(mod).items():
                    if util.startswith("etcd_") and os.path.basename(getattr(value, "__file__", "")) == f"{util}.py":
                        copies.setdefault(util, set()).add(id(value))
    assert copies, "no loaded module holds a util"
    return {u: len(ids) for u, ids in copies.items() if len(ids) > 1}


def test_every_module_shares_one_copy_of_each_util(all_loaded):
    assert split_copies() == {}
    exec_client = loaded("module", "etcd_tls").etcd_client
    for kind, name in CATCHERS:
        catcher = loaded("module" if kind == "modules" else kind, name)
        assert catcher.etcd_client.EtcdError is exec_client.EtcdError, name


def test_a_synced_util_reaches_modules_loaded_afterwards(all_loaded):
    import etcd_fresh

    before = sys.modules["etcd_migration"]
    utils_before = {n: m for n, m in sys.modules.items() if n.startswith("etcd_")}
    path = before.__file__  # the copy this process imported (the minion's extmods/utils)
    stat = os.stat(path)
    try:
        # What a sync that rewrote the file looks like to the process: a new mtime.
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        all_loaded.reload_all()
        all_loaded.modules.etcd_cluster  # noqa: B018 (loading it is the point)
        after = sys.modules["etcd_migration"]
        assert after is not before
        assert loaded("module", "etcd_cluster").etcd_flags.etcd_migration is after
        assert etcd_fresh.stale() == []
        # Every module loaded after the sync, and a health check run then (TLS: the
        # certificate days use etcd_tls), still share one copy of each util.
        load_all(all_loaded)
        loaded("module", "etcd_health")._certificate_days(
            {"tls": {"enabled": True, "mode": "files", "dir": "/nonexistent"}}
        )
        assert split_copies() == {}
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        # The process's copies as they were (their stamps match the restored file again):
        # test modules imported those, and must keep sharing them with the loaders.
        for name in [n for n in sys.modules if n.startswith("etcd_")]:
            del sys.modules[name]
        sys.modules.update(utils_before)


# --- Utils are imported when a module is loaded, never later --------------------------
#
# Salt puts extmods/utils on sys.path only while it loads a module. A util imported later,
# inside a function, is found only if another module happened to import it at load time:
# the health check's call-time `etcd_tls` crashed every TLS site, and the fixtures above
# (which load etcd_tls first) hid it.

LOADER_DIRS = ("_modules", "_states", "_runners", "_utils")


def _call_time_imports(path):
    """(function, what) for every util import or etcd_fresh.load inside a function body."""
    tree = ast.parse(path.read_text())
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                found += [(fn.name, a.name) for a in node.names if a.name.startswith(("etcd_", "_utils"))]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("etcd_", "_utils")):
                found.append((fn.name, f"from {node.module}"))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "etcd_fresh"
            ):
                found.append((fn.name, f"etcd_fresh.{node.func.attr}()"))
    return found


def test_no_function_body_imports_a_util(repo):
    offenders = {
        str(path.relative_to(repo)): hits
        for folder in LOADER_DIRS
        for path in sorted((repo / folder).glob("*.py"))
        if (hits := _call_time_imports(path))
    }
    assert offenders == {}, "import utils at module level (see etcd_cluster's header comment)"


def test_the_scan_finds_a_call_time_import(tmp_path):
    # The rule above must be able to fail: the old health check's shape is found.
    bad = tmp_path / "bad.py"
    bad.write_text('def _certificate_days(s):\n    (etcd_tls,) = etcd_fresh.load("etcd_tls")\n    import etcd_k8s\n')
    assert sorted(_call_time_imports(bad)) == [
        ("_certificate_days", "etcd_fresh.load()"),
        ("_certificate_days", "etcd_k8s"),
    ]


FRESH_MINION = r"""
import json, sys
import salt.config, salt.loader
opts = salt.config.minion_config(None)
opts.update(json.loads(sys.argv[1]))
opts["grains"] = {"id": opts["id"], "os_family": "Debian"}
utils = salt.loader.utils(opts)
mods = salt.loader.minion_mods(opts, utils=utils)
report = mods["etcd_health.health"]()
loaded = sorted(k for k in sys.modules if k.startswith("salt.loaded.ext.module."))
print(json.dumps({"report": report, "loaded": loaded}))
"""


def test_health_on_tls_in_a_fresh_minion_process_that_loaded_only_the_checks_modules(repo, tmp_path, etcd_tls_member):
    # The minion's layout after saltutil.sync_all: extmods/modules and extmods/utils.
    ext = tmp_path / "extmods"
    for kind, folder in (("modules", "_modules"), ("utils", "_utils")):
        shutil.copytree(repo / folder, ext / kind)
    opts = {
        "id": etcd_tls_member.name,
        "file_client": "local",
        "cachedir": str(tmp_path / "cache"),
        "extension_modules": str(ext),
        "pillar": etcd_tls_member.site(),
        "log_level": "quiet",
    }
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_MINION, json.dumps(opts)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # The check's module and the settings it reads: nothing else loaded etcd_tls first.
    assert out["loaded"] == ["salt.loaded.ext.module.etcd_cluster", "salt.loaded.ext.module.etcd_health"]
    report = out["report"]
    assert report["verdict"] == "ok", report["reasons"]
    assert [m["name"] for m in report["members"]] == [etcd_tls_member.name]
    days = {os.path.basename(p): c["days_left"] for p, c in report["certificates"].items()}
    assert days == {"client-ca.crt": 3649, "peer-ca.crt": 3649, "server.crt": 364, "peer.crt": 364, "admin.crt": 364}
