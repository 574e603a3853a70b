"""Studies of the validation report beyond one-dimensional distributions.

* :func:`resolution_study` -- for fixed-track samples (one track simulated again and again, the BESIII
  seed validation), the spread of E3x3, E5x5, the shower centre and LAT;
* :func:`impact_point_study` -- as functions of where the particle entered its crystal: profiles of
  E1x1/E3x3 and of the distance from the shower centre to the track point in bins of ``|dz_pos|`` and
  ``|r dphi_pos|``. A model that ignores the impact point can match every distribution of the
  observables and still fail here;
* :func:`occupancy_study` -- crystal by crystal, how often each crystal of the window is hit: a
  diagnostic, with pull maps and their chi^2 but no verdict.

The verdicts follow :mod:`caloforge.validation.comparisons` (pulls and significances judged at 3 and 5
standard deviations, :func:`~caloforge.validation.comparisons.pull_verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from caloforge.data.io import Sample
from caloforge.showers.compare import GAUSSIAN_SIGMA68_QUANTILES, crystal_occupancy, occupancy_pulls, sigma68
from caloforge.showers.shapes import centre_offsets_cm
from caloforge.validation.comparisons import all_finite, metric_bin_edges, pull_verdict, sample_observables, worst_verdict
from caloforge.validation.metrics import bootstrap_error, bootstrap_values

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
"""Observables (keys of :func:`~caloforge.validation.comparisons.sample_observables`) profiled against
the impact point, and their labels."""
IMPACT_BINS = 8
"""Bins of the impact-point profiles, each with an eighth of the reference events."""
OCCUPANCY_THRESHOLDS_GEV = (0.0, 1e-3)
"""Cell thresholds of :func:`occupancy_study`: any deposit, and 1 MeV."""

# ----------------------------------------------------------------------------------------------
# resolution study
# ----------------------------------------------------------------------------------------------


def _spread_with_errors(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict[str, float]:
    """Mean, standard deviation and sigma68 (Gaussian quantiles) of the finite values of ``x``, with
    bootstrap errors."""
    x = x[np.isfinite(x)]
    if x.size < 3:
        return {"n": int(x.size), "mean": float("nan"), "std": float("nan"), "sigma68": float("nan"),
                "mean_error": float("nan"), "std_error": float("nan"), "sigma68_error": float("nan")}

    def spread(idx: np.ndarray) -> np.ndarray:  # idx (k, N) -> (k, 3)
        r = x[idx]
        return np.column_stack([r.mean(axis=1), r.std(axis=1, ddof=1),
                                sigma68(r, axis=1, quantiles=GAUSSIAN_SIGMA68_QUANTILES)])

    err = bootstrap_error(bootstrap_values(spread, rng, n_boot, (x.size,), chunk=int(4e6 // x.size)))
    return {"n": int(x.size), "mean": float(np.mean(x)), "std": float(np.std(x, ddof=1)),
            "sigma68": sigma68(x, quantiles=GAUSSIAN_SIGMA68_QUANTILES),
            "mean_error": float(err[0]), "std_error": float(err[1]), "sigma68_error": float(err[2])}


def _pull(a: float, ea: float, b: float, eb: float) -> float:
    """``(b - a) / sqrt(ea^2 + eb^2)``; NaN when not defined."""
    s = math.hypot(ea, eb)
    return (b - a) / s if all_finite(a, b) and s > 0 else float("nan")


def resolution_quantities(sample: Sample, observables: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-event quantities of the resolution study (:data:`RESOLUTION_QUANTITIES`): GeV, cm, LAT.

    Args:
        sample: the fixed-track sample.
        observables: its :func:`~caloforge.validation.comparisons.sample_observables`, when computed
            already (otherwise computed here).
    """
    obs = sample_observables(sample) if observables is None else observables
    theta_cm, phi_cm = centre_offsets_cm(sample.maps_gev, sample.theta_index, sample.phi_index,
                                         sample.truth["front_position_cm"])
    return {"e3x3_gev": obs["e3x3_gev"], "e5x5_gev": obs["e5x5_gev"], "centre_theta_cm": theta_cm,
            "centre_phi_cm": phi_cm, "lat": obs["lat"]}


