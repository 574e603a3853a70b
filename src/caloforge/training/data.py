"""Geant4 events for training: read sample files into memory, split off validation events, batch them.

Everything a model trains on is in memory (about 0.5 GB per million events for the maps): the loop
moves the arrays to the training device once and draws batches by index.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from caloforge.data.io import read_attrs, read_sample
from caloforge.detector.conditions import PARTICLES, particle
from caloforge.models.base import Batch
from caloforge.training.config import resolve_sample_path

READ_CHUNK = 100_000


@dataclass
class ShowerData:
    """Geant4 events in memory.

    Attributes:
        maps_gev: (N, 11, 11) float32 deposited energies, GeV.
        conditions: (N, 6) float32 conditions (:data:`caloforge.detector.CONDITION_NAMES`).
        particle: (N,) int64 index of each event's type in ``particles``.
        particles: the particle types, as the model lists them.
    """

    maps_gev: np.ndarray
    conditions: np.ndarray
    particle: np.ndarray
    particles: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.maps_gev)

    def subset(self, index: np.ndarray) -> ShowerData:
        """The events at ``index`` (an integer or boolean array)."""
        return ShowerData(self.maps_gev[index], self.conditions[index], self.particle[index], self.particles)

    def of_particle(self, name: str) -> ShowerData:
        """The events of one particle type."""
        return self.subset(self.particle == self.particles.index(name))

    def to_tensors(self, device: torch.device) -> Batch:
        """All events as one :class:`Batch` of tensors on ``device``."""
        return Batch(
            maps_gev=torch.as_tensor(self.maps_gev, device=device),
            conditions=torch.as_tensor(self.conditions, device=device),
            particle=torch.as_tensor(self.particle, device=device),
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


def iter_batches(data: Batch, *, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
    """Shuffled batches of an epoch; the order depends only on (``seed``, ``epoch``), so a resumed run
    sees the same batches. Incomplete last batches are dropped (unless the data are smaller than one)."""
    n = len(data)
    perm = torch.as_tensor(np.random.default_rng([seed, epoch]).permutation(n), device=data.maps_gev.device)
    n_batches = max(1, n // batch_size)
    for b in range(n_batches):
        idx = perm[b * batch_size : (b + 1) * batch_size]
        yield Batch(data.maps_gev[idx], data.conditions[idx], data.particle[idx])


def n_batches(n_events: int, batch_size: int) -> int:
    """Batches per epoch for :func:`iter_batches`."""
    return max(1, n_events // batch_size)
