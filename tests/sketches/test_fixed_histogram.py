"""FixedHistogram: binning against numpy, missing values, exact merges."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sketches import FixedHistogram

values_with_gaps = hnp.arrays(
    np.float64,
    st.integers(0, 200),
    elements=st.one_of(st.sampled_from([0.0, 1.0, 2.5, np.nan, np.nextafter(1.0, 2.0), np.nextafter(1.0, 0.0)]),
                       st.floats(-10, 10, allow_nan=False)),
)
EDGES = np.array([-1.0, 0.0, 1.0, 1.0, 2.5])  # a repeated edge, as quantiles of ties give


@settings(deadline=None, max_examples=200)
@given(values=values_with_gaps)
def test_interval_bins_match_numpy_searchsorted(values):
    hist = FixedHistogram(EDGES).add_many(values)
    present = values[~np.isnan(values)]
    expected = np.bincount(np.searchsorted(EDGES, present, side="right"), minlength=EDGES.size + 1)
    assert hist.counts.tolist() == expected.tolist()
    assert hist.missing == np.isnan(values).sum()
    weighted = FixedHistogram(EDGES).add_many(values, np.full(values.size, 2.0))
    assert weighted.counts.tolist() == (2 * expected).tolist()


@settings(deadline=None, max_examples=200)
@given(values=values_with_gaps)
def test_point_and_interval_bins(values):
    edges = np.unique(EDGES)
    hist = FixedHistogram(edges, exact_edges=True).add_many(values)
    present = values[~np.isnan(values)]
    expected = []
    lower = -np.inf
    for edge in edges:
        expected += [np.sum((present > lower) & (present < edge)), np.sum(present == edge)]
        lower = edge
    expected.append(np.sum(present > lower))
    assert hist.counts.tolist() == expected
    assert np.bincount(hist.bin_indices(present), minlength=hist.num_bins).tolist() == expected
    weighted = FixedHistogram(edges, exact_edges=True).add_many(values, np.ones(values.size))
    assert weighted.counts.tolist() == expected
    assert weighted.missing == hist.missing == np.isnan(values).sum()


@settings(deadline=None, max_examples=100)
@given(a=values_with_gaps, b=values_with_gaps, c=values_with_gaps)
def test_merge_is_exact_associative_and_commutative(a, b, c):
    def h(v):
        return FixedHistogram(EDGES).add_many(v)

    left = h(a).merge(h(b)).merge(h(c))
    right = h(a).merge(h(b).merge(h(c)))
    swapped = h(c).merge(h(b)).merge(h(a))
    whole = h(np.concatenate([a, b, c]))
    assert left == right == swapped == whole


def test_merge_refuses_other_edges():
    with pytest.raises(ValueError, match=r"different bins: edges \[0\.0, 1\.0\].*\[0\.0, 2\.0\]"):
        FixedHistogram([0.0, 1.0]).merge(FixedHistogram([0.0, 2.0]))
    with pytest.raises(ValueError, match="exact_edges=True"):
        FixedHistogram([0.0, 1.0]).merge(FixedHistogram([0.0, 1.0], exact_edges=True))


@pytest.mark.parametrize(
    "edges, exact, message",
    [([1.0, 0.0], False, "sorted"), ([0.0, 0.0], True, "strictly increasing"), ([0.0, np.inf], False, "finite")],
)
def test_rejects_bad_edges(edges, exact, message):
    with pytest.raises(ValueError, match=message):
        FixedHistogram(edges, exact_edges=exact)


def test_infinite_values_fall_in_the_outer_bins():
    hist = FixedHistogram([0.0, 1.0], exact_edges=True).add_many([-np.inf, np.inf, 0.5])
    assert hist.counts.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
