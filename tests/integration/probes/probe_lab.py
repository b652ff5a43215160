"""Run only by test_teardown.py, in a child pytest: a lab test that fails or waits."""

import os
import time


def test_probe(lab_session):
    print(f"probe-run {lab_session.state['id']}", flush=True)
    if os.environ.get("PROBE") == "fail":
        raise AssertionError("probe fails on purpose")
    if os.environ.get("PROBE") == "wait":
        time.sleep(300)  # interrupted by the parent
