"""Counts of categorical values over a bounded set of categories.

The categories are fixed at construction (for drift, those of the reference
profile), so state is bounded by their number. Every other value, unseen or in
excess of the bound, is counted in one overflow bucket; missing values (None, NaN)
are counted apart. Merging adds counts and is exact; it requires identical
categories.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from sketches import serde

__all__ = ["CategoryCounter"]

_TAG = b"C"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class CategoryCounter:
    """Mergeable counts per category, plus an overflow bucket and a missing count.

    Args:
        categories: the distinct category names counted on their own.

    Raises:
        ValueError: if the categories repeat.

    Examples:
        >>> counter = CategoryCounter(["red", "green"])
        >>> counter.add_many(["red", "blue", "red", None, "green"]).counts.tolist()
        [2.0, 1.0, 1.0]
        >>> counter.overflow, counter.missing
        (1.0, 1.0)
    """

    __slots__ = ("categories", "counts", "missing", "_index")

    def __init__(self, categories: Sequence[str]) -> None:
        categories = tuple(str(c) for c in categories)
        if len(set(categories)) != len(categories):
            raise ValueError(f"categories must be distinct, got {list(categories)!r}")
        #: The categories counted on their own, in order; the overflow bucket follows.
        self.categories = categories
        #: Count per category, then the overflow count.
        self.counts = np.zeros(len(categories) + 1, dtype=np.float64)
        #: Count of missing values.
        self.missing = 0.0
        self._index = {name: i for i, name in enumerate(categories)}

    def __reduce__(self) -> tuple:  # raw counts pickle fast; the index is rebuilt
        return _restore, (self.categories, self.counts.tobytes(), self.missing)

    @property
    def overflow(self) -> float:
        """The count of values outside the categories."""
        return float(self.counts[-1])

    @property
    def count(self) -> float:
        """The count of non-missing values, overflow included."""
        return float(self.counts.sum())

    def codes(self, values: Sequence[object] | np.ndarray) -> np.ndarray:
        """Returns the bucket of each value: its category, the overflow, or -1 if missing."""
        overflow = len(self.categories)
        codes = np.fromiter(map(self._index.get, values, [overflow] * len(values)), dtype=np.intp, count=len(values))
        for i in np.flatnonzero(codes == overflow):  # rare: missing, or not a string
            value = values[i]
            codes[i] = -1 if _is_missing(value) else self._index.get(str(value), overflow)
        return codes

    def add(self, value: object, weight: float = 1.0) -> CategoryCounter:
        """Adds one value; returns ``self``."""
        return self.add_many([value], np.array([weight]))

    def add_many(self, values: Sequence[object] | np.ndarray, weights: np.ndarray | None = None) -> CategoryCounter:
        """Adds a sequence of values (optionally weighted); returns ``self``."""
        return self._add_codes(self.codes(values), weights)

    def add_encoded(
        self, indices: np.ndarray, dictionary: Sequence[object], weights: np.ndarray | None = None
    ) -> CategoryCounter:
        """Adds dictionary-encoded values, the form columnar readers produce.

        Args:
            indices: an integer index into ``dictionary`` per value; negative means
                missing.
            dictionary: the distinct values.
            weights: an optional weight per value.

        Returns:
            ``self``.
        """
        lookup = np.append(self.codes(list(dictionary)), -1)  # index -1 -> missing
        indices = np.asarray(indices, dtype=np.intp)
        return self._add_codes(lookup[np.where(indices < 0, -1, indices)], weights)

    def _add_codes(self, codes: np.ndarray, weights: np.ndarray | None) -> CategoryCounter:
        if codes.size == 0:
            return self
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64).ravel()
            if weights.shape != codes.shape:
                raise ValueError(f"weights must match values in length, got {weights.size} and {codes.size}")
        counts = np.bincount(codes + 1, weights=weights, minlength=self.counts.size + 1)
        self.missing += float(counts[0])
        self.counts += counts[1:]
        return self

    def empty_like(self) -> CategoryCounter:
        """Returns an empty counter over the same categories."""
        clone = CategoryCounter.__new__(CategoryCounter)
        clone.categories, clone._index = self.categories, self._index
        clone.counts = np.zeros_like(self.counts)
        clone.missing = 0.0
        return clone

    def copy(self) -> CategoryCounter:
        """Returns an independent copy."""
        clone = self.empty_like()
        clone.counts += self.counts
        clone.missing = self.missing
        return clone

    def merge(self, other: CategoryCounter) -> CategoryCounter:
        """Adds ``other`` into this counter in place; returns ``self``.

        Raises:
            ValueError: if the categories differ.
        """
        if other.categories != self.categories:
            raise ValueError(
                "cannot merge counters of different categories: "
                f"{list(self.categories)!r} and {list(other.categories)!r}"
            )
        self.counts += other.counts
        self.missing += other.missing
        return self

    def to_bytes(self) -> bytes:
        """Encodes the counter (see ``sketches.serde``)."""
        return b"".join(
            (
                serde.header(_TAG),
                struct.pack("<d", self.missing),
                serde.pack_strings(self.categories),
                serde.pack_counts(self.counts),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CategoryCounter:
        """Decodes a counter written by ``to_bytes``.

        Raises:
            ValueError: if the bytes are not an encoded counter of a known version.
        """
        reader = serde.Reader(data, _TAG)
        (missing,) = reader.unpack("<d")
        counter = cls(reader.strings())
        counts = reader.counts()
        reader.done()
        if counts.shape != counter.counts.shape:
            raise ValueError("category counts do not match the categories")
        counter.counts, counter.missing = counts, missing
        return counter

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CategoryCounter)
            and self.categories == other.categories
            and np.array_equal(self.counts, other.counts)
            and self.missing == other.missing
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CategoryCounter(categories={len(self.categories)}, count={self.count!r})"


def _restore(categories: tuple[str, ...], counts: bytes, missing: float) -> CategoryCounter:
    counter = CategoryCounter.__new__(CategoryCounter)
    counter.categories, counter.missing = categories, missing
    counter.counts = np.frombuffer(counts, dtype=np.float64).copy()
    counter._index = {name: i for i, name in enumerate(categories)}
    return counter
