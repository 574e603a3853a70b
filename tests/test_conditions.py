import numpy as np
import pytest

from caloforge.detector import CONDITION_NAMES, barrel_geometry, compute_conditions, particle


def test_track_along_the_crystal_axis_through_the_face_centre_has_zero_offsets():
    geo = barrel_geometry()
    t, p = np.array([10, 30]), np.array([5, 100])
    fc = geo.front_center_cm[t, p]
    mom = 1.2 * geo.axis[t, p]
    c = compute_conditions(fc, mom, t, p)
    assert c.shape == (2, len(CONDITION_NAMES))
    assert np.allclose(c[:, 0], 1.2)
    assert np.allclose(c[:, 1:5], 0.0, atol=1e-12)
    assert np.allclose(c[:, 5], fc[:, 2])


def test_signs_of_the_offsets():
    geo = barrel_geometry()
    t, p = np.array([22]), np.array([0])
    fc = geo.front_center_cm[t, p]
    axis = geo.axis[t, p]
    shifted = fc + np.array([[0.0, 0.0, 1.0]])
    c = compute_conditions(shifted, axis, t, p)
    assert c[0, 3] == pytest.approx(1.0)
    # a momentum tilted towards -z has a larger polar angle: dtheta > 0
    tilted = axis + np.array([[0.0, 0.0, -0.05]])
    assert compute_conditions(fc, tilted, t, p)[0, 1] > 0


def test_particle_lookup():
    assert particle("e-").pdg == 11 and particle(-11).name == "e+" and particle(22).charge == 0
    with pytest.raises(ValueError, match="unknown particle"):
        particle("mu-")
