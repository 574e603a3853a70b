"""The checkpoint-selection metric of the training loop (private to training).

Mean separation power of a few BESIII shower shapes (SPEC section 5) between held-out Geant4 maps and
maps generated for the same conditions (:data:`SELECTION_FEATURES`): the fractions of the momentum in
the central 1x1, 3x3, 5x5 and 11x11 crystals, the ratios E3x3/E5x5, E5x5/E7x7 and E9x9/E11x11, the
number of crystals above 1 MeV, the lateral second moment and LAT in crystal units (stand-ins for the
validation's second moment and LAT in cm, which need the crystal positions; all shapes from
:mod:`caloforge.showers.shapes`, the final step of the separation power from
:func:`caloforge.showers.compare.separation_power_counts`). Fractions of the momentum, not
energies in GeV, which follow the momentum spectrum (docs/experiments/validation.md). The separation power (triangular discrimination, as in
the CaloChallenge 2022 evaluation, arXiv:2410.21611) of two histograms normalised to unit sum with
common bins is
``0.5 * sum_i (h1_i - h2_i)^2 / (h1_i + h2_i)``: 0 for identical, 1 for disjoint distributions.

With pairs of nearest neighbours in condition space (each held-out event and the held-out event of the
same type nearest to it, maps generated for both conditions with independent noise), two more features
count: the differences of E1x1/p and of E5x5/p within a pair (:data:`PAIR_FEATURES`). Neighbours have
almost the same conditions, so these differences show the fluctuation of the shower at fixed conditions,
which single events cannot.

Which crystals are hit is a classifier's first clue, and the shapes do not see it: the metric also gives the
chi^2 of the crystal occupancy (:func:`caloforge.showers.compare.occupancy_chi2`, any deposit and above 1 MeV)
and ``sp_occupancy``, the mean separation power times the mean of the two chi^2 per crystal (scale-free: a
10 % gain in either counts the same).

This is a small, self-contained metric for choosing ``best.pt``; the full validation of the models
lives in its own package.
"""

from __future__ import annotations

import numpy as np

from caloforge.showers.compare import occupancy_chi2, separation_power_counts
from caloforge.showers.shapes import (
    divide_where_positive,
    e_nxn,
    lat_moment_crystals,
    second_moment_crystals2,
)

