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


def _quality(end_minute: int, accuracy: float, labelled: int = 200, reference: float = 0.9) -> dict:
    from ampel_monitor.window import rfc3339

    end = 1_767_225_600_000 + end_minute * 60_000
    return {"model": "m", "version": "v1", "window_start": rfc3339(end - 120_000), "window_end": rfc3339(end),
            "late": False, "quality": {"labelled": labelled, "accuracy": accuracy,
                                       "accuracy_drop": (reference - accuracy) / reference}}


def test_concept_drift_fires_on_a_sustained_rise_of_the_error_and_resolves_when_accuracy_is_back():
    from ampel_monitor.alerts import ConceptDriftMonitor

    monitor = ConceptDriftMonitor(size_ms=120_000)
    accuracy = [0.9, 0.91, 0.89, 0.9, 0.9, 0.9, 0.6, 0.6, 0.62, 0.6, 0.9, 0.9]
    out = []
    for i, a in enumerate(accuracy):
        out += [(i, alert["severity"], alert["state"]) for alert in monitor.evaluate(_quality(2 * (i + 1), a))]
        assert monitor.evaluate(_quality(2 * (i + 1), a)) == []  # each window once
        assert monitor.evaluate(_quality(2 * (i + 1) + 1, a)) == []  # overlapping windows are not fed
    assert out[0][1:] == ("info", "firing") and 6 <= out[0][0] <= 8
    assert out[-1][1:] == ("info", "resolved") and out[-1][0] == 10
    assert not monitor.evaluate(_quality(40, 0.1, labelled=99))  # too few labels: not fed


def test_concept_drift_stays_quiet_on_stationary_windows():
    import numpy as np

    from ampel_monitor.alerts import ConceptDriftMonitor

    rng = np.random.default_rng(0)
    monitor = ConceptDriftMonitor(size_ms=120_000)
    alerts = [a for i in range(300) for a in monitor.evaluate(_quality(2 * (i + 1), rng.binomial(1000, 0.9) / 1000, 1000))]
    assert alerts == []


def _bias(end, *ratios_pvalues):
    bias = {f"a{i}": {"disparate_impact_ratio": r, "disparate_impact_pvalue": p,
                      "subgroups": {"f": {"positive_rate": 0.1 * (r or 0), "small": False},
                                    "m": {"positive_rate": 0.1, "small": False}}}
            for i, (r, p) in enumerate(ratios_pvalues)}
    return {"model": "m", "version": "v", "window_start": f"s{end}", "window_end": f"e{end:02d}", "count": 100,
            "quality": {"bias": bias}}


def test_disparate_impact_fires_below_the_threshold_when_significant_and_holds_while_inconclusive():
    evaluator = AlertEvaluator([AlertRule("disparate_impact", "warning", 0.8)])
    windows = [
        _bias(0, (0.9, 0.5)),                 # fine
        _bias(1, (0.5, 0.01)),                # low but not significant: inconclusive, stays quiet
        _bias(2, (0.5, 0.0001), (0.9, 0.5)),  # significant: fires, the value is the low attribute's
        _bias(3, (0.7, 0.2), (0.95, 0.5)),    # inconclusive: keeps firing
        _bias(4, (0.8, 0.2)),                 # at the threshold: resolves
        _bias(5, (None, None)),               # no ratio: nothing
    ]
    changes = [[(a["state"], a["value"]) for a in evaluator.evaluate(w)] for w in windows]
    assert changes == [[], [], [("firing", 0.5)], [], [("resolved", 0.8)], []]


def test_importance_shift_reads_the_rank_change():
    evaluator = AlertEvaluator([AlertRule("importance_shift", "info", 0.15)])
    def w(end, change):
        return {"model": "m", "version": "v", "window_start": "s", "window_end": f"e{end}", "count": 100,
                "importance": {"a": {"rank": 2}, "b": {"rank": 1}}, "importance_rank_change": change}
    (alert,) = evaluator.evaluate(w(1, 0.2))
    assert (alert["state"], alert["value"], alert["detail"]) == ("firing", 0.2, "top features now b, a")
    assert evaluator.evaluate(w(2, None)) == []
    assert [a["state"] for a in evaluator.evaluate(w(3, 0.15))] == ["resolved"]

