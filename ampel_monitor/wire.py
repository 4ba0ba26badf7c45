"""Wire formats of records on Kafka: Avro binary, optionally Confluent-framed, and JSON.

* ``avro``: the record's Avro binary encoding (no container, no framing), written with
  the project's schema; read with it, or with the schema it was written with when a
  ``writer_schema`` is given, resolved to the current schema (newer readers read older
  records: new fields take their defaults).
* ``avro`` with ``confluent``: the Confluent framing, a zero magic byte and a 4-byte
  big-endian schema id, then the Avro binary. Ids map to local schema files
  (``schema_ids``), so no schema registry is needed; the id of the current schema is
  ``schema_id``.
* ``json``: one UTF-8 JSON object per message; ``timestamp`` is epoch milliseconds or
  an RFC 3339 string.

Decoding failures raise ``ValueError`` with the reason; callers dead-letter the message.
Pure Python: no Apache Beam import.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import orjson

from ampel_monitor.events import DeadLetter, EventBatch, EventDecoder
from ampel_monitor.labels import LabelBatch, decode_label_avro, decode_labels, take_sources
from schemas import load_schema

__all__ = ["FORMATS", "TOPIC_SCHEMAS", "WireFormat", "decode_label_messages", "decode_predictions"]

#: The wire format names.
FORMATS = ("avro", "json")
#: Per kind of input topic, its record schema and the framing id of the current schema.
TOPIC_SCHEMAS = {"predictions": ("PredictionEvent", 1), "labels": ("LabelEvent", 2), "resources": ("ResourceSample", 3)}
_FRAME = struct.Struct(">bI")


def _load(path: str) -> Any:
    return fastavro.parse_schema(json.loads(Path(path).read_text(encoding="utf-8")), named_schemas={})


@dataclass(frozen=True)
class WireFormat:
    """How one topic's records are encoded.

    Args:
        kind: "avro" or "json".
        schema: the record's schema name, e.g. "PredictionEvent".
        confluent: Avro with the Confluent framing.
        schema_id: the id written in the framing.
        schema_ids: framing id to the path of the writer schema it stands for; the
            current schema is always known as ``schema_id``.
        writer_schema: for unframed Avro, the path of the schema records were written
            with, when it is not the current one.

    Raises:
        ValueError: for an unknown kind or schema.
    """

    kind: str
    schema: str
    confluent: bool = False
    schema_id: int = 1
    schema_ids: Mapping[int, str] = field(default_factory=dict)
    writer_schema: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FORMATS:
            raise ValueError(f"format must be one of {list(FORMATS)}, got {self.kind!r}")
        load_schema(self.schema)

    @property
    def _reader(self) -> Any:
        return load_schema(self.schema)

    def _writer_for(self, schema_id: int) -> Any:
        if schema_id == self.schema_id:
            return self._reader
        path = self.schema_ids.get(schema_id)
        if path is None:
            raise ValueError(f"unknown schema id {schema_id}")
        return _load(path)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encodes one record."""
        return self.encoder()(record)

    def encoder(self) -> Callable[[Mapping[str, Any]], bytes]:
        """A function encoding one record after another (one buffer, reused; not thread-safe)."""
        if self.kind == "json":
            return orjson.dumps
        schema, write, buffer = self._reader, fastavro.schemaless_writer, io.BytesIO()
        frame = _FRAME.pack(0, self.schema_id) if self.confluent else b""

        def encode(record: Mapping[str, Any]) -> bytes:
            buffer.seek(0)
            buffer.truncate()
            buffer.write(frame)
            write(buffer, schema, record)
            return buffer.getvalue()

        return encode

    def show(self, data: bytes | None) -> str:
        """A message as a dead letter shows it: JSON as text, anything else base64."""
        if data is None:
            return ""
        if self.kind == "json":
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return "base64:" + base64.b64encode(data).decode("ascii")

    def record(self, source: str, data: bytes | None) -> tuple[str, Any, str]:
        """``(source, record, original)`` of one message; a message that does not decode has
        a dead letter (``undecodable``) in place of its record."""
        original = self.show(data)
        try:
            return source, self.decode(data), original
        except ValueError as exc:
            return source, DeadLetter("undecodable", str(exc), source, original), original

    @property
    def bulk_prefix(self) -> bytes | None:
        """What precedes the Avro binary of a message written with the current schema (the
        framing, or nothing), when messages can be decoded in bulk; None otherwise."""
        if self.kind != "avro" or self.writer_schema or self.schema not in ("PredictionEvent", "LabelEvent"):
            return None
        return _FRAME.pack(0, self.schema_id) if self.confluent else b""

    def decode(self, data: bytes) -> Any:
        """Decodes one message.

        Raises:
            ValueError: naming why the bytes are not a record of this format.
        """
        if data is None:
            raise ValueError("empty message")
        if self.kind == "json":
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                try:  # NaN and Infinity are not JSON, but common: let validation name them
                    return json.loads(data)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise ValueError(f"invalid JSON: {exc}") from None
        buffer = io.BytesIO(data)
        writer = self._writer_for(self.schema_id) if not self.writer_schema else _load(self.writer_schema)
        if self.confluent:
            if len(data) < _FRAME.size:
                raise ValueError("shorter than the Confluent framing")
            magic, schema_id = _FRAME.unpack(buffer.read(_FRAME.size))
            if magic != 0:
                raise ValueError(f"unknown magic byte {magic}")
            writer = self._writer_for(schema_id)
        try:
            reader = None if writer is self._reader else self._reader
            record = fastavro.schemaless_reader(buffer, writer, reader)
        except Exception as exc:  # fastavro raises many types on garbage: EOFError, UnicodeDecodeError, ...
            raise ValueError(f"undecodable Avro ({type(exc).__name__}: {exc})") from None
        if buffer.tell() != len(data):
            raise ValueError(f"{len(data) - buffer.tell()} bytes left after the Avro record")
        return record