SELECTION_FEATURES: tuple[str, ...] = (
    "E1x1/p",
    "E3x3/p",
    "E5x5/p",
    "E11x11/p",
    "E3x3/E5x5",
    "E5x5/E7x7",
    "E9x9/E11x11",
    "N>1MeV",
    "R2",
    "LAT",
)
PAIR_FEATURES: tuple[str, ...] = ("pair_dE1x1/p", "pair_dE5x5/p")
"""Features of pairs of neighbours: the difference of E1x1/p, E5x5/p between an event and its neighbour."""
BIN_RANGE_PERCENTILES = (0.5, 99.5)
"""Percentiles of the Geant4 sample that the histogram bins of :func:`separation_power` span."""
N_CRYSTALS = 121
"""Crystals of the 11 x 11 window."""
HIT_THRESHOLD_GEV = 1e-3
"""Energy above which a crystal counts in ``N>1MeV``."""


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, 0 where ``den <= 0``."""
    return divide_where_positive(num, den, fill=0.0)


def _zero_if_empty(values: np.ndarray) -> np.ndarray:
    """The shapes with NaN (empty maps) set to 0."""
    return np.where(np.isnan(values), 0.0, values)


def selection_features(maps_gev: np.ndarray, momenta_gev: np.ndarray) -> dict[str, np.ndarray]:
    """The shower shapes of :data:`SELECTION_FEATURES` for maps (N, 11, 11) in GeV and momenta (N,) in
    GeV/c. Ratios are 0 where their denominator is."""
    m = np.asarray(maps_gev, dtype=np.float64)
    p = np.asarray(momenta_gev, dtype=np.float64)
    if p.shape != m.shape[:1]:
        raise ValueError(f"expected one momentum per map ({len(m)}), got shape {p.shape}")
    e = {n: e_nxn(m, n) for n in (1, 3, 5, 7, 9, 11)}
    out = {f"E{n}x{n}/p": _ratio(e[n], p) for n in (1, 3, 5, 11)}
    out["E3x3/E5x5"] = _ratio(e[3], e[5])
    out["E5x5/E7x7"] = _ratio(e[5], e[7])
    out["E9x9/E11x11"] = _ratio(e[9], e[11])
    out["N>1MeV"] = (m > HIT_THRESHOLD_GEV).sum(axis=(1, 2)).astype(np.float64)
    out["R2"] = _zero_if_empty(second_moment_crystals2(m))
    out["LAT"] = _zero_if_empty(lat_moment_crystals(m))
    return out


def separation_power(reference: np.ndarray, other: np.ndarray, *, bins: int = 50) -> float:
    """Triangular discrimination of two samples, in [0, 1].

    The bins span the central 99 % of ``reference`` (the Geant4 sample, from its 0.5 to its 99.5
    percentile: a few outliers would otherwise squeeze the bulk into one bin); values of either sample
    outside it, and non-finite ones, count in the first or last bin, so that outliers are penalised
    instead of widening the bins.
    """
    ref = np.asarray(reference, dtype=np.float64)
    oth = np.asarray(other, dtype=np.float64)
    lo, hi = (float(v) for v in np.percentile(ref, BIN_RANGE_PERCENTILES))
    if hi <= lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    oth = np.where(np.isnan(oth), hi, oth)
    h1 = np.histogram(np.clip(ref, lo, hi), edges)[0].astype(np.float64)
    h2 = np.histogram(np.clip(oth, lo, hi), edges)[0].astype(np.float64)
    return float(separation_power_counts(h1, h2))


def pair_features(
    maps_gev: np.ndarray, momenta_gev: np.ndarray, neighbour_maps_gev: np.ndarray, neighbour_momenta_gev: np.ndarray
) -> dict[str, np.ndarray]:
    """The :data:`PAIR_FEATURES` of maps (N, 11, 11) in GeV and momenta (N,) in GeV/c, paired with the maps
    and momenta of their neighbours (same shapes)."""
    one = selection_features(maps_gev, momenta_gev)
    other = selection_features(neighbour_maps_gev, neighbour_momenta_gev)
    return {f"pair_d{k}": one[k] - other[k] for k in ("E1x1/p", "E5x5/p")}


def selection_metric(
    reference_maps: np.ndarray,
    generated_maps: np.ndarray,
    momenta_gev: np.ndarray,
    *,
    bins: int = 50,
    neighbours: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Separation power per feature (keys ``sp_<feature>``) and their mean (``sp_mean``, lower is better)
    between Geant4 maps and maps generated for the same conditions (both (N, 11, 11), GeV; momenta (N,)
    in GeV/c); the crystal occupancy's chi^2 (``occupancy_chi2``: any deposit, ``occupancy_chi2_1MeV``: above
    1 MeV) and ``sp_occupancy`` (see the module). With ``neighbours`` = (Geant4 maps of each event's neighbour, maps generated for the
    neighbours' conditions with other noise, the neighbours' momenta), the :data:`PAIR_FEATURES` count
    too."""
    if len(reference_maps) == 0 or len(generated_maps) == 0:
        raise ValueError("the selection metric needs non-empty samples")
    ref = selection_features(reference_maps, momenta_gev)
    gen = selection_features(generated_maps, momenta_gev)
    names = SELECTION_FEATURES
    if neighbours is not None:
        ref_nb, gen_nb, p_nb = neighbours
        ref.update(pair_features(reference_maps, momenta_gev, ref_nb, p_nb))
        gen.update(pair_features(generated_maps, momenta_gev, gen_nb, p_nb))
        names = SELECTION_FEATURES + PAIR_FEATURES
    out = {f"sp_{k}": separation_power(ref[k], gen[k], bins=bins) for k in names}
    out["sp_mean"] = float(np.mean([out[f"sp_{k}"] for k in names]))
    out["occupancy_chi2"] = occupancy_chi2(reference_maps, generated_maps)
    out["occupancy_chi2_1MeV"] = occupancy_chi2(reference_maps, generated_maps, HIT_THRESHOLD_GEV)
    per_crystal = 0.5 * (out["occupancy_chi2"] + out["occupancy_chi2_1MeV"]) / N_CRYSTALS
    out["sp_occupancy"] = out["sp_mean"] * per_crystal
    return out
