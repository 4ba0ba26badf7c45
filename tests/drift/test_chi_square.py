"""Chi-square against scipy.stats.chi2_contingency(correction=False)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency

from drift import ReferenceProfile, chi_square, drift_report, sketch_columns
from tests.drift.conftest import psi_reference


@settings(deadline=None, max_examples=300)
@given(data=st.data(), ref=st.lists(st.integers(0, 500), min_size=1, max_size=10))
def test_equals_scipy(data, ref):
    cur = data.draw(st.lists(st.integers(0, 500), min_size=len(ref), max_size=len(ref)))
    statistic, pvalue, dof = chi_square(np.array(ref), np.array(cur))
    table = np.array([ref, cur])
    table = table[:, table.sum(axis=0) > 0]
    if sum(ref) == 0 or sum(cur) == 0:
        assert math.isnan(statistic) and math.isnan(pvalue)
        return
    expected = chi2_contingency(table, correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-9, abs=1e-12)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert dof == expected.dof


def test_categorical_feature_against_scipy_on_raw_data():
    rng = np.random.default_rng(5)
    names = np.array(["a", "b", "c", "d", "e"], dtype=object)
    reference = rng.choice(names, 10_000, p=[0.4, 0.3, 0.2, 0.07, 0.03])
    current = rng.choice(np.append(names, "new"), 4_000, p=[0.35, 0.3, 0.2, 0.07, 0.03, 0.05])
    profile = ReferenceProfile.build({"c": reference})
    entry = drift_report(profile, sketch_columns(profile, {"c": current})).features["c"]
    categories = [*names, "new"]  # 'new' is unseen: the overflow bucket
    table = np.array([[np.sum(reference == c) for c in categories], [np.sum(current == c) for c in categories]])
    expected = chi2_contingency(table, correction=False)
    assert entry.chi2_statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert entry.chi2_pvalue == pytest.approx(expected.pvalue, rel=1e-9)


def test_one_category_gives_no_evidence():
    profile = ReferenceProfile.build({"c": np.array(["x"] * 10, dtype=object)})
    entry = drift_report(profile, sketch_columns(profile, {"c": np.array(["x"] * 5, dtype=object)})).features["c"]
    assert (entry.chi2_statistic, entry.chi2_pvalue, entry.js, entry.drifted) == (0.0, 1.0, 0.0, False)
    # the smoothing of PSI (one count per bin: the category and the empty overflow) on small samples
    assert entry.psi == pytest.approx(psi_reference(np.array([10, 0]), np.array([5, 0])), rel=1e-12)
    assert entry.psi == pytest.approx((6 / 7 - 11 / 12) * np.log((6 / 7) / (11 / 12)) + (1 / 7 - 1 / 12) * np.log(12 / 7))
