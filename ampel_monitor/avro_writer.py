"""Prediction and label events encoded as Avro binary in bulk, from numpy columns.

fastavro's ``schemaless_writer`` takes about 14 µs a ``PredictionEvent``: it walks a dict
of maps against the schema. Here a compiled loop (numba) writes a whole batch from
columns into one buffer, which Python then cuts into one ``bytes`` per record (a Kafka
message each): about 0.6 µs a record of the demo's traffic (210 bytes, 5-7 features),
half of it the cutting. The bytes are those ``schemaless_writer`` writes for the same
record (``Predictions.records``): zig-zag varints, little-endian doubles,
length-prefixed UTF-8, a union's branch index before its value, a non-empty map as one
block (its count, then its entries) and every map ended by a 0. Each record can be
preceded by a ``prefix`` (the Confluent framing, ``WireFormat.bulk_prefix``).

Strings are codes into one table of pre-encoded UTF-8 (``Strings``), -1 standing for
null or absent: vocabularies (model ids, categories, map keys) are encoded once, unique
strings (event ids) are appended per batch. Map values and unions are the decoder's
kinds (``avro_columns.ABSENT``, ``NULL``, ``DOUBLE``, ``STRING``); a nullable double
(confidence, an attribution) is NaN when null or absent, so a NaN itself cannot be
written there.

Pure numpy and numba: no Apache Beam import.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numba
import numpy as np

from ampel_monitor.avro_columns import ABSENT, DOUBLE, NULL, STRING

__all__ = ["Labels", "Predictions", "Strings", "encode_labels", "encode_predictions"]

#: Bytes a record is guessed to take; a batch that needs more is written twice.
_GUESS = 256


@dataclass(frozen=True, eq=False)
class Strings:
    """UTF-8 strings back to back: string ``k`` is ``data[offsets[k]:offsets[k + 1]]``."""

    data: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, values: Iterable[str]) -> Strings:
        """The table of ``values``, in order.

        Examples:
            >>> table = Strings.of(["ok", "é"])
            >>> table.data.tobytes(), table.offsets.tolist()
            (b'ok\\xc3\\xa9', [0, 2, 4])
        """
        encoded = [value.encode() for value in values]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), np.concatenate([[0], np.cumsum(lengths)]))

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def __add__(self, other: Strings) -> Strings:
        """Both tables, ``other``'s codes shifted by ``len(self)``."""
        offsets = np.concatenate([self.offsets, other.offsets[1:] + self.offsets[-1]])
        return Strings(np.concatenate([self.data, other.data]), offsets)

    def code(self) -> dict[str, int]:
        """String to code."""
        return {value: k for k, value in enumerate(self.text(np.arange(len(self))).tolist())}

    def text(self, codes: np.ndarray) -> np.ndarray:
        """The strings of ``codes`` (an object array of their shape), None for -1; each
        distinct one decoded once."""
        used = np.zeros(len(self) + 1, dtype=bool)
        used[codes] = True
        distinct = np.flatnonzero(used[:-1])
        data = self.data.tobytes()
        table = np.empty(len(self) + 1, dtype=object)  # the last, None, for -1
        table[distinct] = [data[start:end].decode() for start, end in zip(self.offsets[distinct].tolist(),
                                                                           self.offsets[distinct + 1].tolist())]
        return table[codes]


class _Rows:
    """Columns whose fields are all per record, but for those named in ``_PER_TABLE``."""

    _PER_TABLE: ClassVar[tuple[str, ...]] = ("strings",)
    timestamp: np.ndarray

    def __len__(self) -> int:
        return int(self.timestamp.size)

    def take(self, rows: np.ndarray) -> Any:
        """The records at ``rows`` (indices or a mask)."""
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self) if f.name not in self._PER_TABLE})


