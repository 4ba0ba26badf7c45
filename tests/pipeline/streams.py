"""Small seeded event streams for the pipeline tests, and offline window computations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from drift.profile import ReferenceProfile

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CITIES = ["berlin", "paris", "rome", "oslo"]


def reference_columns(rng: np.random.Generator, rows: int = 5000) -> dict:
    return {
        "x": rng.normal(0, 1, rows),
        "y": rng.exponential(2, rows),
        "city": rng.choice(np.array(CITIES, dtype=object), rows, p=[0.4, 0.3, 0.2, 0.1]),
        "prediction": rng.choice(np.array(["yes", "no"], dtype=object), rows),
        "confidence": rng.uniform(0.5, 1, rows),
    }


def make_events(seed: int = 1, minutes: int = 30, per_minute: int = 120, drift_from: int | None = None,
                spike: tuple[int, int] | None = None, errors: tuple[int, int] | None = None) -> list[dict]:
    """Events of models "alpha" (versions v1, v2) and "beta" (v1), spread over ``minutes``.

    ``drift_from`` shifts x by +2 from that minute on (alpha only); ``spike`` (first, end
    minute) makes every alpha/v1 latency 2000 ms; ``errors`` makes a third of beta's
    predictions fail in those minutes.
    """
    rng = np.random.default_rng(seed)
    events = []
    n = minutes * per_minute
    offsets = np.sort(rng.integers(0, minutes * 60_000, n))
    for i, offset in enumerate(offsets):
        minute = int(offset // 60_000)
        model = "alpha" if i % 3 else "beta"
        version = "v2" if model == "alpha" and i % 7 == 0 else "v1"
        x = float(rng.normal(2.0 if drift_from is not None and model == "alpha" and minute >= drift_from else 0.0, 1))
        latency = float(rng.lognormal(3.5, 0.5))
        if spike and model == "alpha" and version == "v1" and spike[0] <= minute < spike[1]:
            latency = 2000.0
        failed = bool(errors and model == "beta" and errors[0] <= minute < errors[1] and i % 3 == 0)
        features: dict = {"x": x, "y": float(rng.exponential(2)), "city": str(rng.choice(CITIES + ["tokyo"], p=[0.398, 0.299, 0.199, 0.099, 0.005]))}
        if i % 50 == 0:
            features["y"] = None
        if i % 97 == 0:
            features.pop("city")
        events.append({
            "event_id": f"e{i}",
            "model_id": model,
            "model_version": version,
            "timestamp": int(START_MS + offset),
            "latency_ms": latency,
            "status": "error" if failed else "ok",
            "error_code": "E1" if failed else None,
            "features": features,
            "prediction": str(rng.choice(["yes", "no"])),
            "confidence": None if i % 11 == 0 else float(rng.uniform(0.3, 1)),
        })
    return events


def write_setup(tmp: Path, events: list[dict], windows: dict, extra: dict | None = None, seed: int = 0) -> Path:
    """Writes reference profiles, the events file and a config; returns the config path."""
    rng = np.random.default_rng(seed)
    for model in ("alpha", "beta"):
        ReferenceProfile.build(reference_columns(rng), prediction="prediction", confidence="confidence",
                               resolution=200).save(tmp / f"{model}.json")
    with (tmp / "events.jsonl").open("w") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")
    config = {
        "models": [{"id": "alpha", "task": "classification", "reference": "alpha.json"},
                   {"id": "beta", "task": "classification", "reference": "beta.json"}],
        "windows": windows,
        "sinks": {"out_dir": str(tmp / "out")},
        **(extra or {}),
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def window_events(events: list[dict], model: str, version: str, start_ms: int, end_ms: int) -> list[dict]:
    return [e for e in events if e["model_id"] == model and e["model_version"] == version
            and start_ms <= e["timestamp"] < end_ms]


def expected_windows(events: list[dict], size_ms: int, slide_ms: int) -> set[tuple[str, str, int]]:
    """Every (model, version, window end) whose window holds at least one event."""
    out = set()
    for e in events:
        ts = e["timestamp"]
        last_start = ts - ts % slide_ms
        start = last_start
        while start > ts - size_ms:
            out.add((e["model_id"], e["model_version"], start + size_ms))
            start -= slide_ms
    return out
