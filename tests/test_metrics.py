import functools

import numpy as np
import pytest

from caloforge.validation import (
    bootstrap,
    bootstrap_error,
    bootstrap_resamples,
    bootstrap_values,
    chi2_ndf,
    fpd,
    frechet_distance,
    kpd,
    separation_power,
    shared_bin_edges,
    standardise,
    wasserstein_1,
)

GAUSS = np.random.default_rng(12345).normal(size=2000)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_separation_power_limits_and_a_hand_computed_case():
    gen = rng(1)
    assert separation_power(GAUSS, GAUSS, 30) == pytest.approx(0.0)
    a, b = gen.uniform(0, 1, 500), gen.uniform(2, 3, 700)
    assert separation_power(a, b, 30) == pytest.approx(1.0)
    # h1 = (1/2, 1/2), h2 = (1/4, 3/4): 1/2 (0.25^2 / 0.75 + 0.25^2 / 1.25)
    a = [0.5, 0.5, 1.5, 1.5]
    b = [0.5, 1.5, 1.5, 1.5]
    expected = 0.5 * (0.25**2 / 0.75 + 0.25**2 / 1.25)
    assert separation_power(a, b, [0.0, 1.0, 2.0]) == pytest.approx(expected)
    assert separation_power(a, b, [0.0, 1.0, 2.0]) == pytest.approx(separation_power(b, a, [0.0, 1.0, 2.0]))


def test_non_finite_values_are_dropped():
    a = np.append(GAUSS, [np.nan, np.inf])
    assert separation_power(a, GAUSS, 20) == pytest.approx(0.0)
    assert wasserstein_1(a, GAUSS) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no finite"):
        wasserstein_1([np.nan], GAUSS)


def test_wasserstein_of_a_shifted_sample_is_the_shift():
    assert wasserstein_1(GAUSS, GAUSS + 0.37) == pytest.approx(0.37)
    assert wasserstein_1(GAUSS, GAUSS) == pytest.approx(0.0)


def test_chi2_ndf_by_hand():
    gen = rng(4)
    a = [0.5] * 50 + [1.5] * 50
    b = [0.5] * 25 + [1.5] * 75
    # p1 = (.5, .5), p2 = (.25, .75), variances n/N^2: (.005, .005) and (.0025, .0075); ndf = 2 - 1
    expected = 0.25**2 / 0.0075 + 0.25**2 / 0.0125
    assert chi2_ndf(a, b, [0.0, 1.0, 2.0]) == pytest.approx(expected)
    assert chi2_ndf(a, a, [0.0, 1.0, 2.0]) == pytest.approx(0.0)
    assert np.isnan(chi2_ndf([0.5], [0.5], [0.0, 1.0]))  # one bin: no degree of freedom
    # two samples of one distribution: about 1
    other = gen.normal(size=2000)
    assert 0.3 < chi2_ndf(GAUSS, other, np.linspace(-3, 3, 21)) < 3.0


def test_shared_bin_edges():
    edges = shared_bin_edges([0.0, 1.0], [3.0], 3)
    assert np.allclose(edges, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="increasing"):
        shared_bin_edges([0.0], [1.0], [1.0, 0.0])


def test_bootstrap_value_and_spread():
    gen = rng(6)
    b = gen.normal(0.2, 1.0, size=1000)
    metric = functools.partial(separation_power, bins=shared_bin_edges(GAUSS, b, 20))
    value, std = bootstrap(metric, GAUSS, b, n_boot=20, seed=3)
    assert value == pytest.approx(metric(GAUSS, b))
    assert 0 < std < value
    assert bootstrap(metric, GAUSS, b, n_boot=20, seed=3) == (value, std)  # reproducible
    value, std = bootstrap(lambda x, y: 1.0, GAUSS, b, n_boot=5)
    assert (value, std) == (1.0, 0.0)
    # (N, d) feature arrays resample whole rows
    rows = gen.normal(size=(50, 3))
    value, std = bootstrap(lambda x, y: float(x.shape[1] + len(y)), rows, rows, n_boot=3)
    assert (value, std) == (53.0, 0.0)


