"""Compact, versioned bytes encoding shared by the sketches.

Every encoded sketch starts with two bytes: a type tag (``b"D"`` quantile sketch,
``b"H"`` fixed histogram, ``b"C"`` category counter) and a format version (1). All
numbers are little-endian. Count arrays are trimmed of leading and trailing zeros and
stored as uint32 when every count is a whole number below 2**32 (the usual case of
unweighted data), as float64 otherwise.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "Reader",
    "header",
    "pack_counts",
    "pack_floats",
    "pack_strings",
]

FORMAT_VERSION = 1

_UINT32, _FLOAT64 = 0, 1
_COUNTS_HEADER = struct.Struct("<qIIB")  # first index, length, trimmed length, dtype


def header(tag: bytes) -> bytes:
    """Returns the two leading bytes of an encoded sketch of type ``tag``."""
    return tag + bytes([FORMAT_VERSION])


def pack_counts(counts: np.ndarray) -> bytes:
    """Encodes a count array, trimming zeros at both ends."""
    nonzero = np.flatnonzero(counts)
    if nonzero.size == 0:
        return _COUNTS_HEADER.pack(0, counts.size, 0, _UINT32)
    first, last = int(nonzero[0]), int(nonzero[-1])
    body = counts[first : last + 1]
    if np.all(body == np.floor(body)) and body.max() < 2**32 and body.min() >= 0:
        return _COUNTS_HEADER.pack(first, counts.size, body.size, _UINT32) + body.astype(
            "<u4"
        ).tobytes()
    return _COUNTS_HEADER.pack(first, counts.size, body.size, _FLOAT64) + body.astype(
        "<f8"
    ).tobytes()


def pack_floats(values: np.ndarray) -> bytes:
    """Encodes a float64 array with its length."""
    return struct.pack("<I", values.size) + values.astype("<f8").tobytes()


def pack_strings(values: Sequence[str]) -> bytes:
    """Encodes a sequence of strings as UTF-8, each with its byte length."""
    parts = [struct.pack("<I", len(values))]
    for value in values:
        encoded = value.encode("utf-8")
        parts.append(struct.pack("<I", len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


class Reader:
    """Reads back what the ``pack_*`` helpers wrote, checking type and version.

    Args:
        data: the encoded bytes.
        tag: the expected type tag.

    Raises:
        ValueError: if the tag or version does not match, or the data is truncated.
    """

    def __init__(self, data: bytes, tag: bytes) -> None:
        if len(data) < 2 or data[:1] != tag:
            raise ValueError(f"expected a sketch of type {tag!r}, got {bytes(data[:1])!r}")
        if data[1] != FORMAT_VERSION:
            raise ValueError(f"unsupported sketch format version {data[1]}")
        self._data = memoryview(data)
        self._pos = 2

    def _take(self, size: int) -> memoryview:
        if self._pos + size > len(self._data):
            raise ValueError("truncated sketch bytes")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def unpack(self, fmt: str) -> tuple:
        """Reads a ``struct`` record."""
        record = struct.Struct(fmt)
        return record.unpack(self._take(record.size))

    def counts(self) -> np.ndarray:
        """Reads a count array written by ``pack_counts``."""
        first, length, trimmed, dtype = self.unpack(_COUNTS_HEADER.format)
        width = 4 if dtype == _UINT32 else 8
        body = np.frombuffer(self._take(trimmed * width), "<u4" if dtype == _UINT32 else "<f8")
        counts = np.zeros(length, dtype=np.float64)
        counts[first : first + trimmed] = body
        return counts

    def floats(self) -> np.ndarray:
        """Reads a float64 array written by ``pack_floats``."""
        (size,) = self.unpack("<I")
        return np.frombuffer(self._take(size * 8), "<f8").astype(np.float64)

    def strings(self) -> tuple[str, ...]:
        """Reads strings written by ``pack_strings``."""
        (size,) = self.unpack("<I")
        out = []
        for _ in range(size):
            (length,) = self.unpack("<I")
            out.append(bytes(self._take(length)).decode("utf-8"))
        return tuple(out)

    def done(self) -> None:
        """Checks that every byte was read."""
        if self._pos != len(self._data):
            raise ValueError(f"{len(self._data) - self._pos} trailing bytes after sketch")
