"""Validation: shower observables of hit maps and distances between samples.

* :mod:`caloforge.validation.observables` -- BESIII shower shapes as BOSS ``EmcRecShowerShape``
  computes them (E1x1 ... E11x11, second moment, LAT, Zernike A20/A42), energy profiles, cell
  spectra, sparsity, widths and asymmetries, centre-to-entry distance; :func:`high_level_features`
  collects the scalar ones per event.
* :mod:`caloforge.validation.metrics` -- separation power (CaloChallenge), Wasserstein-1, chi^2/ndf,
  bootstrap errors, and the Frechet / kernel physics distances (FPD, KPD) on feature arrays.

All functions are pure and vectorised over events. Hit maps are (N, 11, 11) in GeV (rows theta, columns
phi, centre crystal at [5, 5]); positions are in cm.
"""

from caloforge.validation.metrics import (
    bootstrap,
    chi2_ndf,
    fpd,
    frechet_distance,
    kpd,
    separation_power,
    shared_bin_edges,
    standardise,
    wasserstein_1,
)
from caloforge.validation.observables import (
    HIGH_LEVEL_FEATURE_NAMES,
    LAT_R0_CM,
    NXN_SIZES,
    ZERNIKE_R0_CM,
    cell_energy_spectrum,
    crystal_positions_cm,
    distance_to_entry_cm,
    e_nxn,
    energy_profile_phi,
    energy_profile_theta,
    energy_ratios,
    energy_sums,
    energy_weighted_centre_cm,
    high_level_features,
    lat_moment,
    second_moment_cm2,
    sparsity,
    stack_features,
    widths_and_asymmetries,
    zernike_moments,
)

__all__ = [
    "HIGH_LEVEL_FEATURE_NAMES",
    "LAT_R0_CM",
    "NXN_SIZES",
    "ZERNIKE_R0_CM",
    "bootstrap",
    "cell_energy_spectrum",
    "chi2_ndf",
    "crystal_positions_cm",
    "distance_to_entry_cm",
    "e_nxn",
    "energy_profile_phi",
    "energy_profile_theta",
    "energy_ratios",
    "energy_sums",
    "energy_weighted_centre_cm",
    "fpd",
    "frechet_distance",
    "high_level_features",
    "kpd",
    "lat_moment",
    "second_moment_cm2",
    "separation_power",
    "shared_bin_edges",
    "sparsity",
    "stack_features",
    "standardise",
    "wasserstein_1",
    "widths_and_asymmetries",
    "zernike_moments",
]
