"""Logarithmic index mapping of a relative-error quantile sketch.

A positive value ``x`` maps to the integer key ``k = ceil(log_gamma(x))`` with
``gamma = (1 + alpha) / (1 - alpha)``, so that key ``k`` covers the interval
``(gamma**(k-1), gamma**k]``. Every value of that interval lies within a relative
distance ``alpha`` of the key's representative value ``2 * gamma**k / (gamma + 1)``:
with ``alpha = 0.01`` a true value of 100 is reported between 99 and 101.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LogarithmicMapping"]

_ALPHA_ERR = "relative_accuracy must be in (0, 1), got {!r}"


class LogarithmicMapping:
    """Maps positive values to integer keys of relative width ``alpha``.

    Args:
        relative_accuracy: the guaranteed relative accuracy ``alpha``, in (0, 1).

    Raises:
        ValueError: if ``relative_accuracy`` is outside (0, 1).

    Examples:
        >>> mapping = LogarithmicMapping(0.01)
        >>> value = mapping.value(mapping.key(100.0))
        >>> 99.0 <= value <= 101.0
        True
    """

    __slots__ = ("relative_accuracy", "gamma", "key_per_log", "min_indexable")

    def __init__(self, relative_accuracy: float = 0.01) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(_ALPHA_ERR.format(relative_accuracy))
        self.relative_accuracy = float(relative_accuracy)
        self.gamma = (1.0 + self.relative_accuracy) / (1.0 - self.relative_accuracy)
        #: Keys per unit of natural logarithm, ``1 / ln(gamma)``.
        self.key_per_log = 1.0 / math.log(self.gamma)
        #: Smallest magnitude that gets its own key; smaller ones count as zero.
        self.min_indexable = float(np.finfo(np.float64).tiny) * self.gamma

    def key(self, value: float) -> int:
        """Returns the key of one positive value."""
        return int(math.ceil(math.log(value) * self.key_per_log))

    def keys(self, values: np.ndarray) -> np.ndarray:
        """Returns the int64 keys of an array of positive values (vectorised)."""
        logs = np.log(values)
        logs *= self.key_per_log
        np.ceil(logs, out=logs)
        return logs.astype(np.int64)

    def value(self, key: int) -> float:
        """Returns the representative value of a key."""
        return 2.0 * self.gamma**key / (self.gamma + 1.0)

    def values(self, keys: np.ndarray) -> np.ndarray:
        """Returns the representative values of an array of keys."""
        return 2.0 * np.power(self.gamma, keys.astype(np.float64)) / (self.gamma + 1.0)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LogarithmicMapping)
            and self.relative_accuracy == other.relative_accuracy
        )

    def __hash__(self) -> int:
        return hash(self.relative_accuracy)

    def __repr__(self) -> str:
        return f"LogarithmicMapping({self.relative_accuracy!r})"
