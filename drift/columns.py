"""The column forms the drift kernels accept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

__all__ = ["Column", "EncodedColumn", "is_numeric"]


@dataclass(frozen=True)
class EncodedColumn:
    """A dictionary-encoded categorical column, as columnar readers produce it."""

    #: Index of each value into ``dictionary``; negative for a missing value.
    indices: np.ndarray
    #: The distinct values.
    dictionary: Sequence[object]

    def __len__(self) -> int:
        return int(self.indices.size)

    def value_counts(self) -> dict[object, int]:
        """Returns the count of each non-missing value."""
        counts = np.bincount(self.indices[self.indices >= 0], minlength=len(self.dictionary))
        return {value: int(n) for value, n in zip(self.dictionary, counts) if n}


#: A numeric column is a float64 array (NaN for missing); a categorical column an
#: object array / sequence (None for missing) or an ``EncodedColumn``.
Column = Union[np.ndarray, EncodedColumn, Sequence[object]]


def is_numeric(column: Column) -> bool:
    """Whether a column holds numbers (a numeric numpy array, booleans excluded)."""
    return (
        isinstance(column, np.ndarray)
        and column.dtype.kind in "iuf"
    )
