"""BESIII EMC barrel crystal geometry, read once from pybes3's crystal table.

Units and conventions (the one place they are stated; see also ``docs/conventions.md``):

* lengths in cm, momenta in GeV/c, energies in GeV, angles in rad, the magnetic field in T;
* the global frame is BESIII's: z along the beam (the solenoid field points along +z), polar angle
  theta from +z, azimuth phi = atan2(y, x);
* a barrel crystal is addressed by ``(theta_index, phi_index)`` with ``theta_index`` 0..43 (ring 0 at +z,
  ring 43 at -z) and ``phi_index`` 0..119 increasing with phi; BESIII's identifier is
  ``(part=1, theta=theta_index, phi=phi_index)`` and pybes3's global id is ``480 + 120 * theta + phi``;
* crystal vertices follow pybes3: 0-3 on the front face, 4-7 on the back face, edge k joins k and k+4.

All arrays returned here are read-only views of one cached table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

N_THETA = 44
"""Number of barrel rings in theta."""
N_PHI = 120
"""Number of barrel crystals in each ring."""
N_BARREL = N_THETA * N_PHI
BARREL_PART = 1
"""BESIII ``part`` identifier of the barrel (0 and 2 are the endcaps)."""
BARREL_GID_OFFSET = 480
"""pybes3 global id of barrel crystal (theta 0, phi 0)."""
WINDOW = 11
"""Side of the hit map window in crystals."""


@dataclass(frozen=True)
class BarrelGeometry:
    """Positions of the 5280 barrel crystals, indexed ``[theta_index, phi_index]``.

    Attributes:
        vertices_cm: (44, 120, 8, 3) crystal corners, 0-3 front face, 4-7 back face.
        center_cm: (44, 120, 3) centre of the crystal volume.
        front_center_cm: (44, 120, 3) centre of the front face.
        axis: (44, 120, 3) unit normal of the front face pointing out of the detector (front to back);
            the crystal direction used for ``dtheta_mom``/``dphi_mom``.
        length_cm: (44, 120) crystal length along ``axis``.
        gid: (44, 120) pybes3 global crystal id.
    """

    vertices_cm: np.ndarray
    center_cm: np.ndarray
    front_center_cm: np.ndarray
    axis: np.ndarray
    length_cm: np.ndarray
    gid: np.ndarray

    @property
    def front_vertices_cm(self) -> np.ndarray:
        """(44, 120, 4, 3) corners of the front faces."""
        return self.vertices_cm[:, :, :4]

    @functools.cached_property
    def ring_theta_rad(self) -> np.ndarray:
        """(44,) polar angle of the front-face centres of each ring (the same for every phi)."""
        fc = self.front_center_cm[:, 0]
        return np.arctan2(np.hypot(fc[:, 0], fc[:, 1]), fc[:, 2])

    @functools.cached_property
    def face_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Edge lines of the front faces: inward unit normals (44, 120, 4, 3) lying in the face plane
        and offsets (44, 120, 4) in cm, so that ``normals . x - offsets`` is the distance of the
        projection of ``x`` inside each edge (positive inside)."""
        fv = self.front_vertices_cm
        edges = np.roll(fv, -1, axis=-2) - fv  # edge k from vertex k to k+1
        inward = np.cross(self.axis[..., None, :], edges)
        inward /= np.linalg.norm(inward, axis=-1, keepdims=True)
        inward *= np.sign(np.einsum("...kc,...kc->...k", inward, self.front_center_cm[..., None, :] - fv))[..., None]
        return _readonly(inward), _readonly(np.einsum("...kc,...kc->...k", inward, fv))

    @functools.cached_property
    def ring_phi0_rad(self) -> np.ndarray:
        """(44,) azimuth of the front-face centre of crystal ``phi_index = 0`` in each ring."""
        fc = self.front_center_cm[:, 0]
        return np.arctan2(fc[:, 1], fc[:, 0])


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@functools.cache
def barrel_geometry() -> BarrelGeometry:
    """The barrel geometry from pybes3's ``emc_geom`` table (loaded once, read-only)."""
    import pybes3

    table = pybes3.emc.get_emc_geom_table()
    barrel = table["part"] == BARREL_PART
    theta = table["theta"][barrel].astype(np.int64)
    phi = table["phi"][barrel].astype(np.int64)
    if barrel.sum() != N_BARREL or theta.max() != N_THETA - 1 or phi.max() != N_PHI - 1:
        raise RuntimeError("pybes3's EMC table does not hold the expected 44 x 120 barrel crystals")
    order = np.lexsort((phi, theta))  # theta-major, then phi

    def col(name: str) -> np.ndarray:
        return table[name][barrel][order]

    vertices = np.stack(
        [np.stack([col(f"points_{c}_{k}") for c in "xyz"], axis=-1) for k in range(8)], axis=1
    ).reshape(N_THETA, N_PHI, 8, 3)
    center = np.stack([col(f"center_{c}") for c in "xyz"], axis=-1).reshape(N_THETA, N_PHI, 3)
    front = np.stack([col(f"front_center_{c}") for c in "xyz"], axis=-1).reshape(N_THETA, N_PHI, 3)
    gid = col("gid").astype(np.int64).reshape(N_THETA, N_PHI)

    fv = vertices[:, :, :4]
    normal = np.cross(fv[:, :, 2] - fv[:, :, 0], fv[:, :, 3] - fv[:, :, 1])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    outward = np.sign(np.einsum("tpk,tpk->tp", normal, center - front))[..., None]
    axis = normal * outward
    back_center = vertices[:, :, 4:].mean(axis=2)
    length = np.einsum("tpk,tpk->tp", back_center - front, axis)

    return BarrelGeometry(
        vertices_cm=_readonly(vertices),
        center_cm=_readonly(center),
        front_center_cm=_readonly(front),
        axis=_readonly(axis),
        length_cm=_readonly(length),
        gid=_readonly(gid),
    )


