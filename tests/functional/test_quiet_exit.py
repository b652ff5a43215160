"""A test run ends on pytest's summary: nothing of Salt's logging is written after it."""

import subprocess
import sys


def test_a_pytest_run_with_salt_loaded_ends_on_its_summary(repo):
    # A functional test: salt imported, a factories minion configured, loaders used.
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/functional/test_validate.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "Logging error" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
    assert " passed in " in last, last
    assert proc.stderr.strip() == "", proc.stderr[-2000:]
