"""Avro binary prediction events decoded straight into numpy columns.

fastavro turns every event into a dict of 22 union-typed map entries, about 24 µs an
event on one core, most of it spent making Python objects that the decoder then takes
apart again. This module reads the Avro binary encoding of ``PredictionEvent`` (the
project's current schema) with a compiled loop (numba) into columns: numbers as
float64/int64 arrays, strings as byte spans into the input. Nothing here validates
beyond the wire format; ``EventDecoder.decode_avro`` checks the columns and sends every
record that is not plainly valid through the record-by-record path, so both paths give
the same batches and the same dead letters.

``LabelEvent`` records decode the same way (``decode_labels``).

Input is a byte buffer and a list of blocks ``(start, end, records)``: an Avro
container block holds its records back to back; a Kafka message is a block of one
record. A block whose bytes do not decode as exactly its records is marked as failed
as a whole.

Pure numpy and numba: no Apache Beam import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["ABSENT", "DOUBLE", "NULL", "STRING", "Columns", "LabelColumns", "Layout", "decode", "decode_labels",
           "load_kernels", "strings"]

#: Kinds of a map value or union, per record and name.
ABSENT, NULL, DOUBLE, STRING = 0, 1, 2, 3
#: Room for keys no name stands for, per record on average, before a block falls back.
_SPARE_KEYS = 4


@dataclass(frozen=True)
class Layout:
    """The map keys decoded into columns: feature names (``features`` and ``attributions``)
    and attribute names (``attributes``)."""

    features: tuple[str, ...]
    attributes: tuple[str, ...]

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (*_table(self.features), *_table(self.attributes))


def _table(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [name.encode() for name in names]
    table = np.zeros((max(len(encoded), 1), max((len(e) for e in encoded), default=1)), dtype=np.uint8)
    for i, name in enumerate(encoded):
        table[i, : len(name)] = np.frombuffer(name, dtype=np.uint8)
    return table, np.array([len(e) for e in encoded] or [-1], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class _Records:
    """What every kind of decoded record has. Spans are ``[start, end)`` byte offsets into
    the input (-1 when absent)."""

    #: Per record: its block decoded (False: its block failed, every other column is void).
    ok: np.ndarray
    #: Per record: where its bytes start and end.
    start: np.ndarray
    end: np.ndarray
    event_id: np.ndarray
    model_id: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return int(self.ok.size)

    def failed_blocks(self, blocks: np.ndarray) -> np.ndarray:
        """The indices of the ``blocks`` whose bytes did not decode as their records."""
        block_of = np.repeat(np.arange(len(blocks)), blocks[:, 2]) if len(blocks) else np.zeros(0, dtype=np.int64)
        return np.unique(block_of[~self.ok])


def load_kernels() -> None:
    """Loads the compiled decoders (from numba's cache, or compiles them), about 0.3 s in a
    new process: a reader calls it at set-up, not in its first bundle."""
    byte, block = np.frombuffer(b"\x00", dtype=np.uint8), np.array([[0, 1, 1]], dtype=np.int64)  # as readers pass them
    decode(byte, block, Layout((), ()))
    decode_labels(byte, block)


def _count(blocks: np.ndarray) -> int:
    return int(blocks[:, 2].sum()) if blocks.size else 0


@dataclass(frozen=True, eq=False)
class Columns(_Records):
    """Decoded ``PredictionEvent`` records."""

    model_version: np.ndarray
    latency_ms: np.ndarray
    #: The status symbol's index: 0 "ok", 1 "error".
    status: np.ndarray
    #: The prediction's kind (NULL, DOUBLE or STRING), its number and its span.
    prediction_kind: np.ndarray
    prediction: np.ndarray
    prediction_span: np.ndarray
    #: NaN when null.
    confidence: np.ndarray
    #: Per record and feature name: the kind of its value (ABSENT when the map lacks it),
    #: its number and its span.
    feature_kind: np.ndarray
    feature: np.ndarray
    feature_span: np.ndarray
    #: Per record: how many keys of its feature map no name stands for, and where they are.
    unknown_keys: np.ndarray
    unknown_key_span: np.ndarray
    #: Per record and attribute name: the value's span.
    attribute_span: np.ndarray
    #: Per record: a string it skipped is not ASCII (its UTF-8 is not checked here), or its
    #: confidence is NaN (which the column cannot tell from null).
    odd: np.ndarray
    #: Per record: it has an attributions map (an empty one too); per record and feature
    #: name, whether its map holds the name and the attribution.
    attributed: np.ndarray
    attribution_set: np.ndarray
    attribution: np.ndarray


def decode(buffer: np.ndarray, blocks: np.ndarray, layout: Layout) -> Columns:
    """Decodes the records of ``blocks`` (rows of start, end, records) in ``buffer`` (uint8)."""
    n = _count(blocks)
    features, attributes = len(layout.features), len(layout.attributes)
    spans = lambda *shape: np.full((*shape, 2), -1, dtype=np.int64)  # noqa: E731
    columns = Columns(
        ok=np.ones(n, dtype=bool), start=np.zeros(n, dtype=np.int64), end=np.zeros(n, dtype=np.int64),
        event_id=spans(n), model_id=spans(n), model_version=spans(n),
        timestamp=np.zeros(n, dtype=np.int64), latency_ms=np.zeros(n), status=np.zeros(n, dtype=np.int8),
        prediction_kind=np.zeros(n, dtype=np.int8), prediction=np.full(n, np.nan), prediction_span=spans(n),
        confidence=np.full(n, np.nan),
        feature_kind=np.zeros((n, features), dtype=np.int8), feature=np.full((n, features), np.nan),
        feature_span=spans(n, features),
        unknown_keys=np.zeros(n, dtype=np.int64), unknown_key_span=spans(n * _SPARE_KEYS + 1),
        attribute_span=spans(n, attributes), odd=np.zeros(n, dtype=bool),
        attributed=np.zeros(n, dtype=bool), attribution_set=np.zeros((n, features), dtype=bool),
        attribution=np.zeros((n, features)),
    )
    if n:
        _decode_blocks(np.ascontiguousarray(buffer, dtype=np.uint8), np.ascontiguousarray(blocks, dtype=np.int64),
                       *layout.tables(), columns.ok, columns.start, columns.end, columns.event_id, columns.model_id,
                       columns.model_version, columns.timestamp, columns.latency_ms, columns.status,
                       columns.prediction_kind, columns.prediction, columns.prediction_span, columns.confidence,
                       columns.feature_kind, columns.feature, columns.feature_span, columns.unknown_keys,
                       columns.unknown_key_span, columns.attribute_span, columns.odd, columns.attributed, columns.attribution_set,
                       columns.attribution)
    return columns


@dataclass(frozen=True, eq=False)
class LabelColumns(_Records):
    """Decoded ``LabelEvent`` records."""

    #: DOUBLE or STRING, its number and its span.
    label_kind: np.ndarray
    label: np.ndarray
    label_span: np.ndarray


def decode_labels(buffer: np.ndarray, blocks: np.ndarray) -> LabelColumns:
    """Decodes the ``LabelEvent`` records of ``blocks`` (rows of start, end, records) in ``buffer``."""
    n = _count(blocks)
    spans = lambda: np.full((n, 2), -1, dtype=np.int64)  # noqa: E731
    columns = LabelColumns(ok=np.ones(n, dtype=bool), start=np.zeros(n, dtype=np.int64), end=np.zeros(n, dtype=np.int64),
                           event_id=spans(), model_id=spans(), label_kind=np.zeros(n, dtype=np.int8),
                           label=np.full(n, np.nan), label_span=spans(), timestamp=np.zeros(n, dtype=np.int64))
    if n:
        _decode_label_blocks(np.ascontiguousarray(buffer, dtype=np.uint8), np.ascontiguousarray(blocks, dtype=np.int64),
                             columns.ok, columns.start, columns.end, columns.event_id, columns.model_id,
                             columns.label_kind, columns.label, columns.label_span, columns.timestamp)
    return columns


def strings(data: bytes, spans: np.ndarray, few: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The strings at ``spans`` of ``data`` (None where a span is -1) as an object array,
    and a mask of those that are not valid UTF-8.

    With ``few`` distinct values (model ids, categories) they are ``encoded_strings``
    looked up. Otherwise (event ids) the spans are copied into fixed-width rows ended by
    0xFF (a byte UTF-8 never holds, so trailing NULs survive numpy's fixed-width
    strings) and, ASCII without NULs, the usual case, converted in one numpy cast.
    """
    if few:
        codes, dictionary, bad = encoded_strings(data, spans)
        return dictionary[codes], bad
    n = spans.shape[0]
    out = np.empty(n, dtype=object)
    present = spans[:, 0] >= 0
    if not present.any():
        return out, np.zeros(n, dtype=bool)
    width = int((spans[present, 1] - spans[present, 0]).max()) + 1
    rows = np.zeros((n, width), dtype=np.uint8)
    if _copy_spans(np.frombuffer(data, dtype=np.uint8), spans, rows, True):
        out[present] = rows[present].view(f"S{width}").ravel().astype(f"U{width}")
        return out, np.zeros(n, dtype=bool)
    codes, dictionary, bad = _distinct_rows(rows, present)
    return dictionary[codes], bad


def encoded_strings(data: bytes, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The strings at ``spans`` of ``data`` dictionary-encoded: a code per span, the
    distinct strings (an object array; None for absent spans and for bytes that are not
    valid UTF-8), and a mask of the spans that are not valid UTF-8. Each distinct string
    is decoded once."""
    n = spans.shape[0]
    present = spans[:, 0] >= 0
    if not present.any():
        return np.zeros(n, dtype=np.intp), np.array([None], dtype=object), np.zeros(n, dtype=bool)
    width = int((spans[present, 1] - spans[present, 0]).max()) + 1
    if width <= 8:  # short strings: one uint64 each (bytes and length), no collisions
        distinct, codes = np.unique(_pack(np.frombuffer(data, dtype=np.uint8), spans), return_inverse=True)
        dictionary = np.empty(distinct.size, dtype=object)
        failed = np.zeros(distinct.size, dtype=bool)
        for i, key in enumerate(distinct.tolist()):
            length = key >> 56
            if length <= 7:
                try:
                    dictionary[i] = key.to_bytes(8, "little")[:length].decode("utf-8")
                except UnicodeDecodeError:
                    failed[i] = True
        return codes, dictionary, failed[codes]
    rows = np.zeros((n, width), dtype=np.uint8)
    _copy_spans(np.frombuffer(data, dtype=np.uint8), spans, rows, False)
    return _distinct_rows(rows, present)


def _distinct_rows(rows: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``encoded_strings`` of fixed-width rows ended by 0xFF; the last code is None (absent)."""
    width = rows.shape[1]
    distinct, inverse = np.unique(rows[present].view(f"S{width}").ravel(), return_inverse=True)
    dictionary = np.empty(distinct.size + 1, dtype=object)
    failed = np.zeros(distinct.size + 1, dtype=bool)
    for i, value in enumerate(distinct.tolist()):
        try:
            dictionary[i] = value[:-1].decode("utf-8")
        except UnicodeDecodeError:
            failed[i] = True
    codes = np.full(rows.shape[0], distinct.size, dtype=np.intp)
    codes[present] = inverse
    return codes, dictionary, failed[codes]


@numba.njit(cache=True, nogil=True)
def _pack(buffer, spans):  # pragma: no cover (compiled)
    """Each span of at most 7 bytes as one number: its length in the top byte, its bytes
    below; 255 in the top byte where a span is absent."""
    keys = np.empty(spans.shape[0], dtype=np.uint64)
    for i in range(spans.shape[0]):
        start, end = spans[i, 0], spans[i, 1]
        if start < 0:
            keys[i] = np.uint64(255) << np.uint64(56)
            continue
        key = np.uint64(end - start) << np.uint64(56)
        for j in range(end - start):
            key |= np.uint64(buffer[start + j]) << np.uint64(8 * j)
        keys[i] = key
    return keys


@numba.njit(cache=True, nogil=True)
def _copy_spans(buffer, spans, rows, plain_ends):  # pragma: no cover (compiled)
    """Copies each span into its row, ended by 0xFF; whether all bytes are ASCII without
    NULs, and then, with ``plain_ends``, the ends are NULs instead."""
    plain = True
    for i in range(spans.shape[0]):
        start, end = spans[i, 0], spans[i, 1]
        if start < 0:
            continue
        for j in range(end - start):
            byte = buffer[start + j]
            plain &= 0 < byte < 0x80
            rows[i, j] = byte
        rows[i, end - start] = 0xFF
    plain &= plain_ends
    if plain:
        for i in range(spans.shape[0]):
            if spans[i, 0] >= 0:
                rows[i, spans[i, 1] - spans[i, 0]] = 0
    return plain


@numba.njit(cache=True, nogil=True)
def _long(buffer, pos, end):  # pragma: no cover (compiled)
    """A zigzag varint at ``pos``: (value, next position), next position -1 when invalid."""
    acc = np.uint64(0)
    shift = np.uint64(0)
    while pos < end and shift < np.uint64(64):
        byte = np.uint64(buffer[pos])
        pos += 1
        acc |= (byte & np.uint64(0x7F)) << shift
        if byte < np.uint64(0x80):
            return np.int64(acc >> np.uint64(1)) ^ -np.int64(acc & np.uint64(1)), pos
        shift += np.uint64(7)
    return np.int64(0), -1


@numba.njit(cache=True, nogil=True)
def _double(buffer, pos, scratch):  # pragma: no cover (compiled)
    """The little-endian double at ``pos``, reinterpreted through ``scratch`` (one uint64
    and its float64 view)."""
    bits = np.uint64(0)
    for k in range(8):
        bits |= np.uint64(buffer[pos + k]) << np.uint64(8 * k)
    scratch[0][0] = bits
    return scratch[1][0]


@numba.njit(cache=True, nogil=True)
def _span(buffer, pos, end):  # pragma: no cover (compiled)
    """A string's (start, end); end -1 when invalid."""
    length, pos = _long(buffer, pos, end)
    if pos < 0 or length < 0 or pos + length > end:
        return pos, -1
    return pos, pos + length


@numba.njit(cache=True, nogil=True)
def _ascii(buffer, start, end):  # pragma: no cover (compiled)
    for j in range(start, end):
        if buffer[j] >= 0x80:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _lookup(buffer, start, end, table, lengths, guess):  # pragma: no cover (compiled)
    """The index of the name spelled by ``buffer[start:end]`` (trying ``guess`` first), or -1."""
    length = end - start
    count = lengths.shape[0]
    for step in range(count):
        k = guess + step
        if k >= count:
            k -= count
        if lengths[k] != length:
            continue
        same = True
        for j in range(length):
            if table[k, j] != buffer[start + j]:
                same = False
                break
        if same:
            return k
    return -1


@numba.njit(cache=True, nogil=True)
def _block_count(buffer, pos, end):  # pragma: no cover (compiled)
    """A map block's entry count (the byte size of a negative count skipped); -1 when invalid."""
    count, pos = _long(buffer, pos, end)
    if pos >= 0 and count < 0:
        count = -count
        size, pos = _long(buffer, pos, end)
        if size < 0:
            pos = -1
    return count, pos


@numba.njit(cache=True, nogil=True)
def _record(buffer, pos, end, i, names, name_lengths, attribute_names, attribute_lengths,
            event_id, model_id, model_version, timestamp, latency_ms, status, prediction_kind, prediction,
            prediction_span, confidence, feature_kind, feature, feature_span, unknown_keys, unknown_key_span,
            spare, attribute_span, odd, attributed, attribution_set, attribution, scratch):  # pragma: no cover (compiled)
    """Decodes record ``i`` at ``pos``; returns where it ends (-1 when invalid) and the
    number of unknown-key slots used."""
    for target in (event_id, model_id, model_version):
        start, stop = _span(buffer, pos, end)
        if stop < 0:
            return -1, spare
        target[i, 0], target[i, 1] = start, stop
        pos = stop
    timestamp[i], pos = _long(buffer, pos, end)
    if pos < 0 or pos + 8 > end:
        return -1, spare
    latency_ms[i] = _double(buffer, pos, scratch)
    pos += 8
    symbol, pos = _long(buffer, pos, end)
    if pos < 0 or symbol < 0 or symbol > 1:
        return -1, spare
    status[i] = symbol
    branch, pos = _long(buffer, pos, end)  # error_code: null | string
    if pos < 0 or branch < 0 or branch > 1:
        return -1, spare
    if branch == 1:
        start, pos = _span(buffer, pos, end)
        if pos < 0:
            return -1, spare
        odd[i] |= not _ascii(buffer, start, pos)
    guess = 0
    while True:  # features: map of null | double | string
        count, pos = _block_count(buffer, pos, end)
        if pos < 0:
            return -1, spare
        if count == 0:
            break
        for _ in range(count):
            start, stop = _span(buffer, pos, end)
            if stop < 0:
                return -1, spare
            k = _lookup(buffer, start, stop, names, name_lengths, guess)
            if k < 0:
                if spare >= unknown_key_span.shape[0]:
                    return -1, spare
                unknown_key_span[spare, 0], unknown_key_span[spare, 1] = start, stop
                spare += 1
                unknown_keys[i] += 1
            else:
                guess = k + 1
            branch, pos = _long(buffer, stop, end)
            if pos < 0 or branch < 0 or branch > 2:
                return -1, spare
            if branch == 0:
                if k >= 0:
                    feature_kind[i, k] = 1
                    feature[i, k] = np.nan
            elif branch == 1:
                if pos + 8 > end:
                    return -1, spare
                if k >= 0:
                    feature_kind[i, k] = 2
                    feature[i, k] = _double(buffer, pos, scratch)
                pos += 8
            else:
                start, stop = _span(buffer, pos, end)
                if stop < 0:
                    return -1, spare
                if k >= 0:
                    feature_kind[i, k] = 3
                    feature_span[i, k, 0], feature_span[i, k, 1] = start, stop
                pos = stop
    branch, pos = _long(buffer, pos, end)  # prediction: null | double | string
    if pos < 0 or branch < 0 or branch > 2:
        return -1, spare
    prediction_kind[i] = branch + 1
    if branch == 1:
        if pos + 8 > end:
            return -1, spare
        prediction[i] = _double(buffer, pos, scratch)
        pos += 8
    elif branch == 2:
        start, stop = _span(buffer, pos, end)
        if stop < 0:
            return -1, spare
        prediction_span[i, 0], prediction_span[i, 1] = start, stop
        pos = stop
    branch, pos = _long(buffer, pos, end)  # confidence: null | double
    if pos < 0 or branch < 0 or branch > 1:
        return -1, spare
    if branch == 1:
        if pos + 8 > end:
            return -1, spare
        confidence[i] = _double(buffer, pos, scratch)
        odd[i] |= np.isnan(confidence[i])  # NaN here stands for null: let the checks see this one
        pos += 8
    while True:  # attributes: map of string
        count, pos = _block_count(buffer, pos, end)
        if pos < 0:
            return -1, spare
        if count == 0:
            break
        for _ in range(count):
            start, stop = _span(buffer, pos, end)
            if stop < 0:
                return -1, spare
            k = _lookup(buffer, start, stop, attribute_names, attribute_lengths, 0)
            if k < 0:
                odd[i] |= not _ascii(buffer, start, stop)
            start, pos = _span(buffer, stop, end)
            if pos < 0:
                return -1, spare
            if k >= 0:
                attribute_span[i, k, 0], attribute_span[i, k, 1] = start, pos
            else:
                odd[i] |= not _ascii(buffer, start, pos)
    branch, pos = _long(buffer, pos, end)  # attributions: null | map of double
    if pos < 0 or branch < 0 or branch > 1:
        return -1, spare
    if branch == 1:
        attributed[i] = True
        guess = 0
        while True:
            count, pos = _block_count(buffer, pos, end)
            if pos < 0:
                return -1, spare
            if count == 0:
                break
            for _ in range(count):
                start, stop = _span(buffer, pos, end)
                if stop < 0 or stop + 8 > end:
                    return -1, spare
                k = _lookup(buffer, start, stop, names, name_lengths, guess)
                if k < 0:
                    odd[i] |= not _ascii(buffer, start, stop)
                else:
                    guess = k + 1
                    attribution_set[i, k] = True
                    attribution[i, k] = _double(buffer, stop, scratch)
                pos = stop + 8
    return pos, spare


@numba.njit(cache=True, nogil=True)
def _decode_blocks(buffer, blocks, names, name_lengths, attribute_names, attribute_lengths, ok, record_start,
                   record_end, event_id, model_id, model_version, timestamp, latency_ms, status, prediction_kind,
                   prediction, prediction_span, confidence, feature_kind, feature, feature_span, unknown_keys,
                   unknown_key_span, attribute_span, odd, attributed, attribution_set, attribution):  # pragma: no cover (compiled)
    bits = np.zeros(1, dtype=np.uint64)
    scratch = (bits, bits.view(np.float64))
    i = 0
    spare = 0
    for b in range(blocks.shape[0]):
        pos, end, count = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        first, spare_before, failed = i, spare, False
        for _ in range(count):
            record_start[i] = pos
            if not failed:
                pos, spare = _record(buffer, pos, end, i, names, name_lengths, attribute_names, attribute_lengths,
                                     event_id, model_id, model_version, timestamp, latency_ms, status,
                                     prediction_kind, prediction, prediction_span, confidence, feature_kind, feature,
                                     feature_span, unknown_keys, unknown_key_span, spare, attribute_span, odd, attributed,
                                     attribution_set, attribution, scratch)
                failed = pos < 0
            record_end[i] = pos
            i += 1
        if failed or pos != end:
            ok[first:i] = False
            unknown_keys[first:i] = 0
            spare = spare_before


@numba.njit(cache=True, nogil=True)
def _decode_label_blocks(buffer, blocks, ok, record_start, record_end, event_id, model_id, label_kind, label,
                         label_span, timestamp):  # pragma: no cover (compiled)
    bits = np.zeros(1, dtype=np.uint64)
    scratch = (bits, bits.view(np.float64))
    i = 0
    for b in range(blocks.shape[0]):
        pos, end, count = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        first = i
        for _ in range(count):
            record_start[i] = pos
            if pos >= 0:
                for target in (event_id, model_id):
                    start, stop = _span(buffer, pos, end)
                    if stop < 0:
                        pos = -1
                        break
                    target[i, 0], target[i, 1] = start, stop
                    pos = stop
            if pos >= 0:
                branch, pos = _long(buffer, pos, end)  # label: double | string
                if pos < 0 or branch < 0 or branch > 1:
                    pos = -1
                elif branch == 0:
                    if pos + 8 > end:
                        pos = -1
                    else:
                        label_kind[i] = 2
                        label[i] = _double(buffer, pos, scratch)
                        pos += 8
                else:
                    start, stop = _span(buffer, pos, end)
                    if stop < 0:
                        pos = -1
                    else:
                        label_kind[i] = 3
                        label_span[i, 0], label_span[i, 1] = start, stop
                        pos = stop
            if pos >= 0:
                timestamp[i], pos = _long(buffer, pos, end)
            record_end[i] = pos
            i += 1
        if pos != end:
            ok[first:i] = False
