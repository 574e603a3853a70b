"""One observable of two samples compared, and the verdict rules of the validation report.

:func:`compare_distributions` gives, for one observable (:data:`OBSERVABLES`, computed per event by
:func:`sample_observables`), the separation power (CaloChallenge, arXiv:2410.21611), the 1-Wasserstein
distance and chi^2/ndf, each with a bootstrap error; :func:`distance_metrics` gives FPD and KPD
(:mod:`caloforge.validation.metrics`) of all observables together, after a quantile transform of every
observable to a standard normal fitted on the reference (:func:`gaussianise`), so that single outliers
cannot dominate them: these numbers are not comparable with FPD/KPD values computed on raw features.

Verdicts (:func:`verdict_against_floor`, :func:`verdict_against_thresholds`). Each observable is
judged on its *excess separation power* ``dS = S - E0[S]``: ``S`` is computed on bins holding equal
fractions of the pooled samples (:func:`metric_bin_edges`), and ``E0[S] = (K - 1) / 4 (1/N1 + 1/N2)`` is
what ``S`` comes out as, on average, for two samples of one distribution with ``N1`` and ``N2`` events
filling ``K`` bins (each bin adds ``Var(h1 - h2) / (2 (h1 + h2)) = (1 - p) (1/N1 + 1/N2) / 4``). So
``dS`` is about 0 for compatible samples whatever their size, and verdicts do not change with the
statistics alone.

* With a floor sample (a second Geant4 sample, compared with the reference in the same way): the
  candidate is ``compatible`` when its ``dS`` is within :data:`FLOOR_SIGMA_COMPATIBLE` (3) standard
  deviations of the floor's, or below :data:`NEGLIGIBLE_EXCESS_S`; ``tension`` up to
  :data:`FLOOR_SIGMA_INCOMPATIBLE` (5) standard deviations; ``incompatible`` beyond.
* Without a floor, fixed thresholds: ``compatible`` when ``dS`` is within 2 standard deviations of a
  value below :data:`S_COMPATIBLE` (0.02), ``incompatible`` when ``dS`` is more than 2 standard
  deviations above :data:`S_INCOMPATIBLE` (0.1), ``tension`` in between. The classifiers' AUC is
  judged the same way, with :data:`AUC_COMPATIBLE` (0.55) and :data:`AUC_INCOMPATIBLE` (0.75) (the
  best CaloChallenge models reach 0.53-0.63, GANs 0.89-0.97).

The standard deviations are bootstrap ones (:func:`caloforge.validation.metrics.bootstrap_values`): for
binned metrics the counts are redrawn from multinomial distributions with the observed bin fractions,
for W1 the events of each sample are redrawn (as multinomial weights on the sorted values); both are
exactly a bootstrap of the events, without re-binning. For samples of one distribution the bootstrap
overestimates the spread of ``S`` by up to a factor ~2 (``S`` is quadratic in the bin differences, and
resampling adds its own differences); far from zero it is accurate. The verdicts are therefore
conservative near zero, where it matters least.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caloforge.data.io import Sample
from caloforge.showers.compare import chi2_ndf_counts, separation_power_counts
from caloforge.validation.metrics import bootstrap_error, bootstrap_values, fpd, kpd, wasserstein_1
from caloforge.validation.observables import RATIO_PAIRS, high_level_features

# ----------------------------------------------------------------------------------------------
# verdict thresholds and labels
# ----------------------------------------------------------------------------------------------

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

VERDICTS: tuple[str, ...] = ("compatible", "tension", "incompatible")
"""Verdicts from best to worst; ``n/a`` where there is too little data."""
NOT_AVAILABLE = "n/a"

REFERENCE_LABEL = "Geant4 (reference)"
CANDIDATE_LABEL = "candidate"
FLOOR_LABEL = "Geant4 (floor)"
ROLE_LABELS: dict[str, str] = {"reference": REFERENCE_LABEL, "candidate": CANDIDATE_LABEL, "floor": FLOOR_LABEL}
"""Display names of the samples' roles."""

# ----------------------------------------------------------------------------------------------
# the observables
# ----------------------------------------------------------------------------------------------


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


