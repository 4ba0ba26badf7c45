"""A mergeable relative-error quantile sketch (DDSketch).

Values are counted in logarithmic buckets (``sketches.mapping``): for any quantile
``q`` the sketch returns a value within relative distance ``alpha`` of the lower
empirical quantile ``sorted(x)[floor(q * (n - 1))]``, i.e. ``numpy.quantile(x, q,
method="lower")``. With the default ``alpha = 0.01``, a true p99 of 100 ms is
reported between 99 and 101 ms. The guarantee holds for positive and negative values
alike; magnitudes below ``mapping.min_indexable`` (about 2e-308) count as zero. It
holds while the magnitudes of one sign span at most ``gamma ** max_bins``, 18 orders
of magnitude by default (2073 buckets for ``alpha = 0.01``); beyond that the lowest
magnitudes are collapsed together.

State is O(buckets), never O(values): merging two sketches adds their bucket counts,
so merging is exact, associative and commutative.

References:
    Masson, Rim, Lee. "DDSketch: A fast and fully-mergeable quantile sketch with
    relative-error guarantees." PVLDB 12(12), 2019.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from sketches import serde
from sketches.mapping import LogarithmicMapping
from sketches.store import DenseStore

__all__ = ["DDSketch"]

_TAG = b"D"
_HEADER = "<dIddddd"  # alpha, max_bins, count, sum, min, max, zero count
_DEFAULT_RANGE = math.log(1e18)  # orders of magnitude covered by the default max_bins


class DDSketch:
    """Relative-error quantile sketch over float values.

    Args:
        relative_accuracy: ``alpha``, the guaranteed relative accuracy, in (0, 1).
        max_bins: the most buckets kept per sign; by default enough for a range of
            18 orders of magnitude at this accuracy.

    Raises:
        ValueError: if ``relative_accuracy`` is outside (0, 1) or ``max_bins`` < 1.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(12345)
        >>> latencies = rng.lognormal(mean=3.0, sigma=1.0, size=100_000)
        >>> sketch = DDSketch(0.01).add_many(latencies)
        >>> true_p99 = np.quantile(latencies, 0.99, method="lower")
        >>> bool(abs(sketch.quantile(0.99) - true_p99) <= 0.01 * true_p99)
        True
        >>> sketch.count
        100000.0
        >>> DDSketch().quantile(0.5) is None
        True
    """

    __slots__ = ("mapping", "positive", "negative", "zero_count", "_count", "_sum", "_min", "_max")

    def __init__(self, relative_accuracy: float = 0.01, max_bins: int | None = None) -> None:
        self.mapping = LogarithmicMapping(relative_accuracy)
        if max_bins is None:
            max_bins = math.ceil(_DEFAULT_RANGE * self.mapping.key_per_log)
        self.positive = DenseStore(max_bins)
        self.negative = DenseStore(max_bins)
        self.zero_count = 0.0
        self._count = 0.0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    @property
    def relative_accuracy(self) -> float:
        """The guaranteed relative accuracy ``alpha``."""
        return self.mapping.relative_accuracy

    @property
    def max_bins(self) -> int:
        """The most buckets kept per sign."""
        return self.positive.max_bins

    @property
    def count(self) -> float:
        """The number (total weight) of values added."""
        return self._count

    @property
    def sum(self) -> float:
        """The exact (weighted) sum of the values added."""
        return self._sum

    @property
    def min(self) -> float | None:
        """The exact minimum, or None when empty."""
        return self._min if self._count else None

    @property
    def max(self) -> float | None:
        """The exact maximum, or None when empty."""
        return self._max if self._count else None

    @property
    def mean(self) -> float | None:
        """The exact (weighted) mean, or None when empty."""
        return self._sum / self._count if self._count else None

    def add(self, value: float, weight: float = 1.0) -> DDSketch:
        """Adds one value with a positive weight; returns ``self``."""
        return self.add_many(np.array([value], dtype=np.float64), np.array([weight]))

    def add_many(self, values: np.ndarray | Sequence[float], weights: np.ndarray | None = None) -> DDSketch:
        """Adds an array of values (optionally weighted), vectorised; returns ``self``.

        Raises:
            ValueError: if a value is NaN or infinite, or a weight is not positive,
                or the weights do not match the values in length.
        """
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return self
        lo, hi = float(values.min()), float(values.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("values must be finite numbers")
        if weights is None:
            total, value_sum = float(values.size), float(values.sum())
        else:
            weights = np.asarray(weights, dtype=np.float64).ravel()
            if weights.shape != values.shape:
                raise ValueError(f"weights must match values in length, got {weights.size} and {values.size}")
            if not (weights.min() > 0 and math.isfinite(weights.max())):
                raise ValueError("weights must be positive finite numbers")
            total, value_sum = float(weights.sum()), float(np.dot(values, weights))
        tiny = self.mapping.min_indexable
        if lo > tiny:  # the common case: all positive, no masks
            self.positive.add_keys(self.mapping.keys(values), weights)
        else:
            positive, negative = values > tiny, values < -tiny
            zeros = ~(positive | negative)
            for mask, store, sign in ((positive, self.positive, 1.0), (negative, self.negative, -1.0)):
                if mask.any():
                    store.add_keys(
                        self.mapping.keys(sign * values[mask]),
                        None if weights is None else weights[mask],
                    )
            self.zero_count += float(zeros.sum() if weights is None else weights[zeros].sum())
        self._count += total
        self._sum += value_sum
        self._min = min(self._min, lo)
        self._max = max(self._max, hi)
        return self

    def _check_mergeable(self, other: DDSketch) -> None:
        if self.mapping != other.mapping:
            raise ValueError(
                "cannot merge sketches of different relative accuracy: "
                f"{self.relative_accuracy!r} and {other.relative_accuracy!r}"
            )
        if self.max_bins != other.max_bins:
            raise ValueError(f"cannot merge sketches of different max_bins: {self.max_bins} and {other.max_bins}")

    def merge(self, other: DDSketch) -> DDSketch:
        """Adds ``other`` into this sketch in place (``other`` is unchanged); returns ``self``.

        Raises:
            ValueError: if the sketches differ in relative accuracy or max_bins.
        """
        self._check_mergeable(other)
        if other._count == 0:
            return self
        self.positive.merge(other.positive)
        self.negative.merge(other.negative)
        self.zero_count += other.zero_count
        self._count += other._count
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        return self

    def copy(self) -> DDSketch:
        """Returns an independent copy."""
        clone = DDSketch.__new__(DDSketch)
        clone.mapping = self.mapping
        clone.positive = self.positive.copy()
        clone.negative = self.negative.copy()
        clone.zero_count = self.zero_count
        clone._count, clone._sum, clone._min, clone._max = self._count, self._sum, self._min, self._max
        return clone

    def quantile(self, q: float) -> float | None:
        """Returns the ``q``-quantile within relative accuracy, or None when empty.

        Raises:
            ValueError: if ``q`` is outside [0, 1].
        """
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """Returns several quantiles in one pass over the buckets.

        Raises:
            ValueError: if a ``q`` is outside [0, 1].
        """
        levels = np.asarray(qs, dtype=np.float64)
        if levels.size and not (levels.min() >= 0.0 and levels.max() <= 1.0):
            raise ValueError(f"quantiles must be in [0, 1], got {list(qs)!r}")
        if self._count == 0:
            return [None] * levels.size
        neg, pos = self.negative, self.positive
        neg_keys = neg.offset + np.arange(neg.counts.size - 1, -1, -1)
        pos_keys = pos.offset + np.arange(pos.counts.size)
        values = np.concatenate(
            (-self.mapping.values(neg_keys), [0.0], self.mapping.values(pos_keys))
        )
        cumulative = np.cumsum(np.concatenate((neg.counts[::-1], [self.zero_count], pos.counts)))
        index = np.searchsorted(cumulative, levels * (self._count - 1), side="right")
        np.minimum(index, values.size - 1, out=index)
        result = np.clip(values[index], self._min, self._max)
        result[levels == 0.0] = self._min  # the extremes are known exactly
        result[levels == 1.0] = self._max
        return [float(v) for v in result]

    def to_bytes(self) -> bytes:
        """Encodes the sketch (see ``sketches.serde``)."""
        return b"".join(
            (
                serde.header(_TAG),
                struct.pack(
                    _HEADER,
                    self.relative_accuracy,
                    self.max_bins,
                    self._count,
                    self._sum,
                    self._min,
                    self._max,
                    self.zero_count,
                ),
                _pack_store(self.positive),
                _pack_store(self.negative),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DDSketch:
        """Decodes a sketch written by ``to_bytes``.

        Raises:
            ValueError: if the bytes are not an encoded DDSketch of a known version.
        """
        reader = serde.Reader(data, _TAG)
        alpha, max_bins, count, total, lo, hi, zero_count = reader.unpack(_HEADER)
        sketch = cls(alpha, max_bins)
        for store in (sketch.positive, sketch.negative):
            (store.offset,) = reader.unpack("<q")
            store.counts = reader.counts()
        reader.done()
        sketch._count, sketch._sum, sketch._min, sketch._max = count, total, lo, hi
        sketch.zero_count = zero_count
        return sketch

    def __eq__(self, other: object) -> bool:
        """Sketches are equal when they hold the same buckets and summary values."""
        return isinstance(other, DDSketch) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DDSketch(relative_accuracy={self.relative_accuracy!r}, count={self._count!r})"


def _pack_store(store: DenseStore) -> bytes:
    """Encodes a store canonically: its nonzero key range only."""
    nonzero = np.flatnonzero(store.counts)
    if nonzero.size == 0:
        return struct.pack("<q", 0) + serde.pack_counts(np.zeros(0))
    first, last = int(nonzero[0]), int(nonzero[-1])
    return struct.pack("<q", store.offset + first) + serde.pack_counts(store.counts[first : last + 1])
