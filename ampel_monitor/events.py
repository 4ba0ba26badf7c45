"""Decoding and validating prediction events into columnar batches.

Records (JSON objects, or Avro records of ``schemas/prediction_event.avsc``) are
validated and grouped by (model, version, slice), each group becoming one
``EventBatch`` of numpy columns: the unit the pipeline moves around, instead of one
element per event. Every rejected record becomes a ``DeadLetter`` with a reason:

* ``malformed``: not a JSON object / not decodable;
* ``missing_field``: a required field is absent or null;
* ``bad_type``: a field of the wrong type (e.g. a string where a number belongs);
* ``bad_value``: an invalid value (a status other than ok/error, a confidence out of [0, 1]);
* ``bad_timestamp``: not epoch milliseconds nor an RFC 3339 time with an offset;
* ``negative_latency``, ``non_finite`` (NaN or infinite numbers), ``unknown_model``.

Pure Python and numpy: no Apache Beam import.
"""

from __future__ import annotations

import datetime
import io
import itertools
import json
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastavro
import numpy as np
from fastavro.schema import to_parsing_canonical_form

from ampel_monitor import avro_columns
from ampel_monitor.avro_columns import ABSENT, DOUBLE, STRING
from drift.profile import CategoricalProfile, ReferenceProfile
from schemas import load_schema

__all__ = [
    "Batch",
    "DeadLetter",
    "EventBatch",
    "EventDecoder",
    "ModelSchema",
    "ResourceBatch",
    "checked_records",
    "decode_event_file",
    "decode_resources",
    "iter_records",
    "parse_timestamp",
]

_NUMBER = (int, float)
_ERROR = {"ok": False, "error": True}


@dataclass(frozen=True)
class DeadLetter:
    """A rejected record, with why and where it came from."""

    #: Machine-readable reason (see the module docstring).
    reason: str
    #: What exactly was wrong.
    detail: str
    #: Where the record came from: ``file:line``, ``topic/partition@offset``.
    source: str
    #: The original record as text.
    record: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "detail": self.detail, "source": self.source, "record": self.record}


