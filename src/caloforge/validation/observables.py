"""Shower observables of 11x11 hit maps, vectorised over events (pure numpy).

Every function takes hit maps ``maps`` of shape (N, 11, 11) in GeV, laid out as the sample files
(:mod:`caloforge.data.io`): rows run over increasing ``theta_index``, columns over increasing
``phi_index``, the centre crystal (where the track enters the EMC) at ``[5, 5]``. Functions that need
crystal positions also take the centre crystals ``theta_index``, ``phi_index`` (N,) (or scalars).

Definitions follow BESIII's reconstruction, BOSS ``EmcRec/EmcRecShowerShape`` (second moment, LAT,
Zernike moments A20 and A42, with crystal front-face centres in cm), and the LHCb calorimeter GAN
(Chekalina et al., arXiv:1812.01319: widths, asymmetries, sparsity, distance of the centre to the
impact point). Where ours differ from BOSS, the function says so. The main differences:

* BOSS sums over the 5x5 crystals around the shower's seed (its most energetic crystal) and uses the
  reconstructed shower position (logarithmic weights, at the depth of the shower maximum); here the
  sums run over the whole window (or its central ``size x size`` crystals) and the shower centre
  ``x_sh`` is the linear energy-weighted mean of the crystal front-face centres.
* Crystals beyond the barrel ends (window rows with ``theta_index < 0`` or ``> 43``) have no position:
  the observables that use positions ignore their energy. The index-based ones (energy sums,
  profiles, widths, sparsity) take the map as it is.

Energies are assumed non-negative (clip digitised maps with negative noise before, if needed).

Empty maps (no energy, or no energy inside the barrel for position-based observables): sums, profiles
and sparsities are 0; every observable that divides by an energy (ratios, centre, moments, LAT,
Zernike moments, widths, asymmetries, distances) is NaN. No warning is raised for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from caloforge.detector.geometry import WINDOW, barrel_geometry, window_indices

LAT_R0_CM = 5.2
"""BOSS's ``r0`` of the LAT moment, cm (about the crystal front-face size)."""
ZERNIKE_R0_CM = 15.6
"""BOSS's radius ``R0`` of the Zernike moments, cm (rho = r_perp / R0)."""
NXN_SIZES: tuple[int, ...] = (1, 3, 5, 7, 9, 11)
"""Window sides of the energy sums E1x1 ... E11x11."""
RATIO_PAIRS: tuple[tuple[int, int], ...] = ((1, 3), (3, 5), (5, 7), (7, 9), (9, 11), (5, 11))
"""Pairs (n, m) of the energy ratios E_nxn / E_mxm in :func:`energy_ratios`."""
SPARSITY_FEATURE_THRESHOLD_GEV = 1e-3
"""Cell threshold of the sparsity in :func:`high_level_features` (1 MeV)."""

_CENTRE = WINDOW // 2
_OFFSETS = np.arange(WINDOW) - _CENTRE  # crystal offsets from the centre crystal, (11,)


# ----------------------------------------------------------------------------------------------
# input checks and positions
# ----------------------------------------------------------------------------------------------


def _check_maps(maps: ArrayLike) -> np.ndarray:
    """Maps as float64 (N, 11, 11); ValueError for another shape."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (WINDOW, WINDOW):
        raise ValueError(f"expected hit maps of shape (N, {WINDOW}, {WINDOW}), got {m.shape}")
    return m


def _check_size(size: int) -> slice:
    """The slice of the central ``size x size`` crystals of the window."""
    if not isinstance(size, (int, np.integer)) or size % 2 != 1 or not 1 <= size <= WINDOW:
        raise ValueError(f"size must be an odd number from 1 to {WINDOW}, got {size!r}")
    half = int(size) // 2
    return slice(_CENTRE - half, _CENTRE + half + 1)


def _event_indices(theta_index: ArrayLike, phi_index: ArrayLike, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre crystal indices broadcast to (n,) int64; ValueError when they do not fit."""
    try:
        t = np.broadcast_to(np.asarray(theta_index, dtype=np.int64), (n,))
        p = np.broadcast_to(np.asarray(phi_index, dtype=np.int64), (n,))
    except ValueError:
        raise ValueError(
            f"theta_index and phi_index must be scalars or have one entry per map ({n})"
        ) from None
    return t, p


