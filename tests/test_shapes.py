import warnings

import numpy as np
import pytest
import torch
from shape_inputs import P, T, front, one_map

from caloforge.detector import barrel_geometry
from caloforge.showers.shapes import (
    LAT_R0_CM,
    LAT_R0_CRYSTALS,
    ZERNIKE_R0_CM,
    centre_offsets_cm,
    crystal_positions_cm,
    distance_to_entry_cm,
    divide_where_positive,
    e_nxn,
    energy_profile_phi,
    energy_profile_theta,
    energy_ratios,
    energy_sums,
    energy_weighted_centre_cm,
    energy_weighted_centre_crystals,
    lat_moment,
    lat_moment_crystals,
    position_shapes_cm,
    second_moment_cm2,
    second_moment_crystals2,
    widths_and_asymmetries,
    zernike_moments,
)



def perp_distance(x: np.ndarray, axis_point: np.ndarray) -> float:
    """Distance of x from the line through the origin and axis_point (|x| sin angle)."""
    return float(np.linalg.norm(np.cross(x, axis_point)) / np.linalg.norm(axis_point))


def random_showers(n: int, seed: int) -> np.ndarray:
    """(n, 11, 11) positive maps with a peaked, varied lateral shape, GeV."""
    rng = np.random.default_rng(seed)
    offsets = np.arange(11) - 5
    width = rng.uniform(0.6, 2.5, n)[:, None, None]
    shape = np.exp(-0.5 * (offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2) / width**2)
    return rng.exponential(1.0, size=(n, 11, 11)) * shape * rng.uniform(0.05, 2.0, n)[:, None, None]


# ----------------------------------------------------------------------------------------------
# positions, sums, division
# ----------------------------------------------------------------------------------------------


def test_crystal_positions_follow_the_window_layout_and_mark_barrel_ends():
    geo = barrel_geometry()
    pos = crystal_positions_cm(np.array([T, 1]), np.array([P, 119]))
    assert pos.shape == (2, 11, 11, 3)
    assert np.array_equal(pos[0, 5, 5], geo.front_center_cm[T, P])
    assert np.array_equal(pos[0, 6, 4], geo.front_center_cm[T + 1, P - 1])  # rows theta, columns phi
    assert np.array_equal(pos[1, 5, 6], geo.front_center_cm[1, 0])  # phi wraps
    assert np.isnan(pos[1, :4]).all() and np.isfinite(pos[1, 4:]).all()  # rings -4..-1 do not exist


def test_e_nxn_counts_cells():
    m = np.ones((2, 11, 11))
    for n in (1, 3, 5, 7, 9, 11):
        assert np.allclose(e_nxn(m, n), n * n)
    m[:, 3:8, 3:8] = 2.0  # the central 5x5, as hand-sliced before
    assert np.array_equal(e_nxn(m, 5), m[:, 3:8, 3:8].sum(axis=(1, 2)))
    with pytest.raises(ValueError, match="odd"):
        e_nxn(m, 4)
    with pytest.raises(ValueError, match="shape"):
        e_nxn(np.ones((11, 11)), 3)


def test_divide_where_positive():
    out = divide_where_positive(np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.0, -1.0]))
    assert out[0] == 0.5 and np.isnan(out[1:]).all()
    assert divide_where_positive([1.0, 2.0], [0.0, 4.0], fill=0.0).tolist() == [0.0, 0.5]


def test_lat_radius_in_crystal_pitches():
    assert LAT_R0_CRYSTALS == pytest.approx(LAT_R0_CM / 5.0)


# ----------------------------------------------------------------------------------------------
# hand-made maps
# ----------------------------------------------------------------------------------------------


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


def test_single_hit_in_crystal_units():
    m = one_map({(2, 7): 0.3})
    assert energy_weighted_centre_crystals(m)[0].tolist() == [-3.0, 2.0]  # (theta, phi) offsets
    assert second_moment_crystals2(m)[0] == 0.0
    assert lat_moment_crystals(m)[0] == 0.0


