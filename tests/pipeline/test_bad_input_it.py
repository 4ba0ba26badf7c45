"""Bad input: no crash, every bad record dead-lettered with its reason, valid results unchanged."""

from __future__ import annotations

import json

import pytest

from ampel_monitor.config import load_config
from pipelines.monitor import run
from tests.pipeline.streams import START_MS, make_events, write_setup

pytestmark = pytest.mark.it

GOOD = {"event_id": "g", "model_id": "alpha", "model_version": "v1", "timestamp": START_MS + 1000, "latency_ms": 5.0,
        "status": "ok", "features": {"x": 1.0, "y": 2.0, "city": "rome"}, "prediction": "yes", "confidence": 0.9}


def bad(**changes):
    record = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is KeyError:
            record.pop(key)
        else:
            record[key] = value
    return json.dumps(record)


GARBAGE = [
    ("this is not json", "malformed"),
    ("[1, 2, 3]", "malformed"),
    ('{"model_id": "alpha", "model_version": "v1"', "malformed"),
    (bad(model_id="gamma"), "unknown_model"),
    (bad(model_id=KeyError), "missing_field"),
    (bad(event_id=None), "missing_field"),
    (bad(features=KeyError), "missing_field"),
    (bad(latency_ms="fast"), "bad_type"),
    (bad(latency_ms=True), "bad_type"),
    (bad(features=[1, 2]), "bad_type"),
    (bad(features={"x": "one", "y": 2.0, "city": "rome"}), "bad_type"),
    (bad(features={"x": 1.0, "y": 2.0, "city": {"nested": 1}}), "bad_type"),
    (bad(features={"x": [1, 2], "y": 2.0, "city": "rome"}), "bad_type"),
    (bad(features={"x": 1.0, "y": [3.0, 4.0], "city": ["a", "b"]}), "bad_type"),
    (bad(attributes="female"), "bad_type"),
    (bad(latency_ms=-3.0), "negative_latency"),
    (bad(latency_ms=float("nan")), "non_finite"),
    (bad(confidence=float("inf")), "non_finite"),
    (bad(features={"x": float("-inf"), "y": 2.0, "city": "rome"}), "non_finite"),
    (bad(timestamp="yesterday"), "bad_timestamp"),
    (bad(timestamp="2026-01-01T00:00:00"), "bad_timestamp"),
    (bad(status="maybe"), "bad_value"),
    (bad(confidence=1.5), "bad_value"),
]


def test_garbage_is_dead_lettered_and_valid_results_unchanged(tmp_path):
    events = make_events(seed=21, minutes=6, per_minute=200)
    config = load_config(write_setup(tmp_path, events, {"size": "2m", "slide": "1m"}))
    clean = run(config, [str(tmp_path / "events.jsonl")], out_dir=str(tmp_path / "clean"))

    lines = [json.dumps(e) for e in events]
    mixed = tmp_path / "mixed.jsonl"
    with mixed.open("w") as handle:  # garbage spread through the valid events
        for i, line in enumerate(lines):
            handle.write(line + "\n")
            if i % 50 == 0 and i // 50 < len(GARBAGE):
                handle.write(GARBAGE[i // 50][0] + "\n")
    dirty = run(config, [str(mixed)], out_dir=str(tmp_path / "dirty"))

    def key(m):
        return m["model"], m["version"], m["window_end"]

    assert sorted(dirty.metrics, key=key) == sorted(clean.metrics, key=key)
    assert sorted(dirty.alerts, key=lambda a: (key(a), a["rule"])) == sorted(clean.alerts, key=lambda a: (key(a), a["rule"]))
    letters = [json.loads(line) for line in (tmp_path / "dirty" / "dead_letters.jsonl").read_text().splitlines()]
    assert len(letters) == len(GARBAGE)
    by_record = {letter["record"]: letter for letter in letters}
    for text, reason in GARBAGE:
        assert by_record[text]["reason"] == reason, text
        assert by_record[text]["source"].startswith(str(mixed) + ":")
        assert by_record[text]["detail"]
    counted = {}
    for _, reason in GARBAGE:
        counted[reason] = counted.get(reason, 0) + 1
    assert dirty.dead_letters == counted