@dataclass(frozen=True, eq=False)
class Predictions(_Rows):
    """``PredictionEvent`` records as columns; string fields are codes into ``strings``.

    A map's keys are codes too, one column per key (``feature_names``: the columns of
    ``feature_kind``, ``feature`` and ``feature_code``); a record's map holds its present
    keys in column order, so each key must occur once.
    """

    _PER_TABLE: ClassVar[tuple[str, ...]] = ("strings", "feature_names", "attribute_names", "attribution_names")

    strings: Strings
    event_id: np.ndarray
    model_id: np.ndarray
    model_version: np.ndarray
    timestamp: np.ndarray
    latency_ms: np.ndarray
    #: The status symbol's index: 0 "ok", 1 "error".
    status: np.ndarray
    #: -1: null.
    error_code: np.ndarray
    #: The features map's keys.
    feature_names: np.ndarray
    #: Per record and key: ABSENT, NULL, DOUBLE or STRING, the number (DOUBLE) and the
    #: string's code (STRING).
    feature_kind: np.ndarray
    feature: np.ndarray
    feature_code: np.ndarray
    #: NULL, DOUBLE or STRING, the number and the string's code.
    prediction_kind: np.ndarray
    prediction: np.ndarray
    prediction_code: np.ndarray
    #: NaN: null.
    confidence: np.ndarray
    #: The attributes map's keys, and per record and key the value's code (-1: absent).
    attribute_names: np.ndarray
    attribute_code: np.ndarray
    #: The attributions map's keys; per record, whether it has the map (False: null), and
    #: per record and key the attribution (NaN: absent).
    attribution_names: np.ndarray
    attributed: np.ndarray
    attribution: np.ndarray

    def records(self) -> list[dict[str, Any]]:
        """The records as dicts of Python values, as fastavro writes and reads them."""
        text = self.strings.text
        features = _maps(text(self.feature_names).tolist(), self.feature_kind != ABSENT,
                         _union(self.strings, self.feature_kind, self.feature, self.feature_code))
        attributes = _maps(text(self.attribute_names).tolist(), self.attribute_code >= 0, text(self.attribute_code))
        attributions = _maps(text(self.attribution_names).tolist(), ~np.isnan(self.attribution),
                             self.attribution.astype(object))
        prediction = _union(self.strings, self.prediction_kind, self.prediction, self.prediction_code)
        confidence = self.confidence.astype(object)
        confidence[np.isnan(self.confidence)] = None
        return [
            {"event_id": event_id, "model_id": model_id, "model_version": version, "timestamp": timestamp,
             "latency_ms": latency, "status": ("ok", "error")[status], "error_code": code, "features": f,
             "prediction": p, "confidence": c, "attributes": a, "attributions": b if attributed else None}
            for event_id, model_id, version, timestamp, latency, status, code, f, p, c, a, attributed, b in zip(
                text(self.event_id).tolist(), text(self.model_id).tolist(), text(self.model_version).tolist(),
                self.timestamp.tolist(), self.latency_ms.tolist(), self.status.tolist(), text(self.error_code).tolist(),
                features, prediction.tolist(), confidence.tolist(), attributes, self.attributed.tolist(), attributions)
        ]


@dataclass(frozen=True, eq=False)
class Labels(_Rows):
    """``LabelEvent`` records as columns; string fields are codes into ``strings``."""

    strings: Strings
    event_id: np.ndarray
    model_id: np.ndarray
    #: DOUBLE or STRING, the number and the string's code.
    label_kind: np.ndarray
    label: np.ndarray
    label_code: np.ndarray
    timestamp: np.ndarray

    def records(self) -> list[dict[str, Any]]:
        """The records as dicts of Python values, as fastavro writes and reads them."""
        text = self.strings.text
        label = _union(self.strings, self.label_kind, self.label, self.label_code)
        return [{"event_id": event_id, "model_id": model_id, "label": value, "timestamp": timestamp}
                for event_id, model_id, value, timestamp in zip(text(self.event_id).tolist(), text(self.model_id).tolist(),
                                                                label.tolist(), self.timestamp.tolist())]


def _union(strings: Strings, kind: np.ndarray, number: np.ndarray, code: np.ndarray) -> np.ndarray:
    """The Python values of union columns: None, a float (DOUBLE) or a string (STRING)."""
    values = strings.text(np.where(kind == STRING, code, -1))
    doubles = kind == DOUBLE
    values[doubles] = number[doubles]
    return values


