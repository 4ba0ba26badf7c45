"""Sinks of the pipeline's outputs, each a PTransform over dicts.

``WriteJsonLines`` appends one JSON document per line to a local file: the sink of
the embedded runner. ``WriteToPrometheus``, ``WriteToElasticsearch`` and
``PostToAlertmanager`` buffer a bundle's elements, hand them to their pure clients
(``ampel_monitor.remote_write``, ``.elastic``, ``.alertmanager``: batching, retries,
classification of failures) and return what could not be delivered as dead letters
(in the global window). Delivered records and retries are
counted (``ampel_sink_writes_total``, ``ampel_sink_retries_total``), dead letters by
reason (``ampel_dead_letter_records_total``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from ampel_monitor.alertmanager import AlertPoster
from ampel_monitor.config import AlertmanagerSink, ElasticsearchSink, PrometheusSink
from ampel_monitor.elastic import BulkWriter, sample
from ampel_monitor.events import EventBatch
from ampel_monitor.remote_write import RemoteWriter
from transforms.counters import count_dead_letter, count_sink_retry, count_sink_writes
from transforms.read import DEAD

__all__ = ["PostToAlertmanager", "WriteJsonLines", "WriteToElasticsearch", "WriteToPrometheus"]


class _AppendJsonLinesDoFn(beam.DoFn):
    def __init__(self, path: str) -> None:
        self._path = path
        self._handle: TextIO | None = None

    def setup(self) -> None:
        self._handle = open(self._path, "a", encoding="utf-8")

    def process(self, element: Any) -> None:
        assert self._handle is not None
        self._handle.write(json.dumps(element, separators=(",", ":"), default=str) + "\n")

    def finish_bundle(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def teardown(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class WriteJsonLines(beam.PTransform):
    """Appends each element, as one line of JSON, to a local file (flushed per bundle).

    Args:
        path: the file; the caller truncates it before a run if it wants a fresh one.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | "Append" >> beam.ParDo(_AppendJsonLinesDoFn(self._path))


class _BufferedSinkDoFn(beam.DoFn):
    """Buffers elements (with their timestamp and window) and delivers them when the
    buffer is full and at the end of each bundle; undelivered ones leave as dead letters."""

    SINK = ""

    def __init__(self, max_buffer: int) -> None:
        self._max_buffer = max_buffer
        self._buffer: list[tuple[Any, Any, Any]] = []

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, element: Any, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam) -> Iterator[Any]:
        self._buffer.append((element, timestamp, window))
        if len(self._buffer) >= self._max_buffer:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._flush()

    def _flush(self) -> Iterator[Any]:
        buffer, self._buffer = self._buffer, []
        if not buffer:
            return
        delivered, retries, dead = self._deliver([element for element, _, _ in buffer])
        count_sink_writes(self.SINK, delivered)
        for _ in range(retries):
            count_sink_retry(self.SINK)
        # the letters are not tied to one element: they travel in the first one's window
        _, timestamp, window = buffer[0]
        for letter in dead:
            count_dead_letter(letter["reason"])
            yield pvalue.TaggedOutput(DEAD, WindowedValue(letter, timestamp, (window,)))

    def _deliver(self, elements: list[Any]) -> tuple[int, int, list[dict[str, str]]]:
        """Delivers ``elements``; returns (records delivered, retries, dead letters)."""
        raise NotImplementedError


class _RemoteWriteDoFn(_BufferedSinkDoFn):
    SINK = "prometheus"

    def __init__(self, config: PrometheusSink, window: str) -> None:
        super().__init__(max_buffer=config.batch_size)
        self._config, self._window = config, window

    def setup(self) -> None:
        self._writer = RemoteWriter(self._config, self._window)

    def _deliver(self, elements: list[Any]) -> tuple[int, int, list[dict[str, str]]]:
        samples, retries, dead = 0, 0, []
        for kind in sorted({kind for kind, _ in elements}):
            result = self._writer.write([record for k, record in elements if k == kind], kind)
            samples, retries, dead = samples + result.samples, retries + result.retries, dead + result.dead_letters
        return samples, retries, dead


