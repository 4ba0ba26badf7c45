"""The pipeline's own counters, as Beam metrics and as Prometheus counters.

Each count goes to both: Beam's metrics (visible in the runner's UI and the pipeline
result) and a process-wide Prometheus registry that ``serve_metrics`` exposes on
``/metrics``. Worker processes the pipeline starts itself (``pipelines.prism``) count
into files in a directory (prometheus-client's multiprocess mode, set by their
``PROMETHEUS_MULTIPROC_DIR``); ``/metrics`` adds what those files hold, per series.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from apache_beam.metrics import Metrics
from prometheus_client import CollectorRegistry, Counter, start_http_server, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample

__all__ = ["REGISTRY", "add_worker_counters", "count_dead_letter", "count_events", "count_expired", "count_labelled", "count_late", "count_sink_retry", "count_sink_writes", "count_window", "serve_metrics", "served"]

#: The registry of the pipeline's own counters.
REGISTRY = CollectorRegistry(auto_describe=True)
_WORKER_DIRS: list[Path] = []

_EVENTS = Counter("ampel_events", "Prediction events accepted, by model.", ["model"], registry=REGISTRY)
_DEAD = Counter("ampel_dead_letter_records", "Records rejected to the dead-letter output, by reason.",
                ["reason"], registry=REGISTRY)
_LATE = Counter("ampel_late_events", "Events read behind the watermark (their slice closed), within allowed lateness.",
                ["model"], registry=REGISTRY)
_WINDOWS = Counter("ampel_windows_emitted", "Window results emitted, by model.", ["model"], registry=REGISTRY)
_LABELLED = Counter("ampel_labelled_predictions", "Predictions joined to their label, by model.", ["model"],
                    registry=REGISTRY)
_EXPIRED = Counter("ampel_unlabelled_predictions_expired", "Predictions whose label did not come within labels.max_delay, by model.",
                   ["model"], registry=REGISTRY)
_SINK_WRITES = Counter("ampel_sink_writes", "Records delivered by a sink (samples, documents, alerts), by sink.",
                       ["sink"], registry=REGISTRY)
_SINK_RETRIES = Counter("ampel_sink_retries", "Requests a sink retried after a transient failure, by sink.",
                        ["sink"], registry=REGISTRY)
_ALL = (_EVENTS, _DEAD, _LATE, _WINDOWS, _LABELLED, _EXPIRED, _SINK_WRITES, _SINK_RETRIES)


def count_events(model: str, n: int) -> None:
    Metrics.counter("ampel", f"events.{model}").inc(n)
    _EVENTS.labels(model=model).inc(n)


def count_dead_letter(reason: str, n: int = 1) -> None:
    Metrics.counter("ampel", f"dead_letter_records.{reason}").inc(n)
    _DEAD.labels(reason=reason).inc(n)


def count_late(model: str, n: int) -> None:
    Metrics.counter("ampel", f"late_events.{model}").inc(n)
    _LATE.labels(model=model).inc(n)


def count_window(model: str) -> None:
    Metrics.counter("ampel", f"windows_emitted.{model}").inc()
    _WINDOWS.labels(model=model).inc()


def count_labelled(model: str, n: int) -> None:
    Metrics.counter("ampel", f"labelled_predictions.{model}").inc(n)
    _LABELLED.labels(model=model).inc(n)


def count_expired(model: str, n: int) -> None:
    if n:
        Metrics.counter("ampel", f"unlabelled_predictions_expired.{model}").inc(n)
        _EXPIRED.labels(model=model).inc(n)


def count_sink_writes(sink: str, n: int) -> None:
    Metrics.counter("ampel", f"sink_writes.{sink}").inc(n)
    _SINK_WRITES.labels(sink=sink).inc(n)


def count_sink_retry(sink: str) -> None:
    Metrics.counter("ampel", f"sink_retries.{sink}").inc()
    _SINK_RETRIES.labels(sink=sink).inc()


def count_in_files(path: str) -> None:
    """Makes this process count into files in ``path`` from now on (prometheus-client's
    multiprocess mode): for a worker forked from a process that counted in memory."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values.ValueClass = values.get_value_class()  # what counters made from now on count with
    for counter in _ALL:
        counter.clear()  # series made before the fork count in memory: made again, they count in files


def add_worker_counters(path: Path) -> None:
    """Adds the counters that worker processes write to ``path`` (their
    ``PROMETHEUS_MULTIPROC_DIR``) to those ``/metrics`` serves."""
    _WORKER_DIRS.append(Path(path))


class _AllProcesses:
    """This process's counters plus the worker processes', summed per series."""

    def collect(self) -> Iterator[Metric]:
        theirs: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for path in _WORKER_DIRS:
            for family in MultiProcessCollector(None, path=str(path)).collect():
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    theirs[key] = theirs.get(key, 0.0) + sample.value
        for family in REGISTRY.collect():
            samples = []
            for sample in family.samples:
                added = theirs.pop((sample.name, tuple(sorted(sample.labels.items()))), 0.0)
                samples.append(sample._replace(value=sample.value + added))
            total = f"{family.name}_total"
            samples += [Sample(name, dict(labels), value) for (name, labels), value in theirs.items()
                        if name == total]  # series only a worker has (a label value not seen here)
            family.samples = samples
            yield family


def served() -> CollectorRegistry:
    """The registry ``/metrics`` serves: ``REGISTRY`` and the workers' counters."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AllProcesses())
    return registry


def serve_metrics(port: int) -> int:
    """Serves ``/metrics`` on 127.0.0.1:``port`` (0 picks a free port); returns the port."""
    server, _ = start_http_server(port, addr="127.0.0.1", registry=served())
    return int(server.server_address[1])
