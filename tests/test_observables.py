import warnings

import numpy as np
import pytest

from caloforge.detector import barrel_geometry
from caloforge.validation import (
    HIGH_LEVEL_FEATURE_NAMES,
    LAT_R0_CM,
    ZERNIKE_R0_CM,
    cell_energy_spectrum,
    crystal_positions_cm,
    distance_to_entry_cm,
    e_nxn,
    energy_profile_phi,
    energy_profile_theta,
    energy_ratios,
    energy_sums,
    energy_weighted_centre_cm,
    high_level_features,
    lat_moment,
    second_moment_cm2,
    sparsity,
    stack_features,
    widths_and_asymmetries,
    zernike_moments,
)

T, P = 20, 60  # a centre crystal far from the barrel ends


def one_map(cells: dict[tuple[int, int], float]) -> np.ndarray:
    """A (1, 11, 11) map with the given (row, column) -> GeV cells."""
    m = np.zeros((1, 11, 11))
    for (i, j), e in cells.items():
        m[0, i, j] = e
    return m


def front(offset_theta: int, offset_phi: int) -> np.ndarray:
    """Front-face centre of the crystal at a window offset from (T, P), cm."""
    return barrel_geometry().front_center_cm[T + offset_theta, (P + offset_phi) % 120]


def perp_distance(x: np.ndarray, axis_point: np.ndarray) -> float:
    """Distance of x from the line through the origin and axis_point (|x| sin angle)."""
    return float(np.linalg.norm(np.cross(x, axis_point)) / np.linalg.norm(axis_point))


def test_crystal_positions_follow_the_window_layout_and_mark_barrel_ends():
    geo = barrel_geometry()
    pos = crystal_positions_cm(np.array([T, 1]), np.array([P, 119]))
    assert pos.shape == (2, 11, 11, 3)
    assert np.array_equal(pos[0, 5, 5], geo.front_center_cm[T, P])
    assert np.array_equal(pos[0, 6, 4], geo.front_center_cm[T + 1, P - 1])  # rows theta, columns phi
    assert np.array_equal(pos[1, 5, 6], geo.front_center_cm[1, 0])  # phi wraps
    assert np.isnan(pos[1, :4]).all() and np.isfinite(pos[1, 4:]).all()  # rings -4..-1 do not exist


def test_single_hot_crystal():
    m = one_map({(5, 5): 1.3})
    sums = energy_sums(m)
    assert list(sums) == ["e1x1_gev", "e3x3_gev", "e5x5_gev", "e7x7_gev", "e9x9_gev", "e11x11_gev"]
    assert all(v[0] == pytest.approx(1.3) for v in sums.values())
    assert all(v[0] == pytest.approx(1.0) for v in energy_ratios(m).values())
    assert np.allclose(energy_weighted_centre_cm(m, T, P), front(0, 0))
    assert second_moment_cm2(m, T, P)[0] == pytest.approx(0.0, abs=1e-9)
    assert lat_moment(m, T, P)[0] == pytest.approx(0.0, abs=1e-12)
    a20, a42 = zernike_moments(m, T, P)
    assert a20[0] == pytest.approx(1.0)  # rho = 0: |2 * 0 - 1|
    assert a42[0] == pytest.approx(0.0, abs=1e-12)
    w = widths_and_asymmetries(m)
    assert all(w[k][0] == pytest.approx(0.0) for k in w)


def test_e_nxn_counts_cells():
    m = np.ones((2, 11, 11))
    for n in (1, 3, 5, 7, 9, 11):
        assert np.allclose(e_nxn(m, n), n * n)
    with pytest.raises(ValueError, match="odd"):
        e_nxn(m, 4)
    with pytest.raises(ValueError, match="shape"):
        e_nxn(np.ones((11, 11)), 3)


def test_two_equal_crystals():
    m = one_map({(5, 5): 0.5, (5, 6): 0.5})
    x1, x2 = front(0, 0), front(0, 1)
    centre = energy_weighted_centre_cm(m, T, P)[0]
    assert np.allclose(centre, (x1 + x2) / 2)
    d = np.linalg.norm(x1 - x2)
    assert 4.5 < d < 5.5  # neighbours in phi, about one front face apart
    assert second_moment_cm2(m, T, P)[0] == pytest.approx(d**2 / 4)
    # LAT: both crystals are the two most energetic ones
    assert lat_moment(m, T, P)[0] == pytest.approx(0.0, abs=1e-12)
    # Zernike: both at the same distance from the shower axis, on opposite sides (phases 2 phi agree)
    rho = perp_distance(x1, centre) / ZERNIKE_R0_CM
    assert perp_distance(x2, centre) / ZERNIKE_R0_CM == pytest.approx(rho)
    a20, a42 = zernike_moments(m, T, P)
    assert a20[0] == pytest.approx(abs(2 * rho**2 - 1))
    assert a42[0] == pytest.approx(abs(4 * rho**4 - 3 * rho**2))
    # equal split across the phi boundary of the centre crystal
    w = widths_and_asymmetries(m)
    assert w["phi_mean_crystals"][0] == pytest.approx(0.5)
    assert w["phi_width_crystals"][0] == pytest.approx(0.5)
    assert w["phi_asymmetry"][0] == pytest.approx(0.5)
    assert w["theta_asymmetry"][0] == pytest.approx(0.0)


