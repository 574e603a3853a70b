"""The GAN's loss functions besides the adversarial one: the WGAN-GP gradient penalty, and the batch-level
terms of the generator loss that compare generated maps with the Geant4 maps of the same conditions.

Maps are (B, 11, 11) in GeV, momenta (B,) in GeV/c; the shower shapes come from
:mod:`caloforge.showers.shapes_torch`.
"""

from __future__ import annotations

import torch
from torch import nn

from caloforge.showers.shapes_torch import (
    MIN_MOMENTUM_GEV,
    containment_fractions,
    lateral_shape_moments,
    shape_ratios,
    shower_features,
)

MMD_BANDWIDTHS = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Gaussian kernel widths of :func:`standardised_mmd`, in units of the standardised features."""
MMD_FEATURES = ("containment", "shower")
"""Feature sets of :func:`shape_mmd`."""
NEIGHBOUR_FEATURES = ("containment", "shape")
"""Feature sets of :func:`neighbour_mmd`."""


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    conditions: torch.Tensor,
    p_gev: torch.Tensor,
) -> torch.Tensor:
    """WGAN-GP penalty ``mean((|grad_x critic(x)|_2 - 1)^2)`` on random interpolates of real and fake maps
    (B, 1, 11, 11) (Gulrajani et al. 2017, arXiv:1704.00028, algorithm 1)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)  # (B, 1, 1, 1)
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (B, 1, 11, 11)
    score = critic(x, conditions, p_gev)  # (B,)
    (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)  # (B, 1, 11, 11)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def energy_sum_constraint(fake_gev: torch.Tensor, real_gev: torch.Tensor, p_gev: torch.Tensor) -> torch.Tensor:
    """Moment matching of the deposited fraction ``E11x11 / p`` between generated and Geant4 maps (B, 11, 11)
    of the same conditions: ``((mean_f - mean_r)^2 + (std_f - std_r)^2) / var_r`` over the batch."""
    scale = p_gev.clamp_min(MIN_MOMENTUM_GEV)  # (B,)
    f = fake_gev.sum(dim=(1, 2)) / scale  # (B,)
    r = real_gev.sum(dim=(1, 2)) / scale  # (B,)
    var = r.var().clamp_min(1e-6)
    return ((f.mean() - r.mean()) ** 2 + (f.std() - r.std()) ** 2) / var


def shape_moment_constraint(fake_gev: torch.Tensor, real_gev: torch.Tensor) -> torch.Tensor:
    """Moment matching of the lateral second moment and LAT (:func:`lateral_shape_moments`, crystal units)
    between generated and Geant4 maps (B, 11, 11) in GeV of the same conditions: the sum over both of
    ``((mean_f - mean_r)^2 + (std_f - std_r)^2) / var_r`` over the batch. Unlike the Gaussian kernels of an
    MMD, the standard deviation does not saturate for a far outlier."""
    f = lateral_shape_moments(fake_gev)  # (B, 2)
    r = lateral_shape_moments(real_gev)  # (B, 2)
    var = r.var(dim=0).clamp_min(1e-6)  # (2,)
    return (((f.mean(dim=0) - r.mean(dim=0)) ** 2 + (f.std(dim=0) - r.std(dim=0)) ** 2) / var).sum()


def standardised_mmd(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Squared maximum mean discrepancy (Gretton et al. 2012, biased estimator, a sum of Gaussian kernels of
    widths :data:`MMD_BANDWIDTHS`) between generated and Geant4 feature vectors (B, F), both standardised with
    the Geant4 batch's mean and spread."""
    mean, std = real.mean(dim=0), real.std(dim=0).clamp_min(1e-3)
    x = (fake - mean) / std  # (B, F)
    y = (real - mean) / std  # (B, F)
    xy = torch.cat([x, y])  # (2B, F)
    d2 = torch.cdist(xy, xy).pow(2)  # (2B, 2B)
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in MMD_BANDWIDTHS)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def shape_mmd(
    fake_gev: torch.Tensor, real_gev: torch.Tensor, p_gev: torch.Tensor, features: str = "containment"
) -> torch.Tensor:
    """Squared MMD (:func:`standardised_mmd`) between shower features (``features``: ``"containment"``,
    :func:`containment_fractions`, or ``"shower"``, :func:`shower_features`) of generated and Geant4
    maps (B, 11, 11) of the same conditions: it compares the distributions of the shower shape, spread
    included, which a per-event loss cannot do."""
    if features not in MMD_FEATURES:
        raise ValueError(f"unknown MMD features {features!r}: choose one of {', '.join(MMD_FEATURES)}")
    observe = containment_fractions if features == "containment" else shower_features
    return standardised_mmd(observe(fake_gev, p_gev), observe(real_gev, p_gev))


def neighbour_mmd(
    fake_gev: torch.Tensor,
    fake_neighbour_gev: torch.Tensor,
    real_gev: torch.Tensor,
    real_neighbour_gev: torch.Tensor,
    p_gev: torch.Tensor,
    p_neighbour_gev: torch.Tensor,
    features: str = "containment",
) -> torch.Tensor:
    """Squared MMD between the differences of shower features (``features``: ``"containment"``,
    :func:`containment_fractions`; ``"shape"``, :func:`shape_ratios`) within pairs of nearest neighbours
    in condition space: Geant4 events and their neighbours (``real_*``, B x 11 x 11 in GeV) against maps
    generated, with independent noise, for the same two conditions (``fake_*``).

    A single generated map cannot show whether the noise makes showers fluctuate at fixed conditions
    as much as Geant4's: a generator that ignores its noise can still match every marginal distribution
    through the conditions. Within a pair the conditions hardly differ, and Geant4's difference is mostly
    shower fluctuation."""
    if features == "shape":
        fake = shape_ratios(fake_gev) - shape_ratios(fake_neighbour_gev)
        real = shape_ratios(real_gev) - shape_ratios(real_neighbour_gev)
    elif features == "containment":
        fake = containment_fractions(fake_gev, p_gev) - containment_fractions(fake_neighbour_gev, p_neighbour_gev)
        real = containment_fractions(real_gev, p_gev) - containment_fractions(real_neighbour_gev, p_neighbour_gev)
    else:
        raise ValueError(f"unknown neighbour features {features!r}: choose one of {', '.join(NEIGHBOUR_FEATURES)}")
    return standardised_mmd(fake, real)
