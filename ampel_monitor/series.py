"""Window metrics as Prometheus time series: the names, units and labels of ``docs/metrics.md``.

Every series is a gauge holding one window's value, timestamped at the window end
(remote write carries the timestamp). Names follow Prometheus conventions: the
``ampel_`` prefix, base units (seconds, ratios 0-1), and only the labels ``model``,
``version``, ``window`` (the window length, e.g. ``5m``) and ``feature``.
A value that is unknown in a window (no confidences, no resource samples, a
statistic without data) is left out, never written as NaN.

Pure Python: no Apache Beam import.

>>> metrics = {"model": "m", "version": "v1", "window_start": "2026-01-01T00:00:00Z",
...            "window_end": "2026-01-01T00:05:00Z", "count": 10, "errors": 1,
...            "throughput_rps": 0.03, "error_rate": 0.1,
...            "latency_ms": {"p50": 20.0, "p90": None, "p95": None, "p99": None, "max": 40.0},
...            "confidence": None, "features": {}, "drifted_features": [], "share_drifted": 0.0,
...            "prediction_drift": None, "resources": None, "late": False}
>>> [(s.name, s.value) for s in window_series(metrics, "5m")][:4]
[('ampel_predictions', 10.0), ('ampel_prediction_errors', 1.0), ('ampel_throughput_per_second', 0.03), ('ampel_error_ratio', 0.1)]
>>> window_series(metrics, "5m")[0].timestamp_ms
1767225900000
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["SERIES", "Sample", "window_label", "window_series"]


@dataclass(frozen=True)
class Sample:
    """One value of one series."""

    name: str
    #: Label pairs, sorted by name.
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int


#: Every series name, with its help text (type gauge throughout). ``docs/metrics.md``
#: lists the same names; a test keeps them in step.
SERIES: dict[str, str] = {
    "ampel_predictions": "Predictions in the window.",
    "ampel_prediction_errors": "Failed predictions (status error) in the window.",
    "ampel_throughput_per_second": "Predictions per second over the window.",
    "ampel_error_ratio": "Failed predictions / all predictions.",
    "ampel_latency_p50_seconds": "Median serving latency.",
    "ampel_latency_p90_seconds": "90th percentile of serving latency.",
    "ampel_latency_p95_seconds": "95th percentile of serving latency.",
    "ampel_latency_p99_seconds": "99th percentile of serving latency.",
    "ampel_latency_max_seconds": "Largest serving latency.",
    "ampel_confidence_mean": "Mean prediction confidence (0-1).",
    "ampel_confidence_p10": "10th percentile of confidence.",
    "ampel_confidence_p50": "Median confidence.",
    "ampel_confidence_p90": "90th percentile of confidence.",
    "ampel_confidence_below_threshold_ratio": "Share of predictions with confidence below the configured threshold.",
    "ampel_confidence_psi": "PSI of the confidence distribution against the reference.",
    "ampel_confidence_js": "Jensen-Shannon distance of the confidence distribution against the reference.",
    "ampel_prediction_psi": "PSI of the prediction distribution against the reference.",
    "ampel_prediction_js": "Jensen-Shannon distance of the prediction distribution against the reference.",
    "ampel_feature_values": "Values of a feature seen in the window (missing ones included).",
    "ampel_feature_psi": "PSI of a feature against the reference.",
    "ampel_feature_js": "Jensen-Shannon distance (base 2) of a feature against the reference.",
    "ampel_feature_ks_statistic": "Kolmogorov-Smirnov D of a numeric feature against the reference.",
    "ampel_feature_ks_pvalue": "p-value of the KS test.",
    "ampel_feature_chi2_statistic": "Chi-square statistic of a categorical feature against the reference.",
    "ampel_feature_chi2_pvalue": "p-value of the chi-square test.",
    "ampel_feature_missing_ratio": "Share of missing values of a feature.",
    "ampel_feature_drifted": "1 if the feature is drifted in the window (drift policy), else 0.",
    "ampel_drifted_features": "Number of drifted features.",
    "ampel_drifted_features_ratio": "Share of the model's features that drifted.",
    "ampel_accuracy_ratio": "Accuracy of the labelled predictions of the window (once labels arrive).",
    "ampel_accuracy_drop_ratio": "Drop of accuracy against the reference accuracy, relative (0.1 = 10 % lower).",
    "ampel_resource_samples": "Resource samples of the model's hosts in the window.",
    "ampel_resource_cpu_mean_ratio": "Mean CPU utilisation of the serving hosts (0-1).",
    "ampel_resource_cpu_max_ratio": "Largest CPU utilisation sample.",
    "ampel_resource_memory_mean_ratio": "Mean memory utilisation (0-1).",
    "ampel_resource_memory_max_ratio": "Largest memory utilisation sample.",
    "ampel_resource_gpu_mean_ratio": "Mean GPU utilisation (0-1), where hosts report one.",
    "ampel_resource_gpu_max_ratio": "Largest GPU utilisation sample.",
}

_LATENCY = ("p50", "p90", "p95", "p99", "max")
_CONFIDENCE = ("mean", "p10", "p50", "p90")
_FEATURE = {
    "count": "ampel_feature_values",
    "psi": "ampel_feature_psi",
    "js": "ampel_feature_js",
    "ks_statistic": "ampel_feature_ks_statistic",
    "ks_pvalue": "ampel_feature_ks_pvalue",
    "chi2_statistic": "ampel_feature_chi2_statistic",
    "chi2_pvalue": "ampel_feature_chi2_pvalue",
    "missing_share": "ampel_feature_missing_ratio",
    "drifted": "ampel_feature_drifted",
}


def window_label(size_seconds: float) -> str:
    """The ``window`` label of a window length: ``5m``, ``90s``, ``1h``.

    >>> window_label(300), window_label(90), window_label(3600), window_label(0.5)
    ('5m', '90s', '1h', '500ms')
    """
    ms = int(round(size_seconds * 1000))
    for unit, length in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % length == 0:
            return f"{ms // length}{unit}"
    return f"{ms}ms"


def _epoch_ms(rfc3339: str) -> int:
    return int(round(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000))


def _values(metrics: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, str], Any]]:
    yield "ampel_predictions", {}, metrics["count"]
    yield "ampel_prediction_errors", {}, metrics["errors"]
    yield "ampel_throughput_per_second", {}, metrics["throughput_rps"]
    yield "ampel_error_ratio", {}, metrics["error_rate"]
    latency = metrics["latency_ms"]
    for key in _LATENCY:
        value = latency.get(key)
        yield f"ampel_latency_{key}_seconds", {}, None if value is None else value / 1000.0
    confidence = metrics.get("confidence") or {}
    for key in _CONFIDENCE:
        yield f"ampel_confidence_{key}", {}, confidence.get(key)
    yield "ampel_confidence_below_threshold_ratio", {}, confidence.get("below_threshold")
    for prefix, drift in (("ampel_confidence", confidence.get("drift")), ("ampel_prediction", metrics.get("prediction_drift"))):
        drift = drift or {}
        yield f"{prefix}_psi", {}, drift.get("psi")
        yield f"{prefix}_js", {}, drift.get("js")
    for feature, entry in metrics["features"].items():
        for key, name in _FEATURE.items():
            if key in entry:
                yield name, {"feature": feature}, entry[key]
    yield "ampel_drifted_features", {}, len(metrics["drifted_features"])
    yield "ampel_drifted_features_ratio", {}, metrics["share_drifted"]
    quality = metrics.get("quality") or {}
    yield "ampel_accuracy_ratio", {}, quality.get("accuracy")
    yield "ampel_accuracy_drop_ratio", {}, quality.get("accuracy_drop")
    resources = metrics.get("resources") or {}
    yield "ampel_resource_samples", {}, resources.get("samples")
    for kind in ("cpu", "memory", "gpu"):
        for stat in ("mean", "max"):
            yield f"ampel_resource_{kind}_{stat}_ratio", {}, resources.get(f"{kind}_{stat}")


def window_series(metrics: Mapping[str, Any], window: str) -> list[Sample]:
    """The samples of one ``WindowMetrics`` record, timestamped at its window end.

    Args:
        metrics: the record.
        window: the ``window`` label (see ``window_label``).
    """
    timestamp = _epoch_ms(metrics["window_end"])
    base = {"model": metrics["model"], "version": metrics["version"], "window": window}
    samples = []
    for name, extra, value in _values(metrics):
        if value is None:
            continue
        value = float(value)
        if math.isnan(value):
            continue
        samples.append(Sample(name, tuple(sorted({**base, **extra}.items())), value, timestamp))
    return samples
