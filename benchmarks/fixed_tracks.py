"""Repeated fixed tracks: the mean and spread of E1x1, E3x3 and E5x5 of each shipped model set against Geant4.

For each particle type, three tracks (px, py, pz) in GeV/c from the origin: the model card's
(:data:`caloforge.release.studies.TRACK_GEV`, its sample ``track_<particle>.h5``) and two more
(:data:`EXTRA_TRACKS_GEV`), each simulated by Geant4 ``--events`` times into ``<samples>/tracks/``
(made, or extended, on the first run; later runs reuse them). Every shipped set (``gan``, ``flow``, ``student``,
those installed) samples at least :data:`MODEL_MAPS` maps under the conditions of the Geant4 events. The table
gives, per track and set, model over Geant4 for the mean and the standard deviation of each sum, with the
statistical errors (the mean's: both samples' standard errors; the spread's: ``1/sqrt(2 n)`` of each), and
whether the issue's targets hold (mean within 2 %, spread within 10 %).

    python benchmarks/fixed_tracks.py [--events 3000] [--particles e-,gamma,e+] [--sets gan,flow,student]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

EXTRA_TRACKS_GEV = ((0.6, -0.9, 0.45), (-0.12, 0.22, -0.08))
"""Two more tracks (GeV/c): 1.17 GeV/c at cos(theta) 0.38, and 0.26 GeV/c at cos(theta) -0.30."""
EXTRA_SEED = 3101
"""Seed of the Geant4 run of the first extra track (the next one: + 1)."""
MODEL_MAPS = 10_000
"""Fewest model maps per track and set."""
SUMS = (1, 3, 5)
"""The n x n sums compared (E1x1, E3x3, E5x5)."""
MEAN_TOLERANCE, SPREAD_TOLERANCE = 0.02, 0.10
"""The targets of issue 21: mean within 2 %, spread within 10 %."""


def track_files(samples_dir: Path, particle: str, events: int) -> list[tuple[tuple[float, ...], Path]]:
    """(track, Geant4 sample) of ``particle``: the card's, then the extra ones made or extended to ``events``."""
    from caloforge.data.io import read_attrs
    from caloforge.data.production import GunSpec, make_sample
    from caloforge.release.studies import TRACK_GEV, track_sample

    tracks = [(TRACK_GEV, track_sample(samples_dir, particle))]
    folder = samples_dir / "tracks"
    folder.mkdir(exist_ok=True)
    for k, track in enumerate(EXTRA_TRACKS_GEV):
        path = folder / f"track_{particle}_{k + 1}.h5"
        have = read_attrs(path)["n_events"] if path.exists() else 0
        if have < events:
            make_sample(path, GunSpec(particle, track_gev=track, seed=EXTRA_SEED + k), events - have,
                        append=have > 0, progress=True)
        tracks.append((track, path))
    return tracks


def compare(reference: np.ndarray, model: np.ndarray) -> dict[int, tuple[float, float, float, float]]:
    """Per n x n sum: (mean ratio, its error, spread ratio, its error), model over Geant4, of maps (N, 11, 11)."""
    from caloforge.showers.shapes import e_nxn

    out = {}
    for n in SUMS:
        a, b = e_nxn(reference, n), e_nxn(model, n)
        mean = b.mean() / a.mean()
        mean_err = mean * math.hypot(a.std() / math.sqrt(len(a)) / a.mean(), b.std() / math.sqrt(len(b)) / b.mean())
        spread = b.std() / a.std()
        spread_err = spread * math.hypot(1 / math.sqrt(2 * len(a)), 1 / math.sqrt(2 * len(b)))
        out[n] = (float(mean), float(mean_err), float(spread), float(spread_err))
    return out


def main() -> None:
    from caloforge.data.io import read_sample
    from caloforge.models import load_model
    from caloforge.models.pretrained import default_model_paths
    from caloforge.training.config import cache_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="Geant4 events per extra track")
    parser.add_argument("--particles", default="e-,gamma,e+")
    parser.add_argument("--sets", default="gan,flow,student")
    parser.add_argument("--samples", type=Path, default=None, help="default: $CALOFORGE_CACHE/samples")
    args = parser.parse_args()
    samples_dir = args.samples or cache_dir() / "samples"

    print(f"{'particle':>8} {'track (GeV/c)':>22} {'set':>8} {'n G4':>6} " +
          " ".join(f"{f'E{n}x{n} mean':>15} {f'E{n}x{n} spread':>15}" for n in SUMS) + "  targets")
    for particle in args.particles.split(","):
        tracks = track_files(samples_dir, particle, args.events)
        models = {s: load_model(p, device="cpu")
                  for s in args.sets.split(",") if (p := default_model_paths("torch", family=s).get(particle))}
        for track, path in tracks:
            ref = read_sample(path)
            draws = math.ceil(MODEL_MAPS / len(ref))
            for name, model in models.items():
                maps = np.concatenate([model.sample(ref.conditions, seed=10 + k) for k in range(draws)])
                result = compare(ref.maps_gev, maps)
                met = all(abs(m - 1) <= MEAN_TOLERANCE and abs(s - 1) <= SPREAD_TOLERANCE
                          for m, _, s, _ in result.values())
                cells = " ".join(f"{m:>8.4f}+-{me:.4f} {s:>8.3f}+-{se:.3f}" for m, me, s, se in result.values())
                print(f"{particle:>8} {str(track):>22} {name:>8} {len(ref):>6} {cells}  {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
