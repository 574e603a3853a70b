"""Shower shapes of 11x11 hit maps, vectorised over events (pure numpy): the one home of their maths.

Every function takes hit maps ``maps`` of shape (N, 11, 11) in GeV, laid out as the sample files
(:mod:`caloforge.data.io`): rows run over increasing ``theta_index``, columns over increasing
``phi_index``, the centre crystal (where the track enters the EMC) at ``[5, 5]``.

Two kinds of positions:

* cm (``*_cm``, ``*_cm2``, :func:`lat_moment`, :func:`zernike_moments`): the crystal front-face centres
  of :func:`caloforge.detector.geometry.barrel_geometry`, as BOSS uses them. These functions also take
  the centre crystals ``theta_index``, ``phi_index`` (N,) (or scalars). The validation uses them.
* crystal units (``*_crystals``, ``*_crystals2``): offsets on the window grid from the centre crystal,
  one unit = one crystal pitch (about 5 cm at the front face); no geometry needed. The training's
  checkpoint selection uses them, and :mod:`caloforge.showers.shapes_torch` has their differentiable
  torch twins (equal to float rounding).

Both kinds go through the same cores (energy-weighted centre, second moment, LAT formula); only the
positions, and the distance that LAT uses, differ.

Definitions follow BESIII's reconstruction, BOSS ``EmcRec/EmcRecShowerShape`` (second moment, LAT,
Zernike moments A20 and A42, with crystal front-face centres in cm), and the LHCb calorimeter GAN
(Chekalina et al., arXiv:1812.01319: widths, asymmetries, distance of the centre to the impact point).
Where ours differ from BOSS, the function says so. The main differences:

* BOSS sums over the 5x5 crystals around the shower's seed (its most energetic crystal) and uses the
  reconstructed shower position (logarithmic weights, at the depth of the shower maximum); here the
  sums run over the whole window (or its central ``size x size`` crystals) and the shower centre
  ``x_sh`` is the linear energy-weighted mean of the crystal positions.
* Crystals beyond the barrel ends (window rows with ``theta_index < 0`` or ``> 43``) have no position
  in cm: the cm observables ignore their energy. The index-based ones (energy sums, profiles, widths,
  crystal-unit shapes) take the map as it is.

Energies are assumed non-negative (clip digitised maps with negative noise before, if needed).

Empty maps (no energy, or no energy inside the barrel for the cm observables): sums and profiles are 0;
every observable that divides by an energy (ratios, centres, moments, LAT, Zernike moments, widths,
asymmetries, distances) is NaN. No warning is raised for them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from caloforge.detector.geometry import WINDOW, barrel_geometry, window_indices

LAT_R0_CM = 5.2
"""BOSS's ``r0`` of the LAT moment, cm (about the crystal front-face size)."""
LAT_R0_CRYSTALS = LAT_R0_CM / 5.0
"""The LAT radius ``r0`` = 5.2 cm (BOSS) in crystal pitches (front faces about 5 cm wide): 1.04."""
ZERNIKE_R0_CM = 15.6
"""BOSS's radius ``R0`` of the Zernike moments, cm (rho = r_perp / R0)."""
NXN_SIZES: tuple[int, ...] = (1, 3, 5, 7, 9, 11)
"""Window sides of the energy sums E1x1 ... E11x11."""
RATIO_PAIRS: tuple[tuple[int, int], ...] = ((1, 3), (3, 5), (5, 7), (7, 9), (9, 11), (5, 11))
"""Pairs (n, m) of the energy ratios E_nxn / E_mxm in :func:`energy_ratios`."""

_CENTRE = WINDOW // 2
_OFFSETS = np.arange(WINDOW) - _CENTRE  # crystal offsets from the centre crystal, (11,)
_GRID_CRYSTALS = np.stack(
    np.meshgrid(_OFFSETS.astype(np.float64), _OFFSETS.astype(np.float64), indexing="ij"), axis=-1
).reshape(-1, 2)  # (121, 2): (theta, phi) offset of each window crystal, row-major like the maps


# ----------------------------------------------------------------------------------------------
# inputs, division, positions
# ----------------------------------------------------------------------------------------------


def as_hit_maps(maps: ArrayLike) -> np.ndarray:
    """Hit maps as a float64 array (N, 11, 11), GeV; ValueError for another shape."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (WINDOW, WINDOW):
        raise ValueError(f"expected hit maps of shape (N, {WINDOW}, {WINDOW}), got {m.shape}")
    return m


def _central_slice(size: int) -> slice:
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


def divide_where_positive(num: ArrayLike, den: ArrayLike, fill: float = np.nan) -> np.ndarray:
    """``num / den`` where ``den > 0``, ``fill`` elsewhere (NaN by default), without warnings; float64."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.full(num.shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


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
    """Window crystals of N events flattened to M cells with positions (cm or crystal units)."""

    energy_gev: np.ndarray  # (N, M), 0 where the position is unknown
    position: np.ndarray  # (N, M, K), 0 where unknown
    total_gev: np.ndarray  # (N,)
    centre: np.ndarray  # (N, K) energy-weighted centre, NaN for empty events


