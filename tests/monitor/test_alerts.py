"""The alert state machine, without a runner."""

from __future__ import annotations

import pytest

from ampel_monitor.alerts import AlertEvaluator
from ampel_monitor.config import AlertRule


def window(end, p95=50.0, error_rate=0.0, count=100, psi=0.01, feature_count=1000):
    return {"model": "m", "version": "v", "window_start": f"s{end}", "window_end": f"e{end:02d}", "count": count,
            "errors": int(error_rate * count), "error_rate": error_rate, "latency_ms": {"p95": p95},
            "features": {"f": {"psi": psi, "js": 0.0, "count": feature_count}}, "resources": None}


def test_fires_once_on_entering_and_resolves_on_leaving():
    evaluator = AlertEvaluator([AlertRule("latency_p95", "critical", 1.0)])
    states = [[a["state"] for a in evaluator.evaluate(window(i, p95=p))]
              for i, p in enumerate([50, 1500, 2000, 1000, 999, 1001])]
    assert states == [[], ["firing"], [], ["resolved"], [], ["firing"]]


def test_threshold_equality_is_not_an_alert_and_small_windows_are_skipped():
    evaluator = AlertEvaluator([AlertRule("error_rate", "critical", 0.01)], min_events=50)
    assert evaluator.evaluate(window(1, error_rate=0.01)) == []
    assert evaluator.evaluate(window(2, error_rate=0.5, count=49)) == []
    (alert,) = evaluator.evaluate(window(3, error_rate=0.02))
    assert (alert["rule"], alert["severity"], alert["value"], alert["threshold"]) == ("error_rate", "critical", 0.02, 0.01)


def test_drift_rules_ignore_small_samples():
    evaluator = AlertEvaluator([AlertRule("data_drift", "warning", 0.2)], min_drift_count=300)
    assert evaluator.evaluate(window(1, psi=0.9, feature_count=299)) == []
    assert [a["state"] for a in evaluator.evaluate(window(2, psi=0.9, feature_count=300))] == ["firing"]


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown alert rule 'p99'"):
        AlertEvaluator([AlertRule("p99", "critical", 1.0)])
