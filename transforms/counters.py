"""The pipeline's own counters, as Beam metrics and as Prometheus counters.

Each count goes to both: Beam's metrics (visible in the runner's UI and the pipeline
result) and a process-wide Prometheus registry that ``serve_metrics`` exposes on
``/metrics``.
"""

from __future__ import annotations

from apache_beam.metrics import Metrics
from prometheus_client import CollectorRegistry, Counter, start_http_server

__all__ = ["REGISTRY", "count_dead_letter", "count_events", "count_expired", "count_labelled", "count_late", "count_sink_retry", "count_sink_writes", "count_window", "serve_metrics"]

#: The registry of the pipeline's own counters.
REGISTRY = CollectorRegistry(auto_describe=True)

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


def serve_metrics(port: int) -> int:
    """Serves ``/metrics`` on 127.0.0.1:``port`` (0 picks a free port); returns the port."""
    server, _ = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    return int(server.server_address[1])
