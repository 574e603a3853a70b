"""The deposited-energy model: the conditional distribution of ``f = E11x11 / p``, a mixture density network.

A shower's total deposit and its shape are sampled apart: the generator of a :class:`caloforge.models.GAN`
gives the shape, which is rescaled to ``E11x11 = f p`` with ``f`` drawn from this model (the two-stage
factorisation of CaloFlow, arXiv:2106.05285, with the energy stage a mixture density network, Bishop 1994):
a mixture of :data:`N_COMPONENTS` Gaussians in ``y = logit(f / F_MAX)``, its weights, means and widths given
by a small network of the normalised conditions. It is fitted by maximum likelihood (:meth:`EnergyModel.nll`)
by the ``energy`` plan of the training loop (:mod:`caloforge.training.energy_fit`, ``caloforge fit-energy``);
what it changed against the GANs' own deposits is in ``docs/experiments/recipes.md``.

Sampling is a function of two standard normal numbers per shower, so that it exports to ONNX with the
generator: the first picks the component by its cumulative weight (through the normal distribution
function), the second is the Gaussian within the component.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from caloforge.models.transforms import MIN_MOMENTUM_GEV

N_COMPONENTS = 10
"""Gaussians in the mixture."""
F_MAX = 1.05
"""Upper end of ``f = E11x11 / p`` (a positron's annihilation can add 1 MeV to a deposit of the full momentum)."""
F_MIN = 1e-4
"""Fractions below this (empty maps) are taken as this in the fit."""
NOISE_DIM = 2
"""Standard normal numbers per shower that a sample takes."""
HIDDEN = 128
"""Width of the network's three hidden layers."""


def deposited_fraction(maps_gev: np.ndarray, p_gev: np.ndarray) -> np.ndarray:
    """``f = E11x11 / p`` (N,) float64 of maps (N, 11, 11) in GeV and momenta (N,) in GeV/c (clamped to at
    least :data:`~caloforge.models.transforms.MIN_MOMENTUM_GEV`): what the energy model describes."""
    total = np.asarray(maps_gev, dtype=np.float64).sum(axis=(1, 2))  # (N,) GeV
    return total / np.maximum(np.asarray(p_gev, dtype=np.float64), MIN_MOMENTUM_GEV)


def fraction_to_y(f: torch.Tensor) -> torch.Tensor:
    """The fit variable ``y = logit(f / F_MAX)`` of deposited fractions ``f``, clipped into (F_MIN, F_MAX - F_MIN)."""
    f = f.clamp(F_MIN, F_MAX - F_MIN)
    return torch.log(f / (F_MAX - f))


class EnergyModel(nn.Module):
    """Mixture density network for ``f = E11x11 / p`` given the normalised conditions (B, n_inputs).

    Args:
        n_inputs: width of the condition input (6 normalised conditions [+ one-hot particle type]).
        n_components: Gaussians in the mixture.
    """

    def __init__(self, n_inputs: int, n_components: int = N_COMPONENTS) -> None:
        super().__init__()
        self.n_components = n_components
        self.net = nn.Sequential(
            nn.Linear(n_inputs, HIDDEN), nn.SiLU(),
            nn.Linear(HIDDEN, HIDDEN), nn.SiLU(),
            nn.Linear(HIDDEN, HIDDEN), nn.SiLU(),
            nn.Linear(HIDDEN, 3 * n_components),
        )
        self.register_buffer("fitted", torch.tensor(False))

    def mixture(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log weights, means and widths (B, K each) of the mixture in ``y``."""
        k = self.n_components
        out = self.net(x)  # (B, 3K)
        return torch.log_softmax(out[:, :k], dim=1), out[:, k : 2 * k], nn.functional.softplus(out[:, 2 * k :]) + 1e-3

    def log_prob(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Log density (B,) of the fractions ``f`` (B,) in ``y`` (the Jacobian to ``f`` left out)."""
        log_w, mu, sigma = self.mixture(x)
        z = (fraction_to_y(f)[:, None] - mu) / sigma  # (B, K)
        return torch.logsumexp(log_w - 0.5 * z**2 - torch.log(sigma), dim=1) - 0.5 * math.log(2 * math.pi)

    def fraction(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Deposited fractions ``f`` (B,) for conditions ``x`` (B, n_inputs) from standard normal noise (B, 2)."""
        log_w, mu, sigma = self.mixture(x)
        u = 0.5 * (1.0 + torch.erf(noise[:, 0] / math.sqrt(2.0)))  # (B,) uniform
        cumulative = torch.cumsum(log_w.exp(), dim=1)  # (B, K)
        k = (cumulative < u[:, None]).sum(dim=1).clamp_max(self.n_components - 1)  # (B,) first with cum >= u
        y = mu.gather(1, k[:, None])[:, 0] + sigma.gather(1, k[:, None])[:, 0] * noise[:, 1]
        return F_MAX * torch.sigmoid(y)

    def nll(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood (a scalar) of fractions ``f`` (B,) given conditions ``x`` (B, n_inputs):
        the loss of the maximum-likelihood fit."""
        return -self.log_prob(x, f).mean()
