import numpy as np
import pybes3
import pytest

from caloforge.detector import (
    N_PHI,
    N_THETA,
    barrel_geometry,
    crystal_at_front,
    crystal_gid,
    extract_window,
    window_indices,
)


def test_table_matches_pybes3_ids_and_positions():
    geo = barrel_geometry()
    assert geo.vertices_cm.shape == (44, 120, 8, 3)
    t, p = 17, 93
    gid = crystal_gid(t, p)
    assert geo.gid[t, p] == gid == 480 + 120 * 17 + 93
    assert pybes3.emc.emc_gid_to_theta(gid) == t and pybes3.emc.emc_gid_to_phi(gid) == p
    assert pybes3.emc.emc_gid_to_part(gid) == 1
    assert geo.front_center_cm[t, p, 0] == pytest.approx(pybes3.emc.emc_gid_to_front_center_x(gid))
    assert geo.center_cm[t, p, 2] == pytest.approx(pybes3.emc.emc_gid_to_center_z(gid))


def test_geometry_facts_from_spec():
    geo = barrel_geometry()
    assert not geo.vertices_cm.flags.writeable
    r_front = np.hypot(geo.front_vertices_cm[..., 0], geo.front_vertices_cm[..., 1])
    assert r_front.min() == pytest.approx(94.0, abs=0.01)
    assert np.abs(geo.vertices_cm[..., 2]).max() == pytest.approx(157.3, abs=0.05)
    # 28 cm crystals, 24 cm in rings 0 and 43
    assert np.allclose(geo.length_cm[1:-1], 28.0, atol=0.05)
    assert np.allclose(geo.length_cm[[0, -1]], 24.0, atol=0.05)
    # ring 0 at +z, theta grows with the ring index
    assert geo.front_center_cm[0, 0, 2] > 0 > geo.front_center_cm[-1, 0, 2]
    assert np.all(np.diff(geo.ring_theta_rad) > 0)


def test_window_wraps_in_phi_and_marks_barrel_ends():
    rows, cols, inside = window_indices(np.array([2]), np.array([118]))
    assert rows.shape == (1, 11, 11)
    assert list(cols[0, 5]) == [113, 114, 115, 116, 117, 118, 119, 0, 1, 2, 3]
    assert list(inside[0, :, 0]) == [False] * 3 + [True] * 8
    assert np.all(rows[0, :3] == -1) and np.all(cols[0, :3] == -1)
    assert list(rows[0, 3:, 0]) == list(range(0, 8))
    rows, _, inside = window_indices(43, 0)
    assert inside[:6].all() and not inside[6:].any() and rows[5, 5] == 43


def test_extract_window_never_mixes_in_wrong_crystals():
    full = np.arange(N_THETA * N_PHI, dtype=float).reshape(1, N_THETA, N_PHI) + 1.0
    win = extract_window(full, np.array([1]), np.array([0]))
    assert win[0, 5, 5] == full[0, 1, 0]
    assert win[0, 5, 4] == full[0, 1, 119]  # phi wraps
    assert np.all(win[0, :4] == 0)  # rings -4..-1 do not exist
    assert win[0, 4, 5] == full[0, 0, 0]


def test_crystal_at_front_finds_every_face():
    geo = barrel_geometry()
    rng = np.random.default_rng(3)
    # random points inside front faces (bilinear interpolation of the corners)
    t = rng.integers(0, N_THETA, 2000)
    p = rng.integers(0, N_PHI, 2000)
    u, v = rng.uniform(0.02, 0.98, (2, 2000))
    fv = geo.front_vertices_cm[t, p]
    pts = ((1 - u) * (1 - v))[:, None] * fv[:, 0] + (u * (1 - v))[:, None] * fv[:, 1]
    pts += (u * v)[:, None] * fv[:, 2] + ((1 - u) * v)[:, None] * fv[:, 3]
    ft, fp, ok = crystal_at_front(pts)
    assert ok.all()
    assert np.array_equal(ft, t) and np.array_equal(fp, p)


def test_points_beyond_the_barrel_ends_are_not_on_the_barrel():
    pts = np.array([[95.0, 0.0, 200.0], [0.0, 95.0, -190.0], [20.0, 0.0, 0.0]])
    t, p, ok = crystal_at_front(pts)
    assert not ok.any() and np.all(t == -1) and np.all(p == -1)