def test_bootstrap_resamples_draw_indices_or_counts_chunk_by_chunk():
    draws = list(bootstrap_resamples(rng(1), 5, (7, 4), chunk=2))
    assert [tuple(d.shape for d in draw) for draw in draws] == [((2, 7), (2, 4)), ((2, 7), (2, 4)), ((1, 7), (1, 4))]
    assert all(0 <= d.min() and d.max() < n for draw in draws for d, n in zip(draw, (7, 4)))
    # one resample at a time draws what one rng.integers(0, n, n) per sample and resample draws
    gen = rng(2)
    expected = [(gen.integers(0, 9, 9), gen.integers(0, 5, 5)) for _ in range(3)]
    for (ia, ib), (ea, eb) in zip(bootstrap_resamples(rng(2), 3, (9, 5)), expected):
        assert np.array_equal(ia[0], ea) and np.array_equal(ib[0], eb)
    # counts: multinomial over the bins, each resample keeps the number of events
    counts = list(bootstrap_resamples(rng(3), 6, (100, 40), probabilities=([0.5, 0.5], [0.1, 0.2, 0.7]), chunk=6))
    assert len(counts) == 1 and counts[0][0].shape == (6, 2) and counts[0][1].shape == (6, 3)
    assert np.all(counts[0][0].sum(axis=1) == 100) and np.all(counts[0][1].sum(axis=1) == 40)
    with pytest.raises(ValueError, match="probability"):
        next(bootstrap_resamples(rng(3), 2, (10, 10), probabilities=([1.0],)))


def test_bootstrap_values_and_error():
    x = rng(4).normal(size=500)
    means = bootstrap_values(lambda idx: x[idx].mean(axis=1), rng(5), 200, (len(x),), chunk=64)
    assert means.shape == (200,)
    assert bootstrap_error(means) == pytest.approx(1 / np.sqrt(500), rel=0.2)
    # the chunking does not change the draws of a given chunk size, only their grouping
    again = bootstrap_values(lambda idx: x[idx].mean(axis=1), rng(5), 200, (len(x),), chunk=64)
    assert np.array_equal(means, again)
    # tuples of statistics; (n_boot, m) values give m errors
    lo, hi = bootstrap_values(lambda idx: (x[idx].min(axis=1), x[idx].max(axis=1)), rng(6), 10, (len(x),))
    assert lo.shape == hi.shape == (10,) and np.all(lo < hi)
    two = bootstrap_error(np.column_stack([means, 2 * means]))
    assert two.shape == (2,) and two[1] == pytest.approx(2 * two[0])
    # non-finite values (undefined resamples) are left out; fewer than two finite values: NaN
    assert bootstrap_error([1.0, np.nan, 3.0]) == pytest.approx(np.std([1.0, 3.0], ddof=1))
    assert np.isnan(bootstrap_error([1.0, np.nan]))
    assert bootstrap_error(np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 4.0]]))[1] == pytest.approx(np.sqrt(2))


def test_standardise_uses_the_reference():
    gen = rng(7)
    ref = np.column_stack([gen.normal(5, 2, 500), np.full(500, 3.0)])
    other = ref + [2.0, 1.0]
    r, o = standardise(ref, other)
    assert np.allclose(r.mean(axis=0), 0) and np.allclose(r[:, 0].std(), 1)
    assert np.allclose(o[:, 0].mean(), 2.0 / ref[:, 0].std())
    assert np.allclose(o[:, 1], 1.0)  # a constant feature is only centred


def test_frechet_distance_by_hand():
    gen = rng(8)
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2 with sample variances 2 and 8
    expected = 1.0 + (np.sqrt(2) - np.sqrt(8)) ** 2
    assert frechet_distance([[0.0], [2.0]], [[0.0], [4.0]]) == pytest.approx(expected)
    x = gen.normal(size=(400, 3))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_fpd_identical_and_shifted_features():
    gen = rng(9)
    ref = gen.normal(size=(3000, 4))
    same = gen.normal(size=(3000, 4))
    shifted = same + [1.0, 0.0, 0.0, 0.0]
    opts = dict(min_samples=500, max_samples=2000, num_batches=5, num_points=6, seed=1)
    value, err = fpd(ref, same, **opts)
    assert abs(value) < 0.02 and err >= 0
    value_shifted, _ = fpd(ref, shifted, **opts)
    assert value_shifted == pytest.approx(1.0, abs=0.2)  # squared shift in units of the reference std
    # rows with NaN (empty showers) are dropped
    with_nan = np.vstack([same, np.full((5, 4), np.nan)])
    assert fpd(ref, with_nan, **opts)[0] == pytest.approx(value, abs=0.02)


def test_kpd_identical_shifted_and_by_hand():
    gen = rng(10)
    ref = gen.normal(size=(1500, 3))
    same = gen.normal(size=(1500, 3))
    value, err = kpd(ref, same, num_batches=5, batch_size=500, seed=2)
    shifted_value, _ = kpd(ref, same + [0.5, 0.0, 0.0], num_batches=5, batch_size=500, seed=2)
    assert abs(value) < 0.05 and err >= 0
    assert shifted_value > 5 * max(abs(value), 1e-3)
    # x = y = (0, 1) standardise to (-1, 1); k = (x y + 1)^3 gives K = [[8, 0], [0, 8]] for all pairs:
    # off-diagonal sums 0 and 0, cross sum 16 -> MMD^2 = 0 + 0 - 2 * 16 / 4
    assert kpd([[0.0], [1.0]], [[0.0], [1.0]], num_batches=1, batch_size=2)[0] == pytest.approx(-8.0)
