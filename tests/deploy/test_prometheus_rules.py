"""deploy/prometheus: promtool checks, the rules' unit tests, and the rules kept in step with DEFAULT_RULES."""

from __future__ import annotations

import re

import yaml

from ampel_monitor.alertmanager import alert_name
from ampel_monitor.config import BELOW_RULES, DEFAULT_RULES
from tests.deploy.tools import ROOT, run_tool

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
#: The threshold of a rule's expression: the number after a strict `>` or `<` (not `>=`).
_STRICT = re.compile(r"[<>]\s*(\d+(?:\.\d+)?)")


def _alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _ok(result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config():
    _ok(run_tool("promtool", "check", "config", "deploy/prometheus/prometheus.yml"))


def test_promtool_check_rules():
    _ok(run_tool("promtool", "check", "rules", "deploy/prometheus/rules.yml"))


def test_promtool_rule_unit_tests():
    result = run_tool("promtool", "test", "rules", "tests/deploy/rules_test.yml")
    _ok(result)
    assert "SUCCESS" in result.stdout


def test_every_default_rule_has_an_alert_with_its_threshold():
    found = set()
    for alert in _alerts():
        if "rule" not in alert["labels"]:
            continue  # AmpelPipelineDown: not a window rule
        rule, severity = alert["labels"]["rule"], alert["labels"]["severity"]
        assert alert["alert"] == alert_name(rule)  # the pipeline's own alertname
        threshold = float(alert["annotations"]["threshold"])
        gates = "\n".join(line for line in alert["expr"].splitlines() if "pvalue" not in line)
        assert [float(x) for x in _STRICT.findall(gates)] == [threshold], alert["expr"]
        assert (" < " in alert["expr"]) == (rule in BELOW_RULES), alert["expr"]
        found.add((rule, severity, threshold))
    assert found == {(r.name, r.severity, r.threshold) for r in DEFAULT_RULES}
