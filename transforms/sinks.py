"""Sinks of the pipeline's outputs. Each is a PTransform over dicts; its expand is one line.

``WriteJsonLines`` appends one JSON document per line to a local file: the sink of
the embedded runner. The Prometheus, Elasticsearch and Alertmanager sinks follow the
same shape (a PTransform wrapping a private DoFn that batches per bundle).
"""

from __future__ import annotations

import json
from typing import Any, TextIO

import apache_beam as beam

__all__ = ["WriteJsonLines"]


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
