"""Sliding-window metrics by stream slicing: combine each slice once, merge slices into windows.

::

    (model, batch) ─ Heartbeats ─ Gate ─ Slices: FixedWindows(slide) ─ CombineSlices ─ Windows: SlidingWindows(size, slide)
                                  │              (discarding)                          (accumulating)
                                  └─ too late ─> dead letters                        ─ MergeSlices ─ Extract ─> WindowMetrics dicts

* Each batch is folded into its slice's ``ModelAccumulator`` once; a window is the merge
  of its ``size / slide`` slice accumulators, so cost does not grow with size/slide.
* Windows fire when the watermark passes their end. Events within the allowed
  lateness update their windows: the slice stage emits only the late delta
  (discarding), the window stage adds it to what it had (accumulating) and re-emits
  the whole window as a late pane, flagged ``late``.
* In streaming, events beyond the allowed lateness are dead-lettered as ``too_late`` by
  the gate, a stateful step that learns the watermark from an event-time timer ticking
  once per slide (kept ticking for quiet models by heartbeats). The window stages allow
  two more slides of lateness than the gate, so what the gate lets through is never
  dropped downstream. A bounded replay has no
  late data (its watermark moves only at the end) and skips the gate.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.coders import BytesCoder, VarIntCoder
from apache_beam.transforms import trigger, window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming

from ampel_monitor.config import WindowConfig
from ampel_monitor.events import Batch, DeadLetter, EventBatch
from ampel_monitor.window import ModelAccumulator, ModelSpec, SliceSpec
from transforms.counters import count_dead_letter, count_late, count_window
from transforms.coders import BatchCoder  # noqa: F401 (registers the coder of batches)
from transforms.read import DEAD

__all__ = ["SliceCombineFn", "WindowCombineFn", "WindowMetrics"]


@dataclass(frozen=True)
class _Heartbeat(Batch):
    """Tells a model's gate that the stream has reached the slice at ``slice_start_ms``: a
    batch of no rows (so that it travels as batches do, ``transforms.coders``)."""

    slice_start_ms: int

    def __len__(self) -> int:
        return 0


class _HeartbeatDoFn(beam.DoFn):
    """Passes batches on; when one is of a slice newer than any seen here, sends every other
    model a heartbeat of that slice, so that the gate of a quiet model keeps ticking."""

    def __init__(self, models: Iterable[str]) -> None:
        self._models = tuple(models)
        self._newest = -(2**63)

    def process(self, element: tuple[str, Batch]) -> Iterator[tuple[str, Batch]]:
        yield element
        model, batch = element
        if batch.slice_start_ms > self._newest:
            self._newest = batch.slice_start_ms
            beat = _Heartbeat(batch.slice_start_ms)
            for other in self._models:
                if other != model:
                    yield other, beat


class _LatenessGateDoFn(beam.DoFn):
    """Passes batches within the allowed lateness; dead-letters the rest, record by record.

    It knows the watermark only from its own timer, which ticks once per slide; while
    that timer waits, it holds the step's output watermark, so the window stages
    downstream (two slides more lateness) never drop what it passed. The timer ticks on
    for ``IDLE_SLIDES`` slides after the newest slice the model has seen, its own or a
    heartbeat's, so while the stream flows it ticks for a quiet model too. Past that, the
    watermark has moved on without batches: at the end of a stream (it jumps to
    infinity, and a timer that re-arms itself would fire without end), or when idle
    partitions move it to the clock. So the timer then jumps to where the watermark of a
    live stream is (within the lateness and ``LIVE_SLIDES`` slides of the clock), ticks
    on there while the watermark keeps pace with the clock, and stops once it is ahead
    of the clock (the end of a stream); further ahead of the clock than the lateness and
    ``LIVE_SLIDES`` slides, it stops at once, idle slides or not.
    """

    #: Slides the timer keeps ticking after the newest slice seen is past its lateness.
    IDLE_SLIDES = 60
    #: How far behind the clock the watermark of a live stream may be, in slides
    #: (besides the allowed lateness).
    LIVE_SLIDES = 10

    KNOWN = ReadModifyWriteStateSpec("known_watermark_ms", VarIntCoder())
    LATEST = ReadModifyWriteStateSpec("latest_slice_end_ms", VarIntCoder())
    NEXT = ReadModifyWriteStateSpec("next_tick_ms", VarIntCoder())
    TICK = TimerSpec("tick", TimeDomain.WATERMARK)

    def __init__(self, slide_ms: int, lateness_ms: int) -> None:
        self._slide, self._lateness = slide_ms, lateness_ms

    def process(
        self,
        element: tuple[str, Batch],
        known=beam.DoFn.StateParam(KNOWN),
        latest=beam.DoFn.StateParam(LATEST),
        next_tick=beam.DoFn.StateParam(NEXT),
        tick=beam.DoFn.TimerParam(TICK),
    ) -> Iterator[Any]:
        model, batch = element
        end = batch.slice_start_ms + self._slide
        if isinstance(batch, _Heartbeat):
            self._seen(end, latest, next_tick, tick)
            return
        watermark = known.read()
        if watermark is not None and end + self._lateness <= watermark:
            detail = f"event time before {end}, past the allowed lateness at watermark {watermark} (epoch ms)"
            count_dead_letter("too_late", len(batch))
            for record in batch.records():
                yield pvalue.TaggedOutput(DEAD, DeadLetter("too_late", detail, f"model {model}", _json(record)).to_dict())
            return
        if watermark is not None and end <= watermark and isinstance(batch, EventBatch):
            count_late(model, len(batch))
        self._seen(end, latest, next_tick, tick)
        yield element

    @staticmethod
    def _seen(end: int, latest, next_tick, tick) -> None:
        latest.write(max(latest.read() or end, end))
        if next_tick.read() is None:
            tick.set(Timestamp(micros=end * 1000))
            next_tick.write(end)

    @on_timer(TICK)
    def on_tick(
        self,
        fired=beam.DoFn.TimestampParam,
        known=beam.DoFn.StateParam(KNOWN),
        latest=beam.DoFn.StateParam(LATEST),
        next_tick=beam.DoFn.StateParam(NEXT),
        tick=beam.DoFn.TimerParam(TICK),
    ) -> None:
        now = fired.micros // 1000
        known.write(now)
        clock = int(time.time() * 1000)
        lag = self._lateness + self._slide * self.LIVE_SLIDES  # of a live stream's watermark, at most
        if now > clock + lag:
            # further ahead of the clock than a live stream's watermark is behind it: the
            # stream's end (the watermark at infinity), where each tick would fire at once
            # and hold the windows' last panes back until the idle slides ran out
            next_tick.clear()
            return
        following = now + self._slide
        live_from = clock - lag
        idle_until = (latest.read() or now) + self._lateness + self._slide * (1 + self.IDLE_SLIDES)
        if live_from <= now <= clock or following <= idle_until:
            upcoming = following
        elif now < live_from:
            upcoming = max(following, live_from - live_from % self._slide)
        else:
            next_tick.clear()
            return
        tick.set(Timestamp(micros=upcoming * 1000))
        next_tick.write(upcoming)


def _json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, default=str)


def _merge_into_first(accumulators: Iterable[ModelAccumulator]) -> ModelAccumulator:
    """Merges into the first accumulator only (some runners merge an empty set)."""
    iterator = iter(accumulators)
    merged = next(iterator, None)
    if merged is None:
        return ModelAccumulator()
    for accumulator in iterator:
        merged.merge(accumulator)
    return merged


class SliceCombineFn(beam.CombineFn):
    """Folds the batches of one model and slice into one ``ModelAccumulator``."""

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self._specs = {model: SliceSpec(spec) for model, spec in specs.items()}

    def create_accumulator(self) -> ModelAccumulator:
        return ModelAccumulator()

    def add_input(self, accumulator: ModelAccumulator, batch: Batch) -> ModelAccumulator:
        return accumulator.add_batch(batch, self._specs[batch.model])

    def add_inputs(self, accumulator: ModelAccumulator, batches: Iterable[Batch]) -> ModelAccumulator:
        for batch in batches:
            accumulator.add_batch(batch, self._specs[batch.model])
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[ModelAccumulator]) -> ModelAccumulator:
        return _merge_into_first(accumulators)

    def extract_output(self, accumulator: ModelAccumulator) -> ModelAccumulator:
        return accumulator


class WindowCombineFn(beam.CombineFn):
    """Merges slice accumulators into a window's accumulator (inputs are never modified)."""

    def create_accumulator(self) -> ModelAccumulator:
        return ModelAccumulator()

    def add_input(self, accumulator: ModelAccumulator, slice_state: ModelAccumulator) -> ModelAccumulator:
        return accumulator.merge(slice_state)

    def merge_accumulators(self, accumulators: Iterable[ModelAccumulator]) -> ModelAccumulator:
        return _merge_into_first(accumulators)

    def extract_output(self, accumulator: ModelAccumulator) -> ModelAccumulator:
        return accumulator


