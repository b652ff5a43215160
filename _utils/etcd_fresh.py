"""One copy of each of the formula's _utils per process, replaced together after a sync.

Loader modules import the synced _utils by name (the minion's extmods/utils is on
sys.path), and a long-running minion keeps what it imported first. Each loader module
therefore asks `load()` for its utils: when any loaded etcd_* util's file changed since
it was imported (a `saltutil.sync_*` wrote new ones), every etcd_* util is dropped and
imported again, so no module mixes old and new ones (etcd_settings imports
etcd_migration); otherwise the loaded copies are shared. Shared copies matter: a state
catches `etcd_client.EtcdError` raised inside an execution function it called, which
works only when both hold the same class.

This module itself stays loaded for the life of the process: keep it small and stable.
"""

import importlib
import os
import sys

_STAMP = "__etcd_fresh_stamp__"
_HERE = os.path.dirname(os.path.abspath(__file__))


def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _loaded():
    """{name: module} of the etcd_* utils imported from this directory."""
    out = {}
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if name.startswith("etcd_") and name != __name__ and path and os.path.dirname(os.path.abspath(path)) == _HERE:
            out[name] = mod
    return out


def stale(loaded=None):
    """Names of loaded utils whose file is not the one they were imported from."""
    loaded = _loaded() if loaded is None else loaded
    return sorted(n for n, m in loaded.items() if getattr(m, _STAMP, None) != _stamp(m.__file__))


def load(*names):
    """The utils `names`, as a tuple of modules in that order: the process's shared
    copies, or all of them imported anew when any changed on disk."""
    loaded = _loaded()
    if stale(loaded):
        for name in loaded:
            sys.modules.pop(name, None)
    mods = tuple(importlib.import_module(name) for name in names)
    for mod in _loaded().values():
        if not hasattr(mod, _STAMP):
            setattr(mod, _STAMP, _stamp(mod.__file__))
    return mods
