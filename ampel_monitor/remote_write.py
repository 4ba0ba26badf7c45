"""Prometheus remote write: window metrics as timestamped samples, delivered or dead-lettered.

A request is a ``prometheus.WriteRequest`` protobuf (remote-write protocol 1.0),
snappy block-compressed. The message classes are built at import from a
``FileDescriptorProto`` equal to Prometheus' ``remote.proto``/``types.proto``
subset we send (no generated code, no protoc).

What the server says decides what happens to a request (``classify``):

* 2xx: delivered.
* 400, or a 500 whose text says the sample is out of order, out of bounds or too old:
  permanent. Prometheus rejects the whole request for one bad sample, so a rejected
  request of several windows is split in halves until each rejected window stands
  alone; those go to the dead-letter path (``prometheus_rejected``), the others are
  delivered.
* 429, other 5xx, connection errors and timeouts: transient, retried with
  exponential backoff and jitter until the retry deadline, then dead-lettered
  (``prometheus_unavailable``).

Pure Python: no Apache Beam import.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cramjam
import requests
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ampel_monitor.config import PrometheusSink
from ampel_monitor.series import Sample, window_series

__all__ = ["RemoteWriter", "WriteResult", "classify", "decode", "encode"]

_F = descriptor_pb2.FieldDescriptorProto


def _message_classes() -> dict[str, type]:
    proto = descriptor_pb2.FileDescriptorProto(name="ampel_remote_write.proto", package="prometheus", syntax="proto3")
    for name, fields in (
        ("Label", [("name", 1, _F.TYPE_STRING, None, False), ("value", 2, _F.TYPE_STRING, None, False)]),
        ("Sample", [("value", 1, _F.TYPE_DOUBLE, None, False), ("timestamp", 2, _F.TYPE_INT64, None, False)]),
        ("TimeSeries", [("labels", 1, _F.TYPE_MESSAGE, ".prometheus.Label", True),
                        ("samples", 2, _F.TYPE_MESSAGE, ".prometheus.Sample", True)]),
        ("WriteRequest", [("timeseries", 1, _F.TYPE_MESSAGE, ".prometheus.TimeSeries", True)]),
    ):
        message = proto.message_type.add(name=name)
        for field_name, number, kind, type_name, repeated in fields:
            entry = message.field.add(name=field_name, number=number, type=kind,
                                      label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if type_name:
                entry.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
            for name in ("WriteRequest",)}


_WriteRequest = _message_classes()["WriteRequest"]


def encode(samples: Sequence[Sample]) -> bytes:
    """A snappy-compressed ``WriteRequest``, one time series per distinct label set."""
    series: dict[tuple, list[Sample]] = {}
    for sample in samples:
        series.setdefault((sample.name, sample.labels), []).append(sample)
    request = _WriteRequest()
    for (name, labels), points in series.items():
        entry = request.timeseries.add()
        for key, value in (("__name__", name), *labels):  # sorted: "__name__" sorts first
            entry.labels.add(name=key, value=value)
        for point in sorted(points, key=lambda p: p.timestamp_ms):
            entry.samples.add(value=point.value, timestamp=point.timestamp_ms)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def decode(body: bytes) -> list[Sample]:
    """The samples of an encoded request (the inverse of ``encode``; for tests and tools)."""
    request = _WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    out = []
    for entry in request.timeseries:
        labels = {label.name: label.value for label in entry.labels}
        name = labels.pop("__name__")
        out.extend(Sample(name, tuple(sorted(labels.items())), s.value, s.timestamp) for s in entry.samples)
    return out


_PERMANENT_500 = ("out of order", "out of bounds", "too old", "duplicate sample")


def classify(status: int, text: str) -> str:
    """``ok``, ``permanent`` or ``transient`` for a remote-write response.

    >>> classify(204, ""), classify(400, "bad"), classify(500, "too old sample"), classify(503, "")
    ('ok', 'permanent', 'permanent', 'transient')
    """
    if 200 <= status < 300:
        return "ok"
    if status == 429 or (status >= 500 and not any(s in text.lower() for s in _PERMANENT_500)):
        return "transient"
    return "permanent"


@dataclass
class WriteResult:
    """What one ``RemoteWriter.write`` call did."""

    #: Samples Prometheus accepted.
    samples: int = 0
    #: Requests sent again after a transient failure.
    retries: int = 0
    #: Dead-letter dicts (reason, detail, source, record), one per window not delivered.
    dead_letters: list[dict[str, str]] = field(default_factory=list)


class RemoteWriter:
    """Writes window metrics to a remote-write endpoint.

    Args:
        config: the sink's config.
        window: the ``window`` label of every series (``series.window_label``).
        session: an HTTP session (one per writer; connections are reused).
        sleep, clock: injectable for tests.
    """

    def __init__(self, config: PrometheusSink, window: str, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.window = window
        self.session = session or requests.Session()
        self.session.headers.update({
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
            "User-Agent": "ampel-monitor",
        })
        if config.username:
            self.session.auth = (config.username, os.environ.get(config.password_env or "", ""))
        elif config.bearer_token_env:
            self.session.headers["Authorization"] = f"Bearer {os.environ[config.bearer_token_env]}"
        self._sleep, self._clock = sleep, clock

    def write(self, windows: Sequence[Mapping[str, Any]], kind: str = "metrics") -> WriteResult:
        """Delivers the samples of ``windows`` (records of ``kind``: see ``series.window_series``)
        in batches of at most ``batch_size`` series; returns what happened. Never raises for
        server or network trouble."""
        result = WriteResult()
        batch: list[tuple[Mapping[str, Any], list[Sample]]] = []
        size = 0
        for metrics in windows:
            samples = window_series(metrics, self.window, kind)
            if batch and size + len(samples) > self.config.batch_size:
                self._deliver(batch, result)
                batch, size = [], 0
            batch.append((metrics, samples))
            size += len(samples)
        if batch:
            self._deliver(batch, result)
        return result

    def _deliver(self, batch: list[tuple[Mapping[str, Any], list[Sample]]], result: WriteResult) -> None:
        outcome, text = self._send([s for _, samples in batch for s in samples], result)
        if outcome == "ok":
            result.samples += sum(len(samples) for _, samples in batch)
        elif outcome == "permanent" and len(batch) > 1:
            half = len(batch) // 2
            self._deliver(batch[:half], result)
            self._deliver(batch[half:], result)
        else:
            reason = "prometheus_rejected" if outcome == "permanent" else "prometheus_unavailable"
            result.dead_letters.extend(_dead_letter(metrics, reason, text) for metrics, _ in batch)

    def _send(self, samples: list[Sample], result: WriteResult) -> tuple[str, str]:
        """One request, retried while transient; ``(outcome, text)``."""
        body = encode(samples)

        def post() -> tuple[str, str]:
            try:
                response = self.session.post(self.config.url, data=body, timeout=self.config.retry.timeout)
            except requests.RequestException as exc:
                return "transient", f"{type(exc).__name__}: {exc}"[:500]
            return classify(response.status_code, response.text), f"HTTP {response.status_code}: {response.text.strip()[:500]}"

        outcome, text, retries = self.config.retry.retry(post, self._sleep, self._clock)
        result.retries += retries
        return outcome, text


def _dead_letter(metrics: Mapping[str, Any], reason: str, text: str) -> dict[str, str]:
    source = f"prometheus:{metrics['model']}/{metrics.get('version', '*')}@{metrics['window_end']}"
    return {"reason": reason, "detail": text, "source": source,
            "record": json.dumps(metrics, separators=(",", ":"), default=str)}