def test_two_equal_crystals():
    m = one_map({(5, 5): 0.5, (5, 6): 0.5})
    x1, x2 = front(0, 0), front(0, 1)
    centre = energy_weighted_centre_cm(m, T, P)[0]
    assert np.allclose(centre, (x1 + x2) / 2)
    d = np.linalg.norm(x1 - x2)
    assert 4.5 < d < 5.5  # neighbours in phi, about one front face apart
    assert second_moment_cm2(m, T, P)[0] == pytest.approx(d**2 / 4)
    # the same in crystal units: one pitch apart
    assert energy_weighted_centre_crystals(m)[0].tolist() == [0.0, 0.5]
    assert second_moment_crystals2(m)[0] == pytest.approx(0.25)
    # LAT: both crystals are the two most energetic ones
    assert lat_moment(m, T, P)[0] == pytest.approx(0.0, abs=1e-12)
    assert lat_moment_crystals(m)[0] == 0.0
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
    # crystal units: centre (2/6, 2/6) in (theta, phi) offsets, the third crystal at (2, 0)
    num = 1.0 * ((2 - 1 / 3) ** 2 + (1 / 3) ** 2)
    assert lat_moment_crystals(m)[0] == pytest.approx(num / (num + LAT_R0_CRYSTALS**2 * 5.0))


def test_symmetric_shower():
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
    # crystal units: centre on the centre crystal, S = (1 + 1 + 0.5 + 0.5) / 5, the squared widths add up
    assert np.allclose(energy_weighted_centre_crystals(m), 0.0)
    assert second_moment_crystals2(m)[0] == pytest.approx(3.0 / 5.0)
    assert second_moment_crystals2(m)[0] == pytest.approx(
        w["phi_width_crystals"][0] ** 2 + w["theta_width_crystals"][0] ** 2
    )
    # LAT: the two hottest are the centre and the first 1 GeV crystal; the other three are 1 pitch away
    assert lat_moment_crystals(m)[0] == pytest.approx(2.0 / (2.0 + LAT_R0_CRYSTALS**2 * 3.0))
    # cm: about the centre crystal's front face (the faces lie on a cylinder: the mean is 0.05 cm inside)
    assert np.linalg.norm(energy_weighted_centre_cm(m, T, P)[0] - front(0, 0)) < 0.1


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


def test_energy_beyond_the_barrel_end_is_ignored_by_position_observables():
    m = one_map({(5, 5): 1.0, (0, 5): 1.0})  # row 0 is ring -4 for centre ring 1
    assert np.allclose(energy_weighted_centre_cm(m, 1, 7)[0], barrel_geometry().front_center_cm[1, 7])
    assert second_moment_cm2(m, 1, 7)[0] == pytest.approx(0.0, abs=1e-9)
    assert e_nxn(m, 11)[0] == pytest.approx(2.0)
    assert second_moment_crystals2(m)[0] == pytest.approx(25.0 / 4.0)  # the grid knows no barrel ends


def test_centre_offsets_and_distance_to_entry():
    m = np.concatenate([one_map({(5, 5): 1.0}), one_map({(5, 6): 1.0}), one_map({(6, 5): 1.0})])
    track = np.stack([front(0, 0)] * 3)
    theta_cm, phi_cm = centre_offsets_cm(m, T, P, track)
    assert theta_cm[0] == pytest.approx(0.0, abs=1e-9) and phi_cm[0] == pytest.approx(0.0, abs=1e-9)
    d_phi = np.linalg.norm(front(0, 1) - front(0, 0))
    # the neighbour in phi, and in the next ring (towards -z): along one direction (the crystals are
    # tilted, so the other component is not exactly 0)
    assert phi_cm[1] == pytest.approx(d_phi, rel=1e-3) and abs(theta_cm[1]) < 0.05
    assert theta_cm[2] > 4.0 and abs(phi_cm[2]) < 0.05
    assert distance_to_entry_cm(m, T, P, track)[1] == pytest.approx(d_phi)