def _maps(keys: Sequence[str], present: np.ndarray, values: np.ndarray) -> list[dict]:
    """Per record, the dict of its present keys (in key order) to their ``values`` (an
    object array of the shape of ``present``); records with the same keys are built together."""
    n = present.shape[0]
    if not present.shape[1]:
        return [{} for _ in range(n)]
    packed = np.packbits(present, axis=1)
    _, first, inverse = np.unique(packed.view(f"V{packed.shape[1]}").ravel(), return_index=True, return_inverse=True)
    out = np.empty(n, dtype=object)
    for p, row in enumerate(first.tolist()):
        rows = np.flatnonzero(inverse.ravel() == p)
        slots = np.flatnonzero(present[row]).tolist()
        names = [keys[k] for k in slots]
        columns = [values[rows, k].tolist() for k in slots]
        out[rows] = [dict(zip(names, entries)) for entries in zip(*columns)] if slots else [{} for _ in rows]
    return out.tolist()


def encode_predictions(columns: Predictions, prefix: bytes = b"") -> list[bytes]:
    """Each record of ``columns``, Avro binary after ``prefix``."""
    return _encode(_write_predictions, columns, prefix)


def encode_labels(columns: Labels, prefix: bytes = b"") -> list[bytes]:
    """Each record of ``columns``, Avro binary after ``prefix``.

    Examples:
        >>> table = Strings.of(["e1", "m", "yes"])
        >>> labels = Labels(table, np.array([0]), np.array([1]), np.array([STRING], dtype=np.int8), np.array([np.nan]),
        ...                 np.array([2]), np.array([-3]))
        >>> encode_labels(labels)
        [b'\\x04e1\\x02m\\x02\\x06yes\\x05']
    """
    return _encode(_write_labels, columns, prefix)


def _encode(write: Any, columns: Predictions | Labels, prefix: bytes) -> list[bytes]:
    """Runs the kernel ``write`` (arguments: the prefix, the columns in field order, ``out``
    and ``ends``) into a buffer of the guessed size, again into one of the size it needed
    when that was too small; the records as bytes."""
    arrays = (np.frombuffer(prefix, dtype=np.uint8), columns.strings.data, columns.strings.offsets,
              *(getattr(columns, f.name) for f in fields(columns) if f.name != "strings"))
    ends = np.zeros(len(columns), dtype=np.int64)
    out = np.empty(len(columns) * _GUESS, dtype=np.uint8)
    size = write(*arrays, out, ends)
    if size > out.size:
        out = np.empty(size, dtype=np.uint8)
        write(*arrays, out, ends)
    data = out[:size].tobytes()
    bounds = ends.tolist()
    return [data[start:end] for start, end in zip([0, *bounds], bounds)]


# The kernels write with inner functions, which numba inlines: a call to a compiled function
# that passes arrays costs about 17 ns (reference counts), more than most values take.


