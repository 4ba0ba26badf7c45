"""Delayed labels joined to their predictions, and model quality per window.

::

    (model, EventBatch) ─ Shard ─┐
    (model, LabelBatch) ─ Shard ─┴─ Join: stateful per (model, shard) ─ prediction counts and
                                     │  labelled pairs, at the prediction's event time
                                     └─ dead letters (labels without prediction)
    counts and pairs ─ FixedWindows(slide) ─ QualityCombine (discarding)
        ─ SlidingWindows(size, slide) ─ merge slices (accumulating), lateness = max delay
        ─ Extract ─> quality records (late panes)

In a stream the join appends each batch to keyed state per (model, shard) and, once
per slide on an event-time timer, matches what arrived against its
``ampel_monitor.labels.PendingJoin`` and expires what waited too long; a bounded
replay joins each (model, shard) once after grouping. Pairs are emitted with the
prediction's event time, so they land in the prediction's windows; a window's quality
is re-emitted as a late pane whenever labels for it arrive, up to ``labels.max_delay``
after its end.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.coders import BytesCoder, VarIntCoder
from apache_beam.transforms import trigger, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming

from ampel_monitor.config import LabelsConfig, ModelConfig, WindowConfig
from ampel_monitor.events import EventBatch
from ampel_monitor.labels import Arrivals, LabelBatch, LabelledBatch, PendingJoin, shards_of
from ampel_monitor.quality import QualitySpec, QualityState, compare_versions
from ampel_monitor.window import rfc3339
from transforms.counters import count_dead_letter, count_expired, count_labelled
from transforms.read import DEAD

__all__ = ["CompareVersions", "QualityWindows"]

#: what the join is sent: ((model, shard), (newest event time, (version, slice start, count)
#: of predictions or None, pickled (kind, Arrivals)))
_SHARDED = tuple[tuple[str, int], tuple[int, Optional[tuple[str, int, int]], bytes]]
#: labelled pairs and prediction counts per slice: ((model, version), (model, pairs or count))
_SLICED = tuple[tuple[str, str], tuple[str, Any]]


def _payload(kind: str, rows: Arrivals, slice_of: tuple[str, int] | None) -> tuple[int, Any, bytes]:
    """What the join is sent of a batch: its newest event time (ms), for predictions their
    (version, slice start, count), and ``(kind, rows)`` pickled once, here: the join
    appends these bytes to its state as they come."""
    latest = int(rows.columns["ts"].max()) if len(rows) else 0
    counted = None if slice_of is None else (*slice_of, len(rows))
    return latest, counted, pickle.dumps((kind, rows), protocol=pickle.HIGHEST_PROTOCOL)


def _sharded(model: str, kind: str, rows: Arrivals, shards: int, slice_of: tuple[str, int] | None = None) -> list[Any]:
    of = shards_of(rows.keys, shards)
    return [((model, int(shard)), _payload(kind, rows.take(of == shard), slice_of)) for shard in np.unique(of)]


def _shard_predictions(element: tuple[str, Any], shards: int, sensitive: Mapping[str, tuple[str, ...]]) -> list[Any]:
    model, batch = element
    if not isinstance(batch, EventBatch):
        return []
    rows = Arrivals.predictions(batch, sensitive.get(model, ()))
    return _sharded(model, "p", rows, shards, (batch.version, batch.slice_start_ms))


def _counts(model: str, counted: tuple[str, int, int] | None) -> Iterator[window.TimestampedValue]:
    """A payload's prediction count in its slice, for the quality windows' labelled
    fraction: the join sees every prediction, so they need no stream of their own."""
    if counted is not None:
        version, start, n = counted
        yield window.TimestampedValue(((model, version), n), start / 1000)


def _shard_labels(element: tuple[str, LabelBatch], shards: int, max_delay_ms: int) -> list[window.TimestampedValue]:
    """The labels' payloads, stamped ``max_delay_ms`` before the batch's oldest label: the
    earliest event time of a prediction that they can still meet.

    A label is known later than its prediction, and a runner may hand a key's elements and
    timers to the join in event-time order (Prism does): stamped at their own time, labels
    would wait behind the tick that their predictions set, until the watermark passes it,
    and each would need a tick of its own. The join ignores its inputs' timestamps (state
    and ticks are per shard, in the global window).
    """
    model, batch = element
    if not len(batch):
        return []
    earliest = (int(batch.timestamps.min()) - max_delay_ms) / 1000
    return [window.TimestampedValue(kv, earliest) for kv in _sharded(model, "l", Arrivals.labels(batch), shards)]


class _JoinDoFn(beam.DoFn):
    """The streaming join of one (model, shard).

    A batch is only appended to bag state as it comes, as the bytes the shard step pickled
    (a write of that batch alone). When the watermark passes the next slice boundary after
    the first batch waiting, the waiting predictions and labels are matched and what
    waited too long expires: the shard's state is read and written once per slide, not
    once per batch.
    """

    # held as bytes: the state cache sizes a bytes object at once, a dict entry by entry
    PENDING = ReadModifyWriteStateSpec("pending", BytesCoder())
    ARRIVED = BagStateSpec("arrived", BytesCoder())
    TICK = TimerSpec("tick", TimeDomain.WATERMARK)
    #: when TICK is set to fire (ms), as a timer cannot be read back
    DUE = ReadModifyWriteStateSpec("due", VarIntCoder())

    def __init__(self, labels: LabelsConfig, slide_ms: int, sensitive: Mapping[str, tuple[str, ...]]) -> None:
        self._labels, self._slide_ms, self._sensitive = labels, slide_ms, dict(sensitive)

    def _pending(self, state, model: str) -> PendingJoin:
        data = state.read()
        if data:
            return pickle.loads(data)
        return PendingJoin(self._labels.max_delay_ms, self._labels.grace_ms, self._slide_ms,
                           self._sensitive.get(model, ()))

    def process(self, element, arrived=beam.DoFn.StateParam(ARRIVED), tick=beam.DoFn.TimerParam(TICK),
                due=beam.DoFn.StateParam(DUE)):
        (model, _), (newest, counted, data) = element
        yield from _counts(model, counted)
        arrived.add(data)
        boundary = newest - newest % self._slide_ms + self._slide_ms
        # never later than it is set already: each batch moving it on to its own slice kept a
        # steady stream from ever reaching it (the shard matched nothing until the input paused)
        set_for = due.read()
        if set_for is None or boundary < set_for:
            tick.set(Timestamp(micros=boundary * 1000))
            due.write(boundary)

    @on_timer(TICK)
    def on_tick(self, key=beam.DoFn.KeyParam, fired=beam.DoFn.TimestampParam,
                pending=beam.DoFn.StateParam(PENDING), arrived=beam.DoFn.StateParam(ARRIVED),
                tick=beam.DoFn.TimerParam(TICK), due=beam.DoFn.StateParam(DUE)):
        model, _ = key
        join = self._pending(pending, model)
        batches = [pickle.loads(data) for data in arrived.read()]
        arrived.clear()
        yield from _match(join, model, batches, fired)
        if len(join):
            pending.write(pickle.dumps(join, protocol=pickle.HIGHEST_PROTOCOL))
            deadline = join.next_deadline()
            tick.set(Timestamp(micros=deadline * 1000))
            due.write(deadline)
        else:
            pending.clear()
            due.clear()

    @staticmethod
    def _emit(pairs: list[LabelledBatch]) -> Iterator[Any]:
        for pair in pairs:
            count_labelled(pair.model, len(pair))
            yield window.TimestampedValue(((pair.model, pair.version), pair), pair.slice_start_ms / 1000)


def _match(join: PendingJoin, model: str, batches: Iterable[tuple[str, Arrivals]], now: Timestamp) -> Iterator[Any]:
    """Adds ``(kind, rows)`` pairs to ``join`` (predictions first: the order does not change
    the result), then expires what waited too long at ``now``; yields the labelled pairs
    and, tagged, the dead letters (stamped ``now``)."""
    batches = list(batches)
    dead = []
    for kind in ("p", "l"):
        for side, batch in batches:
            if side == kind:
                pairs, letters = join.add_predictions(batch) if kind == "p" else join.add_labels(batch)
                yield from _JoinDoFn._emit(pairs)
                dead += letters
    count_expired(model, len(dead))  # a label too late: its prediction waited in vain
    expired, letters = join.expire(model, now.micros // 1000)
    count_expired(model, expired)
    for letter in dead + letters:
        count_dead_letter(letter.reason)
        yield pvalue.TaggedOutput(DEAD, window.TimestampedValue(letter.to_dict(), now))


def _join_all(element: tuple[tuple[str, int], Any], labels: LabelsConfig, slide_ms: int,
              sensitive: Mapping[str, tuple[str, ...]]) -> Iterator[Any]:
    """Bounded input: the whole join of one (model, shard) at once, as the stateful join
    would do it (its watermark only moves at the end, when everything still waiting expires)."""
    (model, _), payloads = element
    join = PendingJoin(labels.max_delay_ms, labels.grace_ms, slide_ms, sensitive.get(model, ()))
    batches = []
    for _, counted, data in payloads:
        yield from _counts(model, counted)
        batches.append(pickle.loads(data))
    yield from _match(join, model, batches, window.GlobalWindow().max_timestamp())


def _nth(i: int) -> str:
    """A label's suffix for the ``i``-th of several inputs: none for the first."""
    return str(i) if i else ""


