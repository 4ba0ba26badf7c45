"""Shared helpers of the drift tests: independent numpy/scipy computations on raw data."""

import numpy as np


def decile_counts(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts on the 10 decile bins of the spec, computed straight from the raw data."""
    edges = np.quantile(reference[~np.isnan(reference)], np.arange(1, 10) / 10)

    def count(values):
        present = values[~np.isnan(values)]
        return np.bincount(np.searchsorted(edges, present, side="right"), minlength=10)

    return count(reference), count(current)


def psi_reference(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """The spec's PSI written out plainly: additive smoothing of 1 per bin, natural log."""
    bins = len(p_counts)
    p = (p_counts + 1) / (p_counts.sum() + bins)
    q = (q_counts + 1) / (q_counts.sum() + bins)
    return float(sum((qi - pi) * np.log(qi / pi) for pi, qi in zip(p, q)))
