"""Alert evaluation over window metrics, per model version, in window order."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import BytesCoder, PickleCoder, TupleCoder, VarIntCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import Timestamp

from ampel_monitor.alerts import AlertEvaluator, ConceptDriftMonitor
from ampel_monitor.config import AlertRule

__all__ = ["EvaluateAlerts", "EvaluateConceptDrift"]


class _EvaluateAlertsDoFn(beam.DoFn):
    """Buffers window results until the watermark passes them, then evaluates in order.

    What happens to a pane depends on the window's place, not on its ``late`` flag: a pane
    of a window still waiting replaces it; a pane of the newest window evaluated so far
    is evaluated at once (a late update: its firing or resolution is the version's current
    state); a pane of an older window changes nothing, since newer windows have already
    decided the state. Any other pane is its window's first and waits for the watermark,
    even one the runner fired late (its input reached the window after the watermark
    passed it; Prism does so at the end of a replay, when the watermark jumps to the end
    of time).
    """

    # window results are held as JSON bytes: cheap for the state cache to size
    PENDING = BagStateSpec("pending", TupleCoder((VarIntCoder(), BytesCoder())))
    FIRING = ReadModifyWriteStateSpec("firing", PickleCoder())
    NEXT = ReadModifyWriteStateSpec("next_tick_us", VarIntCoder())
    #: The timestamp of the newest window evaluated.
    LAST = ReadModifyWriteStateSpec("last_us", VarIntCoder())
    TICK = TimerSpec("tick", TimeDomain.WATERMARK)

    def __init__(self, rules: tuple[AlertRule, ...], min_events: int, min_drift_count: int) -> None:
        self._rules, self._min_events, self._min_drift_count = rules, min_events, min_drift_count

    def process(
        self,
        element: tuple[tuple[str, str], dict[str, Any]],
        timestamp=beam.DoFn.TimestampParam,
        pending=beam.DoFn.StateParam(PENDING),
        next_tick=beam.DoFn.StateParam(NEXT),
        firing=beam.DoFn.StateParam(FIRING),
        last=beam.DoFn.StateParam(LAST),
        tick=beam.DoFn.TimerParam(TICK),
    ) -> Iterator[dict[str, Any]]:
        _, metrics = element
        waiting = list(pending.read())
        if any(micros == timestamp.micros for micros, _ in waiting):
            pending.clear()
            for item in waiting:
                pending.add(item if item[0] != timestamp.micros else (item[0], json.dumps(metrics).encode()))
            return
        newest = last.read()
        if timestamp.micros == newest:
            evaluator = AlertEvaluator(self._rules, self._min_events, self._min_drift_count, firing.read() or ())
            yield from evaluator.evaluate(metrics)
            firing.write(evaluator.firing)
        if newest is not None and timestamp.micros <= newest:
            return  # the newest window's, just evaluated, or an older window's
        pending.add((timestamp.micros, json.dumps(metrics).encode()))
        current = next_tick.read()
        if current is None or timestamp.micros < current:
            tick.set(Timestamp(micros=timestamp.micros))
            next_tick.write(timestamp.micros)

    @on_timer(TICK)
    def on_tick(
        self,
        fired=beam.DoFn.TimestampParam,
        pending=beam.DoFn.StateParam(PENDING),
        firing=beam.DoFn.StateParam(FIRING),
        next_tick=beam.DoFn.StateParam(NEXT),
        last=beam.DoFn.StateParam(LAST),
        tick=beam.DoFn.TimerParam(TICK),
    ) -> Iterator[dict[str, Any]]:
        items = sorted(pending.read())
        due = [(micros, json.loads(data)) for micros, data in items if micros <= fired.micros]
        rest = [(micros, data) for micros, data in items if micros > fired.micros]
        evaluator = AlertEvaluator(self._rules, self._min_events, self._min_drift_count, firing.read() or ())
        for _, metrics in due:
            yield from evaluator.evaluate(metrics)
        firing.write(evaluator.firing)
        if due:
            last.write(max(due[-1][0], last.read() or 0))
        pending.clear()
        for item in rest:
            pending.add(item)
        if rest:
            tick.set(Timestamp(micros=rest[0][0]))
            next_tick.write(rest[0][0])
        else:
            next_tick.clear()


def _evaluate_all(element: tuple[tuple[str, str], Iterable[dict[str, Any]]], rules: tuple[AlertRule, ...],
                  min_events: int, min_drift_count: int) -> Iterator[dict[str, Any]]:
    """Bounded input: every window of a model version at once, evaluated in order."""
    _, windows = element
    evaluator = AlertEvaluator(rules, min_events, min_drift_count)
    for metrics in sorted((m for m in windows if not m["late"]), key=lambda m: m["window_end"]):
        yield from evaluator.evaluate(metrics)


class EvaluateAlerts(beam.PTransform):
    """Turns ``((model, version), WindowMetrics)`` into Alert dicts: firing and resolved transitions.

    Args:
        rules: the alert rules.
        min_events: windows with fewer events are not evaluated.
        min_drift_count: drift rules ignore features with fewer values in a window.
        streaming: evaluate as the watermark advances (stateful) rather than once at the end.
    """

    def __init__(self, rules: Iterable[AlertRule], min_events: int = 10, min_drift_count: int = 0,
                 streaming: bool = False) -> None:
        super().__init__()
        self._rules = tuple(rules)
        AlertEvaluator(self._rules, min_events)  # validates the rules now, not on a worker
        self._settings = (min_events, min_drift_count)
        self._streaming = streaming

    def expand(self, metrics: beam.PCollection) -> beam.PCollection:
        global_metrics = metrics | "Global" >> beam.WindowInto(GlobalWindows())
        if self._streaming:
            return global_metrics | "Evaluate" >> beam.ParDo(_EvaluateAlertsDoFn(self._rules, *self._settings))
        return (
            global_metrics
            | "PerVersion" >> beam.GroupByKey()
            | "Evaluate" >> beam.FlatMap(_evaluate_all, self._rules, *self._settings)
        )


class _ConceptDriftDoFn(beam.DoFn):
    """Streaming: quality panes in arrival order, the monitor kept in keyed state."""

    MONITOR = ReadModifyWriteStateSpec("monitor", PickleCoder())

    def __init__(self, size_ms: int) -> None:
        self._size_ms = size_ms

    def process(self, element, monitor=beam.DoFn.StateParam(MONITOR)) -> Iterator[dict[str, Any]]:
        _, record = element
        current = monitor.read() or ConceptDriftMonitor(self._size_ms)
        yield from current.evaluate(record)
        monitor.write(current)


def _concept_drift_all(element: tuple[tuple[str, str], Iterable[dict[str, Any]]], size_ms: int) -> Iterator[dict[str, Any]]:
    """Bounded input: the quality panes of a model version in window order."""
    _, records = element
    monitor = ConceptDriftMonitor(size_ms)
    for record in sorted(records, key=lambda r: (r["window_end"], r["quality"]["labelled"])):
        yield from monitor.evaluate(record)


class EvaluateConceptDrift(beam.PTransform):
    """Turns ``((model, version), quality record)`` into ``concept_drift`` alerts
    (``ampel_monitor.alerts.ConceptDriftMonitor``)."""

    def __init__(self, size_ms: int, streaming: bool = False) -> None:
        super().__init__()
        self._size_ms, self._streaming = size_ms, streaming

    def expand(self, quality: beam.PCollection) -> beam.PCollection:
        global_quality = quality | "Global" >> beam.WindowInto(GlobalWindows())
        if self._streaming:
            return global_quality | "Evaluate" >> beam.ParDo(_ConceptDriftDoFn(self._size_ms))
        return (
            global_quality
            | "PerVersion" >> beam.GroupByKey()
            | "Evaluate" >> beam.FlatMap(_concept_drift_all, self._size_ms)
        )
