import signal

import pytest


def _sigterm_as_interrupt(signum, frame):
    # CI or a user stopping the run with SIGTERM gets the same teardown as Ctrl-C.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def pytest_collection_modifyitems(config, items):
    # Cheap tiers first: a broken unit fails fast, before the lab boots.
    order = {"unit": 0, "functional": 1, "integration": 2}
    items.sort(key=lambda item: next((v for k, v in order.items() if f"/{k}/" in str(item.path)), 3))


@pytest.fixture(scope="session")
def repo():
    from labkit.preflight import REPO

    return REPO
