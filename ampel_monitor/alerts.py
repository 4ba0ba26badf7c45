"""Alert rules over window metrics: fire on entering the alert state, resolve on leaving it.

Each rule reads one value of a ``WindowMetrics`` or quality record (``RULE_VALUES``)
and is in alert while that value is strictly above its threshold (below, for the
rules of ``BELOW_RULES``). Per (model, version, rule,
severity), windows are evaluated in window order: an alert is emitted when the state
changes (``firing`` when it enters, ``resolved`` when it leaves), never repeated while
it persists. Windows with fewer events than the configured minimum, and rules whose
value is unknown in a window (no labels yet, no resource samples), leave the state
as it is.

Pure Python: no Apache Beam import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ampel_monitor.config import AlertRule
from ampel_monitor.events import parse_timestamp
from ampel_monitor.quality import PageHinkley

__all__ = ["AlertEvaluator", "ConceptDriftMonitor", "QUALITY_RULES", "RULE_VALUES", "rule_value"]


def _largest(metrics: Mapping[str, Any], key: str, min_count: float) -> tuple[float | None, str]:
    best, where = None, ""
    for name, entry in metrics["features"].items():
        if entry["count"] < min_count:
            continue  # too few values: the statistic is mostly sampling noise
        value = entry.get(key)
        if value is not None and (best is None or value > best):
            best, where = value, name
    return best, (f"feature {where}" if where else "")


def _latency_p95(metrics: Mapping[str, Any]) -> tuple[float | None, str]:
    p95 = metrics["latency_ms"]["p95"]
    return (None if p95 is None else p95 / 1000.0), "p95 latency in seconds"


def _error_rate(metrics: Mapping[str, Any]) -> tuple[float | None, str]:
    return metrics["error_rate"], f"{metrics['errors']} errors in {metrics['count']} predictions"


def _accuracy_drop(metrics: Mapping[str, Any]) -> tuple[float | None, str]:
    quality = metrics.get("quality") or {}
    return quality.get("accuracy_drop"), "accuracy drop against the reference"


#: A disparate impact ratio below the threshold counts only when the positive rates of the
#: lowest and highest subgroups differ at this significance level (two-proportion z-test).
BIAS_SIGNIFICANCE = 0.001


def _disparate_impact(metrics: Mapping[str, Any], threshold: float) -> tuple[float | None, str]:
    """The smallest significant ratio below the threshold; else, while some ratio below it is
    not significant, None (inconclusive: the alert state stays); else the smallest ratio."""
    bias = (metrics.get("quality") or {}).get("bias") or {}
    ratios = [(entry["disparate_impact_ratio"], entry["disparate_impact_pvalue"], name)
              for name, entry in sorted(bias.items()) if entry.get("disparate_impact_ratio") is not None]
    significant = [(r, name) for r, p, name in ratios if r >= threshold or p < BIAS_SIGNIFICANCE]
    inconclusive = len(significant) < len(ratios)
    if not significant or (inconclusive and min(significant)[0] >= threshold):
        return None, ""
    ratio, name = min(significant)
    rates = {group: e["positive_rate"] for group, e in bias[name]["subgroups"].items() if not e["small"]}
    low, high = min(rates, key=rates.__getitem__), max(rates, key=rates.__getitem__)
    return ratio, (f"attribute {name}: positive rate {rates[low]:.3g} of subgroup {low} "
                   f"against {rates[high]:.3g} of {high}")


def _importance_shift(metrics: Mapping[str, Any]) -> tuple[float | None, str]:
    importance = metrics.get("importance") or {}
    top = sorted(importance, key=lambda name: importance[name]["rank"])[:5]
    return metrics.get("importance_rank_change"), f"top features now {', '.join(top)}"


def _resources(metrics: Mapping[str, Any]) -> tuple[float | None, str]:
    resources = metrics.get("resources")
    if not resources:
        return None, ""
    means = {k: resources.get(f"{k}_mean") for k in ("cpu", "memory", "gpu")}
    name, value = max(((k, v) for k, v in means.items() if v is not None), key=lambda kv: kv[1])
    return value, f"mean {name} utilisation"


#: Rule name to the function reading its value (and a detail) from window metrics, the
#: least count of values a drift statistic needs and the rule's threshold.
RULE_VALUES: dict[str, Callable[[Mapping[str, Any], float, float], tuple[float | None, str]]] = {
    "latency_p95": lambda m, n, t: _latency_p95(m),
    "error_rate": lambda m, n, t: _error_rate(m),
    "accuracy_drop": lambda m, n, t: _accuracy_drop(m),
    "data_drift": lambda m, n, t: _largest(m, "psi", n),
    "feature_drift": lambda m, n, t: _largest(m, "js", n),
    "resource_utilisation": lambda m, n, t: _resources(m),
    "importance_shift": lambda m, n, t: _importance_shift(m),
    "disparate_impact": lambda m, n, t: _disparate_impact(m, t),
}
#: The rules that read quality records (the others read window metrics).
QUALITY_RULES = frozenset({"accuracy_drop", "disparate_impact"})


def rule_value(rule: AlertRule, metrics: Mapping[str, Any], min_drift_count: float = 0) -> tuple[float | None, str]:
    """The value a rule reads from one window's metrics (None: unknown), and what it is."""
    return RULE_VALUES[rule.name](metrics, min_drift_count, rule.threshold)


