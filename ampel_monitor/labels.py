"""Delayed ground truth: decoding label events and joining them to the predictions they label.

Labels arrive later than their predictions (minutes to days), on their own stream, keyed
by ``event_id``. ``PendingJoin`` is the state of one shard of the join: the predictions
waiting for a label, each kept only as what the quality metrics need (version, event
time, prediction, confidence, sensitive attributes) and the 128-bit key of its event
id (``event_keys``), and the labels that came before their prediction.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from ampel_monitor import avro_columns
from ampel_monitor.events import Batch, DeadLetter, EventBatch, _Reject, _text, _timestamp, checked_records

__all__ = ["Arrivals", "LabelBatch", "LabelledBatch", "Offsets", "PendingJoin", "decode_label_avro", "decode_labels",
           "event_keys", "shards_of", "take_sources"]


@dataclass(frozen=True, eq=False)
class Offsets(Sequence[str]):
    """The names of messages of one partition, ``prefix`` followed by each message's
    offset (``"labels/0@"`` and 1234), formatted only when one is asked for: a label
    needs its name only for a dead letter.
    """

    prefix: str
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets.size)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return Offsets(self.prefix, self.offsets[i])
        return f"{self.prefix}{self.offsets[i]}"

    def take(self, keep: np.ndarray) -> Offsets:
        return Offsets(self.prefix, self.offsets[keep])


def take_sources(sources: Sequence[str], keep: np.ndarray | Sequence[int]) -> Sequence[str]:
    """The names of the rows selected by ``keep`` (a boolean mask or indices)."""
    if isinstance(sources, Offsets):
        return sources.take(keep)
    if not sources:
        return ()
    rows = np.arange(len(sources))[keep].tolist()
    return tuple(sources[i] for i in rows)


@dataclass(frozen=True, eq=False)
class LabelBatch(Batch):
    """Labels of one model."""

    model: str
    event_ids: np.ndarray
    #: Class labels (str) or numbers (float), object array.
    labels: np.ndarray
    #: When each label became known, epoch milliseconds.
    timestamps: np.ndarray
    #: Where each label was read (``Offsets`` for Kafka messages), for its dead letters;
    #: empty when not known.
    sources: Sequence[str] = ()

    def __len__(self) -> int:
        return int(self.event_ids.size)

    def take(self, keep: np.ndarray) -> LabelBatch:
        """The labels selected by ``keep`` (a boolean mask or indices)."""
        return LabelBatch(self.model, self.event_ids[keep], self.labels[keep], self.timestamps[keep],
                          take_sources(self.sources, keep))


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
            batches.append(LabelBatch(model, event_ids[rows], labels, columns.timestamp[rows], take_sources(sources, rows)))
    slow |= fast  # unknown models
    more, dead = decode_labels((record(int(i)) for i in np.flatnonzero(slow)), models)
    return batches + more, dead, failed


def event_keys(event_ids: np.ndarray) -> np.ndarray:
    """The key of each event id in the join: the 128-bit XXH3 hash of its UTF-8 bytes, as
    ``(n, 2)`` uint64 (the same in every process and release). Two of the ids waiting in a
    shard share a key with a probability of about n² / 2¹²⁹: never, in practice.
    """
    digests = b"".join(map(xxhash.xxh3_128_digest, map(str.encode, event_ids.tolist())))
    return np.frombuffer(digests, dtype="<u8").reshape(-1, 2)  # little-endian on every machine


def shards_of(keys: np.ndarray, shards: int) -> np.ndarray:
    """The join shard of each key (``event_keys``).

    >>> shards_of(event_keys(np.array(["e-1", "e-2", "e-1"], dtype=object)), 16).tolist()
    [7, 13, 7]
    """
    return (keys[:, 0] % np.uint64(shards)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Arrivals:
    """What the join is sent of a batch of predictions (``version`` set) or labels: each
    row's key (``event_keys``) and the columns the join keeps of it. A prediction is kept
    as its event time, prediction, confidence and sensitive attributes (``a0``, ``a1``, ...);
    its event id is only its key. A label keeps its event id too, for its dead letter.
    """

    model: str
    version: str | None
    keys: np.ndarray
    columns: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def take(self, keep: np.ndarray) -> Arrivals:
        return Arrivals(self.model, self.version, self.keys[keep], {name: c[keep] for name, c in self.columns.items()})

    @classmethod
    def predictions(cls, batch: EventBatch, sensitive: tuple[str, ...]) -> Arrivals:
        n = len(batch)
        columns = {"ts": batch.timestamps.astype(np.int64, copy=False), "prediction": batch.prediction,
                   "confidence": batch.confidence.astype(np.float64, copy=False)}
        for j, name in enumerate(sensitive):
            values = batch.attributes.get(name)
            columns[f"a{j}"] = np.full(n, None, dtype=object) if values is None else values
        return cls(batch.model, batch.version, event_keys(batch.event_ids), columns)

    @classmethod
    def labels(cls, batch: LabelBatch) -> Arrivals:
        n = len(batch)
        origin = np.empty(n, dtype=object)  # filled, not np.full (a copy of the string each): pickled once
        if isinstance(batch.sources, Offsets):  # the names are formatted for dead letters only
            origin.fill(batch.sources.prefix)
            offset = batch.sources.offsets
        else:
            origin[:] = batch.sources or ""
            offset = np.full(n, -1, dtype=np.int64)
        columns = {"ts": batch.timestamps.astype(np.int64, copy=False), "label": batch.labels, "id": batch.event_ids,
                   "origin": origin, "offset": offset}
        return cls(batch.model, None, event_keys(batch.event_ids), columns)


class _Waiting:
    """Rows waiting in a join shard, column by column, found by key (``event_keys``).

    A mask says which rows still wait. Appended rows are kept as chunks until rows are
    looked up; then they are concatenated and sorted by key once, and of a key waiting
    twice only the newest row waits. Pickles without the rows gone: a shard's state costs
    a few arrays to write and read, and no index is rebuilt after it is read.
    """

    def __init__(self) -> None:
        self._keys = np.empty((0, 2), dtype=np.uint64)
        self._columns: dict[str, np.ndarray] = {}
        self._chunks: list[tuple[np.ndarray, Mapping[str, np.ndarray]]] = []
        self._live = np.empty(0, dtype=bool)
        self._count = 0
        #: the rows sorted by key, and their keys' high halves in that order; None: to sort
        self._order: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        self._flush()
        return self._count

    def __getstate__(self) -> dict[str, Any]:
        self._compact()
        return {"keys": self._keys, "columns": self._columns}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._keys, self._columns, self._chunks = state["keys"], state["columns"], []
        self._live = np.ones(self._keys.shape[0], dtype=bool)
        self._count, self._order = int(self._live.size), None

    def keys(self) -> np.ndarray:
        """The keys waiting, oldest first."""
        self._flush()
        return self._keys[self._live]

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The row of each key, -1 where it does not wait."""
        self._flush()
        found = np.full(keys.shape[0], -1, dtype=np.int64)
        if not self._count or not found.size:
            return found
        order, high = self._sorted()
        # looked up in sorted order, the keys walk the sorted rows once instead of jumping about
        by = np.argsort(keys[:, 0])
        at = np.empty_like(by)
        at[by] = np.searchsorted(high, keys[by, 0])
        candidates = np.flatnonzero(at < high.size)
        candidates = candidates[high[at[candidates]] == keys[candidates, 0]]
        rows = order[at[candidates]]
        hit = self._live[rows] & (self._keys[rows, 1] == keys[candidates, 1])
        found[candidates[hit]] = rows[hit]
        # the first row of the high half is gone or another key's, and more rows share it: look at each
        missed = candidates[~hit]
        after = np.minimum(at[missed] + 1, high.size - 1)
        for i in missed[(at[missed] + 1 < high.size) & (high[after] == keys[missed, 0])].tolist():
            j = int(at[i]) + 1
            while j < high.size and high[j] == keys[i, 0]:
                row = order[j]
                if self._live[row] and self._keys[row, 1] == keys[i, 1]:
                    found[i] = row
                    break
                j += 1
        return found

    def add(self, keys: np.ndarray, columns: Mapping[str, np.ndarray]) -> None:
        if keys.shape[0]:
            self._chunks.append((keys, columns))

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        self._flush()
        return {name: column[rows] for name, column in self._columns.items()}

    def remove(self, rows: np.ndarray) -> None:
        """Removes waiting rows."""
        self._flush()
        self._live[rows] = False
        self._count -= int(np.asarray(rows).size)
        if self._live.size > 2 * self._count + 1024:
            self._compact()

    def rows_before(self, name: str, bound: int) -> np.ndarray:
        """The waiting rows whose column ``name`` is below ``bound``."""
        self._flush()
        if not self._count:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self._live & (self._columns[name] < bound))

    def smallest(self, name: str) -> int:
        self._flush()
        return int(self._columns[name][self._live].min())

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._order is None:
            # by the high half alone, rows of a high half in arrival order (stable); two different
            # keys sharing a high half (a 2^-64 chance a pair) need the whole key for a key's rows
            # to be side by side
            order = np.argsort(self._keys[:, 0], kind="stable")
            high = self._keys[order, 0]
            shared = high[1:] == high[:-1]
            if shared.any():
                low = self._keys[order, 1]
                if (low[1:][shared] != low[:-1][shared]).any():
                    order = np.lexsort((self._keys[:, 1], self._keys[:, 0]))
                    high = self._keys[order, 0]
            self._order = order, high
        return self._order

    def _flush(self) -> None:
        if not self._chunks:
            return
        parts = ([(self._keys, self._columns)] if self._live.size else []) + self._chunks
        added = sum(keys.shape[0] for keys, _ in self._chunks)
        self._keys = np.concatenate([keys for keys, _ in parts])
        self._columns = {name: np.concatenate([columns[name] for _, columns in parts]) for name in parts[0][1]}
        self._live = np.concatenate([self._live, np.ones(added, dtype=bool)])
        self._chunks, self._order = [], None
        order, _ = self._sorted()
        live = order[self._live[order]]
        same = (self._keys[live[1:]] == self._keys[live[:-1]]).all(axis=1)
        self._live[live[:-1][same]] = False  # a key waiting twice: its newest row waits
        self._count = int(live.size - np.count_nonzero(same))
        if self._live.size > 2 * self._count + 1024:
            self._compact()

    def _compact(self) -> None:
        self._flush()
        if self._count != self._keys.shape[0]:
            keep = self._live
            self._keys, self._columns = self._keys[keep], {name: column[keep] for name, column in self._columns.items()}
            self._live, self._order = np.ones(self._count, dtype=bool), None