def _cells_cm(maps: ArrayLike, theta_index: ArrayLike, phi_index: ArrayLike, size: int = WINDOW) -> _Cells:
    """The central ``size x size`` crystals with their front-face centres in cm."""
    m = as_hit_maps(maps)
    sl = _central_slice(size)
    n = len(m)
    t, p = _event_indices(theta_index, phi_index, n)
    pos = crystal_positions_cm(t, p)[:, sl, sl]  # (N, size, size, 3)
    inside = np.isfinite(pos[..., 0])
    e = np.where(inside, m[:, sl, sl], 0.0).reshape(n, -1)
    x = np.where(inside[..., None], pos, 0.0).reshape(n, -1, 3)
    total = e.sum(axis=1)
    centre = divide_where_positive(np.einsum("nm,nmk->nk", e, x), total[:, None])
    return _Cells(e, x, total, centre)


def _profile_centre(profile: np.ndarray) -> np.ndarray:
    """Energy-weighted mean offset (N,) from the centre crystal, crystal units, of profiles (N, 11)."""
    return divide_where_positive(profile @ _OFFSETS, profile.sum(axis=1))


def _cells_crystals(maps: ArrayLike) -> _Cells:
    """All 121 window crystals with their (theta, phi) offsets from the centre crystal, crystal units.

    The grid is separable, so the centre is the mean of the two energy profiles.
    """
    m = as_hit_maps(maps)
    n = len(m)
    e = m.reshape(n, -1)  # (N, 121)
    centre = np.stack([_profile_centre(energy_profile_theta(m)), _profile_centre(energy_profile_phi(m))], axis=1)
    return _Cells(e, np.broadcast_to(_GRID_CRYSTALS, (n, *_GRID_CRYSTALS.shape)), e.sum(axis=1), centre)


def _squared_distances_to_centre(cells: _Cells) -> np.ndarray:
    """(N, M) squared distance of each crystal position from the energy-weighted centre."""
    return ((cells.position - cells.centre[:, None, :]) ** 2).sum(axis=-1)


