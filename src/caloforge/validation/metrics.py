"""Distances between a reference (Geant4) sample and a generated one (pure numpy / scipy).

One-dimensional metrics compare the distributions of one observable (see
:mod:`caloforge.validation.observables`):

* :func:`separation_power` -- triangular discrimination of two normalised histograms (CaloChallenge
  2022, arXiv:2410.21611, eq. 5.1): 0 for identical, 1 for disjoint distributions;
* :func:`wasserstein_1` -- the 1-Wasserstein (earth mover's) distance, in the observable's unit;
* :func:`chi2_ndf` -- chi^2 per degree of freedom of two normalised histograms with Poisson errors;
* :func:`bootstrap` -- the value of any of them with its bootstrap standard deviation; the resampling
  itself (:func:`bootstrap_resamples`, :func:`bootstrap_values`, :func:`bootstrap_error`) serves every
  bootstrap error of the validation, vectorised over resamples.

The binned metrics are computed by the counts cores of :mod:`caloforge.showers.compare`.

Multi-dimensional metrics compare (N, d) arrays of high-level features (JetNet definitions, Kansal et al.,
"Evaluating generative models in high energy physics", arXiv:2211.10295):

* :func:`fpd` -- Frechet physics distance, extrapolated to infinite sample size;
* :func:`kpd` -- kernel physics distance, the unbiased MMD^2 with a cubic polynomial kernel, in batches.

Both standardise every feature with the mean and standard deviation of the reference sample.

Non-finite values (NaN from empty showers, see the observables) are dropped: entries for the 1-D
metrics, whole rows (events) for FPD and KPD. A ValueError is raised when nothing is left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import wasserstein_distance

from caloforge.showers.compare import chi2_ndf_counts, separation_power_counts

# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _finite_1d(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise ValueError(f"{name} has no finite values")
    return a


def _finite_rows(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be an (N, d) feature array, got shape {a.shape}")
    a = a[np.isfinite(a).all(axis=1)]
    if len(a) < 2:
        raise ValueError(f"{name} has fewer than 2 events with finite features")
    return a


def shared_bin_edges(a: ArrayLike, b: ArrayLike, bins: int | ArrayLike) -> np.ndarray:
    """Bin edges common to two samples.

    Args:
        a, b: 1-D samples (non-finite values ignored).
        bins: number of equal bins spanning the finite values of both samples, or the edges themselves.

    Returns:
        (n_bins + 1,) increasing edges.
    """
    if np.ndim(bins) == 0:
        both = np.concatenate([_finite_1d(a, "a"), _finite_1d(b, "b")])
        return np.histogram_bin_edges(both, bins=int(bins))
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bin edges must be a 1-D increasing sequence of at least 2 values")
    return edges


def _counts(a: ArrayLike, b: ArrayLike, bins: int | ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Histogram counts of both samples with shared edges; entries outside the edges are dropped."""
    a, b = _finite_1d(a, "a"), _finite_1d(b, "b")
    edges = shared_bin_edges(a, b, bins)
    na = np.histogram(a, bins=edges)[0].astype(np.float64)
    nb = np.histogram(b, bins=edges)[0].astype(np.float64)
    if na.sum() == 0 or nb.sum() == 0:
        raise ValueError("a sample has no entries within the bin edges")
    return na, nb


# ----------------------------------------------------------------------------------------------
# one-dimensional metrics
# ----------------------------------------------------------------------------------------------


def separation_power(a: ArrayLike, b: ArrayLike, bins: int | ArrayLike) -> float:
    """Separation power (triangular discrimination) of two samples, as in CaloChallenge 2022.

    ``S = 1/2 sum_k (h1_k - h2_k)^2 / (h1_k + h2_k)`` with ``h1``, ``h2`` the histograms of ``a`` and
    ``b`` on shared bins, each normalised to unit sum (arXiv:2410.21611, eq. 5.1); bins empty in both
    contribute nothing.

    Args:
        a, b: 1-D samples (non-finite values dropped).
        bins: number of equal bins over the range of both samples, or explicit edges (entries outside
            are dropped and each histogram is normalised over its entries inside).

    Returns:
        S in [0, 1]: 0 for identical histograms, 1 for histograms without common bins.
    """
    return float(separation_power_counts(*_counts(a, b, bins)))


def wasserstein_1(a: ArrayLike, b: ArrayLike) -> float:
    """1-Wasserstein distance between the empirical distributions of two samples.

    ``W1 = integral |F_a(x) - F_b(x)| dx`` (``scipy.stats.wasserstein_distance``), in the unit of the
    observable; shifting a sample by ``c`` gives ``|c|``. Non-finite values are dropped.
    """
    return float(wasserstein_distance(_finite_1d(a, "a"), _finite_1d(b, "b")))


