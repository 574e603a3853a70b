"""The shape stage's variables: 121 cell fractions of E11x11, dequantised, logit-transformed, standardised.

What the shape stage of a two-stage model (:mod:`caloforge.models.two_stage`) learns and samples. The
preprocessing the best calorimeter flows share (CaloFlow, arXiv:2106.05285; CaloINN, arXiv:2312.09290;
CaloDREAM, arXiv:2405.09629): the cells are divided by their sum, a small uniform noise of width
``dequantisation`` (a fraction of E11x11) is added so that the empty cells -- 77 % of an 11x11 map -- are a
continuous band instead of a point mass, ``logit(alpha + (1 - 2 alpha) v)`` opens the unit interval, and each
cell is standardised with the training sample's mean and spread. After sampling, the inverse maps back to
fractions and every cell inside the dequantisation band (below ``threshold`` of E11x11) is empty again.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["N_CELLS", "ShapeTransform", "hit_edges"]

N_CELLS = 121


class ShapeTransform(nn.Module):
    """Cell fractions <-> standardised logit space, with the per-cell mean and spread as buffers.

    Args:
        dequantisation: width of the uniform noise added to each cell fraction before the logit (fraction of
            E11x11); also the largest fraction a cell may have and still come out empty after sampling when
            ``threshold`` is None.
        alpha: margin of the logit, ``logit(alpha + (1 - 2 alpha) v)``.
        threshold: cells below this fraction of E11x11 are set to 0 after sampling (None: ``dequantisation``);
            the lower bound of the per-cell thresholds of :meth:`calibrate_thresholds`.
    """

    def __init__(self, dequantisation: float, alpha: float, threshold: float | None = None) -> None:
        super().__init__()
        self.dequantisation = float(dequantisation)
        self.alpha = float(alpha)
        self.threshold = float(dequantisation if threshold is None else threshold)
        self.register_buffer("mean", torch.zeros(N_CELLS))  # (121,)
        self.register_buffer("std", torch.ones(N_CELLS))  # (121,)
        self.register_buffer("cell_threshold", torch.full((N_CELLS,), self.threshold))  # (121,) fraction of E11x11

    def logit(self, fractions: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Unstandardised logit space (B, 121) of fractions (B, 121) with uniform noise in [0, 1) (B, 121)."""
        v = (fractions + self.dequantisation * noise) / (1.0 + self.dequantisation)  # (B, 121) in (0, 1)
        v = self.alpha + (1.0 - 2.0 * self.alpha) * v.clamp(0.0, 1.0)
        return torch.log(v) - torch.log1p(-v)

    def fit(self, fractions: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Fit the per-cell mean and spread on training fractions (N, 121)."""
        noise = torch.rand(fractions.shape, generator=generator, dtype=fractions.dtype)
        y = self.logit(fractions, noise)
        self.mean.copy_(y.mean(dim=0))
        self.std.copy_(y.std(dim=0).clamp_min(1e-3))

    def forward(self, fractions: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The shape variables (B, 121) of cell fractions (B, 121) with uniform noise (B, 121)."""
        return (self.logit(fractions, noise) - self.mean) / self.std

    def raw_fractions(self, y: torch.Tensor) -> torch.Tensor:
        """Cell fractions (B, 121) of shape variables (B, 121) before any cell is emptied (a non-finite variable
        gives a negative fraction, an empty cell after :meth:`inverse`)."""
        y = torch.nan_to_num(y, nan=-torch.inf)
        v = torch.sigmoid(y * self.std + self.mean)
        return ((v - self.alpha) / (1.0 - 2.0 * self.alpha)) * (1.0 + self.dequantisation)  # (B, 121)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Cell fractions (B, 121), summing to 1 (or all 0), of shape variables (B, 121): each cell below its
        threshold (:attr:`cell_threshold`, fraction of E11x11) set to 0."""
        return self.empty_and_normalise(self.raw_fractions(y))

    def empty_and_normalise(self, raw_fractions: torch.Tensor) -> torch.Tensor:
        """Raw fractions (B, 121) with each cell below its threshold set to 0, the rest scaled to sum to 1."""
        fractions = torch.where(raw_fractions < self.cell_threshold, torch.zeros_like(raw_fractions), raw_fractions)
        total = fractions.sum(dim=1, keepdim=True)  # (B, 1)
        return fractions / total.clamp_min(1e-30)

    def calibrate_thresholds(self, raw_fractions: torch.Tensor, hit_probability: torch.Tensor) -> None:
        """Set each cell's threshold so that the share of sampled showers with a deposit there is Geant4's:
        the ``1 - hit_probability`` quantile of the cell's sampled raw fractions (N, 121), never below the
        dequantisation width. ``hit_probability`` (121,): Geant4's fraction of showers with a deposit in each
        cell, for the same conditions."""
        thresholds = hit_edges(raw_fractions, hit_probability)  # (121,)
        self.cell_threshold.copy_(thresholds.float().clamp_min(self.threshold))


def hit_edges(values: torch.Tensor, hit_probability: torch.Tensor) -> torch.Tensor:
    """Per cell, the value (121,) above which a share ``hit_probability`` (121,) of the sampled ``values``
    (N, 121) lies: their ``1 - hit_probability`` quantile (the nearest sample)."""
    ordered = values.sort(dim=0).values  # (N, 121), each cell's values ascending
    n = len(ordered)
    rank = ((1.0 - hit_probability.clamp(0, 1)) * n).round().long().clamp(0, n - 1)  # (121,)
    return ordered.gather(0, rank[None, :].to(ordered.device))[0]  # (121,): n (1 - p) values lie below