def crystal_positions_cm(theta_index: ArrayLike, phi_index: ArrayLike) -> np.ndarray:
    """Front-face centres of the 11x11 window crystals around centre crystals, in cm.

    The positions come from :func:`caloforge.detector.geometry.barrel_geometry` (``front_center_cm``,
    pybes3's table), laid out by :func:`caloforge.detector.geometry.window_indices` (rows = theta,
    columns = phi, phi wrapping around). BOSS uses the same points (``getFrontCenter``) in its shower
    shapes.

    Args:
        theta_index, phi_index: centre crystals, (N,) or scalars.

    Returns:
        (N, 11, 11, 3) global x, y, z in cm (``(11, 11, 3)`` for scalar input); NaN for window crystals
        beyond the barrel ends.
    """
    rows, cols, inside = window_indices(theta_index, phi_index, WINDOW)
    pos = barrel_geometry().front_center_cm[np.clip(rows, 0, None), np.clip(cols, 0, None)]
    return np.where(inside[..., None], pos, np.nan)


class _Cells(NamedTuple):
    """Window crystals of N events flattened to M cells, positions known (energy 0 where not)."""

    energy_gev: np.ndarray  # (N, M)
    position_cm: np.ndarray  # (N, M, 3), 0 where unknown
    total_gev: np.ndarray  # (N,)
    centre_cm: np.ndarray  # (N, 3), NaN for empty events


def _cells(maps: ArrayLike, theta_index: ArrayLike, phi_index: ArrayLike, size: int = WINDOW) -> _Cells:
    m = _check_maps(maps)
    sl = _check_size(size)
    n = len(m)
    t, p = _event_indices(theta_index, phi_index, n)
    pos = crystal_positions_cm(t, p)[:, sl, sl]  # (N, size, size, 3)
    inside = np.isfinite(pos[..., 0])
    e = np.where(inside, m[:, sl, sl], 0.0).reshape(n, -1)
    x = np.where(inside[..., None], pos, 0.0).reshape(n, -1, 3)
    total = e.sum(axis=1)
    centre = _divide(np.einsum("nm,nmk->nk", e, x), total[:, None])
    return _Cells(e, x, total, centre)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den > 0``, NaN elsewhere, without warnings."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _perp_to_shower_axis(cells: _Cells) -> np.ndarray:
    """(N, M, 3) component of each crystal position perpendicular to the IP-to-shower line.

    The line runs from the origin (the interaction point) through the shower centre ``x_sh``; the
    length of this vector is the crystal's distance from the line (BOSS: ``|x| sin(angle(x_sh, x))``).
    NaN for empty events.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        axis = cells.centre_cm / np.linalg.norm(cells.centre_cm, axis=-1, keepdims=True)  # (N, 3)
        along = np.einsum("nmk,nk->nm", cells.position_cm, axis)
        return cells.position_cm - along[..., None] * axis[:, None, :]


# ----------------------------------------------------------------------------------------------
# energy sums, ratios, profiles, spectra, sparsity
# ----------------------------------------------------------------------------------------------


def e_nxn(maps: ArrayLike, n: int) -> np.ndarray:
    """Energy in the central ``n x n`` crystals (BOSS ``e3x3``, ``e5x5``, ...), GeV.

    BOSS centres these sums on the shower's seed crystal; here they are centred on the crystal where
    the track enters (the window centre), as in the seeds' validation.

    Args:
        maps: (N, 11, 11) hit maps in GeV.
        n: odd window side, 1 to 11.

    Returns:
        (N,) energies in GeV (0 for empty maps).
    """
    sl = _check_size(n)
    return _check_maps(maps)[:, sl, sl].sum(axis=(1, 2))


def energy_sums(maps: ArrayLike) -> dict[str, np.ndarray]:
    """E1x1, E3x3, E5x5, E7x7, E9x9, E11x11 (GeV) as ``{"e1x1_gev": (N,), ...}``; see :func:`e_nxn`."""
    m = _check_maps(maps)
    return {f"e{n}x{n}_gev": e_nxn(m, n) for n in NXN_SIZES}


def energy_ratios(maps: ArrayLike) -> dict[str, np.ndarray]:
    """Ratios E_nxn / E_mxm for the pairs of :data:`RATIO_PAIRS`, as ``{"e1_over_e3": (N,), ...}``.

    Dimensionless; NaN where the denominator is 0.
    """
    sums = energy_sums(maps)
    return {
        f"e{n}_over_e{k}": _divide(sums[f"e{n}x{n}_gev"], sums[f"e{k}x{k}_gev"]) for n, k in RATIO_PAIRS
    }


def energy_profile_phi(maps: ArrayLike) -> np.ndarray:
    """Energy deposited along phi: the map summed over theta (rows), (N, 11) in GeV.

    Index ``j`` is the phi offset ``j - 5`` crystals from the centre crystal.
    """
    return _check_maps(maps).sum(axis=1)


def energy_profile_theta(maps: ArrayLike) -> np.ndarray:
    """Energy deposited along theta (z): the map summed over phi (columns), (N, 11) in GeV.

    Index ``i`` is the theta offset ``i - 5`` crystals from the centre crystal (towards -z).
    """
    return _check_maps(maps).sum(axis=2)


def cell_energy_spectrum(maps: ArrayLike, threshold_gev: float = 0.0) -> np.ndarray:
    """Energies of all cells above ``threshold_gev`` (strictly), flattened over events, GeV.

    The cell-energy spectrum of the seeds' validation (histogram it, often on a log axis).
    """
    m = _check_maps(maps).ravel()
    return m[m > threshold_gev]


def sparsity(maps: ArrayLike, thresholds_gev: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Fraction of the 121 window cells with energy strictly above each threshold (LHCb GAN).

    Args:
        maps: (N, 11, 11) hit maps in GeV.
        thresholds_gev: a threshold or a sequence of T thresholds, GeV.

    Returns:
        (N,) for a scalar threshold, (N, T) for a sequence; 0 for empty maps.
    """
    m = _check_maps(maps).reshape(-1, WINDOW * WINDOW)
    thr = np.asarray(thresholds_gev, dtype=np.float64)
    frac = (m[:, :, None] > thr.reshape(1, 1, -1)).mean(axis=1)  # (N, T)
    return frac[:, 0] if thr.ndim == 0 else frac


