import numpy as np
import pytest

from caloforge.detector import barrel_geometry, crystal_at_front, propagate_to_front
from caloforge.detector.transport import K_GEV_PER_T_CM, helix_at, path_to_cylinder


def _rk4_track(x0, p0, charge, b_t, length_cm, step_cm=0.01):
    """Reference: integrate du/ds = (q B K / p) u x z with RK4."""
    x, u = np.array(x0, float), np.array(p0, float) / np.linalg.norm(p0)
    k = charge * b_t * K_GEV_PER_T_CM / np.linalg.norm(p0)

    def f(u):
        return k * np.array([u[1], -u[0], 0.0])

    for _ in range(int(round(length_cm / step_cm))):
        k1 = f(u)
        k2 = f(u + 0.5 * step_cm * k1)
        k3 = f(u + 0.5 * step_cm * k2)
        k4 = f(u + step_cm * k3)
        x = x + step_cm * (u + step_cm / 6 * (k1 + k2 + k3))  # position from the RK4 velocity terms
        u = u + step_cm / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x, u


@pytest.mark.parametrize("charge", [-1, 1])
def test_helix_matches_numerical_integration(charge):
    p0 = np.array([0.25, 0.1, 0.08])
    pos, dirn = helix_at(np.zeros(3), p0 / np.linalg.norm(p0), charge * 1.0 * K_GEV_PER_T_CM / np.linalg.norm(p0), 60.0)
    ref_x, ref_u = _rk4_track(np.zeros(3), p0, charge, 1.0, 60.0)
    assert np.allclose(pos, ref_x, atol=2e-3)
    assert np.allclose(dirn, ref_u, atol=1e-5)


def test_positive_charges_turn_clockwise_seen_from_plus_z():
    p0 = np.array([[0.3, 0.0, 0.0]])
    pos_plus, _ = helix_at(np.zeros((1, 3)), np.array([[1.0, 0, 0]]), np.array([K_GEV_PER_T_CM / 0.3]), 50.0)
    assert pos_plus[0, 1] < 0
    hit_minus = propagate_to_front(np.zeros((1, 3)), p0, np.array([-1]))
    assert np.arctan2(hit_minus.position_cm[0, 1], hit_minus.position_cm[0, 0]) > 0


