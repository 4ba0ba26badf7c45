"""The drift bins follow from the KS bins exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from drift import DECILES, ReferenceProfile, coarse_map, decile_edges, ks_edges, sketch_column
from tests.drift.conftest import decile_counts

tied_values = hnp.arrays(
    np.float64, st.integers(1, 400), elements=st.one_of(st.sampled_from([0.0, 1.0, 2.0]), st.floats(-5, 5))
)


def test_decile_edges_are_numpy_linear_quantiles():
    values = np.random.default_rng(0).exponential(size=999)
    assert decile_edges(values).tolist() == np.quantile(values, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]).tolist()
    assert DECILES.tolist() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


@settings(deadline=None, max_examples=200)
@given(reference=tied_values, current=tied_values, resolution=st.sampled_from([1, 7, 100, 1000]))
def test_decile_counts_from_ks_bins_equal_direct_binning(reference, current, resolution):
    profile = ReferenceProfile.build({"x": reference}, resolution=resolution)
    feature = profile.features["x"]
    expected_ref, expected_cur = decile_counts(reference, current)
    assert feature.counts.tolist() == expected_ref.tolist()
    assert feature.coarse(sketch_column(feature, current).counts).tolist() == expected_cur.tolist()


def test_every_decile_edge_is_a_ks_edge():
    values = np.random.default_rng(1).normal(size=12345)
    edges = decile_edges(values)
    fine = ks_edges(values, edges, 333)
    assert np.all(np.isin(edges, fine)) and np.all(np.diff(fine) > 0)
    assert coarse_map(fine, edges).max() == 9


def test_missing_values_are_not_binned():
    with pytest.raises(ValueError, match="no values"):
        decile_edges(np.array([np.nan, np.nan]))
    assert decile_edges(np.array([1.0, np.nan, 3.0])).tolist() == np.quantile([1.0, 3.0], DECILES).tolist()