def test_lat_by_hand():
    m = one_map({(5, 5): 3.0, (5, 6): 2.0, (7, 5): 1.0})
    xs = [front(0, 0), front(0, 1), front(2, 0)]
    es = [3.0, 2.0, 1.0]
    centre = sum(e * x for e, x in zip(es, xs)) / sum(es)
    r3 = perp_distance(xs[2], centre)
    expected = 1.0 * r3**2 / (1.0 * r3**2 + LAT_R0_CM**2 * (3.0 + 2.0))
    assert lat_moment(m, T, P)[0] == pytest.approx(expected)
    assert 0 < expected < 1


def test_zernike_drops_crystals_beyond_r0():
    # two crystals 5 apart in phi (about 25 cm): only the hot one is within R0 = 15.6 cm of the axis
    m = one_map({(5, 5): 0.9, (5, 10): 0.1})
    centre = energy_weighted_centre_cm(m, T, P)[0]
    r_hot = perp_distance(front(0, 0), centre)
    assert r_hot < ZERNIKE_R0_CM < perp_distance(front(0, 5), centre)
    a20, _ = zernike_moments(m, T, P)
    assert a20[0] == pytest.approx(abs(2 * (r_hot / ZERNIKE_R0_CM) ** 2 - 1))
    # the central 5x5 alone: a single hot crystal
    assert zernike_moments(m, T, P, size=5)[0][0] == pytest.approx(1.0)
    assert second_moment_cm2(m, T, P, size=5)[0] == pytest.approx(0.0, abs=1e-9)


def test_symmetric_pattern_has_no_asymmetry():
    m = one_map({(5, 5): 2.0, (5, 4): 1.0, (5, 6): 1.0, (4, 5): 0.5, (6, 5): 0.5})
    w = widths_and_asymmetries(m)
    for axis in ("phi", "theta"):
        assert w[f"{axis}_asymmetry"][0] == pytest.approx(0.0, abs=1e-12)
        assert w[f"{axis}_mean_crystals"][0] == pytest.approx(0.0, abs=1e-12)
    assert w["phi_width_crystals"][0] == pytest.approx(np.sqrt(2.0 / 5.0))
    assert w["theta_width_crystals"][0] == pytest.approx(np.sqrt(1.0 / 5.0))
    assert np.allclose(energy_profile_phi(m)[0, 4:7], [1.0, 3.0, 1.0])
    assert np.allclose(energy_profile_theta(m)[0, 4:7], [0.5, 4.0, 0.5])
    assert energy_profile_phi(m).sum() == pytest.approx(5.0)


def test_sparsity_and_cell_spectrum():
    m = one_map({(0, 0): 0.0005, (5, 5): 0.002, (10, 10): 0.01})
    frac = sparsity(m, [0.0, 0.001, 0.005, 0.1])
    assert frac.shape == (1, 4)
    assert np.allclose(frac[0], np.array([3, 2, 1, 0]) / 121)
    assert sparsity(m, 0.001).shape == (1,)
    assert np.allclose(np.sort(cell_energy_spectrum(m)), [0.0005, 0.002, 0.01])
    assert np.allclose(cell_energy_spectrum(m, 0.001), [0.002, 0.01])


def test_energy_beyond_the_barrel_end_is_ignored_by_position_observables():
    m = one_map({(5, 5): 1.0, (0, 5): 1.0})  # row 0 is ring -4 for centre ring 1
    assert np.allclose(energy_weighted_centre_cm(m, 1, 7)[0], barrel_geometry().front_center_cm[1, 7])
    assert second_moment_cm2(m, 1, 7)[0] == pytest.approx(0.0, abs=1e-9)
    assert e_nxn(m, 11)[0] == pytest.approx(2.0)


def test_empty_maps_give_nan_or_zero_without_warnings():
    m = np.zeros((2, 11, 11))
    m[1, 5, 5] = 1.0
    entry = np.stack([front(0, 0), front(0, 0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = high_level_features(m, T, P, entry_position_cm=entry)
    assert list(f) == [*HIGH_LEVEL_FEATURE_NAMES, "distance_to_entry_cm"]
    zero = [k for k in f if k.startswith("e") and k.endswith("_gev")] + ["sparsity_1mev"]
    for name, values in f.items():
        assert values.shape == (2,)
        if name in zero:
            assert values[0] == 0.0
        else:
            assert np.isnan(values[0]), name
        assert np.isfinite(values[1]), name
    assert f["distance_to_entry_cm"][1] == pytest.approx(0.0, abs=1e-9)


def test_features_are_vectorised_and_match_single_events():
    rng = np.random.default_rng(1)
    offsets = np.arange(11) - 5
    shape = np.exp(-0.5 * (offsets[:, None] ** 2 + offsets[None, :] ** 2))
    maps = rng.exponential(1.0, size=(5, 11, 11)) * shape
    t = np.array([0, 10, 21, 33, 43])
    p = np.array([0, 50, 119, 7, 60])
    entry = barrel_geometry().front_center_cm[t, p] + rng.normal(0, 1.0, size=(5, 3))
    f = high_level_features(maps, t, p, entry_position_cm=entry)
    for i in range(5):
        g = high_level_features(maps[i : i + 1], t[i], p[i], entry_position_cm=entry[i : i + 1])
        for name in f:
            assert f[name][i] == pytest.approx(g[name][0]), name
    d = distance_to_entry_cm(maps, t, p, entry)
    assert np.allclose(d, f["distance_to_entry_cm"])
    x = stack_features(f, ["lat", "a20"])
    assert x.shape == (5, 2) and np.allclose(x[:, 1], f["a20"])
    assert np.all((f["lat"] >= 0) & (f["lat"] < 1))
    assert np.all((f["a20"] >= 0) & (f["a20"] <= 1) & (f["a42"] >= 0) & (f["a42"] <= 1))
    with pytest.raises(KeyError, match="unknown features"):
        stack_features(f, ["nope"])