def test_path_to_cylinder_lands_on_the_cylinder():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(500, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    omega = rng.choice([0.0, 1e-3, -4e-3], 500)
    s = path_to_cylinder(np.zeros((500, 3)), u, omega, 95.0)
    ok = np.isfinite(s)
    pos, _ = helix_at(np.zeros((500, 3)), u, omega, np.where(ok, s, 0))
    assert np.allclose(np.hypot(pos[ok, 0], pos[ok, 1]), 95.0, atol=1e-6)
    # curling: transverse radius 0.1/(0.003) = 33 cm < 95/2
    assert np.isnan(path_to_cylinder(np.zeros((1, 3)), np.array([[1.0, 0, 0]]), np.array([0.03]), 95.0)[0])


def test_photons_hit_the_crystal_they_point_at():
    geo = barrel_geometry()
    target = geo.front_center_cm[[3, 21, 40], [7, 60, 119]]
    hit = propagate_to_front(np.zeros((3, 3)), target / np.linalg.norm(target, axis=1, keepdims=True), np.zeros(3))
    assert hit.hit.all()
    assert list(hit.theta_index) == [3, 21, 40] and list(hit.phi_index) == [7, 60, 119]
    assert np.allclose(hit.position_cm, target, atol=1e-6)
    t, p, ok = crystal_at_front(hit.position_cm)
    assert ok.all() and list(t) == [3, 21, 40]


def test_tracks_that_miss_the_barrel_are_reported():
    p = np.array([[0.05, 0.0, 0.0], [0.0, 0.1, 1.0], [0.0, 0.0, 1.0]])
    hit = propagate_to_front(np.zeros((3, 3)), p, np.array([-1, 0, 0]))
    assert not hit.hit.any()
    assert np.all(hit.theta_index == -1) and np.isnan(hit.position_cm).all()


@pytest.mark.parametrize(
    "shortcut", ["CLEAR_HIT_SLACK_CM", "PRUNE_SLACK_CM"], ids=["clear hits skip the search", "far faces dropped"]
)
def test_shortcuts_do_not_change_the_answer(monkeypatch, shortcut):
    """Most tracks skip the search over neighbouring faces, and the search drops most candidate faces
    before its Newton steps; the answer must be the one without either shortcut, also for displaced
    vertices and slow curling tracks that meet the stepped front surface obliquely."""
    rng = np.random.default_rng(5)
    n = 20_000
    p = np.exp(rng.uniform(np.log(0.05), np.log(3.0), n))
    cos_t, phi = rng.uniform(-0.9, 0.9, n), rng.uniform(0, 2 * np.pi, n)
    sin_t = np.sqrt(1 - cos_t**2)
    mom = p[:, None] * np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
    vertex = rng.normal(0.0, [1.0, 1.0, 10.0], (n, 3))
    charge = rng.choice([-1, 0, 1], n)
    fast = propagate_to_front(vertex, mom, charge)
    monkeypatch.setattr(f"caloforge.detector.transport.{shortcut}", np.inf)  # every track / face searched
    full = propagate_to_front(vertex, mom, charge)
    assert 0.5 < fast.hit.mean() < 0.95
    assert np.array_equal(fast.hit, full.hit)
    assert np.array_equal(fast.theta_index, full.theta_index) and np.array_equal(fast.phi_index, full.phi_index)
    h = fast.hit
    assert np.allclose(fast.position_cm[h], full.position_cm[h], atol=1e-4)
    assert np.allclose(fast.momentum_gev[h], full.momentum_gev[h], atol=1e-6)


def test_entry_points_lie_on_the_face_they_enter():
    """Every reported entry point is on the plane of its crystal's front face (Newton converged) and
    inside that face, or within the side tolerance of it."""
    from caloforge.detector.geometry import _face_score
    from caloforge.detector.transport import PLANE_TOLERANCE_CM, SIDE_TOLERANCE_CM

    rng = np.random.default_rng(11)
    n = 20_000
    p = np.exp(rng.uniform(np.log(0.13), np.log(3.0), n))  # many slow tracks near the curling limit
    cos_t, phi = rng.uniform(-0.85, 0.85, n), rng.uniform(0, 2 * np.pi, n)
    sin_t = np.sqrt(1 - cos_t**2)
    mom = p[:, None] * np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
    hit = propagate_to_front(rng.normal(0.0, [0.5, 0.5, 5.0], (n, 3)), mom, rng.choice([-1, 1], n))
    h = hit.hit
    geo = barrel_geometry()
    t, k = hit.theta_index[h], hit.phi_index[h]
    off_plane = np.einsum("nk,nk->n", geo.axis[t, k], hit.position_cm[h] - geo.front_center_cm[t, k])
    assert np.abs(off_plane).max() < PLANE_TOLERANCE_CM
    assert _face_score(hit.position_cm[h], t, k).min() > -SIDE_TOLERANCE_CM


def test_compiled_loops_refuse_arrays_of_the_wrong_kind():
    """The C loops get raw addresses: a wrong dtype, order or length is refused before the call."""
    from caloforge import _compiled

    x0, u0, omega = np.zeros((4, 3)), np.tile([1.0, 0.0, 0.0], (4, 1)), np.zeros(4)
    pos, dirn = np.empty((4, 3)), np.empty((4, 3))
    _compiled.helix_points(x0, u0, omega, np.full(4, 10.0), pos, dirn)
    assert np.allclose(pos[:, 0], 10.0)
    for bad in (np.full(4, 10.0, dtype=np.float32), np.full(3, 10.0), np.full(8, 10.0)[::2]):
        with pytest.raises(TypeError, match="C-ordered float64"):
            _compiled.helix_points(x0, u0, omega, bad, pos, dirn)
    with pytest.raises(TypeError, match="float32"):
        _compiled.place_showers(np.zeros((2, 11, 11)), *(np.zeros(2, dtype=np.int64),) * 3)
