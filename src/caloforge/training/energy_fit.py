"""The ``energy`` plan: fit the deposited-energy model of a trained GAN (``caloforge fit-energy``).

The energy model (:class:`caloforge.models.energy.EnergyModel`, a mixture density network of ``f = E11x11 / p``
given the normalised conditions) is fitted by maximum likelihood to the Geant4 events of ``data.train_files``:
Adam at ``training.learning_rate`` on batches of ``training.batch_size`` events in an order drawn anew each
epoch (a torch generator seeded with ``training.seed``; the last, smaller batch of an epoch is kept), the
rate set per epoch by ``training.scheduler`` (``cosine``: to 0 at ``training.epochs``). Everything else of the
GAN (``training.init_from``) is kept; a GAN without an energy model gets one, its weights drawn after seeding
torch with ``training.seed``, and ``model.energy_model`` set.

``best.pt`` is the GAN with its fitted energy model and an ``energy_fit`` record (checkpoint, samples,
events, epochs, seed, negative log-likelihood per epoch). With ``data.val_files`` the negative log-likelihood
of those events is logged (``val_nll``) and selects ``best.pt``; without, ``best.pt`` is the latest epoch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from caloforge.models import ConfigError, ShowerModel, TrainingStep
from caloforge.models.energy import EnergyModel, deposited_fraction
from caloforge.training.config import LoopConfig, TrainConfig, expand_path, resolve_sample_path
from caloforge.training.data import ShowerData, read_shower_data
from caloforge.training.epochs import train_in_memory
from caloforge.training.plan import TrainingPlan, load_start, model_from_checkpoint

STEP = "energy"
"""The plan's one training step (and optimizer)."""


def _energy_config(model: ShowerModel, source: str) -> Any:
    """The configuration of ``model`` with ``energy_model`` set (ConfigError if it has no energy model option)."""
    if not any(f.name == "energy_model" for f in dataclasses.fields(model.config)):
        raise ConfigError(f"training.init_from: {source} is a {model.name} model; the energy plan fits GANs")
    return dataclasses.replace(model.config, energy_model=True)


def energy_inputs(model: ShowerModel, data: ShowerData) -> tuple[torch.Tensor, torch.Tensor]:
    """The energy model's inputs and targets for ``data``, on the model's device: the network inputs
    (N, 6 [+ n_particles]) of the conditions and the deposited fractions ``f = E11x11 / p`` (N,)."""
    device = model.device
    with torch.no_grad():
        x = model.condition_input(torch.as_tensor(data.conditions, device=device),
                                  torch.as_tensor(data.particle, device=device)).cpu().numpy()
    f = deposited_fraction(data.maps_gev, data.conditions[:, 0])
    return (torch.as_tensor(np.asarray(x, dtype=np.float32), device=device),
            torch.as_tensor(np.asarray(f, dtype=np.float32), device=device))


