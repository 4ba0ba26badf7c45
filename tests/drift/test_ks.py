"""KS from mergeable bins against scipy.stats.ks_2samp on the raw data."""

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp, kstwo

from drift import ReferenceProfile, drift_report, ks_from_counts, ks_pvalues, sketch_columns
from sketches import FixedHistogram

CASES = {
    "no shift": (lambda r: r.normal(0, 1, 20_000), lambda r: r.normal(0, 1, 10_000)),
    "small shift": (lambda r: r.normal(0, 1, 20_000), lambda r: r.normal(0.05, 1, 10_000)),
    "scale": (lambda r: r.normal(0, 1, 20_000), lambda r: r.normal(0, 1.3, 10_000)),
    "heavy tail": (lambda r: r.pareto(1.2, 20_000), lambda r: r.pareto(1.0, 10_000)),
    "ties": (lambda r: r.poisson(3, 20_000).astype(float), lambda r: r.poisson(3.3, 10_000).astype(float)),
    "disjoint": (lambda r: r.uniform(0, 1, 5_000), lambda r: r.uniform(2, 3, 5_000)),
    "current constant": (lambda r: r.normal(0, 1, 5_000), lambda r: np.full(1000, 0.25)),
    "reference constant": (lambda r: np.full(5_000, 7.0), lambda r: r.choice([6.0, 7.0, 8.0], 1000)),
    "unequal sizes": (lambda r: r.exponential(1, 50_000), lambda r: r.exponential(1.1, 300)),
}


def ks_of(reference, current, resolution=1000):
    profile = ReferenceProfile.build({"x": reference}, resolution=resolution)
    entry = drift_report(profile, sketch_columns(profile, {"x": current})).features["x"]
    return entry.ks_statistic, entry.ks_pvalue


@pytest.mark.parametrize("case", CASES)
def test_statistic_within_001_of_scipy(case):
    rng = np.random.default_rng(sorted(CASES).index(case))
    reference, current = CASES[case][0](rng), CASES[case][1](rng)
    statistic, pvalue = ks_of(reference, current)
    expected = ks_2samp(reference, current, method="asymp")
    assert abs(statistic - expected.statistic) <= 0.01
    # the documented one-sided bound: never above, at most 1/resolution below
    assert expected.statistic - 1 / 1000 - 1e-12 <= statistic <= expected.statistic + 1e-12
    n, m = sorted([reference.size, current.size], reverse=True)
    assert pvalue == pytest.approx(float(kstwo.sf(statistic, round(n * m / (n + m)))), rel=1e-12)


@pytest.mark.parametrize("case", ["ties", "disjoint", "current constant", "reference constant"])
def test_statistic_and_pvalue_exact_when_every_value_is_an_edge(case):
    rng = np.random.default_rng(7)
    reference, current = CASES[case][0](rng), CASES[case][1](rng)
    statistic, pvalue = ks_of(reference, current)
    expected = ks_2samp(reference, current, method="asymp")
    if case == "current constant":  # 0.25 is no reference quantile: D is within the bound only
        assert abs(statistic - expected.statistic) <= 1e-3
        return
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_coarser_resolution_keeps_its_bound():
    rng = np.random.default_rng(9)
    reference, current = rng.normal(0, 1, 20_000), rng.normal(0.1, 1, 20_000)
    statistic, _ = ks_of(reference, current, resolution=50)
    assert 0 <= ks_2samp(reference, current).statistic - statistic <= 1 / 50 + 1e-12


def test_merged_windows_equal_one_pass():
    rng = np.random.default_rng(10)
    edges = np.unique(np.quantile(rng.normal(size=1000), np.linspace(0, 1, 101)))
    reference = FixedHistogram(edges, exact_edges=True).add_many(rng.normal(size=1000))
    parts = [rng.normal(0.2, 1, 400) for _ in range(5)]
    merged = FixedHistogram(edges, exact_edges=True)
    for part in parts:
        merged.merge(FixedHistogram(edges, exact_edges=True).add_many(part))
    whole = FixedHistogram(edges, exact_edges=True).add_many(np.concatenate(parts))
    assert ks_from_counts(reference.counts, merged.counts) == ks_from_counts(reference.counts, whole.counts)


