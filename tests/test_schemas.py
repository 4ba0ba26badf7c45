"""The Avro schemas: they parse, records round-trip, older records read with newer schemas,
and the pipeline's outputs conform to them."""

from __future__ import annotations

import io
import json

import fastavro
import pytest
from fastavro.validation import validate

from ampel_monitor.config import load_config
from pipelines.monitor import read_jsonl, run
from schemas import SCHEMA_FILES, load_schema
from tests.pipeline.streams import START_MS, make_events, write_setup
from tests.sinks.records import ab_record, quality_record

SAMPLES = {
    "PredictionEvent": {"event_id": "e1", "model_id": "m", "model_version": "v1", "timestamp": START_MS, "latency_ms": 12.5,
                        "status": "error", "error_code": "E42", "features": {"x": 1.5, "c": "red", "gone": None},
                        "prediction": "yes", "confidence": 0.8, "attributes": {"gender": "f"},
                        "attributions": {"x": 0.25}},
    "LabelEvent": {"event_id": "e1", "model_id": "m", "label": 3.5, "timestamp": START_MS},
    "ResourceSample": {"host": "h1", "model_id": "m", "timestamp": START_MS, "cpu": 0.5, "memory": 0.25, "gpu": None},
    "Alert": {"model": "m", "version": "v1", "window_start": "2026-01-01T00:00:00Z", "window_end": "2026-01-01T00:05:00Z",
              "rule": "latency_p95", "severity": "critical", "value": 1.5, "threshold": 1.0, "state": "firing",
              "detail": "p95 latency in seconds"},
    "DeadLetter": {"reason": "malformed", "detail": "invalid JSON", "source": "f:1", "record": "garbage"},
    "QualityMetrics": {k: v for k, v in quality_record(3, pane=2).items() if k != "_end_ms"},
    "VersionComparison": {k: v for k, v in ab_record(3, "quality").items() if k != "_end_ms"},
}


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_every_schema_parses_with_its_namespace(name):
    assert load_schema(name)["name"] == f"ampel.monitor.{name}"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_records_round_trip(name):
    schema = load_schema(name)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, SAMPLES[name])
    buffer.seek(0)
    # fields left out of the sample come back as their default, null
    assert _without_nulls(fastavro.schemaless_reader(buffer, schema)) == _without_nulls(SAMPLES[name])


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def test_a_newer_reader_reads_older_records():
    current = json.loads(open("schemas/prediction_event.avsc").read())
    old = {**current, "fields": [f for f in current["fields"] if f["name"] not in ("attributes", "attributions", "confidence")]}
    record = {k: v for k, v in SAMPLES["PredictionEvent"].items() if k not in ("attributes", "attributions", "confidence")}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), record)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, fastavro.parse_schema(old), load_schema("PredictionEvent"))
    assert decoded == {**record, "attributes": {}, "attributions": None, "confidence": None}


def test_pipeline_outputs_conform_and_avro_input_equals_json_input(tmp_path):
    events = make_events(seed=8, minutes=8, per_minute=150, spike=(2, 4))
    config = load_config(write_setup(tmp_path, events, {"size": "2m", "slide": "1m"}))
    avro_path = tmp_path / "events.avro"
    with avro_path.open("wb") as handle:
        fastavro.writer(handle, load_schema("PredictionEvent"), events)
    from_json = run(config, [str(tmp_path / "events.jsonl")], out_dir=str(tmp_path / "json"))
    from_avro = run(config, [str(avro_path)], out_dir=str(tmp_path / "avro"))

    def key(m):
        return m["model"], m["version"], m["window_end"]

    assert sorted(from_avro.metrics, key=key) == sorted(from_json.metrics, key=key)
    assert from_json.alerts and sorted(map(str, from_avro.alerts)) == sorted(map(str, from_json.alerts))
    for metrics in from_json.metrics:
        assert validate(metrics, load_schema("WindowMetrics"), raise_errors=True)
    for alert in from_json.alerts:
        assert validate(alert, load_schema("Alert"), raise_errors=True)
    (tmp_path / "bad.jsonl").write_text("nonsense\n")
    run(config, [str(tmp_path / "bad.jsonl")], out_dir=str(tmp_path / "bad"))
    (letter,) = read_jsonl(tmp_path / "bad" / "dead_letters.jsonl")
    assert validate(letter, load_schema("DeadLetter"), raise_errors=True)
