"""Population Stability Index of two binned distributions."""

from __future__ import annotations

import numpy as np

__all__ = ["psi"]


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Returns the PSI of two count vectors over the same ``B`` bins.

    ``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)`` with additive smoothing of one count
    per bin, ``p_i = (n_i + 1) / (N + B)`` for the reference and the same for the
    current counts. The smoothing keeps the log ratio finite when a bin is empty on
    one side. Natural logarithm. PSI is 0 for identical proportions and grows
    without bound; above 0.2 is conventionally a significant shift.

    Args:
        reference_counts: counts (or weights) per bin of the reference.
        current_counts: counts per bin of the current data, same bins.

    Returns:
        The PSI, or NaN when either side is empty.

    Examples:
        >>> round(psi(np.array([50, 50]), np.array([90, 10])), 4)
        0.8286
        >>> psi(np.array([5, 5]), np.array([5, 5]))
        0.0

    References:
        Arize Phoenix, ``psi`` in its drift metrics (the same smoothing).
    """
    reference = np.asarray(reference_counts, dtype=np.float64)
    current = np.asarray(current_counts, dtype=np.float64)
    ref_total, cur_total = reference.sum(), current.sum()
    if ref_total <= 0 or cur_total <= 0:
        return float("nan")
    bins = reference.size
    p = (reference + 1.0) / (ref_total + bins)
    q = (current + 1.0) / (cur_total + bins)
    return float(np.sum((q - p) * np.log(q / p)))
