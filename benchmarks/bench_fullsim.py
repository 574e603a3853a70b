"""Geant4 reference: time per event by particle and momentum, all variants in one run.

The variants run alternately in rounds inside one single-threaded Geant4 application, so that the
drift of these shared machines hits them all alike; the table gives the median over rounds and the
ratio to 1 GeV/c photons.

    python benchmarks/bench_fullsim.py [--events 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40, help="events per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--momenta", default="0.3,1.0,2.0", help="GeV/c, comma separated")
    parser.add_argument("--no-tof", action="store_true")
    args = parser.parse_args()

    from caloforge.fullsim import g4app
    from caloforge.fullsim.runner import GunSpec, simulate_attempts

    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)  # Geant4's banner and tables
    t0 = time.perf_counter()
    g4app.g4.G4EmParameters.Instance().SetVerbose(0)
    app = g4app.Geant4Barrel(g4app.SimSettings(tof=not args.no_tof))
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    simulate_attempts(app, GunSpec("gamma", momentum_gev=(1.0, 1.0), seed=999), np.arange(1))
    t_first = time.perf_counter() - t0
    os.dup2(saved, 1)

    momenta = [float(x) for x in args.momenta.split(",")]
    variants = [(name, p) for name in ("gamma", "e-", "e+") for p in momenta]
    times: dict[tuple[str, float], list[float]] = {v: [] for v in variants}
    deposit: dict[tuple[str, float], list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for name, p in variants:
            gun = GunSpec(name, momentum_gev=(p, p), seed=100 + r)
            attempts = np.arange(args.events)
            t0 = time.perf_counter()
            batch = simulate_attempts(app, gun, attempts)
            dt = time.perf_counter() - t0
            n_run = len(batch)
            times[(name, p)].append(1000 * dt / max(n_run, 1))
            deposit[(name, p)] += list(batch.events["edep_barrel_gev"] / p)

    ref = np.median(times.get(("gamma", 1.0), times[variants[0]]))
    print(f"Geant4 {g4app.geant4_version()}, {g4app.PHYSICS_LIST}, TOF {'off' if args.no_tof else 'on'}, "
          f"single thread; geometry+physics init {t_init:.2f} s, first event {t_first:.2f} s")
    print(f"{args.rounds} rounds x {args.events} events per variant, alternating\n")
    print(f"{'particle':>8} {'p [GeV/c]':>10} {'ms/event':>9} {'min..max':>13} {'ratio':>6} {'E_dep/p':>8}")
    for name, p in variants:
        t = times[(name, p)]
        print(f"{name:>8} {p:>10.2f} {np.median(t):>9.2f} {min(t):>6.2f}..{max(t):<6.2f} "
              f"{np.median(t) / ref:>6.2f} {np.mean(deposit[(name, p)]):>8.3f}")


if __name__ == "__main__":
    main()
