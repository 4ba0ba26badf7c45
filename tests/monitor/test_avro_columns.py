"""The bulk Avro decoder gives the batches and dead letters of the record-by-record path."""

from __future__ import annotations

import io
import math
import struct
from dataclasses import astuple

import fastavro
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ampel_monitor import avro_columns
from ampel_monitor.events import DeadLetter, EventBatch, EventDecoder, ModelSchema, decode_event_file
from schemas import load_schema
from sketches import CategoryCounter

SCHEMA = load_schema("PredictionEvent")
SCHEMAS = {
    "m": ModelSchema(numeric=("x", "y"), categorical=("c",), numeric_prediction=False, sensitive=("group",)),
    "r": ModelSchema(numeric=("y", "z"), categorical=(), numeric_prediction=True),
}
T0 = 1_767_225_600_000
NUMBERS = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf, -math.inf, -0.0]))
VALUES = st.one_of(st.none(), NUMBERS, st.sampled_from(["a", "b", "é", "a\x00", ""]))
KEYS = st.sampled_from(["x", "y", "z", "c", "other", "ünknown"])


def _event(i, model, version, offset, latency, status, features, prediction, confidence, attributes, attributions):
    return {"event_id": f"e{i}", "model_id": model, "model_version": version, "timestamp": T0 + offset,
            "latency_ms": latency, "status": status, "error_code": None if status == "ok" else "E1",
            "features": features, "prediction": prediction, "confidence": confidence,
            "attributes": attributes, "attributions": attributions}


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["m", "r", "unknown"]), st.sampled_from(["v1", "v2"]), st.integers(-1, 200_000),
        st.one_of(st.floats(0, 1e4), st.sampled_from([-1.0, math.nan, math.inf])), st.sampled_from(["ok", "error"]),
        st.dictionaries(KEYS, VALUES, max_size=6), st.one_of(st.none(), NUMBERS, st.sampled_from(["yes", "no"])),
        st.one_of(st.none(), st.floats(-0.5, 1.5), st.just(math.nan)),
        st.dictionaries(st.sampled_from(["group", "region"]), st.sampled_from(["f", "g", "ü"]), max_size=2),
        st.one_of(st.none(), st.dictionaries(KEYS, NUMBERS, max_size=4)),
    ),
    max_size=40,
).map(lambda rows: [_event(i, *row) for i, row in enumerate(rows)])


def encode(record):
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, SCHEMA, record)
    return buffer.getvalue()


def canonical(batches: list[EventBatch]) -> dict:
    """Per (model, version, slice): every column, in event-id order (the two paths cut batches differently)."""
    groups: dict = {}
    for batch in batches:
        groups.setdefault((batch.model, batch.version, batch.slice_start_ms), []).append(batch)
    out = {}
    for key, group in groups.items():
        ids = np.concatenate([b.event_ids for b in group]).astype(str)
        order = np.argsort(ids, kind="stable")
        columns = {"ids": ids[order]}
        for name in ("timestamps", "latency_ms", "error", "confidence", "prediction"):
            columns[name] = np.concatenate([getattr(b, name) for b in group])[order]
        for kind in ("features", "attributes"):
            for name in group[0].__getattribute__(kind):
                columns[f"{kind}.{name}"] = np.concatenate([getattr(b, kind)[name] for b in group])[order]
        # A batch without attribution columns means the same as columns of NaN (no event attributed).
        names = dict.fromkeys(name for b in group for name in b.attributions)
        importance = {f"attributions.{name}": np.concatenate(
            [b.attributions.get(name, np.full(len(b), np.nan)) for b in group])[order] for name in names}
        if not all(np.isnan(column).all() for column in importance.values()):
            columns.update(importance)
        out[key] = columns
    return out


def assert_same(fast: list[EventBatch], slow: list[EventBatch]) -> None:
    a, b = canonical(fast), canonical(slow)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].keys() == b[key].keys(), key
        for name, column in a[key].items():
            other = b[key][name]
            assert column.dtype == other.dtype, (key, name)
            if column.dtype == object:
                assert column.tolist() == other.tolist(), (key, name)
            else:
                assert np.array_equal(column, other, equal_nan=column.dtype.kind == "f"), (key, name)


def decode_both(records, per_block):
    """Both paths over ``records``: blocks of ``per_block`` records (1: Kafka messages)."""
    messages = [encode(r) for r in records]
    data = b"".join(messages)
    ends = np.cumsum([len(m) for m in messages], dtype=np.int64)
    starts = ends - [len(m) for m in messages]
    blocks = np.array([(starts[i], ends[min(i + per_block, len(messages)) - 1], min(per_block, len(messages) - i))
                       for i in range(0, len(messages), per_block)], dtype=np.int64).reshape(-1, 3)
    fast = EventDecoder(SCHEMAS, 60_000)
    batches, dead, failed = fast.decode_avro(
        data, blocks, lambda i, s, e: (f"#{i}", fastavro.schemaless_reader(io.BytesIO(data[s:e]), SCHEMA, None), None))
    slow = EventDecoder(SCHEMAS, 60_000)
    expected, expected_dead = slow.decode_records(
        (f"#{i}", fastavro.schemaless_reader(io.BytesIO(m), SCHEMA, None), None) for i, m in enumerate(messages))
    assert failed.tolist() == []
    assert_same(batches, expected)
    for batch in batches:  # the codes of the bulk path decode to its columns and count as they do
        for name, (codes, dictionary) in batch.codes.items():
            column = batch.prediction if name is None else batch.features[name]
            assert dictionary[codes].tolist() == column.tolist()
            counter = CategoryCounter(["a", "é", "yes"])
            assert counter.empty_like().add_encoded(codes, dictionary) == counter.empty_like().add_many(column)
    assert sorted(map(astuple, dead)) == sorted(map(astuple, expected_dead))
    assert fast.unknown_features == slow.unknown_features
    return batches, dead


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.sampled_from([1, 3, 50]))
def test_same_batches_and_dead_letters_as_record_by_record(records, per_block):
    decode_both(records, per_block)


