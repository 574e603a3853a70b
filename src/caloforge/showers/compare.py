"""Binned comparisons of two samples and robust widths (pure numpy): the one core that the validation
metrics, the report and the training's model selection share.

* :func:`separation_power_counts` -- separation power (triangular discrimination) of two histograms
  (CaloChallenge 2022, arXiv:2410.21611, eq. 5.1);
* :func:`chi2_ndf_counts` -- chi^2 per degree of freedom of two histograms with Poisson errors;
* :func:`sigma68` -- half the width of the central 68 % interval of a sample;
* :func:`crystal_occupancy`, :func:`occupancy_pulls`, :func:`occupancy_chi2` -- how often each crystal of the
  window holds a deposit, and how far two samples' occupancies lie apart.

The binned functions take counts on common bins, as arrays ``(..., n_bins)``: the last axis is the
bins, the leading axes (bootstrap resamples, slices) are vectorised over.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

SIGMA68_QUANTILES: tuple[float, float] = (0.16, 0.84)
"""Quantiles bounding the central interval of :func:`sigma68` by default (16 % and 84 %)."""
GAUSSIAN_SIGMA68_QUANTILES: tuple[float, float] = (0.158655, 0.841345)
"""The quantiles of a Gaussian at -1 and +1 standard deviation: with them :func:`sigma68` is the standard
deviation of a Gaussian sample (the validation report's resolution study uses them)."""


def _sum_over_used(terms: np.ndarray, used: np.ndarray) -> np.ndarray | float:
    """Sum of ``terms`` over the bins where ``used`` (last axis).

    1-D input: a float, the sum of the used bins alone; (..., n_bins): one sum per leading index, the
    unused bins counted as 0 (the same value up to the order of the additions).
    """
    if terms.ndim == 1:
        return float(np.sum(terms[used]))
    return np.where(used, terms, 0.0).sum(axis=-1)


def _normalised(c1: ArrayLike, c2: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts as float64 arrays, and each divided by its sum over the bins (last axis)."""
    c1 = np.asarray(c1, dtype=np.float64)
    c2 = np.asarray(c2, dtype=np.float64)
    if c1.shape[-1:] != c2.shape[-1:] or c1.ndim == 0:
        raise ValueError(f"histograms need common bins on the last axis, got shapes {c1.shape} and {c2.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        h1 = c1 / c1.sum(axis=-1, keepdims=True)
        h2 = c2 / c2.sum(axis=-1, keepdims=True)
    return c1, c2, h1, h2


def separation_power_counts(h1: ArrayLike, h2: ArrayLike) -> np.ndarray | float:
    """Separation power of two histograms given as counts (or weights) on common bins.

    ``S = 1/2 sum_k (p_k - q_k)^2 / (p_k + q_k)``, with ``p`` and ``q`` the histograms normalised to
    unit sum, over the bins with ``p_k + q_k > 0`` (CaloChallenge 2022, arXiv:2410.21611, eq. 5.1; the
    triangular discrimination).

    Args:
        h1, h2: (..., n_bins) non-negative counts; leading axes broadcast.

    Returns:
        S in [0, 1] (0 for identical, 1 for disjoint histograms): a float for 1-D input, else an array
        of the leading shape. NaN where a histogram is empty.
    """
    _, _, p, q = _normalised(h1, h2)
    total = p + q
    used = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = (p - q) ** 2 / np.where(used, total, 1.0)
    s = _sum_over_used(terms, used)
    return 0.5 * s


def chi2_ndf_counts(c1: ArrayLike, c2: ArrayLike) -> np.ndarray | float:
    """chi^2 per degree of freedom of two histograms of counts on common bins.

    With counts ``n1_k``, ``n2_k`` and totals ``N1``, ``N2``:
    ``chi2 = sum_k (n1_k/N1 - n2_k/N2)^2 / (n1_k/N1^2 + n2_k/N2^2)`` (Poisson errors of the normalised
    contents) over the bins not empty in both, and ``ndf`` = that number of bins minus 1 (the common
    normalisation).

    Args:
        c1, c2: (..., n_bins) non-negative counts (events, not weights: the errors are Poisson ones).

    Returns:
        chi2 / ndf (dimensionless, about 1 for samples of one distribution): a float for 1-D input,
        else an array of the leading shape; NaN where ndf < 1.
    """
    c1, c2, h1, h2 = _normalised(c1, c2)
    n1 = c1.sum(axis=-1, keepdims=True)
    n2 = c2.sum(axis=-1, keepdims=True)
    used = (c1 + c2) > 0
    ndf = used.sum(axis=-1) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        var = c1 / n1**2 + c2 / n2**2
        terms = (h1 - h2) ** 2 / np.where(used, var, 1.0)
    chi2 = _sum_over_used(terms, used)
    if np.ndim(chi2) == 0:
        return chi2 / int(ndf) if ndf >= 1 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ndf >= 1, chi2 / np.maximum(ndf, 1), np.nan)


def sigma68(
    x: ArrayLike, *, axis: int | None = None, quantiles: tuple[float, float] = SIGMA68_QUANTILES
) -> np.ndarray | float:
    """Half the width of the central 68 % interval, ``(q84 - q16) / 2``, in the unit of ``x``.

    A width that single outliers do not move; for a Gaussian it is the standard deviation (exactly so
    with ``quantiles=GAUSSIAN_SIGMA68_QUANTILES``, to 0.6 % with the default 16 % / 84 %).

    Args:
        x: the sample (NaN propagates: drop non-finite values first).
        axis: the axis of the events; None: all values of ``x``.
        quantiles: the lower and upper quantile (:data:`SIGMA68_QUANTILES` or
            :data:`GAUSSIAN_SIGMA68_QUANTILES`).

    Returns:
        A float with ``axis=None``, else an array without that axis.
    """
    q_lo, q_hi = np.quantile(x, list(quantiles), axis=axis)
    width = 0.5 * (q_hi - q_lo)
    return float(width) if axis is None else width


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


def occupancy_chi2(reference_gev: np.ndarray, other_gev: np.ndarray, threshold_gev: float = 0.0) -> float:
    """chi^2 of the :func:`occupancy_pulls` of maps ``other_gev`` against ``reference_gev``: about the number of
    crystals (up to 121) for two samples of one distribution; crystals hit in no event or in every event of
    both samples add nothing."""
    pulls = occupancy_pulls(reference_gev, other_gev, threshold_gev)
    return float(np.nansum(pulls**2))

