"""PSI: the spec's formula on decile bins, and its edge cases."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drift import ReferenceProfile, drift_report, psi, sketch_columns
from tests.drift.conftest import decile_counts, psi_reference

counts = st.lists(st.integers(0, 1000), min_size=2, max_size=12)


@settings(deadline=None, max_examples=200)
@given(data=st.data(), p=counts)
def test_matches_the_written_out_formula(data, p):
    q = data.draw(st.lists(st.integers(0, 1000), min_size=len(p), max_size=len(p)))
    if sum(p) == 0 or sum(q) == 0:
        assert math.isnan(psi(np.array(p), np.array(q)))
    else:
        assert psi(np.array(p), np.array(q)) == pytest.approx(psi_reference(np.array(p), np.array(q)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.3, 1.0), (1.0, 2.0), (-2.0, 0.5)])
def test_numeric_feature_psi_equals_numpy_on_raw_data(shift, scale):
    rng = np.random.default_rng(42)
    reference, current = rng.normal(0, 1, 20_000), rng.normal(shift, scale, 5_000)
    profile = ReferenceProfile.build({"x": reference})
    report = drift_report(profile, sketch_columns(profile, {"x": current}))
    assert report.features["x"].psi == pytest.approx(psi_reference(*decile_counts(reference, current)), rel=1e-12)


def test_identical_data_gives_zero():
    values = np.random.default_rng(1).normal(size=5000)
    profile = ReferenceProfile.build({"x": values})
    assert drift_report(profile, sketch_columns(profile, {"x": values})).features["x"].psi == pytest.approx(0, abs=1e-15)


def test_disjoint_data_gives_the_smoothed_maximum():
    rng = np.random.default_rng(2)
    reference, current = rng.uniform(0, 1, 1000), rng.uniform(5, 6, 1000)
    profile = ReferenceProfile.build({"x": reference})
    value = drift_report(profile, sketch_columns(profile, {"x": current})).features["x"].psi
    assert value == pytest.approx(psi_reference(*decile_counts(reference, current)), rel=1e-12)
    assert value > 3  # every current value in the top bin
