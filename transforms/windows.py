"""Sliding-window metrics by stream slicing: combine each slice once, merge slices into windows.

::

    (model, batch) ─ FoldLargeBatches ─ Slices: FixedWindows(slide) ─ CombineSlices
                                         (discarding)
        ─ Windows: SlidingWindows(size, slide) ─ MergeSlices ─ Extract ─> WindowMetrics dicts
          (accumulating)

* Each batch is folded into its slice's ``ModelAccumulator`` once; a window is the merge
  of its ``size / slide`` slice accumulators, so cost does not grow with size/slide.
  A large batch is folded into an accumulator of its own before the slice combiner's
  shuffle (``SliceCombineFn.fold_large``), so no runner holds events, only sketches.
* Windows fire when the watermark passes their end. Events within the allowed
  lateness update their windows: the slice stage emits only the late delta
  (discarding), the window stage adds it to what it had (accumulating) and re-emits
  the whole window as a late pane, flagged ``late`` (a window's first pane is not).
* Events beyond the allowed lateness never get here: the source that knows the
  watermark dead-letters them as ``too_late`` (the Kafka read step, ``transforms.kafka.gate``;
  a bounded replay has no late data, its watermark moves only at the end). The window
  stages allow two more slides of lateness, so what the source passes is never dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.transforms import trigger, window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Duration

from ampel_monitor.config import WindowConfig
from ampel_monitor.events import Batch
from ampel_monitor.window import ModelAccumulator, ModelSpec, SliceSpec
from transforms.counters import count_window
from transforms.coders import BatchCoder  # noqa: F401 (registers the coder of batches)

__all__ = ["SliceCombineFn", "WindowCombineFn", "WindowMetrics"]


def _merge_into_first(accumulators: Iterable[ModelAccumulator]) -> ModelAccumulator:
    """Merges into the first accumulator only (some runners merge an empty set)."""
    iterator = iter(accumulators)
    merged = next(iterator, None)
    if merged is None:
        return ModelAccumulator()
    for accumulator in iterator:
        merged.merge(accumulator)
    return merged


#: A batch of at least this many events goes to the slice combiner folded into its own
#: accumulator (``SliceCombineFn.fold_large``): a slice accumulator of the demo's models
#: pickles to 55-72 KB, their events to about 150 B each.
FOLD_MIN_EVENTS = 1_000


class SliceCombineFn(beam.CombineFn):
    """Folds the batches of one model and slice into one ``ModelAccumulator``.

    Inputs are batches, or accumulators that ``fold_large`` made of batches.
    """

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self._specs = {model: SliceSpec(spec) for model, spec in specs.items()}

    def fold_large(self, element: tuple[str, Batch]) -> tuple[str, Any]:
        """A large batch as its own accumulator, before it crosses to the combiner.

        A runner that lifts the combine (Prism; any runner on bounded input) folds each
        bundle's inputs before the shuffle itself. The portable runners' streaming
        translations do not (Beam 2.77's Python portable runner optimises batch
        pipelines only; Flink's translation shuffles the inputs): the shuffle would
        carry every event and the runner hold them in its state until the slice's
        window fires, which took a Flink TaskManager's heap when a backlog was read.
        Folded, it carries one accumulator per large batch; a small batch (a live
        stream's poll of a few events) crosses as it is, being smaller.
        """
        model, batch = element
        if len(batch) < FOLD_MIN_EVENTS:
            return element
        return model, ModelAccumulator().add_batch(batch, self._specs[batch.model])

    def create_accumulator(self) -> ModelAccumulator:
        return ModelAccumulator()

    def add_input(self, accumulator: ModelAccumulator, batch: Batch | ModelAccumulator) -> ModelAccumulator:
        if isinstance(batch, ModelAccumulator):
            return accumulator.merge(batch)
        return accumulator.add_batch(batch, self._specs[batch.model])

    def add_inputs(self, accumulator: ModelAccumulator, batches: Iterable[Batch | ModelAccumulator]) -> ModelAccumulator:
        for batch in batches:
            self.add_input(accumulator, batch)
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
        # an update of a window already emitted; a window's first pane is not, even when the
        # runner fires it LATE (its input reached it after the watermark: Prism, as a replay ends)
        late = not pane.is_first
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
        streaming: whether the input is unbounded (late panes possible).

    Returns (on application):
        ``{"metrics": ...}``: ``((model, version), WindowMetrics dict)`` in their sliding
        windows.
    """

    def __init__(self, specs: Mapping[str, ModelSpec], windows: WindowConfig, streaming: bool = False) -> None:
        super().__init__()
        if windows.size_ms % windows.slide_ms:
            raise ValueError(f"window size {windows.size}s must be a multiple of the slide {windows.slide}s")
        self._specs, self._windows, self._streaming = dict(specs), windows, streaming

    def expand(self, batches: beam.PCollection) -> dict[str, beam.PCollection]:
        w = self._windows
        # two slides more than the source's gate (transforms.kafka.gate) allows
        lateness = Duration(micros=(w.lateness_ms + 2 * w.slide_ms) * 1000)
        combine = SliceCombineFn(self._specs)
        metrics = (
            batches
            | "FoldLargeBatches" >> beam.Map(combine.fold_large).with_output_types(tuple[str, Any])
            | "Slices" >> beam.WindowInto(
                window.FixedWindows(w.slide),
                # the default trigger: on time, then once per late element (Prism fires
                # AfterWatermark(late=AfterCount(1)) a second time at the end of lateness)
                trigger=trigger.DefaultTrigger(),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=lateness,
            )
            | "CombineSlices" >> beam.CombinePerKey(combine)
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
        return {"metrics": metrics}
