"""Physics checks of the Geant4 reference against the numbers in SPEC.md.

1. Share of the barrel deposit inside 11x11 for p > 1 GeV/c, per particle (SPEC/seed 000: 99.7 % e+,
   99.8 % e-, 99.8 % gamma), from the reference test samples when they exist.
2. Relative energy resolution of 1 GeV/c photons (BESIII barrel: about 2.5 %), from a fresh Geant4 run,
   with and without the TOF in front: Gaussian core fit (iterated within -1.5, +2 sigma) of the barrel
   deposit and of E5x5.
3. Where the truth hit is: how often the hottest crystal is the centre crystal (or in its 3x3), and the
   distance between the energy-weighted centre of the 5x5 crystals and the truth point on the front face.

    python benchmarks/physics_checks.py [--sample-dir ~/.cache/caloforge/samples] [--photons 2000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

from caloforge.data.io import iter_batches
from caloforge.data.production import DEFAULT_CACHE, make_sample
from caloforge.detector.geometry import barrel_geometry, window_indices
from caloforge.fullsim.runner import GunSpec


def gaussian_core(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, sigma, sigma error) of a Gaussian fitted to the core of a peaked distribution."""
    mu, sigma = np.median(x), 1.4826 * np.median(np.abs(x - np.median(x)))
    for _ in range(5):
        sel = x[(x > mu - 1.5 * sigma) & (x < mu + 2.0 * sigma)]
        counts, edges = np.histogram(sel, bins=40)
        centres = 0.5 * (edges[1:] + edges[:-1])
        err = np.sqrt(np.maximum(counts, 1))
        (a, mu, sigma), cov = curve_fit(
            lambda v, a, m, s: a * np.exp(-0.5 * ((v - m) / s) ** 2),
            centres, counts, p0=(counts.max(), mu, sigma), sigma=err,
        )
        sigma = abs(sigma)
    return float(mu), float(sigma), float(np.sqrt(cov[2, 2]))


def centre_checks(maps: np.ndarray, theta: np.ndarray, phi: np.ndarray, truth_cm: np.ndarray) -> dict:
    n = len(maps)
    hot = np.stack(np.unravel_index(maps.reshape(n, -1).argmax(axis=1), (11, 11)), axis=1)
    rows, cols, inside = window_indices(theta, phi, 5)
    pos = barrel_geometry().front_center_cm[np.clip(rows, 0, None), np.clip(cols, 0, None)]  # (n,5,5,3)
    e = np.where(inside, maps[:, 3:8, 3:8], 0.0)
    w = e.sum(axis=(1, 2))
    ok = w > 0
    centroid = (e[..., None] * pos).sum(axis=(1, 2))[ok] / w[ok, None]
    dist = np.linalg.norm(centroid - truth_cm[ok], axis=1)
    return {
        "hottest_is_centre": float(np.mean(np.all(hot == 5, axis=1))),
        "hottest_in_3x3": float(np.mean(np.all(np.abs(hot - 5) <= 1, axis=1))),
        "centroid_distance_median_cm": float(np.median(dist)),
    }


def containment_table(sample_dir: Path) -> None:
    print("1. 11x11 share of the barrel deposit, p > 1 GeV/c (SPEC: 99.7 % e+, 99.8 % e-, 99.8 % gamma)")
    print(f"{'sample':>16} {'events':>7} {'mean':>8} {'median':>8} | {'hot=centre':>10} {'hot in 3x3':>10} {'centroid-truth':>14}")
    for name in ("e-", "e+", "gamma"):
        path = sample_dir / f"test_{name}.h5"
        if not path.exists():
            print(f"{path.name:>16}  (missing: run `caloforge samples`)")
            continue
        share, checks = [], []
        for b in iter_batches(path, 50_000):
            high = (b.p_gev > 1.0) & (b.edep_barrel_gev > 0)
            share.append(b.maps_gev[high].sum(axis=(1, 2)) / b.edep_barrel_gev[high])
            c = centre_checks(b.maps_gev[high], b.theta_index[high], b.phi_index[high],
                              b.truth["front_position_cm"][high])
            checks.append((c, high.sum()))
        s = np.concatenate(share)
        tot = sum(n for _, n in checks)
        avg = {k: sum(c[k] * n for c, n in checks) / tot for k in checks[0][0]}
        print(f"{path.name:>16} {len(s):>7} {s.mean():>8.3%} {np.median(s):>8.3%} | "
              f"{avg['hottest_is_centre']:>10.3f} {avg['hottest_in_3x3']:>10.3f} "
              f"{avg['centroid_distance_median_cm']:>11.2f} cm")


def resolution_table(n: int, workers: int | None) -> None:
    print(f"\n2./3. {n} photons of 1 GeV/c, random barrel directions (BESIII: sigma_E/E about 2.5 %)")
    print(f"{'TOF':>4} {'E_dep/E':>8} {'sigma/E (barrel)':>17} {'sigma/E (E5x5)':>15} {'rms/mean':>9} | "
          f"{'hot=centre':>10} {'hot in 3x3':>10} {'centroid-truth':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for tof in (True, False):
            path = Path(tmp) / f"gamma_tof{tof}.h5"
            make_sample(path, GunSpec("gamma", momentum_gev=(1.0, 1.0), seed=4242), n, tof=tof,
                        workers=workers, progress=False)
            b = next(iter_batches(path, n))
            e_all = b.edep_barrel_gev
            e5 = b.maps_gev[:, 3:8, 3:8].sum(axis=(1, 2))
            m1, s1, d1 = gaussian_core(e_all)
            m5, s5, d5 = gaussian_core(e5)
            c = centre_checks(b.maps_gev, b.theta_index, b.phi_index, b.truth["front_position_cm"])
            print(f"{'on' if tof else 'off':>4} {e_all.mean():>8.3f} {s1 / m1:>9.2%} +- {d1 / m1:.2%} "
                  f"{s5 / m5:>8.2%} +- {d5 / m5:.2%} {e_all.std() / e_all.mean():>9.2%} | "
                  f"{c['hottest_is_centre']:>10.3f} {c['hottest_in_3x3']:>10.3f} "
                  f"{c['centroid_distance_median_cm']:>11.2f} cm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-dir", type=Path, default=DEFAULT_CACHE / "samples")
    parser.add_argument("--photons", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    containment_table(args.sample_dir)
    resolution_table(args.photons, args.workers)


if __name__ == "__main__":
    main()
