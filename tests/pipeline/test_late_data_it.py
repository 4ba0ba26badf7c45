"""Event time under streaming: windows fire with the watermark; late data within lateness
updates its windows (flagged late panes); later data is dead-lettered as too late by the
source that knows the watermark (the Kafka read step's ``gate``; end to end with a real
broker in ``tests/kafka/test_kafka_it.py``)."""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.transforms.window import TimestampedValue

from ampel_monitor.config import WindowConfig
from ampel_monitor.events import EventDecoder, ModelSchema
from ampel_monitor.window import ModelSpec
from drift.profile import ReferenceProfile
from transforms.sinks import WriteJsonLines
from transforms.counters import REGISTRY
from transforms.kafka import gate
from transforms.windows import WindowMetrics

pytestmark = pytest.mark.it

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a multiple of the slide
WINDOWS = WindowConfig(size=120, slide=60, allowed_lateness=120)


def batches(decoder, seconds, model="m", t0=T0):
    """Elements of one event per entry of ``seconds`` (offsets from ``t0``)."""
    records = [
        (f"t:{i}", {"event_id": f"{s}-{i}", "model_id": model, "model_version": "v1", "timestamp": t0 + int(s * 1000),
                    "latency_ms": 10.0 + i, "status": "ok", "features": {"x": float(i % 5)}}, None)
        for i, s in enumerate(seconds)
    ]
    found, dead = decoder.decode_records(records)
    assert not dead
    return [TimestampedValue((b.model, b), b.slice_start_ms / 1000) for b in found]


def run_windows(tmp_path, specs, stream):
    """WindowMetrics over ``stream`` in streaming mode: its panes as dicts."""
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    metrics_path = tmp_path / "metrics.jsonl"
    with beam.Pipeline(options=options) as pipeline:
        out = pipeline | stream | WindowMetrics(specs, WINDOWS, streaming=True)
        _ = out["metrics"] | beam.Values() | "M" >> WriteJsonLines(str(metrics_path))
    return [json.loads(line) for line in metrics_path.read_text().splitlines()] if metrics_path.exists() else []


def test_watermark_fires_windows_and_lateness_is_honoured(tmp_path):
    profile = ReferenceProfile.build({"x": np.arange(100.0) % 5})
    specs = {"m": ModelSpec("m", profile)}
    decoder = EventDecoder({"m": ModelSchema.from_profile(profile, "regression")}, WINDOWS.slide_ms)
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements(batches(decoder, range(0, 60, 3)))  # 20 events in [0, 60)
        .advance_watermark_to(T0 / 1000 + 60)  # fires [-60, 60)
        .add_elements(batches(decoder, range(60, 120, 6)))  # 10 events in [60, 120)
        .advance_watermark_to(T0 / 1000 + 120)  # fires [0, 120)
        .add_elements(batches(decoder, [30, 31, 32, 33, 34]))  # late, within lateness: 60 + 120 > 120
        .advance_watermark_to(T0 / 1000 + 400)  # fires [60, 180), [120, 240); lateness of [0, 60) is over
        .advance_watermark_to_infinity()
    )
    panes = run_windows(tmp_path, specs, stream)
    seen = {(p["window_start"], p["late"]): p["count"] for p in panes}
    assert seen == {
        ("2025-12-31T23:59:00Z", False): 20,  # [-60, 60) on time
        ("2025-12-31T23:59:00Z", True): 25,  # ... and again with the 5 late events
        ("2026-01-01T00:00:00Z", False): 30,  # [0, 120) on time
        ("2026-01-01T00:00:00Z", True): 35,
        ("2026-01-01T00:01:00Z", False): 10,  # [60, 180): no late events belong here
    }
    assert len(panes) == 5


def _late_count(model):
    return REGISTRY.get_sample_value("ampel_late_events_total", {"model": model}) or 0.0


def test_a_window_first_seen_after_the_watermark_passed_it_is_not_flagged_late(tmp_path):
    """``late`` marks an update of a window already emitted. A window whose first events
    come after the watermark passed its end (within lateness) fires a LATE pane first:
    it is the window's first result, so not late; the next update is."""
    profile = ReferenceProfile.build({"x": np.arange(100.0) % 5})
    specs = {"m": ModelSpec("m", profile)}
    decoder = EventDecoder({"m": ModelSchema.from_profile(profile, "regression")}, WINDOWS.slide_ms)
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000 + 120)  # past [-60, 60) and [0, 120), nothing in them yet
        .add_elements(batches(decoder, [30, 31, 32, 33, 34]))
        .advance_watermark_to(T0 / 1000 + 150)
        .add_elements(batches(decoder, [40]))
        .advance_watermark_to_infinity()
    )
    panes = run_windows(tmp_path, specs, stream)
    assert sorted((p["window_start"], p["late"], p["count"]) for p in panes) == [
        ("2025-12-31T23:59:00Z", False, 5), ("2025-12-31T23:59:00Z", True, 6),
        ("2026-01-01T00:00:00Z", False, 5), ("2026-01-01T00:00:00Z", True, 6),
    ]


def test_the_gate_passes_what_the_windows_take_and_dead_letters_the_rest_record_by_record():
    """At the watermark the read step reports: a slice not yet closed passes; a closed
    slice within the allowed lateness passes, counted late; past it, each record becomes
    a ``too_late`` dead letter. Nothing is kept per model: a model quiet for any time
    has its old events judged by the step's watermark, as every other model's."""
    profile = ReferenceProfile.build({"x": np.arange(100.0) % 5})
    decoder = EventDecoder({"quiet": ModelSchema.from_profile(profile, "regression")}, WINDOWS.slide_ms)
    (old,) = [v.value[1] for v in batches(decoder, [10, 11, 12], "quiet")]  # slice [0, 60 s)
    slide, lateness = WINDOWS.slide_ms, WINDOWS.lateness_ms
    before = _late_count("quiet")
    assert gate(old, T0 + 59_999, slide, lateness) == [] and _late_count("quiet") == before  # on time
    assert gate(old, T0 + 60_000, slide, lateness) == [] and _late_count("quiet") == before + 3  # late: its slice closed
    assert gate(old, T0 + 60_000 + lateness - 1, slide, lateness) == [] and _late_count("quiet") == before + 6
    for watermark in (T0 + 60_000 + lateness, T0 + 75 * 60_000):  # the lateness is over, minutes or hours ago
        dead = gate(old, watermark, slide, lateness)
        assert [d.reason for d in dead] == ["too_late"] * 3 and {d.source for d in dead} == {"model quiet"}
        assert sorted(json.loads(d.record)["timestamp"] for d in dead) == [T0 + 10_000, T0 + 11_000, T0 + 12_000]
        assert str(watermark) in dead[0].detail
    assert _late_count("quiet") == before + 6  # too late is not late
