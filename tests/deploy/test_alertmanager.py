"""deploy/alertmanager: amtool checks, routing by severity, grouping and inhibition."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.tools import ROOT, run_tool

CONFIG = "deploy/alertmanager/alertmanager.yml"


def _config() -> dict:
    return yaml.safe_load((ROOT / CONFIG).read_text())


def test_amtool_check_config():
    result = run_tool("amtool", "check-config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("severity, receiver", [("critical", "pager"), ("warning", "chat"), ("info", "email")])
def test_severity_routes_to_its_receiver(severity, receiver):
    result = run_tool("amtool", "config", "routes", "test", f"--config.file={CONFIG}",
                      f"severity={severity}", "model=m", "rule=latency_p95")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alerts_are_grouped_by_model_and_rule():
    assert {"model", "rule"} <= set(_config()["route"]["group_by"])


def test_critical_inhibits_warning_of_the_same_model_and_rule():
    inhibit = {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"']}
    rules = _config()["inhibit_rules"]
    assert any({k: r.get(k) for k in inhibit} == inhibit and {"model", "rule"} <= set(r["equal"]) for r in rules), rules
