"""Drift reports: decisions, thresholds, missing data, the JSON shape."""

import math

import numpy as np
import pytest

from drift import DriftPolicy, ReferenceProfile, drift_report, feature_drift, sketch_columns
from drift.base import CHI2, JS, KS, PSI
from tests.drift.conftest import decile_counts, psi_reference


def seeded(rows, shift, seed):
    rng = np.random.default_rng(seed)
    return {
        "stable": rng.normal(0, 1, rows),
        "shifted": rng.normal(shift, 1, rows),
        "kind": rng.choice(np.array(["a", "b", "c"], dtype=object), rows, p=[0.5, 0.3, 0.2] if not shift else [0.2, 0.3, 0.5]),
    }


def test_flags_exactly_the_shifted_features():
    profile = ReferenceProfile.build(seeded(20_000, 0, 1))
    report = drift_report(profile, sketch_columns(profile, seeded(5_000, 1.0, 2)))
    assert report.drifted_features == ["shifted", "kind"]
    assert report.share_drifted == pytest.approx(2 / 3)
    document = report.to_dict()
    assert set(document) == {"features", "drifted_features", "share_drifted"}
    assert set(document["features"]["stable"]) == {
        "kind", "count", "psi", "js", "ks_statistic", "ks_pvalue", "missing_share", "drifted"}
    assert set(document["features"]["kind"]) == {
        "kind", "count", "psi", "js", "chi2_statistic", "chi2_pvalue", "missing_share", "drifted"}


@pytest.mark.parametrize("test", [PSI, JS])
def test_scores_drift_strictly_above_threshold(test):
    assert not test.is_drift(test.default_threshold)
    assert test.is_drift(math.nextafter(test.default_threshold, 1))


@pytest.mark.parametrize("test", [KS, CHI2])
def test_pvalues_drift_strictly_below_threshold(test):
    assert not test.is_drift(test.default_threshold)
    assert test.is_drift(math.nextafter(test.default_threshold, 0))


def test_threshold_equal_to_the_value_is_not_drift():
    profile = ReferenceProfile.build(seeded(20_000, 0, 1))
    states = sketch_columns(profile, seeded(5_000, 1.0, 2))
    psi_value = feature_drift(profile.features["shifted"], states["shifted"]).psi
    at = DriftPolicy({"psi": psi_value})
    below = DriftPolicy({"psi": math.nextafter(psi_value, 0)})
    assert not feature_drift(profile.features["shifted"], states["shifted"], at).drifted
    assert feature_drift(profile.features["shifted"], states["shifted"], below).drifted


def test_per_feature_thresholds_override_defaults():
    profile = ReferenceProfile.build(seeded(20_000, 0, 1))
    states = sketch_columns(profile, seeded(5_000, 1.0, 2))
    policy = DriftPolicy(per_feature={"shifted": {"psi": 100.0, "js": 100.0}})
    assert drift_report(profile, states, policy).drifted_features == ["kind"]
    pvalues = DriftPolicy({"ks": 0.05, "chi2": 0.05})
    assert drift_report(profile, states, pvalues).drifted_features == ["shifted", "kind"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"thresholds": {"psy": 0.2}}, "thresholds: unknown drift test 'psy'"),
        ({"thresholds": {"psi": float("nan")}}, r"thresholds\.psi: threshold must be a finite number"),
        ({"per_feature": {"age": {"js": "high"}}}, r"per_feature\.age\.js: threshold must be a finite number"),
    ],
)
def test_policy_names_the_bad_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DriftPolicy(**kwargs)


def test_all_missing_current_reports_missing_share_and_no_statistics():
    profile = ReferenceProfile.build(seeded(1000, 0, 1))
    current = {"stable": np.full(10, np.nan), "shifted": np.full(10, np.nan), "kind": np.array([None] * 10, dtype=object)}
    report = drift_report(profile, sketch_columns(profile, current))
    for entry in report.features.values():
        assert entry.missing_share == 1.0
        assert math.isnan(entry.psi) and math.isnan(entry.js)
        assert not entry.drifted
    assert report.to_dict()["features"]["stable"]["psi"] is None


def test_constant_feature():
    profile = ReferenceProfile.build({"c": np.full(1000, 3.0)})
    same = drift_report(profile, sketch_columns(profile, {"c": np.full(400, 3.0)})).features["c"]
    assert (same.js, same.ks_statistic, same.drifted) == (0.0, 0.0, False)
    # all values in the top bin on both sides; smoothing of unequal totals leaves a tiny PSI
    assert same.psi == pytest.approx(psi_reference(*decile_counts(np.full(1000, 3.0), np.full(400, 3.0))), rel=1e-12)
    moved = drift_report(profile, sketch_columns(profile, {"c": np.full(400, 4.0)})).features["c"]
    # 3 and 4 share the top decile bin (v >= 3): only KS sees the move, so only a KS policy flags it
    assert (moved.js, moved.ks_statistic, moved.drifted) == (0.0, 1.0, False)
    assert feature_drift(profile.features["c"], sketch_columns(profile, {"c": np.full(400, 4.0)})["c"],
                         DriftPolicy({"ks": 0.05})).drifted


def test_missing_column_is_named():
    profile = ReferenceProfile.build(seeded(100, 0, 1))
    with pytest.raises(ValueError, match="column 'kind' of the reference profile is not in the current data"):
        sketch_columns(profile, {"stable": np.zeros(3), "shifted": np.zeros(3)})


def test_features_compared_together_equal_each_compared_alone():
    """The numeric features of a report are compared as rows of one matrix; every value
    equals the one-feature functions (and scipy's KS p-value) on the same counts."""
    from scipy.stats import kstwo

    from drift.jensen_shannon import js_distance
    from drift.ks import ks_statistic
    from drift.psi import psi

    rng = np.random.default_rng(7)
    columns = {f"n{i}": rng.normal(i % 3, 1, 3_000).round(1 + i % 3) for i in range(8)}  # ties: KS bins of several shapes
    columns["few"] = rng.integers(0, 4, 3_000).astype(float)
    columns["kind"] = rng.choice(np.array(["a", "b", "c"], dtype=object), 3_000)
    profile = ReferenceProfile.build(columns)
    current = {name: (values + 0.3 * (i % 2) if name != "kind" else values)
               for i, (name, values) in enumerate(columns.items())}
    current["n5"] = np.full(500, np.nan)  # nothing to compare
    states = sketch_columns(profile, {k: v[:2_000] if k != "n5" else v for k, v in current.items()})
    states["n6"].add_many(np.array([0.25, 1.5]), np.array([0.5, 2.25]))  # weights that are not counts
    assert len({p.ks_counts.size for p in profile.features.values() if p.kind == "numeric"}) > 2

    report = drift_report(profile, states)
    for name, drift in report.features.items():
        feature, state = profile.features[name], states[name]
        if feature.kind != "numeric":
            continue
        if name == "n5":
            assert all(math.isnan(v) for v in (drift.psi, drift.js, drift.ks_statistic, drift.ks_pvalue))
            continue
        current_bins = feature.coarse(state.counts)
        assert drift.psi == pytest.approx(psi(feature.counts, current_bins), rel=1e-12)
        assert drift.js == pytest.approx(js_distance(feature.counts, current_bins), rel=1e-12)
        statistic, size = ks_statistic(feature.ks_counts, state.counts)
        assert drift.ks_statistic == statistic
        assert drift.ks_pvalue == pytest.approx(float(np.clip(kstwo.sf(statistic, size), 0, 1)), rel=1e-12, abs=1e-300)
