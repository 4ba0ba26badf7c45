"""Event time under streaming: windows fire with the watermark; late data within lateness
updates its windows (flagged late panes), later data is dead-lettered as too late."""

from __future__ import annotations

import json
import time

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from ampel_monitor.config import WindowConfig
from ampel_monitor.events import EventDecoder, ModelSchema
from ampel_monitor.window import ModelSpec
from drift.profile import ReferenceProfile
from transforms.read import DEAD
from transforms.sinks import WriteJsonLines
from transforms.windows import WindowMetrics, _LatenessGateDoFn

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
    """WindowMetrics over ``stream`` in streaming mode: its panes and dead letters as dicts."""
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    metrics_path, dead_path = tmp_path / "metrics.jsonl", tmp_path / "dead.jsonl"
    with beam.Pipeline(options=options) as pipeline:
        out = pipeline | stream | WindowMetrics(specs, WINDOWS, streaming=True)
        _ = out["metrics"] | beam.Values() | "M" >> WriteJsonLines(str(metrics_path))
        _ = out[DEAD] | "D" >> WriteJsonLines(str(dead_path))
    read = [path.read_text().splitlines() if path.exists() else [] for path in (metrics_path, dead_path)]
    return [[json.loads(line) for line in lines] for lines in read]


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
        .add_elements(batches(decoder, [10, 11, 12]))  # too late: 60 + 120 <= 400
        .advance_watermark_to_infinity()
    )
    panes, dead = run_windows(tmp_path, specs, stream)
    seen = {(p["window_start"], p["late"]): p["count"] for p in panes}
    assert seen == {
        ("2025-12-31T23:59:00Z", False): 20,  # [-60, 60) on time
        ("2025-12-31T23:59:00Z", True): 25,  # ... and again with the 5 late events
        ("2026-01-01T00:00:00Z", False): 30,  # [0, 120) on time
        ("2026-01-01T00:00:00Z", True): 35,
        ("2026-01-01T00:01:00Z", False): 10,  # [60, 180): no late events belong here
    }
    assert len(panes) == 5
    assert [d["reason"] for d in dead] == ["too_late"] * 3
    assert sorted(json.loads(d["record"])["timestamp"] for d in dead) == [T0 + 10_000, T0 + 11_000, T0 + 12_000]


def run_idle_model_flush(tmp_path, idle_minutes, flushed_s, t0=T0):
    """Model m sends 20 events in [0, 60) and goes quiet while model n's events move the
    watermark on, minute by minute, for ``idle_minutes``; then m sends 3 events from second
    ``flushed_s`` on, far older than the watermark. Returns m's panes and the dead letters."""
    profile = ReferenceProfile.build({"x": np.arange(100.0) % 5})
    specs = {m: ModelSpec(m, profile) for m in ("m", "n")}
    decoder = EventDecoder({m: ModelSchema.from_profile(profile, "regression") for m in specs}, WINDOWS.slide_ms)
    stream = BeamTestStream().advance_watermark_to(t0 / 1000).add_elements(batches(decoder, range(0, 60, 3), "m", t0))
    for minute in range(idle_minutes):
        stream = stream.add_elements(batches(decoder, [60 * minute + 30], "n", t0))
        stream = stream.advance_watermark_to(t0 / 1000 + 60 * (minute + 1))
    flushed = [flushed_s, flushed_s + 1, flushed_s + 2]
    stream = stream.add_elements(batches(decoder, flushed, "m", t0)).advance_watermark_to_infinity()
    panes, dead = run_windows(tmp_path, specs, stream)
    return sorted((p["window_start"], p["late"], p["count"]) for p in panes if p["model"] == "m"), dead


def test_a_quiet_model_that_flushes_old_events_has_them_dead_lettered(tmp_path):
    """m's newest slice ends at 60 s; its lateness is over at 180 s. Before the gate's
    timer kept ticking while the model was quiet, it stopped at 240 s, let the events of
    second 200 through at a watermark of 600 s, and Beam dropped them without a trace."""
    panes, dead = run_idle_model_flush(tmp_path, idle_minutes=10, flushed_s=200)
    assert panes == [("2025-12-31T23:59:00Z", False, 20), ("2026-01-01T00:00:00Z", False, 20)]
    assert [d["reason"] for d in dead] == ["too_late"] * 3
    assert sorted(json.loads(d["record"])["timestamp"] for d in dead) == [T0 + 200_000, T0 + 201_000, T0 + 202_000]


