"""Wire formats: Avro, Confluent framing with local schema ids, JSON; garbage is refused with a reason."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from ampel_monitor.labels import Offsets
from ampel_monitor.wire import WireFormat, decode_label_messages, decode_predictions

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


@pytest.mark.parametrize("kind, confluent", [("avro", False), ("avro", True), ("json", False)])
def test_prediction_messages_decode_in_bulk_as_one_by_one(tmp_path, kind, confluent):
    import fastavro
    import numpy as np

    from ampel_monitor.events import EventDecoder, ModelSchema

    current = json.load(open("schemas/prediction_event.avsc"))
    old = {**current, "fields": [f for f in current["fields"] if f["name"] != "attributions"]}
    (tmp_path / "v0.avsc").write_text(json.dumps(old))
    wire = WireFormat(kind, "PredictionEvent", confluent, schema_id=1, schema_ids={3: str(tmp_path / "v0.avsc")})
    events = [{**EVENT, "event_id": f"e{i}", "timestamp": EVENT["timestamp"] + 20_000 * i, "latency_ms": float(i - 2),
               "features": {"x": i / 3, "c": "red" if i % 2 else "blue"}} for i in range(12)]
    messages = [wire.encode(e) for e in events]
    if confluent:  # one message of the older schema, framed with its id
        buffer = io.BytesIO()
        buffer.write(b"\x00\x00\x00\x00\x03")
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), {k: v for k, v in events[5].items()
                                                                         if k != "attributions"})
        messages[5] = buffer.getvalue()
    messages[7] = messages[7][:-4]  # cut short
    messages += [None, b"\x07garbage"]
    sources = [(f"t/0@{i}", m) for i, m in enumerate(messages)]
    schema = {"m": ModelSchema(numeric=("x",), categorical=("c",), numeric_prediction=False)}
    batches, dead = decode_predictions(wire, EventDecoder(schema, 60_000), messages, lambda i: f"t/0@{i}")
    expected, expected_dead = EventDecoder(schema, 60_000).decode_records(wire.record(*s) for s in sources)

    def rows(found):
        return sorted((b.slice_start_ms, i, t, x, c) for b in found for i, t, x, c in
                      zip(b.event_ids, b.timestamps.tolist(), b.features["x"].tolist(), b.features["c"]))

    assert rows(batches) == rows(expected) and len(rows(batches)) == 12 - 1 - 2  # cut short, negative latency x2
    assert sorted((d.source, d.reason, d.record) for d in dead) == sorted(
        (d.source, d.reason, d.record) for d in expected_dead)
    assert {d.source: d.reason for d in dead} == {"t/0@0": "negative_latency", "t/0@1": "negative_latency",
                                                  "t/0@7": "undecodable", "t/0@12": "undecodable",
                                                  "t/0@13": "undecodable"}
    assert np.isnan(next(b for b in batches if "e5" in b.event_ids).confidence).sum() == 0


@pytest.mark.parametrize("confluent", [False, True])
@pytest.mark.parametrize("empty", [True, False])  # without one, unframed messages skip the prefix test
def test_label_messages_decode_in_bulk_as_one_by_one(confluent, empty):
    from ampel_monitor.labels import decode_labels

    wire = WireFormat("avro", "LabelEvent", confluent, schema_id=2)
    labels = [{"event_id": f"e{i}", "model_id": "m" if i % 4 else "x", "timestamp": 1_767_225_600_000 + i,
               "label": ("yes", "no", 1.5, float("nan"), "é")[i % 5]} for i in range(40)]
    messages = [wire.encode(label) for label in labels]
    messages[3] = messages[3][:-2]  # cut short
    messages += [b"\x00\x01", None] if empty else [b"\x00\x01"]
    sources = [(f"l/0@{i}", m) for i, m in enumerate(messages)]
    batches, dead = decode_label_messages(wire, ["m"], messages, Offsets("l/0@", np.arange(len(messages))))
    expected, expected_dead = decode_labels((wire.record(*s) for s in sources), ["m"])

    def rows(found):
        return sorted((i, repr(label), t, s) for b in found
                      for i, label, t, s in zip(b.event_ids, b.labels, b.timestamps.tolist(), b.sources))

    assert rows(batches) == rows(expected) and len(rows(batches)) == 24  # 30 of model m, less 6 NaN (one also cut)
    assert sorted((d.source, d.reason) for d in dead) == sorted((d.source, d.reason) for d in expected_dead)
    assert {type(label) for b in batches for label in b.labels} == {str, float}