class _ExtractMetricsDoFn(beam.DoFn):
    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self._specs = dict(specs)

    def process(
        self,
        element: tuple[str, ModelAccumulator],
        win=beam.DoFn.WindowParam,
        pane=beam.DoFn.PaneInfoParam,
    ) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
        model, accumulator = element
        late = pane.timing == PaneInfoTiming.LATE
        start, end = win.start.micros // 1000, win.end.micros // 1000
        for metrics in accumulator.metrics(self._specs[model], start, end, late):
            count_window(model)
            yield (model, metrics["version"]), metrics


class _DropRepeatedPanesDoFn(beam.DoFn):
    """Drops a pane identical to the one before it for the same window (state is per window).

    Some runners (Prism in Beam 2.77) fire a last late pane when a window's lateness
    ends even when nothing arrived late; it repeats the previous pane.
    """

    LAST = ReadModifyWriteStateSpec("last_pane", BytesCoder())

    def process(
        self, element: tuple[tuple[str, str], dict[str, Any]], last=beam.DoFn.StateParam(LAST)
    ) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
        _, metrics = element
        fingerprint = hashlib.blake2b(
            json.dumps({k: v for k, v in metrics.items() if k != "late"}, sort_keys=True).encode(), digest_size=16
        ).digest()
        if last.read() == fingerprint:
            return
        last.write(fingerprint)
        yield element


