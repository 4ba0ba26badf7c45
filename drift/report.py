"""Drift of current data against a reference profile, per feature and overall.

Per numeric feature: PSI and Jensen-Shannon on the 10 decile bins, KS on the fine KS
bins (``drift.binning``). Per categorical feature: PSI and Jensen-Shannon over the
reference categories plus the overflow bucket, and the chi-square test. Missing
values are not binned; their share of the current rows is reported. A feature has
drifted when any configured test says so (by default PSI > 0.2 or JS > 0.1: effect
sizes, not p-values, which flag negligible shifts on large windows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from drift.base import JS, PSI, STAT_TESTS
from drift.chi_square import chi_square
from drift.columns import Column, EncodedColumn, is_numeric
from drift.jensen_shannon import js_distance
from drift.ks import ks_pvalues
from drift.profile import FeatureProfile, NumericProfile, ReferenceProfile
from drift.psi import psi
from sketches.categorical import CategoryCounter
from sketches.fixed_histogram import FixedHistogram

__all__ = [
    "DriftPolicy",
    "DriftReport",
    "FeatureDrift",
    "FeatureState",
    "drift_report",
    "feature_drift",
    "features_drift",
    "sketch_column",
    "sketch_columns",
]

#: The current-data state of one feature: a histogram on the profile's KS bins, or a
#: counter over its categories.
FeatureState = Union[FixedHistogram, CategoryCounter]


def _default_thresholds() -> dict[str, float]:
    return {PSI.name: PSI.default_threshold, JS.name: JS.default_threshold}


@dataclass(frozen=True)
class DriftPolicy:
    """Which tests decide drift, with their thresholds, and per-feature overrides.

    Args:
        thresholds: test name ("psi", "js", "ks", "chi2") to threshold; only the
            tests named here decide. Default: PSI 0.2 and JS 0.1.
        per_feature: feature name to thresholds that replace the defaults of the
            tests they name for that feature.
        min_count: fewer current values than this never count as drift (the
            statistics are still reported). Sampling noise alone gives a PSI of about
            ``(B - 1) / n`` and a JS distance of about ``sqrt((B - 1) / (8 ln 2 n))`` on
            ``B`` bins: with 10 bins, JS reaches 0.1 by chance at n of about 160.

    Raises:
        ValueError: naming the field, if a test name is unknown or a threshold not finite.
    """

    thresholds: Mapping[str, float] = field(default_factory=_default_thresholds)
    per_feature: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    min_count: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int) or self.min_count < 0:
            raise ValueError(f"min_count: must be a non-negative integer, got {self.min_count!r}")
        for where, tests in (("thresholds", self.thresholds), *(
            (f"per_feature.{name}", t) for name, t in self.per_feature.items()
        )):
            for test, value in tests.items():
                if test not in STAT_TESTS:
                    raise ValueError(f"{where}: unknown drift test {test!r}, expected one of {sorted(STAT_TESTS)}")
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{where}.{test}: threshold must be a finite number, got {value!r}")

    def thresholds_for(self, feature: str) -> dict[str, float]:
        """The thresholds that apply to one feature."""
        return {**self.thresholds, **self.per_feature.get(feature, {})}

    def is_drift(self, feature: str, values: Mapping[str, float], count: float = math.inf) -> bool:
        """Whether any applicable test flags the feature's statistic ``values`` over ``count`` values."""
        return count >= self.min_count and any(
            STAT_TESTS[test].is_drift(values[test], limit)
            for test, limit in self.thresholds_for(feature).items()
            if test in values
        )


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one feature in one window or data set."""

    #: Feature name.
    name: str
    #: "numeric" or "categorical".
    kind: str
    #: Current count of non-missing values.
    count: float
    #: Share of missing values among the current rows (NaN with no rows).
    missing_share: float
    #: Population Stability Index on the drift bins.
    psi: float
    #: Base-2 Jensen-Shannon distance on the drift bins.
    js: float
    #: Whether a configured test flags drift.
    drifted: bool
    #: Two-sample KS statistic (numeric features).
    ks_statistic: float = math.nan
    #: Asymptotic KS p-value (numeric features).
    ks_pvalue: float = math.nan
    #: Chi-square statistic (categorical features).
    chi2_statistic: float = math.nan
    #: Chi-square p-value (categorical features).
    chi2_pvalue: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """The report entry; NaN becomes None (JSON null)."""
        tests = ("ks_statistic", "ks_pvalue") if self.kind == "numeric" else ("chi2_statistic", "chi2_pvalue")
        out: dict[str, Any] = {"kind": self.kind, "count": self.count}
        for key in ("psi", "js", *tests, "missing_share"):
            value = getattr(self, key)
            out[key] = None if math.isnan(value) else value
        out["drifted"] = self.drifted
        return out


@dataclass(frozen=True)
class DriftReport:
    """Drift of every profiled feature."""

    #: Per feature, its drift.
    features: Mapping[str, FeatureDrift]

    @property
    def drifted_features(self) -> list[str]:
        """The names of the drifted features, in profile order."""
        return [name for name, f in self.features.items() if f.drifted]

    @property
    def share_drifted(self) -> float:
        """The share of features that drifted (0 with no features)."""
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "drifted_features": self.drifted_features,
            "share_drifted": self.share_drifted,
        }


def sketch_column(profile: FeatureProfile, column: Column) -> FeatureState:
    """Counts one current column on the bins of its reference profile.

    Raises:
        ValueError: if a numeric feature's column is not numeric.
    """
    state = profile.new_state()
    if isinstance(profile, NumericProfile):
        if not is_numeric(column):
            raise ValueError(f"feature {profile.name!r} is numeric in the reference but not in the current data")
        state.add_many(np.asarray(column, dtype=np.float64))
    elif isinstance(column, EncodedColumn):
        state.add_encoded(column.indices, column.dictionary)  # type: ignore[union-attr]
    else:
        state.add_many(column)
    return state


def sketch_columns(profile: ReferenceProfile, columns: Mapping[str, Column]) -> dict[str, FeatureState]:
    """Counts every profiled feature of the current columns.

    Raises:
        ValueError: naming the column, if a profiled feature is absent or of the wrong kind.
    """
    missing = [name for name in profile.features if name not in columns]
    if missing:
        raise ValueError(f"column {missing[0]!r} of the reference profile is not in the current data")
    return {name: sketch_column(f, columns[name]) for name, f in profile.features.items()}


def feature_drift(profile: FeatureProfile, state: FeatureState, policy: DriftPolicy | None = None) -> FeatureDrift:
    """Compares one feature's current state with its reference profile."""
    return features_drift([profile], [state], policy)[0]


