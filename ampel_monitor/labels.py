"""Delayed ground truth: decoding label events and joining them to the predictions they label.

Labels arrive later than their predictions (minutes to days), on their own stream, keyed
by ``event_id``. ``PendingJoin`` is the state of one shard of the join: the predictions
waiting for a label, each kept only as what the quality metrics need (version, event
time, prediction, confidence, sensitive attributes), and the labels that came before
their prediction.

* A label meeting its prediction makes a labelled pair, attributed to the prediction's
  event time (so to the prediction's windows).
* A prediction waits ``max_delay_ms`` of event time for its label, then expires
  (counted, not dead-lettered: most predictions are never labelled).
* A label waits ``grace_ms`` for its prediction (the streams are not ordered with each
  other); then it is a dead letter ``label_without_prediction`` (the prediction never
  came, or expired before its label).

State is bounded by the predictions of the last ``max_delay_ms`` and the labels of the
last ``grace_ms``: whatever expires is removed.

Pure Python and numpy: no Apache Beam import.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ampel_monitor import avro_columns
from ampel_monitor.events import DeadLetter, EventBatch, _Reject, _text, _timestamp, checked_records

__all__ = ["LabelBatch", "LabelledBatch", "PendingJoin", "decode_label_avro", "decode_labels", "shard_of"]


@dataclass(frozen=True, eq=False)
class LabelBatch:
    """Labels of one model."""

    model: str
    event_ids: np.ndarray
    #: Class labels (str) or numbers (float), object array.
    labels: np.ndarray
    #: When each label became known, epoch milliseconds.
    timestamps: np.ndarray
    sources: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.event_ids.size)


@dataclass(frozen=True, eq=False)
class LabelledBatch:
    """Labelled predictions of one model version whose predictions fall in one slice."""

    model: str
    version: str
    slice_start_ms: int
    predictions: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    #: Per sensitive attribute, each event's subgroup (object array, None when absent).
    attributes: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.size)


def shard_of(event_id: str, shards: int) -> int:
    """The join shard of an event id (stable across processes, unlike ``hash``).

    >>> shard_of("e-1", 16), shard_of("e-1", 16) == shard_of("e-1", 16)
    (12, True)
    """
    return zlib.crc32(event_id.encode("utf-8")) % shards


def _label(record: Mapping[str, Any]) -> tuple[str, Any, int]:
    event_id = _text(record, "event_id")
    label = record.get("label")
    if label is None:
        raise _Reject("missing_field", "label is missing")
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise _Reject("bad_type", f"label must be a class or a number, got {label!r}")
    if isinstance(label, float) and not math.isfinite(label):
        raise _Reject("non_finite", f"label is {label!r}")
    return event_id, label, _timestamp(record)


def decode_labels(records: Iterable[tuple[str, Any, Any]], models: Iterable[str]) -> tuple[list[LabelBatch], list[DeadLetter]]:
    """Validates ``(source, record, original)`` label events and groups them per model."""
    groups: dict[str, list[tuple[str, Any, int, str]]] = {}
    dead: list[DeadLetter] = []
    for source, model, (event_id, label, ts) in checked_records(records, models, _label, dead):
        groups.setdefault(model, []).append((event_id, label, ts, source))
    batches = []
    for model, rows in groups.items():
        ids, labels, ts, sources = zip(*rows)
        batches.append(LabelBatch(model, np.array(ids, dtype=object), np.array(labels, dtype=object),
                                  np.array(ts, dtype=np.int64), tuple(sources)))
    return batches, dead


def decode_label_avro(data: bytes, blocks: np.ndarray, models: Iterable[str], sources: Sequence[str],
                      record: Callable[[int], tuple[str, Any, Any]]) -> tuple[list[LabelBatch], list[DeadLetter], np.ndarray]:
    """Decodes Avro binary ``LabelEvent``s of the current schema in bulk (as
    ``EventDecoder.decode_avro`` does predictions).

    ``sources`` names each record; a record that is not plainly valid goes through
    ``decode_labels`` as ``record(i)`` gives it. Returns the batches, the dead letters and
    the indices of the blocks that did not decode.
    """
    columns = avro_columns.decode_labels(np.frombuffer(data, dtype=np.uint8), blocks)
    failed = columns.failed_blocks(blocks)
    event_ids, bad = avro_columns.strings(data, columns.event_id, few=False)
    model_ids, bad_model = avro_columns.strings(data, columns.model_id)
    texts, bad_text = avro_columns.strings(data, columns.label_span)
    numbers = columns.label_kind == avro_columns.DOUBLE
    slow = columns.ok & (bad | bad_model | bad_text | (numbers & ~np.isfinite(columns.label)))
    fast = columns.ok & ~slow
    batches = []
    for model in dict.fromkeys(models):
        rows = np.flatnonzero(fast & (model_ids == model))
        fast[rows] = False
        if rows.size:
            labels = texts[rows]
            floats = np.flatnonzero(numbers[rows])
            labels[floats] = columns.label[rows[floats]].tolist()
            batches.append(LabelBatch(model, event_ids[rows], labels, columns.timestamp[rows],
                                      tuple(sources[i] for i in rows.tolist())))
    slow |= fast  # unknown models
    more, dead = decode_labels((record(int(i)) for i in np.flatnonzero(slow)), models)
    return batches + more, dead, failed


class PendingJoin:
    """One shard of the prediction-label join (see the module docstring).

    Args:
        max_delay_ms: how long (event time) a prediction waits for its label.
        grace_ms: how long a label waits for its prediction.
        slide_ms: pairs are grouped per slice of the prediction's event time.
        sensitive: the attributes kept per prediction for the bias metrics.
    """

    def __init__(self, max_delay_ms: int, grace_ms: int, slide_ms: int, sensitive: tuple[str, ...] = ()) -> None:
        self.max_delay_ms, self.grace_ms, self.slide_ms, self.sensitive = max_delay_ms, grace_ms, slide_ms, sensitive
        #: event id -> (version, event time ms, prediction, confidence, attributes)
        self.predictions: dict[str, tuple[str, int, Any, float, tuple]] = {}
        #: event id -> (label, label time ms, source)
        self.labels: dict[str, tuple[Any, int, str]] = {}

    def add_predictions(self, batch: EventBatch) -> tuple[list[LabelledBatch], list[DeadLetter]]:
        """Keeps the batch's predictions; returns the pairs made with labels already waiting
        (and the dead letters of labels that came later than ``max_delay_ms``)."""
        attributes = [batch.attributes.get(name) for name in self.sensitive]
        made, dead = [], []
        for i, event_id in enumerate(batch.event_ids.tolist()):
            prediction = batch.prediction[i]
            entry = (batch.version, int(batch.timestamps[i]), prediction.item() if isinstance(prediction, np.generic) else prediction,
                     float(batch.confidence[i]), tuple(None if a is None else a[i] for a in attributes))
            label = self.labels.pop(event_id, None)
            if label is None:
                self.predictions[event_id] = entry
            else:
                self._pair(batch.model, event_id, entry, label, made, dead)
        return self._pairs(batch.model, made), dead

    def add_labels(self, batch: LabelBatch) -> tuple[list[LabelledBatch], list[DeadLetter]]:
        """Pairs the labels with their waiting predictions; keeps the others waiting.

        A label more than ``max_delay_ms`` after its prediction is a dead letter
        ``label_too_late`` whether or not the prediction has expired yet, so that a replay
        (whose watermark moves only at its end) joins exactly as a live stream does.
        """
        made, dead = [], []
        sources = batch.sources or ("",) * len(batch)
        for event_id, label, ts, source in zip(batch.event_ids.tolist(), batch.labels.tolist(),
                                               batch.timestamps.tolist(), sources):
            entry = self.predictions.pop(event_id, None)
            if entry is None:
                self.labels[event_id] = (label, ts, source)
            else:
                self._pair(batch.model, event_id, entry, (label, ts, source), made, dead)
        return self._pairs(batch.model, made), dead

    def _pair(self, model: str, event_id: str, entry: tuple, label: tuple[Any, int, str],
              made: list, dead: list[DeadLetter]) -> None:
        value, ts, source = label
        if ts - entry[1] > self.max_delay_ms:
            record = json.dumps({"event_id": event_id, "model_id": model, "label": value, "timestamp": ts})
            dead.append(DeadLetter("label_too_late", f"label {ts - entry[1]} ms after its prediction "
                                   f"(labels.max_delay is {self.max_delay_ms} ms)", source or f"labels of {model}", record))
        else:
            made.append((entry, value))

    def expire(self, model: str, watermark_ms: int) -> tuple[int, list[DeadLetter]]:
        """Drops what waited too long: returns the number of expired predictions and the
        dead letters of the labels that never met their prediction."""
        old = [k for k, v in self.predictions.items() if v[1] + self.max_delay_ms < watermark_ms]
        for key in old:
            del self.predictions[key]
        stale = [k for k, v in self.labels.items() if v[1] + self.grace_ms < watermark_ms]
        dead = []
        for key in stale:
            label, ts, source = self.labels.pop(key)
            record = json.dumps({"event_id": key, "model_id": model, "label": label, "timestamp": ts})
            dead.append(DeadLetter("label_without_prediction",
                                   f"no prediction {key!r} of model {model!r} waiting (never seen, or expired)",
                                   source or f"labels of {model}", record))
        return len(old), dead

    def next_deadline(self) -> int | None:
        """When ``expire`` next has something to do (event time, rounded up to the next slice
        boundary so that one call handles a whole slice), or None."""
        times = [v[1] + self.max_delay_ms for v in self.predictions.values()]
        times += [v[1] + self.grace_ms for v in self.labels.values()]
        if not times:
            return None
        first = min(times) + 1
        return first + (-first) % self.slide_ms

    def __len__(self) -> int:
        return len(self.predictions) + len(self.labels)

    def _pairs(self, model: str, made: list[tuple[tuple, Any]]) -> list[LabelledBatch]:
        groups: dict[tuple[str, int], list[tuple[tuple, Any]]] = {}
        for entry, label in made:
            groups.setdefault((entry[0], entry[1] - entry[1] % self.slide_ms), []).append((entry, label))
        out = []
        for (version, ts), rows in groups.items():
            out.append(LabelledBatch(
                model, version, ts,
                predictions=np.array([e[2] for e, _ in rows], dtype=object),
                labels=np.array([label for _, label in rows], dtype=object),
                confidence=np.array([e[3] for e, _ in rows], dtype=np.float64),
                attributes={name: np.array([e[4][j] for e, _ in rows], dtype=object)
                            for j, name in enumerate(self.sensitive)},
            ))
        return out
