"""Drift statistics against reference profiles: pure numpy and scipy, no Apache Beam import.

Conventions (see ``docs/statistics.md``): numeric drift bins are the reference
deciles; PSI is smoothed by one count per bin and uses the natural log; Jensen-Shannon
is the base-2 distance of unsmoothed proportions; KS is computed from exact
point-and-interval bins on reference quantiles; chi-square is the 2 x k contingency
test without correction.
"""

from drift.base import CHI2, JS, KS, PSI, STAT_TESTS, StatTest
from drift.binning import DECILES, coarse_map, decile_edges, ks_edges
from drift.chi_square import chi_square
from drift.columns import Column, EncodedColumn, is_numeric
from drift.jensen_shannon import js_distance
from drift.ks import ks_from_counts, ks_pvalues, ks_statistic
from drift.profile import CategoricalProfile, FeatureProfile, NumericProfile, ReferenceProfile, build_feature_profile
from drift.psi import psi
from drift.report import (
    DriftPolicy,
    DriftReport,
    FeatureDrift,
    FeatureState,
    drift_report,
    feature_drift,
    features_drift,
    sketch_column,
    sketch_columns,
)

__all__ = [
    "CHI2",
    "DECILES",
    "JS",
    "KS",
    "PSI",
    "STAT_TESTS",
    "CategoricalProfile",
    "Column",
    "DriftPolicy",
    "DriftReport",
    "EncodedColumn",
    "FeatureDrift",
    "FeatureProfile",
    "FeatureState",
    "NumericProfile",
    "ReferenceProfile",
    "StatTest",
    "build_feature_profile",
    "chi_square",
    "coarse_map",
    "decile_edges",
    "drift_report",
    "feature_drift",
    "features_drift",
    "is_numeric",
    "js_distance",
    "ks_edges",
    "ks_from_counts",
    "ks_pvalues",
    "ks_statistic",
    "psi",
    "sketch_column",
    "sketch_columns",
]