#: Labelled pairs of at least this many go to the slice combiner folded into their own
#: ``QualityState`` (``_QualityCombineFn.fold_large``): a state pickles to under 1 KB
#: (confusion and subgroup tables), labelled pairs to about 14 B each.
FOLD_MIN_PAIRS = 100


class _QualityCombineFn(beam.CombineFn):
    """Folds the labelled pairs and prediction counts of one model version and slice into
    one ``QualityState``; inputs may also be states that ``fold_large`` made of pairs."""

    def __init__(self, specs: Mapping[str, QualitySpec]) -> None:
        self._specs = dict(specs)

    def fold_large(self, element: tuple[tuple[str, str], tuple[str, Any]]) -> tuple[tuple[str, str], tuple[str, Any]]:
        """Large labelled pairs as their own state, before they cross to the combiner: as
        ``transforms.windows.SliceCombineFn.fold_large``, for the runners that shuffle a
        streaming combine's inputs unlifted (and hold them until the slice fires)."""
        key, (model, value) = element
        if not isinstance(value, LabelledBatch) or len(value) < FOLD_MIN_PAIRS:
            return element
        return key, (model, self.add_input({}, element[1])["state"])

    def create_accumulator(self) -> dict[str, Any]:
        return {}  # model -> QualityState, created on the first input (the key is not known here)

    def add_input(self, accumulator: dict[str, Any], item: Any) -> dict[str, Any]:
        model, value = item
        state = accumulator.get("state")
        if state is None:
            state = accumulator["state"] = QualityState(self._specs[model])
        if isinstance(value, LabelledBatch):
            state.add(value.predictions, value.labels, value.confidence, dict(value.attributes))
        elif isinstance(value, QualityState):
            state.merge(value)
        else:
            state.add_unlabelled(value)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: dict[str, Any] = {}
        for accumulator in accumulators:
            state = accumulator.get("state")
            if state is None:
                continue
            if "state" in merged:
                merged["state"].merge(state)
            else:
                merged["state"] = state
        return merged

    def extract_output(self, accumulator: dict[str, Any]) -> Any:
        return accumulator.get("state")