class EnergyPlan(TrainingPlan):
    """Maximum-likelihood fit of a GAN's energy model (see the module).

    Args:
        model: the GAN, with an energy model (fitted or not: the fit continues from its weights).
        loop: the ``training:`` section (epochs, batch size, seed, learning rate, scheduler).
        train_data: the events fitted.
        val_data: held-out events whose likelihood selects ``best.pt``, or None.
        provenance: what the ``energy_fit`` record says besides the fit (``from``, ``samples``).
    """

    name = "energy"
    selection_key = "val_nll"

    def __init__(
        self,
        model: ShowerModel,
        loop: LoopConfig,
        train_data: ShowerData,
        val_data: ShowerData | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, loop)
        energy = getattr(model, "energy", None)
        if not isinstance(energy, EnergyModel):
            raise ValueError(f"the energy plan fits the energy model of a GAN with one, not of {type(model).__name__}")
        if len(train_data) == 0:
            raise ValueError("the energy model needs at least one training event")
        self.energy = energy
        self.x, self.f = energy_inputs(model, train_data)
        self.val = None if val_data is None else energy_inputs(model, val_data)
        self.provenance = provenance or {}
        self.order = torch.Generator().manual_seed(loop.seed)
        self._nll_sum, self._events = 0.0, 0
        energy.fitted.fill_(True)  # the checkpoints after each epoch hold a fitted model

    @classmethod
    def resolve(cls, config: TrainConfig) -> TrainConfig:
        """The configuration with the model of ``training.init_from`` (``energy_model`` set) as ``model:``."""
        path = config.training.init_from
        if path is None:
            raise ConfigError("training.init_from: the energy plan fits the energy model of a trained GAN: "
                              "give its checkpoint")
        start = load_start(path, "init_from")
        return model_from_checkpoint(config, _energy_config(start, path), "training.init_from")

    @classmethod
    def build(
        cls, config: TrainConfig, device: torch.device, state_dict: dict[str, torch.Tensor] | None = None
    ) -> EnergyPlan:
        t, d = config.training, config.data
        start = load_start(t.init_from, "init_from")
        model = type(start)(_energy_config(start, t.init_from))
        weights = start.state_dict()
        if state_dict is not None:
            weights = state_dict
        elif getattr(start, "energy", None) is None:
            torch.manual_seed(t.seed)
            weights.update({f"energy.{k}": v for k, v in EnergyModel(model.n_condition_inputs).state_dict().items()})
        model.load_state_dict(weights)
        model.to(device)
        train_data = read_shower_data(d.train_files, particles=model.particles, max_events=d.max_events)
        val_data = read_shower_data(d.val_files, particles=model.particles) if d.val_files else None
        provenance = {"from": str(expand_path(t.init_from)),
                      "samples": [str(resolve_sample_path(p)) for p in d.train_files]}
        return cls(model, t, train_data, val_data, provenance)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {STEP: torch.optim.Adam(self.energy.parameters(), lr=self.loop.plan_learning_rate)}

    def training_plan(self, epoch: int) -> list[TrainingStep]:
        return [TrainingStep(STEP)]

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        """Index tensors (B,) into the training events: a fresh permutation per epoch, all of it."""
        order = torch.randperm(len(self.x), generator=self.order).to(self.x.device)
        for start in range(0, len(order), self.loop.batch_size):
            yield order[start : start + self.loop.batch_size]

    def n_batches(self) -> int:
        return math.ceil(len(self.x) / self.loop.batch_size)

    def training_step(self, step: str, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss = self.energy.nll(self.x[batch], self.f[batch])
        value = loss.item()
        self._nll_sum += value * len(batch)
        self._events += len(batch)
        return loss, {"nll": value}

    def validate(self, epoch: int) -> dict[str, float]:
        """``nll``: the epoch's mean negative log-likelihood per training event (as it trained); ``val_nll``:
        that of the held-out events after the epoch (with ``data.val_files``)."""
        out = {"nll": self._nll_sum / max(self._events, 1)}
        self._nll_sum, self._events = 0.0, 0
        if self.val is not None:
            with torch.no_grad():
                out["val_nll"] = float(self.energy.nll(*self.val))
        return out

    def record(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {"energy_fit": {**self.provenance, "events": len(self.x), "epochs": len(history),
                               "seed": self.loop.seed, "nll_per_epoch": [row["nll"] for row in history]}}

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "order" in state:
            self.order.set_state(state["order"])


def energy_fit_config(
    checkpoint: str | os.PathLike,
    samples: Sequence[str | os.PathLike],
    *,
    epochs: int = 20,
    max_events: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> TrainConfig:
    """The ``energy`` plan of ``caloforge fit-energy``: the energy model of the GAN ``checkpoint`` fitted on
    the events of ``samples`` (the first ``max_events`` of each), ``epochs`` epochs of batches of 1024 events,
    Adam at 2e-3 with the cosine decay, on the CPU.

    Raises:
        ConfigError: a bad setting or checkpoint.
    """
    start = load_start(str(checkpoint), "init_from")
    return TrainConfig.from_dict({
        "model": {"name": start.name, "particles": list(start.particles)},
        "data": {"train_files": [str(p) for p in samples], "max_events": max_events},
        "training": {"plan": "energy", "init_from": str(checkpoint), "epochs": epochs, "batch_size": 1024,
                     "learning_rate": 2e-3, "scheduler": "cosine", "seed": seed, "device": "cpu",
                     "progress": progress},
    })


def fit_energy_model(
    model: ShowerModel,
    maps_gev: np.ndarray,
    conditions: np.ndarray,
    particle_index: np.ndarray | None = None,
    *,
    epochs: int = 20,
    batch_size: int = 1024,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
) -> tuple[ShowerModel, list[float]]:
    """Fit a GAN's energy model to training maps (N, 11, 11) in GeV with their conditions (N, 6) and particle
    indices (N,; None: all of the first) by the one loop, without a run folder (in-memory work and tests).

    Returns:
        The GAN with the fitted energy model (``model`` itself, fitted in place, if it has one; else a copy
        with one, drawn after seeding torch with ``seed``) and the negative log-likelihood per epoch.
    """
    if getattr(model, "energy", None) is None:
        fitted = type(model)(_energy_config(model, "the model"))
        weights = model.state_dict()
        torch.manual_seed(seed)
        weights.update({f"energy.{k}": v for k, v in EnergyModel(fitted.n_condition_inputs).state_dict().items()})
        fitted.load_state_dict(weights)
        model = fitted.to(model.device)
    c = np.asarray(conditions, dtype=np.float32)
    index = np.zeros(len(c), dtype=np.int64) if particle_index is None else np.asarray(particle_index, dtype=np.int64)
    data = ShowerData(np.asarray(maps_gev, dtype=np.float32), c, index, tuple(model.particles))
    loop = LoopConfig(plan="energy", epochs=epochs, batch_size=batch_size, seed=seed, learning_rate=learning_rate,
                      scheduler="cosine", progress=progress)
    history = train_in_memory(EnergyPlan(model, loop, data), progress=progress)
    return model, [row["nll"] for row in history]


__all__ = ["EnergyPlan", "energy_fit_config", "energy_inputs", "fit_energy_model"]
