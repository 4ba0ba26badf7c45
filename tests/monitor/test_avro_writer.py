"""The bulk Avro encoder writes the bytes fastavro writes for the same records, which the
project's decoders read back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampel_monitor import avro_writer
from ampel_monitor.avro_columns import ABSENT, DOUBLE, NULL, STRING, Layout, decode, decode_labels, strings
from ampel_monitor.avro_writer import Labels, Predictions, Strings, encode_labels, encode_predictions
from ampel_monitor.demo_data import _columns, _incidents, _split
from ampel_monitor.wire import WireFormat

T0 = 1_767_225_600_000
TEXT = st.one_of(st.text(max_size=6), st.just("ü" * 150))  # the long one: records past the guessed size
LONGS = st.integers(-(2**63), 2**63 - 1)
DOUBLES = st.floats(allow_nan=False)
OPTIONAL = st.one_of(st.just(float("nan")), DOUBLES)  # NaN: null or absent


@st.composite
def tables(draw) -> tuple[Strings, st.SearchStrategy]:
    """A table of distinct strings, and a strategy of its codes."""
    vocabulary = draw(st.lists(TEXT, min_size=1, max_size=8, unique=True))
    return Strings.of(vocabulary), st.integers(0, len(vocabulary) - 1)


def column(draw, values: st.SearchStrategy, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.array(draw(st.lists(values, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))),
                    dtype=dtype).reshape(shape)


@st.composite
def predictions(draw) -> Predictions:
    table, code = draw(tables())
    nullable = st.integers(-1, len(table) - 1)
    n = draw(st.integers(0, 6))
    names = [np.array(draw(st.lists(code, unique=True, max_size=3)), dtype=np.int64) for _ in range(3)]
    features, attributes, attributions = (len(k) for k in names)
    return Predictions(
        strings=table, event_id=column(draw, code, (n,), np.int64), model_id=column(draw, code, (n,), np.int64),
        model_version=column(draw, code, (n,), np.int64), timestamp=column(draw, LONGS, (n,), np.int64),
        latency_ms=column(draw, DOUBLES, (n,), np.float64), status=column(draw, st.integers(0, 1), (n,), np.int8),
        error_code=column(draw, nullable, (n,), np.int64), feature_names=names[0],
        feature_kind=column(draw, st.sampled_from([ABSENT, NULL, DOUBLE, STRING]), (n, features), np.int8),
        feature=column(draw, DOUBLES, (n, features), np.float64), feature_code=column(draw, code, (n, features), np.int64),
        prediction_kind=column(draw, st.sampled_from([NULL, DOUBLE, STRING]), (n,), np.int8),
        prediction=column(draw, DOUBLES, (n,), np.float64), prediction_code=column(draw, code, (n,), np.int64),
        confidence=column(draw, OPTIONAL, (n,), np.float64), attribute_names=names[1],
        attribute_code=column(draw, nullable, (n, attributes), np.int64), attribution_names=names[2],
        attributed=column(draw, st.booleans(), (n,), bool), attribution=column(draw, OPTIONAL, (n, attributions), np.float64),
    )


@st.composite
def labels(draw) -> Labels:
    table, code = draw(tables())
    n = draw(st.integers(0, 6))
    return Labels(table, column(draw, code, (n,), np.int64), column(draw, code, (n,), np.int64),
                  column(draw, st.sampled_from([DOUBLE, STRING]), (n,), np.int8), column(draw, DOUBLES, (n,), np.float64),
                  column(draw, code, (n,), np.int64), column(draw, LONGS, (n,), np.int64))


def blocks(values: list[bytes], prefix: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The messages back to back and one block of one record each, after its prefix."""
    ends = np.cumsum([len(v) for v in values], dtype=np.int64)
    starts = ends - [len(v) for v in values] + len(prefix)
    return np.frombuffer(b"".join(values), dtype=np.uint8), np.stack([starts, ends, np.ones_like(ends)], axis=1).reshape(-1, 3)