# ----------------------------------------------------------------------------------------------
# BOSS shower shapes
# ----------------------------------------------------------------------------------------------


def energy_weighted_centre_cm(
    maps: ArrayLike, theta_index: ArrayLike, phi_index: ArrayLike, *, size: int = WINDOW
) -> np.ndarray:
    """Shower centre ``x_sh = sum E_i x_i / sum E_i`` over crystal front-face centres, cm.

    Linear weights; BOSS's shower position (``EmcRecShowerPosLog*``) uses logarithmic weights and the
    depth of the shower maximum instead.

    Args:
        maps: (N, 11, 11) hit maps in GeV.
        theta_index, phi_index: centre crystals, (N,) or scalars.
        size: use only the central ``size x size`` crystals.

    Returns:
        (N, 3) global x, y, z in cm; NaN for empty maps.
    """
    return _cells(maps, theta_index, phi_index, size).centre_cm


def distance_to_entry_cm(
    maps: ArrayLike,
    theta_index: ArrayLike,
    phi_index: ArrayLike,
    entry_position_cm: ArrayLike,
    *,
    size: int = WINDOW,
) -> np.ndarray:
    """Distance between the energy-weighted centre and the track's entry point, cm (LHCb GAN).

    Args:
        maps: (N, 11, 11) hit maps in GeV.
        theta_index, phi_index: centre crystals, (N,) or scalars.
        entry_position_cm: (N, 3) entry point on the EMC front face (``truth['entry_position_cm']``).
        size: use only the central ``size x size`` crystals for the centre.

    Returns:
        (N,) in cm; NaN for empty maps and unknown entry points (NaN in the truth).
    """
    centre = energy_weighted_centre_cm(maps, theta_index, phi_index, size=size)
    entry = np.asarray(entry_position_cm, dtype=np.float64)
    if entry.shape != centre.shape:
        raise ValueError(f"entry_position_cm must have shape {centre.shape}, got {entry.shape}")
    return np.linalg.norm(centre - entry, axis=-1)


def _second_moment(cells: _Cells) -> np.ndarray:
    d2 = ((cells.position_cm - cells.centre_cm[:, None, :]) ** 2).sum(axis=-1)
    return _divide((cells.energy_gev * d2).sum(axis=1), cells.total_gev)


