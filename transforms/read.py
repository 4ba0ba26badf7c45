"""Reading prediction events and resource samples from files, as timestamped batches.

Each file (JSON lines or an Avro container file) is read in chunks; each chunk is
decoded and validated in bulk into ``EventBatch``es (``ResourceBatch``es) per model
and slice, emitted keyed by model and timestamped at their slice start. Rejected
records go to the ``dead`` output as ``DeadLetter`` dicts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.transforms.window import TimestampedValue

from ampel_monitor import avro_columns
from ampel_monitor.events import EventBatch, EventDecoder, ModelSchema, decode_event_file, decode_resources, iter_records
from ampel_monitor.labels import decode_labels
from transforms.coders import BatchCoder  # noqa: F401 (registers the coder of batches)
from transforms.counters import count_dead_letter, count_events

__all__ = ["DEAD", "ReadEventFiles", "ReadLabelFiles", "ReadResourceFiles"]

#: The tag of the dead-letter output.
DEAD = "dead"


def _chunks(path: str, size: int) -> Iterator[list[tuple[str, Any, Any]]]:
    records = iter_records(path)
    while chunk := list(itertools.islice(records, size)):
        yield chunk


class _ReadEventsDoFn(beam.DoFn):
    def __init__(self, schemas: Mapping[str, ModelSchema], slide_ms: int, chunk_size: int) -> None:
        self._schemas, self._slide_ms, self._chunk_size = dict(schemas), slide_ms, chunk_size

    def setup(self) -> None:
        self._decoder = EventDecoder(self._schemas, self._slide_ms)
        avro_columns.load_kernels()

    def process(self, path: str) -> Iterator[Any]:
        for batches, dead in decode_event_file(self._decoder, path, self._chunk_size):
            for batch in batches:
                count_events(batch.model, len(batch))
                yield TimestampedValue((batch.model, batch), batch.slice_start_ms / 1000)
            for letter in dead:
                count_dead_letter(letter.reason)
                yield pvalue.TaggedOutput(DEAD, letter.to_dict())


class _ReadResourcesDoFn(beam.DoFn):
    def __init__(self, models: tuple[str, ...], slide_ms: int, chunk_size: int) -> None:
        self._models, self._slide_ms, self._chunk_size = models, slide_ms, chunk_size

    def process(self, path: str) -> Iterator[Any]:
        for chunk in _chunks(path, self._chunk_size):
            batches, dead = decode_resources(chunk, self._models, self._slide_ms)
            for batch in batches:
                yield TimestampedValue((batch.model, batch), batch.slice_start_ms / 1000)
            for letter in dead:
                count_dead_letter(letter.reason)
                yield pvalue.TaggedOutput(DEAD, letter.to_dict())


class _ReadLabelsDoFn(beam.DoFn):
    def __init__(self, models: tuple[str, ...], chunk_size: int) -> None:
        self._models, self._chunk_size = models, chunk_size

    def process(self, path: str) -> Iterator[Any]:
        for chunk in _chunks(path, self._chunk_size):
            batches, dead = decode_labels(chunk, self._models)
            for batch in batches:
                yield TimestampedValue((batch.model, batch), int(batch.timestamps.max()) / 1000)
            for letter in dead:
                count_dead_letter(letter.reason)
                yield pvalue.TaggedOutput(DEAD, letter.to_dict())


class _ReadFiles(beam.PTransform):
    def __init__(self, paths: list[str], dofn: beam.DoFn, what: str, batch_type: Any = Any) -> None:
        super().__init__()
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise ValueError(f"{what} file not found: {missing[0]!r}")
        self._paths, self._dofn, self._batch_type = list(paths), dofn, batch_type

    def expand(self, pbegin: beam.pvalue.PBegin) -> pvalue.DoOutputsTuple:
        decode = beam.ParDo(self._dofn).with_output_types(tuple[str, self._batch_type])
        return pbegin | "Files" >> beam.Create(self._paths) | "Decode" >> decode.with_outputs(DEAD, main="batches")


class ReadEventFiles(_ReadFiles):
    """Reads prediction events from JSON-lines or Avro files into keyed, timestamped batches.

    Args:
        paths: the input files.
        schemas: per model id, the features its events carry.
        slide_ms: the slice length, milliseconds.
        chunk_size: records decoded together.

    Returns (on application):
        A ``DoOutputsTuple`` with the main output of ``(model, EventBatch)`` and the
        ``dead`` output of dead-letter dicts.

    Raises:
        ValueError: if an input file does not exist.
    """

    def __init__(self, paths: list[str], schemas: Mapping[str, ModelSchema], slide_ms: int, chunk_size: int = 20_000):
        super().__init__(paths, _ReadEventsDoFn(schemas, slide_ms, chunk_size), "input", EventBatch)


class ReadResourceFiles(_ReadFiles):
    """Reads resource samples from JSON-lines or Avro files into keyed, timestamped batches."""

    def __init__(self, paths: list[str], models: tuple[str, ...], slide_ms: int, chunk_size: int = 20_000):
        super().__init__(paths, _ReadResourcesDoFn(models, slide_ms, chunk_size), "resource")


class ReadLabelFiles(_ReadFiles):
    """Reads label events from JSON-lines or Avro files into keyed ``(model, LabelBatch)``."""

    def __init__(self, paths: list[str], models: tuple[str, ...], chunk_size: int = 20_000):
        super().__init__(paths, _ReadLabelsDoFn(models, chunk_size), "labels")