def _perp_to_shower_axis(cells: _Cells) -> np.ndarray:
    """(N, M, 3) component of each crystal position (cm) perpendicular to the IP-to-shower line.

    The line runs from the origin (the interaction point) through the shower centre ``x_sh``; the
    length of this vector is the crystal's distance from the line (BOSS: ``|x| sin(angle(x_sh, x))``).
    NaN for empty events.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        axis = cells.centre / np.linalg.norm(cells.centre, axis=-1, keepdims=True)  # (N, 3)
        along = np.einsum("nmk,nk->nm", cells.position, axis)
        return cells.position - along[..., None] * axis[:, None, :]


# ----------------------------------------------------------------------------------------------
# energy sums, ratios, profiles
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
    sl = _central_slice(n)
    return as_hit_maps(maps)[:, sl, sl].sum(axis=(1, 2))


def energy_sums(maps: ArrayLike) -> dict[str, np.ndarray]:
    """E1x1, E3x3, E5x5, E7x7, E9x9, E11x11 (GeV) as ``{"e1x1_gev": (N,), ...}``; see :func:`e_nxn`."""
    m = as_hit_maps(maps)
    return {f"e{n}x{n}_gev": e_nxn(m, n) for n in NXN_SIZES}


def energy_ratios(maps: ArrayLike) -> dict[str, np.ndarray]:
    """Ratios E_nxn / E_mxm for the pairs of :data:`RATIO_PAIRS`, as ``{"e1_over_e3": (N,), ...}``.

    Dimensionless; NaN where the denominator is 0.
    """
    sums = energy_sums(maps)
    return {
        f"e{n}_over_e{k}": divide_where_positive(sums[f"e{n}x{n}_gev"], sums[f"e{k}x{k}_gev"])
        for n, k in RATIO_PAIRS
    }


def energy_profile_phi(maps: ArrayLike) -> np.ndarray:
    """Energy deposited along phi: the map summed over theta (rows), (N, 11) in GeV.

    Index ``j`` is the phi offset ``j - 5`` crystals from the centre crystal.
    """
    return as_hit_maps(maps).sum(axis=1)


def energy_profile_theta(maps: ArrayLike) -> np.ndarray:
    """Energy deposited along theta (z): the map summed over phi (columns), (N, 11) in GeV.

    Index ``i`` is the theta offset ``i - 5`` crystals from the centre crystal (towards -z).
    """
    return as_hit_maps(maps).sum(axis=2)


# ----------------------------------------------------------------------------------------------
# shapes in crystal units (the window grid)
# ----------------------------------------------------------------------------------------------


def energy_weighted_centre_crystals(maps: ArrayLike) -> np.ndarray:
    """Shower centre ``sum E_i x_i / sum E_i`` on the window grid, as offsets from the centre crystal.

    ``x_i`` are the crystals' (theta, phi) offsets (-5 .. 5), so the centre is the mean of the energy
    profiles (:func:`energy_profile_theta`, :func:`energy_profile_phi`).

    Returns:
        (N, 2) (theta offset, phi offset) in crystal units; NaN for empty maps.
    """
    return _cells_crystals(maps).centre


def _second_moment(cells: _Cells) -> np.ndarray:
    return divide_where_positive(
        (cells.energy_gev * _squared_distances_to_centre(cells)).sum(axis=1), cells.total_gev
    )


def second_moment_crystals2(maps: ArrayLike) -> np.ndarray:
    """Lateral second moment ``S = sum E_i |x_i - x_c|^2 / sum E_i`` on the window grid, crystal units^2.

    BOSS's ``SecondMoment`` (:func:`second_moment_cm2`) with the window offsets of the crystals instead
    of their front-face centres (``x_c``: :func:`energy_weighted_centre_crystals`); all 121 crystals.

    Returns:
        (N,) in crystal units squared; 0 for a single hot crystal, NaN for empty maps.
    """
    return _second_moment(_cells_crystals(maps))


def _lat(energy_gev: np.ndarray, r2: np.ndarray, r0: float) -> np.ndarray:
    """LAT of cells (N, M) with squared distances ``r2`` (N, M) from the shower axis, ``r0`` in their unit."""
    e = energy_gev
    top2 = np.argsort(-e, axis=1, kind="stable")[:, :2]
    is_top = np.zeros(e.shape, dtype=bool)
    np.put_along_axis(is_top, top2, True, axis=1)
    num = np.where(is_top, 0.0, e * r2).sum(axis=1)
    den = num + r0**2 * np.where(is_top, e, 0.0).sum(axis=1)
    return divide_where_positive(num, den)


def lat_moment_crystals(maps: ArrayLike, *, r0_crystals: float = LAT_R0_CRYSTALS) -> np.ndarray:
    """Lateral moment LAT on the window grid, crystal units (a stand-in for :func:`lat_moment`).

    BOSS's ``sum_{i>=3} E_i r_i^2 / (sum_{i>=3} E_i r_i^2 + r0^2 (E_1 + E_2))`` (crystals sorted by
    energy) with ``r_i`` the distance of crystal i's window offset from the energy-weighted centre
    (:func:`energy_weighted_centre_crystals`) and ``r0`` = :data:`LAT_R0_CRYSTALS` (5.2 cm in crystal
    pitches). Ties in energy at the second place are broken by position in the map.

    Returns:
        (N,) dimensionless in [0, 1); 0 for one or two hot crystals, NaN for empty maps.
    """
    cells = _cells_crystals(maps)
    return _lat(cells.energy_gev, _squared_distances_to_centre(cells), r0_crystals)


def _axis_moments(profile: np.ndarray, name: str) -> dict[str, np.ndarray]:
    total = profile.sum(axis=1)
    mean = _profile_centre(profile)
    with np.errstate(invalid="ignore"):
        var = divide_where_positive((profile * (_OFFSETS[None, :] - mean[:, None]) ** 2).sum(axis=1), total)
    asym = divide_where_positive(
        profile[:, _OFFSETS > 0].sum(axis=1) - profile[:, _OFFSETS < 0].sum(axis=1), total
    )
    return {
        f"{name}_mean_crystals": mean,
        f"{name}_width_crystals": np.sqrt(np.clip(var, 0.0, None)),
        f"{name}_asymmetry": asym,
    }


def widths_and_asymmetries(maps: ArrayLike) -> dict[str, np.ndarray]:
    """Transverse (phi) and longitudinal (theta) centre, width and asymmetry, in crystal units.

    For each axis, with offsets ``o`` from the centre crystal (-5 .. 5 crystals) and the energy profile
    along that axis (:func:`energy_profile_phi`, :func:`energy_profile_theta`):

    * ``<axis>_mean_crystals``: ``sum E o / E``, the centre's offset from the centre crystal (the
      components of :func:`energy_weighted_centre_crystals`);
    * ``<axis>_width_crystals``: ``sqrt(sum E (o - mean)^2 / E)``, the energy-weighted standard
      deviation (the two squared widths add up to :func:`second_moment_crystals2`);
    * ``<axis>_asymmetry``: ``(E(o > 0) - E(o < 0)) / E``, in [-1, 1]; positive towards larger phi
      (``phi_``) or larger theta, i.e. -z (``theta_``).

    After the cluster widths and asymmetries of the LHCb calorimeter GAN (arXiv:1812.01319), measured
    here along the crystal grid rather than along the track's projection.

    Returns:
        dict of (N,) arrays with keys ``phi_mean_crystals``, ``phi_width_crystals``,
        ``phi_asymmetry`` and the same for ``theta_``; NaN for empty maps.
    """
    m = as_hit_maps(maps)
    return {**_axis_moments(energy_profile_phi(m), "phi"), **_axis_moments(energy_profile_theta(m), "theta")}


# ----------------------------------------------------------------------------------------------
# BOSS shower shapes in cm
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
    return _cells_cm(maps, theta_index, phi_index, size).centre


def _distance_cm(centre_cm: np.ndarray, entry_position_cm: ArrayLike) -> np.ndarray:
    entry = np.asarray(entry_position_cm, dtype=np.float64)
    if entry.shape != centre_cm.shape:
        raise ValueError(f"entry_position_cm must have shape {centre_cm.shape}, got {entry.shape}")
    return np.linalg.norm(centre_cm - entry, axis=-1)


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
    return _distance_cm(energy_weighted_centre_cm(maps, theta_index, phi_index, size=size), entry_position_cm)


def centre_offsets_cm(
    maps: ArrayLike, theta_index: ArrayLike, phi_index: ArrayLike, track_position_cm: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Energy-weighted shower centre minus the track's point on the front face, along theta and phi, cm.

    The offset vector ``x_sh - x_track`` (:func:`energy_weighted_centre_cm` over the whole window) is
    projected on the unit vectors of increasing theta (towards -z) and increasing phi at the track
    point.

    Args:
        maps: (N, 11, 11) hit maps in GeV.
        theta_index, phi_index: centre crystals, (N,) or scalars.
        track_position_cm: (N, 3) the track's point on the front face (``truth['front_position_cm']``).

    Returns:
        ``(theta_cm, phi_cm)``, each (N,); NaN for empty showers.
    """
    centre = energy_weighted_centre_cm(maps, theta_index, phi_index)
    x = np.asarray(track_position_cm, dtype=np.float64)
    phi = np.arctan2(x[:, 1], x[:, 0])
    theta = np.arctan2(np.hypot(x[:, 0], x[:, 1]), x[:, 2])
    e_theta = np.column_stack([np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi), -np.sin(theta)])
    e_phi = np.column_stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)])
    d = centre - x
    return (d * e_theta).sum(axis=1), (d * e_phi).sum(axis=1)


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
    return _second_moment(_cells_cm(maps, theta_index, phi_index, size))


