"""Particle-gun kinematics: momenta of single particles from the origin, uniform in |p|, cos(theta) and phi."""

from __future__ import annotations

import numpy as np

__all__ = ["gun_momenta_gev"]


def gun_momenta_gev(
    n: int,
    *,
    momentum_gev: tuple[float, float] = (0.0, 3.0),
    cos_theta: tuple[float, float] = (-0.83, 0.83),
    phi_rad: tuple[float, float] = (-np.pi, np.pi),
    seed: int = 0,
) -> np.ndarray:
    """Momentum vectors (n, 3) in GeV/c: magnitude uniform in ``momentum_gev`` (a zero magnitude becomes
    ``max * 1e-6``), direction uniform in cos(theta) and phi within their ranges. The ranges are taken as
    given (the callers check them)."""
    rng = np.random.default_rng(seed)
    lo, hi = momentum_gev
    p = rng.uniform(lo, hi, n) if hi > lo else np.full(n, lo)  # (n,)
    p = np.where(p > 0, p, hi * 1e-6)
    ct = rng.uniform(*cos_theta, n)  # (n,)
    ph = rng.uniform(*phi_rad, n)  # (n,)
    st = np.sqrt(1 - ct**2)
    return p[:, None] * np.stack([st * np.cos(ph), st * np.sin(ph), ct], axis=1)  # (n, 3)
