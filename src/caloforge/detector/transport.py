"""Transport of particles to the EMC barrel front surface: straight lines and helices in the 1 T field.

The solenoid field is uniform along +z. A particle of charge ``q`` (units of e) and momentum ``p``
(GeV/c) moves on a helix whose transverse direction turns by ``omega = q * B * K / p`` rad per cm of
path, with ``K = 0.00299792458 GeV/(T cm)``; positive charges turn clockwise seen from +z. Photons
(``q = 0``) move on straight lines. The front surface is the set of crystal front faces; a track hits
the crystal whose face it crosses first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from caloforge.detector.geometry import N_PHI, _face_score, barrel_geometry, candidate_crystals, guess_crystal

K_GEV_PER_T_CM = 0.00299792458
"""p_T [GeV/c] = K * B [T] * R [cm] for a unit charge."""
B_FIELD_T = 1.0
"""BESIII solenoid field along +z."""
GUESS_RADIUS_CM = 95.0
"""Cylinder used to find the first candidate crystals (the front faces lie at r = 94.0-96.2 cm)."""
BARREL_INNER_RADIUS_CM = 94.0
"""Smallest radius of any barrel crystal corner."""
GAP_TOLERANCE_CM = 0.05
"""A crossing this close outside a face edge (in the 0.6 mm wrapping gap) still counts as a hit."""
SIDE_TOLERANCE_CM = 1.0
"""Tracks entering a crystal through its side (stepped front surface) are matched to the nearest face."""
TRANSPORT_OFFSETS = np.array([(dt, dp) for dt in (-1, 0, 1) for dp in (-2, -1, 0, 1, 2)])
"""Crystals searched around the refined guess; +-2 in phi for tracks that graze the surface."""
CLEAR_HIT_SLACK_CM = 0.2
"""Slack of the test that lets most tracks skip the search over :data:`TRANSPORT_OFFSETS` (see
:func:`propagate_to_front`): covers the tilt between neighbouring faces across a face width."""


def helix_at(
    position_cm: np.ndarray, direction: np.ndarray, omega_per_cm: np.ndarray, path_cm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Position and unit direction after ``path_cm`` of helix (or straight line where omega = 0).

    All arguments broadcast; ``position_cm`` and ``direction`` carry a last axis of 3.
    """
    ux, uy, uz = direction[..., 0], direction[..., 1], direction[..., 2]
    ut = np.hypot(ux, uy)
    phi0 = np.arctan2(uy, ux)
    ws = omega_per_cm * path_cm
    mid = phi0 - 0.5 * ws
    chord = ut * path_cm * np.sinc(ws / (2 * np.pi))  # sin(ws/2)/(ws/2), stable at omega = 0
    pos = np.stack(
        [
            position_cm[..., 0] + chord * np.cos(mid),
            position_cm[..., 1] + chord * np.sin(mid),
            position_cm[..., 2] + uz * path_cm,
        ],
        axis=-1,
    )
    end = phi0 - ws
    dirn = np.stack([ut * np.cos(end), ut * np.sin(end), np.broadcast_to(uz, end.shape)], axis=-1)
    return pos, dirn


def path_to_cylinder(
    position_cm: np.ndarray, direction: np.ndarray, omega_per_cm: np.ndarray, radius_cm: float
) -> np.ndarray:
    """Path length (cm) along the helix to the first crossing of the cylinder ``r = radius_cm``.

    NaN where the track never reaches that radius (curling charged particles, or tracks along z).
    """
    x0, y0 = position_cm[..., 0], position_cm[..., 1]
    ux, uy = direction[..., 0], direction[..., 1]
    ut = np.hypot(ux, uy)
    with np.errstate(divide="ignore", invalid="ignore"):
        # straight line: |x0 + u s|^2 = R^2 in the transverse plane
        b = x0 * ux + y0 * uy
        c = x0**2 + y0**2 - radius_cm**2
        disc = b**2 - ut**2 * c
        s_line = (-b + np.sqrt(disc)) / ut**2
        # helix: circle of radius a = ut/omega around C; see the module docstring for the sign
        phi0 = np.arctan2(uy, ux)
        a = ut / omega_per_cm
        cx = x0 + a * np.sin(phi0)
        cy = y0 - a * np.cos(phi0)
        cnorm = np.hypot(cx, cy)
        q = (radius_cm**2 - cnorm**2 - a**2) / (2 * a * cnorm)
        gamma = np.arctan2(cy, cx)
        asin_q = np.arcsin(np.clip(q, -1.0, 1.0))
        sgn = np.sign(omega_per_cm)
        best = np.full(np.shape(q), np.inf)
        for psi in (gamma - asin_q, gamma - (np.pi - asin_q)):
            turn = np.mod((phi0 - psi) * sgn, 2 * np.pi)
            best = np.minimum(best, turn / np.abs(omega_per_cm))
        s_helix = np.where(np.abs(q) <= 1.0, best, np.nan)
    neutral = omega_per_cm == 0
    return np.where(neutral, np.where(disc >= 0, s_line, np.nan), s_helix)


