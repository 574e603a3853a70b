"""Pure transforms between hit maps in GeV and the representations the networks see.

The seed GAN normalises the map by the momentum (``EMC/Mom``, seed 000): the networks work on the
fraction ``f = E / p`` (dimensionless, about 0.95 summed over the 11 x 11 window for e+- and photons).
On top of that an optional output transform (``output_transform`` of the model configuration):

* ``"none"``: the generator outputs ``f`` itself;
* ``"log"``: the generator outputs ``u = log(1 + f / eps) / log(1 + 1 / eps)``, which spreads the
  many low-energy crystals over the range (``u`` = 0 for no energy, 1 for ``f`` = 1).

Both are non-negative for non-negative energies, so the generator's final ReLU keeps its meaning.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from caloforge.showers.shapes_torch import MIN_MOMENTUM_GEV

OutputTransform = Literal["none", "log"]
OUTPUT_TRANSFORMS: tuple[str, ...] = ("none", "log")
U_MAX = 2.0
"""Largest ``log``-space value the inverse accepts (f up to about 1e4 for eps=1e-4): avoids overflow."""


def fraction_to_model(fraction: torch.Tensor, *, kind: str, epsilon: float) -> torch.Tensor:
    """Map energy fractions ``E / p`` (any shape) to the generator's output space."""
    if kind == "none":
        return fraction
    if kind == "log":
        return torch.log1p(fraction.clamp_min(0) / epsilon) / math.log1p(1.0 / epsilon)
    raise ValueError(f"unknown output transform {kind!r}: choose one of {', '.join(OUTPUT_TRANSFORMS)}")


def model_to_fraction(u: torch.Tensor, *, kind: str, epsilon: float) -> torch.Tensor:
    """Inverse of :func:`fraction_to_model`: energy fractions ``E / p`` (non-negative for ``u >= 0``)."""
    if kind == "none":
        return u
    if kind == "log":
        # exp - 1 rather than expm1, which ONNX has no operator for: the float32 error near u = 0, about 6e-8,
        # becomes 6e-12 of p after the factor epsilon
        return epsilon * (torch.exp(u.clamp(max=U_MAX) * math.log1p(1.0 / epsilon)) - 1.0)
    raise ValueError(f"unknown output transform {kind!r}: choose one of {', '.join(OUTPUT_TRANSFORMS)}")


def momentum_scale(p_gev: torch.Tensor) -> torch.Tensor:
    """Momenta (B,) as (B, 1, 1, 1) divisors for (B, 1, 11, 11) maps, clamped to at least 1 MeV/c."""
    return p_gev.clamp_min(MIN_MOMENTUM_GEV).view(-1, 1, 1, 1)


def gev_to_model(maps_gev: torch.Tensor, p_gev: torch.Tensor, *, kind: str, epsilon: float) -> torch.Tensor:
    """Maps (B, 11, 11) in GeV and momenta (B,) in GeV/c -> generator space (B, 1, 11, 11)."""
    fraction = maps_gev.unsqueeze(1) / momentum_scale(p_gev)  # (B, 1, 11, 11)
    return fraction_to_model(fraction, kind=kind, epsilon=epsilon)


def model_to_gev(u: torch.Tensor, p_gev: torch.Tensor, *, kind: str, epsilon: float) -> torch.Tensor:
    """Generator space (B, 1, 11, 11) -> energies (B, 1, 11, 11) in GeV."""
    return model_to_fraction(u, kind=kind, epsilon=epsilon) * momentum_scale(p_gev)


def log_energy(maps_gev: torch.Tensor, *, scale_gev: float = 1e-3) -> torch.Tensor:
    """``log(1 + E / scale)``: the regressor's input, keeping both the total energy and small deposits."""
    return torch.log1p(maps_gev.clamp_min(0) / scale_gev)
