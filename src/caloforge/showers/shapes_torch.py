"""Differentiable shower shapes of 11 x 11 hit maps in PyTorch: the ones the GAN's loss terms use.

The numpy versions, for validation and selection, are in :mod:`caloforge.showers.shapes`; the two agree to
float rounding. Maps are (B, 11, 11) in GeV with rows theta_index and columns phi_index, the centre crystal at
[5, 5]; distances are in crystal units (one crystal pitch, about 5 cm at the front face). Everything here passes
gradients to every crystal's energy.
"""

from __future__ import annotations

import torch

from caloforge.detector.geometry import WINDOW
from caloforge.showers.shapes import LAT_R0_CRYSTALS

MIN_MOMENTUM_GEV = 1e-3
"""Momenta are clamped to at least 1 MeV/c before dividing by them."""
SOFT_HIT_SCALE_GEV = 1e-3
"""Energy scale of the soft hit count of :func:`shower_features` (1 MeV)."""

_CENTRE = WINDOW // 2


def _central(maps_gev: torch.Tensor, n: int) -> torch.Tensor:
    """The central n x n crystals (B, n, n) of maps (B, 11, 11), n odd."""
    lo = _CENTRE - n // 2
    return maps_gev[:, lo : lo + n, lo : lo + n]


def _window_sums(maps_gev: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """En x n (B, len(sizes)) of maps (B, 11, 11): the energy in the central n x n crystals, n odd."""
    return torch.stack([_central(maps_gev, n).sum(dim=(1, 2)) for n in sizes], dim=1)


def containment_fractions(
    maps_gev: torch.Tensor, p_gev: torch.Tensor, sizes: tuple[int, ...] = (1, 3, 5, 11)
) -> torch.Tensor:
    """En x n / p for each n in ``sizes`` (B, len(sizes)) of maps (B, 11, 11) in GeV and momenta (B,) in GeV/c
    (clamped to :data:`MIN_MOMENTUM_GEV`); by default E1x1/p, E3x3/p, E5x5/p, E11x11/p."""
    scale = p_gev.clamp_min(MIN_MOMENTUM_GEV)  # (B,)
    return _window_sums(maps_gev, sizes) / scale[:, None]  # (B, len(sizes))


def shape_ratios(maps_gev: torch.Tensor) -> torch.Tensor:
    """E1x1, E3x3, E5x5 and E7x7 over E11x11 (B, 4) of maps (B, 11, 11) in GeV: the shape without the
    total; 0 for empty maps."""
    total = maps_gev.sum(dim=(1, 2)).clamp_min(1e-9)  # (B,)
    return _window_sums(maps_gev, (1, 3, 5, 7)) / total[:, None]  # (B, 4)


def _centre_and_distances(maps_gev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Energy-weighted centre (row, column; each (B,)) of maps (B, 11, 11) relative to the centre crystal,
    and the squared distance of every crystal from it (B, 11, 11), in crystal units; centre 0 for empty maps."""
    idx = torch.arange(maps_gev.shape[-1], dtype=maps_gev.dtype, device=maps_gev.device) - 5.0  # (11,)
    total = maps_gev.sum(dim=(1, 2)).clamp_min(1e-9)  # (B,)
    row = (maps_gev.sum(dim=2) * idx).sum(dim=1) / total  # (B,)
    col = (maps_gev.sum(dim=1) * idx).sum(dim=1) / total  # (B,)
    d2 = (idx.view(1, -1, 1) - row.view(-1, 1, 1)) ** 2 + (idx.view(1, 1, -1) - col.view(-1, 1, 1)) ** 2
    return row, col, d2  # (B,), (B,), (B, 11, 11)


def lateral_moments(maps_gev: torch.Tensor) -> torch.Tensor:
    """Energy-weighted centre (row, column), relative to the centre crystal, and lateral second moment
    ``sum E |x - x_c|^2 / sum E`` (B, 3) of maps (B, 11, 11), in crystal units (squared for the moment);
    0 for empty maps."""
    row, col, d2 = _centre_and_distances(maps_gev)
    r2 = (maps_gev * d2).sum(dim=(1, 2)) / maps_gev.sum(dim=(1, 2)).clamp_min(1e-9)  # (B,)
    return torch.stack([row, col, r2], dim=1)  # (B, 3)


def lateral_shape_moments(maps_gev: torch.Tensor) -> torch.Tensor:
    """Lateral second moment and LAT (B, 2) of maps (B, 11, 11) in GeV, in crystal units.

    The second moment is :func:`lateral_moments`' (crystal units squared). LAT is BOSS's
    ``sum_{i>=3} E_i r_i^2 / (sum_{i>=3} E_i r_i^2 + r0^2 (E_1 + E_2))`` (crystals sorted by energy) with
    ``r_i`` the distance from the energy-weighted centre in crystal units and ``r0`` =
    :data:`LAT_R0_CRYSTALS`: a stand-in for the validation's LAT, whose distances are in cm from the line
    through the IP. The gradient flows to every crystal's energy; which two are the hottest is taken as given.
    """
    _, _, d2 = _centre_and_distances(maps_gev)  # (B, 11, 11)
    e, d2 = maps_gev.flatten(1), d2.flatten(1)  # (B, 121)
    r2 = (e * d2).sum(dim=1) / e.sum(dim=1).clamp_min(1e-9)  # (B,) the second moment
    top = torch.zeros_like(e).scatter(1, e.topk(2, dim=1).indices, 1.0)  # (B, 121): 1 at the two hottest
    num = (e * d2 * (1.0 - top)).sum(dim=1)  # (B,)
    den = num + LAT_R0_CRYSTALS**2 * (e * top).sum(dim=1)
    lat = num / den.clamp_min(1e-9)  # (B,)
    return torch.stack([r2, lat], dim=1)  # (B, 2)


def shower_features(maps_gev: torch.Tensor, p_gev: torch.Tensor) -> torch.Tensor:
    """Shower features (B, 8) of maps (B, 11, 11) in GeV and momenta (B,) in GeV/c: En x n / p for n = 1, 3, 5,
    7, 9, 11; a soft count of crystals above 1 MeV, ``sum 1 - exp(-E / 1 MeV)``; the lateral second
    moment ``sum E |x - x_c|^2 / sum E`` in crystal units squared (``x_c`` the energy-weighted centre)."""
    fractions = containment_fractions(maps_gev, p_gev, (1, 3, 5, 7, 9, 11))  # (B, 6)
    hits = (1.0 - torch.exp(-maps_gev.clamp_min(0) / SOFT_HIT_SCALE_GEV)).sum(dim=(1, 2))  # (B,)
    r2 = lateral_moments(maps_gev)[:, 2]  # (B,)
    return torch.cat([fractions, hits[:, None], r2[:, None]], dim=1)  # (B, 8)
