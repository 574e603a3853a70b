"""The conditions of a particle entering the EMC barrel (SPEC section 3, seed 002).

For a particle crossing the front face of crystal ``(theta_index, phi_index)`` at point ``x`` with
momentum ``p``, the condition vector is, in this order (:data:`CONDITION_NAMES`):

==============  =====  ==========================================================================
name            unit   definition
==============  =====  ==========================================================================
p_gev           GeV/c  ``|p|`` at the EMC entry
dtheta_mom_rad  rad    ``theta(p) - theta(axis)``, axis = the crystal's front-face normal (outward)
dphi_mom_rad    rad    ``phi(p) - phi(axis)``, wrapped into [-pi, pi)
dz_pos_cm       cm     ``z(x) - z(front-face centre)``
dphi_pos_rad    rad    ``phi(x) - phi(front-face centre)``, wrapped into [-pi, pi)
z_cm            cm     ``z(x)``
==============  =====  ==========================================================================

Positive ``dtheta`` points towards -z (theta grows away from +z); positive ``dphi`` points towards
larger phi (counter-clockwise seen from +z). The particle type travels beside the vector as a PDG id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloforge.detector.geometry import barrel_geometry

CONDITION_NAMES: tuple[str, ...] = (
    "p_gev",
    "dtheta_mom_rad",
    "dphi_mom_rad",
    "dz_pos_cm",
    "dphi_pos_rad",
    "z_cm",
)


@dataclass(frozen=True)
class Particle:
    """A particle type the models cover."""

    name: str
    pdg: int
    charge: int
    mass_gev: float


PARTICLES: dict[str, Particle] = {
    "e-": Particle("e-", 11, -1, 0.51099895e-3),
    "e+": Particle("e+", -11, +1, 0.51099895e-3),
    "gamma": Particle("gamma", 22, 0, 0.0),
}
"""Particles by name, as Geant4 names them."""
PARTICLES_BY_PDG: dict[int, Particle] = {p.pdg: p for p in PARTICLES.values()}


def particle(name_or_pdg: str | int) -> Particle:
    """Look a particle up by Geant4 name (``e-``, ``e+``, ``gamma``) or PDG id; ValueError otherwise."""
    found = PARTICLES.get(name_or_pdg) if isinstance(name_or_pdg, str) else PARTICLES_BY_PDG.get(name_or_pdg)
    if found is None:
        raise ValueError(
            f"unknown particle {name_or_pdg!r}: choose one of {', '.join(PARTICLES)} "
            f"(PDG {', '.join(str(p.pdg) for p in PARTICLES.values())})"
        )
    return found


def wrap_angle(angle_rad: np.ndarray) -> np.ndarray:
    """Wrap angles into [-pi, pi)."""
    return np.mod(np.asarray(angle_rad) + np.pi, 2 * np.pi) - np.pi


def polar_angles(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(theta, phi) in rad of vectors ``(..., 3)``."""
    return np.arctan2(np.hypot(v[..., 0], v[..., 1]), v[..., 2]), np.arctan2(v[..., 1], v[..., 0])


def compute_conditions(
    position_cm: np.ndarray,
    momentum_gev: np.ndarray,
    theta_index: np.ndarray,
    phi_index: np.ndarray,
) -> np.ndarray:
    """Condition vectors (N, 6) in the order of :data:`CONDITION_NAMES`.

    Args:
        position_cm: (N, 3) entry points on the front face of the centre crystal.
        momentum_gev: (N, 3) momenta at the entry points.
        theta_index, phi_index: (N,) centre crystals.
    """
    geo = barrel_geometry()
    axis = geo.axis[theta_index, phi_index]
    fc = geo.front_center_cm[theta_index, phi_index]
    th_p, ph_p = polar_angles(momentum_gev)
    th_a, ph_a = polar_angles(axis)
    _, ph_x = polar_angles(position_cm)
    _, ph_f = polar_angles(fc)
    return np.stack(
        [
            np.linalg.norm(momentum_gev, axis=-1),
            th_p - th_a,
            wrap_angle(ph_p - ph_a),
            position_cm[..., 2] - fc[..., 2],
            wrap_angle(ph_x - ph_f),
            position_cm[..., 2],
        ],
        axis=-1,
    )
