"""Geant4 events for training: read sample files into memory, split off validation events, batch them.

Everything a model trains on is in memory (about 0.5 GB per million events for the maps): the loop
moves the arrays to the training device once and draws batches by index.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from caloforge.data.io import read_attrs, read_sample
from caloforge.detector.conditions import PARTICLES, particle
from caloforge.models.base import Batch
from caloforge.training.config import resolve_sample_path

READ_CHUNK = 100_000


@dataclass
class TrainingTensors:
    """All training events as tensors on the training device (:meth:`ShowerData.to_tensors`): maps (N, 11,
    11) GeV, conditions (N, 6), particle indices (N,) and the neighbour indices (N,) or None."""

    maps_gev: torch.Tensor
    conditions: torch.Tensor
    particle: torch.Tensor
    neighbour_index: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.maps_gev.shape[0])

    def batch(self) -> Batch:
        """All events as one :class:`Batch` (without neighbours)."""
        return Batch(self.maps_gev, self.conditions, self.particle)


@dataclass
class ShowerData:
    """Geant4 events in memory.

    Attributes:
        maps_gev: (N, 11, 11) float32 deposited energies, GeV.
        conditions: (N, 6) float32 conditions (:data:`caloforge.detector.CONDITION_NAMES`).
        particle: (N,) int64 index of each event's type in ``particles``.
        particles: the particle types, as the model lists them.
        neighbour: (N,) int64 index of each event's nearest neighbour (:func:`nearest_neighbours`), or
            None (:meth:`with_neighbours` adds it; a subset drops it).
    """

    maps_gev: np.ndarray
    conditions: np.ndarray
    particle: np.ndarray
    particles: tuple[str, ...]
    neighbour: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.maps_gev)

    def subset(self, index: np.ndarray) -> ShowerData:
        """The events at ``index`` (an integer or boolean array), without neighbours."""
        return ShowerData(self.maps_gev[index], self.conditions[index], self.particle[index], self.particles)

    def with_neighbours(self) -> ShowerData:
        """The same events with each one's nearest neighbour in condition space (:func:`nearest_neighbours`)."""
        return dataclasses.replace(self, neighbour=nearest_neighbours(self.conditions, self.particle))

    def of_particle(self, name: str) -> ShowerData:
        """The events of one particle type."""
        return self.subset(self.particle == self.particles.index(name))

    def to_tensors(self, device: torch.device) -> TrainingTensors:
        """All events as tensors on ``device``."""
        return TrainingTensors(
            maps_gev=torch.as_tensor(self.maps_gev, device=device),
            conditions=torch.as_tensor(self.conditions, device=device),
            particle=torch.as_tensor(self.particle, device=device),
            neighbour_index=None if self.neighbour is None else torch.as_tensor(self.neighbour, device=device),
        )


def concatenate(parts: Sequence[ShowerData]) -> ShowerData:
    """Events of several :class:`ShowerData` with the same particle list, in order."""
    return ShowerData(
        np.concatenate([p.maps_gev for p in parts]),
        np.concatenate([p.conditions for p in parts]),
        np.concatenate([p.particle for p in parts]),
        parts[0].particles,
    )


def read_shower_data(
    paths: Sequence[str | os.PathLike],
    *,
    particles: Sequence[str],
    max_events: int | None = None,
) -> ShowerData:
    """Read sample files (paths as in configurations, see :func:`resolve_sample_path`).

    Events of particle types not in ``particles`` are skipped, as are events with non-finite
    conditions or a non-positive momentum.

    Raises:
        SampleFileError: a missing or invalid file.
        ValueError: no event of the requested particle types in a file.
    """
    particles = tuple(particle(p).name for p in particles)
    pdg_to_index = {PARTICLES[name].pdg: k for k, name in enumerate(particles)}
    parts = []
    for raw in paths:
        path = resolve_sample_path(raw)
        n = read_attrs(path)["n_events"]
        if max_events is not None:
            n = min(n, max_events)
        kept = 0
        for start in range(0, n, READ_CHUNK):
            s = read_sample(path, start, min(start + READ_CHUNK, n))
            pidx = np.full(len(s), -1, dtype=np.int64)
            for pdg, k in pdg_to_index.items():
                pidx[s.pdg == pdg] = k
            ok = (pidx >= 0) & np.isfinite(s.conditions).all(axis=1) & (s.conditions[:, 0] > 0)
            ok &= np.isfinite(s.maps_gev).all(axis=(1, 2))
            parts.append(
                ShowerData(
                    s.maps_gev[ok].astype(np.float32),
                    s.conditions[ok].astype(np.float32),
                    pidx[ok],
                    particles,
                )
            )
            kept += int(ok.sum())
        if kept == 0:
            raise ValueError(f"{path}: no usable events of {', '.join(particles)}")
    return concatenate(parts)