class WriteToPrometheus(beam.PTransform):
    """Window records to Prometheus by remote write; returns the dead letters of what was
    rejected or could not be delivered before the retry deadline.

    Applied to window metrics, or to a mapping of kind (``metrics``, ``quality``, ``ab``)
    to its PCollection of records (``ampel_monitor.series.window_series``).

    Args:
        config: the sink's config.
        window: the ``window`` label of the series (``ampel_monitor.series.window_label``).
    """

    def __init__(self, config: PrometheusSink, window: str) -> None:
        super().__init__()
        self._config, self._window = config, window

    def expand(self, inputs: beam.PCollection | Mapping[str, beam.PCollection]) -> beam.PCollection:
        if isinstance(inputs, beam.PCollection):
            inputs = {"metrics": inputs}
        tagged = [pcoll
                  | f"Tag{kind.title()}" >> beam.Map(lambda record, kind=kind: (kind, record))
                  | f"Global{kind.title()}" >> beam.WindowInto(GlobalWindows())
                  for kind, pcoll in sorted(inputs.items())]
        written = (tagged | "AllRecords" >> beam.Flatten()
                   | "RemoteWrite" >> beam.ParDo(_RemoteWriteDoFn(self._config, self._window)).with_outputs(DEAD))
        return written[DEAD]


class _PostAlertsDoFn(_BufferedSinkDoFn):
    SINK = "alertmanager"

    def __init__(self, config: AlertmanagerSink) -> None:
        super().__init__(max_buffer=500)
        self._config = config

    def setup(self) -> None:
        self._poster = AlertPoster(self._config)

    def _deliver(self, elements: list[Any]) -> tuple[int, int, list[dict[str, str]]]:
        result = self._poster.post(elements)
        return result.alerts, result.retries, result.dead_letters


class PostToAlertmanager(beam.PTransform):
    """Alerts (firing and resolved) to Alertmanager's v2 API; returns the dead letters."""

    def __init__(self, config: AlertmanagerSink) -> None:
        super().__init__()
        self._config = config

    def expand(self, alerts: beam.PCollection) -> beam.PCollection:
        posted = alerts | "Post" >> beam.ParDo(_PostAlertsDoFn(self._config)).with_outputs(DEAD)
        return posted[DEAD] | "Global" >> beam.WindowInto(GlobalWindows())


class _BulkDoFn(_BufferedSinkDoFn):
    SINK = "elasticsearch"

    def __init__(self, config: ElasticsearchSink) -> None:
        super().__init__(max_buffer=config.batch_size)
        self._config = config

    def setup(self) -> None:
        self._writer = BulkWriter(self._config)
        self._templates = not self._config.install_templates

    def _deliver(self, elements: list[Any]) -> tuple[int, int, list[dict[str, str]]]:
        if not self._templates:
            try:  # before the first document: indices must get their mappings and alias
                self._writer.install_templates()
                self._templates = True
            except Exception as exc:  # the node stayed unreachable for the whole retry deadline
                detail = f"index templates not installed: {type(exc).__name__}: {exc}"[:1000]
                return 0, 0, [{"reason": "elasticsearch_unavailable", "detail": detail, "source": f"elasticsearch:{kind}",
                               "record": json.dumps(record, separators=(",", ":"), default=str)}
                              for kind, record in elements]
        dead = self._writer.write(elements)
        stats = self._writer.stats
        return stats.written + stats.superseded, stats.retries, dead

    def teardown(self) -> None:
        self._writer.close()


class WriteToElasticsearch(beam.PTransform):
    """Documents to Elasticsearch or OpenSearch with ``_bulk``; returns the dead letters.

    Applied to a mapping of kind (``metrics``, ``alerts``, ``decisions``,
    ``dead_letters``) to its PCollection of records; all kinds share the bulk requests.
    """

    def __init__(self, config: ElasticsearchSink) -> None:
        super().__init__()
        self._config = config

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> beam.PCollection:
        tagged = [pcoll
                  | f"Tag{kind.title()}" >> beam.Map(lambda record, kind=kind: (kind, record))
                  | f"Global{kind.title()}" >> beam.WindowInto(GlobalWindows())
                  for kind, pcoll in sorted(inputs.items())]
        return (tagged | "AllDocuments" >> beam.Flatten()
                | "Bulk" >> beam.ParDo(_BulkDoFn(self._config)).with_outputs(DEAD))[DEAD]


def decision_records(element: tuple[str, Any], share: float) -> Iterator[dict[str, Any]]:
    """The decision-log records of a (model, ``EventBatch``): the sampled share of its events
    (chosen by a hash of the event id, so a replay logs the same ones)."""
    _, batch = element
    if isinstance(batch, EventBatch):  # not resource samples
        chosen = [i for i, event_id in enumerate(batch.event_ids) if event_id is not None and sample(event_id, share)]
        for record in batch.records(chosen):
            record["model"], record["version"] = record.pop("model_id"), record.pop("model_version")
            yield record
