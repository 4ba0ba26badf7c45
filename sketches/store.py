"""Dense bucket storage of a relative-error quantile sketch.

Counts live in one contiguous float64 array indexed by ``key - offset``. The store
never holds more than ``max_bins`` buckets: when a new key would widen it further,
the lowest buckets are collapsed into the lowest bucket that is kept.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DenseStore"]

_MAX_BINS_ERR = "max_bins must be a positive integer, got {!r}"


class DenseStore:
    """Counts per integer key in a contiguous array, collapsing the lowest keys.

    Args:
        max_bins: the largest number of buckets held at once.

    Raises:
        ValueError: if ``max_bins`` is not positive.
    """

    __slots__ = ("counts", "offset", "max_bins")

    def __init__(self, max_bins: int = 2048) -> None:
        if int(max_bins) != max_bins or max_bins < 1:
            raise ValueError(_MAX_BINS_ERR.format(max_bins))
        self.max_bins = int(max_bins)
        #: Count of each key from ``offset`` on.
        self.counts = np.zeros(0, dtype=np.float64)
        #: The key of ``counts[0]``.
        self.offset = 0

    def __reduce__(self) -> tuple:  # raw counts pickle about ten times faster than an array
        return _restore, (self.counts.tobytes(), self.offset, self.max_bins)

    @property
    def total(self) -> float:
        """The sum of all counts."""
        return float(self.counts.sum())

    @property
    def is_empty(self) -> bool:
        """Whether no bucket was ever allocated."""
        return self.counts.size == 0

    def _cover(self, lo: int, hi: int) -> None:
        """Grows the array to cover keys ``lo..hi``, collapsing the lowest keys."""
        if self.counts.size:
            lo = min(lo, self.offset)
            hi = max(hi, self.offset + self.counts.size - 1)
        lo = max(lo, hi - self.max_bins + 1)
        if self.counts.size == 0:
            self.counts = np.zeros(hi - lo + 1, dtype=np.float64)
            self.offset = lo
            return
        if lo == self.offset and hi == self.offset + self.counts.size - 1:
            return
        grown = np.zeros(hi - lo + 1, dtype=np.float64)
        start = self.offset - lo
        if start >= 0:
            grown[start : start + self.counts.size] = self.counts
        else:  # the lowest keys are collapsed into key ``lo``
            grown[0] = self.counts[: -start + 1].sum()
            grown[1 : self.counts.size + start] = self.counts[-start + 1 :]
        self.counts = grown
        self.offset = lo

    def add_keys(self, keys: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Adds one count (or one weight) per key, vectorised."""
        if keys.size == 0:
            return
        lo, hi = int(keys.min()), int(keys.max())
        self._cover(lo, hi)
        lo_index = max(lo - self.offset, 0)
        shift = keys - (self.offset + lo_index)
        if lo < self.offset:  # keys below the kept range fall into the lowest bucket
            np.maximum(shift, 0, out=shift)
        binned = np.bincount(shift, weights=weights)
        self.counts[lo_index : lo_index + binned.size] += binned

    def add(self, key: int, weight: float = 1.0) -> None:
        """Adds ``weight`` to one key."""
        self._cover(key, key)
        self.counts[max(key - self.offset, 0)] += weight

    def merge(self, other: DenseStore) -> None:
        """Adds the counts of ``other`` into this store (``other`` is unchanged)."""
        if other.counts.size == 0:
            return
        if self.counts.size == 0 and self.max_bins >= other.counts.size:
            self.counts = other.counts.copy()
            self.offset = other.offset
            return
        other_hi = other.offset + other.counts.size - 1
        self._cover(other.offset, other_hi)
        start = other.offset - self.offset
        if start >= 0:
            self.counts[start : start + other.counts.size] += other.counts
        else:
            self.counts[0] += other.counts[: -start + 1].sum()
            self.counts[1 : other.counts.size + start] += other.counts[-start + 1 :]

    def copy(self) -> DenseStore:
        """Returns an independent copy."""
        clone = DenseStore(self.max_bins)
        clone.counts = self.counts.copy()
        clone.offset = self.offset
        return clone


def _restore(counts: bytes, offset: int, max_bins: int) -> DenseStore:
    store = DenseStore.__new__(DenseStore)
    store.counts, store.offset, store.max_bins = np.frombuffer(counts, dtype=np.float64).copy(), offset, max_bins
    return store
