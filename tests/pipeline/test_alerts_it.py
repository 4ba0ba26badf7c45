"""Alerts fire in exactly the windows where the injected conditions hold, and resolve after."""

from __future__ import annotations

from datetime import datetime

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.transforms.window import TimestampedValue

from ampel_monitor.config import DEFAULT_RULES, load_config
from pipelines.monitor import read_jsonl, run
from tests.pipeline.streams import START_MS, make_events, window_events, write_setup
from transforms.alerts import EvaluateAlerts
from transforms.sinks import WriteJsonLines

pytestmark = pytest.mark.it

SPIKE, ERRORS, DRIFT = (5, 8), (12, 15), 16
SETTINGS = {"drift": {"min_count": 100}, "alerts": {"feature_drift": {"threshold": 0.3}}}


def minute(n: int) -> str:
    return f"2026-01-01T00:{n:02d}:00Z"


def transitions(alerts):
    return sorted((a["model"], a["version"], a["rule"], a["severity"], a["state"], a["window_end"]) for a in alerts)


@pytest.fixture(scope="module")
def incident_events():
    return make_events(seed=11, minutes=20, per_minute=600, drift_from=DRIFT, spike=SPIKE, errors=ERRORS)


def test_tumbling_windows_alert_exactly_on_the_incidents(tmp_path, incident_events):
    config = load_config(write_setup(tmp_path, incident_events, {"size": "1m", "slide": "1m"}, SETTINGS))
    summary = run(config, [str(tmp_path / "events.jsonl")], out_dir=str(tmp_path / "out"))
    assert transitions(summary.alerts) == sorted([
        ("alpha", "v1", "latency_p95", "critical", "firing", minute(SPIKE[0] + 1)),
        ("alpha", "v1", "latency_p95", "critical", "resolved", minute(SPIKE[1] + 1)),
        ("beta", "v1", "error_rate", "critical", "firing", minute(ERRORS[0] + 1)),
        ("beta", "v1", "error_rate", "critical", "resolved", minute(ERRORS[1] + 1)),
        ("alpha", "v1", "data_drift", "warning", "firing", minute(DRIFT + 1)),
        ("alpha", "v1", "feature_drift", "info", "firing", minute(DRIFT + 1)),
    ])
    firing = {(a["rule"], a["state"]): a for a in summary.alerts}
    spike = firing[("latency_p95", "firing")]
    assert (spike["value"], spike["threshold"]) == (pytest.approx(2.0, rel=0.01), 1.0)
    assert firing[("data_drift", "firing")]["detail"] == "feature x"


def test_sliding_windows_alert_where_the_offline_values_cross(tmp_path, incident_events):
    config = load_config(write_setup(tmp_path, incident_events, {"size": "5m", "slide": "1m"}, SETTINGS))
    summary = run(config, [str(tmp_path / "events.jsonl")], out_dir=str(tmp_path / "out"))
    expected = []
    for model, version, rule, value_of, threshold in (
        ("alpha", "v1", "latency_p95", lambda ev: np.quantile([e["latency_ms"] for e in ev], 0.95, method="lower") / 1000, 1.0),
        ("beta", "v1", "error_rate", lambda ev: np.mean([e["status"] == "error" for e in ev]), 0.01),
    ):
        firing = False
        for end in range(1, 25):
            events = window_events(incident_events, model, version, START_MS + (end - 5) * 60_000, START_MS + end * 60_000)
            if len(events) < 10:
                continue
            if (value_of(events) > threshold) != firing:
                firing = not firing
                expected.append((model, version, rule, "critical", "firing" if firing else "resolved", minute(end)))
    got = [t for t in transitions(summary.alerts) if t[2] in ("latency_p95", "error_rate")]
    assert got == sorted(expected)
    assert ("alpha", "v1", "latency_p95", "critical", "firing", minute(6)) in got
    assert ("alpha", "v1", "latency_p95", "critical", "resolved", minute(13)) in got


