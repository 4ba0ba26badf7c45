"""Seeded output records shaped as the pipeline writes them, for the report's tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ampel_monitor.window import rfc3339

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000
FEATURES = ("age", "income", "region")


def end(minute: int) -> str:
    return rfc3339(START_MS + minute * MINUTE)


def metrics_record(rng: np.random.Generator, model: str, version: str, minute: int, count: int = 300,
                   late: bool = False, features: Iterable[str] = FEATURES, importance: bool = False) -> dict[str, Any]:
    """One window's metrics of one model version, every number drawn from ``rng``."""
    errors = int(rng.integers(0, 5))
    p50 = float(rng.uniform(20, 40))
    record: dict[str, Any] = {
        "model": model, "version": version, "window_start": end(minute - 5), "window_end": end(minute),
        "count": count, "errors": errors, "throughput_rps": count / 300, "error_rate": errors / count,
        "latency_ms": {"p50": p50, "p90": p50 * 1.5, "p95": float(rng.uniform(60, 900)), "p99": p50 * 3, "max": p50 * 5},
        "confidence": {"count": count, "mean": float(rng.uniform(0.6, 0.9)), "p10": 0.5, "p50": 0.7, "p90": 0.9,
                       "below_threshold": 0.1, "drift": {"kind": "numeric", "psi": float(rng.uniform(0, 0.3))}},
        "features": {f: {"kind": "numeric", "count": float(count), "psi": float(rng.uniform(0, 0.5)),
                         "js": float(rng.uniform(0, 0.2)), "drifted": False} for f in features},
        "drifted_features": [], "share_drifted": float(rng.uniform(0, 1)),
        "prediction_drift": {"kind": "categorical", "psi": float(rng.uniform(0, 0.3))},
        "resources": {"samples": 20, "cpu_mean": float(rng.uniform(0.2, 0.9)), "cpu_max": 0.95,
                      "memory_mean": float(rng.uniform(0.3, 0.7)), "memory_max": 0.8, "gpu_mean": None, "gpu_max": None},
        "late": late,
    }
    if importance:
        weights = {f: float(rng.uniform(0, 2)) for f in features}
        order = sorted(weights, key=lambda f: -weights[f])
        record["importance"] = {f: {"mean_abs": weights[f], "rank": order.index(f) + 1} for f in features}
    return record


def quality_record(rng: np.random.Generator, model: str, version: str, minute: int, labelled: int,
                   task: str = "classification") -> dict[str, Any]:
    predictions = 300
    quality: dict[str, Any] = {"task": task, "predictions": predictions, "labelled": labelled,
                               "labelled_fraction": labelled / predictions}
    if task == "classification":
        quality.update({"accuracy": float(rng.uniform(0.7, 1)), "precision": 0.8, "recall": 0.8,
                        "f1": float(rng.uniform(0.6, 1)), "accuracy_drop": 0.01})
        quality["bias"] = {"sex": {
            "subgroups": {"f": {"count": labelled // 2, "accuracy": 0.9, "small": False},
                          "m": {"count": labelled - labelled // 2, "accuracy": 0.8, "small": False}},
            "demographic_parity_difference": float(rng.uniform(0, 0.3)),
            "equal_opportunity_difference": float(rng.uniform(0, 0.3)),
            "disparate_impact_ratio": float(rng.uniform(0.5, 1)), "four_fifths_violated": False}}
    else:
        quality.update({"mae": float(rng.uniform(1, 5)), "rmse": float(rng.uniform(5, 9)), "mape": 0.1})
        quality["bias"] = {}
    return {"model": model, "version": version, "window_start": end(minute - 5), "window_end": end(minute),
            "late": False, "quality": quality}


def write_jsonl(path: Path, records: Iterable[Any]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