def test_cm_and_crystal_units_agree_for_a_row_in_phi():
    # crystals of one ring: the cm shapes are the crystal-unit ones with the phi pitch as unit (the
    # front faces lie on an arc, not a line: equal to a few 1e-3)
    m = one_map({(5, 3): 0.2, (5, 4): 0.7, (5, 5): 1.5, (5, 6): 0.4, (5, 8): 0.1})
    pitch = np.linalg.norm(front(0, 1) - front(0, 0))
    assert second_moment_cm2(m, T, P)[0] == pytest.approx(second_moment_crystals2(m)[0] * pitch**2, rel=3e-3)
    assert lat_moment(m, T, P)[0] == pytest.approx(lat_moment_crystals(m, r0_crystals=LAT_R0_CM / pitch)[0], rel=3e-3)


def test_empty_maps_give_nan_without_warnings():
    m = np.zeros((2, 11, 11))
    m[1, 4, 5] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crystal = [second_moment_crystals2(m), lat_moment_crystals(m), energy_weighted_centre_crystals(m)[:, 0]]
        cm = list(position_shapes_cm(m, T, P, np.stack([front(0, 0)] * 2)).values())
    for values in crystal + cm:
        assert np.isnan(values[0]) and np.isfinite(values[1])


def test_position_shapes_match_the_single_functions():
    maps = random_showers(20, seed=3)
    t = np.arange(20) * 2
    p = np.arange(20) * 6
    entry = barrel_geometry().front_center_cm[t, p]
    shapes = position_shapes_cm(maps, t, p, entry)
    assert list(shapes) == ["second_moment_cm2", "lat", "a20", "a42", "distance_to_entry_cm"]
    assert np.array_equal(shapes["second_moment_cm2"], second_moment_cm2(maps, t, p))
    assert np.array_equal(shapes["lat"], lat_moment(maps, t, p))
    a20, a42 = zernike_moments(maps, t, p)
    assert np.array_equal(shapes["a20"], a20) and np.array_equal(shapes["a42"], a42)
    assert np.array_equal(shapes["distance_to_entry_cm"], distance_to_entry_cm(maps, t, p, entry))
    assert "distance_to_entry_cm" not in position_shapes_cm(maps, t, p)
    with pytest.raises(ValueError, match="entry_position_cm"):
        position_shapes_cm(maps, t, p, entry[:3])


# ----------------------------------------------------------------------------------------------
# numpy against the torch twins
# ----------------------------------------------------------------------------------------------


def test_numpy_and_torch_shapes_agree():
    from caloforge.showers import shapes_torch

    maps = random_showers(200, seed=7)
    maps[:, 5, 5] += 0.5 * np.arange(200) / 200  # a clear hottest crystal
    p = np.random.default_rng(8).uniform(0.2, 2.0, 200)
    m_t, p_t = torch.as_tensor(maps, dtype=torch.float64), torch.as_tensor(p, dtype=torch.float64)
    sums = {n: e_nxn(maps, n) for n in (1, 3, 5, 7, 9, 11)}

    fractions = shapes_torch.containment_fractions(m_t, p_t).numpy()  # (B, 4)
    expected = np.stack([sums[n] / p for n in (1, 3, 5, 11)], axis=1)
    np.testing.assert_allclose(fractions, expected, rtol=1e-12)

    ratios = shapes_torch.shape_ratios(m_t).numpy()  # (B, 4)
    np.testing.assert_allclose(ratios, np.stack([sums[n] / sums[11] for n in (1, 3, 5, 7)], axis=1), rtol=1e-12)

    moments = shapes_torch.lateral_moments(m_t).numpy()  # (B, 3): row, column, second moment
    np.testing.assert_allclose(moments[:, :2], energy_weighted_centre_crystals(maps), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(moments[:, 2], second_moment_crystals2(maps), rtol=1e-9)

    r2_lat = shapes_torch.lateral_shape_moments(m_t).numpy()  # (B, 2)
    np.testing.assert_allclose(r2_lat[:, 0], second_moment_crystals2(maps), rtol=1e-9)
    np.testing.assert_allclose(r2_lat[:, 1], lat_moment_crystals(maps), rtol=1e-9)

    features = shapes_torch.shower_features(m_t, p_t).numpy()  # (B, 8)
    np.testing.assert_allclose(features[:, :6], np.stack([sums[n] / p for n in sums], axis=1), rtol=1e-12)
    np.testing.assert_allclose(features[:, 7], second_moment_crystals2(maps), rtol=1e-9)