class PendingJoin:
    """One shard of the prediction-label join (see the module docstring).

    What waits is held in columns (``_Waiting``), found by the key of its event id: a
    prediction's version, event time, prediction, confidence and sensitive attributes; a
    label's value, time, event id and source.

    Args:
        max_delay_ms: how long (event time) a prediction waits for its label.
        grace_ms: how long a label waits for its prediction.
        slide_ms: pairs are grouped per slice of the prediction's event time.
        sensitive: the attributes kept per prediction for the bias metrics.
    """

    def __init__(self, max_delay_ms: int, grace_ms: int, slide_ms: int, sensitive: tuple[str, ...] = ()) -> None:
        self.max_delay_ms, self.grace_ms, self.slide_ms, self.sensitive = max_delay_ms, grace_ms, slide_ms, sensitive
        self._predictions = _Waiting()
        self._labels = _Waiting()
        #: the model versions seen: a waiting prediction's version is its index here
        self._versions: list[str] = []

    @property
    def predictions(self) -> np.ndarray:
        """The keys (``event_keys``) of the predictions waiting for their label, oldest first."""
        return self._predictions.keys()

    @property
    def labels(self) -> np.ndarray:
        """The keys of the labels waiting for their prediction, oldest first."""
        return self._labels.keys()

    def add_predictions(self, batch: EventBatch | Arrivals) -> tuple[list[LabelledBatch], list[DeadLetter]]:
        """Keeps the batch's predictions; returns the pairs made with labels already waiting
        (and the dead letters of labels that came later than ``max_delay_ms``)."""
        rows = batch if isinstance(batch, Arrivals) else Arrivals.predictions(batch, self.sensitive)
        if rows.version not in self._versions:
            self._versions.append(rows.version)
        version = np.full(len(rows), self._versions.index(rows.version), dtype=np.int32)
        return self._arrive(rows.model, rows.keys, {**rows.columns, "version": version}, self._predictions, self._labels)

    def add_labels(self, batch: LabelBatch | Arrivals) -> tuple[list[LabelledBatch], list[DeadLetter]]:
        """Pairs the labels with their waiting predictions; keeps the others waiting.

        A label more than ``max_delay_ms`` after its prediction is a dead letter
        ``label_too_late`` whether or not the prediction has expired yet, so that a replay
        (whose watermark moves only at its end) joins exactly as a live stream does.
        """
        rows = batch if isinstance(batch, Arrivals) else Arrivals.labels(batch)
        return self._arrive(rows.model, rows.keys, dict(rows.columns), self._labels, self._predictions)

    def _arrive(self, model: str, keys: np.ndarray, columns: dict[str, np.ndarray], side: _Waiting,
                other: _Waiting) -> tuple[list[LabelledBatch], list[DeadLetter]]:
        """Pairs arriving rows (of ``side``: predictions or labels) with those waiting on the
        ``other`` side; the rest wait on their own side."""
        matched, rows = _meet(other, keys)
        made: list = []
        dead: list[DeadLetter] = []
        if matched.size:
            theirs = other.take(rows)
            other.remove(rows)
            mine = {name: column[matched] for name, column in columns.items()}
            predictions, labels = (mine, theirs) if side is self._predictions else (theirs, mine)
            self._pair(model, predictions, labels, made, dead)
            keep = np.ones(keys.shape[0], dtype=bool)
            keep[matched] = False
            keys, columns = keys[keep], {name: column[keep] for name, column in columns.items()}
        side.add(keys, columns)
        return self._pairs(model, made), dead

    def _pair(self, model: str, predictions: dict[str, np.ndarray], labels: dict[str, np.ndarray], made: list,
              dead: list[DeadLetter]) -> None:
        late = labels["ts"] - predictions["ts"] > self.max_delay_ms
        for i in np.flatnonzero(late).tolist():
            value, ts = labels["label"][i], int(labels["ts"][i])
            record = json.dumps({"event_id": labels["id"][i], "model_id": model, "label": value, "timestamp": ts})
            dead.append(DeadLetter("label_too_late", f"label {ts - int(predictions['ts'][i])} ms after its prediction "
                                   f"(labels.max_delay is {self.max_delay_ms} ms)",
                                   _source(labels["origin"][i], labels["offset"][i], model), record))
        if late.any():
            predictions = {name: column[~late] for name, column in predictions.items()}
            labels = {name: column[~late] for name, column in labels.items()}
        if labels["ts"].size:
            made.append((predictions, labels["label"]))

    def expire(self, model: str, watermark_ms: int) -> tuple[int, list[DeadLetter]]:
        """Drops what waited too long: returns the number of expired predictions and the
        dead letters of the labels that never met their prediction."""
        old = self._predictions.rows_before("ts", watermark_ms - self.max_delay_ms)
        self._predictions.remove(old)
        expired = int(old.size)
        stale = self._labels.rows_before("ts", watermark_ms - self.grace_ms)
        if not stale.size:
            return expired, []
        labels = self._labels.take(stale)
        self._labels.remove(stale)
        dead = []
        for key, label, ts, origin, offset in zip(labels["id"].tolist(), labels["label"].tolist(), labels["ts"].tolist(),
                                                  labels["origin"].tolist(), labels["offset"].tolist()):
            record = json.dumps({"event_id": key, "model_id": model, "label": label, "timestamp": ts})
            dead.append(DeadLetter("label_without_prediction",
                                   f"no prediction {key!r} of model {model!r} waiting (never seen, or expired)",
                                   _source(origin, offset, model), record))
        return expired, dead

    def next_deadline(self) -> int | None:
        """When ``expire`` next has something to do (event time, rounded up to the next slice
        boundary so that one call handles a whole slice), or None."""
        times = []
        if len(self._predictions):
            times.append(self._predictions.smallest("ts") + self.max_delay_ms)
        if len(self._labels):
            times.append(self._labels.smallest("ts") + self.grace_ms)
        if not times:
            return None
        first = min(times) + 1
        return first + (-first) % self.slide_ms

    def __len__(self) -> int:
        return len(self._predictions) + len(self._labels)

    def _pairs(self, model: str, made: list[tuple[dict[str, np.ndarray], np.ndarray]]) -> list[LabelledBatch]:
        if not made:
            return []
        predictions = {name: np.concatenate([p[name] for p, _ in made]) for name in made[0][0]}
        labels = np.concatenate([label for _, label in made]).astype(object, copy=False)
        ts, versions = predictions["ts"], predictions["version"]
        slices = ts - ts % self.slide_ms
        out = []
        for code in dict.fromkeys(versions.tolist()):
            of_version, version = versions == code, self._versions[code]
            for start in np.unique(slices[of_version]).tolist():
                rows = np.flatnonzero(of_version & (slices == start))
                out.append(LabelledBatch(
                    model, version, start,
                    predictions=predictions["prediction"][rows].astype(object),
                    labels=labels[rows],
                    confidence=predictions["confidence"][rows],
                    attributes={name: predictions[f"a{j}"][rows] for j, name in enumerate(self.sensitive)},
                ))
        return out


def _source(origin: str, offset: int, model: str) -> str:
    """A label's name: its origin and offset (``Offsets``), its origin alone (offset -1)."""
    if offset >= 0:
        return f"{origin}{offset}"
    return origin or f"labels of {model}"


def _meet(waiting: _Waiting, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions in ``keys`` that meet a waiting row, and those rows (a key twice in
    ``keys`` meets its row once, the first time; the other waits)."""
    if not len(waiting):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    rows = waiting.find(keys)
    matched = np.flatnonzero(rows >= 0)
    if matched.size:
        _, first = np.unique(rows[matched], return_index=True)
        if first.size != matched.size:
            matched = matched[np.sort(first)]
    return matched, rows[matched]
