"""Toy inputs shared by the model tests: conditions, Geant4-like batches and a small fitted GAN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.models import GAN, GANConfig
from caloforge.models.base import Batch


def toy_conditions(n: int, seed: int = 0) -> np.ndarray:
    """(n, 6) conditions in the order and units of CONDITION_NAMES, momenta 0.1-3 GeV/c."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 6)).astype(np.float32) * np.array([0, 0.06, 0.015, 1.3, 0.015, 60], np.float32)
    c[:, 0] = rng.uniform(0.1, 3.0, n)
    return c


def toy_showers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Toy maps (n, 11, 11) in GeV with a hot centre, a sparse halo (70 % of the cells empty) and
    E11x11 = 0.9 p, and their conditions (n, 6)."""
    rng = np.random.default_rng(seed)
    c = toy_conditions(n, seed)
    maps = (rng.exponential(1.0, (n, 11, 11)) * (rng.random((n, 11, 11)) < 0.3)).astype(np.float32)
    maps[:, 5, 5] += 5.0
    maps *= (0.9 * c[:, 0] / maps.sum(axis=(1, 2)))[:, None, None]
    return maps, c


def train_on_toy_showers(model, steps: int, *, n: int = 2000, seed: int = 1, batch: int = 128) -> None:
    """Fit a two-stage model's normalisations to ``n`` :func:`toy_showers` and train it for ``steps`` steps of
    ``batch`` of them (cycling through the first 15 batches), in place."""
    maps, c = toy_showers(n, seed)
    model.fit_normalisation(c)
    model.fit_maps(maps, c)
    optimizer = model.configure_optimizers()[model.name]
    for step in range(steps):
        take = slice(batch * (step % 15), batch * (step % 15 + 1))
        optimizer.zero_grad()
        loss, _ = model.training_step(model.name, Batch(torch.as_tensor(maps[take]), torch.as_tensor(c[take]),
                                                        torch.zeros(len(maps[take]), dtype=torch.long)))
        loss.backward()
        optimizer.step()


def toy_batch(n: int, seed: int = 0, n_particles: int = 1) -> Batch:
    """A batch of n maps (exponential noise, 60 % of p in the centre crystal) with :func:`toy_conditions`."""
    rng = np.random.default_rng(seed)
    c = toy_conditions(n, seed)
    maps = rng.exponential(0.01, (n, 11, 11)).astype(np.float32)
    maps[:, 5, 5] += 0.6 * c[:, 0]
    return Batch(torch.as_tensor(maps), torch.as_tensor(c), torch.as_tensor(rng.integers(0, n_particles, n)))


@pytest.fixture
def gan() -> GAN:
    """The seed's GAN (default configuration), its normalisation fitted on 200 toy conditions."""
    torch.manual_seed(0)
    model = GAN(GANConfig())
    model.fit_normalisation(toy_conditions(200))
    return model