def crystal_gid(theta_index: np.ndarray | int, phi_index: np.ndarray | int) -> np.ndarray:
    """pybes3 global crystal id of barrel crystals (``480 + 120 * theta_index + phi_index``)."""
    return BARREL_GID_OFFSET + N_PHI * np.asarray(theta_index) + np.asarray(phi_index)


def window_indices(
    theta_index: np.ndarray | int, phi_index: np.ndarray | int, size: int = WINDOW
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``size x size`` window of crystals around centre crystals.

    Rows run over theta (increasing ``theta_index``), columns over phi (increasing ``phi_index``),
    the centre crystal at ``[size // 2, size // 2]``. Phi wraps around (119 is next to 0); rows that
    pass the barrel ends (``theta_index < 0`` or ``> 43``) are marked outside and their indices are
    set to -1, so they can never be mistaken for real crystals.

    Args:
        theta_index, phi_index: centre crystals, any matching shape ``S``.
        size: odd window side in crystals.

    Returns:
        ``(theta, phi, inside)``, each of shape ``S + (size, size)``.
    """
    if size % 2 != 1 or size < 1:
        raise ValueError(f"window size must be a positive odd number, got {size}")
    t = np.asarray(theta_index, dtype=np.int64)
    p = np.asarray(phi_index, dtype=np.int64)
    half = size // 2
    offsets = np.arange(-half, half + 1)
    rows = t[..., None, None] + offsets[:, None]  # (..., size, 1)
    cols = (p[..., None, None] + offsets[None, :]) % N_PHI  # (..., 1, size)
    shape = t.shape + (size, size)
    rows = np.broadcast_to(rows, shape)
    cols = np.broadcast_to(cols, shape)
    inside = (rows >= 0) & (rows < N_THETA)
    return np.where(inside, rows, -1), np.where(inside, cols, -1), inside


def extract_window(
    energy_map_gev: np.ndarray, theta_index: np.ndarray, phi_index: np.ndarray, size: int = WINDOW
) -> np.ndarray:
    """Cut ``size x size`` windows out of full barrel maps.

    Args:
        energy_map_gev: (N, 44, 120) energy per crystal.
        theta_index, phi_index: (N,) centre crystals.

    Returns:
        (N, size, size) energies; rows outside the barrel are zero.
    """
    rows, cols, inside = window_indices(theta_index, phi_index, size)
    n = np.arange(len(energy_map_gev))[:, None, None]
    out = energy_map_gev[n, np.clip(rows, 0, None), np.clip(cols, 0, None)]
    return np.where(inside, out, 0.0)


def _face_score(points_cm: np.ndarray, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """How far inside the front face of crystal (theta, phi) a point lies, in cm.

    The point is projected along the face normal onto the face plane; the score is the smallest
    distance to the four edges, positive inside the face and negative outside.
    """
    normals, offsets = barrel_geometry().face_edges
    cell = np.asarray(theta) * N_PHI + np.asarray(phi)  # np.take on the flat tables: faster than [theta, phi]
    edge_normals = np.take(normals.reshape(-1, 4, 3), cell, axis=0)
    dist = np.einsum("...kc,...c->...k", edge_normals, points_cm) - np.take(offsets.reshape(-1, 4), cell, axis=0)
    return dist.min(axis=-1)


def guess_crystal(points_cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest crystal by polar angle and azimuth of the front-face centres (a first guess).

    Returns ring and phi indices; rings are clipped to 0..43 (use :func:`crystal_at_front` for the
    exact answer, which also tells whether the point is on the barrel at all).
    """
    geo = barrel_geometry()
    pts = np.nan_to_num(np.asarray(points_cm, dtype=np.float64))
    theta = np.arctan2(np.hypot(pts[..., 0], pts[..., 1]), pts[..., 2])
    ring_theta = geo.ring_theta_rad  # increasing with ring index
    ring = np.clip(np.searchsorted(ring_theta, theta), 1, N_THETA - 1)
    ring = np.where(theta - ring_theta[ring - 1] < ring_theta[ring] - theta, ring - 1, ring)
    phi = np.arctan2(pts[..., 1], pts[..., 0])
    k = np.rint((phi - geo.ring_phi0_rad[ring]) / (2 * np.pi / N_PHI)).astype(np.int64) % N_PHI
    return ring, k


CANDIDATE_OFFSETS = np.array([(dt, dp) for dt in (-2, -1, 0, 1, 2) for dp in (-1, 0, 1)])
"""(theta, phi) offsets searched around the first guess."""


def candidate_crystals(
    points_cm: np.ndarray, offsets: np.ndarray = CANDIDATE_OFFSETS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate crystals around the first guess: (theta, phi, valid), each ``S + (len(offsets),)``."""
    ring, k = guess_crystal(points_cm)
    t = ring[..., None] + offsets[:, 0]
    p = (k[..., None] + offsets[:, 1]) % N_PHI
    valid = (t >= 0) & (t < N_THETA)
    return np.clip(t, 0, N_THETA - 1), p, valid


def crystal_at_front(
    points_cm: np.ndarray, tolerance_cm: float = 1.0, max_depth_cm: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which barrel crystal a point on (or near) the EMC front surface belongs to.

    The point is projected along each candidate's face normal onto its front face; the crystal whose
    face contains the projection (or, for points in the 0.6 mm gaps, whose edge is nearest) wins.
    Points farther than ``tolerance_cm`` outside every candidate face (beyond the barrel ends), or
    farther than ``max_depth_cm`` from the plane of the best face, are reported as not on the barrel.

    Args:
        points_cm: (..., 3) points in the global frame.
        tolerance_cm: how far outside a face edge a point may lie and still belong to it.
        max_depth_cm: how far in front of or behind the face plane a point may lie.

    Returns:
        ``(theta_index, phi_index, on_barrel)``; indices are -1 where ``on_barrel`` is False.
    """
    pts = np.asarray(points_cm, dtype=np.float64)
    t, p, valid = candidate_crystals(pts)
    score = _face_score(pts[..., None, :], t, p)
    score = np.where(valid, score, -np.inf)
    best = np.argmax(score, axis=-1)
    take = np.take_along_axis
    bt = take(t, best[..., None], axis=-1)[..., 0]
    bp = take(p, best[..., None], axis=-1)[..., 0]
    geo = barrel_geometry()
    depth = np.einsum("...k,...k->...", pts - geo.front_center_cm[bt, bp], geo.axis[bt, bp])
    ok = (take(score, best[..., None], axis=-1)[..., 0] > -tolerance_cm) & (np.abs(depth) <= max_depth_cm)
    return np.where(ok, bt, -1), np.where(ok, bp, -1), ok