class AlertEvaluator:
    """The alert state of one model version, fed its windows in order.

    Args:
        rules: the rules to evaluate.
        min_events: windows with fewer events are not evaluated.
        min_drift_count: drift rules ignore features with fewer values in a window.
        firing: the (rule, severity) pairs already firing (restored state).
    """

    def __init__(self, rules: Iterable[AlertRule], min_events: int = 10, min_drift_count: int = 0,
                 firing: Iterable[tuple[str, str]] = ()) -> None:
        self.rules = tuple(rules)
        for rule in self.rules:
            if rule.name not in RULE_VALUES:
                raise ValueError(f"unknown alert rule {rule.name!r}, expected one of {sorted(RULE_VALUES)}")
        self.min_events = min_events
        self.min_drift_count = min_drift_count
        self.firing = set(firing)

    def evaluate(self, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Evaluates one window; returns the alerts whose state changed."""
        if metrics["count"] < self.min_events:
            return []
        alerts = []
        for rule in self.rules:
            value, detail = rule_value(rule, metrics, self.min_drift_count)
            if value is None:
                continue
            key = (rule.name, rule.severity)
            breached = value < rule.threshold if rule.below else value > rule.threshold
            if breached == (key in self.firing):
                continue
            (self.firing.add if breached else self.firing.discard)(key)
            alerts.append(
                {
                    "model": metrics["model"],
                    "version": metrics["version"],
                    "window_start": metrics["window_start"],
                    "window_end": metrics["window_end"],
                    "rule": rule.name,
                    "severity": rule.severity,
                    "value": value,
                    "threshold": rule.threshold,
                    "state": "firing" if breached else "resolved",
                    "detail": detail,
                }
            )
        return alerts


#: Windows need this many labelled predictions to feed the concept-drift test: with fewer,
#: Page-Hinkley's defaults alarm falsely (docs/statistics.md).
CONCEPT_MIN_LABELLED = 100


class ConceptDriftMonitor:
    """Concept drift of one model version: Page-Hinkley on the error of successive windows.

    Fed quality records (``transforms.labels``), it takes each non-overlapping window
    (start aligned to the window size) once, at its first pane with at least
    ``min_labelled`` labelled predictions, and feeds ``1 - accuracy`` to the detector. A
    detection fires ``concept_drift`` at info ("retraining recommended"); a second one
    while it fires raises a warning too. Both resolve at the first window whose accuracy
    drop is back within ``tolerance``.
    """

    RULE = "concept_drift"

    def __init__(self, size_ms: int, min_labelled: int = CONCEPT_MIN_LABELLED, tolerance: float = 0.05) -> None:
        self.size_ms, self.min_labelled, self.tolerance = size_ms, min_labelled, tolerance
        self.detector = PageHinkley()
        self.firing: set[str] = set()
        self.last_end: int | None = None

    def evaluate(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        end = parse_timestamp(record["window_end"])
        quality = record["quality"]
        if (end - self.size_ms) % self.size_ms or (self.last_end is not None and end <= self.last_end):
            return []
        if quality.get("accuracy") is None or quality["labelled"] < self.min_labelled:
            return []
        self.last_end = end
        drop = quality.get("accuracy_drop")
        changes = []
        if self.detector.update(1.0 - quality["accuracy"]):
            severity = "warning" if "info" in self.firing else "info"
            if severity not in self.firing:
                self.firing.add(severity)
                changes.append((severity, "firing"))
        elif self.firing and drop is not None and drop <= self.tolerance:
            changes = [(severity, "resolved") for severity in sorted(self.firing)]
            self.firing.clear()
        return [{"model": record["model"], "version": record["version"], "window_start": record["window_start"],
                 "window_end": record["window_end"], "rule": self.RULE, "severity": severity,
                 "value": 1.0 - quality["accuracy"], "threshold": self.detector.threshold, "state": state,
                 "detail": "sustained rise of the error (Page-Hinkley): retraining recommended"
                           if state == "firing" else "accuracy back within tolerance"}
                for severity, state in changes]
