import importlib.util
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest


def _sigterm_as_interrupt(signum, frame):
    # CI or a user stopping the run with SIGTERM gets the same teardown as Ctrl-C.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def pytest_configure(config):
    # Importing salt puts a deferred stream handler on the root logger: it queues every
    # record of this process (up to 10,000) until a Salt CLI sets up logging, which never
    # happens in a test process, and at exit writes them to the stderr pytest has already
    # closed (~1,400 lines of "--- Logging error ---" after the summary). Shut it down as
    # Salt's own CLIs do once logging is configured: from here on pytest's handlers (and
    # the log_level in pytest.ini) get every record, and nothing is left for exit.
    import salt._logging.impl  # noqa: PLC0415 (salt is imported by the factories plugin by now)

    salt._logging.impl.shutdown_temp_handler()


def pytest_collection_modifyitems(config, items):
    # Cheap tiers first: a broken unit fails fast, before the lab boots.
    # The README's walkthrough makes a lab run of its own (`make lab`): first among the
    # lab tests, before the shared lab session boots, so the two never run side by side.
    order = {"unit": 0, "functional": 1, "integration/test_readme_journey": 2, "integration": 3}
    items.sort(key=lambda item: next((v for k, v in order.items() if f"/{k}" in str(item.path)), 4))


@pytest.fixture(scope="session")
def repo():
    from labkit.preflight import REPO

    return REPO


@pytest.fixture(scope="session")
def salt_factories_default_root_dir():
    """One directory per test session for the factories daemons, removed at its end.

    Factories' default is the temp dir itself, where every session would leave a
    `lab-master_N` (50 MB with debug logs) and a `functional_N` behind for good.
    KEEP_FACTORIES_DIR=1 keeps it (the master's debug log) for a post-mortem.
    """
    root = Path(tempfile.mkdtemp(prefix="etcd-formula-factories-"))
    yield root
    if os.environ.get("KEEP_FACTORIES_DIR") == "1":
        print(f"\nfactories daemons' files kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def runner_module():
    """Import a runner of _runners/ from its file, by name (runners are not on sys.path;
    the master's loader finds them through runner_dirs). For tests of their pure parts."""

    def load(name):
        path = Path(__file__).resolve().parents[1] / "_runners" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"runner_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