def resolution_study(
    reference: Sample,
    candidate: Sample,
    *,
    floor: Sample | None = None,
    n_boot: int = 100,
    seed: int | None = 0,
    quantities: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> dict:
    """Compare the spread of repeated simulations of one fixed track (BESIII seed validation).

    For E3x3 and E5x5 (GeV), the shower centre's offset from the track point along theta and phi (cm,
    :func:`caloforge.showers.shapes.centre_offsets_cm`) and LAT: mean, standard deviation and the robust width
    ``sigma68 = (q84 - q16) / 2`` (:func:`caloforge.showers.compare.sigma68` at the Gaussian quantiles)
    of each sample with bootstrap errors, the candidate-to-reference ratios of the widths, and pulls
    ``(candidate - reference) / error`` of the mean (reported) and of std and sigma68, which give the
    verdict (``compatible`` when both are within 3, ``tension`` up to 5, ``incompatible`` beyond).
    Meaningful only when both samples repeat the same track (``attrs['gun']['track_gev']``);
    :func:`caloforge.validation.report.validate` checks that.

    Args:
        reference, candidate, floor: the fixed-track samples.
        n_boot: bootstrap resamples of every error.
        seed: seed of the bootstrap.
        quantities: role (``reference``, ``candidate``, ``floor``) -> :func:`resolution_quantities` of
            that sample, when computed already (otherwise computed here).

    Returns:
        dict quantity -> {"reference": {...}, "candidate": {...}, ["floor": {...}],
        "std_ratio", "std_ratio_error", "sigma68_ratio", "sigma68_ratio_error", "mean_pull", "std_pull",
        "sigma68_pull", ["floor_std_pull", "floor_sigma68_pull"], "verdict"}.
    """
    rng = np.random.default_rng(seed)
    named = {"reference": reference, "candidate": candidate, **({"floor": floor} if floor is not None else {})}
    values = {role: quantities[role] if quantities is not None else resolution_quantities(s)
              for role, s in named.items()}
    out: dict = {}
    for q in RESOLUTION_QUANTITIES:
        entry = {role: _spread_with_errors(np.asarray(v[q], dtype=np.float64), n_boot, rng)
                 for role, v in values.items()}
        r, c = entry["reference"], entry["candidate"]
        for what in ("std", "sigma68"):
            ok = all_finite(r[what], c[what]) and r[what] > 0 and c[what] > 0
            ratio = c[what] / r[what] if ok else float("nan")
            rel = math.hypot(c[f"{what}_error"] / c[what], r[f"{what}_error"] / r[what]) if ok else float("nan")
            entry[f"{what}_ratio"] = ratio
            entry[f"{what}_ratio_error"] = ratio * rel if all_finite(rel) else float("nan")
            entry[f"{what}_pull"] = _pull(r[what], r[f"{what}_error"], c[what], c[f"{what}_error"])
            if floor is not None:
                f = entry["floor"]
                entry[f"floor_{what}_pull"] = _pull(r[what], r[f"{what}_error"], f[what], f[f"{what}_error"])
        entry["mean_pull"] = _pull(r["mean"], r["mean_error"], c["mean"], c["mean_error"])
        entry["verdict"] = worst_verdict([pull_verdict(entry["std_pull"]), pull_verdict(entry["sigma68_pull"])])
        out[q] = entry
    return out


# ----------------------------------------------------------------------------------------------
# impact-point dependence
# ----------------------------------------------------------------------------------------------


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


def impact_point_study(
    samples: Mapping[str, Sample], obs: Mapping[str, Mapping[str, np.ndarray]], *, n_bins: int = IMPACT_BINS
) -> dict:
    """Profiles of :data:`IMPACT_QUANTITIES` against :data:`IMPACT_AXES` for every sample (roles
    ``reference``, ``candidate``, optionally ``floor``), in bins holding equal numbers of reference
    events, and the chi^2 of each sample's profile against the reference's.

    The verdict comes from the candidate's significance ``z`` (:func:`profile_chi2`): ``compatible`` up to
    3, ``tension`` up to 5, ``incompatible`` beyond; with a floor, the floor's ``z`` is subtracted first
    (two Geant4 samples need not agree better than their statistics say).

    Args:
        samples: role -> sample.
        obs: role -> its :func:`~caloforge.validation.comparisons.sample_observables`.
        n_bins: bins of the profiles.

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
                if all_finite(entry["floor_chi2"]["z"]):
                    z = z - entry["floor_chi2"]["z"]
            entry["verdict"] = pull_verdict(max(z, 0.0) if all_finite(z) else z)
            out[f"{quantity} vs {axis}"] = entry
    return out


# ----------------------------------------------------------------------------------------------
# crystal occupancy
# ----------------------------------------------------------------------------------------------


def occupancy_study(samples: Mapping[str, Sample], thresholds_gev=OCCUPANCY_THRESHOLDS_GEV) -> dict:
    """Which crystals of the window are hit how often (:func:`crystal_occupancy`), per sample, and the
    pulls of the candidate (and the floor) against the reference (:func:`occupancy_pulls`) with their chi^2.

    No verdict: it is a diagnostic. A model can hit some outer crystals in a fixed pattern and leave
    others empty while the number of crystals per event stays close to Geant4's; a low-level classifier
    sees that, and these maps show where.

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
