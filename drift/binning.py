"""The bins of numeric features, taken from the reference data.

* Drift bins (PSI, Jensen-Shannon): the 9 reference quantiles at 0.1, ..., 0.9
  (``numpy.quantile``, default linear method) are the edges of 10 bins with open
  outer ends; a value ``v`` falls in bin ``numpy.searchsorted(edges, v, side="right")``.
* KS bins: the distinct reference quantiles at ``k / resolution`` for
  ``k = 0..resolution``, together with the decile edges, as point-and-interval bins
  (``FixedHistogram(..., exact_edges=True)``).

Every decile edge is also a KS edge, so one pass over the values fills the fine KS
histogram and the decile counts follow from it exactly (``coarse_map``): the decile
bins cost nothing extra.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DECILES", "coarse_map", "decile_edges", "ks_edges"]

#: The quantile levels of the drift bin edges.
DECILES = np.arange(1, 10) / 10


def decile_edges(values: np.ndarray) -> np.ndarray:
    """Returns the 9 drift bin edges of non-missing ``values``.

    Raises:
        ValueError: if there is no non-missing value.
    """
    present = values[~np.isnan(values)]
    if present.size == 0:
        raise ValueError("no values to take bin edges from")
    return np.quantile(present, DECILES)


def ks_edges(values: np.ndarray, edges: np.ndarray, resolution: int = 1000) -> np.ndarray:
    """Returns the sorted distinct KS edges: reference quantiles plus the decile ``edges``.

    Raises:
        ValueError: if ``resolution`` < 1 or there is no non-missing value.
    """
    if resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    present = values[~np.isnan(values)]
    if present.size == 0:
        raise ValueError("no values to take bin edges from")
    levels = np.arange(resolution + 1) / resolution
    return np.unique(np.concatenate((np.quantile(present, levels), edges)))


def coarse_map(fine_edges: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Maps each point-and-interval bin of ``fine_edges`` to its drift bin of ``edges``.

    Requires every value of ``edges`` to be one of ``fine_edges``. Bin ``2i + 1`` is
    the point ``fine_edges[i]``; bin ``2i`` is the open interval below it, whose
    values all fall in the drift bin of the edge point below the interval.
    """
    points = np.searchsorted(edges, fine_edges, side="right")
    mapping = np.empty(2 * fine_edges.size + 1, dtype=np.intp)
    mapping[1::2] = points
    mapping[0] = 0
    mapping[2::2] = points
    return mapping