def _w1_bootstrap_error(a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator) -> float:
    """Bootstrap standard deviation of W1: events redrawn as multinomial weights on the pooled grid."""
    grid, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    if len(grid) < 2:
        return 0.0
    pa = np.bincount(inverse[: len(a)], minlength=len(grid)) / len(a)
    pb = np.bincount(inverse[len(a) :], minlength=len(grid)) / len(b)
    dx = np.diff(grid)

    def w1(ma: np.ndarray, mb: np.ndarray) -> np.ndarray:  # counts (k, G) -> (k,)
        fa = np.cumsum(ma, axis=1)[:, :-1] / len(a)  # (k, G-1)
        fb = np.cumsum(mb, axis=1)[:, :-1] / len(b)
        return np.abs(fa - fb) @ dx

    values = bootstrap_values(w1, rng, n_boot, (len(a), len(b)), probabilities=(pa, pb),
                              chunk=int(2e6 // len(grid)))
    return float(bootstrap_error(values))


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
        ValueError: a sample without finite values or without entries within the edges, or
            ``n_boot < 2``.
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
    c1 = np.histogram(a, bins=edges)[0].astype(np.float64)  # (K,)
    c2 = np.histogram(b, bins=edges)[0].astype(np.float64)
    if c1.sum() == 0 or c2.sum() == 0:
        raise ValueError("a sample has no entries within the bin edges")
    s = float(separation_power_counts(c1, c2))
    chi2 = float(chi2_ndf_counts(c1, c2))
    k_used = int(((c1 + c2) > 0).sum())
    expected = (k_used - 1) / 4.0 * (1.0 / len(a) + 1.0 / len(b))

    def binned(m1: np.ndarray, m2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # counts (n_boot, K)
        m1, m2 = m1.astype(np.float64), m2.astype(np.float64)
        return separation_power_counts(m1, m2), chi2_ndf_counts(m1, m2)

    s_boot, chi2_boot = bootstrap_values(binned, rng, n_boot, (int(c1.sum()), int(c2.sum())),
                                         probabilities=(c1 / c1.sum(), c2 / c2.sum()), chunk=n_boot)
    return {
        "n_reference": int(a.size),
        "n_other": int(b.size),
        "n_bins": int(len(edges) - 1),
        "separation_power": s,
        "separation_power_error": float(bootstrap_error(s_boot)),
        "expected_separation_power": expected,
        "excess_separation_power": s - expected,
        "wasserstein_1": wasserstein_1(a, b),
        "wasserstein_1_error": _w1_bootstrap_error(a, b, n_boot, rng),
        "chi2_ndf": chi2,
        "chi2_ndf_error": float(bootstrap_error(chi2_boot)),
    }


# ----------------------------------------------------------------------------------------------
# all observables together
# ----------------------------------------------------------------------------------------------


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


def distance_metrics(reference: np.ndarray, other: np.ndarray, seed: int) -> dict:
    """FPD and KPD (:mod:`caloforge.validation.metrics`) of (N, d) and (M, d) observables after
    :func:`gaussianise`; a ``<metric>_note`` and NaN where one cannot be computed."""
    ref, other = gaussianise(reference, other)
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


# ----------------------------------------------------------------------------------------------
# verdicts
# ----------------------------------------------------------------------------------------------


def all_finite(*values: float | None) -> bool:
    """Whether every value is a finite number (not None, NaN or infinite)."""
    return all(v is not None and math.isfinite(v) for v in values)


def verdict_against_thresholds(
    value: float, error: float, *, compatible_below: float, incompatible_above: float, sigmas: float = THRESHOLD_SIGMAS
) -> str:
    """``compatible`` if ``value - sigmas * error <= compatible_below``, ``incompatible`` if
    ``value - sigmas * error > incompatible_above``, else ``tension``; ``n/a`` for non-finite input."""
    if not all_finite(value, error):
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
    if not all_finite(value, error, floor, floor_error):
        return NOT_AVAILABLE
    sigma = math.hypot(error, floor_error)
    d = value - floor
    if value <= negligible or d <= FLOOR_SIGMA_COMPATIBLE * sigma:
        return "compatible"
    return "tension" if d <= FLOOR_SIGMA_INCOMPATIBLE * sigma else "incompatible"


def pull_verdict(pull: float) -> str:
    """A pull (or significance) judged at :data:`FLOOR_SIGMA_COMPATIBLE` and :data:`FLOOR_SIGMA_INCOMPATIBLE`
    standard deviations in absolute value; ``n/a`` when not finite."""
    if not all_finite(pull):
        return NOT_AVAILABLE
    p = abs(pull)
    if p <= FLOOR_SIGMA_COMPATIBLE:
        return "compatible"
    return "tension" if p <= FLOOR_SIGMA_INCOMPATIBLE else "incompatible"


def worst_verdict(verdicts: list[str]) -> str:
    """The worst of :data:`VERDICTS` among ``verdicts`` (``n/a`` ignored; ``n/a`` if there is none)."""
    ranked = [v for v in verdicts if v in VERDICTS]
    return max(ranked, key=VERDICTS.index) if ranked else NOT_AVAILABLE


def observable_verdict(cand: Mapping | None, floor: Mapping | None) -> tuple[str, str]:
    """(verdict, what it was judged against: ``floor``, ``thresholds`` or ``-``) of one observable from
    the :func:`compare_distributions` results of the candidate and, if there is one, the floor."""
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


def auc_verdict(cand: Mapping, floor: Mapping | None) -> tuple[str, str]:
    """(verdict, what it was judged against) of a classifier test from the candidate's and the floor's
    results (dicts with ``auc`` and ``auc_error``, or a ``note`` where the test could not run)."""
    if "auc" not in cand:
        return NOT_AVAILABLE, "-"
    if floor is not None and "auc" in floor:
        v = verdict_against_floor(cand["auc"], cand["auc_error"], floor["auc"], floor["auc_error"],
                                  negligible=NEGLIGIBLE_AUC)
        return v, "floor"
    v = verdict_against_thresholds(cand["auc"], cand["auc_error"], compatible_below=AUC_COMPATIBLE,
                                   incompatible_above=AUC_INCOMPATIBLE)
    return v, "thresholds"
