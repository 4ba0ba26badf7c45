"""Window metrics as Prometheus time series: the names, units and labels of ``docs/metrics.md``.

Every series is a gauge holding one window's value, timestamped at the window end
(remote write carries the timestamp). Names follow Prometheus conventions: the
``ampel_`` prefix, base units (seconds, ratios 0-1), and only the labels ``model``,
``version``, ``window`` (the window length, e.g. ``5m``), ``feature``; for quality
records ``attribute`` and ``subgroup`` (bias), for A/B comparisons ``baseline``.
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
    "ampel_feature_importance": "Mean absolute attribution of a feature over the window's attributed predictions.",
    "ampel_feature_importance_rank": "Rank of a feature by mean absolute attribution (1 = most important).",
    "ampel_feature_importance_rank_change": "Change of the top-5 features against the profile's (0 same order - 1 none in common).",
    "ampel_labelled_predictions": "Predictions of the window whose label has arrived.",
    "ampel_labelled_ratio": "Labelled predictions / predictions of the window.",
    "ampel_precision_ratio": "Precision of the labelled predictions (binary: positive class; else macro).",
    "ampel_recall_ratio": "Recall of the labelled predictions (binary: positive class; else macro).",
    "ampel_f1_ratio": "F1 score of the labelled predictions (binary: positive class; else macro).",
    "ampel_brier_score": "Brier score of the labelled binary predictions with a confidence.",
    "ampel_log_loss": "Log loss (natural log) of the labelled binary predictions with a confidence.",
    "ampel_mae": "Mean absolute error of the labelled regression predictions.",
    "ampel_rmse": "Root mean squared error of the labelled regression predictions.",
    "ampel_mape_ratio": "Mean absolute percentage error (a ratio) of the labelled regression predictions.",
    "ampel_mae_increase_ratio": "Rise of the MAE against the reference MAE, relative (0.1 = 10 % higher).",
    "ampel_bias_demographic_parity_difference": "Largest minus smallest positive-prediction rate across the subgroups of an attribute.",
    "ampel_bias_equal_opportunity_difference": "Largest minus smallest true-positive rate across the subgroups of an attribute.",
    "ampel_bias_disparate_impact_ratio": "Smallest / largest positive-prediction rate across the subgroups of an attribute.",
    "ampel_bias_disparate_impact_pvalue": "p-value of the two-proportion z-test of those two subgroups' positive rates.",
    "ampel_subgroup_labelled_predictions": "Labelled predictions of a subgroup of a sensitive attribute.",
    "ampel_subgroup_accuracy_ratio": "Accuracy of a subgroup's labelled predictions.",
    "ampel_subgroup_positive_ratio": "Share of a subgroup's labelled predictions that are the positive class.",
    "ampel_subgroup_tpr_ratio": "True-positive rate of a subgroup.",
    "ampel_subgroup_fpr_ratio": "False-positive rate of a subgroup.",
    "ampel_ab_error_ratio_difference": "Error rate of a version minus its baseline version's.",
    "ampel_ab_error_ratio_pvalue": "p-value of the two-proportion z-test of the error rates.",
    "ampel_ab_latency_p95_difference_seconds": "p95 latency of a version minus its baseline version's.",
    "ampel_ab_accuracy_difference": "Accuracy of a version minus its baseline version's.",
    "ampel_ab_accuracy_pvalue": "p-value of the two-proportion z-test of the accuracies.",
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
    for feature, entry in (metrics.get("importance") or {}).items():
        yield "ampel_feature_importance", {"feature": feature}, entry["mean_abs"]
        yield "ampel_feature_importance_rank", {"feature": feature}, entry["rank"]
    yield "ampel_feature_importance_rank_change", {}, metrics.get("importance_rank_change")
    resources = metrics.get("resources") or {}
    yield "ampel_resource_samples", {}, resources.get("samples")
    for kind in ("cpu", "memory", "gpu"):
        for stat in ("mean", "max"):
            yield f"ampel_resource_{kind}_{stat}_ratio", {}, resources.get(f"{kind}_{stat}")


_QUALITY = {
    "labelled": "ampel_labelled_predictions",
    "labelled_fraction": "ampel_labelled_ratio",
    "accuracy": "ampel_accuracy_ratio",
    "accuracy_drop": "ampel_accuracy_drop_ratio",
    "precision": "ampel_precision_ratio",
    "recall": "ampel_recall_ratio",
    "f1": "ampel_f1_ratio",
    "brier": "ampel_brier_score",
    "log_loss": "ampel_log_loss",
    "mae": "ampel_mae",
    "rmse": "ampel_rmse",
    "mape": "ampel_mape_ratio",
    "mae_increase": "ampel_mae_increase_ratio",
}
_BIAS = ("demographic_parity_difference", "equal_opportunity_difference", "disparate_impact_ratio",
         "disparate_impact_pvalue")
_SUBGROUP = {"count": "labelled_predictions", "accuracy": "accuracy_ratio", "positive_rate": "positive_ratio",
             "tpr": "tpr_ratio", "fpr": "fpr_ratio"}


def _quality_values(record: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, str], Any]]:
    quality = record["quality"]
    for key, name in _QUALITY.items():
        yield name, {}, quality.get(key)
    for attribute, bias in (quality.get("bias") or {}).items():
        for key in _BIAS:
            yield f"ampel_bias_{key}", {"attribute": attribute}, bias.get(key)
        for subgroup, entry in bias["subgroups"].items():
            for key, name in _SUBGROUP.items():
                yield f"ampel_subgroup_{name}", {"attribute": attribute, "subgroup": subgroup}, entry.get(key)


def _ab_values(record: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, str], Any]]:
    for version, entry in record["versions"].items():
        labels = {"version": version, "baseline": record["baseline"]}
        if record["kind"] == "metrics":
            yield "ampel_ab_error_ratio_difference", labels, entry["error_rate_difference"]
            yield "ampel_ab_error_ratio_pvalue", labels, entry["error_rate_pvalue"]
            p95 = entry["latency_p95_difference_ms"]
            yield "ampel_ab_latency_p95_difference_seconds", labels, None if p95 is None else p95 / 1000.0
        else:
            yield "ampel_ab_accuracy_difference", labels, entry["accuracy_difference"]
            yield "ampel_ab_accuracy_pvalue", labels, entry["accuracy_pvalue"]


def window_series(metrics: Mapping[str, Any], window: str, kind: str = "metrics") -> list[Sample]:
    """The samples of one window record, timestamped at its window end.

    A record's n-th pane (its ``pane`` field, quality and A/B records) is written at
    the window end + n milliseconds, so that a later pane of a window is a newer
    sample, never a duplicate of an older one at the same time.

    Args:
        metrics: the record: ``WindowMetrics`` (kind ``metrics``), a quality record
            (``quality``) or an A/B comparison (``ab``, whose versions carry their own
            ``version`` label and a ``baseline`` label).
        window: the ``window`` label (see ``window_label``).
        kind: which record ``metrics`` is.
    """
    timestamp = _epoch_ms(metrics["window_end"]) + int(metrics.get("pane") or 0)
    base = {"model": metrics["model"], "window": window}
    if kind != "ab":
        base["version"] = metrics["version"]
    values = {"metrics": _values, "quality": _quality_values, "ab": _ab_values}[kind](metrics)
    samples = []
    for name, extra, value in values:
        if value is None:
            continue
        value = float(value)
        if math.isnan(value):
            continue
        samples.append(Sample(name, tuple(sorted({**base, **extra}.items())), value, timestamp))
    return samples
