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

import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import orjson

from schemas import load_schema

__all__ = ["FORMATS", "TOPIC_SCHEMAS", "WireFormat"]

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