def assert_fastavro_bytes(columns: Predictions | Labels, schema: str, confluent: bool) -> list[bytes]:
    """``columns`` encode record by record as ``WireFormat`` (fastavro) encodes their records,
    and decode to them."""
    wire = WireFormat("avro", schema, confluent, schema_id=7)
    encode = encode_predictions if schema == "PredictionEvent" else encode_labels
    values = encode(columns, wire.bulk_prefix)
    records = columns.records()
    assert values == [wire.encode(record) for record in records]
    assert [wire.decode(value) for value in values] == records
    return values


@settings(deadline=None, max_examples=300)
@given(predictions(), st.booleans())
def test_predictions_are_the_bytes_fastavro_writes(columns, confluent):
    values = assert_fastavro_bytes(columns, "PredictionEvent", confluent)
    wire = WireFormat("avro", "PredictionEvent", confluent, schema_id=7)
    names = columns.strings.text(np.concatenate([columns.feature_names, columns.attribution_names])).tolist()
    layout = Layout(tuple(dict.fromkeys(names)), tuple(columns.strings.text(columns.attribute_names).tolist()))
    buffer, spans = blocks(values, wire.bulk_prefix)
    decoded = decode(buffer, spans, layout)
    assert decoded.ok.all()
    assert strings(buffer.tobytes(), decoded.event_id, few=False)[0].tolist() == columns.strings.text(columns.event_id).tolist()
    np.testing.assert_array_equal(decoded.timestamp, columns.timestamp)
    np.testing.assert_array_equal(decoded.latency_ms, columns.latency_ms)
    np.testing.assert_array_equal(decoded.status, columns.status)
    np.testing.assert_array_equal(decoded.prediction_kind, columns.prediction_kind)
    np.testing.assert_array_equal(decoded.confidence, columns.confidence)
    np.testing.assert_array_equal(decoded.attributed, columns.attributed)
    features = len(columns.feature_names)
    np.testing.assert_array_equal(decoded.feature_kind[:, :features], columns.feature_kind)
    numbers = columns.feature_kind == DOUBLE
    np.testing.assert_array_equal(decoded.feature[:, :features][numbers], columns.feature[numbers])
    where = [layout.features.index(name) for name in columns.strings.text(columns.attribution_names).tolist()]
    attributed = ~np.isnan(columns.attribution) & columns.attributed[:, None]
    np.testing.assert_array_equal(decoded.attribution_set[:, where], attributed)
    np.testing.assert_array_equal(decoded.attribution[:, where][attributed], columns.attribution[attributed])


@settings(deadline=None, max_examples=200)
@given(labels(), st.booleans())
def test_labels_are_the_bytes_fastavro_writes(columns, confluent):
    values = assert_fastavro_bytes(columns, "LabelEvent", confluent)
    decoded = decode_labels(*blocks(values, WireFormat("avro", "LabelEvent", confluent, schema_id=7).bulk_prefix))
    assert decoded.ok.all()
    np.testing.assert_array_equal(decoded.label_kind, columns.label_kind)
    np.testing.assert_array_equal(decoded.timestamp, columns.timestamp)


@pytest.mark.parametrize("guess", [avro_writer._GUESS, 1])
def test_demo_traffic_is_the_bytes_fastavro_writes(monkeypatch, guess):
    """The loadgen's and the demo's columns (three models, errors, attributions), also when
    the buffer has to be written again."""
    monkeypatch.setattr(avro_writer, "_GUESS", guess)
    end = T0 + 10 * 60_000
    events, truth = _columns(np.random.default_rng(3), _split(3000), T0, end, _incidents(T0, end))
    assert (events.status == 1).any() and events.attributed.any() and not events.attributed.all()
    assert_fastavro_bytes(events, "PredictionEvent", confluent=True)
    assert_fastavro_bytes(truth, "LabelEvent", confluent=False)