def test_empty_side_gives_nan():
    statistic, pvalue = ks_from_counts(np.array([1.0, 2.0]), np.zeros(2))
    assert math.isnan(statistic) and math.isnan(pvalue)


def test_a_report_takes_every_p_value_in_one_call_with_the_same_values():
    rng = np.random.default_rng(11)
    names = [f"x{i}" for i in range(6)]
    profile = ReferenceProfile.build({n: rng.normal(size=5000) for n in names}, resolution=100)
    current = {n: rng.normal(0.02 * i, 1, 2000 + 500 * i) for i, n in enumerate(names)}
    current["x5"] = np.full(10, np.nan)  # nothing counted: NaN, among numbers
    states = sketch_columns(profile, current)
    report = drift_report(profile, states)
    for name in names[:5]:
        entry, state = report.features[name], states[name]
        assert (entry.ks_statistic, entry.ks_pvalue) == ks_from_counts(profile.features[name].ks_counts, state.counts)
        n, m = profile.features[name].ks_counts.sum(), state.counts.sum()
        assert entry.ks_pvalue == pytest.approx(kstwo.sf(entry.ks_statistic, round(n * m / (n + m))), rel=1e-12)
    assert math.isnan(report.features["x5"].ks_pvalue)


def test_p_values_equal_scipy_on_every_route_of_kstwo():
    """Sizes from 2 to 20,000 and D over (0, 1] cover scipy's exact formulas, the Durbin
    matrix, Pelz-Good, Miller's 2 * smirnov and the vanishing tail; sizes up to 5M with
    n * D**2 below 2.2 take Pelz-Good beyond the Durbin matrix's limit of 100,000."""
    rng = np.random.default_rng(11)
    sizes = np.round(np.exp(rng.uniform(np.log(2), np.log(2e4), 2_000)))
    statistics = rng.uniform(0, 1, 2_000) ** 3
    big = np.round(np.exp(rng.uniform(np.log(1e5), np.log(5e6), 200)))
    sizes, statistics = np.concatenate([sizes, big]), np.concatenate([statistics, np.sqrt(rng.uniform(0, 2.2, 200) / big)])
    statistics[:4] = (0.0, 1.0, 0.5, 1e-7)
    sizes[4:6] = np.nan
    expected = np.clip(kstwo.sf(statistics, sizes), 0.0, 1.0)
    got = ks_pvalues(statistics, sizes)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    nx2 = sizes * statistics**2
    large = sizes > 140
    miller = large & (nx2 >= 2.2) & (nx2 < 370) & (statistics < 0.5)
    np.testing.assert_allclose(got[~miller], expected[~miller], rtol=1e-12, atol=1e-300)
    # smirnov's sum in log space against scipy's term-by-term sum (both are far below
    # 1e-280 where scipy's underflows to 0)
    np.testing.assert_allclose(got[miller], expected[miller], rtol=1e-11, atol=1e-280)
    assert (large & (nx2 < 2.2)).sum() > 300 and (large & (nx2 >= 2.2) & (nx2 < 370)).sum() > 300
    assert (large & (nx2 >= 370)).sum() > 100


@pytest.mark.parametrize("chunk", [1 << 20, 1 << 12])
def test_smirnov_sum_equals_scipy_in_one_chunk_or_many(chunk):
    from scipy.special import smirnov

    from drift.ks import _smirnov

    sizes = np.array([141.0, 999.0, 20_000.0, 300_000.0, 300_000.0])
    statistics = np.sqrt(np.array([2.2, 17.0, 60.0, 3.0, 300.0]) / sizes)
    expected = smirnov(sizes.astype(np.int64), statistics)
    np.testing.assert_allclose(_smirnov(sizes, statistics, chunk), expected, rtol=1e-10)
    assert expected.min() > 1e-280