def window(end_minute, p95, late=False):
    """A one-minute window result of model m, version v, timestamped at its end."""
    metrics = {"model": "m", "version": "v", "window_start": minute(end_minute - 1), "window_end": minute(end_minute),
               "count": 100, "errors": 0, "error_rate": 0.0, "latency_ms": {"p95": p95}, "features": {},
               "resources": None, "late": late}
    ts = datetime.fromisoformat(metrics["window_end"]).timestamp() - 1e-6
    return TimestampedValue((("m", "v"), metrics), ts)


def p95_alerts(tmp_path, stream: BeamTestStream) -> list[dict]:
    """The latency_p95 alerts that streaming evaluation emits over ``stream``."""
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    path = tmp_path / "alerts.jsonl"
    rules = [r for r in DEFAULT_RULES if r.name == "latency_p95"]
    with beam.Pipeline(options=options) as pipeline:
        _ = pipeline | stream | EvaluateAlerts(rules, streaming=True) | WriteJsonLines(str(path))
    return read_jsonl(path)


def test_streaming_evaluation_orders_windows_by_event_time(tmp_path):
    """Window results arriving out of order are evaluated in window order as the watermark passes."""
    stream = (
        BeamTestStream()
        .add_elements([window(3, 50.0), window(1, 50.0), window(2, 3000.0)])
        .advance_watermark_to(START_MS / 1000 + 180)
        .add_elements([window(5, 3000.0), window(4, 40.0)])
        .advance_watermark_to_infinity()
    )
    assert [(a["state"], a["window_end"]) for a in p95_alerts(tmp_path, stream)] == [
        ("firing", minute(2)), ("resolved", minute(3)), ("firing", minute(5))]


def test_a_late_pane_of_the_newest_window_updates_the_alert_state_and_older_ones_do_not(tmp_path):
    stream = (
        BeamTestStream()
        .add_elements([window(1, 50.0), window(2, 50.0)])
        .advance_watermark_to(START_MS / 1000 + 150)
        .add_elements([window(3, 50.0)])
        .advance_watermark_to(START_MS / 1000 + 185)
        .add_elements([window(2, 3000.0, late=True)])  # older than the newest evaluated window: no change
        .add_elements([window(3, 3000.0, late=True)])  # the newest window: fires now
        .add_elements([window(4, 50.0), window(4, 60.0, late=True)])  # replaces the waiting on-time pane
        .advance_watermark_to(START_MS / 1000 + 245)
        .add_elements([window(4, 4000.0, late=True)])
        .advance_watermark_to_infinity()
    )
    assert [(a["state"], a["window_end"], a["value"]) for a in p95_alerts(tmp_path, stream)] == [
        ("firing", minute(3), 3.0), ("resolved", minute(4), 0.06), ("firing", minute(4), 4.0)]


def test_a_window_whose_first_pane_is_late_is_evaluated_in_window_order(tmp_path):
    """A window first seen in a late pane (its input reached it after the watermark) still
    counts: first panes wait and are evaluated in window order, whatever their flag; the
    first pane of a window older than one evaluated changes nothing."""
    stream = (
        BeamTestStream()
        .advance_watermark_to(START_MS / 1000 + 150)
        .add_elements([window(2, 3000.0, late=True)])  # none evaluated before
        .advance_watermark_to(START_MS / 1000 + 160)
        .advance_watermark_to(START_MS / 1000 + 330)
        .add_elements([window(4, 40.0), window(3, 3000.0)])  # newer than window 2 (flagged as WindowMetrics does)
        .add_elements([window(1, 3000.0)])  # older than those evaluated: no change
        .advance_watermark_to_infinity()
    )
    assert [(a["state"], a["window_end"], a["value"]) for a in p95_alerts(tmp_path, stream)] == [
        ("firing", minute(2), 3.0), ("resolved", minute(4), 0.04)]