def features_drift(profiles: Sequence[FeatureProfile], states: Sequence[FeatureState],
                   policy: DriftPolicy | None = None) -> list[FeatureDrift]:
    """``feature_drift`` of each profile and its state.

    Numeric features with bins of the same shapes are compared together, as rows of
    one matrix; the KS p-values of all of them in one vectorized call.
    """
    policy = policy or DriftPolicy()
    numeric: dict[tuple[int, int], list[int]] = {}
    for i, profile in enumerate(profiles):
        if isinstance(profile, NumericProfile):
            numeric.setdefault((profile.ks_counts.size, profile.edges.size), []).append(i)
    stats: dict[int, tuple[float, float, float, float]] = {}
    for rows in numeric.values():
        group = _numeric_drift([profiles[i] for i in rows], [states[i] for i in rows])  # type: ignore[misc]
        stats.update(zip(rows, zip(*group)))
    if stats:
        order = list(stats)
        pvalues = ks_pvalues(np.array([stats[i][2] for i in order]), np.array([stats[i][3] for i in order]))
        for i, pvalue in zip(order, pvalues.tolist()):
            stats[i] = (*stats[i][:3], pvalue)
    out = []
    for i, (profile, state) in enumerate(zip(profiles, states)):
        rows = state.count + state.missing
        missing_share = state.missing / rows if rows else math.nan
        if i in stats:
            psi_value, js_value, ks_stat, ks_pvalue = stats[i]
            values = {"psi": psi_value, "js": js_value, "ks": ks_pvalue}
            extra = {"ks_statistic": ks_stat, "ks_pvalue": ks_pvalue}
        else:
            chi2_statistic, chi2_pvalue, _ = chi_square(profile.counts, state.counts)
            values = {
                "psi": psi(profile.counts, state.counts),
                "js": js_distance(profile.counts, state.counts),
                "chi2": chi2_pvalue,
            }
            extra = {"chi2_statistic": chi2_statistic, "chi2_pvalue": chi2_pvalue}
        out.append(FeatureDrift(
            name=profile.name,
            kind=profile.kind,
            count=state.count,
            missing_share=missing_share,
            psi=values["psi"],
            js=values["js"],
            drifted=policy.is_drift(profile.name, values, state.count),
            **extra,
        ))
    return out


def _numeric_drift(profiles: Sequence[NumericProfile], states: Sequence[FixedHistogram]) -> tuple[list[float], ...]:
    """PSI, JS, the KS statistic and its effective size of numeric features whose KS and
    drift bins have the same shapes, as rows of one matrix: the formulas of ``psi``,
    ``js_distance`` and ``ks_statistic``, NaN where either side is empty."""
    reference = np.stack([p.ks_counts for p in profiles])
    current = np.stack([s.counts for s in states])
    n, m = reference.sum(axis=1), current.sum(axis=1)
    empty = (n <= 0) | (m <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = np.max(np.abs(np.cumsum(reference, axis=1) / n[:, None] - np.cumsum(current, axis=1) / m[:, None]),
                           axis=1)
        big, small = np.maximum(n, m), np.minimum(n, m)
        size = np.round(big * small / (big + small))
        # the drift bins: each row's KS bins summed by its own map, in one bincount
        bins = profiles[0].edges.size + 1
        index = np.stack([p.coarse_index for p in profiles]) + bins * np.arange(len(profiles))[:, None]
        coarse = np.bincount(index.ravel(), weights=current.ravel(), minlength=bins * len(profiles)).reshape(-1, bins)
        expected = np.stack([p.counts for p in profiles])
        p = (expected + 1.0) / (n[:, None] + bins)
        q = (coarse + 1.0) / (m[:, None] + bins)
        psi_values = np.sum((q - p) * np.log(q / p), axis=1)
        p, q = expected / n[:, None], coarse / m[:, None]
        mid = (p + q) / 2.0
        divergence = (np.where(p > 0, p * np.log(p / mid), 0.0).sum(axis=1)
                      + np.where(q > 0, q * np.log(q / mid), 0.0).sum(axis=1))
        js_values = np.sqrt(np.clip(divergence / (2.0 * math.log(2.0)), 0.0, 1.0))
    nan = np.where(empty, np.nan, 0.0)
    return ((psi_values + nan).tolist(), (js_values + nan).tolist(), (statistic + nan).tolist(), (size + nan).tolist())


def drift_report(
    profile: ReferenceProfile, states: Mapping[str, FeatureState], policy: DriftPolicy | None = None
) -> DriftReport:
    """Compares the current state of every profiled feature with the profile."""
    names = list(profile.features)
    drifts = features_drift([profile.features[n] for n in names], [states[n] for n in names], policy)
    return DriftReport(dict(zip(names, drifts)))
