"""E5x5 energy resolution and peak of the Geant4 reference, before and after the read-out, beside BOSS's MC.

Photons at 0.1, 0.5, 1 and 2 GeV/c and electrons at 1 and 1.843 GeV/c from the origin into the central barrel
rings (|cos theta| < ``--cos-theta-max``, default 0.32: theta rings 16..27, BOSS's ``thetaid`` 22..27), simulated
in-process by Geant4 (``caloforge.fullsim``), E5x5 around the crystal of the undisturbed track; each sample read
out with :data:`caloforge.detector.readout.BOSS_READOUT` (or ``--gain-spread``). ``--from-samples`` takes the
events of the Geant4 test samples (``~/.cache/caloforge/samples/test_*.h5``) within +-2 % of each momentum instead.

Resolution: FWHM / 2.355 of E5x5 / E (as BOSS quotes it), the FWHM read off a Gaussian kernel density estimate
of the peak region (Silverman's bandwidth h, the kernel's width removed in quadrature:
``sqrt(FWHM_kde^2 - (2.355 h)^2)``); sigma68 (:func:`caloforge.showers.compare.sigma68`); the peak: the mode of
the density. Statistical errors: the spread over 20 bootstrap resamplings.

BOSS's MC (EmcRec ``share/evset.txt``: E5x5 peak and resolution by energy and ring, the mean of ``thetaid``
22..27; 0.5 GeV: between its 0.4 and 0.6 GeV rows) and, for electrons at 1.843 GeV, BOSS's Bhabha calibration
(EmcRec ``share/Peak1.843_10.12calib.dat``, rings 22..33, source data or MC not stated).

    python benchmarks/resolution.py [--events 2000] [--from-samples] [--gain-spread 0.02]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

BOSS_MC = {  # (particle, p GeV/c): (sigma_E/E %, peak E5x5/E)
    ("gamma", 0.1): (2.755, 0.9674),
    ("gamma", 0.5): (2.802, 0.9611),
    ("gamma", 1.0): (2.618, 0.9534),
    ("gamma", 2.0): (2.479, 0.9487),
    ("e-", 1.843): (2.607, 1.7867 / 1.843),
}
"""BOSS's numbers (module docstring: sources)."""
POINTS = [("gamma", 0.1), ("gamma", 0.5), ("gamma", 1.0), ("gamma", 2.0), ("e-", 1.0), ("e-", 1.843)]
PDG = {"gamma": 22, "e-": 11}


