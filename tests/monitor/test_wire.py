"""Wire formats: Avro, Confluent framing with local schema ids, JSON; garbage is refused with a reason."""

from __future__ import annotations

import json

import pytest

from ampel_monitor.wire import WireFormat

EVENT = {"event_id": "e1", "model_id": "m", "model_version": "v1", "timestamp": 1_767_225_600_000, "latency_ms": 12.5,
         "status": "ok", "error_code": None, "features": {"x": 1.5, "c": "red", "gone": None}, "prediction": "yes",
         "confidence": 0.8, "attributes": {}, "attributions": None}


@pytest.mark.parametrize("kind, confluent", [("avro", False), ("avro", True), ("json", False)])
def test_round_trip(kind, confluent):
    wire = WireFormat(kind, "PredictionEvent", confluent, schema_id=7)
    data = wire.encode(EVENT)
    if confluent:
        assert data[:5] == b"\x00\x00\x00\x00\x07"
    assert wire.decode(data) == EVENT


def test_older_writer_schema_is_resolved_by_its_id(tmp_path):
    current = json.load(open("schemas/prediction_event.avsc"))
    old = {**current, "fields": [f for f in current["fields"] if f["name"] not in ("attributions", "confidence")]}
    path = tmp_path / "prediction_event.v0.avsc"
    path.write_text(json.dumps(old))
    old_record = {k: v for k, v in EVENT.items() if k not in ("attributions", "confidence")}
    writer = WireFormat("avro", "PredictionEvent", True, schema_id=1)
    import io

    import fastavro

    buffer = io.BytesIO()
    buffer.write(b"\x00\x00\x00\x00\x03")  # framed with id 3: the old schema
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), old_record)
    reader = WireFormat("avro", "PredictionEvent", True, schema_id=1, schema_ids={3: str(path)})
    assert reader.decode(buffer.getvalue()) == {**old_record, "confidence": None, "attributions": None}
    assert writer.decode(writer.encode(EVENT)) == EVENT


@pytest.mark.parametrize(
    "wire, data, reason",
    [
        (WireFormat("avro", "PredictionEvent"), b"\x01\x02\x03", "undecodable Avro"),
        (WireFormat("avro", "PredictionEvent", True), b"\x01\x00\x00\x00\x01xyz", "unknown magic byte 1"),
        (WireFormat("avro", "PredictionEvent", True), b"\x00\x00\x00\x00\x09xyz", "unknown schema id 9"),
        (WireFormat("avro", "PredictionEvent", True), b"\x00\x00", "shorter than the Confluent framing"),
        (WireFormat("json", "PredictionEvent"), b"{not json", "invalid JSON"),
        (WireFormat("json", "PredictionEvent"), None, "empty message"),
    ],
)
def test_garbage_is_refused_with_a_reason(wire, data, reason):
    with pytest.raises(ValueError, match=reason):
        wire.decode(data)


def test_trailing_bytes_are_refused():
    wire = WireFormat("avro", "LabelEvent")
    data = wire.encode({"event_id": "e", "model_id": "m", "label": "yes", "timestamp": 1})
    with pytest.raises(ValueError, match="bytes left"):
        wire.decode(data + b"\x00")


def test_json_keeps_nan_for_validation_to_name():
    record = WireFormat("json", "PredictionEvent").decode(b'{"latency_ms": NaN}')
    assert record["latency_ms"] != record["latency_ms"]