class WindowMetrics(beam.PTransform):
    """Per-window metrics of keyed batches (see the module docstring).

    Args:
        specs: per model id, its reference profile and drift settings.
        windows: window size, slide and allowed lateness.
        streaming: whether the input is unbounded (and late data possible).

    Returns (on application):
        A ``DoOutputsTuple``: ``metrics``, ``((model, version), WindowMetrics dict)``
        in their sliding windows; ``dead``, the dead letters of too-late events.
    """

    def __init__(self, specs: Mapping[str, ModelSpec], windows: WindowConfig, streaming: bool = False) -> None:
        super().__init__()
        if windows.size_ms % windows.slide_ms:
            raise ValueError(f"window size {windows.size}s must be a multiple of the slide {windows.slide}s")
        self._specs, self._windows, self._streaming = dict(specs), windows, streaming

    def expand(self, batches: beam.PCollection) -> dict[str, beam.PCollection]:
        w = self._windows
        lateness = Duration(micros=(w.lateness_ms + 2 * w.slide_ms) * 1000)
        if self._streaming:
            gated = (
                batches
                | "Heartbeats" >> beam.ParDo(_HeartbeatDoFn(self._specs)).with_output_types(tuple[str, Batch])
                | "Gate" >> beam.ParDo(_LatenessGateDoFn(w.slide_ms, w.lateness_ms)).with_output_types(
                    tuple[str, Batch]).with_outputs(DEAD, main="batches")
            )
            batches, too_late = gated.batches, gated[DEAD]
        else:
            too_late = batches.pipeline | "NoLateData" >> beam.Create([])
        metrics = (
            batches
            | "Slices" >> beam.WindowInto(
                window.FixedWindows(w.slide),
                # the default trigger: on time, then once per late element (Prism fires
                # AfterWatermark(late=AfterCount(1)) a second time at the end of lateness)
                trigger=trigger.DefaultTrigger(),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=lateness,
            )
            | "CombineSlices" >> beam.CombinePerKey(SliceCombineFn(self._specs))
            | "Windows" >> beam.WindowInto(
                window.SlidingWindows(w.size, w.slide),
                trigger=trigger.DefaultTrigger(),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=lateness,
            )
            | "MergeSlices" >> beam.CombinePerKey(WindowCombineFn())
            | "Extract" >> beam.ParDo(_ExtractMetricsDoFn(self._specs))
        )
        if self._streaming:
            metrics = metrics | "DropRepeatedPanes" >> beam.ParDo(_DropRepeatedPanesDoFn())
        return {"metrics": metrics, DEAD: too_late}
