"""Geant4's overlap test on the barrel crystals (G4VPhysicalVolume::CheckOverlaps).

Each checked crystal's surface is sampled with ``--points`` points, which are tested against the
mother volume (the EMC envelope) and every other crystal. Prints the number of crystals checked and
the number with overlaps.

    python benchmarks/check_overlaps.py [--every 10] [--points 1000]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=10, help="check every n-th crystal")
    parser.add_argument("--points", type=int, default=1000, help="surface points per crystal")
    args = parser.parse_args()

    from caloforge.fullsim import g4app

    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)
    g4app.Geant4Barrel(g4app.SimSettings())
    store = g4app.g4.G4PhysicalVolumeStore.GetInstance()
    envelope = store.GetVolume("EmcEnvelope").GetLogicalVolume()
    crystals = [envelope.GetDaughter(i) for i in range(envelope.GetNoDaughters())]
    t0 = time.perf_counter()
    overlapping = []
    for pv in crystals[:: args.every]:
        if pv.CheckOverlaps(args.points, 0.0, False, 1):
            overlapping.append(pv.GetCopyNo())
    dt = time.perf_counter() - t0
    os.dup2(saved, 1)
    print(f"{'crystals checked':>17} {'points each':>12} {'with overlaps':>14} {'seconds':>8}")
    print(f"{len(crystals[:: args.every]):>17} {args.points:>12} {len(overlapping):>14} {dt:>8.1f}")
    if overlapping:
        print("copy numbers with overlaps:", overlapping[:20])


if __name__ == "__main__":
    main()
