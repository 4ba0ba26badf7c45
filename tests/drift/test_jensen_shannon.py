"""Jensen-Shannon distance against scipy."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from drift import ReferenceProfile, drift_report, js_distance, sketch_columns
from tests.drift.conftest import decile_counts


@settings(deadline=None, max_examples=300)
@given(data=st.data(), p=st.lists(st.integers(0, 10_000), min_size=1, max_size=20))
def test_equals_scipy_base_2(data, p):
    q = data.draw(st.lists(st.integers(0, 10_000), min_size=len(p), max_size=len(p)))
    ours = js_distance(np.array(p), np.array(q))
    if sum(p) == 0 or sum(q) == 0:
        assert math.isnan(ours)
        return
    assert ours == pytest.approx(jensenshannon(p, q, base=2), abs=1e-7)  # scipy rounds sqrt of ~0
    assert 0.0 <= ours <= 1.0


def test_numeric_feature_js_equals_scipy_on_raw_data():
    rng = np.random.default_rng(3)
    reference, current = rng.gamma(2, 2, 30_000), rng.gamma(2.5, 2, 8_000)
    profile = ReferenceProfile.build({"x": reference})
    ours = drift_report(profile, sketch_columns(profile, {"x": current})).features["x"].js
    assert ours == pytest.approx(jensenshannon(*decile_counts(reference, current), base=2), rel=1e-12)


def test_bounds():
    assert js_distance(np.array([10, 0]), np.array([0, 3])) == 1.0
    assert js_distance(np.array([2, 4, 6]), np.array([1, 2, 3])) == 0.0
