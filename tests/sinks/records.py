"""Window-metric and alert records shaped like the pipeline's, for sink tests."""

from __future__ import annotations

from typing import Any

from ampel_monitor.window import rfc3339

BASE_MS = 1_795_000_000_000 // 60_000 * 60_000


def window_metrics(end_minute: int, model: str = "alpha", version: str = "v1", count: int = 120,
                   base_ms: int = BASE_MS) -> dict[str, Any]:
    """A window ending ``end_minute`` minutes after ``base_ms``; ``_end_ms`` is its end in ms."""
    end = base_ms + end_minute * 60_000
    return {
        "model": model, "version": version,
        "window_start": rfc3339(end - 300_000), "window_end": rfc3339(end), "_end_ms": end,
        "count": count, "errors": 3, "throughput_rps": count / 300, "error_rate": 3 / count,
        "latency_ms": {"p50": 31.5, "p90": 60.2, "p95": 80.9 + end_minute, "p99": 150.0, "max": 410.0},
        "confidence": None,
        "features": {
            "x": {"kind": "numeric", "count": count, "psi": 0.31, "js": 0.12, "ks_statistic": 0.2,
                  "ks_pvalue": 0.001, "missing_share": 0.0, "drifted": True},
            "city": {"kind": "categorical", "count": count, "psi": 0.01, "js": 0.02, "chi2_statistic": 1.5,
                     "chi2_pvalue": 0.68, "missing_share": 0.01, "drifted": False},
        },
        "drifted_features": ["x"], "share_drifted": 0.5, "prediction_drift": None,
        "resources": {"samples": 4, "cpu_mean": 0.5, "cpu_max": 0.7, "memory_mean": 0.4, "memory_max": 0.45,
                      "gpu_mean": None, "gpu_max": None},
        "late": False,
    }


def alert(rule: str = "latency_p95", severity: str = "critical", state: str = "firing", end_minute: int = 5,
          value: float = 1.8, threshold: float = 1.0, base_ms: int = BASE_MS) -> dict[str, Any]:
    end = base_ms + end_minute * 60_000
    return {"model": "alpha", "version": "v1", "window_start": rfc3339(end - 300_000), "window_end": rfc3339(end),
            "rule": rule, "severity": severity, "value": value, "threshold": threshold, "state": state,
            "detail": "p95 latency in seconds"}


def quality_record(end_minute: int, model: str = "alpha", version: str = "v1", labelled: int = 60, pane: int = 0,
                   base_ms: int = BASE_MS) -> dict[str, Any]:
    """A quality pane of a binary classifier with one sensitive attribute, as ``quality.jsonl`` has it."""
    end = base_ms + end_minute * 60_000
    return {
        "model": model, "version": version, "window_start": rfc3339(end - 300_000), "window_end": rfc3339(end),
        "_end_ms": end, "late": pane > 0, "pane": pane,
        "quality": {
            "task": "classification", "predictions": 120, "labelled": labelled, "labelled_fraction": labelled / 120,
            "correct": labelled - 6, "average": "binary", "accuracy": (labelled - 6) / labelled, "precision": 0.8,
            "recall": 0.75, "f1": 0.774, "scored": labelled, "brier": 0.12, "log_loss": 0.4, "accuracy_drop": 0.02,
            "bias": {"sex": {
                "subgroups": {"f": {"count": labelled // 2, "accuracy": 0.9, "positive_rate": 0.3, "tpr": 0.7,
                                    "fpr": 0.1, "small": False},
                              "m": {"count": labelled // 2, "accuracy": 0.9, "positive_rate": 0.5, "tpr": None,
                                    "fpr": 0.2, "small": False}},
                "demographic_parity_difference": 0.2, "equal_opportunity_difference": None,
                "disparate_impact_ratio": 0.6, "disparate_impact_pvalue": 0.04, "four_fifths_violated": True}},
        },
    }


def ab_record(end_minute: int, kind: str = "metrics", pane: int = 0, base_ms: int = BASE_MS) -> dict[str, Any]:
    """An A/B comparison of alpha's v2 against its baseline v1, as ``ab.jsonl`` has it."""
    end = base_ms + end_minute * 60_000
    versions = ({"v2": {"error_rate_difference": 0.01, "error_rate_pvalue": 0.2, "accuracy_difference": None,
                        "accuracy_pvalue": None, "latency_p95_difference_ms": 12.0}} if kind == "metrics" else
                {"v2": {"error_rate_difference": None, "error_rate_pvalue": None, "accuracy_difference": -0.05,
                        "accuracy_pvalue": 0.01, "latency_p95_difference_ms": None}})
    return {"model": "alpha", "window_start": rfc3339(end - 300_000), "window_end": rfc3339(end), "_end_ms": end,
            "kind": kind, "baseline": "v1", "pane": pane, "versions": versions}

