"""Decoding records into columnar batches, without a runner."""

from __future__ import annotations

import io
import math

import fastavro
import numpy as np
import pytest

from ampel_monitor.events import EventDecoder, ModelSchema, decode_resources, parse_timestamp
from schemas import load_schema

SCHEMA = ModelSchema(numeric=("x",), categorical=("c",), numeric_prediction=False)
T0 = 1_767_225_600_000


def record(i, **changes):
    base = {"event_id": f"e{i}", "model_id": "m", "model_version": "v1", "timestamp": T0 + i * 1000,
            "latency_ms": float(i), "status": "error" if i % 4 == 0 else "ok", "features": {"x": float(i), "c": "a"},
            "prediction": "yes", "confidence": 0.75}
    base.update(changes)
    return base


def test_groups_by_model_version_and_slice_into_columns():
    decoder = EventDecoder({"m": SCHEMA}, slide_ms=60_000)
    records = [record(i) for i in range(150)] + [record(200, model_version="v2")]
    batches, dead = decoder.decode_records((f"s:{i}", r, None) for i, r in enumerate(records))
    assert dead == []
    shape = sorted((b.version, b.slice_start_ms - T0, len(b)) for b in batches)
    assert shape == [("v1", 0, 60), ("v1", 60_000, 60), ("v1", 120_000, 30), ("v2", 180_000, 1)]
    first = next(b for b in batches if b.version == "v1" and b.slice_start_ms == T0)
    assert first.timestamps.tolist() == [T0 + i * 1000 for i in range(60)]
    assert first.error.sum() == 15 and first.latency_ms.dtype == np.float64
    assert first.features["x"].tolist() == [float(i) for i in range(60)]
    assert first.features["c"].tolist() == ["a"] * 60
    assert first.event_ids.tolist() == [f"e{i}" for i in range(60)]


def test_missing_features_and_unknown_ones():
    decoder = EventDecoder({"m": SCHEMA}, slide_ms=60_000)
    batches, dead = decoder.decode_records([
        ("s:1", record(1, features={"x": None, "zz": 1}), None),
        ("s:2", record(2, features={}, confidence=None, prediction=None), None),
    ])
    assert dead == []
    (batch,) = batches
    assert np.isnan(batch.features["x"]).all() and batch.features["c"].tolist() == [None, None]
    assert math.isnan(batch.confidence[1]) and batch.prediction.tolist() == ["yes", None]
    assert decoder.unknown_features == {"zz": 1}


def test_a_bad_feature_rejects_only_its_record():
    decoder = EventDecoder({"m": SCHEMA}, slide_ms=60_000)
    batches, dead = decoder.decode_records([
        ("s:1", record(1), None), ("s:2", record(2, features={"x": "high", "c": "a"}), None), ("s:3", record(3), None)])
    assert [(d.reason, d.source) for d in dead] == [("bad_type", "s:2")]
    assert batches[0].event_ids.tolist() == ["e1", "e3"]
    assert batches[0].features["x"].tolist() == [1.0, 3.0]


def test_timestamps():
    assert parse_timestamp("2026-01-01T01:00:00+01:00") == T0
    assert parse_timestamp(T0) == T0
    for bad in ("2026-01-01", "noon", True, None, float("nan")):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_resource_samples():
    records = [("r:1", {"host": "h1", "model_id": "m", "timestamp": T0, "cpu": 0.5, "memory": 0.25, "gpu": None}, None),
               ("r:2", {"host": "h2", "model_id": "m", "timestamp": T0 + 1, "cpu": 0.7, "memory": 0.5, "gpu": 0.9}, None),
               ("r:3", {"host": "h2", "model_id": "m", "timestamp": T0, "cpu": 1.7, "memory": 0.5}, None),
               ("r:4", {"host": "h2", "model_id": "x", "timestamp": T0, "cpu": 0.1, "memory": 0.5}, None)]
    batches, dead = decode_resources(records, ["m"], 60_000)
    assert [(d.reason, d.source) for d in dead] == [("bad_value", "r:3"), ("unknown_model", "r:4")]
    (batch,) = batches
    assert batch.cpu.tolist() == [0.5, 0.7] and batch.memory.tolist() == [0.25, 0.5]
    assert math.isnan(batch.gpu[0]) and batch.gpu[1] == 0.9


def test_attributions_become_absolute_columns_per_profiled_feature():
    decoder = EventDecoder({"m": SCHEMA}, slide_ms=60_000)
    batches, dead = decoder.decode_records([
        ("s:1", record(1, attributions={"x": -0.5, "c": 2, "zz": 9.0}), None),
        ("s:2", record(2, attributions={"x": 0.25}), None),
        ("s:3", record(3), None),
        ("s:4", record(4, attributions={"x": "big"}), None),
        ("s:5", record(5, attributions={"c": float("inf")}), None),
        ("s:6", record(6, attributions=[1.0]), None),
    ])
    assert sorted((d.source, d.reason) for d in dead) == [("s:4", "bad_type"), ("s:5", "non_finite"), ("s:6", "bad_type")]
    (batch,) = batches
    assert batch.event_ids.tolist() == ["e1", "e2", "e3"]
    assert batch.attributions["x"][:2].tolist() == [0.5, 0.25] and math.isnan(batch.attributions["x"][2])
    assert batch.attributions["c"][:2].tolist() == [2.0, 0.0] and set(batch.attributions) == {"x", "c"}
    assert batch.take(np.array([False, True, True])).attributions["x"][0] == 0.25


def test_an_empty_attributions_map_attributes_nothing_to_every_feature():
    """An event with ``attributions: {}`` is attributed (zeros), unlike one without; in both decoders."""
    events = [record(i, error_code=None, attributes={}, attributions=a) for i, a in ((1, {}), (2, None))]
    (slow,), _ = EventDecoder({"m": SCHEMA}, slide_ms=60_000).decode_records((f"s:{i}", r, None) for i, r in enumerate(events))
    schema = load_schema("PredictionEvent")
    messages = []
    for event in events:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, event)
        messages.append(buffer.getvalue())
    ends = np.cumsum([len(m) for m in messages])
    blocks = np.array([(e - len(m), e, 1) for m, e in zip(messages, ends)], dtype=np.int64)
    (fast,), _, failed = EventDecoder({"m": SCHEMA}, slide_ms=60_000).decode_avro(b"".join(messages), blocks, lambda *a: 1 / 0)
    assert failed.size == 0
    for batch in (slow, fast):
        assert set(batch.attributions) == {"x", "c"}
        for column in batch.attributions.values():
            assert column[0] == 0.0 and math.isnan(column[1])


def test_no_attributions_no_columns():
    (batch,), _ = EventDecoder({"m": SCHEMA}, slide_ms=60_000).decode_records([("s:1", record(1), None)])
    assert batch.attributions == {}