def chi2_ndf(a: ArrayLike, b: ArrayLike, bins: int | ArrayLike) -> float:
    """chi^2 per degree of freedom between the normalised histograms of two samples.

    With counts ``n1_k``, ``n2_k`` and totals ``N1``, ``N2`` on shared bins,
    ``chi2 = sum_k (n1_k/N1 - n2_k/N2)^2 / (n1_k/N1^2 + n2_k/N2^2)`` (Poisson errors of the normalised
    contents) over the bins not empty in both, and ``ndf`` = that number of bins minus 1 (the common
    normalisation).

    Args:
        a, b: 1-D samples (non-finite values dropped).
        bins: number of equal bins over the range of both samples, or explicit edges.

    Returns:
        chi2 / ndf (dimensionless, about 1 for samples of one distribution); NaN when ndf < 1.
    """
    return float(chi2_ndf_counts(*_counts(a, b, bins)))


def bootstrap_resamples(
    rng: np.random.Generator,
    n_boot: int,
    sizes: Sequence[int],
    *,
    probabilities: Sequence[ArrayLike] | None = None,
    chunk: int = 1,
) -> Iterator[tuple[np.ndarray, ...]]:
    """Bootstrap resamples of one or more samples, ``chunk`` resamples at a time.

    Every sample of ``sizes[i]`` events is redrawn with replacement, in one of two equivalent forms:

    * without ``probabilities``: event indices, a (k, n_i) integer array of
      ``rng.integers(0, n_i, size=(k, n_i))``, to index any per-event array with;
    * with ``probabilities`` (the sample as a histogram, or as its distinct values, with the fractions
      ``p_i`` of its events): the counts of the redrawn events, a (k, len(p_i)) array of
      ``rng.multinomial(n_i, p_i, size=k)`` -- the same resampling without handling the events.

    The draws are made chunk by chunk and, within a chunk, sample by sample, so that a given ``rng``
    state, ``n_boot`` and ``chunk`` always give the same resamples.

    Args:
        rng: the random generator (advanced by the draws).
        n_boot: number of resamples (at least 1).
        sizes: events of each sample.
        probabilities: per sample, the fractions of its events in each bin (summing to 1).
        chunk: resamples drawn at once (memory: ``chunk * n_i`` values per sample).

    Yields:
        One tuple per chunk, one array per sample, of k = ``chunk`` resamples (fewer in the last).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if probabilities is not None and len(probabilities) != len(sizes):
        raise ValueError(f"{len(sizes)} samples but {len(probabilities)} probability vectors")
    chunk = max(1, int(chunk))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        if probabilities is None:
            yield tuple(rng.integers(0, n, size=(k, n)) for n in sizes)
        else:
            yield tuple(rng.multinomial(n, p, size=k) for n, p in zip(sizes, probabilities))


def bootstrap_values(
    statistic: Callable[..., np.ndarray | tuple[np.ndarray, ...]],
    rng: np.random.Generator,
    n_boot: int,
    sizes: Sequence[int],
    *,
    probabilities: Sequence[ArrayLike] | None = None,
    chunk: int = 1,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """A statistic on ``n_boot`` bootstrap resamples (:func:`bootstrap_resamples`), vectorised over chunks.

    Args:
        statistic: ``statistic(*resamples)`` with one (k, ...) resample array per sample, as
            :func:`bootstrap_resamples` yields them, returning (k, ...) values, or a tuple of such arrays.
        rng, n_boot, sizes, probabilities, chunk: as for :func:`bootstrap_resamples`.

    Returns:
        The values of all resamples, (n_boot, ...) (a tuple of them when ``statistic`` returns a tuple).
    """
    draws = bootstrap_resamples(rng, n_boot, sizes, probabilities=probabilities, chunk=chunk)
    parts = [statistic(*draw) for draw in draws]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(len(parts[0])))
    return np.concatenate([np.asarray(p) for p in parts])


def bootstrap_error(values: ArrayLike) -> float | np.ndarray:
    """Standard deviation (``ddof=1``) of bootstrap values over the resamples, the error of the statistic.

    Args:
        values: (n_boot,) values, or (n_boot, m) for m statistics.

    Returns:
        A float for (n_boot,) values, (m,) for (n_boot, m); non-finite values (resamples where the
        statistic is undefined) are left out, NaN with fewer than 2 finite values.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[np.isfinite(v)]
        return float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
    if len(v) > 1 and np.isfinite(v).all():
        return v.std(axis=0, ddof=1)
    return np.array([bootstrap_error(column) for column in v.T])


