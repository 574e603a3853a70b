"""The checkpoint-selection metric of the training loop (private to training).

Mean separation power of a few BESIII shower shapes (SPEC section 5) between held-out Geant4 maps and
maps generated for the same conditions: E1x1, E3x3, E5x5, E11x11 (energy sums of the central n x n
crystals, GeV) and E3x3/E5x5. The separation power (triangular discrimination, as in the CaloChallenge
2022 evaluation, arXiv:2410.21611) of two histograms normalised to unit sum with common bins is
``0.5 * sum_i (h1_i - h2_i)^2 / (h1_i + h2_i)``: 0 for identical, 1 for disjoint distributions.

This is a small, self-contained metric for choosing ``best.pt``; the full validation of the models
lives in its own package.
"""

from __future__ import annotations

import numpy as np

SELECTION_FEATURES: tuple[str, ...] = ("E1x1", "E3x3", "E5x5", "E11x11", "E3x3/E5x5")
CENTRE = 5


def energy_sum(maps_gev: np.ndarray, n: int) -> np.ndarray:
    """Energy (GeV) in the central ``n x n`` crystals of maps (N, 11, 11); ``n`` odd."""
    h = n // 2
    return maps_gev[:, CENTRE - h : CENTRE + h + 1, CENTRE - h : CENTRE + h + 1].sum(axis=(1, 2))


def selection_features(maps_gev: np.ndarray) -> dict[str, np.ndarray]:
    """The shower shapes of :data:`SELECTION_FEATURES` for maps (N, 11, 11) in GeV.

    E3x3/E5x5 is 0 for maps with no energy in the central 5 x 5.
    """
    m = np.asarray(maps_gev, dtype=np.float64)
    e = {n: energy_sum(m, n) for n in (1, 3, 5, 11)}
    ratio = np.divide(e[3], e[5], out=np.zeros_like(e[3]), where=e[5] > 0)
    return {"E1x1": e[1], "E3x3": e[3], "E5x5": e[5], "E11x11": e[11], "E3x3/E5x5": ratio}


def separation_power(reference: np.ndarray, other: np.ndarray, *, bins: int = 50) -> float:
    """Triangular discrimination of two samples, in [0, 1].

    The bins span the range of ``reference`` (the Geant4 sample); values of ``other`` outside it, and
    non-finite ones, count in the first or last bin, so that outliers are penalised instead of widening
    the bins.
    """
    ref = np.asarray(reference, dtype=np.float64)
    oth = np.asarray(other, dtype=np.float64)
    lo, hi = float(ref.min()), float(ref.max())
    if hi <= lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    oth = np.where(np.isnan(oth), hi, oth)
    h1 = np.histogram(np.clip(ref, lo, hi), edges)[0].astype(np.float64)
    h2 = np.histogram(np.clip(oth, lo, hi), edges)[0].astype(np.float64)
    h1 /= max(h1.sum(), 1.0)
    h2 /= max(h2.sum(), 1.0)
    s = h1 + h2
    nz = s > 0
    return float(0.5 * np.sum((h1[nz] - h2[nz]) ** 2 / s[nz]))


def selection_metric(reference_maps: np.ndarray, generated_maps: np.ndarray, *, bins: int = 50) -> dict[str, float]:
    """Separation power per feature (keys ``sp_<feature>``) and their mean (``sp_mean``, lower is better)."""
    if len(reference_maps) == 0 or len(generated_maps) == 0:
        raise ValueError("the selection metric needs non-empty samples")
    ref, gen = selection_features(reference_maps), selection_features(generated_maps)
    out = {f"sp_{k}": separation_power(ref[k], gen[k], bins=bins) for k in SELECTION_FEATURES}
    out["sp_mean"] = float(np.mean([out[f"sp_{k}"] for k in SELECTION_FEATURES]))
    return out