class Batch:
    """Rows of one model held as columns (numpy arrays): what the pipeline's steps pass
    to each other (``EventBatch``, ``ResourceBatch``, ``labels.LabelBatch``)."""

    __slots__ = ()

    def __len__(self) -> int:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class EventBatch(Batch):
    """Events of one model version in one slice, as columns."""

    model: str
    version: str
    #: Start of the slice, epoch milliseconds.
    slice_start_ms: int
    #: Event time of each event, epoch milliseconds (int64).
    timestamps: np.ndarray
    #: Serving latency, milliseconds (float64).
    latency_ms: np.ndarray
    #: True for failed predictions.
    error: np.ndarray
    #: Confidence in [0, 1], NaN when absent.
    confidence: np.ndarray
    #: Predictions: float64 (NaN when absent) or object (None when absent).
    prediction: np.ndarray
    #: Per profiled feature: float64 (NaN missing) or object (None missing) values.
    features: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: The event ids (object).
    event_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    #: Per sensitive attribute of the model, each event's subgroup (object, None when absent).
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: Per profiled feature, each event's absolute attribution (float64): 0 where an event's
    #: attributions leave the feature out, NaN for events without attributions. Empty when
    #: no event of the batch carries attributions.
    attributions: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: Categorical columns as the bulk decoder reads them, ``(codes, dictionary)`` with
    #: ``column == dictionary[codes]``: features by name, the prediction under None.
    #: Counting codes skips a dictionary lookup per value. Empty otherwise.
    codes: Mapping[str | None, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def take(self, keep: np.ndarray) -> EventBatch:
        """The events selected by ``keep`` (a boolean mask or indices), features left out."""
        return EventBatch(
            self.model, self.version, self.slice_start_ms, self.timestamps[keep], self.latency_ms[keep],
            self.error[keep], self.confidence[keep], self.prediction[keep], {}, self.event_ids[keep],
            {name: column[keep] for name, column in self.attributes.items()},
            {name: column[keep] for name, column in self.attributions.items()})

    def __len__(self) -> int:
        return int(self.timestamps.size)

    def records(self, indices: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """The events (or those at ``indices``) as PredictionEvent-like dicts (profiled features only)."""
        out = []
        for i in range(len(self)) if indices is None else indices:
            prediction = self.prediction[i]
            out.append(
                {
                    "event_id": self.event_ids[i] if i < self.event_ids.size else None,
                    "model_id": self.model,
                    "model_version": self.version,
                    "timestamp": int(self.timestamps[i]),
                    "latency_ms": float(self.latency_ms[i]),
                    "status": "error" if self.error[i] else "ok",
                    "confidence": None if math.isnan(self.confidence[i]) else float(self.confidence[i]),
                    "prediction": _plain(prediction),
                    "features": {name: _plain(column[i]) for name, column in self.features.items()},
                }
            )
        return out


@dataclass(frozen=True, eq=False)
class ResourceBatch(Batch):
    """Resource samples of one model's hosts in one slice, as columns (ratios 0-1)."""

    model: str
    slice_start_ms: int
    cpu: np.ndarray
    memory: np.ndarray
    #: NaN where a host has no GPU.
    gpu: np.ndarray

    def __len__(self) -> int:
        return int(self.cpu.size)

    def records(self) -> list[dict[str, Any]]:
        """The samples as dicts (the slice start stands for their timestamps)."""
        return [
            {"model_id": self.model, "timestamp": self.slice_start_ms, "cpu": float(c), "memory": float(m),
             "gpu": None if math.isnan(g) else float(g)}
            for c, m, g in zip(self.cpu, self.memory, self.gpu)
        ]


@dataclass(frozen=True)
class ModelSchema:
    """What the decoder expects of one model's events."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    #: Whether predictions are numbers (regression, or a numeric prediction profile).
    numeric_prediction: bool
    #: The attributes whose subgroups are kept (for the bias metrics).
    sensitive: tuple[str, ...] = ()

    @classmethod
    def from_profile(cls, profile: ReferenceProfile, task: str, sensitive: tuple[str, ...] = ()) -> ModelSchema:
        numeric = tuple(n for n, f in profile.features.items() if f.kind == "numeric")
        categorical = tuple(n for n, f in profile.features.items() if f.kind == "categorical")
        numeric_prediction = task == "regression" or (
            profile.prediction is not None and not isinstance(profile.prediction, CategoricalProfile)
        )
        return cls(numeric, categorical, numeric_prediction, tuple(sensitive))


def iter_records(path: str) -> Iterator[tuple[str, Any, Any]]:
    """Yields ``(source, record, original)`` of a JSON-lines or Avro container file.

    A line that is not JSON yields a ``DeadLetter`` (reason ``malformed``) as its record.
    """
    if path.endswith(".avro"):
        with open(path, "rb") as handle:
            for i, record in enumerate(fastavro.reader(handle)):
                yield f"{path}#{i}", record, None
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            source = f"{path}:{number}"
            try:
                yield source, json.loads(line), line
            except ValueError as exc:
                yield source, DeadLetter("malformed", f"invalid JSON: {exc}", source, line.rstrip("\n")), line


def decode_event_file(decoder: EventDecoder, path: str, chunk_size: int = 20_000
                      ) -> Iterator[tuple[list[EventBatch], list[DeadLetter]]]:
    """Batches and dead letters of a file of prediction events, about ``chunk_size`` records at a time.

    An Avro container file written with the current ``PredictionEvent`` schema is decoded
    in bulk (``EventDecoder.decode_avro``); JSON lines, and Avro files of other schema
    versions (read resolved to the current one), record by record.
    """
    if path.endswith(".avro"):
        with open(path, "rb") as handle:
            blocks = fastavro.block_reader(handle)
            current = load_schema("PredictionEvent")
            if to_parsing_canonical_form(blocks.writer_schema) == to_parsing_canonical_form(current):
                yield from _decode_avro_blocks(decoder, path, blocks, current, chunk_size)
                return
    records = iter_records(path)
    while chunk := list(itertools.islice(records, chunk_size)):
        yield decoder.decode_records(chunk)


def _decode_avro_blocks(decoder: EventDecoder, path: str, blocks: Iterable[Any], schema: Any, chunk_size: int
                        ) -> Iterator[tuple[list[EventBatch], list[DeadLetter]]]:
    first = 0
    blocks = iter(blocks)
    while True:
        parts, rows, size, count = [], [], 0, 0
        for block in blocks:
            data = block.bytes_.getvalue()
            parts.append(data)
            rows.append((size, size + len(data), block.num_records))
            size, count = size + len(data), count + block.num_records
            if count >= chunk_size:
                break
        if not parts:
            return
        data, spans = b"".join(parts), np.array(rows, dtype=np.int64)

        def record(i: int, start: int, end: int, base: int = first, data: bytes = data) -> tuple[str, Any, Any]:
            return f"{path}#{base + i}", fastavro.schemaless_reader(io.BytesIO(data[start:end]), schema, None), None

        batches, dead, failed = decoder.decode_avro(data, spans, record)
        if failed.size:  # let fastavro decode (or reject) what the bulk decoder could not
            offsets = np.concatenate([[0], np.cumsum(spans[:, 2])])
            records = []
            for b in failed.tolist():
                stream = io.BytesIO(data[spans[b, 0]:spans[b, 1]])
                records.extend((f"{path}#{first + offsets[b] + k}", fastavro.schemaless_reader(stream, schema, None), None)
                               for k in range(spans[b, 2]))
            more, rejected = decoder.decode_records(records)
            batches, dead = batches + more, dead + rejected
        yield batches, dead
        first += count


def parse_timestamp(value: Any) -> int:
    """Epoch milliseconds from epoch milliseconds or an RFC 3339 string with an offset.

    Raises:
        ValueError: if the value is neither.

    Examples:
        >>> parse_timestamp("2026-01-01T00:00:01.5Z"), parse_timestamp(1767225601500)
        (1767225601500, 1767225601500)
    """
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an RFC 3339 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"RFC 3339 time without an offset: {value!r}")
        return int(round(parsed.timestamp() * 1000))
    raise ValueError(f"not a timestamp: {value!r}")


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _number(record: Mapping[str, Any], name: str) -> float:
    value = record.get(name)
    if value is None:
        raise _Reject("missing_field", f"{name} is missing")
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise _Reject("bad_type", f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise _Reject("non_finite", f"{name} is {value!r}")
    return float(value)


def _timestamp(record: Mapping[str, Any]) -> int:
    if record.get("timestamp") is None:
        raise _Reject("missing_field", "timestamp is missing")
    try:
        return parse_timestamp(record["timestamp"])
    except ValueError as exc:
        raise _Reject("bad_timestamp", str(exc)) from None


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        raise _Reject("missing_field", f"{name} is missing")
    if not isinstance(value, str):
        raise _Reject("bad_type", f"{name} must be a string, got {type(value).__name__}")
    return value


class EventDecoder:
    """Validates prediction records and groups them into ``EventBatch``es.

    Args:
        schemas: per model id, what its events hold.
        slide_ms: the slice length, milliseconds.

    Attributes:
        unknown_features: a count of event features no profile knows, by name.
    """

    def __init__(self, schemas: Mapping[str, ModelSchema], slide_ms: int) -> None:
        if slide_ms <= 0:
            raise ValueError(f"slide_ms must be positive, got {slide_ms!r}")
        self.schemas = dict(schemas)
        self.slide_ms = int(slide_ms)
        self.unknown_features: Counter[str] = Counter()
        names = tuple(dict.fromkeys(n for s in self.schemas.values() for n in (*s.numeric, *s.categorical)))
        self._layout = avro_columns.Layout(names, tuple(dict.fromkeys(a for s in self.schemas.values() for a in s.sensitive)))
        self._where = {name: i for i, name in enumerate(names)}

    def decode_avro(self, data: bytes, blocks: np.ndarray, record: Callable[[int, int, int], tuple[str, Any, Any]]
                    ) -> tuple[list[EventBatch], list[DeadLetter], np.ndarray]:
        """Decodes Avro binary ``PredictionEvent``s of the current schema in bulk.

        ``blocks`` are rows of (start, end, records) in ``data`` (see ``avro_columns``).
        Plainly valid records are put into batches column by column. Every other record
        goes through ``decode_records`` as ``record(i, start, end)`` gives it (``i``
        counts the records of all blocks; start and end are its bytes), so it is
        validated, and dead-lettered, exactly as a record decoded one by one.

        Returns:
            The batches, the dead letters, and the indices of the blocks whose bytes did
            not decode as their records (for the caller to decode one by one).
        """
        columns = avro_columns.decode(np.frombuffer(data, dtype=np.uint8), blocks, self._layout)
        failed = columns.failed_blocks(blocks)
        models, bad_model = avro_columns.strings(data, columns.model_id)
        versions, bad_version = avro_columns.strings(data, columns.model_version)
        latency, confidence = columns.latency_ms, columns.confidence
        slow = columns.ok & (bad_model | bad_version | columns.odd | ~((latency >= 0) & (latency < math.inf))
                             | ~(np.isnan(confidence) | ((confidence >= 0) & (confidence <= 1))))
        fast = columns.ok & ~slow
        batches: list[EventBatch] = []
        for model in self.schemas:
            mine = fast & (models == model)
            fast &= ~mine
            if mine.any():
                batches.extend(self._columns_batches(data, columns, model, np.flatnonzero(mine), versions, slow))
        slow |= fast  # unknown models
        slow_rows = np.flatnonzero(slow)
        more, dead = self.decode_records(
            record(int(i), int(columns.start[i]), int(columns.end[i])) for i in slow_rows)
        return batches + more, dead, failed

    def _columns_batches(self, data: bytes, columns: avro_columns.Columns, model: str, rows: np.ndarray,
                         versions: np.ndarray, slow: np.ndarray) -> list[EventBatch]:
        """Batches of the decoded ``rows`` of ``model``; rows that need every check are set in ``slow``."""
        schema = self.schemas[model]
        numeric = np.array([self._where[n] for n in schema.numeric], dtype=np.int64)
        categorical = np.array([self._where[n] for n in schema.categorical], dtype=np.int64)
        kinds, values = columns.feature_kind[rows], columns.feature[rows]
        numeric_kinds, numeric_values = kinds[:, numeric], values[:, numeric]
        bad = (numeric_kinds == STRING).any(axis=1) | ((numeric_kinds == DOUBLE) & ~np.isfinite(numeric_values)).any(axis=1)
        bad |= (kinds[:, categorical] == DOUBLE).any(axis=1)
        prediction_kind, prediction = columns.prediction_kind[rows], columns.prediction[rows]
        if schema.numeric_prediction:
            bad |= (prediction_kind == STRING) | ((prediction_kind == DOUBLE) & ~np.isfinite(prediction))
        else:
            bad |= prediction_kind == DOUBLE
        known = np.concatenate([numeric, categorical])
        attributed = columns.attributed[rows]
        if attributed.any():
            attribution_set, attribution = columns.attribution_set[rows][:, known], columns.attribution[rows][:, known]
            bad |= (attribution_set & ~np.isfinite(attribution)).any(axis=1)
        else:
            attribution_set = attribution = np.zeros((rows.size, 0))
        # categorical columns as (codes, dictionary): the batch carries both forms
        encoded = {name: avro_columns.encoded_strings(data, columns.feature_span[rows, j])
                   for name, j in zip(schema.categorical, categorical)}
        if not schema.numeric_prediction:
            encoded[None] = avro_columns.encoded_strings(data, columns.prediction_span[rows])
        attributes = {name: avro_columns.strings(data, columns.attribute_span[rows, self._layout.attributes.index(name)])
                      for name in schema.sensitive}
        for *_, invalid in (*encoded.values(), *attributes.values()):
            bad |= invalid
        unknown = self._unknown_keys(data, columns, rows, bad)
        event_ids, invalid = avro_columns.strings(data, columns.event_id[rows], few=False)
        bad |= invalid
        if bad.any():
            slow[rows[bad]] = True
            keep = ~bad
            rows, kinds, numeric_values, prediction, attributed, attribution_set, attribution, event_ids = (
                rows[keep], kinds[keep], numeric_values[keep], prediction[keep], attributed[keep], attribution_set[keep],
                attribution[keep], event_ids[keep])
            encoded = {name: (codes[keep], dictionary, None) for name, (codes, dictionary, _) in encoded.items()}
            attributes = {name: (values[keep], None) for name, (values, _) in attributes.items()}
        others = np.setdiff1d(np.arange(len(self._layout.features)), known)
        if others.size:  # features of other models
            present = (kinds[:, others] != ABSENT).sum(axis=0)
            self.unknown_features.update({self._layout.features[j]: int(c) for j, c in zip(others, present) if c})
        for row, keys in unknown.items():
            if not slow[row]:
                self.unknown_features.update(keys)
        timestamps = columns.timestamp[rows]
        slices = timestamps - timestamps % self.slide_ms
        version_names, version_codes = np.unique(versions[rows].astype(str), return_inverse=True)
        order = np.lexsort((slices, version_codes))
        cuts = np.flatnonzero((np.diff(version_codes[order]) != 0) | (np.diff(slices[order]) != 0)) + 1
        batches = []
        for take in np.split(order, cuts):
            if not take.size:
                continue
            features = {name: numeric_values[take, j] for j, name in enumerate(schema.numeric)}
            codes = {name: (values[take], dictionary) for name, (values, dictionary, _) in encoded.items()}
            features.update((name, dictionary[values]) for name, (values, dictionary) in codes.items() if name is not None)
            carried = attributed[take]
            importance = {}
            if carried.any():
                for j, name in enumerate((*schema.numeric, *schema.categorical)):
                    column = np.where(attribution_set[take, j], np.abs(attribution[take, j]), 0.0)
                    column[~carried] = np.nan
                    importance[name] = column
            first = take[0]
            batches.append(EventBatch(
                model=model, version=str(version_names[version_codes[first]]),
                slice_start_ms=int(slices[first]), timestamps=timestamps[take], latency_ms=columns.latency_ms[rows[take]],
                error=columns.status[rows[take]] == 1, confidence=columns.confidence[rows[take]],
                prediction=prediction[take] if schema.numeric_prediction else codes[None][1][codes[None][0]],
                features=features, event_ids=event_ids[take],
                attributes={name: values[take] for name, (values, _) in attributes.items()},
                attributions=importance, codes=codes))
        return batches

    @staticmethod
    def _unknown_keys(data: bytes, columns: avro_columns.Columns, rows: np.ndarray, bad: np.ndarray) -> dict[int, set[str]]:
        """Per row with them, the feature keys no profile knows; a key that is not UTF-8 sets ``bad``."""
        counts = columns.unknown_keys[rows]
        if not counts.any():
            return {}
        first = np.cumsum(columns.unknown_keys) - columns.unknown_keys
        keys = {}
        for k in np.flatnonzero(counts).tolist():
            row = int(rows[k])
            spans = columns.unknown_key_span[first[row]:first[row] + counts[k]].tolist()
            try:
                keys[row] = {data[start:end].decode("utf-8") for start, end in spans}
            except UnicodeDecodeError:
                bad[k] = True
        return keys

    def decode_records(self, records: Iterable[tuple[str, Any, Any]]) -> tuple[list[EventBatch], list[DeadLetter]]:
        """Validates ``(source, record, original)`` triples and groups the valid ones.

        ``original`` is what a dead letter shows of the record: its text, or None to
        show the record as JSON. A ``DeadLetter`` in place of a record (a line that
        did not parse) is passed through to the dead letters.
        """
        groups: dict[tuple[str, str, int], list[tuple]] = {}
        dead: list[DeadLetter] = []
        slide = self.slide_ms
        for source, record, original in records:
            if isinstance(record, DeadLetter):
                dead.append(record)
                continue
            try:
                row = self._row(record)
            except _Reject as exc:
                dead.append(DeadLetter(exc.reason, exc.detail, source, _show(record, original)))
                continue
            ts = row[2]
            groups.setdefault((row[0], row[1], ts - ts % slide), []).append((*row, source, record, original))
        batches = []
        for (model, version, start), rows in groups.items():
            batch, rejected = self._batch(model, version, start, rows)
            dead.extend(rejected)
            if batch is not None:
                batches.append(batch)
        return batches, dead

    def _row(self, record: Any) -> tuple:
        """The fast path: a record of the usual types passes with a few type checks."""
        try:
            model, version, event_id = record["model_id"], record["model_version"], record["event_id"]
            ts, latency, error = record["timestamp"], record["latency_ms"], _ERROR[record["status"]]
            features, confidence, prediction = record["features"], record.get("confidence"), record.get("prediction")
            schema = self.schemas[model]
        except (KeyError, TypeError):
            return self._checked_row(record)
        if (
            type(version) is str
            and type(event_id) is str
            and type(ts) is int
            and type(latency) is float
            and 0.0 <= latency < math.inf
            and type(features) is dict
            and (confidence is None or (type(confidence) is float and 0.0 <= confidence <= 1.0))
            and (
                prediction is None
                or (type(prediction) is float and math.isfinite(prediction))
                if schema.numeric_prediction
                else prediction is None or type(prediction) is str
            )
            and type(record.get("attributes", {})) is dict
            and type(record.get("attributions") or {}) is dict
        ):
            return (model, version, ts, latency, error, math.nan if confidence is None else confidence, prediction,
                    features, event_id)
        return self._checked_row(record)

    def _checked_row(self, record: Any) -> tuple:
        """The slow path: every check, naming what is wrong."""
        if not isinstance(record, dict):
            raise _Reject("malformed", f"expected an object, got {type(record).__name__}")
        model = _text(record, "model_id")
        schema = self.schemas.get(model)
        if schema is None:
            raise _Reject("unknown_model", f"model {model!r} is not configured")
        version = _text(record, "model_version")
        event_id = _text(record, "event_id")
        ts = _timestamp(record)
        latency = _number(record, "latency_ms")
        if latency < 0:
            raise _Reject("negative_latency", f"latency_ms is {latency!r}")
        status = _text(record, "status")
        if status not in ("ok", "error"):
            raise _Reject("bad_value", f"status must be 'ok' or 'error', got {status!r}")
        confidence = record.get("confidence")
        if confidence is None:
            confidence = math.nan
        else:
            confidence = _number(record, "confidence")
            if not 0.0 <= confidence <= 1.0:
                raise _Reject("bad_value", f"confidence must be within [0, 1], got {confidence!r}")
        prediction = record.get("prediction")
        if prediction is not None:
            if schema.numeric_prediction:
                prediction = _number(record, "prediction")
            elif isinstance(prediction, (dict, list)) or (isinstance(prediction, float) and not math.isfinite(prediction)):
                raise _Reject("bad_type", f"prediction must be a class label, got {prediction!r}")
        features = record.get("features")
        if not isinstance(features, dict):
            if features is None:
                raise _Reject("missing_field", "features is missing")
            raise _Reject("bad_type", f"features must be an object, got {type(features).__name__}")
        for name in ("attributes", "attributions"):
            if record.get(name) is not None and not isinstance(record[name], dict):
                raise _Reject("bad_type", f"{name} must be an object, got {type(record[name]).__name__}")
        return model, version, ts, latency, status == "error", confidence, prediction, features, event_id

    def _batch(self, model: str, version: str, start: int, rows: list[tuple]) -> tuple[EventBatch | None, list[DeadLetter]]:
        schema = self.schemas[model]
        feature_maps = [row[7] for row in rows]
        known = {*schema.numeric, *schema.categorical}
        for features in feature_maps:
            if not features.keys() <= known:
                self.unknown_features.update(features.keys() - known)
        bad: dict[int, tuple[str, str]] = {}
        columns: dict[str, np.ndarray] = {}
        matrix = _feature_matrix(feature_maps, (*schema.numeric, *schema.categorical))
        for j, name in enumerate(schema.numeric):
            values = matrix[:, j]
            kinds = set(map(type, values))
            if not kinds <= {float, int, type(None)}:
                for i, value in enumerate(values):
                    if value is not None and (isinstance(value, bool) or not isinstance(value, _NUMBER)):
                        bad.setdefault(i, ("bad_type", f"feature {name!r} must be a number, got {value!r}"))
                        values[i] = None
            numbers = values.astype(np.float64)
            missing = values == None  # noqa: E711 (element-wise)
            for i in np.flatnonzero(~np.isfinite(numbers) & ~missing):
                bad.setdefault(int(i), ("non_finite", f"feature {name!r} is {numbers[i]!r}"))
            columns[name] = numbers
        for j, name in enumerate(schema.categorical, start=len(schema.numeric)):
            values = matrix[:, j].copy()
            kinds = set(map(type, values))
            if not kinds <= {str, type(None)}:
                for i, value in enumerate(values):
                    if isinstance(value, (dict, list)) or (isinstance(value, float) and not math.isfinite(value)):
                        bad.setdefault(i, ("bad_type", f"feature {name!r} must be a category, got {value!r}"))
            columns[name] = values
        attributions = _attributions(rows, (*schema.numeric, *schema.categorical), bad)
        dead = [DeadLetter(reason, detail, rows[i][9], _show(rows[i][10], rows[i][11])) for i, (reason, detail) in sorted(bad.items())]
        keep = None
        if bad:
            keep = np.ones(len(rows), dtype=bool)
            keep[list(bad)] = False
            if not keep.any():
                return None, dead
            columns = {name: column[keep] for name, column in columns.items()}
            attributions = {name: column[keep] for name, column in attributions.items()}
        predictions = [row[6] for row in rows]
        prediction = (
            np.array([math.nan if p is None else p for p in predictions], dtype=np.float64)
            if schema.numeric_prediction
            else np.array(predictions, dtype=object)
        )
        batch = EventBatch(
            model=model,
            version=version,
            slice_start_ms=start,
            timestamps=np.fromiter((row[2] for row in rows), dtype=np.int64, count=len(rows)),
            latency_ms=np.fromiter((row[3] for row in rows), dtype=np.float64, count=len(rows)),
            error=np.fromiter((row[4] for row in rows), dtype=bool, count=len(rows)),
            confidence=np.fromiter((row[5] for row in rows), dtype=np.float64, count=len(rows)),
            prediction=prediction,
            features=columns,
            event_ids=np.array([row[8] for row in rows], dtype=object),
            attributes={name: np.array([_attribute(row[10], name) for row in rows], dtype=object)
                        for name in schema.sensitive},
        )
        if keep is not None:
            kept = batch.take(keep)
            batch = EventBatch(model, version, start, kept.timestamps, kept.latency_ms, kept.error, kept.confidence,
                               kept.prediction, columns, kept.event_ids, kept.attributes, attributions)
        elif attributions:
            batch = EventBatch(model, version, start, batch.timestamps, batch.latency_ms, batch.error, batch.confidence,
                               batch.prediction, columns, batch.event_ids, batch.attributes, attributions)
        return batch, dead


def _attributions(rows: list[tuple], names: tuple[str, ...], bad: dict[int, tuple[str, str]]) -> dict[str, np.ndarray]:
    """Absolute attributions per profiled feature (see ``EventBatch.attributions``); a
    non-number or non-finite attribution rejects its event (into ``bad``)."""
    maps = [row[10].get("attributions") for row in rows]
    if all(m is None for m in maps):
        return {}
    carried = np.fromiter((m is not None for m in maps), dtype=bool, count=len(maps))
    matrix = _feature_matrix([m or {} for m in maps], names)
    columns = {}
    for j, name in enumerate(names):
        values = matrix[:, j]
        if not set(map(type, values)) <= {float, int, type(None)}:
            for i, value in enumerate(values):
                if value is not None and (isinstance(value, bool) or not isinstance(value, _NUMBER)):
                    bad.setdefault(i, ("bad_type", f"attribution of {name!r} must be a number, got {value!r}"))
                    values[i] = None
        numbers = np.abs(values.astype(np.float64))
        for i in np.flatnonzero(~np.isfinite(numbers) & (values != None)):  # noqa: E711 (element-wise)
            bad.setdefault(int(i), ("non_finite", f"attribution of {name!r} is {values[i]!r}"))
        numbers[~np.isfinite(numbers)] = 0.0
        numbers[~carried] = np.nan
        columns[name] = numbers
    return columns


def _attribute(record: Mapping[str, Any], name: str) -> str | None:
    value = (record.get("attributes") or {}).get(name)
    return None if value is None else str(value)


def _ratio(record: Mapping[str, Any], name: str) -> float:
    value = _number(record, name)
    if not 0.0 <= value <= 1.0:
        raise _Reject("bad_value", f"{name} must be a ratio within [0, 1], got {value!r}")
    return value


def checked_records(records: Iterable[tuple[str, Any, Any]], models: Iterable[str],
                    check: Callable[[Mapping[str, Any]], Any], dead: list[DeadLetter]) -> Iterator[tuple[str, str, Any]]:
    """``(source, model, check(record))`` of each valid ``(source, record, original)``.

    Dead letters in place of records pass through to ``dead``; so do records that are not
    objects, name no configured model, or make ``check`` raise a rejection.
    """
    known = set(models)
    for source, record, original in records:
        if isinstance(record, DeadLetter):
            dead.append(record)
            continue
        try:
            if not isinstance(record, dict):
                raise _Reject("malformed", f"expected an object, got {type(record).__name__}")
            model = _text(record, "model_id")
            if model not in known:
                raise _Reject("unknown_model", f"model {model!r} is not configured")
            value = check(record)
        except _Reject as exc:
            dead.append(DeadLetter(exc.reason, exc.detail, source, _show(record, original)))
            continue
        yield source, model, value


def _resource_sample(record: Mapping[str, Any]) -> tuple[int, tuple[float, float, float]]:
    _text(record, "host")
    ts = _timestamp(record)
    gpu = math.nan if record.get("gpu") is None else _ratio(record, "gpu")
    return ts, (_ratio(record, "cpu"), _ratio(record, "memory"), gpu)


def decode_resources(
    records: Iterable[tuple[str, Any, Any]], models: Iterable[str], slide_ms: int
) -> tuple[list[ResourceBatch], list[DeadLetter]]:
    """Validates ``(source, record, original)`` resource samples and groups them per (model, slice)."""
    groups: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    dead: list[DeadLetter] = []
    for _, model, (ts, sample) in checked_records(records, models, _resource_sample, dead):
        groups.setdefault((model, ts - ts % slide_ms), []).append(sample)
    batches = []
    for (model, start), samples in groups.items():
        columns = np.array(samples, dtype=np.float64).reshape(-1, 3)
        batches.append(ResourceBatch(model, start, columns[:, 0].copy(), columns[:, 1].copy(), columns[:, 2].copy()))
    return batches, dead


def _feature_matrix(feature_maps: list[dict[str, Any]], names: tuple[str, ...]) -> np.ndarray:
    """An object array of one row per event and one column per feature (None when absent)."""
    matrix = np.empty((len(feature_maps), len(names)), dtype=object)
    if len(names) == 1:
        matrix[:, 0] = np.fromiter((f.get(names[0]) for f in feature_maps), dtype=object, count=len(feature_maps))
        return matrix
    if not names:
        return matrix
    getter = operator.itemgetter(*names)
    rows = []
    for features in feature_maps:
        try:
            rows.append(getter(features))
        except KeyError:  # some feature is absent
            rows.append(tuple(features.get(name) for name in names))
    try:
        matrix[:] = rows
    except ValueError:  # a value is itself a sequence: place values one by one
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                matrix[i, j] = value
    return matrix


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _show(record: Any, original: Any) -> str:
    if isinstance(original, str):
        return original.rstrip("\n")
    try:
        return json.dumps(record, default=str, allow_nan=True)
    except (TypeError, ValueError):
        return repr(record)