@dataclass(frozen=True)
class FrontHit:
    """Where tracks cross the EMC barrel front surface.

    Attributes:
        position_cm: (N, 3) crossing point on the front face of the hit crystal.
        momentum_gev: (N, 3) momentum there (the field changes only its direction).
        theta_index, phi_index: (N,) hit crystal; -1 where ``hit`` is False.
        hit: (N,) whether the track reaches the barrel front surface.
        path_cm: (N,) path length from the start point.
    """

    position_cm: np.ndarray
    momentum_gev: np.ndarray
    theta_index: np.ndarray
    phi_index: np.ndarray
    hit: np.ndarray
    path_cm: np.ndarray


def omega_per_cm(momentum_gev: np.ndarray, charge: np.ndarray, b_field_t: float = B_FIELD_T) -> np.ndarray:
    """Turning rate of the transverse direction per cm of path, ``q B K / |p|`` (rad/cm)."""
    p = np.linalg.norm(momentum_gev, axis=-1)
    return np.asarray(charge, dtype=np.float64) * b_field_t * K_GEV_PER_T_CM / p


@cache
def neighbour_depth_cm() -> np.ndarray:
    """(44, 120) largest distance, along a crystal's axis, between its front-face centre and those of its
    8 neighbours, cm: how far the stepped front surface can reach in front of or behind a face (0.4 cm in
    the middle rings, 7.2 cm at the barrel ends, where the faces are steeply inclined)."""
    geo = barrel_geometry()
    centre, axis = geo.front_center_cm, geo.axis  # (44, 120, 3) each
    depth = np.zeros(centre.shape[:2])
    for dt in (-1, 0, 1):
        lo, hi = max(0, -dt), centre.shape[0] - max(0, dt)  # rings t with a neighbour t + dt
        for dp in (-1, 0, 1):
            other = np.roll(centre[lo + dt : hi + dt], -dp, axis=1)  # (rings, 120, 3) neighbour (t + dt, k + dp)
            step = np.abs(np.einsum("tkc,tkc->tk", other - centre[lo:hi], axis[lo:hi]))
            depth[lo:hi] = np.maximum(depth[lo:hi], step)
    depth.flags.writeable = False
    return depth


def prepare_transport() -> None:
    """Build the geometry tables :func:`propagate_to_front` uses (the crystal table, the face edge planes
    and :func:`neighbour_depth_cm`), so that the first call does not pay for them."""
    barrel_geometry().face_edges
    neighbour_depth_cm()