@numba.njit(cache=True, nogil=True)
def _write_predictions(prefix, data, offsets, event_id, model_id, model_version, timestamp, latency_ms, status,
                       error_code, feature_names, feature_kind, feature, feature_code, prediction_kind, prediction,
                       prediction_code, confidence, attribute_names, attribute_code, attribution_names, attributed,
                       attribution, out, ends):  # pragma: no cover (compiled)
    """Writes the records into ``out`` as far as it fits, each one's end into ``ends``;
    returns the size they need."""
    bits = np.zeros(1, dtype=np.uint64)
    number = bits.view(np.float64)  # a double's bits through this view
    size = out.shape[0]

    def put_long(pos, value):  # zig-zag varint
        value = np.int64(value)
        rest = np.uint64((value << 1) ^ (value >> 63))
        while rest >= np.uint64(0x80):
            if pos < size:
                out[pos] = np.uint8((rest & np.uint64(0x7F)) | np.uint64(0x80))
            pos += 1
            rest >>= np.uint64(7)
        if pos < size:
            out[pos] = np.uint8(rest)
        return pos + 1

    def put_double(pos, value):  # little-endian
        number[0] = value
        if pos + 8 <= size:
            for k in range(8):
                out[pos + k] = np.uint8((bits[0] >> np.uint64(8 * k)) & np.uint64(0xFF))
        return pos + 8

    def put_bytes(pos, source, start, end):
        if pos + end - start <= size:
            for j in range(end - start):
                out[pos + j] = source[start + j]
        return pos + end - start

    def put_string(pos, code):
        pos = put_long(pos, offsets[code + 1] - offsets[code])
        return put_bytes(pos, data, offsets[code], offsets[code + 1])

    def put_union(pos, kind, value, code):  # null | double | string: the branch, then a value of that kind
        pos = put_long(pos, kind - NULL)
        if kind == DOUBLE:
            pos = put_double(pos, value)
        elif kind == STRING:
            pos = put_string(pos, code)
        return pos

    pos = 0
    for i in range(timestamp.shape[0]):
        pos = put_bytes(pos, prefix, 0, prefix.shape[0])
        pos = put_string(pos, event_id[i])
        pos = put_string(pos, model_id[i])
        pos = put_string(pos, model_version[i])
        pos = put_long(pos, timestamp[i])
        pos = put_double(pos, latency_ms[i])
        pos = put_long(pos, status[i])
        pos = put_long(pos, 0) if error_code[i] < 0 else put_string(put_long(pos, 1), error_code[i])
        count = 0
        for k in range(feature_names.shape[0]):
            count += feature_kind[i, k] != ABSENT
        if count:
            pos = put_long(pos, count)
            for k in range(feature_names.shape[0]):
                kind = feature_kind[i, k]
                if kind != ABSENT:
                    pos = put_string(pos, feature_names[k])
                    pos = put_union(pos, kind, feature[i, k], feature_code[i, k])
        pos = put_long(pos, 0)
        pos = put_union(pos, prediction_kind[i], prediction[i], prediction_code[i])
        pos = put_long(pos, 0) if np.isnan(confidence[i]) else put_double(put_long(pos, 1), confidence[i])
        count = 0
        for k in range(attribute_names.shape[0]):
            count += attribute_code[i, k] >= 0
        if count:
            pos = put_long(pos, count)
            for k in range(attribute_names.shape[0]):
                if attribute_code[i, k] >= 0:
                    pos = put_string(pos, attribute_names[k])
                    pos = put_string(pos, attribute_code[i, k])
        pos = put_long(pos, 0)
        pos = put_long(pos, 1 if attributed[i] else 0)
        if attributed[i]:
            count = 0
            for k in range(attribution_names.shape[0]):
                count += not np.isnan(attribution[i, k])
            if count:
                pos = put_long(pos, count)
                for k in range(attribution_names.shape[0]):
                    if not np.isnan(attribution[i, k]):
                        pos = put_string(pos, attribution_names[k])
                        pos = put_double(pos, attribution[i, k])
            pos = put_long(pos, 0)
        ends[i] = pos
    return pos


@numba.njit(cache=True, nogil=True)
def _write_labels(prefix, data, offsets, event_id, model_id, label_kind, label, label_code, timestamp, out,
                  ends):  # pragma: no cover (compiled)
    """As ``_write_predictions``, for ``LabelEvent`` records (label: double | string), with
    the same inner functions (compiled functions cannot share them)."""
    bits = np.zeros(1, dtype=np.uint64)
    number = bits.view(np.float64)  # a double's bits through this view
    size = out.shape[0]

    def put_long(pos, value):  # zig-zag varint
        value = np.int64(value)
        rest = np.uint64((value << 1) ^ (value >> 63))
        while rest >= np.uint64(0x80):
            if pos < size:
                out[pos] = np.uint8((rest & np.uint64(0x7F)) | np.uint64(0x80))
            pos += 1
            rest >>= np.uint64(7)
        if pos < size:
            out[pos] = np.uint8(rest)
        return pos + 1

    def put_double(pos, value):  # little-endian
        number[0] = value
        if pos + 8 <= size:
            for k in range(8):
                out[pos + k] = np.uint8((bits[0] >> np.uint64(8 * k)) & np.uint64(0xFF))
        return pos + 8

    def put_bytes(pos, source, start, end):
        if pos + end - start <= size:
            for j in range(end - start):
                out[pos + j] = source[start + j]
        return pos + end - start

    def put_string(pos, code):
        pos = put_long(pos, offsets[code + 1] - offsets[code])
        return put_bytes(pos, data, offsets[code], offsets[code + 1])

    pos = 0
    for i in range(timestamp.shape[0]):
        pos = put_bytes(pos, prefix, 0, prefix.shape[0])
        pos = put_string(pos, event_id[i])
        pos = put_string(pos, model_id[i])
        if label_kind[i] == DOUBLE:
            pos = put_double(put_long(pos, 0), label[i])
        else:
            pos = put_string(put_long(pos, 1), label_code[i])
        pos = put_long(pos, timestamp[i])
        ends[i] = pos
    return pos