def bootstrap(
    metric: Callable[[np.ndarray, np.ndarray], float],
    a: ArrayLike,
    b: ArrayLike,
    n_boot: int = 100,
    seed: int | None = 0,
) -> tuple[float, float]:
    """A metric's value and its bootstrap standard deviation.

    Both samples are resampled with replacement (events along the first axis, so (N,) and (N, d)
    arrays both work) ``n_boot`` times (:func:`bootstrap_resamples`, one at a time); the spread of the
    metric over the resamples estimates its statistical uncertainty. For histogram metrics pass fixed
    bin edges (e.g. with ``functools.partial`` and :func:`shared_bin_edges`), so that every resample
    uses the same bins.

    Args:
        metric: ``metric(a, b) -> float``.
        a, b: the reference and the tested sample.
        n_boot: number of resamples (at least 2).
        seed: seed of the resampling (``numpy.random.default_rng``).

    Returns:
        ``(metric(a, b), standard deviation of the resampled values, ddof=1)`` (:func:`bootstrap_error`:
        resamples where the metric is not finite are left out).
    """
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    a, b = np.asarray(a), np.asarray(b)
    rng = np.random.default_rng(seed)
    value = float(metric(a, b))
    values = bootstrap_values(
        lambda ia, ib: np.array([float(metric(a[ia[0]], b[ib[0]]))]), rng, n_boot, (len(a), len(b))
    )
    return value, float(bootstrap_error(values))


# ----------------------------------------------------------------------------------------------
# multi-dimensional metrics on high-level features
# ----------------------------------------------------------------------------------------------


def standardise(reference: ArrayLike, other: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Scale the features of both arrays with the reference's mean and standard deviation.

    Rows with non-finite values are dropped first; features constant in the reference are only
    centred (divided by 1).

    Args:
        reference, other: (N, d) and (M, d) feature arrays.

    Returns:
        The standardised ``(reference, other)``.
    """
    ref, oth = _finite_rows(reference, "reference"), _finite_rows(other, "other")
    if ref.shape[1] != oth.shape[1]:
        raise ValueError(f"feature arrays have {ref.shape[1]} and {oth.shape[1]} columns")
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (ref - mean) / std, (oth - mean) / std


def _frechet_from_moments(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))`` for Gaussians.

    ``tr (C1 C2)^(1/2)`` is the sum of the square roots of the eigenvalues of the symmetric matrix
    ``C1^(1/2) C2 C1^(1/2)``, which are those of ``C1 C2`` (real and non-negative for covariances).
    """
    w, q = np.linalg.eigh(cov1)
    sqrt1 = (q * np.sqrt(np.clip(w, 0.0, None))) @ q.T
    middle = sqrt1 @ cov2 @ sqrt1
    tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)


