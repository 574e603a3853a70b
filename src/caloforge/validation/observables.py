"""Validation observables of 11x11 hit maps, vectorised over events (pure numpy).

The shower shapes themselves (E1x1 ... E11x11 and their ratios, energy profiles, widths and
asymmetries, energy-weighted centre, BOSS second moment, LAT, Zernike A20/A42, distance to the entry
point) live in :mod:`caloforge.showers.shapes` and are re-exported here. This module adds what only the
validation needs: the cell-energy spectrum, the sparsity (LHCb GAN, Chekalina et al., arXiv:1812.01319),
and :func:`high_level_features`, all scalar observables of each event for histograms, classifiers and
FPD/KPD.

Maps are (N, 11, 11) in GeV, laid out as the sample files (:mod:`caloforge.data.io`): rows theta, columns
phi, the centre crystal at ``[5, 5]``; the units, the differences to BOSS and the conventions for empty
maps are those of :mod:`caloforge.showers.shapes` (sums, profiles and sparsities are 0 for empty maps,
everything that divides by an energy is NaN, without warnings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from caloforge.detector.geometry import WINDOW
from caloforge.showers.shapes import (
    LAT_R0_CM,
    NXN_SIZES,
    RATIO_PAIRS,
    ZERNIKE_R0_CM,
    as_hit_maps,
    crystal_positions_cm,
    distance_to_entry_cm,
    e_nxn,
    energy_profile_phi,
    energy_profile_theta,
    energy_ratios,
    energy_sums,
    energy_weighted_centre_cm,
    lat_moment,
    position_shapes_cm,
    second_moment_cm2,
    widths_and_asymmetries,
    zernike_moments,
)

__all__ = [
    "HIGH_LEVEL_FEATURE_NAMES",
    "LAT_R0_CM",
    "NXN_SIZES",
    "RATIO_PAIRS",
    "SPARSITY_FEATURE_THRESHOLD_GEV",
    "ZERNIKE_R0_CM",
    "cell_energy_spectrum",
    "crystal_positions_cm",
    "distance_to_entry_cm",
    "e_nxn",
    "energy_profile_phi",
    "energy_profile_theta",
    "energy_ratios",
    "energy_sums",
    "energy_weighted_centre_cm",
    "high_level_features",
    "lat_moment",
    "second_moment_cm2",
    "sparsity",
    "stack_features",
    "widths_and_asymmetries",
    "zernike_moments",
]

SPARSITY_FEATURE_THRESHOLD_GEV = 1e-3
"""Cell threshold of the sparsity in :func:`high_level_features` (1 MeV)."""


def cell_energy_spectrum(maps: ArrayLike, threshold_gev: float = 0.0) -> np.ndarray:
    """Energies of all cells above ``threshold_gev`` (strictly), flattened over events, GeV.

    The cell-energy spectrum of the seeds' validation (histogram it, often on a log axis).
    """
    m = as_hit_maps(maps).ravel()
    return m[m > threshold_gev]


def sparsity(maps: ArrayLike, thresholds_gev: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Fraction of the 121 window cells with energy strictly above each threshold (LHCb GAN).

    Args:
        maps: (N, 11, 11) hit maps in GeV.
        thresholds_gev: a threshold or a sequence of T thresholds, GeV.

    Returns:
        (N,) for a scalar threshold, (N, T) for a sequence; 0 for empty maps.
    """
    m = as_hit_maps(maps).reshape(-1, WINDOW * WINDOW)
    thr = np.asarray(thresholds_gev, dtype=np.float64)
    frac = (m[:, :, None] > thr.reshape(1, 1, -1)).mean(axis=1)  # (N, T)
    return frac[:, 0] if thr.ndim == 0 else frac


def high_level_features(
    maps: ArrayLike,
    theta_index: ArrayLike,
    phi_index: ArrayLike,
    entry_position_cm: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """All scalar observables of each event, for histograms, classifiers and FPD/KPD.

    Keys (in this order; :data:`HIGH_LEVEL_FEATURE_NAMES`):

    * ``e1x1_gev`` ... ``e11x11_gev`` (:func:`energy_sums`), GeV;
    * ``e1_over_e3`` ... (:func:`energy_ratios`);
    * ``second_moment_cm2`` (cm^2), ``lat``, ``a20``, ``a42`` (BOSS shapes over the full window,
      :func:`caloforge.showers.shapes.position_shapes_cm`);
    * ``phi_mean_crystals``, ``phi_width_crystals``, ``phi_asymmetry`` and the ``theta_`` ones
      (:func:`widths_and_asymmetries`);
    * ``sparsity_1mev``: fraction of the 121 cells above 1 MeV (:func:`sparsity`);
    * ``distance_to_entry_cm`` (cm), only when ``entry_position_cm`` is given.

    Args:
        maps: (N, 11, 11) hit maps in GeV.
        theta_index, phi_index: centre crystals, (N,) or scalars.
        entry_position_cm: (N, 3) entry points (``truth['entry_position_cm']``), optional.

    Returns:
        dict name -> (N,) float64 array; NaN entries for empty maps (see the module notes).
    """
    m = as_hit_maps(maps)
    shapes = position_shapes_cm(m, theta_index, phi_index, entry_position_cm)
    distance = shapes.pop("distance_to_entry_cm", None)
    features: dict[str, np.ndarray] = {
        **energy_sums(m),
        **energy_ratios(m),
        **shapes,
        **widths_and_asymmetries(m),
        "sparsity_1mev": sparsity(m, SPARSITY_FEATURE_THRESHOLD_GEV),
    }
    if distance is not None:
        features["distance_to_entry_cm"] = distance
    return features


HIGH_LEVEL_FEATURE_NAMES: tuple[str, ...] = (
    *(f"e{n}x{n}_gev" for n in NXN_SIZES),
    *(f"e{n}_over_e{k}" for n, k in RATIO_PAIRS),
    "second_moment_cm2",
    "lat",
    "a20",
    "a42",
    *(
        f"{axis}_{what}"
        for axis in ("phi", "theta")
        for what in ("mean_crystals", "width_crystals", "asymmetry")
    ),
    "sparsity_1mev",
)
"""Keys of :func:`high_level_features` without an entry point (``distance_to_entry_cm`` comes last
when one is given)."""


def stack_features(features: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """Stack feature columns into an (N, d) array (for :func:`caloforge.validation.metrics.fpd`, ...).

    Args:
        features: dict name -> (N,) as returned by :func:`high_level_features`.
        names: the columns in order; all keys of ``features`` (in their order) when None.
    """
    keys = list(features) if names is None else list(names)
    missing = [k for k in keys if k not in features]
    if missing:
        raise KeyError(f"unknown features {missing}; available: {', '.join(features)}")
    return np.column_stack([np.asarray(features[k], dtype=np.float64) for k in keys])
