"""Two-sample Kolmogorov-Smirnov test from mergeable binned counts."""

from __future__ import annotations

import numpy as np
from scipy.stats import kstwo

__all__ = ["ks_from_counts", "ks_pvalues", "ks_statistic"]


def ks_from_counts(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Returns the KS statistic ``D`` and its asymptotic two-sided p-value.

    ``D`` is the largest distance between the two empirical CDFs evaluated at the
    upper end of every bin. With the point-and-interval bins of
    ``FixedHistogram(edges, exact_edges=True)`` on reference quantiles, the CDFs are
    exact at every edge, so the error of ``D`` against ``scipy.stats.ks_2samp`` on
    the raw data is at most the largest reference share of one open interval
    between two edges: about ``1 / resolution`` of the reference profile (0.001 by
    default), never above it in the direction of overstating ``D``.

    The p-value is Smirnov's asymptotic formula as ``ks_2samp(method="asymp")``
    computes it: ``kstwo.sf(D, round(n * m / (n + m)))``.

    Args:
        reference_counts: counts per bin of the reference.
        current_counts: counts per bin of the current data, same bins in order.

    Returns:
        ``(D, p_value)``, both NaN when either side is empty.

    Examples:
        >>> ks_from_counts(np.array([5, 0, 5]), np.array([0, 10, 0]))
        (0.5, 0.112)
    """
    statistic, size = ks_statistic(reference_counts, current_counts)
    return statistic, float(ks_pvalues(np.array([statistic]), np.array([size]))[0])


def ks_statistic(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """``D`` (as ``ks_from_counts``) and the effective sample size ``round(n * m / (n + m))``
    its p-value is taken at; both NaN when either side is empty."""
    reference = np.asarray(reference_counts, dtype=np.float64)
    current = np.asarray(current_counts, dtype=np.float64)
    n, m = reference.sum(), current.sum()
    if n <= 0 or m <= 0:
        return float("nan"), float("nan")
    statistic = float(np.max(np.abs(np.cumsum(reference) / n - np.cumsum(current) / m)))
    big, small = max(n, m), min(n, m)
    return statistic, float(np.round(big * small / (big + small)))


def ks_pvalues(statistics: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The p-values of many ``ks_statistic`` results in one call (``kstwo.sf``, clipped to
    [0, 1]; NaN stays NaN)."""
    statistics, sizes = np.asarray(statistics, dtype=np.float64), np.asarray(sizes, dtype=np.float64)
    out = np.full(statistics.shape, np.nan)
    known = ~(np.isnan(statistics) | np.isnan(sizes))
    if known.any():
        out[known] = np.clip(kstwo.sf(statistics[known], sizes[known]), 0.0, 1.0)
    return out
