"""Jensen-Shannon distance of two binned distributions."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["js_distance"]

_LN2 = math.log(2.0)


def js_distance(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Returns the base-2 Jensen-Shannon distance of two count vectors.

    The counts are normalised to proportions ``p`` and ``q`` without smoothing (the
    divergence is finite for empty bins: ``0 * log 0 = 0``), ``m = (p + q) / 2``, and
    the distance is ``sqrt((KL(p || m) + KL(q || m)) / 2)`` with base-2 logarithms, in
    [0, 1]: 0 for identical proportions, 1 for disjoint supports. It equals
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.

    Args:
        reference_counts: counts (or weights) per bin of the reference.
        current_counts: counts per bin of the current data, same bins.

    Returns:
        The distance, or NaN when either side is empty.

    Examples:
        >>> js_distance(np.array([1, 0]), np.array([0, 1]))
        1.0
        >>> js_distance(np.array([3, 1]), np.array([6, 2]))
        0.0

    References:
        NannyML, the univariate Jensen-Shannon drift method (the same convention).
    """
    reference = np.asarray(reference_counts, dtype=np.float64)
    current = np.asarray(current_counts, dtype=np.float64)
    ref_total, cur_total = reference.sum(), current.sum()
    if ref_total <= 0 or cur_total <= 0:
        return float("nan")
    p, q = reference / ref_total, current / cur_total
    m = (p + q) / 2.0
    divergence = 0.0
    for dist in (p, q):
        present = dist > 0
        divergence += float(np.sum(dist[present] * np.log(dist[present] / m[present])))
    return math.sqrt(min(max(divergence / (2.0 * _LN2), 0.0), 1.0))