def frechet_distance(a: ArrayLike, b: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two (N, d) samples (no scaling, no extrapolation).

    ``FD = |mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))`` with the sample means and covariances
    (``ddof=1``), in the squared unit of the features. Rows with non-finite values are dropped.
    """
    x, y = _finite_rows(a, "a"), _finite_rows(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature arrays have {x.shape[1]} and {y.shape[1]} columns")
    cx = np.atleast_2d(np.cov(x, rowvar=False))
    cy = np.atleast_2d(np.cov(y, rowvar=False))
    return _frechet_from_moments(x.mean(axis=0), cx, y.mean(axis=0), cy)


def fpd(
    reference: ArrayLike,
    generated: ArrayLike,
    *,
    min_samples: int = 20_000,
    max_samples: int = 50_000,
    num_batches: int = 20,
    num_points: int = 200,
    seed: int | None = 42,
) -> tuple[float, float]:
    """Frechet physics distance (FPD) between two sets of high-level features (JetNet definition).

    Features are standardised with the reference's mean and standard deviation. For ``num_points``
    batch sizes ``n`` evenly spaced from ``min_samples`` to ``max_samples`` the Frechet distance
    (:func:`frechet_distance`) of random subsets of ``n`` events of each sample (drawn without
    replacement) is averaged over ``num_batches`` draws; a straight line in ``1/n`` fitted through these
    points is extrapolated to ``1/n = 0``, which removes the finite-sample bias
    (Chong and Forsyth, arXiv:1911.07023; Kansal et al., arXiv:2211.10295).

    Both sizes are capped at the size of the smaller sample. When that leaves a single batch size,
    the result is the mean over the batches, without extrapolation. Values depend on the sizes: compare
    only FPDs computed with the same settings.

    Args:
        reference, generated: (N, d) and (M, d) feature arrays (rows with non-finite values dropped).
        min_samples, max_samples: smallest and largest batch size.
        num_batches: draws per batch size.
        num_points: number of batch sizes.
        seed: seed of the subset draws.

    Returns:
        ``(fpd, error)``: the extrapolated value (dimensionless, ~0 for one distribution) and the
        standard error of the fitted intercept (NaN with only two batch sizes; the spread over the
        batches when there is no extrapolation).
    """
    ref, gen = standardise(reference, generated)
    n_max = min(max_samples, len(ref), len(gen))
    n_min = max(2, min(min_samples, n_max))
    if n_min > n_max:
        raise ValueError("each sample needs at least 2 events with finite features")
    sizes = np.unique(np.linspace(n_min, n_max, max(1, num_points)).astype(np.int64))
    rng = np.random.default_rng(seed)

    def draw(n: int) -> float:
        x = ref[rng.choice(len(ref), n, replace=False)]
        y = gen[rng.choice(len(gen), n, replace=False)]
        return frechet_distance(x, y)

    if len(sizes) < 2:
        vals = np.array([draw(int(sizes[0])) for _ in range(num_batches)])
        return float(vals.mean()), float(vals.std(ddof=1) if len(vals) > 1 else 0.0)
    means = np.array([np.mean([draw(int(n)) for _ in range(num_batches)]) for n in sizes])
    # least squares: means = intercept + slope * (n_min / n); the intercept is the value at 1/n = 0
    design = np.column_stack([np.ones(len(sizes)), sizes[0] / sizes])
    coef, *_ = np.linalg.lstsq(design, means, rcond=None)
    dof = len(sizes) - 2
    if dof < 1:
        return float(coef[0]), float("nan")
    sigma2 = float(np.sum((means - design @ coef) ** 2)) / dof
    cov = sigma2 * np.linalg.inv(design.T @ design)
    return float(coef[0]), float(np.sqrt(max(cov[0, 0], 0.0)))


def _poly_kernel_sum(x: np.ndarray, y: np.ndarray, *, skip_diagonal: bool, chunk: int = 1024) -> float:
    """``sum_ij k(x_i, y_j)`` with ``k(x, y) = (x.y / d + 1)^3``, in row chunks; optionally i != j."""
    d = x.shape[1]
    total = 0.0
    for start in range(0, len(x), chunk):
        k = (x[start : start + chunk] @ y.T / d + 1.0) ** 3
        total += float(k.sum())
        if skip_diagonal:
            rows = np.arange(start, min(start + chunk, len(x)))
            total -= float(k[rows - start, rows].sum())
    return total


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al., JMLR 13 (2012) 723, eq. 3) with the cubic polynomial kernel."""
    m, n = len(x), len(y)
    kxx = _poly_kernel_sum(x, x, skip_diagonal=True) / (m * (m - 1))
    kyy = _poly_kernel_sum(y, y, skip_diagonal=True) / (n * (n - 1))
    kxy = _poly_kernel_sum(x, y, skip_diagonal=False) / (m * n)
    return kxx + kyy - 2.0 * kxy


def kpd(
    reference: ArrayLike,
    generated: ArrayLike,
    *,
    num_batches: int = 10,
    batch_size: int = 5_000,
    seed: int | None = 42,
) -> tuple[float, float]:
    """Kernel physics distance (KPD) between two sets of high-level features (JetNet definition).

    Features are standardised with the reference's mean and standard deviation. In each of
    ``num_batches`` batches, ``batch_size`` events are drawn without replacement from each sample and
    the unbiased estimate of the squared maximum mean discrepancy is computed with the polynomial
    kernel ``k(x, y) = (x.y / d + 1)^3`` (the kernel of the kernel inception distance, Binkowski et al.,
    arXiv:1801.01401; Kansal et al., arXiv:2211.10295). The batch size is capped at the size of the
    smaller sample.

    Args:
        reference, generated: (N, d) and (M, d) feature arrays (rows with non-finite values dropped).
        num_batches: number of batches.
        batch_size: events per sample and batch.
        seed: seed of the draws.

    Returns:
        ``(kpd, error)``: the median of the batch values (dimensionless, ~0 and possibly slightly
        negative for one distribution) and half the 16-84 % interquantile range of the batch values.
    """
    ref, gen = standardise(reference, generated)
    n = min(batch_size, len(ref), len(gen))
    if n < 2:
        raise ValueError("each sample needs at least 2 events with finite features")
    rng = np.random.default_rng(seed)
    vals = np.empty(max(1, num_batches))
    for k in range(len(vals)):
        x = ref[rng.choice(len(ref), n, replace=False)]
        y = gen[rng.choice(len(gen), n, replace=False)]
        vals[k] = _mmd2_unbiased(x, y)
    lo, hi = np.percentile(vals, [16.0, 84.0])
    return float(np.median(vals)), float((hi - lo) / 2)
