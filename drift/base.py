"""What every drift test shares: its description and which side of the threshold drifts."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CHI2", "JS", "KS", "PSI", "STAT_TESTS", "StatTest"]


@dataclass(frozen=True)
class StatTest:
    """A drift statistic and its decision rule.

    Scores (PSI, Jensen-Shannon) count as drift strictly above their threshold;
    p-values (Kolmogorov-Smirnov, chi-square) strictly below it. A NaN value (no data)
    is never drift.

    Examples:
        >>> PSI.is_drift(0.2), PSI.is_drift(0.21), KS.is_drift(0.05), KS.is_drift(0.01)
        (False, True, False, True)
    """

    #: Short name, used in config and reports.
    name: str
    #: Human-readable name.
    display_name: str
    #: The threshold used when none is configured.
    default_threshold: float
    #: True for scores (drift above the threshold), False for p-values (below).
    higher_is_drift: bool

    def is_drift(self, value: float, threshold: float | None = None) -> bool:
        """Whether ``value`` is drift under ``threshold`` (default: the test's own)."""
        limit = self.default_threshold if threshold is None else threshold
        if math.isnan(value):
            return False
        return value > limit if self.higher_is_drift else value < limit


PSI = StatTest("psi", "Population Stability Index", 0.2, higher_is_drift=True)
JS = StatTest("js", "Jensen-Shannon distance", 0.1, higher_is_drift=True)
KS = StatTest("ks", "Kolmogorov-Smirnov p-value", 0.05, higher_is_drift=False)
CHI2 = StatTest("chi2", "Chi-square p-value", 0.05, higher_is_drift=False)

#: Every test by name.
STAT_TESTS = {test.name: test for test in (PSI, JS, KS, CHI2)}