def kde_peak(x: np.ndarray) -> tuple[float, float]:
    """Mode and FWHM / 2.355 of the sample ``x`` (module docstring: the method)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    q16, q25, q50, q75, q84 = np.quantile(x, [0.16, 0.25, 0.5, 0.75, 0.84])
    h = 0.9 * min(x.std(), (q75 - q25) / 1.34) * len(x) ** -0.2
    grid = np.linspace(q50 - 4 * (q84 - q16), q50 + 3 * (q84 - q16), 1400)
    dens = np.zeros_like(grid)
    for part in np.array_split(x, max(1, len(x) // 2000)):
        dens += np.exp(-0.5 * ((grid[:, None] - part[None, :]) / h) ** 2).sum(axis=1)
    k = int(np.argmax(dens))
    half = dens[k] / 2
    lo = k
    while lo > 0 and dens[lo] > half:
        lo -= 1
    hi = k
    while hi < len(grid) - 1 and dens[hi] > half:
        hi += 1
    x_lo = np.interp(half, [dens[lo], dens[lo + 1]], [grid[lo], grid[lo + 1]])
    x_hi = np.interp(half, [dens[hi], dens[hi - 1]], [grid[hi], grid[hi - 1]])
    fwhm = np.sqrt(max((x_hi - x_lo) ** 2 - (2.355 * h) ** 2, 0.0))
    return float(grid[k]), float(fwhm / 2.355)


def measure(ratio: np.ndarray, rng: np.random.Generator, n_boot: int = 20) -> dict[str, float]:
    """Peak, FWHM/2.355 and sigma68 of E5x5/E with bootstrap errors."""
    from caloforge.showers.compare import sigma68

    def one(r: np.ndarray) -> tuple[float, float, float]:
        peak, sig = kde_peak(r)
        return peak, sig, float(sigma68(r))

    best = one(ratio)
    boot = np.array([one(ratio[rng.integers(0, len(ratio), len(ratio))]) for _ in range(n_boot)])
    err = boot.std(axis=0)
    return {"peak": best[0], "fwhm": best[1], "s68": best[2], "peak_err": err[0], "fwhm_err": err[1],
            "s68_err": err[2], "n": len(ratio)}


def geant4_maps(particle: str, p_gev: float, n: int, cos_theta_max: float, tof: bool, seed: int):
    """(maps (N, 11, 11) GeV, theta (N,), phi (N,), p (N,)) of ``n`` Geant4 events at ``p_gev``."""
    from caloforge.fullsim import g4app
    from caloforge.fullsim.runner import GunSpec, simulate_attempts

    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    sys.stdout.flush()
    os.dup2(devnull, 1)  # Geant4's banner, and its tables at the first run
    try:
        app = _APPS.get(tof)
        if app is None:
            g4app.g4.G4EmParameters.Instance().SetVerbose(0)
            app = _APPS[tof] = g4app.Geant4Barrel(g4app.SimSettings(tof=tof))
        gun = GunSpec(particle, momentum_gev=(p_gev, p_gev), cos_theta_max=cos_theta_max, seed=seed)
        batch = simulate_attempts(app, gun, np.arange(n))
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    ev = batch.events
    return ev["maps_gev"], ev["theta_index"], ev["phi_index"], np.full(len(ev["pdg"]), p_gev)


_APPS: dict = {}


def sample_maps(particle: str, p_gev: float, n: int, cos_theta_max: float, path: Path):
    """The same from a Geant4 sample file: events within +-2 % of ``p_gev`` in the rings of ``cos_theta_max``."""
    from caloforge.data.io import read_sample

    s = read_sample(path)
    p = s.p_gev
    ring_lo, ring_hi = _rings(cos_theta_max)
    keep = (np.abs(p / p_gev - 1) < 0.02) & (s.theta_index >= ring_lo) & (s.theta_index <= ring_hi)
    idx = np.flatnonzero(keep)[:n]
    return s.maps_gev[idx], s.theta_index[idx], s.phi_index[idx], p[idx]


def _rings(cos_theta_max: float) -> tuple[int, int]:
    """Theta rings whose centres lie within |cos theta| < cos_theta_max (16..27 for 0.32)."""
    from caloforge.detector.geometry import barrel_geometry

    centre = barrel_geometry().front_center_cm[:, 0]  # (44, 3)
    cos_t = centre[:, 2] / np.linalg.norm(centre, axis=1)
    rings = np.flatnonzero(np.abs(cos_t) < cos_theta_max)
    return int(rings.min()), int(rings.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events per point")
    parser.add_argument("--from-samples", action="store_true", help="take the Geant4 test samples' events")
    parser.add_argument("--samples", type=Path, default=Path.home() / ".cache/caloforge/samples")
    parser.add_argument("--cos-theta-max", type=float, default=0.32)
    parser.add_argument("--no-tof", action="store_true")
    parser.add_argument("--gain-spread", type=float, default=None, help="override residual_gain_spread")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from caloforge.detector.readout import BOSS_READOUT, digitise_maps
    from caloforge.showers.shapes import e_nxn

    params = BOSS_READOUT
    if args.gain_spread is not None:
        params = dataclasses.replace(params, residual_gain_spread=args.gain_spread)
    rng = np.random.default_rng(args.seed)
    source = "Geant4 test samples (+-2 % in p)" if args.from_samples else f"Geant4 in-process, TOF {not args.no_tof}"
    print(f"{source}, |cos theta| < {args.cos_theta_max}, read-out {params}\n")
    print(f"{'particle':>8} {'p':>6} {'N':>6} | {'before: peak':>13} {'FWHM/2.355':>11} {'s68':>6} | "
          f"{'after: peak':>12} {'FWHM/2.355':>11} {'s68':>6} | {'BOSS: peak':>10} {'sigma':>6}")
    for particle, p_gev in POINTS:
        if args.from_samples:
            path = args.samples / f"test_{particle}.h5"
            maps, theta, phi, p = sample_maps(particle, p_gev, args.events, args.cos_theta_max, path)
        else:
            maps, theta, phi, p = geant4_maps(particle, p_gev, args.events, args.cos_theta_max, not args.no_tof,
                                              args.seed)
        if len(maps) < 20:
            print(f"{particle:>8} {p_gev:>6} too few events ({len(maps)})")
            continue
        mass = 0.000511 if particle == "e-" else 0.0
        e_true = np.hypot(p, mass)
        before = measure(e_nxn(maps, 5) / e_true, rng)
        read = digitise_maps(maps, theta, phi, args.seed + int(1000 * p_gev), params)
        after = measure(e_nxn(read, 5) / e_true, rng)
        boss = BOSS_MC.get((particle, p_gev))
        boss_txt = f"{boss[1]:>10.4f} {boss[0]:>5.2f}%" if boss else f"{'-':>10} {'-':>6}"
        print(f"{particle:>8} {p_gev:>6} {len(maps):>6} | {before['peak']:>13.4f} "
              f"{100 * before['fwhm']:>5.2f}+-{100 * before['fwhm_err']:.2f}% {100 * before['s68']:>5.2f}% | "
              f"{after['peak']:>12.4f} {100 * after['fwhm']:>5.2f}+-{100 * after['fwhm_err']:.2f}% "
              f"{100 * after['s68']:>5.2f}% | {boss_txt}")


if __name__ == "__main__":
    main()