def second_moment_cm2(
    maps: ArrayLike, theta_index: ArrayLike, phi_index: ArrayLike, *, size: int = WINDOW
) -> np.ndarray:
    """Second moment ``S = sum E_i |x_i - x_sh|^2 / sum E_i``, cm^2 (BOSS ``SecondMoment``).

    ``x_i`` are the crystal front-face centres, ``x_sh`` the energy-weighted centre
    (:func:`energy_weighted_centre_cm`). BOSS sums over the 5x5 crystals around the seed; pass
    ``size=5`` for the 5x5 around the entry crystal.

    Returns:
        (N,) in cm^2; 0 for a single hot crystal, NaN for empty maps.
    """
    return _second_moment(_cells(maps, theta_index, phi_index, size))


def _lat(cells: _Cells, r0_cm: float) -> np.ndarray:
    e = cells.energy_gev
    r2 = (_perp_to_shower_axis(cells) ** 2).sum(axis=-1)  # (N, M)
    top2 = np.argsort(-e, axis=1, kind="stable")[:, :2]
    is_top = np.zeros(e.shape, dtype=bool)
    np.put_along_axis(is_top, top2, True, axis=1)
    num = np.where(is_top, 0.0, e * r2).sum(axis=1)
    den = num + r0_cm**2 * np.where(is_top, e, 0.0).sum(axis=1)
    return _divide(num, den)


def lat_moment(
    maps: ArrayLike,
    theta_index: ArrayLike,
    phi_index: ArrayLike,
    *,
    size: int = WINDOW,
    r0_cm: float = LAT_R0_CM,
) -> np.ndarray:
    """Lateral moment LAT (BOSS ``LatMoment``, after Drescher et al., NIM A237 (1985) 464).

    ``LAT = sum_{i>=3} E_i r_i^2 / (sum_{i>=3} E_i r_i^2 + r0^2 (E_1 + E_2))`` with the crystals sorted
    by energy (``E_1 >= E_2 >= ...``), ``r_i`` the distance of crystal i's front-face centre from the
    line through the origin (IP) and the shower centre ``x_sh`` (cm), ``r0 = 5.2 cm``. Ties in energy
    at the second place are broken by position in the map.

    Returns:
        (N,) dimensionless in [0, 1); 0 for one or two hot crystals, NaN for empty maps (BOSS: -99).
    """
    return _lat(_cells(maps, theta_index, phi_index, size), r0_cm)


def _zernike(cells: _Cells, r0_cm: float) -> tuple[np.ndarray, np.ndarray]:
    perp = _perp_to_shower_axis(cells)  # (N, M, 3)
    rho = np.linalg.norm(perp, axis=-1) / r0_cm
    with np.errstate(invalid="ignore"):
        in_disk = rho <= 1.0  # False for NaN (empty events)
    w = np.where(in_disk, cells.energy_gev, 0.0)
    e_disk = w.sum(axis=1)
    # an orthonormal basis (u, v) of the plane perpendicular to the shower axis n: u along the
    # azimuthal direction z x n, v = n x u; |A42| does not depend on this choice
    with np.errstate(invalid="ignore", divide="ignore"):
        n = cells.centre_cm / np.linalg.norm(cells.centre_cm, axis=-1, keepdims=True)
        u = np.cross(np.array([0.0, 0.0, 1.0]), n)
        u /= np.linalg.norm(u, axis=-1, keepdims=True)
    v = np.cross(n, u)
    phi = np.arctan2(np.einsum("nmk,nk->nm", perp, v), np.einsum("nmk,nk->nm", perp, u))
    rho = np.where(in_disk, rho, 0.0)
    a20 = np.abs((w * (2 * rho**2 - 1)).sum(axis=1))
    a42 = np.abs((w * (4 * rho**4 - 3 * rho**2) * np.exp(2j * np.where(in_disk, phi, 0.0))).sum(axis=1))
    return _divide(a20, e_disk), _divide(a42, e_disk)


