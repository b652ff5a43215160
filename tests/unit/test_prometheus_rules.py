"""The shipped Prometheus alert rules, checked and unit-tested by promtool itself.

promtool comes from Debian's prometheus package, unpacked by `make artifacts`
(scripts/build-artifacts). Missing promtool fails these tests: rules that were never
evaluated are not shipped as tested."""

import shutil
import subprocess
from pathlib import Path

import etcd_metrics

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "salt" / "etcd" / "files" / "prometheus" / "etcd-alerts.yml"
TESTS = REPO / "tests" / "unit" / "prometheus" / "etcd-alerts.test.yml"


def promtool(*args, stdin=None):
    tool = REPO / "artifacts" / "prometheus" / "promtool"
    tool = str(tool) if tool.exists() else shutil.which("promtool")
    assert tool, "promtool is missing: run `make artifacts` (it unpacks Debian's prometheus package)"
    return subprocess.run([tool, *args], input=stdin, capture_output=True, text=True, check=False, timeout=120)


def test_the_rules_are_valid():
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 10 rules found" in out.stdout


def test_each_alert_fires_when_it_should_and_only_then():
    out = promtool("test", "rules", str(TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_verdict_textfile_is_what_prometheus_parses():
    report = {
        "verdict": "degraded",
        "time": 1765000000.4,
        "reasons": [{"code": "backup_stale"}, {"code": "quota_warning"}, {"code": "backup_stale"}],
    }
    text = etcd_metrics.textfile(report, "storageos", "etcd1")
    out = promtool("check", "metrics", stdin=text)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'etcd_formula_health_verdict{cluster="storageos",member="etcd1"} 1\n' in text
    assert text.count("etcd_formula_health_reason{") == 2  # one series per code
    assert 'etcd_formula_health_checked_seconds{cluster="storageos",member="etcd1"} 1765000000\n' in text
