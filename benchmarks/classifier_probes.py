"""What tells a model from Geant4: the low-level classifier of the validation on chosen views of the maps.

The report's classifier (:func:`caloforge.validation.classifier.classifier_test`) gives one AUC on all 121
crystals and the conditions. This script trains the same classifier on parts and transforms of the maps, so
that a change to a model can be judged by where its difference from Geant4 goes, not only by that one number:

* the report's inputs, and the same without the conditions;
* the hit / no-hit bits of the 121 crystals (any deposit; above 1 MeV), the bits of the rings 0-2, 3, 4 and 5
  (ring k: the crystals k steps from the centre, in the larger of the two directions), the log energies of
  the central 3x3 and of rings 0-2;
* both samples under random theta and phi flips and transposes of the window (what is left when the
  orientation of a map says nothing);
* symmetry under the theta mirror (rows flipped; dtheta_mom, dz_pos and z negated): Geant4 against a mirrored
  independent Geant4 sample, and the model against the model sampled under mirrored conditions and flipped
  back (0.5: symmetric);
* the model's regressor on the conditions of Geant4 maps and of the model's own: the mean squared error over
  the six normalised conditions, model over Geant4 (1: the maps tell the conditions as clearly as Geant4's).

Each AUC comes from one classifier run (60/20/20 % split of both samples, seed 0), as in the report.

    python benchmarks/classifier_probes.py [--particle gamma] [--model PATH] [--events 10000]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from caloforge.data.io import Sample, read_sample
from caloforge.data.production import DEFAULT_CACHE
from caloforge.models import load_model
from caloforge.models.pretrained import default_model_paths
from caloforge.validation.classifier import CELL_LOG_SCALE_GEV, classifier_test, low_level_inputs

THETA_MIRROR_CONDITIONS = (1, 3, 5)
"""Conditions that change sign under the theta mirror: dtheta_mom_rad, dz_pos_cm, z_cm."""
RING = np.maximum(np.abs(np.arange(11) - 5)[:, None], np.abs(np.arange(11) - 5)[None, :])  # (11, 11)


def _log_cells(maps_gev: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    m = maps_gev if mask is None else maps_gev[:, mask]
    return np.log1p(np.clip(m.reshape(len(m), -1), 0.0, None) / CELL_LOG_SCALE_GEV)


def _hits(maps_gev: np.ndarray, threshold_gev: float = 0.0, mask: np.ndarray | None = None) -> np.ndarray:
    m = maps_gev if mask is None else maps_gev[:, mask]
    return (m.reshape(len(m), -1) > threshold_gev).astype(np.float64)


def _dihedral(maps_gev: np.ndarray, seed: int) -> np.ndarray:
    """Each map flipped in theta, in phi and transposed, each with probability 1/2."""
    rng = np.random.default_rng(seed)
    out = maps_gev.copy()
    for axis_flip in (1, 2):
        sel = rng.random(len(out)) < 0.5
        out[sel] = np.flip(out[sel], axis=axis_flip)
    sel = rng.random(len(out)) < 0.5
    out[sel] = np.transpose(out[sel], (0, 2, 1))
    return out


def _theta_mirrored_conditions(conditions: np.ndarray) -> np.ndarray:
    c = conditions.copy()
    c[:, list(THETA_MIRROR_CONDITIONS)] *= -1
    return c


def regressor_error_ratio(model, geant4: Sample, maps_gev: np.ndarray) -> float:
    """Mean squared error of ``model``'s regressor over the normalised conditions, on ``maps_gev`` (sampled under
    the conditions of ``geant4``) over that on the Geant4 maps."""
    c = torch.as_tensor(geant4.conditions, dtype=torch.float32)
    cond = model.condition_input(c, torch.zeros(len(c), dtype=torch.long))
    errors = []
    with torch.no_grad():
        for maps in (geant4.maps_gev, maps_gev):
            pred = model.regressor(torch.as_tensor(maps, dtype=torch.float32).unsqueeze(1), cond[:, 6:])
            errors.append(float(((pred - cond[:, :6]) ** 2).mean()))
    return errors[1] / errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particle", default="gamma", choices=("gamma", "e-", "e+"))
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--samples", type=Path, default=DEFAULT_CACHE / "samples")
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()

    for kind in ("test", "floor"):
        if not (args.samples / f"{kind}_{args.particle}.h5").exists():
            parser.error(f"{args.samples / f'{kind}_{args.particle}.h5'} is missing: make it with `caloforge samples`")
    model = load_model(args.model or default_model_paths("torch")[args.particle], device="cpu")
    g4 = read_sample(args.samples / f"test_{args.particle}.h5", 0, args.events)
    floor = read_sample(args.samples / f"floor_{args.particle}.h5", 0, args.events)
    fake = model.sample(g4.conditions, seed=1)
    mirrored = np.flip(model.sample(_theta_mirrored_conditions(g4.conditions), seed=2), axis=1).copy()

    def show(name: str, a: np.ndarray, b: np.ndarray) -> None:
        print(f"{name:58s} {classifier_test(a, b).auc:.3f}", flush=True)

    def probe(name: str, view: Callable[[np.ndarray], np.ndarray], a: np.ndarray = g4.maps_gev,
              b: np.ndarray = fake) -> None:
        show(name, view(a), view(b))

    print(f"{args.particle}: {len(g4)} Geant4 test events; model {args.model or 'shipped'}\n")
    print(f"{'view (Geant4 against the model unless said)':58s} AUC")
    reference = low_level_inputs(g4.maps_gev, g4.conditions)
    show("report's low-level inputs", reference, low_level_inputs(fake, g4.conditions))
    floor_inputs = low_level_inputs(floor.maps_gev, floor.conditions)
    show("  the same, Geant4 floor instead of the model", reference, floor_inputs)
    probe("log cell energies, no conditions", _log_cells)
    probe("hit / no-hit, any deposit", _hits)
    probe("hit / no-hit, above 1 MeV", lambda m: _hits(m, 1e-3))
    for rings, label in (((0, 1, 2), "0-2"), ((3,), "3"), ((4,), "4"), ((5,), "5")):
        mask = np.isin(RING, rings)
        probe(f"hit / no-hit, ring {label}", lambda m, mask=mask: _hits(m, 0.0, mask))
    probe("log cell energies, central 3x3", lambda m: _log_cells(m, RING <= 1))
    probe("log cell energies, rings 0-2", lambda m: _log_cells(m, RING <= 2))
    probe("log cell energies, random flips and transposes", _log_cells, _dihedral(g4.maps_gev, 3), _dihedral(fake, 4))
    floor_mirrored = low_level_inputs(np.flip(floor.maps_gev, axis=1).copy(),
                                      _theta_mirrored_conditions(floor.conditions))
    show("theta mirror: Geant4 against mirrored Geant4 floor", reference, floor_mirrored)
    show("theta mirror: model against mirrored model", low_level_inputs(fake, g4.conditions),
         low_level_inputs(mirrored, g4.conditions))
    if getattr(model, "regressor", None) is not None:
        ratio = regressor_error_ratio(model, g4, fake)
        print(f"\nregressor error on the model's maps over that on Geant4's: {ratio:.3f}")


if __name__ == "__main__":
    main()
