"""DDSketch: the relative-accuracy guarantee, merging, edge cases."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sketches import DDSketch

QUANTILES = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]
SLACK = 1e-12  # floating-point rounding at bucket boundaries


def assert_within_alpha(sketch: DDSketch, values: np.ndarray, alpha: float) -> None:
    for q in QUANTILES:
        true = np.quantile(values, q, method="lower")
        estimate = sketch.quantile(q)
        assert abs(estimate - true) <= alpha * abs(true) + SLACK * abs(true) + 1e-300, (q, estimate, true)


magnitudes = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
signed = st.one_of(magnitudes, magnitudes.map(lambda v: -v), st.just(0.0))
value_arrays = hnp.arrays(np.float64, st.integers(1, 300), elements=signed)


@settings(deadline=None, max_examples=200)
@given(values=value_arrays, alpha=st.sampled_from([0.001, 0.01, 0.05]))
def test_alpha_bound_holds_for_every_quantile(values, alpha):
    assert_within_alpha(DDSketch(alpha).add_many(values), values, alpha)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.lognormal(3, 1, 200_000),  # latency-like
        lambda rng: rng.pareto(1.5, 200_000) + 1e-3,  # heavy tail
        lambda rng: rng.normal(0, 1, 200_000),  # both signs around zero
        lambda rng: np.round(rng.exponential(5, 200_000)),  # many exact zeros and ties
    ],
)
def test_alpha_bound_on_large_samples(make):
    values = make(np.random.default_rng(11))
    assert_within_alpha(DDSketch(0.01).add_many(values), values, 0.01)


@settings(deadline=None, max_examples=100)
@given(a=value_arrays, b=value_arrays, c=value_arrays)
def test_merge_is_associative_and_commutative(a, b, c):
    def sk(v):
        return DDSketch().add_many(v)

    left = sk(a).merge(sk(b)).merge(sk(c))
    right = sk(a).merge(sk(b).merge(sk(c)))
    swapped = sk(c).merge(sk(a)).merge(sk(b))
    levels = np.linspace(0, 1, 51)
    assert left.quantiles(levels) == right.quantiles(levels) == swapped.quantiles(levels)
    assert left.count == right.count == swapped.count == a.size + b.size + c.size
    assert left.min == right.min == swapped.min
    assert left.max == right.max == swapped.max
    everything = np.concatenate([a, b, c])
    assert left.quantiles(levels) == sk(everything).quantiles(levels)
    assert_within_alpha(left, everything, 0.01)


@settings(deadline=None, max_examples=100)
@given(values=value_arrays)
def test_serialisation_round_trips(values):
    sketch = DDSketch().add_many(values)
    decoded = DDSketch.from_bytes(sketch.to_bytes())
    assert decoded == sketch
    assert decoded.quantiles(QUANTILES) == sketch.quantiles(QUANTILES)
    assert (decoded.count, decoded.sum, decoded.min, decoded.max) == (sketch.count, sketch.sum, sketch.min, sketch.max)


def test_summary_values_are_exact():
    values = np.array([3.0, -1.5, 0.0, 10.0, 2.5])
    sketch = DDSketch().add_many(values)
    assert (sketch.count, sketch.sum, sketch.min, sketch.max) == (5.0, 14.0, -1.5, 10.0)
    assert sketch.mean == pytest.approx(2.8)
    assert sketch.zero_count == 1.0


def test_weights_count_as_repeated_values():
    values = np.array([1.0, 2.0, 50.0])
    weighted = DDSketch().add_many(values, np.array([3.0, 1.0, 2.0]))
    repeated = DDSketch().add_many(np.repeat(values, [3, 1, 2]))
    assert weighted.quantiles(QUANTILES) == repeated.quantiles(QUANTILES)
    assert weighted.count == 6.0 and weighted.sum == repeated.sum


def test_empty_sketch_has_no_quantiles():
    sketch = DDSketch()
    assert sketch.quantile(0.5) is None
    assert sketch.quantiles([0.1, 0.9]) == [None, None]
    assert (sketch.count, sketch.min, sketch.max, sketch.mean) == (0.0, None, None, None)


def test_single_value_is_returned_exactly():
    assert DDSketch().add(123.456).quantiles([0, 0.5, 1]) == [123.456] * 3


def test_merge_refuses_a_different_alpha():
    with pytest.raises(ValueError, match=r"relative accuracy: 0\.01 and 0\.02"):
        DDSketch(0.01).merge(DDSketch(0.02))


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 2.0])
def test_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="relative_accuracy must be in"):
        DDSketch(alpha)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rejects_non_finite_values_without_changing_state(bad):
    sketch = DDSketch().add_many([1.0, 2.0])
    before = sketch.to_bytes()
    with pytest.raises(ValueError, match="finite"):
        sketch.add_many([3.0, bad])
    assert sketch.to_bytes() == before


def test_rejects_bad_weights_and_quantiles():
    with pytest.raises(ValueError, match="weights must be positive"):
        DDSketch().add_many([1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="match values"):
        DDSketch().add_many([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"quantiles must be in \[0, 1\]"):
        DDSketch().add(1.0).quantile(1.5)


def test_collapses_lowest_buckets_beyond_max_bins():
    sketch = DDSketch(0.01, max_bins=700)  # 700 buckets cover gamma**700, about 1.2e6
    values = np.geomspace(1e-3, 1e6, 10_000)
    sketch.add_many(values)
    assert sketch.positive.counts.size == 700
    assert sketch.count == 10_000
    # the upper quantiles (above 1e6 / 1.2e6) keep the guarantee, the lowest are collapsed
    for q in (0.5, 0.9, 0.99, 1.0):
        true = np.quantile(values, q, method="lower")
        assert abs(sketch.quantile(q) - true) <= 0.01 * true * (1 + SLACK)
    assert sketch.quantile(0.0) == 1e-3  # clamped to the exact minimum
    assert sketch.quantile(0.2) > 10 * np.quantile(values, 0.2)  # collapsed upwards


def test_bytes_are_compact():
    values = np.random.default_rng(3).lognormal(3, 1, 1_000_000)
    data = DDSketch().add_many(values).to_bytes()
    # 530 buckets of 4 bytes plus a 70-byte header: not the 8 MB of the values
    assert len(data) == 2 + 52 + 2 * (8 + 17) + 4 * 530