def split_validation(
    data: ShowerData, *, fraction: float, seed: int, max_val_events: int | None = None
) -> tuple[ShowerData, ShowerData]:
    """A fixed random split (for a given ``seed``) into training and held-out events.

    ``fraction`` of the events is held out; of those at most ``max_val_events`` per particle type are
    kept for validation (the others are not used for training either, so the split does not depend on
    ``max_val_events``).
    """
    rng = np.random.default_rng([seed, 0x5EED])
    perm = rng.permutation(len(data))
    n_val = max(1, int(round(fraction * len(data))))
    if n_val >= len(data):
        raise ValueError(f"cannot hold out {fraction:.0%} of {len(data)} events and still train")
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    val = data.subset(val_idx)
    if max_val_events is not None:
        val = limit_per_particle(val, max_val_events)
    return data.subset(train_idx), val


def limit_per_particle(data: ShowerData, max_events: int) -> ShowerData:
    """The first ``max_events`` events of each particle type."""
    keep = np.zeros(len(data), dtype=bool)
    for k in range(len(data.particles)):
        keep[np.flatnonzero(data.particle == k)[:max_events]] = True
    return data.subset(keep)


def nearest_neighbours(conditions: np.ndarray, particle: np.ndarray) -> np.ndarray:
    """For each event, the index (N,) of the nearest other event of the same particle type in the space
    of the conditions (N, 6), each standardised over that type (a k-d tree; about 1 s per 200k events).

    Two neighbours differ by fluctuations of the shower as much as by their conditions (200k Geant4
    electrons: median distance 0.12 standard deviations), so pairs of them carry the spread of the
    showers at (nearly) fixed conditions, which single events cannot show. An event alone of its type
    is its own neighbour."""
    out = np.arange(len(conditions), dtype=np.int64)
    for k in np.unique(particle):
        index = np.flatnonzero(particle == k)
        if len(index) < 2:
            continue
        c = np.asarray(conditions[index], dtype=np.float64)
        c = (c - c.mean(axis=0)) / np.where(c.std(axis=0) > 0, c.std(axis=0), 1.0)
        _, nearest = cKDTree(c).query(c, k=2)  # (n, 2): itself (or a duplicate) and the next one
        first_other = np.where(nearest[:, 0] == np.arange(len(index)), nearest[:, 1], nearest[:, 0])
        out[index] = index[first_other]
    return out


def iter_batches(data: TrainingTensors, *, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
    """Shuffled batches of an epoch; the order depends only on (``seed``, ``epoch``), so a resumed run
    sees the same batches. Incomplete last batches are dropped (unless the data are smaller than one).
    With neighbours (:meth:`ShowerData.with_neighbours`) the batches carry theirs."""
    n = len(data)
    perm = torch.as_tensor(np.random.default_rng([seed, epoch]).permutation(n), device=data.maps_gev.device)
    n_batches = max(1, n // batch_size)
    for b in range(n_batches):
        idx = perm[b * batch_size : (b + 1) * batch_size]
        batch = Batch(data.maps_gev[idx], data.conditions[idx], data.particle[idx])
        if data.neighbour_index is not None:
            other = data.neighbour_index[idx]
            batch.neighbour_maps_gev, batch.neighbour_conditions = data.maps_gev[other], data.conditions[other]
        yield batch


def n_batches(n_events: int, batch_size: int) -> int:
    """Batches per epoch for :func:`iter_batches`."""
    return max(1, n_events // batch_size)