class _QualityMergeFn(beam.CombineFn):
    """Merges the ``QualityState`` of slices into their window (None: a slice without input)."""

    def create_accumulator(self) -> QualityState | None:
        return None

    def add_input(self, accumulator: QualityState | None, state: QualityState | None) -> QualityState | None:
        if state is None:
            return accumulator
        return state.copy() if accumulator is None else accumulator.merge(state)

    def merge_accumulators(self, accumulators: Iterable[QualityState | None]) -> QualityState | None:
        merged = None
        for accumulator in accumulators:
            merged = self.add_input(merged, accumulator)
        return merged

    def extract_output(self, accumulator: QualityState | None) -> QualityState | None:
        return accumulator


class _ExtractQualityDoFn(beam.DoFn):
    def __init__(self, references: Mapping[str, Mapping[str, float]], slide_ms: int) -> None:
        self._references, self._slide_ms = dict(references), slide_ms

    def process(self, element, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        (model, version), state = element
        if state is None:
            return
        quality = state.metrics(self._references.get(model))
        if not quality.get("labelled"):
            return  # predictions only, no label yet: nothing to say about quality
        yield (model, version), {
            "model": model,
            "version": version,
            "window_start": rfc3339(win.start.micros // 1000),
            "window_end": rfc3339(win.end.micros // 1000),
            "late": pane.timing == PaneInfoTiming.LATE,
            "pane": _pane(pane, self._slide_ms),
            "quality": quality,
        }


def _pane(pane, slide_ms: int) -> int:
    """The pane's index, at most ``slide_ms - 1`` (``series.window_series`` offsets by it)."""
    return min(int(pane.index), slide_ms - 1)


class QualityWindows(beam.PTransform):
    """Joins labels to predictions and computes quality per sliding window.

    Applied to ``(predictions, labels)``: keyed ``(model, EventBatch)`` and ``(model,
    LabelBatch)`` PCollections, each side one or a tuple of several (the streams as read,
    other batches among them pass by: each is sharded where it is read, so that only the
    columns the join needs cross to it; the join counts the predictions). Returns ``quality``,
    ``((model, version), record)`` with record = {model, version, window_start,
    window_end, late, pane, quality: {...}}, and the dead letters of labels without a
    prediction. With ``streaming`` False (bounded input) the join groups each (model,
    shard) once instead of keeping state; the result is the same. ``hints``: resource hints
    of the label side (the labels' shard step, the join and the quality slices' partial
    combine), for a runner to run them apart (``pipelines.prism``).
    """

    def __init__(self, models: tuple[ModelConfig, ...], references: Mapping[str, Mapping[str, float]],
                 windows: WindowConfig, labels: LabelsConfig, streaming: bool = True,
                 hints: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._models, self._references, self._windows, self._labels = models, dict(references), windows, labels
        self._streaming, self._hints = streaming, dict(hints or {})

    def _hinted(self, transform: beam.PTransform) -> beam.PTransform:
        return transform.with_resource_hints(**self._hints) if self._hints else transform

    def expand(self, inputs: tuple[beam.PCollection | tuple[beam.PCollection, ...],
                                   beam.PCollection | tuple[beam.PCollection, ...]]) -> dict[str, beam.PCollection]:
        predictions, labels = inputs
        streams = predictions if isinstance(predictions, tuple) else (predictions,)
        label_streams = labels if isinstance(labels, tuple) else (labels,)
        shards, w = self._labels.shards, self._windows
        specs = {m.id: QualitySpec(m.task, m.positive_label, m.sensitive) for m in self._models}
        # each step before a flatten, not after it: a runner may run a flatten's consumer as a
        # stage of its own, moving every element (here whole batches of predictions, features
        # and all) once more
        sensitive = {m.id: m.sensitive for m in self._models}
        # every input of a flatten typed as its output: Prism puts an input of another coder
        # through a stage of its own first, moving each element once more
        sharded = (
            (*[stream | f"ShardPredictions{_nth(i)}" >> beam.FlatMap(_shard_predictions, shards, sensitive)
               .with_output_types(_SHARDED)
               | f"PredictionsUnwindowed{_nth(i)}" >> beam.WindowInto(window.GlobalWindows())
               for i, stream in enumerate(streams)],
             *[stream | f"ShardLabels{_nth(i)}" >> self._hinted(
                 beam.FlatMap(_shard_labels, shards, self._labels.max_delay_ms).with_output_types(_SHARDED))
               | f"LabelsUnwindowed{_nth(i)}" >> self._hinted(beam.WindowInto(window.GlobalWindows()))
               for i, stream in enumerate(label_streams)])
            | "BothSides" >> beam.Flatten().with_output_types(_SHARDED)
        )
        if self._streaming:
            joined = sharded | "Join" >> self._hinted(beam.ParDo(
                _JoinDoFn(self._labels, w.slide_ms, sensitive)).with_outputs(DEAD, main="pairs"))
        else:  # bounded: one group per key instead of a state read and write per batch
            joined = (sharded | "PerShard" >> beam.GroupByKey()
                      | "Join" >> self._hinted(beam.FlatMap(_join_all, self._labels, w.slide_ms, sensitive).with_outputs(
                          DEAD, main="pairs")))
        lateness = Duration(micros=(self._labels.max_delay_ms + w.lateness_ms + 2 * w.slide_ms) * 1000)
        combine = _QualityCombineFn(specs)

        quality = (
            joined.pairs
            | "PairsWithModel" >> self._hinted(
                beam.Map(lambda kv: (kv[0], (kv[0][0], kv[1]))).with_output_types(_SLICED))
            | "PairsSlices" >> self._hinted(beam.WindowInto(  # stream slicing, as transforms/windows.py
                window.FixedWindows(w.slide),
                trigger=trigger.DefaultTrigger(),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=lateness,
            ))
            | "FoldLargePairs" >> self._hinted(beam.Map(combine.fold_large).with_output_types(_SLICED))
            | "CombineQualitySlices" >> self._hinted(beam.CombinePerKey(combine))
            | "QualityWindows" >> beam.WindowInto(
                window.SlidingWindows(w.size, w.slide),
                trigger=trigger.DefaultTrigger(),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=lateness,
            )
            | "MergeQualitySlices" >> beam.CombinePerKey(_QualityMergeFn())
            | "ExtractQuality" >> beam.ParDo(_ExtractQualityDoFn(self._references, w.slide_ms))
        )
        return {"quality": quality, DEAD: joined[DEAD] | "DeadGlobal" >> beam.WindowInto(window.GlobalWindows())}


def _compare(element: tuple[str, Any], baselines: Mapping[str, str], kind: str, slide_ms: int,
             win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam) -> Iterator[dict[str, Any]]:
    model, records = element
    latest: dict[str, dict[str, Any]] = {}
    for record in records:  # accumulating panes repeat older records: keep the fullest per version
        size = record["quality"]["labelled"] if kind == "quality" else record["count"]
        current = latest.get(record["version"])
        if current is None or size >= (current["quality"]["labelled"] if kind == "quality" else current["count"]):
            latest[record["version"]] = record
    versions = compare_versions(latest, baselines[model])
    if versions:
        yield {"model": model, "window_start": rfc3339(win.start.micros // 1000),
               "window_end": rfc3339(win.end.micros // 1000), "kind": kind, "baseline": baselines[model],
               "pane": _pane(pane, slide_ms), "versions": versions}


class CompareVersions(beam.PTransform):
    """A/B per window: every version of a model against its baseline version.

    Applied to keyed window records in their windows (``metrics``: error rate and p95
    latency; ``quality``: accuracy), it groups the versions of each model and window and
    yields ``{model, window_start, window_end, kind, baseline, versions: {version:
    comparison}}`` (``ampel_monitor.quality.compare_versions``), for models with a
    ``baseline_version``.
    """

    def __init__(self, baselines: Mapping[str, str], kind: str, slide_ms: int) -> None:
        super().__init__()
        self._baselines, self._kind, self._slide_ms = dict(baselines), kind, slide_ms

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return (
            records
            | "ByModel" >> beam.MapTuple(lambda key, record: (key[0], record))
            | "WithBaseline" >> beam.Filter(lambda kv, models: kv[0] in models, set(self._baselines))
            | "Versions" >> beam.GroupByKey()
            | "Compare" >> beam.FlatMap(_compare, self._baselines, self._kind, self._slide_ms)
        )
