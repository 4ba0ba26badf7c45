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