def _lat_cm(cells: _Cells, r0_cm: float) -> np.ndarray:
    return _lat(cells.energy_gev, (_perp_to_shower_axis(cells) ** 2).sum(axis=-1), r0_cm)


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
    return _lat_cm(_cells_cm(maps, theta_index, phi_index, size), r0_cm)


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
        n = cells.centre / np.linalg.norm(cells.centre, axis=-1, keepdims=True)
        u = np.cross(np.array([0.0, 0.0, 1.0]), n)
        u /= np.linalg.norm(u, axis=-1, keepdims=True)
    v = np.cross(n, u)
    phi = np.arctan2(np.einsum("nmk,nk->nm", perp, v), np.einsum("nmk,nk->nm", perp, u))
    rho = np.where(in_disk, rho, 0.0)
    a20 = np.abs((w * (2 * rho**2 - 1)).sum(axis=1))
    a42 = np.abs((w * (4 * rho**4 - 3 * rho**2) * np.exp(2j * np.where(in_disk, phi, 0.0))).sum(axis=1))
    return divide_where_positive(a20, e_disk), divide_where_positive(a42, e_disk)


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
    return _zernike(_cells_cm(maps, theta_index, phi_index, size), r0_cm)


def position_shapes_cm(
    maps: ArrayLike,
    theta_index: ArrayLike,
    phi_index: ArrayLike,
    entry_position_cm: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """The BOSS shapes over the whole window at once, sharing the crystal positions and the centre.

    Keys (in this order): ``second_moment_cm2`` (:func:`second_moment_cm2`, cm^2), ``lat``
    (:func:`lat_moment`), ``a20``, ``a42`` (:func:`zernike_moments`), and ``distance_to_entry_cm``
    (:func:`distance_to_entry_cm`, cm) only when ``entry_position_cm`` (N, 3) is given. Each (N,).
    """
    cells = _cells_cm(maps, theta_index, phi_index)
    a20, a42 = _zernike(cells, ZERNIKE_R0_CM)
    shapes = {"second_moment_cm2": _second_moment(cells), "lat": _lat_cm(cells, LAT_R0_CM), "a20": a20, "a42": a42}
    if entry_position_cm is not None:
        shapes["distance_to_entry_cm"] = _distance_cm(cells.centre, entry_position_cm)
    return shapes
