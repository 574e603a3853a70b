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
NEWTON_MAX_STEPS = 8
"""At most this many Newton steps to a face plane (two are usual for charged tracks, one for photons)."""
PRUNE_SLACK_CM = 0.1
"""Extra margin of the test that drops candidate faces in :func:`_search_faces` before the Newton steps."""
PRUNE_MAX_BEND_CM = 0.5
"""That test is made only where the helix stays this close to its tangent (not for grazing tracks)."""
PLANE_TOLERANCE_CM = 1e-5
"""Newton steps to a face plane stop this close to it; a face whose plane they do not reach (grazing
tracks can meet a plane twice or not at all) is not crossed."""
CLEAR_HIT_SLACK_CM = 0.2
"""Slack of the test that lets most tracks skip the search over :data:`TRANSPORT_OFFSETS` (see
:func:`propagate_to_front`): covers the tilt between neighbouring faces across a face width."""


class _Helix:
    """Helices (or straight lines where omega = 0) of tracks, with the quantities that do not change
    along them computed once; :meth:`at` gives position and unit direction after a path length.

    The chord form ``chord = u_T s sinc(omega s / 2pi)`` along the mid-angle ``phi0 - omega s / 2`` is
    stable at omega = 0. When every track is neutral, the straight line is evaluated directly."""

    def __init__(self, position_cm: np.ndarray, direction: np.ndarray, omega_per_cm: np.ndarray) -> None:
        self.position_cm, self.direction, self.omega_per_cm = position_cm, direction, omega_per_cm
        self.ut = np.hypot(direction[..., 0], direction[..., 1])
        self.phi0 = np.arctan2(direction[..., 1], direction[..., 0])
        self.straight = not np.any(omega_per_cm)

    def take(self, index: np.ndarray) -> _Helix:
        """The helices of the tracks ``index`` (of helices made from 1-D arrays of tracks)."""
        part = object.__new__(_Helix)
        for name in ("position_cm", "direction", "omega_per_cm", "ut", "phi0"):
            setattr(part, name, getattr(self, name)[index])
        part.straight = self.straight or not np.any(part.omega_per_cm)
        return part

    def at(self, path_cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position (cm) and unit direction after ``path_cm``, broadcast against the tracks."""
        if self.straight:
            pos = self.position_cm + self.direction * np.asarray(path_cm)[..., None]
            return pos, np.broadcast_to(self.direction, pos.shape)
        x0, uz, ut, phi0 = self.position_cm, self.direction[..., 2], self.ut, self.phi0
        ws = self.omega_per_cm * path_cm
        mid = phi0 - 0.5 * ws
        chord = ut * path_cm * np.sinc(ws / (2 * np.pi))  # sin(ws/2)/(ws/2)
        pos = np.stack(
            [x0[..., 0] + chord * np.cos(mid), x0[..., 1] + chord * np.sin(mid), x0[..., 2] + uz * path_cm], axis=-1
        )
        end = phi0 - ws
        dirn = np.stack([ut * np.cos(end), ut * np.sin(end), np.broadcast_to(uz, end.shape)], axis=-1)
        return pos, dirn


def helix_at(
    position_cm: np.ndarray, direction: np.ndarray, omega_per_cm: np.ndarray, path_cm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Position and unit direction after ``path_cm`` of helix (or straight line where omega = 0).

    All arguments broadcast; ``position_cm`` and ``direction`` carry a last axis of 3.
    """
    x0, u0 = np.asarray(position_cm, dtype=np.float64), np.asarray(direction, dtype=np.float64)
    return _Helix(x0, u0, np.asarray(omega_per_cm, dtype=np.float64)).at(path_cm)


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


@cache
def face_radius_cm() -> np.ndarray:
    """(44, 120) largest distance from a crystal's front-face centre to its corners, cm."""
    geo = barrel_geometry()
    radius = np.linalg.norm(geo.front_vertices_cm - geo.front_center_cm[..., None, :], axis=-1).max(axis=-1)
    radius.flags.writeable = False
    return radius


def prepare_transport() -> None:
    """Build the geometry tables :func:`propagate_to_front` uses (the crystal table, the face edge planes,
    :func:`neighbour_depth_cm` and :func:`face_radius_cm`), so that the first call does not pay for them."""
    barrel_geometry().face_edges
    neighbour_depth_cm()
    face_radius_cm()


def _newton_to_plane(
    helix: _Helix,
    normal: np.ndarray,
    point: np.ndarray,
    s: np.ndarray,
    at: tuple[np.ndarray, np.ndarray] | None = None,
    active: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the helices (N,) cross the planes through ``point`` (N, 3) with ``normal`` (N, 3): Newton
    steps from the paths ``s`` (N,), each to the crossing of the tangent (exact on straight lines), until
    the point is within :data:`PLANE_TOLERANCE_CM` of its plane or :data:`NEWTON_MAX_STEPS` are made.
    ``at``: the helices' positions and directions at ``s``, if known; ``active``: (N,) bool, the helices
    to follow (default all; the others keep ``s`` and count as not converged).

    Returns ``(path_cm, position_cm, direction, converged)``."""
    pos, dirn = at if at is not None else helix.at(s)
    s, pos, dirn = np.array(s, dtype=np.float64), np.array(pos), np.array(dirn)
    todo = np.arange(len(s)) if active is None else np.flatnonzero(active)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(NEWTON_MAX_STEPS):
            off = np.einsum("mk,mk->m", normal[todo], pos[todo] - point[todo])
            moving = np.abs(off) >= PLANE_TOLERANCE_CM  # False for NaN: those stay unconverged
            todo, off = todo[moving], off[moving]
            if not len(todo):
                break
            s[todo] -= off / np.einsum("mk,mk->m", normal[todo], dirn[todo])
            pos[todo], dirn[todo] = helix.take(todo).at(s[todo])
        converged = np.abs(np.einsum("mk,mk->m", normal, pos - point)) < PLANE_TOLERANCE_CM
    if active is not None:
        converged &= active
    return s, pos, dirn, converged


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
    helix = _Helix(x0, u0, w)

    # first guess where the track crosses r = 95 cm, refined on the plane of that crystal's face
    s_guess = path_to_cylinder(x0, u0, w, GUESS_RADIUS_CM)
    reach = np.isfinite(s_guess)
    s_guess = np.where(reach, s_guess, 0.0)
    geo = barrel_geometry()
    pos_guess, dir_guess = helix.at(s_guess)
    t0, k0 = guess_crystal(pos_guess)
    cell0 = t0 * N_PHI + k0
    normal = np.take(geo.axis.reshape(-1, 3), cell0, axis=0)
    point = np.take(geo.front_center_cm.reshape(-1, 3), cell0, axis=0)
    s1, pos1, dir1, on_plane = _newton_to_plane(
        helix, normal, point, s_guess, at=(pos_guess, dir_guess), active=reach
    )

    lost = ~np.isfinite(s1)  # no crossing: the search starts from the cylinder point
    s1[lost], pos1[lost], dir1[lost] = s_guess[lost], pos_guess[lost], dir_guess[lost]

    # A track that crosses its first-guess face well inside the edges hits it first: no neighbouring
    # face, at most neighbour_depth_cm in front along the axis, can be reached by a track that drifts
    # sideways by less than that depth times tan(angle to the axis) before it gets here.
    cos_axis = np.abs(np.einsum("nc,nc->n", dir1, normal)).clip(1e-6, 1.0)
    drift = np.take(neighbour_depth_cm(), cell0) * np.sqrt(1.0 - cos_axis**2) / cos_axis
    clear = reach & on_plane & (s1 > 0) & (_face_score(pos1, t0, k0) > drift + CLEAR_HIT_SLACK_CM)
    hit, s, t, ph = clear.copy(), s1.copy(), t0.copy(), k0.copy()
    position, direction = pos1, dir1
    rest = np.flatnonzero(~clear & reach)
    hit[rest], s[rest], t[rest], ph[rest], position[rest], direction[rest] = _search_faces(
        helix.take(rest), s1[rest], pos1[rest], dir1[rest]
    )
    return FrontHit(
        position_cm=np.where(hit[:, None], position, np.nan),
        momentum_gev=np.where(hit[:, None], direction * pmag[:, None], np.nan),
        theta_index=np.where(hit, t, -1),
        phi_index=np.where(hit, ph, -1),
        hit=hit,
        path_cm=np.where(hit, s, np.nan),
    )


def _search_faces(
    helix: _Helix, s1: np.ndarray, pos1: np.ndarray, dir1: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The first front face crossed among the :data:`TRANSPORT_OFFSETS` crystals around the helix point
    ``pos1`` (N, 3) at path ``s1`` (N,), where its direction is ``dir1``:
    ``(hit, path_cm, theta_index, phi_index, position_cm, direction)``.

    Every candidate face starts from the crossing of the tangent at ``pos1`` with its plane. A candidate
    whose tangent crossing lies so far from its face centre that the helix crossing, which can bend away
    from the tangent crossing by a bounded amount, is more than :data:`SIDE_TOLERANCE_CM` outside the face
    can be neither entered nor the nearest face within that tolerance: it is dropped before the Newton
    steps (most candidates are)."""
    geo = barrel_geometry()
    n = len(s1)
    t, ph, valid = candidate_crystals(pos1, TRANSPORT_OFFSETS)  # (N, C)
    cell = t * N_PHI + ph
    normal = np.take(geo.axis.reshape(-1, 3), cell, axis=0)  # np.take: much faster than fancy indexing
    point = np.take(geo.front_center_cm.reshape(-1, 3), cell, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = pos1[:, None, :] - point
        along = np.einsum("nck,nk->nc", normal, dir1)
        step = -np.einsum("nck,nck->nc", normal, diff) / along
        diff += step[..., None] * dir1[:, None, :]  # tangent crossing - face centre
        # the helix leaves its tangent by at most step^2 |omega| / 2, which moves the crossing by that
        # times (1 + 1 / cos) within the plane; twice that as the margin, and sqrt(2) for the corners
        bend = step**2 * np.abs(helix.omega_per_cm)[:, None] * (1.0 + 1.0 / np.abs(along))
        reach = np.take(face_radius_cm(), cell) + np.sqrt(2.0) * (SIDE_TOLERANCE_CM + PRUNE_SLACK_CM + bend)
        far = (bend < PRUNE_MAX_BEND_CM) & (np.einsum("nck,nck->nc", diff, diff) > reach**2)
        keep = valid & np.isfinite(step) & ~far
    track, cand = np.nonzero(keep)
    tk, pk = t[track, cand], ph[track, cand]
    s_pair, pos_pair, dir_pair, on_plane = _newton_to_plane(
        helix.take(track), normal[track, cand], point[track, cand], s1[track] + step[track, cand]
    )
    score = np.full(t.shape, -np.inf)
    score[track, cand] = np.where(on_plane & (s_pair > 0), _face_score(pos_pair, tk, pk), -np.inf)
    s = np.full(t.shape, np.inf)
    s[track, cand] = s_pair
    pair_index = np.zeros(t.shape, dtype=np.int64)
    pair_index[track, cand] = np.arange(len(track))

    inside = score > -GAP_TOLERANCE_CM
    first = np.argmin(np.where(inside, s, np.inf), axis=1)
    nearest = np.argmax(score, axis=1)
    any_inside = inside.any(axis=1)
    pick = np.where(any_inside, first, nearest)
    rows = np.arange(n)
    hit = any_inside | (score[rows, nearest] > -SIDE_TOLERANCE_CM)
    chosen = pair_index[rows, pick]  # meaningful where hit: a hit's pick always has a score, so a pair
    pos, dirn = (pos_pair[chosen], dir_pair[chosen]) if len(track) else (np.full((n, 3), np.nan),) * 2
    return hit, s[rows, pick], t[rows, pick], ph[rows, pick], pos, dirn