def zernike_moments(
    maps: ArrayLike,
    theta_index: ArrayLike,
    phi_index: ArrayLike,
    *,
    size: int = WINDOW,
    r0_cm: float = ZERNIKE_R0_CM,
) -> tuple[np.ndarray, np.ndarray]:
    """Zernike moments A20 and A42 (BOSS ``A20Moment``, ``A42Moment``; BaBar's cluster shapes).

    ``A20 = |sum (E_i/E) (2 rho_i^2 - 1)|`` and ``A42 = |sum (E_i/E) (4 rho_i^4 - 3 rho_i^2) exp(2 i phi_i)|``
    with ``rho_i = r_perp,i / R0``, ``R0 = 15.6 cm``; ``r_perp,i`` and ``phi_i`` are the polar
    coordinates of crystal i's front-face centre in the plane perpendicular to the line from the origin
    (IP) through the shower centre ``x_sh``. Only crystals with ``rho <= 1`` (the domain of the
    Zernike polynomials) enter, and ``E`` is their energy sum, so both moments lie in [0, 1].

    Differences to BOSS: BOSS sums over the 5x5 crystals around the seed (all within ``rho < 1``) and
    divides by E5x5; it takes ``phi_i`` as the global azimuth of the perpendicular vector instead of
    an angle within the plane (our |A42| does not depend on how that plane's axes are chosen).

    Returns:
        ``(a20, a42)``, each (N,) dimensionless; a single hot crystal gives (1, 0). NaN for empty
        maps and when no energy lies within ``R0`` of the shower axis.
    """
    return _zernike(_cells(maps, theta_index, phi_index, size), r0_cm)


# ----------------------------------------------------------------------------------------------
# widths and asymmetries (LHCb GAN)
# ----------------------------------------------------------------------------------------------


def _axis_moments(profile: np.ndarray, name: str) -> dict[str, np.ndarray]:
    total = profile.sum(axis=1)
    mean = _divide(profile @ _OFFSETS, total)
    with np.errstate(invalid="ignore"):
        var = _divide((profile * (_OFFSETS[None, :] - mean[:, None]) ** 2).sum(axis=1), total)
    asym = _divide(profile[:, _OFFSETS > 0].sum(axis=1) - profile[:, _OFFSETS < 0].sum(axis=1), total)
    return {
        f"{name}_mean_crystals": mean,
        f"{name}_width_crystals": np.sqrt(np.clip(var, 0.0, None)),
        f"{name}_asymmetry": asym,
    }


def widths_and_asymmetries(maps: ArrayLike) -> dict[str, np.ndarray]:
    """Transverse (phi) and longitudinal (theta) centre, width and asymmetry, in crystal units.

    For each axis, with offsets ``o`` from the centre crystal (-5 .. 5 crystals) and the energy profile
    along that axis (:func:`energy_profile_phi`, :func:`energy_profile_theta`):

    * ``<axis>_mean_crystals``: ``sum E o / E``, the centre's offset from the centre crystal;
    * ``<axis>_width_crystals``: ``sqrt(sum E (o - mean)^2 / E)``, the energy-weighted standard
      deviation;
    * ``<axis>_asymmetry``: ``(E(o > 0) - E(o < 0)) / E``, in [-1, 1]; positive towards larger phi
      (``phi_``) or larger theta, i.e. -z (``theta_``).

    After the cluster widths and asymmetries of the LHCb calorimeter GAN (arXiv:1812.01319), measured
    here along the crystal grid rather than along the track's projection.

    Returns:
        dict of (N,) arrays with keys ``phi_mean_crystals``, ``phi_width_crystals``,
        ``phi_asymmetry`` and the same for ``theta_``; NaN for empty maps.
    """
    m = _check_maps(maps)
    return {**_axis_moments(energy_profile_phi(m), "phi"), **_axis_moments(energy_profile_theta(m), "theta")}


# ----------------------------------------------------------------------------------------------
# all scalar observables
# ----------------------------------------------------------------------------------------------


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
    * ``second_moment_cm2`` (cm^2), ``lat``, ``a20``, ``a42`` (BOSS shapes over the full window);
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
    m = _check_maps(maps)
    cells = _cells(m, theta_index, phi_index)
    a20, a42 = _zernike(cells, ZERNIKE_R0_CM)
    features: dict[str, np.ndarray] = {
        **energy_sums(m),
        **energy_ratios(m),
        "second_moment_cm2": _second_moment(cells),
        "lat": _lat(cells, LAT_R0_CM),
        "a20": a20,
        "a42": a42,
        **widths_and_asymmetries(m),
        "sparsity_1mev": sparsity(m, SPARSITY_FEATURE_THRESHOLD_GEV),
    }
    if entry_position_cm is not None:
        entry = np.asarray(entry_position_cm, dtype=np.float64)
        if entry.shape != cells.centre_cm.shape:
            raise ValueError(f"entry_position_cm must have shape {cells.centre_cm.shape}, got {entry.shape}")
        features["distance_to_entry_cm"] = np.linalg.norm(cells.centre_cm - entry, axis=-1)
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