def decode_predictions(wire: WireFormat, decoder: EventDecoder, values: Sequence[bytes | None],
                       source: Callable[[int], str]) -> tuple[list[EventBatch], list[DeadLetter]]:
    """Batches and dead letters of prediction messages; ``source(i)`` names message ``i``
    (asked only for the messages that need it).

    Avro messages of the current schema are decoded in bulk (``EventDecoder.decode_avro``);
    every other message (JSON, another schema id, bytes that do not decode) one by one,
    with the same result as decoding them all one by one.
    """
    return _decode_messages(wire, values, source, lambda data, blocks, record: decoder.decode_avro(
        data, blocks, lambda k, start, end: record(k)), decoder.decode_records)


def decode_label_messages(wire: WireFormat, models: Iterable[str], values: Sequence[bytes | None],
                          sources: Sequence[str]) -> tuple[list[LabelBatch], list[DeadLetter]]:
    """Label batches and dead letters of label messages, as ``decode_predictions``
    (``labels.decode_label_avro`` in bulk); ``sources`` names each message (``Offsets``
    formats a name only where a label needs it)."""
    models = tuple(models)

    def bulk(data: bytes, blocks: np.ndarray, record: Callable[[int], tuple[str, Any, Any]], chosen: list[int]) -> Any:
        return decode_label_avro(data, blocks, models, take_sources(sources, chosen), record)

    return _decode_messages(wire, values, sources.__getitem__, bulk, lambda records: decode_labels(records, models),
                            with_chosen=True)


def _decode_messages(wire: WireFormat, values: Sequence[bytes | None], source: Callable[[int], str],
                     bulk: Callable[..., Any],
                     one_by_one: Callable[[Iterable[tuple[str, Any, Any]]], tuple[list, list[DeadLetter]]],
                     with_chosen: bool = False) -> tuple[list, list[DeadLetter]]:
    prefix = wire.bulk_prefix
    if prefix is None:
        chosen: Sequence[int] | np.ndarray = []
    elif not prefix and None not in values:  # no framing: every message (a test per message costs 0.25 µs)
        chosen = np.arange(len(values))
    else:
        chosen = [i for i, v in enumerate(values) if v is not None and v.startswith(prefix)]
    batches: list = []
    dead: list[DeadLetter] = []
    rest = [] if len(chosen) == len(values) else sorted(set(range(len(values))).difference(chosen))
    if len(chosen):
        picked = values if not rest else [values[i] for i in chosen]
        lengths = np.fromiter(map(len, picked), dtype=np.int64, count=len(picked))
        ends = np.cumsum(lengths)
        blocks = np.stack([ends - lengths + len(prefix), ends, np.ones_like(ends)], axis=1)
        args = (b"".join(picked), blocks, lambda k: wire.record(source(chosen[k]), values[chosen[k]]))
        batches, dead, failed = bulk(*args, chosen) if with_chosen else bulk(*args)
        rest += [chosen[k] for k in failed.tolist()]
    if rest:
        more, rejected = one_by_one(wire.record(source(i), values[i]) for i in rest)
        batches, dead = batches + more, dead + rejected
    return batches, dead
