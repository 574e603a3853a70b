"""The checkpoint-selection metric of the training loop (private to training).

Mean separation power of a few BESIII shower shapes (SPEC section 5) between held-out Geant4 maps and
maps generated for the same conditions (:data:`SELECTION_FEATURES`): the fractions of the momentum in
the central 1x1, 3x3, 5x5 and 11x11 crystals, the ratios E3x3/E5x5, E5x5/E7x7 and E9x9/E11x11, the
number of crystals above 1 MeV, the lateral second moment and LAT in crystal units (stand-ins for the
validation's second moment and LAT in cm, which need the crystal positions). Fractions of the momentum, not
energies in GeV: the GeV sums follow the momentum spectrum, and stayed at 0.004-0.008 for a model whose
E/p separation powers were 0.18-0.21 (issue 4). The separation power (triangular discrimination, as in
the CaloChallenge 2022 evaluation, arXiv:2410.21611) of two histograms normalised to unit sum with
common bins is
``0.5 * sum_i (h1_i - h2_i)^2 / (h1_i + h2_i)``: 0 for identical, 1 for disjoint distributions.

With pairs of nearest neighbours in condition space (each held-out event and the held-out event of the
same type nearest to it, maps generated for both conditions with independent noise), two more features
count: the differences of E1x1/p and of E5x5/p within a pair (:data:`PAIR_FEATURES`). Neighbours have
almost the same conditions, so these differences show the fluctuation of the shower at fixed conditions,
which single events cannot: the first candidate with a mean shower that follows the conditions scored
0.02-0.05 on the nine features while its E5x5 of a repeated track fluctuated 3-16 % as much as Geant4's.

This is a small, self-contained metric for choosing ``best.pt``; the full validation of the models
lives in its own package.
"""

from __future__ import annotations

import numpy as np

from caloforge.models.gan import LAT_R0_CRYSTALS

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
CENTRE = 5
BIN_RANGE_PERCENTILES = (0.5, 99.5)
"""Percentiles of the Geant4 sample that the histogram bins of :func:`separation_power` span."""
HIT_THRESHOLD_GEV = 1e-3
"""Energy above which a crystal counts in ``N>1MeV``."""


def energy_sum(maps_gev: np.ndarray, n: int) -> np.ndarray:
    """Energy (GeV) in the central ``n x n`` crystals of maps (N, 11, 11); ``n`` odd."""
    h = n // 2
    return maps_gev[:, CENTRE - h : CENTRE + h + 1, CENTRE - h : CENTRE + h + 1].sum(axis=(1, 2))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _squared_distances(m: np.ndarray) -> np.ndarray:
    """Squared distance (N, 11, 11), in crystal units, of every crystal from the energy-weighted centre of
    its map (N, 11, 11); from the map's centre for empty maps."""
    idx = np.arange(m.shape[-1], dtype=np.float64)
    total = m.sum(axis=(1, 2))
    row = _ratio((m.sum(axis=2) * idx).sum(axis=1), total)  # (N,)
    col = _ratio((m.sum(axis=1) * idx).sum(axis=1), total)  # (N,)
    return (idx[None, :, None] - row[:, None, None]) ** 2 + (idx[None, None, :] - col[:, None, None]) ** 2


def lateral_second_moment(maps_gev: np.ndarray) -> np.ndarray:
    """``sum E_i |x_i - x_c|^2 / sum E_i`` over the 11 x 11 crystals of maps (N, 11, 11), in crystal
    units squared (``x_c``: the energy-weighted centre); 0 for empty maps."""
    m = np.asarray(maps_gev, dtype=np.float64)
    return _ratio((m * _squared_distances(m)).sum(axis=(1, 2)), m.sum(axis=(1, 2)))


def lateral_moment_lat(maps_gev: np.ndarray) -> np.ndarray:
    """LAT of maps (N, 11, 11): ``sum_{i>=3} E_i r_i^2 / (sum_{i>=3} E_i r_i^2 + r0^2 (E_1 + E_2))``, crystals
    sorted by energy, ``r_i`` the distance from the energy-weighted centre in crystal units, ``r0`` =
    :data:`~caloforge.models.gan.LAT_R0_CRYSTALS` (the numpy twin of the training loss's
    :func:`~caloforge.models.gan.lateral_shape_moments`); 0 for empty maps."""
    m = np.asarray(maps_gev, dtype=np.float64)
    e = m.reshape(len(m), -1)  # (N, 121)
    d2 = _squared_distances(m).reshape(len(m), -1)  # (N, 121)
    top = np.zeros(e.shape, dtype=bool)
    np.put_along_axis(top, np.argsort(-e, axis=1, kind="stable")[:, :2], True, axis=1)
    num = np.where(top, 0.0, e * d2).sum(axis=1)
    return _ratio(num, num + LAT_R0_CRYSTALS**2 * np.where(top, e, 0.0).sum(axis=1))


def selection_features(maps_gev: np.ndarray, momenta_gev: np.ndarray) -> dict[str, np.ndarray]:
    """The shower shapes of :data:`SELECTION_FEATURES` for maps (N, 11, 11) in GeV and momenta (N,) in
    GeV/c. Ratios are 0 where their denominator is."""
    m = np.asarray(maps_gev, dtype=np.float64)
    p = np.asarray(momenta_gev, dtype=np.float64)
    if p.shape != m.shape[:1]:
        raise ValueError(f"expected one momentum per map ({len(m)}), got shape {p.shape}")
    e = {n: energy_sum(m, n) for n in (1, 3, 5, 7, 9, 11)}
    out = {f"E{n}x{n}/p": _ratio(e[n], p) for n in (1, 3, 5, 11)}
    out["E3x3/E5x5"] = _ratio(e[3], e[5])
    out["E5x5/E7x7"] = _ratio(e[5], e[7])
    out["E9x9/E11x11"] = _ratio(e[9], e[11])
    out["N>1MeV"] = (m > HIT_THRESHOLD_GEV).sum(axis=(1, 2)).astype(np.float64)
    out["R2"] = lateral_second_moment(m)
    out["LAT"] = lateral_moment_lat(m)
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
    h1 /= max(h1.sum(), 1.0)
    h2 /= max(h2.sum(), 1.0)
    s = h1 + h2
    nz = s > 0
    return float(0.5 * np.sum((h1[nz] - h2[nz]) ** 2 / s[nz]))


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
    in GeV/c). With ``neighbours`` = (Geant4 maps of each event's neighbour, maps generated for the
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
    return out
