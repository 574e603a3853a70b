"""Compare a candidate sample with a Geant4 reference: metrics, verdicts, an HTML report.

:func:`validate` reads two sample files (and optionally a second Geant4 sample, the *floor*), computes
the shower observables of :mod:`caloforge.validation.observables` for every event, and compares them

* per observable (:data:`OBSERVABLES`): separation power (CaloChallenge, arXiv:2410.21611), the
  1-Wasserstein distance and chi^2/ndf, each with a bootstrap error (:func:`compare_distributions`),
  in the full momentum range and in the BESIII momentum slices (:data:`MOMENTUM_SLICES_GEV`);
* on all observables together: FPD and KPD (:mod:`caloforge.validation.metrics`), after a quantile
  transform of every observable to a standard normal fitted on the reference (:func:`gaussianise`):
  on the raw observables one Geant4 event 500 standard deviations out in E9x9/E11x11 made the
  Geant4-versus-Geant4 FPD 88 (0.5 for the candidate); the numbers are therefore not comparable
  with FPD/KPD values computed on raw features;
* with classifiers on low- and high-level inputs (:mod:`caloforge.validation.classifier`), full range;
* for fixed-track samples, the spread of E3x3, E5x5, the shower centre and LAT
  (:func:`resolution_study`);
* as functions of where the particle entered its crystal (:func:`impact_point_study`): profiles of
  E1x1/E3x3 and of the distance from the shower centre to the track point in bins of ``|dz_pos|`` and
  ``|r dphi_pos|``. A model that ignores the impact point can match every distribution above and still
  fail here (the first shipped photon model: corr(E1x1/p, |dz_pos|) 0.02, Geant4 -0.44);
* crystal by crystal, how often each crystal of the window is hit (:func:`occupancy_study`): a
  diagnostic, with pull maps and their chi^2 but no verdict.

Verdicts (:func:`verdict_against_floor`, :func:`verdict_against_thresholds`). Each observable is
judged on its *excess separation power* ``dS = S - E0[S]``: ``S`` is computed on bins holding equal
fractions of the pooled samples, and ``E0[S] = (K - 1) / 4 (1/N1 + 1/N2)`` is what ``S`` comes out as,
on average, for two samples of one distribution with ``N1`` and ``N2`` events filling ``K`` bins
(each bin adds ``Var(h1 - h2) / (2 (h1 + h2)) = (1 - p) (1/N1 + 1/N2) / 4``). So ``dS`` is about 0
for compatible samples whatever their size, and verdicts do not change with the statistics alone.

* With a floor sample (a second Geant4 sample, compared with the reference in the same way): the
  candidate is ``compatible`` when its ``dS`` is within :data:`FLOOR_SIGMA_COMPATIBLE` (3) standard
  deviations of the floor's, or below :data:`NEGLIGIBLE_EXCESS_S`; ``tension`` up to
  :data:`FLOOR_SIGMA_INCOMPATIBLE` (5) standard deviations; ``incompatible`` beyond.
* Without a floor, fixed thresholds: ``compatible`` when ``dS`` is within 2 standard deviations of a
  value below :data:`S_COMPATIBLE` (0.02), ``incompatible`` when ``dS`` is more than 2 standard
  deviations above :data:`S_INCOMPATIBLE` (0.1), ``tension`` in between. The classifiers' AUC is
  judged the same way, with :data:`AUC_COMPATIBLE` (0.55) and :data:`AUC_INCOMPATIBLE` (0.75) (the
  best CaloChallenge models reach 0.53-0.63, GANs 0.89-0.97).

The standard deviations are bootstrap ones: for binned metrics the counts are redrawn from multinomial
distributions with the observed bin fractions, for W1 the events of each sample are redrawn (as
multinomial weights on the sorted values); both are exactly a bootstrap of the events, without
re-binning. For samples of one distribution the bootstrap overestimates the spread of ``S`` by up to
a factor ~2 (``S`` is quadratic in the bin differences, and resampling adds its own differences);
far from zero it is accurate. The verdicts are therefore conservative near zero, where it matters
least. Slices with fewer than :data:`MIN_SLICE_EVENTS` events in a sample get ``n/a``.

The report (``report.html``) is one self-contained file: PNG figures embedded as base64, inline CSS,
no scripts and nothing loaded from the network; ``metrics.json`` holds every number of it.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from caloforge.data.io import Sample, SampleFileError, read_attrs, read_sample
from caloforge.detector.conditions import PARTICLES_BY_PDG
from caloforge.validation.metrics import chi2_ndf, fpd, kpd, separation_power, wasserstein_1
from caloforge.validation.observables import (
    RATIO_PAIRS,
    energy_profile_phi,
    energy_profile_theta,
    energy_weighted_centre_cm,
    high_level_features,
    sparsity,
)

# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------

MOMENTUM_SLICES_GEV: dict[str, tuple[float, float] | None] = {
    "all": None,
    "0.2-0.4": (0.2, 0.4),
    "0.5-0.7": (0.5, 0.7),
    "1.1-1.3": (1.1, 1.3),
    "1.8-2.0": (1.8, 2.0),
}
"""Momentum slices (GeV/c, of ``conditions[:, 0]``, edges included) of the BESIII validation; "all" is
the full range."""

S_COMPATIBLE = 0.02
"""Excess separation power below which an observable counts as compatible (no floor)."""
S_INCOMPATIBLE = 0.1
"""Excess separation power above which an observable counts as incompatible (no floor)."""
AUC_COMPATIBLE = 0.55
"""Classifier AUC below which the samples count as compatible (no floor)."""
AUC_INCOMPATIBLE = 0.75
"""Classifier AUC above which the samples count as incompatible (no floor)."""
THRESHOLD_SIGMAS = 2.0
"""Statistical allowance (standard deviations) of the threshold verdicts."""
FLOOR_SIGMA_COMPATIBLE = 3.0
"""Within this many standard deviations of the floor: compatible."""
FLOOR_SIGMA_INCOMPATIBLE = 5.0
"""Beyond this many standard deviations above the floor: incompatible."""
NEGLIGIBLE_EXCESS_S = 0.005
"""An excess separation power this small is compatible even when the floor is known more precisely."""
NEGLIGIBLE_AUC = 0.52
"""An AUC this small is compatible even when the floor is known more precisely."""
MIN_SLICE_EVENTS = 30
"""Fewest events per sample for the metrics of a slice."""
DEFAULT_MAX_EVENTS = 50_000
"""Events read from each file by default."""
SPARSITY_THRESHOLDS_GEV = np.geomspace(1e-4, 0.5, 28)
"""Cell thresholds of the sparsity-versus-threshold curve, GeV."""
RESOLUTION_QUANTITIES: dict[str, str] = {
    "e3x3_gev": "E3x3 [GeV]",
    "e5x5_gev": "E5x5 [GeV]",
    "centre_theta_cm": "centre - track, theta direction [cm]",
    "centre_phi_cm": "centre - track, phi direction [cm]",
    "lat": "LAT",
}
"""Quantities of the fixed-track resolution study and their labels."""
IMPACT_AXES: dict[str, str] = {
    "abs_dz_pos_cm": "|dz_pos| [cm]",
    "abs_rdphi_pos_cm": "|r dphi_pos| [cm]",
}
"""The impact point's distance from the centre of its crystal's front face along z and along phi (cm; the
conditions ``dz_pos_cm``, and ``dphi_pos_rad`` times the track point's distance from the beam axis),
the abscissae of :func:`impact_point_study`."""
IMPACT_QUANTITIES: dict[str, str] = {
    "e1_over_e3": "E1x1 / E3x3",
    "distance_to_truth_cm": "|centre - track point| [cm]",
}
"""Observables (keys of :func:`sample_observables`) profiled against the impact point, and their labels."""
IMPACT_BINS = 8
"""Bins of the impact-point profiles, each with an eighth of the reference events."""

VERDICTS: tuple[str, ...] = ("compatible", "tension", "incompatible")
"""Verdicts from best to worst; ``n/a`` where there is too little data."""
NOT_AVAILABLE = "n/a"

REFERENCE_LABEL = "Geant4 (reference)"
CANDIDATE_LABEL = "candidate"
FLOOR_LABEL = "Geant4 (floor)"


@dataclass(frozen=True)
class Observable:
    """One scalar observable of the report: key (in :func:`sample_observables`) and axis label."""

    key: str
    label: str


OBSERVABLES: tuple[Observable, ...] = (
    *(Observable(f"e{n}x{n}_gev", f"E{n}x{n} [GeV]") for n in (1, 3, 5, 7, 9, 11)),
    *(Observable(f"e{n}x{n}_over_p", f"E{n}x{n} / p [c]") for n in (3, 5, 11)),
    *(Observable(f"e{n}_over_e{k}", f"E{n}x{n} / E{k}x{k}") for n, k in RATIO_PAIRS),
    Observable("second_moment_cm2", "second moment [cm²]"),
    Observable("lat", "LAT"),
    Observable("a20", "Zernike A20"),
    Observable("a42", "Zernike A42"),
    Observable("phi_mean_crystals", "phi centre offset [crystals]"),
    Observable("phi_width_crystals", "phi width [crystals]"),
    Observable("phi_asymmetry", "phi asymmetry"),
    Observable("theta_mean_crystals", "theta centre offset [crystals]"),
    Observable("theta_width_crystals", "theta width [crystals]"),
    Observable("theta_asymmetry", "theta asymmetry"),
    Observable("sparsity_1mev", "sparsity (cells > 1 MeV)"),
    Observable("distance_to_truth_cm", "|centre - track point| [cm]"),
)
"""The observables compared one by one (E/p: the energy response; the distance uses the undisturbed
track's point on the front face, ``truth['front_position_cm']``)."""


class ValidationInputError(ValueError):
    """The samples cannot be compared: missing, empty, of different types or layouts."""


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------


def _load(source: str | os.PathLike | Sample, role: str, max_events: int) -> tuple[Sample, str]:
    """A sample (at most ``max_events`` events) and a description of where it came from."""
    if isinstance(source, Sample):
        sample, origin = source, "(in memory)"
        if len(sample) > max_events:
            sample = sample.take(slice(0, max_events))
    else:
        path = Path(source)
        if not path.exists():
            raise ValidationInputError(f"{role} sample {path}: no such file")
        try:
            n = read_attrs(path)["n_events"]
            sample = read_sample(path, 0, min(n, max_events))
        except SampleFileError as err:
            raise ValidationInputError(f"{role} sample: {err}") from None
        origin = str(path)
    if len(sample) == 0:
        raise ValidationInputError(f"{role} sample {origin} has no events")
    if sample.maps_gev.ndim != 3 or sample.maps_gev.shape[1:] != (11, 11) or sample.conditions.shape[1:] != (6,):
        raise ValidationInputError(
            f"{role} sample {origin}: unexpected layout (maps {sample.maps_gev.shape[1:]}, "
            f"conditions {sample.conditions.shape[1:]}; expected (11, 11) and (6,))"
        )
    if len(np.unique(sample.pdg)) != 1:
        pdgs = sorted(set(sample.pdg.tolist()))
        raise ValidationInputError(f"{role} sample {origin} mixes particle types (PDG {pdgs})")
    return sample, origin


def _particle_name(pdg: int) -> str:
    p = PARTICLES_BY_PDG.get(int(pdg))
    return f"{p.name} (PDG {pdg})" if p else f"PDG {pdg}"


def _check_compatible(samples: Mapping[str, tuple[Sample, str]]) -> None:
    """Same schema and one particle type in all samples."""
    (ref_role, (ref, ref_origin)), *others = samples.items()
    ref_schema = (ref.attrs.get("schema"), ref.attrs.get("schema_version"))
    ref_pdg = int(ref.pdg[0])
    for role, (s, origin) in others:
        schema = (s.attrs.get("schema"), s.attrs.get("schema_version"))
        if schema != ref_schema:
            raise ValidationInputError(
                f"sample schemas differ: {ref_role} {ref_origin} is {ref_schema[0]} v{ref_schema[1]}, "
                f"{role} {origin} is {schema[0]} v{schema[1]}"
            )
        if int(s.pdg[0]) != ref_pdg:
            raise ValidationInputError(
                f"refusing to compare different particle types: {ref_role} is {_particle_name(ref_pdg)}, "
                f"{role} is {_particle_name(int(s.pdg[0]))}"
            )


def fixed_track_gev(sample: Sample) -> tuple[float, float, float] | None:
    """The fixed gun momentum (px, py, pz) in GeV/c of a fixed-track sample, None otherwise."""
    gun = sample.attrs.get("gun")
    track = gun.get("track_gev") if isinstance(gun, Mapping) else None
    return None if track is None else tuple(float(x) for x in track)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# observables
# ----------------------------------------------------------------------------------------------


def sample_observables(sample: Sample) -> dict[str, np.ndarray]:
    """The scalar observables of every event of a sample (keys of :data:`OBSERVABLES` and more).

    :func:`caloforge.validation.observables.high_level_features` with the undisturbed track's point on
    the front face (``truth['front_position_cm']``) as the impact point (``distance_to_truth_cm``, cm),
    plus the energy response ``e{3,5,11}x{n}_over_p = E_nxn / p`` (GeV per GeV/c).

    Returns:
        dict name -> (N,) float64; NaN for empty showers where a quantity needs energy.
    """
    features = high_level_features(
        sample.maps_gev, sample.theta_index, sample.phi_index, sample.truth["front_position_cm"]
    )
    features["distance_to_truth_cm"] = features.pop("distance_to_entry_cm")
    p = np.asarray(sample.conditions[:, 0], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        for n in (3, 5, 11):
            features[f"e{n}x{n}_over_p"] = np.where(p > 0, features[f"e{n}x{n}_gev"] / p, np.nan)
    return features


def centre_offsets_cm(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Energy-weighted shower centre minus the track's point on the front face, along theta and phi, cm.

    The offset vector ``x_sh - x_track`` (:func:`caloforge.validation.observables.energy_weighted_centre_cm`,
    ``truth['front_position_cm']``) is projected on the unit vectors of increasing theta (towards -z)
    and increasing phi at the track point.

    Returns:
        ``(theta_cm, phi_cm)``, each (N,); NaN for empty showers.
    """
    centre = energy_weighted_centre_cm(sample.maps_gev, sample.theta_index, sample.phi_index)
    x = np.asarray(sample.truth["front_position_cm"], dtype=np.float64)
    phi = np.arctan2(x[:, 1], x[:, 0])
    theta = np.arctan2(np.hypot(x[:, 0], x[:, 1]), x[:, 2])
    e_theta = np.column_stack([np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi), -np.sin(theta)])
    e_phi = np.column_stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)])
    d = centre - x
    return (d * e_theta).sum(axis=1), (d * e_phi).sum(axis=1)


# ----------------------------------------------------------------------------------------------
# one-dimensional comparisons with bootstrap errors
# ----------------------------------------------------------------------------------------------


def metric_bin_edges(samples: list[np.ndarray], n_bins: int) -> np.ndarray:
    """Bin edges holding about equal fractions of the pooled samples (finite values), covering all.

    Tied values (discrete observables) merge bins; a constant observable gets one bin.
    """
    pooled = np.concatenate([np.asarray(s, dtype=np.float64) for s in samples])
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        raise ValueError("no finite values")
    edges = np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, n_bins + 1)))
    lo, hi = pooled.min(), pooled.max()
    if len(edges) < 2 or lo == hi:
        return np.array([lo - 0.5, hi + 0.5])
    edges[0], edges[-1] = lo, hi
    return edges


def _binned_metrics(c1: np.ndarray, c2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Separation power and chi2/ndf of count arrays (..., K), vectorised over leading axes."""
    n1 = c1.sum(axis=-1, keepdims=True)
    n2 = c2.sum(axis=-1, keepdims=True)
    h1, h2 = c1 / n1, c2 / n2
    total = h1 + h2
    used = (c1 + c2) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        s = 0.5 * np.where(used, (h1 - h2) ** 2 / np.where(used, total, 1.0), 0.0).sum(axis=-1)
        var = c1 / n1**2 + c2 / n2**2
        chi2 = np.where(used, (h1 - h2) ** 2 / np.where(used, var, 1.0), 0.0).sum(axis=-1)
        ndf = used.sum(axis=-1) - 1
        chi2 = np.where(ndf >= 1, chi2 / np.maximum(ndf, 1), np.nan)
    return s, chi2


def _w1_bootstrap_error(a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator) -> float:
    """Bootstrap standard deviation of W1: events redrawn as multinomial weights on the pooled grid."""
    grid, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    if len(grid) < 2:
        return 0.0
    pa = np.bincount(inverse[: len(a)], minlength=len(grid)) / len(a)
    pb = np.bincount(inverse[len(a) :], minlength=len(grid)) / len(b)
    dx = np.diff(grid)
    values = []
    chunk = max(1, int(2e6 // len(grid)))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        fa = np.cumsum(rng.multinomial(len(a), pa, size=k), axis=1)[:, :-1] / len(a)  # (k, G-1)
        fb = np.cumsum(rng.multinomial(len(b), pb, size=k), axis=1)[:, :-1] / len(b)
        values.append(np.abs(fa - fb) @ dx)
    v = np.concatenate(values)
    return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


def compare_distributions(
    reference: ArrayLike,
    other: ArrayLike,
    *,
    edges: ArrayLike,
    n_boot: int = 100,
    seed: int | None = 0,
) -> dict[str, float]:
    """Separation power, W1 and chi^2/ndf of one observable, with bootstrap errors.

    Args:
        reference, other: (N,) and (M,) values (non-finite ones dropped).
        edges: bin edges of the binned metrics (e.g. :func:`metric_bin_edges`), covering all values.
        n_boot: bootstrap resamples (at least 2).
        seed: seed of the bootstrap.

    Returns:
        dict with ``n_reference``, ``n_other``, ``separation_power`` (and ``_error``),
        ``expected_separation_power`` (``E0[S]`` for one distribution, see the module),
        ``excess_separation_power`` (``S - E0[S]``), ``wasserstein_1`` (and ``_error``, in the
        observable's unit) and ``chi2_ndf`` (and ``_error``).

    Raises:
        ValueError: a sample without finite values, or ``n_boot < 2``.
    """
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    a = np.asarray(reference, dtype=np.float64).ravel()
    b = np.asarray(other, dtype=np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        raise ValueError("a sample has no finite values")
    edges = np.asarray(edges, dtype=np.float64)
    rng = np.random.default_rng(seed)
    c1 = np.histogram(a, bins=edges)[0].astype(np.float64)
    c2 = np.histogram(b, bins=edges)[0].astype(np.float64)
    s = separation_power(a, b, edges)
    chi2 = chi2_ndf(a, b, edges)
    k_used = int(((c1 + c2) > 0).sum())
    expected = (k_used - 1) / 4.0 * (1.0 / len(a) + 1.0 / len(b))
    boot1 = rng.multinomial(int(c1.sum()), c1 / c1.sum(), size=n_boot).astype(np.float64)
    boot2 = rng.multinomial(int(c2.sum()), c2 / c2.sum(), size=n_boot).astype(np.float64)
    s_boot, chi2_boot = _binned_metrics(boot1, boot2)
    chi2_boot = chi2_boot[np.isfinite(chi2_boot)]
    return {
        "n_reference": int(a.size),
        "n_other": int(b.size),
        "n_bins": int(len(edges) - 1),
        "separation_power": s,
        "separation_power_error": float(np.std(s_boot, ddof=1)),
        "expected_separation_power": expected,
        "excess_separation_power": s - expected,
        "wasserstein_1": wasserstein_1(a, b),
        "wasserstein_1_error": _w1_bootstrap_error(a, b, n_boot, rng),
        "chi2_ndf": chi2,
        "chi2_ndf_error": float(np.std(chi2_boot, ddof=1)) if chi2_boot.size > 1 else float("nan"),
    }


# ----------------------------------------------------------------------------------------------
# verdicts
# ----------------------------------------------------------------------------------------------


def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def verdict_against_thresholds(
    value: float, error: float, *, compatible_below: float, incompatible_above: float, sigmas: float = THRESHOLD_SIGMAS
) -> str:
    """``compatible`` if ``value - sigmas * error <= compatible_below``, ``incompatible`` if
    ``value - sigmas * error > incompatible_above``, else ``tension``; ``n/a`` for non-finite input."""
    if not _finite(value, error):
        return NOT_AVAILABLE
    low = value - sigmas * error
    if low <= compatible_below:
        return "compatible"
    return "incompatible" if low > incompatible_above else "tension"


def verdict_against_floor(
    value: float, error: float, floor: float, floor_error: float, *, negligible: float
) -> str:
    """Judge a metric against the Geant4-versus-Geant4 floor (larger = worse).

    ``d = value - floor`` in units of ``sqrt(error^2 + floor_error^2)``: ``compatible`` up to
    :data:`FLOOR_SIGMA_COMPATIBLE`, or when ``value <= negligible``; ``tension`` up to
    :data:`FLOOR_SIGMA_INCOMPATIBLE`; ``incompatible`` beyond. ``n/a`` for non-finite input.
    """
    if not _finite(value, error, floor, floor_error):
        return NOT_AVAILABLE
    sigma = math.hypot(error, floor_error)
    d = value - floor
    if value <= negligible or d <= FLOOR_SIGMA_COMPATIBLE * sigma:
        return "compatible"
    return "tension" if d <= FLOOR_SIGMA_INCOMPATIBLE * sigma else "incompatible"


def _worst(verdicts: list[str]) -> str:
    ranked = [v for v in verdicts if v in VERDICTS]
    return max(ranked, key=VERDICTS.index) if ranked else NOT_AVAILABLE


def _observable_verdict(cand: dict | None, floor: dict | None) -> tuple[str, str]:
    """(verdict, what it was judged against) of one observable."""
    if cand is None:
        return NOT_AVAILABLE, "-"
    if floor is not None:
        v = verdict_against_floor(
            cand["excess_separation_power"], cand["separation_power_error"],
            floor["excess_separation_power"], floor["separation_power_error"], negligible=NEGLIGIBLE_EXCESS_S,
        )
        return v, "floor"
    v = verdict_against_thresholds(
        cand["excess_separation_power"], cand["separation_power_error"],
        compatible_below=S_COMPATIBLE, incompatible_above=S_INCOMPATIBLE,
    )
    return v, "thresholds"


# ----------------------------------------------------------------------------------------------
# resolution study
# ----------------------------------------------------------------------------------------------


def _spread(x: np.ndarray) -> tuple[float, float, float]:
    q16, q84 = np.quantile(x, [0.158655, 0.841345])
    return float(np.mean(x)), float(np.std(x, ddof=1)), float((q84 - q16) / 2)


def _spread_with_errors(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict[str, float]:
    x = x[np.isfinite(x)]
    if x.size < 3:
        return {"n": int(x.size), "mean": float("nan"), "std": float("nan"), "sigma68": float("nan"),
                "mean_error": float("nan"), "std_error": float("nan"), "sigma68_error": float("nan")}
    mean, std, s68 = _spread(x)
    boots = []
    chunk = max(1, int(4e6 // x.size))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        r = x[rng.integers(0, x.size, size=(k, x.size))]  # (k, N)
        q16, q84 = np.quantile(r, [0.158655, 0.841345], axis=1)
        boots.append(np.column_stack([r.mean(axis=1), r.std(axis=1, ddof=1), (q84 - q16) / 2]))
    b = np.concatenate(boots)
    err = b.std(axis=0, ddof=1)
    return {"n": int(x.size), "mean": mean, "std": std, "sigma68": s68,
            "mean_error": float(err[0]), "std_error": float(err[1]), "sigma68_error": float(err[2])}


def _pull(a: float, ea: float, b: float, eb: float) -> float:
    s = math.hypot(ea, eb)
    return (b - a) / s if _finite(a, b) and s > 0 else float("nan")


def _pull_verdict(pull: float) -> str:
    if not _finite(pull):
        return NOT_AVAILABLE
    p = abs(pull)
    if p <= FLOOR_SIGMA_COMPATIBLE:
        return "compatible"
    return "tension" if p <= FLOOR_SIGMA_INCOMPATIBLE else "incompatible"


def resolution_quantities(sample: Sample) -> dict[str, np.ndarray]:
    """Per-event quantities of the resolution study (:data:`RESOLUTION_QUANTITIES`): GeV, cm, LAT."""
    obs = sample_observables(sample)
    theta_cm, phi_cm = centre_offsets_cm(sample)
    return {"e3x3_gev": obs["e3x3_gev"], "e5x5_gev": obs["e5x5_gev"], "centre_theta_cm": theta_cm,
            "centre_phi_cm": phi_cm, "lat": obs["lat"]}


def resolution_study(
    reference: Sample,
    candidate: Sample,
    *,
    floor: Sample | None = None,
    n_boot: int = 100,
    seed: int | None = 0,
) -> dict:
    """Compare the spread of repeated simulations of one fixed track (BESIII seed validation).

    For E3x3 and E5x5 (GeV), the shower centre's offset from the track point along theta and phi (cm,
    :func:`centre_offsets_cm`) and LAT: mean, standard deviation and the robust width
    ``sigma68 = (q84 - q16) / 2`` of each sample with bootstrap errors, the candidate-to-reference
    ratios of the widths, and pulls ``(candidate - reference) / error`` of the mean (reported) and of
    std and sigma68, which give the verdict (``compatible`` when both are within 3, ``tension`` up
    to 5, ``incompatible`` beyond).
    Meaningful only when both samples repeat the same track (``attrs['gun']['track_gev']``);
    :func:`validate` checks that.

    Returns:
        dict quantity -> {"reference": {...}, "candidate": {...}, ["floor": {...}],
        "std_ratio", "std_ratio_error", "sigma68_ratio", "sigma68_ratio_error", "mean_pull", "std_pull",
        "sigma68_pull", ["floor_std_pull", "floor_sigma68_pull"], "verdict"}.
    """
    rng = np.random.default_rng(seed)
    named = {"reference": reference, "candidate": candidate, **({"floor": floor} if floor is not None else {})}
    values = {role: resolution_quantities(s) for role, s in named.items()}
    out: dict = {}
    for q in RESOLUTION_QUANTITIES:
        entry = {role: _spread_with_errors(np.asarray(v[q], dtype=np.float64), n_boot, rng)
                 for role, v in values.items()}
        r, c = entry["reference"], entry["candidate"]
        for what in ("std", "sigma68"):
            ok = _finite(r[what], c[what]) and r[what] > 0 and c[what] > 0
            ratio = c[what] / r[what] if ok else float("nan")
            rel = math.hypot(c[f"{what}_error"] / c[what], r[f"{what}_error"] / r[what]) if ok else float("nan")
            entry[f"{what}_ratio"] = ratio
            entry[f"{what}_ratio_error"] = ratio * rel if _finite(rel) else float("nan")
            entry[f"{what}_pull"] = _pull(r[what], r[f"{what}_error"], c[what], c[f"{what}_error"])
            if floor is not None:
                f = entry["floor"]
                entry[f"floor_{what}_pull"] = _pull(r[what], r[f"{what}_error"], f[what], f[f"{what}_error"])
        entry["mean_pull"] = _pull(r["mean"], r["mean_error"], c["mean"], c["mean_error"])
        entry["verdict"] = _worst([_pull_verdict(entry["std_pull"]), _pull_verdict(entry["sigma68_pull"])])
        out[q] = entry
    return out


# ----------------------------------------------------------------------------------------------
# impact-point dependence
# ----------------------------------------------------------------------------------------------


OCCUPANCY_THRESHOLDS_GEV = (0.0, 1e-3)
"""Cell thresholds of :func:`occupancy_study`: any deposit, and 1 MeV."""


def impact_point_axes(sample: Sample) -> dict[str, np.ndarray]:
    """The abscissae of :data:`IMPACT_AXES` for every event, cm (N,)."""
    front = np.asarray(sample.truth["front_position_cm"], dtype=np.float64)
    r_cm = np.hypot(front[:, 0], front[:, 1])
    c = np.asarray(sample.conditions, dtype=np.float64)
    return {"abs_dz_pos_cm": np.abs(c[:, 3]), "abs_rdphi_pos_cm": np.abs(r_cm * c[:, 4])}


def profile(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> dict[str, list]:
    """Mean of ``y`` and its standard error in bins of ``x`` (edges (K + 1,), the last bin closed);
    events with non-finite ``x`` or ``y`` are left out. NaN where a bin has fewer than 2 events.

    Returns:
        {"mean": (K,), "error": (K,), "n": (K,)} as lists.
    """
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    k = len(edges) - 1
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, k - 1)
    inside = (x >= edges[0]) & (x <= edges[-1])
    n = np.bincount(index[inside], minlength=k).astype(np.float64)
    s1 = np.bincount(index[inside], weights=y[inside], minlength=k)
    s2 = np.bincount(index[inside], weights=y[inside] ** 2, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n >= 2, s1 / n, np.nan)
        var = np.where(n >= 2, (s2 - n * mean**2) / (n - 1), np.nan)
        error = np.sqrt(np.clip(var, 0, None) / n)
    return {"mean": mean.tolist(), "error": error.tolist(), "n": n.astype(int).tolist()}


def _chi2_summary(pulls: np.ndarray) -> dict[str, float]:
    """chi^2 of the finite ``pulls``, its ndf (their number) and the one-sided Gaussian significance ``z`` of
    its p-value (NaN without any)."""
    from scipy.stats import chi2, norm

    ok = np.isfinite(pulls)
    ndf = int(ok.sum())
    if ndf == 0:
        return {"chi2": float("nan"), "ndf": 0, "z": float("nan")}
    value = float((pulls[ok] ** 2).sum())
    z = float(np.clip(norm.isf(chi2.sf(value, ndf)), 0.0, 40.0))  # p-values below 1e-300 read as 40 sigma
    return {"chi2": value, "ndf": ndf, "z": z}


def profile_chi2(reference: Mapping, other: Mapping) -> dict[str, float]:
    """chi^2 of two :func:`profile` results (bins with both means), its ndf (the number of such bins) and
    the equivalent one-sided Gaussian significance ``z`` of its p-value."""
    m1, e1 = np.asarray(reference["mean"], float), np.asarray(reference["error"], float)
    m2, e2 = np.asarray(other["mean"], float), np.asarray(other["error"], float)
    var = e1**2 + e2**2
    with np.errstate(invalid="ignore", divide="ignore"):
        pulls = np.where(np.isfinite(m1) & np.isfinite(m2) & (var > 0), (m2 - m1) / np.sqrt(var), np.nan)
    return _chi2_summary(pulls)


def crystal_occupancy(maps_gev: np.ndarray, threshold_gev: float = 0.0) -> np.ndarray:
    """Fraction of the events (11, 11) in which each crystal of the window holds more than ``threshold_gev``."""
    return (np.asarray(maps_gev) > threshold_gev).mean(axis=0)


def occupancy_pulls(reference_gev: np.ndarray, other_gev: np.ndarray, threshold_gev: float = 0.0) -> np.ndarray:
    """Crystal by crystal, how many standard deviations the occupancy (:func:`crystal_occupancy`) of
    ``other_gev`` (M, 11, 11) lies from that of ``reference_gev`` (N, 11, 11): the difference of the two
    fractions over its binomial error under the pooled fraction. NaN where neither sample has a hit."""
    n1, n2 = len(reference_gev), len(other_gev)
    k1 = (np.asarray(reference_gev) > threshold_gev).sum(axis=0)
    k2 = (np.asarray(other_gev) > threshold_gev).sum(axis=0)
    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, (k2 / n2 - k1 / n1) / np.sqrt(var), np.nan)


def occupancy_study(samples: Mapping[str, Sample], thresholds_gev=OCCUPANCY_THRESHOLDS_GEV) -> dict:
    """Which crystals of the window are hit how often (:func:`crystal_occupancy`), per sample, and the
    pulls of the candidate (and the floor) against the reference (:func:`occupancy_pulls`) with their chi^2.

    No verdict: it is a diagnostic. The low-level classifier of the shipped photon model (2026-12-01)
    told it from Geant4 at AUC 0.997 from the 121 hit / no-hit bits alone, although the crystal counts
    per event differ by 9 % on average: the model hits some outer crystals in a fixed pattern (one at
    the window's edge in 21 % of the events below 0.3 GeV/c, Geant4 1 %) and leaves others empty.

    Returns:
        dict ``"above_<threshold>_mev"`` -> {"threshold_gev", "<role>": (11, 11) occupancy,
        "candidate_pulls": (11, 11), "candidate_chi2": {...}, ["floor_pulls", "floor_chi2"]}.
    """
    out: dict = {}
    ref = samples["reference"].maps_gev
    for t in thresholds_gev:
        entry: dict = {"threshold_gev": float(t)}
        for role, s in samples.items():
            entry[role] = crystal_occupancy(s.maps_gev, t)
        for role in ("candidate", "floor"):
            if role in samples:
                pulls = occupancy_pulls(ref, samples[role].maps_gev, t)
                entry[f"{role}_pulls"] = pulls
                entry[f"{role}_chi2"] = _chi2_summary(pulls)
        out[f"above_{t * 1e3:g}_mev"] = entry
    return out


def impact_point_study(
    samples: Mapping[str, Sample], obs: Mapping[str, Mapping[str, np.ndarray]], *, n_bins: int = IMPACT_BINS
) -> dict:
    """Profiles of :data:`IMPACT_QUANTITIES` against :data:`IMPACT_AXES` for every sample (roles
    ``reference``, ``candidate``, optionally ``floor``), in bins holding equal numbers of reference
    events, and the chi^2 of each sample's profile against the reference's.

    The verdict comes from the candidate's significance ``z`` (:func:`profile_chi2`): ``compatible`` up to
    :data:`FLOOR_SIGMA_COMPATIBLE` (3), ``tension`` up to :data:`FLOOR_SIGMA_INCOMPATIBLE` (5),
    ``incompatible`` beyond; with a floor, the floor's ``z`` is subtracted first (two Geant4 samples
    need not agree better than their statistics say).

    Returns:
        dict ``"<quantity> vs <axis>"`` -> {"axis", "quantity", "edges", "<role>": profile,
        "candidate_chi2": {...}, ["floor_chi2": {...}], "verdict"}.
    """
    axes = {role: impact_point_axes(s) for role, s in samples.items()}
    out: dict = {}
    for axis in IMPACT_AXES:
        edges = metric_bin_edges([axes["reference"][axis]], n_bins)
        for quantity in IMPACT_QUANTITIES:
            entry: dict = {"axis": axis, "quantity": quantity, "edges": edges.tolist()}
            for role in samples:
                entry[role] = profile(axes[role][axis], np.asarray(obs[role][quantity], float), edges)
            entry["candidate_chi2"] = profile_chi2(entry["reference"], entry["candidate"])
            z = entry["candidate_chi2"]["z"]
            if "floor" in samples:
                entry["floor_chi2"] = profile_chi2(entry["reference"], entry["floor"])
                if _finite(entry["floor_chi2"]["z"]):
                    z = z - entry["floor_chi2"]["z"]
            entry["verdict"] = _pull_verdict(max(z, 0.0) if _finite(z) else z)
            out[f"{quantity} vs {axis}"] = entry
    return out


# ----------------------------------------------------------------------------------------------
# validate
# ----------------------------------------------------------------------------------------------


def _slice_mask(sample: Sample, bounds: tuple[float, float] | None) -> np.ndarray:
    p = sample.conditions[:, 0]
    if bounds is None:
        return np.ones(len(p), dtype=bool)
    return (p >= bounds[0]) & (p <= bounds[1])


def _n_bins(n: int) -> int:
    return int(np.clip(round(math.sqrt(n)), 5, 50))


def _feature_matrix(obs: Mapping[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    return np.column_stack([np.asarray(obs[o.key], dtype=np.float64)[mask] for o in OBSERVABLES])


def gaussianise(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map every feature to a standard normal with the reference's quantiles (a quantile transform).

    Each value ``x`` becomes ``Phi^-1(F_ref(x))``, with ``F_ref`` the reference's empirical distribution
    (mid-rank for ties, clipped to ``[1/(2N), 1 - 1/(2N)]``); NaN stays NaN. Monotone per feature, so it
    keeps every one-dimensional difference, but a single extreme value can no longer dominate a
    mean or a covariance: FPD and KPD of the report are computed after it.

    Args:
        reference, other: (N, d) and (M, d) features.

    Returns:
        The transformed ``(reference, other)``.
    """
    from scipy.special import ndtri

    ref = np.asarray(reference, dtype=np.float64)
    oth = np.asarray(other, dtype=np.float64)
    out_ref, out_oth = np.full(ref.shape, np.nan), np.full(oth.shape, np.nan)
    for j in range(ref.shape[1]):
        col = ref[:, j]
        srt = np.sort(col[np.isfinite(col)])
        n = len(srt)
        if n == 0:
            continue
        for src, dst in ((ref, out_ref), (oth, out_oth)):
            x = src[:, j]
            ok = np.isfinite(x)
            mid = 0.5 * (np.searchsorted(srt, x[ok], "left") + np.searchsorted(srt, x[ok], "right"))
            dst[ok, j] = ndtri(np.clip(mid / n, 0.5 / n, 1 - 0.5 / n))
    return out_ref, out_oth


def _distance_metrics(ref: np.ndarray, other: np.ndarray, seed: int) -> dict:
    """FPD and KPD of the observables after :func:`gaussianise`."""
    ref, other = gaussianise(ref, other)
    out: dict = {}
    try:
        out["fpd"], out["fpd_error"] = fpd(ref, other, num_points=8, num_batches=10, seed=seed)
    except ValueError as err:
        out["fpd"], out["fpd_error"], out["fpd_note"] = float("nan"), float("nan"), str(err)
    try:
        out["kpd"], out["kpd_error"] = kpd(ref, other, num_batches=10, batch_size=2_000, seed=seed)
    except ValueError as err:
        out["kpd"], out["kpd_error"], out["kpd_note"] = float("nan"), float("nan"), str(err)
    return out


def _compare_slice(
    samples: Mapping[str, Sample], obs: Mapping[str, Mapping[str, np.ndarray]], bounds, *, n_boot: int, seed: int
) -> dict:
    masks = {role: _slice_mask(s, bounds) for role, s in samples.items()}
    counts = {role: int(m.sum()) for role, m in masks.items()}
    result: dict = {"range_gev": list(bounds) if bounds else None, "n_events": counts, "observables": {}}
    enough = {role: n >= MIN_SLICE_EVENTS for role, n in counts.items()}
    if not (enough["reference"] and enough["candidate"]):
        result["note"] = f"fewer than {MIN_SLICE_EVENTS} events in the reference or the candidate"
        for o in OBSERVABLES:
            result["observables"][o.key] = {"verdict": NOT_AVAILABLE, "judged_against": "-"}
        return result
    use_floor = "floor" in samples and enough["floor"]
    if "floor" in samples and not use_floor:
        result["note"] = f"fewer than {MIN_SLICE_EVENTS} floor events: judged against the fixed thresholds"
    roles = ["candidate", "floor"] if use_floor else ["candidate"]
    for k, o in enumerate(OBSERVABLES):
        vals = {role: np.asarray(obs[role][o.key])[masks[role]] for role in samples}
        entry: dict = {}
        try:
            edges = metric_bin_edges([vals[r] for r in ("reference", *roles)], _n_bins(min(counts.values())))
            for role in roles:
                entry[role] = compare_distributions(vals["reference"], vals[role], edges=edges, n_boot=n_boot,
                                                    seed=seed + 1000 * k + (role == "floor"))
        except ValueError as err:
            entry = {"note": str(err)}
        entry["verdict"], entry["judged_against"] = _observable_verdict(entry.get("candidate"), entry.get("floor"))
        result["observables"][o.key] = entry
    ref_x = _feature_matrix(obs["reference"], masks["reference"])
    result["distances"] = {
        role: _distance_metrics(ref_x, _feature_matrix(obs[role], masks[role]), seed) for role in roles
    }
    return result


def _classifier_section(
    samples: Mapping[str, Sample], obs: Mapping[str, Mapping[str, np.ndarray]], *, seed: int, n_boot: int
) -> tuple[dict, dict]:
    """(JSON section, ROC curves for the plot) of the low- and high-level classifier tests."""
    from caloforge.validation.classifier import classifier_test, high_level_inputs, low_level_inputs

    keys = [o.key for o in OBSERVABLES]
    out: dict = {}
    curves: dict = {}
    for level in ("low_level", "high_level"):
        entry: dict = {}
        for role in [r for r in ("candidate", "floor") if r in samples]:
            inputs = []
            for r in ("reference", role):
                s = samples[r]
                if level == "low_level":
                    inputs.append(low_level_inputs(s.maps_gev, s.conditions))
                else:
                    inputs.append(high_level_inputs(obs[r], s.conditions, names=keys))
            try:
                res = classifier_test(*inputs, seed=seed, n_boot=n_boot)
            except ValueError as err:
                entry[role] = {"note": str(err)}
                continue
            entry[role] = res.to_dict()
            label = CANDIDATE_LABEL if role == "candidate" else FLOOR_LABEL
            curves.setdefault(level.replace("_", "-"), {})[label] = (res.roc_fpr, res.roc_tpr, res.auc)
        cand, flr = entry.get("candidate", {}), entry.get("floor")
        if "auc" not in cand:
            entry["verdict"], entry["judged_against"] = NOT_AVAILABLE, "-"
        elif flr is not None and "auc" in flr:
            entry["verdict"] = verdict_against_floor(cand["auc"], cand["auc_error"], flr["auc"], flr["auc_error"],
                                                     negligible=NEGLIGIBLE_AUC)
            entry["judged_against"] = "floor"
        else:
            entry["verdict"] = verdict_against_thresholds(cand["auc"], cand["auc_error"],
                                                          compatible_below=AUC_COMPATIBLE,
                                                          incompatible_above=AUC_INCOMPATIBLE)
            entry["judged_against"] = "thresholds"
        out[level] = entry
    return out, curves


def _resolution_section(samples: Mapping[str, Sample], *, n_boot: int, seed: int) -> dict:
    """The resolution study when reference and candidate repeat the same fixed track, else why not."""
    tracks = {role: fixed_track_gev(s) for role, s in samples.items()}
    ref_track, cand_track = tracks["reference"], tracks["candidate"]
    if ref_track is None or cand_track is None:
        return {"skipped": "not both samples repeat a fixed track (attrs['gun']['track_gev'])"}
    if not np.allclose(ref_track, cand_track, rtol=0, atol=1e-9):
        return {"skipped": f"different fixed tracks: {ref_track} and {cand_track} GeV/c"}
    floor_track = tracks.get("floor")
    same_floor = floor_track is not None and np.allclose(floor_track, ref_track, rtol=0, atol=1e-9)
    study = resolution_study(
        samples["reference"], samples["candidate"], floor=samples["floor"] if same_floor else None,
        n_boot=n_boot, seed=seed,
    )
    return {"track_gev": list(ref_track), "quantities": study}


def _jsonable(obj):
    """Plain JSON types; NaN and infinities become null."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def validate(
    reference: str | os.PathLike | Sample,
    candidate: str | os.PathLike | Sample,
    out_dir: str | os.PathLike,
    *,
    floor: str | os.PathLike | Sample | None = None,
    max_events: int = DEFAULT_MAX_EVENTS,
    seed: int = 0,
    n_boot: int = 100,
    classifier: bool = True,
    plots: bool = True,
    overwrite: bool = False,
) -> dict:
    """Compare a candidate sample with a Geant4 reference and write ``report.html`` and ``metrics.json``.

    See the module for the metrics and the verdict rules.

    Args:
        reference: the Geant4 sample file (or a :class:`~caloforge.data.io.Sample`).
        candidate: the sample to validate (same particle type).
        out_dir: folder for ``report.html`` and ``metrics.json`` (made if missing).
        floor: a second, independent Geant4 sample of the same kind; its comparison with the
            reference is the floor that the candidate's metrics are judged against.
        max_events: read at most this many events (the first ones) of each file.
        seed: seed of the bootstrap, the classifiers and FPD/KPD.
        n_boot: bootstrap resamples of every error.
        classifier: run the classifier tests (the slowest part).
        plots: draw the figures (otherwise the report holds the tables only).
        overwrite: replace an existing ``report.html`` / ``metrics.json`` in ``out_dir``.

    Returns:
        The content of ``metrics.json`` as a dict (``summary`` holds the verdicts).

    Raises:
        ValidationInputError: missing or unreadable files, empty samples, different particle types or
            sample layouts, bad options, outputs that exist.
    """
    if isinstance(max_events, bool) or not isinstance(max_events, (int, np.integer)) or max_events < 1:
        raise ValidationInputError(f"max_events must be a positive integer, got {max_events!r}")
    if n_boot < 2:
        raise ValidationInputError(f"n_boot must be at least 2, got {n_boot}")
    out = Path(out_dir)
    report_path, metrics_path = out / "report.html", out / "metrics.json"
    if out.exists() and not out.is_dir():
        raise ValidationInputError(f"{out} exists and is not a folder")
    if not overwrite:
        for p in (report_path, metrics_path):
            if p.exists():
                raise ValidationInputError(
                    f"{p} exists: choose another output folder, or overwrite it (caloforge validate --force)"
                )

    loaded = {"reference": _load(reference, "reference", int(max_events)),
              "candidate": _load(candidate, "candidate", int(max_events))}
    if floor is not None:
        loaded["floor"] = _load(floor, "floor", int(max_events))
    _check_compatible(loaded)
    samples = {role: s for role, (s, _) in loaded.items()}
    obs = {role: sample_observables(s) for role, s in samples.items()}

    slices = {
        name: _compare_slice(samples, obs, bounds, n_boot=n_boot, seed=seed)
        for name, bounds in MOMENTUM_SLICES_GEV.items()
    }
    clf, curves = _classifier_section(samples, obs, seed=seed, n_boot=n_boot) if classifier else ({}, {})

    resolution = _resolution_section(samples, n_boot=n_boot, seed=seed)
    impact = impact_point_study(samples, obs)
    occupancy = occupancy_study(samples)

    verdicts = {o.key: slices["all"]["observables"][o.key]["verdict"] for o in OBSERVABLES}
    classifier_verdicts = {level: entry["verdict"] for level, entry in clf.items()}
    resolution_verdicts = {q: e["verdict"] for q, e in resolution.get("quantities", {}).items()}
    impact_verdicts = {name: e["verdict"] for name, e in impact.items()}
    everything = [*verdicts.values(), *classifier_verdicts.values(), *resolution_verdicts.values(),
                  *impact_verdicts.values()]
    particle = _particle_name(int(samples["reference"].pdg[0]))
    metrics = {
        "caloforge_version": _version(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "particle": particle,
        "inputs": {
            role: {
                "source": origin,
                "n_events": len(s),
                "gun": s.attrs.get("gun"),
                "geant4_version": s.attrs.get("geant4_version"),
                "caloforge_version": s.attrs.get("caloforge_version"),
            }
            for role, (s, origin) in loaded.items()
        },
        "settings": {
            "seed": seed, "max_events": int(max_events), "n_boot": n_boot, "min_slice_events": MIN_SLICE_EVENTS,
            "judged_against": "floor" if floor is not None else "thresholds",
            "thresholds": {"excess_separation_power": [S_COMPATIBLE, S_INCOMPATIBLE],
                           "auc": [AUC_COMPATIBLE, AUC_INCOMPATIBLE], "sigmas": THRESHOLD_SIGMAS},
            "floor_sigmas": [FLOOR_SIGMA_COMPATIBLE, FLOOR_SIGMA_INCOMPATIBLE],
        },
        "slices": slices,
        "classifier": clf,
        "resolution": resolution,
        "impact_point": impact,
        "occupancy": occupancy,
        "summary": {
            "overall": _worst(everything),
            "counts": {v: everything.count(v) for v in (*VERDICTS, NOT_AVAILABLE)},
            "observables": verdicts,
            "classifier": classifier_verdicts,
            "resolution": resolution_verdicts,
            "impact_point": impact_verdicts,
        },
        "outputs": {"report": str(report_path), "metrics": str(metrics_path)},
    }
    metrics = _jsonable(metrics)
    figures = _figures(samples, obs, slices["all"], curves, resolution, impact, occupancy) if plots else {}
    page = _html(metrics, figures)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(metrics_path, json.dumps(metrics, indent=1))
    _write_atomic(report_path, page)
    return metrics


def _version() -> str:
    import caloforge

    return caloforge.__version__


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------


def _labels(samples: Mapping[str, object]) -> dict[str, str]:
    names = {"reference": REFERENCE_LABEL, "candidate": CANDIDATE_LABEL, "floor": FLOOR_LABEL}
    return {role: names[role] for role in samples}


def _plot_edges(values: list[np.ndarray], n: int) -> np.ndarray:
    pooled = np.concatenate([v[np.isfinite(v)] for v in values])
    if pooled.size == 0:
        return np.array([0.0, 1.0])
    lo, hi = np.quantile(pooled, [0.002, 0.998])
    if hi <= lo:
        lo, hi = pooled.min() - 0.5, pooled.max() + 0.5
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, int(np.clip(1.5 * math.sqrt(n), 10, 60)) + 1)


def _event_pairs(samples: Mapping[str, Sample]) -> tuple[list[dict[str, np.ndarray]], str]:
    """Three reference events (low, middle, high momentum) and the candidate events of the same
    conditions: the same index when the conditions agree, else the one of the nearest momentum.

    Returns:
        (rows of {panel title: map}, a note on how the candidate events were matched).
    """
    ref, cand = samples["reference"], samples["candidate"]
    nonempty = np.flatnonzero(ref.maps_gev.reshape(len(ref), -1).sum(axis=1) > 0)
    if nonempty.size == 0:
        return [], ""
    p = ref.conditions[nonempty, 0]
    picks = nonempty[np.argsort(p)[np.unique((np.array([0.2, 0.5, 0.9]) * (len(p) - 1)).astype(int))]]
    rows, hows = [], set()
    for i in picks:
        if i < len(cand) and np.allclose(cand.conditions[i], ref.conditions[i], rtol=1e-5, atol=1e-6):
            j = int(i)
            hows.add("the candidate events have the same index and conditions")
        else:
            j = int(np.nanargmin(np.abs(cand.conditions[:, 0] - ref.conditions[i, 0])))
            hows.add("the candidate events are those of the nearest momentum (no event with the same conditions)")
        rows.append({
            f"reference #{i}, p = {ref.conditions[i, 0]:.2f} GeV/c": ref.maps_gev[i],
            f"candidate #{j}, p = {cand.conditions[j, 0]:.2f} GeV/c": cand.maps_gev[j],
        })
    return rows, "; ".join(sorted(hows))


def _mean_and_error(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over events (axis 0) and its standard error."""
    err = x.std(axis=0, ddof=1) / math.sqrt(len(x)) if len(x) > 1 else np.zeros(x.shape[1:])
    return x.mean(axis=0), err


def _figures(
    samples: Mapping[str, Sample],
    obs: Mapping[str, Mapping[str, np.ndarray]],
    full_slice: Mapping,
    curves: Mapping,
    resolution: Mapping,
    impact: Mapping,
    occupancy: Mapping,
) -> dict[str, list[tuple[str, str, str]]]:
    """Section -> list of (title, caption, base64 PNG)."""
    from caloforge.validation import plots

    labels = _labels(samples)
    figs: dict[str, list[tuple[str, str, str]]] = {}

    def add(section: str, title: str, caption: str, fig) -> None:
        figs.setdefault(section, []).append((title, caption, plots.figure_to_base64_png(fig, dpi=72)))

    n_ref = len(samples["reference"])
    for o in OBSERVABLES:
        vals = {labels[r]: np.asarray(obs[r][o.key], dtype=np.float64) for r in samples}
        edges = _plot_edges(list(vals.values()), n_ref)
        entry = full_slice["observables"].get(o.key, {})
        fig = plots.histogram_comparison(vals, edges=edges, xlabel=o.label)
        add("observables", o.label, _metric_caption(entry), fig)

    for name, func, axis in (("phi", energy_profile_phi, "phi offset [crystals]"),
                             ("theta", energy_profile_theta, "theta offset [crystals]")):
        prof = {}
        for r, s in samples.items():
            e = func(s.maps_gev)  # (N, 11)
            prof[labels[r]] = _mean_and_error(e)
        add("profiles", f"energy profile along {name}", "mean over events; the reference's statistical error as "
            "grey band in the ratio", plots.profile_comparison(prof, xlabel=axis))

    means = {r: s.maps_gev.mean(axis=0) for r, s in samples.items() if r != "floor"}
    add("maps", "mean 11x11 maps", "rows: theta offset, columns: phi offset from the centre crystal; "
        "right: relative difference of the mean maps", plots.mean_map_comparison(means))
    pairs, how = _event_pairs(samples)
    if pairs:
        add("maps", "event displays", f"single events at low, middle and high momentum; {how}",
            plots.event_displays(pairs))

    spectra = {labels[r]: s.maps_gev[s.maps_gev > 0].ravel() for r, s in samples.items()}
    positive = np.concatenate(list(spectra.values()))
    if positive.size:
        lo = max(float(np.quantile(positive, 0.001)), 1e-6)
        hi = max(float(positive.max()), lo * 10)
        add("cells", "cell-energy spectrum", "energies of all cells above 0, log bins",
            plots.histogram_comparison(spectra, edges=np.geomspace(lo, hi, 41), xlabel="cell energy [GeV]",
                                       logx=True, logy=True))
    curves_sp = {}
    for r, s in samples.items():
        sp = sparsity(s.maps_gev, SPARSITY_THRESHOLDS_GEV)  # (N, T)
        curves_sp[labels[r]] = _mean_and_error(sp)
    add("cells", "sparsity versus threshold", "mean fraction of the 121 cells above the threshold",
        plots.curve_comparison(SPARSITY_THRESHOLDS_GEV, curves_sp, xlabel="cell threshold [GeV]",
                               ylabel="mean sparsity"))
    for e in occupancy.values():
        maps = {labels[r]: e[r] for r in samples if r != "floor"}
        add("cells", f"crystal occupancy above {e['threshold_gev'] * 1e3:g} MeV",
            f"fraction of events with a deposit in each crystal; right: the candidate's pull (binomial errors), "
            f"chi2/ndf {_fmt(e['candidate_chi2']['chi2'], 1)}/{e['candidate_chi2']['ndf']}"
            + (f" (floor {_fmt(e['floor_chi2']['chi2'], 1)}/{e['floor_chi2']['ndf']})" if "floor_chi2" in e else ""),
            plots.occupancy_comparison(maps, e["candidate_pulls"]))
    for name, e in impact.items():
        edges = np.asarray(e["edges"])
        centres = 0.5 * (edges[:-1] + edges[1:])
        prof = {labels[r]: (np.asarray(e[r]["mean"]), np.asarray(e[r]["error"])) for r in samples}
        add("impact", f"{IMPACT_QUANTITIES[e['quantity']]} versus {IMPACT_AXES[e['axis']]}",
            f"mean per bin of equal reference population, standard errors as bands; candidate chi2/ndf "
            f"{_fmt(e['candidate_chi2']['chi2'], 1)}/{e['candidate_chi2']['ndf']}",
            plots.curve_comparison(centres, prof, xlabel=IMPACT_AXES[e["axis"]],
                                   ylabel=IMPACT_QUANTITIES[e["quantity"]], logx=False))
    if curves:
        add("classifier", "ROC curves", "classifier tests on the held-out test split", plots.roc_curves(curves))
    if "quantities" in resolution:
        res_vals = {r: resolution_quantities(s) for r, s in samples.items()}
        q = {}
        for key, label in RESOLUTION_QUANTITIES.items():
            vals = {labels[r]: np.asarray(res_vals[r][key], dtype=np.float64) for r in samples}
            q[label] = (vals, _plot_edges(list(vals.values()), n_ref))
        add("resolution", "fixed-track distributions", "repeated simulation of one track",
            plots.resolution_histograms(q))
    return figs


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------

_CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
td { white-space: nowrap; }
th { background: #f0f0f0; } td.name, th.name { text-align: left; }
.compatible { background: #d9f2d9; } .tension { background: #fff1c2; } .incompatible { background: #f8d0d0; }
.na { background: #eee; color: #777; }
.verdict { font-weight: bold; }
.overall { font-size: 1.15em; padding: 0.5em 0.8em; display: inline-block; border: 1px solid #aaa; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; padding: 0.4em; background: #fff; }
figcaption { font-size: 0.8em; max-width: 420px; color: #444; }
.note { color: #555; font-size: 0.9em; } code { font-size: 0.95em; }
"""
_FIGURE_SECTIONS = {
    "observables": "Observables (full range, ratio to the reference)",
    "profiles": "Energy profiles",
    "maps": "Mean maps and event displays",
    "cells": "Cell energies and sparsity",
    "classifier": "Classifier ROC curves",
    "resolution": "Fixed-track distributions",
    "impact": "Dependence on the impact point",
}
_esc = html.escape


def _fmt(x, digits: int = 3) -> str:
    """A number with ``digits`` significant digits ("-" for None)."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return _esc(str(x))


def _pm(d: Mapping | None, key: str) -> str:
    """``value +- error`` of ``d[key]`` and ``d[key + "_error"]``."""
    if not d or key not in d:
        return "-"
    return f"{_fmt(d.get(key))} &plusmn; {_fmt(d.get(key + '_error'), 2)}"


def _verdict_cell(v: str, title: str = "") -> str:
    cls = "na" if v == NOT_AVAILABLE else v
    t = f' title="{_esc(title)}"' if title else ""
    return f'<td class="verdict {cls}"{t}>{_esc(v)}</td>'


def _table(header: list[str], rows: list[str], name_columns: int = 1) -> str:
    """A table; ``rows`` are the inner HTML of each ``<tr>``; the first columns are left-aligned names."""
    head = "".join(f"<th{' class=name' if k < name_columns else ''}>{h}</th>" for k, h in enumerate(header))
    return "<table><tr>" + head + "</tr>" + "".join(f"<tr>{r}</tr>" for r in rows) + "</table>"


def _metric_caption(entry: Mapping) -> str:
    cand = entry.get("candidate")
    if not cand:
        return f"verdict: {entry.get('verdict', NOT_AVAILABLE)}"
    text = (
        f"S = {cand['separation_power']:.4f} ± {cand['separation_power_error']:.4f} "
        f"(excess {cand['excess_separation_power']:.4f}), W1 = {cand['wasserstein_1']:.4g}, "
        f"chi2/ndf = {cand['chi2_ndf']:.2f}"
    )
    flr = entry.get("floor")
    if flr:
        text += f"; floor excess S = {flr['excess_separation_power']:.4f} ± {flr['separation_power_error']:.4f}"
    return f"{text}; verdict: {entry['verdict']} (against {entry['judged_against']})"


def _html_inputs(metrics: Mapping) -> str:
    rows = [
        f"<td class=name>{_esc(role)}</td><td class=name><code>{_esc(str(info['source']))}</code></td>"
        f"<td>{info['n_events']}</td><td class=name><code>{_esc(json.dumps(info.get('gun')))}</code></td>"
        f"<td class=name>{_esc(str(info.get('geant4_version') or '-'))}</td>"
        for role, info in metrics["inputs"].items()
    ]
    return "<h2>Samples</h2>" + _table(["role", "source", "events", "gun", "Geant4"], rows, name_columns=2)


def _html_verdict(metrics: Mapping, has_floor: bool) -> str:
    summary = metrics["summary"]
    counts = ", ".join(f"{n} {_esc(v)}" for v, n in summary["counts"].items() if n)
    overall = summary["overall"]
    if has_floor:
        rule = (
            "every candidate metric is judged against the Geant4-versus-Geant4 floor: compatible within "
            f"{FLOOR_SIGMA_COMPATIBLE:g} sigma of it, tension up to {FLOOR_SIGMA_INCOMPATIBLE:g} sigma, "
            "incompatible beyond"
        )
    else:
        rule = (
            f"fixed thresholds (no floor sample given): excess separation power below {S_COMPATIBLE} "
            f"compatible, above {S_INCOMPATIBLE} incompatible; AUC below {AUC_COMPATIBLE} compatible, above "
            f"{AUC_INCOMPATIBLE} incompatible; each within {THRESHOLD_SIGMAS:g} bootstrap standard deviations"
        )
    cls = "na" if overall == NOT_AVAILABLE else overall
    return (
        "<h2>Verdict</h2>"
        f'<p><span class="overall {cls}">overall: <b>{_esc(overall)}</b></span> ({counts})</p>'
        f'<p class="note">Rule: {_esc(rule)}. Observables are judged on the excess separation power '
        "S - E0[S] (E0[S]: the value S takes on average for two samples of one distribution of these "
        "sizes); the resolution study on pulls of the widths, the impact-point profiles on the significance of "
        "their chi2 (3 and 5 sigma).</p>"
    )


def _html_observables(metrics: Mapping, has_floor: bool) -> str:
    full = metrics["slices"]["all"]
    header = ["observable", "S", "excess S", "W1", "chi2/ndf"]
    if has_floor:
        header += ["floor S", "floor excess S", "floor W1", "floor chi2/ndf"]
    rows = []
    for o in OBSERVABLES:
        e = full["observables"].get(o.key, {})
        row = f"<td class=name>{_esc(o.label)}</td>"
        for d in [e.get("candidate"), e.get("floor")][: 2 if has_floor else 1]:
            row += (
                f"<td>{_pm(d, 'separation_power')}</td><td>{_fmt(d.get('excess_separation_power')) if d else '-'}</td>"
                f"<td>{_pm(d, 'wasserstein_1')}</td><td>{_pm(d, 'chi2_ndf')}</td>"
            )
        rows.append(row + _verdict_cell(e.get("verdict", NOT_AVAILABLE), e.get("note", "")))
    return "<h2>Observables, full momentum range</h2>" + _table(header + ["verdict"], rows)


def _html_multivariate(metrics: Mapping, has_floor: bool) -> str:
    dist = metrics["slices"]["all"].get("distances", {})
    roles = ["candidate", "floor"] if has_floor else ["candidate"]
    reported = '<td class="na">reported only</td>'
    rows = []
    for key, label in (("fpd", "FPD (Gaussianised observables)"), ("kpd", "KPD (Gaussianised observables)")):
        cells = "".join(f"<td>{_pm(dist.get(r), key)}</td>" for r in roles)
        rows.append(f"<td class=name>{label}</td>{cells}{reported}")
    for level, entry in metrics["classifier"].items():
        name = level.replace("_", "-")
        for key, label in (("auc", "AUC"), ("jsd_bits", "JSD [bits]")):
            cells = ""
            for r in roles:
                d = entry.get(r) or {}
                value = (_pm(d, key) if key == "auc" else _fmt(d.get(key))) if key in d else _esc(d.get("note", "-"))
                cells += f"<td>{value}</td>"
            verdict = _verdict_cell(entry["verdict"]) if key == "auc" else reported
            rows.append(f"<td class=name>classifier, {_esc(name)} inputs: {label}</td>{cells}{verdict}")
    labels = [CANDIDATE_LABEL, FLOOR_LABEL][: len(roles)]
    out = "<h2>Multivariate metrics and classifier tests</h2>" + _table(["metric", *labels, "verdict"], rows)
    if not metrics["classifier"]:
        out += '<p class="note">Classifier tests not run.</p>'
    return out + (
        '<p class="note">FPD and KPD use all observables after a quantile transform to standard normals fitted '
        "on the reference (so that single outliers cannot dominate them). They are biased upwards for small "
        "samples (and their errors are 0 when every batch holds all events): compare the candidate with the "
        "floor, not with 0.</p>"
    )


def _html_slices(metrics: Mapping) -> str:
    header = ["observable"]
    for name, sl in metrics["slices"].items():
        counts = "/".join(str(v) for v in sl["n_events"].values())
        header.append(f"{_esc(name)} GeV/c<br><span class=note>{counts} events</span>")
    rows = []
    for o in OBSERVABLES:
        row = f"<td class=name>{_esc(o.label)}</td>"
        for sl in metrics["slices"].values():
            e = sl["observables"].get(o.key, {})
            c = e.get("candidate")
            tip = (
                f"excess S = {_fmt(c.get('excess_separation_power'))} +- {_fmt(c.get('separation_power_error'), 2)}"
                if c
                else sl.get("note", e.get("note", ""))
            )
            row += _verdict_cell(e.get("verdict", NOT_AVAILABLE), tip)
        rows.append(row)
    row = "<td class=name>FPD / KPD (candidate)</td>"
    for sl in metrics["slices"].values():
        d = sl.get("distances", {}).get("candidate")
        row += f"<td>{_fmt(d.get('fpd'))} / {_fmt(d.get('kpd'))}</td>" if d else "<td>-</td>"
    rows.append(row)
    return (
        "<h2>Verdicts per momentum slice</h2>"
        + _table(header, rows)
        + f"<p class=note>Event counts: {' / '.join(metrics['inputs'])}. Hover a cell for its excess separation "
        "power.</p>"
    )


def _html_resolution(metrics: Mapping) -> str:
    out = "<h2>Resolution study (fixed track)</h2>"
    res = metrics["resolution"]
    if "skipped" in res:
        return out + f'<p class="note">Not done: {_esc(res["skipped"])}.</p>'
    out += f"<p>track p = ({', '.join(f'{x:g}' for x in res['track_gev'])}) GeV/c</p>"
    header = ["quantity", "sample", "mean", "std", "sigma68", "std ratio", "sigma68 ratio",
              "pulls (mean, std, sigma68)", "verdict"]
    rows = []
    for q, e in res["quantities"].items():
        for k, role in enumerate(r for r in ("reference", "candidate", "floor") if r in e):
            d = e[role]
            row = (
                f"<td class=name>{_esc(RESOLUTION_QUANTITIES[q]) if k == 0 else ''}</td>"
                f"<td class=name>{_esc(role)}</td><td>{_pm(d, 'mean')}</td><td>{_pm(d, 'std')}</td>"
                f"<td>{_pm(d, 'sigma68')}</td>"
            )
            if role == "candidate":
                pulls = ", ".join(_fmt(e.get(f"{w}_pull"), 2) for w in ("mean", "std", "sigma68"))
                row += f"<td>{_pm(e, 'std_ratio')}</td><td>{_pm(e, 'sigma68_ratio')}</td><td>{pulls}</td>"
                row += _verdict_cell(e["verdict"])
            elif role == "floor":
                pulls = ", ".join(["-", _fmt(e.get("floor_std_pull"), 2), _fmt(e.get("floor_sigma68_pull"), 2)])
                row += f"<td></td><td></td><td>{pulls}</td><td></td>"
            else:
                row += "<td></td>" * 4
            rows.append(row)
    return out + _table(header, rows, name_columns=2)


def _html_impact(metrics: Mapping) -> str:
    has_floor = "floor" in metrics["inputs"]
    header = ["profile", "candidate chi2/ndf", "candidate z"] + (["floor chi2/ndf", "floor z"] if has_floor else [])
    rows = []
    for name, e in metrics["impact_point"].items():
        label = f"{IMPACT_QUANTITIES[e['quantity']]} vs {IMPACT_AXES[e['axis']]}"
        row = f"<td class=name>{_esc(label)}</td>"
        for key in ("candidate_chi2", "floor_chi2") if has_floor else ("candidate_chi2",):
            c = e.get(key, {})
            row += f"<td>{_fmt(c.get('chi2'), 1)}/{c.get('ndf', '')}</td><td>{_fmt(c.get('z'), 2)}</td>"
        rows.append(row + _verdict_cell(e["verdict"]))
    note = (
        f'<p class="note">Profiles in {IMPACT_BINS} bins of equal reference population; z is the one-sided '
        "Gaussian significance of the chi2 p-value"
        + (", less the floor's z, judged at 3 and 5 sigma" if has_floor else ", judged at 3 and 5 sigma")
        + ". The figures are at the end of the page.</p>"
    )
    return "<h2>Dependence on the impact point</h2>" + _table(header + ["verdict"], rows) + note


def _html_occupancy(metrics: Mapping) -> str:
    entries = metrics.get("occupancy", {})
    if not entries:
        return ""
    has_floor = "floor" in metrics["inputs"]
    header = ["cells above", "candidate chi2/ndf", "candidate z"] + (["floor chi2/ndf", "floor z"] if has_floor else [])
    rows = []
    for e in entries.values():
        row = f"<td class=name>{_fmt(e['threshold_gev'] * 1e3)} MeV</td>"
        for key in ("candidate_chi2", "floor_chi2") if has_floor else ("candidate_chi2",):
            c = e.get(key, {})
            row += f"<td>{_fmt(c.get('chi2'), 1)}/{c.get('ndf', '')}</td><td>{_fmt(c.get('z'), 2)}</td>"
        rows.append(row)
    note = ('<p class="note">Crystal by crystal, the fraction of events with a deposit, against the reference\'s '
            "(binomial errors): a diagnostic without a verdict. The maps are with the cell figures.</p>")
    return "<h2>Crystal occupancy</h2>" + _table(header, rows) + note


def _html_figures(figures: Mapping[str, list]) -> str:
    if not figures:
        return '<p class="note">Figures not drawn.</p>'
    out = []
    for section, items in figures.items():
        out.append(f"<h2>{_esc(_FIGURE_SECTIONS.get(section, section))}</h2><div class=figs>")
        for title, caption, png in items:
            out.append(
                f'<figure><img src="data:image/png;base64,{png}" alt="{_esc(title)}">'
                f"<figcaption><b>{_esc(title)}</b><br>{_esc(caption)}</figcaption></figure>"
            )
        out.append("</div>")
    return "\n".join(out)


def _html(metrics: Mapping, figures: Mapping[str, list]) -> str:
    """The self-contained report page."""
    has_floor = "floor" in metrics["inputs"]
    particle = _esc(metrics["particle"])
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,">'  # no favicon request
        f"<title>caloforge validation: {particle}</title><style>{_CSS}</style></head><body>"
        f"<h1>caloforge validation report: {particle}</h1>"
        f'<p class="note">caloforge {_esc(str(metrics["caloforge_version"]))}, {_esc(metrics["created_utc"])}</p>'
    )
    sections = [
        head,
        _html_inputs(metrics),
        _html_verdict(metrics, has_floor),
        _html_observables(metrics, has_floor),
        _html_multivariate(metrics, has_floor),
        _html_slices(metrics),
        _html_resolution(metrics),
        _html_impact(metrics),
        _html_occupancy(metrics),
        _html_figures(figures),
        "</body></html>\n",
    ]
    return "\n".join(sections)
