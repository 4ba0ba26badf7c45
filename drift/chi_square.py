"""Chi-square test of homogeneity of two category count vectors."""

from __future__ import annotations

import numpy as np
from scipy.special import chdtrc

__all__ = ["chi_square"]


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float, int]:
    """Returns the chi-square statistic, p-value and degrees of freedom.

    The test of the 2 x k contingency table whose rows are the reference and the
    current counts per category, without Yates' correction. Categories empty on
    both sides carry no information and are dropped first (scipy refuses a table
    with a zero expected frequency). On that table the result equals
    ``scipy.stats.chi2_contingency(table, correction=False)``; with a single
    category left the statistic is 0 and the p-value 1.

    Args:
        reference_counts: counts per category of the reference.
        current_counts: counts per category of the current data, same order.

    Returns:
        ``(statistic, p_value, dof)``; NaN statistic and p-value when either side is
        empty.

    Examples:
        >>> chi_square(np.array([5, 3, 0]), np.array([7, 0, 0]))
        (3.28125, 0.07007553859334138, 1)
    """
    table = np.vstack((reference_counts, current_counts)).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] == 0 or rows.min() <= 0:
        return float("nan"), float("nan"), 0
    dof = table.shape[1] - 1
    if dof == 0:
        return 0.0, 1.0, 0
    expected = np.outer(rows, table.sum(axis=0)) / rows.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(chdtrc(dof, statistic)), dof  # scipy.stats.chi2.sf without its overhead