def test_a_plain_stream_needs_no_record_by_record_decoding():
    records = [_event(i, "m", "v1", i * 1000, 5.0, "ok", {"x": 1.0 * i, "y": None, "c": "a"}, "yes", 0.5,
                      {"group": "f"}, {"x": -2.0} if i % 2 else None) for i in range(120)]
    decoder = EventDecoder(SCHEMAS, 60_000)
    data = b"".join(encode(r) for r in records)
    batches, dead, failed = decoder.decode_avro(data, np.array([[0, len(data), 120]]), lambda *a: 1 / 0)
    assert dead == [] and failed.size == 0
    assert [(b.slice_start_ms - T0, len(b)) for b in batches] == [(0, 60), (60_000, 60)]
    assert batches[0].features["x"].tolist() == [float(i) for i in range(60)]
    assert set(batches[0].codes) == {"c", None}  # the categorical feature and prediction, as codes too
    assert batches[0].attributes["group"].tolist() == ["f"] * 60
    assert batches[0].attributions["x"][:2].tolist()[1] == 2.0 and math.isnan(batches[0].attributions["x"][0])


def test_undecodable_blocks_are_returned_not_guessed():
    good = encode(_event(0, "m", "v1", 0, 1.0, "ok", {}, "yes", None, {}, None))
    messages = [good, good[:-3], b"\x07garbage", good + b"\x00", good]
    data = b"".join(messages)
    ends = np.cumsum([len(m) for m in messages])
    blocks = np.array([(e - len(m), e, 1) for m, e in zip(messages, ends)])
    batches, dead, failed = EventDecoder(SCHEMAS, 60_000).decode_avro(data, blocks, lambda *a: 1 / 0)
    assert failed.tolist() == [1, 2, 3] and dead == []
    assert sum(len(b) for b in batches) == 2


def test_negative_block_counts_and_invalid_utf8():
    # A map written in one block with a negative count and its byte size (as Java writers do).
    entries = b"".join(_string(k) + b"\x02" + struct.pack("<d", v) for k, v in (("x", 1.5), ("y", 2.5)))
    head = _string("e1") + _string("m") + _string("v1") + _long(T0) + struct.pack("<d", 3.0) + _long(0) + _long(0)
    tail = _long(2) + _string("yes") + _long(0) + _long(0) + _long(0)
    record = head + _long(-2) + _long(len(entries)) + entries + _long(0) + tail
    assert fastavro.schemaless_reader(io.BytesIO(record), SCHEMA, None)["features"] == {"x": 1.5, "y": 2.5}
    broken = record.replace(_string("yes"), _long(3) + b"y\xffs")
    data = record + broken
    decoder = EventDecoder(SCHEMAS, 60_000)
    seen = []

    def slow(i, start, end):
        seen.append(i)
        try:
            return f"#{i}", fastavro.schemaless_reader(io.BytesIO(data[start:end]), SCHEMA, None), None
        except UnicodeDecodeError as exc:
            return f"#{i}", DeadLetter("malformed", str(exc), f"#{i}", ""), None

    batches, dead, failed = decoder.decode_avro(data, np.array([[0, len(record), 1], [len(record), len(data), 1]]), slow)
    assert seen == [1] and [d.reason for d in dead] == ["malformed"]
    (batch,) = batches
    assert batch.features["x"].tolist() == [1.5] and batch.features["y"].tolist() == [2.5]


def _long(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return _long(len(raw)) + raw


def test_container_files_of_the_current_schema_and_of_an_older_one(tmp_path):
    records = [_event(i, "m", "v1", i * 1000, 2.0, "ok", {"x": float(i), "c": "b"}, "no", 0.9, {}, None)
               for i in range(500)]
    records[7]["latency_ms"] = -1.0
    current = tmp_path / "current.avro"
    with current.open("wb") as handle:
        fastavro.writer(handle, SCHEMA, records, sync_interval=2000)
    decoder = EventDecoder(SCHEMAS, 60_000)
    chunks = list(decode_event_file(decoder, str(current), chunk_size=100))
    assert len(chunks) >= 5
    assert [(d.reason, d.source) for _, dead in chunks for d in dead] == [("negative_latency", f"{current}#7")]
    assert sum(len(b) for batches, _ in chunks for b in batches) == 499
    older = {**SCHEMA, "fields": [f for f in SCHEMA["fields"] if f["name"] not in ("confidence", "attributions")]}
    old = tmp_path / "old.avro"
    with old.open("wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(older, named_schemas={}),
                        [{k: v for k, v in r.items() if k not in ("confidence", "attributions")} for r in records])
    (old_batches, old_dead), = decode_event_file(EventDecoder(SCHEMAS, 60_000), str(old), chunk_size=1000)
    assert len(old_dead) == 1 and sum(len(b) for b in old_batches) == 499
    assert all(np.isnan(b.confidence).all() for b in old_batches)


def test_strings_keep_trailing_nuls_and_flag_invalid_utf8():
    data = b"ab\x00a\xff"
    values, bad = avro_columns.strings(data, np.array([[0, 2], [0, 3], [-1, -1], [3, 4], [4, 5], [0, 0]]))
    assert values.tolist() == ["ab", "ab\x00", None, "a", None, ""]
    assert bad.tolist() == [False, False, False, False, True, False]
