"""The alert rules in deploy/prometheus: valid for Prometheus, each one tested on series made
for it (promtool), and naming only metrics the services export."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import services.gateway.observe
import services.master.model.metrics
import services.worker.metrics  # noqa: F401

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed (scripts/bootstrap installs Debian's prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=RULES, timeout=60)


def test_the_rules_are_valid() -> None:
    done = promtool("check", "rules", "imsync-alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_each_alert_fires_on_what_it_is_for_and_only_then() -> None:
    done = promtool("test", "rules", "imsync-alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "imsync-alerts.test.yml").read_text()))
    defined = set(re.findall(r"- alert: (\w+)", (RULES / "imsync-alerts.yml").read_text()))
    assert defined == tested, f"alerts without a test: {defined - tested}"


def test_the_rules_name_only_metrics_the_services_export() -> None:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = {
        metric.name + suffix
        for metric in REGISTRY.collect()
        if metric.name.startswith("imsync_")
        for suffix in suffixes.get(metric.type, ("",))
    }
    named = set(re.findall(r"\bimsync_\w+", (RULES / "imsync-alerts.yml").read_text()))
    assert named and named <= exported, named - exported
