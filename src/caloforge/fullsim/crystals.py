"""Crystal solids for Geant4: each pybes3 crystal as a planar G4GenericTrap in its own frame.

pybes3's side faces are non-planar by up to 1 um, which makes G4GenericTrap treat most crystals as
twisted (wrong ``Inside()`` by millimetres, overlaps). Here each back-face edge is rebuilt parallel to
its front-face edge through the original edge's midpoint; the vertices move by a few um at most and
every side face becomes planar. Pure numpy, so it is tested without Geant4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloforge.detector.geometry import barrel_geometry


@dataclass(frozen=True)
class CrystalSolids:
    """Per crystal, flattened theta-major (copy number = ``120 * theta_index + phi_index``).

    Attributes:
        half_length_cm: (5280,) half-length along the crystal axis.
        vertices_local_cm: (5280, 8, 2) (x, y) corners, 0-3 at z = -half_length (front),
            4-7 at +half_length (back), clockwise as G4GenericTrap wants them.
        rotation: (5280, 3, 3) columns are the local x, y, z axes in the global frame.
        translation_cm: (5280, 3) position of the local origin in the global frame.
        max_vertex_shift_cm: largest move of a vertex made to keep the side faces planar.
    """

    half_length_cm: np.ndarray
    vertices_local_cm: np.ndarray
    rotation: np.ndarray
    translation_cm: np.ndarray
    max_vertex_shift_cm: float


def _line_intersections(points: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Corners of a quad whose edge k passes through ``points[k]`` along ``directions[k]``.

    Corner k is where edge k-1 meets edge k. Shapes (..., 4, 2) -> (..., 4, 2).
    """
    p1, d1 = np.roll(points, 1, axis=-2), np.roll(directions, 1, axis=-2)
    p2, d2 = points, directions
    cross = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]
    diff = p2 - p1
    t = (diff[..., 0] * d2[..., 1] - diff[..., 1] * d2[..., 0]) / cross
    return p1 + t[..., None] * d1


def build_crystal_solids() -> CrystalSolids:
    """Local frames and planar G4GenericTrap vertices for the 5280 barrel crystals."""
    geo = barrel_geometry()
    verts = geo.vertices_cm.reshape(-1, 8, 3)
    z_axis = geo.axis.reshape(-1, 3)
    front = verts[:, :4]
    x_axis = front[:, 1] - front[:, 0]
    x_axis -= np.einsum("nk,nk->n", x_axis, z_axis)[:, None] * z_axis
    x_axis /= np.linalg.norm(x_axis, axis=1, keepdims=True)
    y_axis = np.cross(z_axis, x_axis)
    rotation = np.stack([x_axis, y_axis, z_axis], axis=-1)  # columns

    half = 0.5 * geo.length_cm.reshape(-1)
    origin = geo.front_center_cm.reshape(-1, 3) + half[:, None] * z_axis
    local = np.einsum("nik,nji->njk", rotation, verts - origin[:, None, :])  # R^T (v - o)
    xy_front, xy_back = local[:, :4, :2], local[:, 4:, :2]

    # back edges parallel to front edges, through the midpoints of the original back edges
    front_dir = np.roll(xy_front, -1, axis=1) - xy_front
    back_mid = 0.5 * (xy_back + np.roll(xy_back, -1, axis=1))
    new_back = _line_intersections(back_mid, front_dir)
    shift = float(np.abs(new_back - xy_back).max())

    xy = np.concatenate([xy_front, new_back], axis=1)
    # G4GenericTrap wants clockwise vertices (negative signed area seen from +z)
    x, y = xy_front[..., 0], xy_front[..., 1]
    area = 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
    order = np.where((area > 0)[:, None], np.array([0, 3, 2, 1, 4, 7, 6, 5]), np.arange(8))
    xy = np.take_along_axis(xy, order[..., None], axis=1)
    return CrystalSolids(
        half_length_cm=half,
        vertices_local_cm=xy,
        rotation=rotation,
        translation_cm=origin,
        max_vertex_shift_cm=shift,
    )
