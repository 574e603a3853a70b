"""BESIII EMC barrel: crystal geometry (pybes3), lookups, transport to the front surface, conditions.

Units: cm, GeV, rad, T (see :mod:`caloforge.detector.geometry` for the conventions).
"""

from caloforge.detector.conditions import (
    CONDITION_NAMES,
    PARTICLES,
    Particle,
    compute_conditions,
    particle,
)
from caloforge.detector.geometry import (
    N_PHI,
    N_THETA,
    WINDOW,
    BarrelGeometry,
    barrel_geometry,
    crystal_at_front,
    crystal_gid,
    extract_window,
    window_indices,
)
from caloforge.detector.transport import B_FIELD_T, FrontHit, propagate_to_front

__all__ = [
    "B_FIELD_T",
    "CONDITION_NAMES",
    "N_PHI",
    "N_THETA",
    "PARTICLES",
    "WINDOW",
    "BarrelGeometry",
    "FrontHit",
    "Particle",
    "barrel_geometry",
    "compute_conditions",
    "crystal_at_front",
    "crystal_gid",
    "extract_window",
    "particle",
    "propagate_to_front",
    "window_indices",
]
