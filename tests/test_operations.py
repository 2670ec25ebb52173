"""What operators load: the Prometheus alert rules (checked and unit-tested with
promtool) and the Grafana dashboard, whose queries name only metrics /metrics serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import requests
import yaml

from servers.process import ROOT
from tests.conftest import StartService
from tests.live import login_with_a_stream, margin, user_token

OPERATIONS = ROOT / "docs" / "operations"
RULES = OPERATIONS / "alerts.yml"
DASHBOARD = OPERATIONS / "grafana-dashboard.json"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("The alert rules' tests need promtool: apt-get install prometheus")
    return found


def test_the_alert_rules_are_valid() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_unit_tests_pass() -> None:
    done = subprocess.run([promtool(), "test", "rules", "alerts.test.yml"], cwd=OPERATIONS,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def queries() -> list[str]:
    """Every PromQL expression of the rules and the dashboard."""
    rules = yaml.safe_load(RULES.read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


def served_names(text: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()
            if line and not line.startswith("#")}  # fmt: skip


def test_the_queries_name_only_metrics_that_are_served(start_service: StartService) -> None:
    service = start_service(QRLOGIN_RATE_LIMITS="off")
    login_with_a_stream(service.url, user_token())  # so that every family has samples
    served = served_names(requests.get(service.url + "/metrics", timeout=margin(30)).text)
    named = {name for expr in queries() for name in re.findall(r"\bqrlogin_[a-z_]+", expr)}
    assert len(named) >= 10, named
    assert named <= served, sorted(named - served)


def test_every_metric_is_on_the_dashboard() -> None:
    """The dashboard shows every family the service defines."""
    from qrlogin import metrics

    defined = {value._name for value in vars(metrics).values() if hasattr(value, "_name")}
    shown = {name for expr in queries() for name in re.findall(r"\bqrlogin_[a-z_]+", expr)}
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in shown}
    missing = {name.removesuffix("_total") for name in defined} - {
        name.removesuffix("_total") for name in shown
    }
    assert not missing, sorted(missing)


def test_the_dashboard_is_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "qrlogin" and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
