import numpy as np
import pytest

from caloforge.showers.compare import (
    GAUSSIAN_SIGMA68_QUANTILES,
    chi2_ndf_counts,
    separation_power_counts,
    sigma68,
)


def test_separation_power_counts_limits_and_a_hand_computed_case():
    assert separation_power_counts([3, 5, 0, 2], [6, 10, 0, 4]) == pytest.approx(0.0)
    assert separation_power_counts([3, 5, 0, 0], [0, 0, 7, 1]) == pytest.approx(1.0)
    # p = (1/2, 1/2), q = (1/4, 3/4)
    expected = 0.5 * (0.25**2 / 0.75 + 0.25**2 / 1.25)
    assert separation_power_counts([2, 2], [1, 3]) == pytest.approx(expected)
    assert separation_power_counts([1, 3], [2, 2]) == pytest.approx(expected)
    assert isinstance(separation_power_counts([2, 2], [1, 3]), float)


def test_binned_cores_are_vectorised_over_leading_axes():
    rng = np.random.default_rng(0)
    c1 = rng.poisson(20, size=(7, 12)).astype(float)
    c2 = rng.poisson(20, size=(7, 12)).astype(float)
    c1[:, 3] = c2[:, 3] = 0  # a bin empty in both
    s, chi2 = separation_power_counts(c1, c2), chi2_ndf_counts(c1, c2)
    assert s.shape == chi2.shape == (7,)
    for i in range(7):
        assert s[i] == pytest.approx(separation_power_counts(c1[i], c2[i]), rel=1e-12)
        assert chi2[i] == pytest.approx(chi2_ndf_counts(c1[i], c2[i]), rel=1e-12)


def test_chi2_ndf_counts_by_hand_and_without_degrees_of_freedom():
    # n1 = (2, 2), n2 = (1, 3): N1 = N2 = 4, differences 1/4 per bin, variances 3/16 and 5/16; ndf = 1
    assert chi2_ndf_counts([2, 2], [1, 3]) == pytest.approx(1 / 3 + 1 / 5)
    assert np.isnan(chi2_ndf_counts([5, 0], [3, 0]))  # one used bin: ndf = 0
    out = chi2_ndf_counts([[5, 0], [2, 2]], [[3, 0], [1, 3]])
    assert np.isnan(out[0]) and out[1] == pytest.approx(1 / 3 + 1 / 5)


def test_chi2_ndf_counts_is_about_one_for_one_distribution():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(30))
    c1 = rng.multinomial(20_000, p, size=400)
    c2 = rng.multinomial(30_000, p, size=400)
    assert np.mean(chi2_ndf_counts(c1, c2)) == pytest.approx(1.0, abs=0.05)


def test_binned_cores_refuse_different_bins():
    with pytest.raises(ValueError, match="common bins"):
        separation_power_counts([1, 2, 3], [1, 2])


def test_sigma68_is_half_the_16_84_percent_range():
    rng = np.random.default_rng(5)
    x = rng.normal(2.0, 3.0, 200_001)
    assert sigma68(x) == pytest.approx(3.0 * 0.9945, rel=0.01)
    assert sigma68(x, quantiles=GAUSSIAN_SIGMA68_QUANTILES) == pytest.approx(3.0, rel=0.01)
    q16, q84 = np.percentile(x, [16, 84])
    assert sigma68(x) == 0.5 * (q84 - q16)
    x[:100] = 1e9  # outliers do not move it
    assert sigma68(x) == pytest.approx(3.0 * 0.9945, rel=0.01)
    rows = rng.normal(size=(4, 1000)) * np.arange(1, 5)[:, None]
    np.testing.assert_allclose(sigma68(rows, axis=1), [sigma68(r) for r in rows])
