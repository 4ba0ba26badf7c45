"""Labels under streaming: labels arriving after their prediction's window fired update it
through late panes; predictions expire after the maximum delay; a label whose prediction
expired is dead-lettered."""

from __future__ import annotations

import json
import pickle

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.transforms.window import TimestampedValue

from ampel_monitor.config import LabelsConfig, ModelConfig, WindowConfig
from ampel_monitor.events import EventDecoder, ModelSchema
from ampel_monitor.labels import LabelBatch
from drift.profile import ReferenceProfile
from transforms.counters import REGISTRY
from transforms.labels import QualityWindows, _shard_labels
from transforms.read import DEAD
from transforms.sinks import WriteJsonLines

pytestmark = pytest.mark.it

T0 = 1_767_225_600_000
WINDOWS = WindowConfig(size=120, slide=60, allowed_lateness=60)
LABELS = LabelsConfig(max_delay=600, grace=60, shards=4)


def run_quality(tmp_path, stream) -> tuple[list[dict], list[dict]]:
    """Quality panes and dead letters (each with ``at``: its timestamp, ms after T0) of the
    labelled stream ``stream`` (predictions and label batches) through QualityWindows."""
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    quality_path, dead_path = tmp_path / "quality.jsonl", tmp_path / "dead.jsonl"
    models = (ModelConfig("m", "classification", "unused", positive_label="yes"),)
    with beam.Pipeline(options=options) as pipeline:
        both = pipeline | stream
        preds = both | "P" >> beam.Filter(lambda kv: not isinstance(kv[1], LabelBatch))
        labs = both | "L" >> beam.Filter(lambda kv: isinstance(kv[1], LabelBatch))
        out = (preds, labs) | QualityWindows(models, {"m": {"accuracy": 0.5}}, WINDOWS, LABELS)
        _ = out["quality"] | beam.Values() | "Q" >> WriteJsonLines(str(quality_path))
        stamped = out[DEAD] | beam.Map(lambda d, at=beam.DoFn.TimestampParam: {**d, "at": at.micros // 1000 - T0})
        _ = stamped | "D" >> WriteJsonLines(str(dead_path))
    return ([json.loads(line) for line in quality_path.read_text().splitlines()],
            [json.loads(line) for line in dead_path.read_text().splitlines()])


def test_late_labels_update_their_windows_and_waiting_is_bounded(tmp_path):
    profile = ReferenceProfile.build({"x": np.arange(100.0)})
    decoder = EventDecoder({"m": ModelSchema.from_profile(profile, "classification")}, WINDOWS.slide_ms)
    records = [(f"t:{i}", {"event_id": f"e{i}", "model_id": "m", "model_version": "v1", "timestamp": T0 + i * 1000,
                           "latency_ms": 10.0, "status": "ok", "features": {"x": 1.0},
                           "prediction": "yes" if i % 2 else "no"}, None) for i in range(40)]
    found, dead = decoder.decode_records(records)
    assert not dead
    predictions = [TimestampedValue((b.model, b), b.slice_start_ms / 1000) for b in found]

    def labels(ids, at_s):
        batch = LabelBatch("m", np.array([f"e{i}" for i in ids], dtype=object),
                           np.array(["yes"] * len(ids), dtype=object), np.full(len(ids), T0 + at_s * 1000, dtype=np.int64))
        return [TimestampedValue(("m", batch), T0 / 1000 + at_s)]

    stream = (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements(predictions)                 # 40 predictions in [0, 40 s)
        .advance_watermark_to(T0 / 1000 + 180)     # [-60, 60) and [0, 120) fire: no labels yet
        .add_elements(labels(range(20), 170))      # late: 20 labels
        .advance_watermark_to(T0 / 1000 + 185)
        .add_elements(labels(range(20, 30), 185))  # late: 10 more
        .advance_watermark_to(T0 / 1000 + 700)     # the other 10 predictions expire (600 s)
        .add_elements(labels([35], 700))           # its prediction has expired
        .advance_watermark_to_infinity()
    )
    expired_before = REGISTRY.get_sample_value("ampel_unlabelled_predictions_expired_total", {"model": "m"}) or 0
    panes, dead = run_quality(tmp_path, stream)
    seen = sorted((p["window_start"], p["late"], p["quality"]["labelled"], p["quality"]["predictions"]) for p in panes)
    assert seen == [
        ("2025-12-31T23:59:00Z", True, 20, 40), ("2025-12-31T23:59:00Z", True, 30, 40),
        ("2026-01-01T00:00:00Z", True, 20, 40), ("2026-01-01T00:00:00Z", True, 30, 40),
    ]
    for start in {p["window_start"] for p in panes}:  # each later pane a later sample for Prometheus
        ordered = sorted((p for p in panes if p["window_start"] == start), key=lambda p: p["quality"]["labelled"])
        assert [p["pane"] for p in ordered] == sorted({p["pane"] for p in ordered}) and ordered[0]["pane"] > 0
    last = max((p for p in panes if p["window_start"] == "2026-01-01T00:00:00Z"), key=lambda p: p["quality"]["labelled"])
    # labels all "yes": predictions of odd ids were right; ids 0..29 hold 15 odd ones
    assert last["quality"]["accuracy"] == 15 / 30 and last["quality"]["labelled_fraction"] == 30 / 40
    assert [(d["reason"], json.loads(d["record"])["event_id"]) for d in dead] == [("label_without_prediction", "e35")]
    expired = REGISTRY.get_sample_value("ampel_unlabelled_predictions_expired_total", {"model": "m"}) - expired_before
    assert expired == 10


def test_a_steady_stream_expires_what_waited_too_long_as_the_watermark_passes(tmp_path):
    """Predictions keep coming, each batch in a later slice, while a label waits for a
    prediction that never comes: it is dead-lettered once the watermark passes its grace
    (60 s), not when the stream pauses."""
    profile = ReferenceProfile.build({"x": np.arange(100.0)})
    decoder = EventDecoder({"m": ModelSchema.from_profile(profile, "classification")}, WINDOWS.slide_ms)

    def predictions(first_s):
        records = [(f"t:{i}", {"event_id": f"e{i}", "model_id": "m", "model_version": "v1", "timestamp": T0 + i * 1000,
                               "latency_ms": 10.0, "status": "ok", "features": {"x": 1.0}, "prediction": "yes"}, None)
                   for i in range(first_s, first_s + 60, 2)]
        found, dead = decoder.decode_records(records)
        assert not dead
        return [TimestampedValue((b.model, b), b.slice_start_ms / 1000) for b in found]

    ids = [f"e{i}" for i in range(0, 40, 2)] + ["never"]
    labels = LabelBatch("m", np.array(ids, dtype=object), np.array(["yes"] * len(ids), dtype=object),
                        np.full(len(ids), T0 + 50_000, dtype=np.int64))
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements(predictions(0))                                     # [0, 60 s)
        .add_elements([TimestampedValue(("m", labels), T0 / 1000 + 50)])  # 20 of them labelled, and "never"
        .add_elements(predictions(60))                                    # the stream goes on
        .add_elements(predictions(120))
        .advance_watermark_to(T0 / 1000 + 150)
        .add_elements(predictions(180))
        .advance_watermark_to(T0 / 1000 + 210)
        .add_elements(predictions(240))
        .advance_watermark_to_infinity()
    )
    panes, dead = run_quality(tmp_path, stream)
    # the label waits from 50 s; its grace ends at 110 s, and the join looks once per slide
    assert [(d["reason"], d["at"]) for d in dead] == [("label_without_prediction", 120_000)]
    labelled = {}
    for p in panes:
        labelled[p["window_start"]] = max(labelled.get(p["window_start"], 0), p["quality"]["labelled"])
    assert labelled == {"2025-12-31T23:59:00Z": 20, "2026-01-01T00:00:00Z": 20}


def test_label_payloads_are_stamped_at_the_earliest_prediction_they_can_meet():
    """A runner may hand a key's elements and timers to the join in event-time order
    (Prism does): label payloads stamped at the labels' own time would wait behind the
    tick of their predictions' slice. Each payload is stamped ``max_delay`` before its
    oldest label, and the shards hold every label once."""
    ids = np.array([f"e{i}" for i in range(50)], dtype=object)
    times = T0 + 1_800_000 + np.arange(50, dtype=np.int64) * 1000
    batch = LabelBatch("m", ids, np.array(["yes"] * 50, dtype=object), times)
    out = _shard_labels(("m", batch), LABELS.shards, LABELS.max_delay_ms)
    assert {v.timestamp.micros // 1000 for v in out} == {T0 + 1_800_000 - LABELS.max_delay_ms}
    shards = [shard for (_, shard), _ in (v.value for v in out)]
    assert len(shards) == len(set(shards)) > 1
    sent = [(newest, pickle.loads(data)[1]) for _, (newest, counted, data) in (v.value for v in out)]
    assert {counted for _, (_, counted, _) in (v.value for v in out)} == {None}  # predictions are counted, labels not
    assert sorted(i for _, rows in sent for i in rows.columns["id"].tolist()) == sorted(ids.tolist())
    assert all(newest == rows.columns["ts"].max() for newest, rows in sent)
    assert _shard_labels(("m", batch.take(np.zeros(50, dtype=bool))), LABELS.shards, LABELS.max_delay_ms) == []