def _path_to_plane(
    x0: np.ndarray, u0: np.ndarray, w: np.ndarray, normal: np.ndarray, point: np.ndarray, s: np.ndarray, iterations: int
) -> np.ndarray:
    """Path length where the helix crosses the plane through ``point`` with ``normal`` (Newton from ``s``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(iterations):
            pos, dirn = helix_at(x0, u0, w, s)
            s = s - np.einsum("...k,...k->...", normal, pos - point) / np.einsum("...k,...k->...", normal, dirn)
    return s


def propagate_to_front(
    position_cm: np.ndarray,
    momentum_gev: np.ndarray,
    charge: np.ndarray,
    b_field_t: float = B_FIELD_T,
) -> FrontHit:
    """Follow tracks (no material) from a start point to the crystal front face they cross first.

    Args:
        position_cm: (N, 3) start points inside the barrel's inner radius (e.g. the origin).
        momentum_gev: (N, 3) momenta at the start points, GeV/c.
        charge: (N,) charges in units of e (0 for photons).
        b_field_t: solenoid field along +z in T.

    Returns:
        A :class:`FrontHit`; tracks that curl before the barrel or leave through its ends have
        ``hit = False``.
    """
    x0 = np.atleast_2d(np.asarray(position_cm, dtype=np.float64))
    p0 = np.atleast_2d(np.asarray(momentum_gev, dtype=np.float64))
    q = np.broadcast_to(np.asarray(charge, dtype=np.float64), x0.shape[:1])
    pmag = np.linalg.norm(p0, axis=-1)
    u0 = p0 / pmag[:, None]
    w = omega_per_cm(p0, q, b_field_t)

    # first guess where the track crosses r = 95 cm, refined on the plane of that crystal's face
    s_guess = path_to_cylinder(x0, u0, w, GUESS_RADIUS_CM)
    reach = np.isfinite(s_guess)
    s_guess = np.where(reach, s_guess, 0.0)
    iterations = 1 if np.all(w == 0) else 3  # Newton converges in one step on straight lines
    geo = barrel_geometry()
    t0, k0 = guess_crystal(helix_at(x0, u0, w, s_guess)[0])
    s1 = _path_to_plane(x0, u0, w, geo.axis[t0, k0], geo.front_center_cm[t0, k0], s_guess, iterations)
    s1 = np.where(np.isfinite(s1), s1, s_guess)

    # A track that crosses its first-guess face well inside the edges hits it first: no neighbouring
    # face, at most neighbour_depth_cm in front along the axis, can be reached by a track that drifts
    # sideways by less than that depth times tan(angle to the axis) before it gets here.
    pos1, dir1 = helix_at(x0, u0, w, s1)
    cos_axis = np.abs(np.einsum("nc,nc->n", dir1, geo.axis[t0, k0])).clip(1e-6, 1.0)
    drift = neighbour_depth_cm()[t0, k0] * np.sqrt(1.0 - cos_axis**2) / cos_axis
    clear = reach & (s1 > 0) & (_face_score(pos1, t0, k0) > drift + CLEAR_HIT_SLACK_CM)
    hit, s, t, ph = clear.copy(), s1.copy(), t0.copy(), k0.copy()
    position, direction = pos1, dir1
    rest = np.flatnonzero(~clear)
    if len(rest):
        found = _search_faces(x0[rest], u0[rest], w[rest], s1[rest], reach[rest], iterations)
        hit[rest], s[rest], t[rest], ph[rest], position[rest], direction[rest] = found
    return FrontHit(
        position_cm=np.where(hit[:, None], position, np.nan),
        momentum_gev=np.where(hit[:, None], direction * pmag[:, None], np.nan),
        theta_index=np.where(hit, t, -1),
        phi_index=np.where(hit, ph, -1),
        hit=hit,
        path_cm=np.where(hit, s, np.nan),
    )


def _search_faces(
    x0: np.ndarray, u0: np.ndarray, w: np.ndarray, s1: np.ndarray, reach: np.ndarray, iterations: int
) -> tuple[np.ndarray, ...]:
    """The first front face crossed among the :data:`TRANSPORT_OFFSETS` crystals around the helix point at
    path ``s1`` (N,): ``(hit, path_cm, theta_index, phi_index, position_cm, direction)``."""
    geo = barrel_geometry()
    t, ph, valid = candidate_crystals(helix_at(x0, u0, w, s1)[0], TRANSPORT_OFFSETS)  # (N, C)
    xs, us, ws = x0[:, None, :], u0[:, None, :], w[:, None]
    s = _path_to_plane(
        xs, us, ws, geo.axis[t, ph], geo.front_center_cm[t, ph], np.repeat(s1[:, None], t.shape[1], 1), iterations
    )
    pos, dirn = helix_at(xs, us, ws, s)
    score = _face_score(pos, t, ph)
    usable = valid & np.isfinite(s) & (s > 0) & reach[:, None]
    score = np.where(usable, score, -np.inf)

    inside = score > -GAP_TOLERANCE_CM
    first = np.argmin(np.where(inside, s, np.inf), axis=1)
    nearest = np.argmax(score, axis=1)
    any_inside = inside.any(axis=1)
    pick = np.where(any_inside, first, nearest)
    rows = np.arange(len(x0))
    hit = any_inside | (score[rows, nearest] > -SIDE_TOLERANCE_CM)
    return hit, s[rows, pick], t[rows, pick], ph[rows, pick], pos[rows, pick], dirn[rows, pick]
