import numpy as np

from caloforge.detector import barrel_geometry
from caloforge.fullsim.crystals import build_crystal_solids


def test_generic_trap_vertices_are_planar_clockwise_and_faithful():
    solids = build_crystal_solids()
    xy = solids.vertices_local_cm
    assert xy.shape == (5280, 8, 2)
    # vertices moved by micrometres at most
    assert solids.max_vertex_shift_cm < 5e-4
    # each back edge parallel to its front edge: planar side faces (no twist)
    front_edges = np.roll(xy[:, :4], -1, axis=1) - xy[:, :4]
    back_edges = np.roll(xy[:, 4:], -1, axis=1) - xy[:, 4:]
    cross = front_edges[..., 0] * back_edges[..., 1] - front_edges[..., 1] * back_edges[..., 0]
    norm = np.linalg.norm(front_edges, axis=-1) * np.linalg.norm(back_edges, axis=-1)
    assert np.abs(cross / norm).max() < 1e-12
    # clockwise: negative signed area
    x, y = xy[:, :4, 0], xy[:, :4, 1]
    area = 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
    assert np.all(area < 0)
    # front face at local z = -half length: the local frame maps back onto pybes3's corners
    geo = barrel_geometry()
    fc = solids.translation_cm - solids.half_length_cm[:, None] * solids.rotation[:, :, 2]
    assert np.allclose(fc, geo.front_center_cm.reshape(-1, 3), atol=1e-9)
    assert np.allclose(np.einsum("nij,nik->njk", solids.rotation, solids.rotation), np.eye(3), atol=1e-12)
