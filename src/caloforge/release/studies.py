"""The studies of a shipped model beyond the validation report: energy response and E5x5 spread per momentum
slice, the E5x5 spread of one repeated track, the ONNX sampling speed, and the 8-bit export against the float32
one under the same noise.

Energies are sums over the central crystals of the 11 x 11 maps (:func:`caloforge.showers.shapes.e_nxn`,
BOSS ``e5x5``; E11x11 the whole map); spreads are standard deviations and sigma68
(:func:`caloforge.showers.compare.sigma68`). Momenta p in GeV/c, energies in GeV.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from caloforge.data.io import Sample, read_attrs, read_sample
from caloforge.data.production import make_sample
from caloforge.export import OnnxShowerModel
from caloforge.fullsim.runner import GunSpec
from caloforge.models import ShowerModel
from caloforge.release.targets import FULL_RANGE_GEV
from caloforge.showers.compare import sigma68
from caloforge.showers.shapes import e_nxn

SLICES_GEV: tuple[tuple[float, float], ...] = ((0.2, 0.4), (0.5, 0.7), (1.1, 1.3), (1.8, 2.0), FULL_RANGE_GEV)
"""Momentum slices (GeV/c, ``[lo, hi)``) of the energy response; the last, the full range, has no spread entry."""
RESPONSE_DRAWS = 4
"""Model maps drawn per Geant4 event for the slice study (:func:`slice_study`) and the repeated track."""
TRACK_GEV = (0.32, 0.73, 0.01)
"""The repeated track (px, py, pz) in GeV/c of the fixed-track resolution study (:func:`track_resolution`)."""
TRACK_EVENTS = 10_000
"""Geant4 events of the fixed-track sample (``track_<particle>.h5``)."""
TRACK_SEED = 3001
"""Seed of the Geant4 run of the fixed-track sample."""
SPEED_EVENTS = 50_000
"""Showers sampled for one speed measurement (:func:`sampling_speed`), in batches of :data:`SPEED_BATCH`."""
SPEED_BATCH = 10_000


def response_samples(samples_dir: str | os.PathLike, particle: str) -> list[Sample]:
    """The Geant4 samples of the slice study: ``test_<particle>.h5`` and ``floor_<particle>.h5``."""
    return [read_sample(Path(samples_dir) / f"{kind}_{particle}.h5") for kind in ("test", "floor")]


def slice_study(model: ShowerModel, geant4: list[Sample], *, draws: int = RESPONSE_DRAWS, seed: int = 11) -> dict:
    """Energy response and E5x5/p spread per momentum slice of :data:`SLICES_GEV`, on the conditions of every
    event of the Geant4 samples ``geant4`` (the test and floor samples), ``draws`` model maps per event.

    Returns ``{"energy_response": [...], "resolution_slices": [...]}``, one entry per slice:

    * ``energy_response``: mean E11x11 of the model over Geant4's (``ratio``), with the error of the mean
      per-event difference (the model's mean over its draws minus Geant4's energy, same conditions) relative to
      the Geant4 mean (``ratio_error``): pairing removes the spread of the momentum within a slice;
    * ``resolution_slices`` (not for the full range): the spread of E5x5 / p, model over Geant4, as standard
      deviation (``std_ratio``) and sigma68 (``sigma68_ratio``), the model's over all its draws.
    """
    conditions = np.concatenate([g.conditions for g in geant4])  # (N, 6)
    maps_ref = np.concatenate([g.maps_gev for g in geant4])  # (N, 11, 11)
    e_ref, e5_ref = e_nxn(maps_ref, 11), e_nxn(maps_ref, 5)  # (N,)
    maps = [model.sample(conditions, seed=seed + k) for k in range(draws)]  # draws x (N, 11, 11)
    e_cand = np.stack([e_nxn(m, 11) for m in maps])  # (draws, N)
    e5_cand = np.stack([e_nxn(m, 5) for m in maps])  # (draws, N)
    p = conditions[:, 0]  # (N,) GeV/c
    response, spread = [], []
    for lo, hi in SLICES_GEV:
        sel = (p >= lo) & (p < hi)
        mean_ref, mean_cand = e_ref[sel].mean(), e_cand[:, sel].mean()
        diff = e_cand[:, sel].mean(axis=0) - e_ref[sel]
        response.append({"slice_gev": [lo, hi], "n": int(sel.sum()), "draws": draws,
                         "geant4_mean_gev": float(mean_ref), "model_mean_gev": float(mean_cand),
                         "ratio": float(mean_cand / mean_ref),
                         "ratio_error": float(diff.std(ddof=1) / np.sqrt(sel.sum()) / mean_ref)})
        if (lo, hi) == FULL_RANGE_GEV:
            continue
        f_ref, f_cand = e5_ref[sel] / p[sel], (e5_cand[:, sel] / p[sel]).ravel()
        spread.append({"slice_gev": [lo, hi], "n": int(sel.sum()), "draws": draws,
                       "std_ratio": float(f_cand.std() / f_ref.std()),
                       "sigma68_ratio": sigma68(f_cand) / sigma68(f_ref)})
    return {"energy_response": response, "resolution_slices": spread}


def track_sample(samples_dir: str | os.PathLike, particle: str) -> Path:
    """The fixed-track Geant4 sample ``track_<particle>.h5`` of ``samples_dir`` (:data:`TRACK_GEV`), made or
    extended to :data:`TRACK_EVENTS` events (extending continues the same run: the events there stay)."""
    track = Path(samples_dir) / f"track_{particle}.h5"
    have = read_attrs(track)["n_events"] if track.exists() else 0
    if have < TRACK_EVENTS:
        make_sample(track, GunSpec(particle, track_gev=TRACK_GEV, seed=TRACK_SEED), TRACK_EVENTS - have,
                    append=have > 0, progress=False)
    return track


def track_resolution(track_ref: Sample, model: ShowerModel, *, draws: int = RESPONSE_DRAWS, seed: int = 2) -> dict:
    """E5x5 spread of the repeated track, model over Geant4: ``draws`` model maps per Geant4 event of
    ``track_ref`` (:func:`track_sample`), under its conditions; the model's spread over all of them. Standard
    deviations and sigma68 in GeV, and their ratios."""
    e5_ref = e_nxn(track_ref.maps_gev, 5)  # (N,)
    e5_cand = np.concatenate([e_nxn(model.sample(track_ref.conditions, seed=seed + k), 5)
                              for k in range(draws)])  # (draws * N,)
    return {"track_gev": list(TRACK_GEV), "n": len(e5_ref), "draws": draws,
            "geant4_e5x5_std_gev": float(e5_ref.std()), "model_e5x5_std_gev": float(e5_cand.std()),
            "std_ratio": float(e5_cand.std() / e5_ref.std()),
            "geant4_e5x5_sigma68_gev": sigma68(e5_ref), "model_e5x5_sigma68_gev": sigma68(e5_cand),
            "sigma68_ratio": sigma68(e5_cand) / sigma68(e5_ref)}


def sampling_speed(onnx_path: str | os.PathLike, conditions: np.ndarray, n: int = SPEED_EVENTS) -> float:
    """Showers per second of an ONNX export under ONNX Runtime: ``n`` showers under ``conditions`` (N, 6),
    repeated as needed, in batches of :data:`SPEED_BATCH`, after a warm-up of 1000."""
    model = OnnxShowerModel(onnx_path)
    c = conditions[np.arange(n) % len(conditions)]  # (n, 6)
    model.sample(c[:1000], seed=0)
    t0 = time.perf_counter()
    model.sample(c, seed=1, batch_size=SPEED_BATCH)
    return n / (time.perf_counter() - t0)


def same_noise_differences(a: np.ndarray, b: np.ndarray) -> dict:
    """How far maps ``b`` (N, 11, 11) are from maps ``a`` sampled with the same noise and conditions (the 8-bit
    export against the float32 one): mean absolute difference of the centre crystal's share of E11x11, largest
    relative difference of E11x11, mean relative difference of E5x5."""
    e_a, e_b = e_nxn(a, 11), e_nxn(b, 11)  # (N,)
    e5_a, e5_b = e_nxn(a, 5), e_nxn(b, 5)  # (N,)
    return {"events": len(a),
            "centre_share_mean_abs_diff": float(np.abs(a[:, 5, 5] / e_a - b[:, 5, 5] / e_b).mean()),
            "e11x11_rel_max_abs_diff": float(np.abs(e_b / e_a - 1).max()),
            "e5x5_rel_mean_abs_diff": float(np.abs(e5_b / e5_a - 1).mean())}