def test_a_live_stream_dead_letters_old_events_of_a_model_quiet_for_any_time(tmp_path):
    """The stream of the next test, ending now: the watermark keeps pace with the clock, so
    the gate's timer ticks on past its IDLE_SLIDES and knows the watermark when the quiet
    model's events come; they are dead-lettered, its windows keep their 20 events each."""
    idle = _LatenessGateDoFn.IDLE_SLIDES + 15
    t0 = (int(time.time() * 1000) // 60_000 - idle) * 60_000
    panes, dead = run_idle_model_flush(tmp_path, idle_minutes=idle, flushed_s=60 * (_LatenessGateDoFn.IDLE_SLIDES + 4),
                                       t0=t0)
    assert [count for *_, count in panes] == [20, 20]
    assert [d["reason"] for d in dead] == ["too_late"] * 3


def test_a_replay_far_behind_the_clock_dead_letters_old_events_of_a_model_quiet_for_any_time(tmp_path):
    """Without heartbeats, m's timer would stop ticking at 60 s + 120 s + 61 slides = 3,840 s;
    the events of second 3,840 (slice end 3,900 s) would pass the gate at a watermark of
    4,500 s, past the lateness of their slice and windows (4,140 and 4,200 s), and Beam
    would drop them. n's batches send m heartbeats, so m's gate knows the watermark."""
    panes, dead = run_idle_model_flush(tmp_path, idle_minutes=_LatenessGateDoFn.IDLE_SLIDES + 15,
                                       flushed_s=60 * (_LatenessGateDoFn.IDLE_SLIDES + 4))
    assert [count for *_, count in panes] == [20, 20]
    assert [d["reason"] for d in dead] == ["too_late"] * 3


def test_a_watermark_moved_to_the_clock_without_batches_is_known_to_the_gate(tmp_path):
    """The watermark moves from a replay's end (T0 + 60 s) to the clock with no batch at all,
    as idle partitions move it: no heartbeat, so m's timer ticks its IDLE_SLIDES slides,
    then jumps to the clock and ticks there. m's events of second 3,840 come after that
    and are dead-lettered; m's windows keep their 20 events each."""
    profile = ReferenceProfile.build({"x": np.arange(100.0) % 5})
    decoder = EventDecoder({"m": ModelSchema.from_profile(profile, "regression")}, WINDOWS.slide_ms)
    flushed_s = 60 * (_LatenessGateDoFn.IDLE_SLIDES + 4)
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements(batches(decoder, range(0, 60, 3)))
        .advance_watermark_to(T0 / 1000 + 60)
        .advance_watermark_to(int(time.time()) - 5)
        .add_elements(batches(decoder, [flushed_s, flushed_s + 1, flushed_s + 2]))
        .advance_watermark_to_infinity()
    )
    panes, dead = run_windows(tmp_path, {"m": ModelSpec("m", profile)}, stream)
    assert sorted((p["window_start"], p["count"]) for p in panes) == [
        ("2025-12-31T23:59:00Z", 20), ("2026-01-01T00:00:00Z", 20)]
    assert [d["reason"] for d in dead] == ["too_late"] * 3


class _Cell:
    """A state cell or timer for calling the gate's timer callback directly."""

    def __init__(self, value=None):
        self.value = value

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None

    def set(self, timestamp):
        self.value = timestamp.micros // 1000


def _tick(gate, fired_ms, latest_ms):
    known, latest, next_tick, tick = _Cell(), _Cell(latest_ms), _Cell(fired_ms), _Cell()
    gate.on_tick(Timestamp(micros=fired_ms * 1000), known, latest, next_tick, tick)
    return next_tick.value, tick.value


def test_the_gate_stops_ticking_once_its_timer_is_further_ahead_of_the_clock_than_a_live_stream():
    """At a stream's end the watermark jumps to infinity and every tick fires at once: the
    timer stops once it is more than the lateness and LIVE_SLIDES slides ahead of the
    clock, not only after its IDLE_SLIDES slides past the newest slice."""
    slide, lateness = 60_000, 120_000
    gate = _LatenessGateDoFn(slide, lateness)
    clock = int(time.time() * 1000) // slide * slide
    ahead = lateness + slide * _LatenessGateDoFn.LIVE_SLIDES
    # within a live stream's reach of the clock: ticks on through the idle slides
    assert _tick(gate, clock + ahead - slide, latest_ms=clock) == (clock + ahead, clock + ahead)
    # beyond it: stops, though the newest slice is only two slides behind
    assert _tick(gate, clock + ahead + slide, latest_ms=clock + ahead - slide) == (None, None)
    # a replay far behind the clock still ticks through its idle slides
    assert _tick(gate, T0 + slide, latest_ms=T0) == (T0 + 2 * slide, T0 + 2 * slide)
