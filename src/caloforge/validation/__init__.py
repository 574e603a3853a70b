"""Validation: shower observables of hit maps and distances between samples.

* :mod:`caloforge.validation.observables` -- BESIII shower shapes as BOSS ``EmcRecShowerShape``
  computes them (E1x1 ... E11x11, second moment, LAT, Zernike A20/A42), energy profiles, cell
  spectra, sparsity, widths and asymmetries, centre-to-entry distance; :func:`high_level_features`
  collects the scalar ones per event.
* :mod:`caloforge.validation.metrics` -- separation power (CaloChallenge), Wasserstein-1, chi^2/ndf,
  bootstrap errors, and the Frechet / kernel physics distances (FPD, KPD) on feature arrays.
* :mod:`caloforge.validation.classifier` -- the classifier two-sample test (CaloChallenge: AUC and the
  JSD of a calibrated network), on low-level (cells) or high-level (observables) inputs.
* :mod:`caloforge.validation.report` -- :func:`validate`: a candidate sample against a Geant4
  reference (and a Geant4 floor), per momentum slice, with verdicts; ``report.html`` and
  ``metrics.json``. Its parts: :mod:`~caloforge.validation.comparisons` (the observables compared, the
  metrics with bootstrap errors, the verdict rules), :mod:`~caloforge.validation.studies` (fixed-track
  resolution, impact-point profiles, crystal occupancy), :mod:`~caloforge.validation.html` (the page),
  :mod:`~caloforge.validation.figures` and :mod:`~caloforge.validation.plots` (matplotlib, hist, mplhep,
  imported only when a report is drawn).

All functions are pure and vectorised over events. Hit maps are (N, 11, 11) in GeV (rows theta, columns
phi, centre crystal at [5, 5]); positions are in cm.
"""

from caloforge.validation.classifier import (
    ClassifierResult,
    classifier_test,
    high_level_inputs,
    low_level_inputs,
)
from caloforge.validation.comparisons import (
    OBSERVABLES,
    compare_distributions,
    sample_observables,
)
from caloforge.validation.metrics import (
    bootstrap,
    bootstrap_error,
    bootstrap_resamples,
    bootstrap_values,
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
from caloforge.validation.report import (
    MOMENTUM_SLICES_GEV,
    ValidationInputError,
    validate,
)
from caloforge.validation.studies import resolution_study

__all__ = [
    "HIGH_LEVEL_FEATURE_NAMES",
    "LAT_R0_CM",
    "MOMENTUM_SLICES_GEV",
    "NXN_SIZES",
    "OBSERVABLES",
    "ZERNIKE_R0_CM",
    "ClassifierResult",
    "ValidationInputError",
    "bootstrap",
    "bootstrap_error",
    "bootstrap_resamples",
    "bootstrap_values",
    "cell_energy_spectrum",
    "chi2_ndf",
    "classifier_test",
    "compare_distributions",
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
    "high_level_inputs",
    "kpd",
    "lat_moment",
    "low_level_inputs",
    "resolution_study",
    "sample_observables",
    "second_moment_cm2",
    "separation_power",
    "shared_bin_edges",
    "sparsity",
    "stack_features",
    "standardise",
    "validate",
    "wasserstein_1",
    "widths_and_asymmetries",
    "zernike_moments",
]
