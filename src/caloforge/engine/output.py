"""Write fast-simulation results: ROOT (uproot, jagged branches) or HDF5 (h5py, offsets).

ROOT: one TTree ``events`` (and a TObjString ``caloforge_version``), one entry per event, with the
branches ``event``; ``nhit`` and the jagged ``hit_gid``, ``hit_part``, ``hit_theta``, ``hit_phi``,
``hit_energy_gev``; ``nparticle`` and the jagged ``particle_pdg``, ``particle_px``, ``particle_py``,
``particle_pz`` (GeV/c), ``particle_vx``, ``particle_vy``, ``particle_vz`` (cm), ``particle_status``,
``particle_theta``, ``particle_phi``, ``particle_gid`` (centre crystal, -1 if not simulated) and the six
conditions ``particle_<name>``.

HDF5: datasets ``event_number`` (E,), ``hits/offsets`` (E+1,) with ``hits/{gid,part,theta,phi,energy_gev}``,
and ``particles/{event,pdg,momentum_gev,vertex_cm,status,theta,phi,gid,conditions}``.

Both are written to ``<path>.partial`` first and renamed when complete; an existing output is an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import caloforge
from caloforge.detector.conditions import CONDITION_NAMES
from caloforge.detector.geometry import BARREL_GID_OFFSET, BARREL_PART, N_PHI
from caloforge.engine.fastsim import STATUS_NAMES, SimulationResult


class OutputExistsError(ValueError):
    """The output file exists already."""


def _particle_columns(result: SimulationResult) -> dict[str, np.ndarray]:
    p = result.particles
    sim = result.particle_theta >= 0
    gid = np.where(sim, BARREL_GID_OFFSET + N_PHI * result.particle_theta + result.particle_phi, -1)
    columns = {
        "pdg": p.pdg.astype(np.int32),
        "px": p.momentum_gev[:, 0], "py": p.momentum_gev[:, 1], "pz": p.momentum_gev[:, 2],
        "vx": p.vertex_cm[:, 0], "vy": p.vertex_cm[:, 1], "vz": p.vertex_cm[:, 2],
        "status": result.particle_status.astype(np.int8),
        "theta": result.particle_theta.astype(np.int16),
        "phi": result.particle_phi.astype(np.int16),
        "gid": gid.astype(np.int32),
    }
    for k, name in enumerate(CONDITION_NAMES):
        columns[name] = result.particle_conditions[:, k]
    return columns


def _write_root(result: SimulationResult, path: Path) -> None:
    import awkward as ak
    import uproot

    hit_counts = np.diff(result.hit_offsets)
    order = np.argsort(np.searchsorted(result.event_number, result.particles.event), kind="stable")
    particle_counts = np.bincount(
        np.searchsorted(result.event_number, result.particles.event), minlength=result.n_events
    )
    hits = {
        "gid": result.hit_gid.astype(np.int32),
        "part": np.full(len(result.hit_theta), BARREL_PART, dtype=np.int16),
        "theta": result.hit_theta,
        "phi": result.hit_phi,
        "energy_gev": result.hit_energy_gev,
    }
    particles = {k: v[order] for k, v in _particle_columns(result).items()}
    data = {
        "event": result.event_number.astype(np.int64),
        "hit": ak.zip({k: ak.unflatten(v, hit_counts) for k, v in hits.items()}),
        "particle": ak.zip({k: ak.unflatten(v, particle_counts) for k, v in particles.items()}),
    }
    with uproot.recreate(path) as f:
        tree = f.mktree("events", {k: (v.dtype if isinstance(v, np.ndarray) else v.type) for k, v in data.items()})
        tree.extend(data)
        f["caloforge_version"] = caloforge.__version__  # a TObjString


def _write_hdf5(result: SimulationResult, path: Path) -> None:
    import h5py

    opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    with h5py.File(path, "w") as f:
        f.attrs["caloforge_version"] = caloforge.__version__
        f.attrs["status_names_json"] = json.dumps({int(k): v for k, v in STATUS_NAMES.items()})
        f.attrs["condition_names_json"] = json.dumps(CONDITION_NAMES)
        f.create_dataset("event_number", data=result.event_number)
        hits = f.create_group("hits")
        hits.create_dataset("offsets", data=result.hit_offsets)
        for name, data in (
            ("gid", result.hit_gid.astype(np.int32)),
            ("part", np.full(len(result.hit_theta), BARREL_PART, dtype=np.int16)),
            ("theta", result.hit_theta),
            ("phi", result.hit_phi),
            ("energy_gev", result.hit_energy_gev),
        ):
            hits.create_dataset(name, data=data, **opts)
        parts = f.create_group("particles")
        p = result.particles
        cols = _particle_columns(result)
        parts.create_dataset("event", data=p.event)
        parts.create_dataset("pdg", data=cols["pdg"])
        parts.create_dataset("momentum_gev", data=p.momentum_gev)
        parts.create_dataset("vertex_cm", data=p.vertex_cm)
        for name in ("status", "theta", "phi", "gid"):
            parts.create_dataset(name, data=cols[name])
        parts.create_dataset("conditions", data=result.particle_conditions)


def write_result(result: SimulationResult, path: str | os.PathLike) -> Path:
    """Write to ``.root`` or ``.h5``/``.hdf5`` (by suffix), atomically; refuse to overwrite."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".root", ".h5", ".hdf5"):
        raise ValueError(f"{path}: output must end in .root, .h5 or .hdf5")
    if path.exists():
        raise OutputExistsError(f"{path} exists: choose another name or remove it first")
    if not path.parent.exists():
        raise ValueError(f"{path.parent}: no such directory")
    tmp = path.with_name(path.name + ".partial")
    try:
        (_write_root if suffix == ".root" else _write_hdf5)(result, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
