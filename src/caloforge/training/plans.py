"""Training plans: what the one training loop (:mod:`caloforge.training.loop`) trains, picked by ``training.plan``.

A plan owns the model that the run's checkpoints hold and tells the loop everything that differs between
kinds of training; the loop does the rest (epochs, optimizer steps, schedules, progress bars, checkpoints,
resume, ``metrics.csv``). The plans:

* ``model`` (:class:`ModelPlan`): the model of the ``model:`` section on Geant4 events (its own optimizers,
  steps and losses: :meth:`~caloforge.models.ShowerModel.training_plan`), selected on held-out events by the
  mean separation power of shower shapes (:mod:`caloforge.training.selection`);
* ``energy`` (:class:`~caloforge.training.energy_fit.EnergyPlan`): the deposited-energy model of a trained GAN;
* ``distill``: a student generator of a trained GAN (:class:`~caloforge.training.distill.DistillPlan`), or a
  one-pass student of a trained two-stage model, a flow (``model: {name: student}``;
  :class:`~caloforge.training.distill_shape.ShapeDistillPlan`).

The ``energy`` and ``distill`` plans take their model from a checkpoint; their ``model:`` section names only
the family and particles (:func:`model_from_checkpoint`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import torch

from caloforge.models import (
    ConfigError,
    ModelConfig,
    ShowerModel,
    TrainingStep,
    build_model,
    config_to_dict,
    load_model,
    model_config_from_dict,
)
from caloforge.training.config import LoopConfig, TrainConfig, expand_path
from caloforge.training.data import (
    ShowerData,
    iter_batches,
    limit_per_particle,
    n_batches,
    nearest_neighbours,
    read_shower_data,
    split_validation,
)
from caloforge.training.selection import selection_metric

CALIBRATION_EVENTS = 20_000
"""Training events on which a model calibrates itself after each epoch (:meth:`ShowerModel.calibrate`)."""
PAIR_SEED_OFFSET = 7919
"""Seed offset of the maps generated for the neighbours' conditions in :func:`validate` (independent noise)."""


class TrainingPlan(ABC):
    """What the loop trains: a model, its optimizers, the steps of an epoch, their batches and losses,
    the validation numbers and what the checkpoints record.

    Attributes:
        model: the model the run's checkpoints hold (``best.pt`` and ``last.pt`` load with
            :func:`caloforge.models.load_model`).
        loop: the ``training:`` section of the run.
        name: the value of ``training.plan``.
        selection_key: the validation number ``best.pt`` is selected on (lowest); None: ``best.pt`` is the
            model after the latest epoch.
    """

    name: ClassVar[str] = ""
    selection_key: ClassVar[str | None] = None

    def __init__(self, model: ShowerModel, loop: LoopConfig) -> None:
        self.model = model
        self.loop = loop

    @classmethod
    def resolve(cls, config: TrainConfig) -> TrainConfig:
        """The configuration the run records and compares when it resumes (default: ``config`` itself)."""
        return config

    @classmethod
    @abstractmethod
    def build(
        cls, config: TrainConfig, device: torch.device, state_dict: dict[str, torch.Tensor] | None = None
    ) -> TrainingPlan:
        """The plan of a resolved configuration, its data read and its model on ``device``: with
        ``state_dict`` (a resumed run) those weights, else the plan's initial ones."""

    @abstractmethod
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by step name."""

    @abstractmethod
    def training_plan(self, epoch: int) -> list[TrainingStep]:
        """The steps to run on each batch of ``epoch`` (0-based), in order."""

    @abstractmethod
    def batches(self, epoch: int) -> Iterable[Any]:
        """The batches of ``epoch``, each passed to every step of :meth:`training_plan`."""

    @abstractmethod
    def n_batches(self) -> int:
        """Batches per epoch."""

    @abstractmethod
    def training_step(self, step: str, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise for ``step`` on ``batch`` (the loop does backward and the optimizer step),
        and numbers to log (their means over the epoch go to ``metrics.csv`` as ``train_<step>_<name>``)."""

    @abstractmethod
    def validate(self, epoch: int) -> dict[str, float]:
        """Numbers of the finished ``epoch`` for ``metrics.csv`` (held-out ones named ``val_*``); empty in
        epochs that are not :meth:`selectable`."""

    def phase(self, epoch: int) -> str:
        """The ``phase`` column of ``metrics.csv``."""
        return "train"

    def selectable(self, epoch: int) -> bool:
        """Whether the model after ``epoch`` may become ``best.pt``."""
        return True

    def record(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Entries stored beside the model in its checkpoints, given the ``metrics.csv`` rows so far (the
        last one: the epoch being saved)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The plan's own state for ``last.pt`` (random generators of its batches); see :meth:`load_state_dict`."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` when a run resumes."""


def model_from_checkpoint(config: TrainConfig, model_config: ModelConfig, source: str) -> TrainConfig:
    """``config`` with its ``model:`` section replaced by ``model_config``, the model of the checkpoint that
    ``source`` (a ``training.*`` key) names.

    Raises:
        ConfigError: the section names another family or other particles, or sets a key to a value other
            than its default and the checkpoint's (the model is the checkpoint's: leave the key out).
    """
    given = config.model
    if given.name != model_config.name or list(given.particles) != list(model_config.particles):
        raise ConfigError(
            f"model: {source} is a {model_config.name} model of {', '.join(model_config.particles)}, "
            f"the configuration names a {given.name} model of {', '.join(given.particles)}"
        )
    default = config_to_dict(model_config_from_dict({"name": given.name, "particles": list(given.particles)}))
    mine, theirs = config_to_dict(given), config_to_dict(model_config)
    for key, value in mine.items():
        if value != default.get(key) and value != theirs.get(key):
            raise ConfigError(f"model.{key}: the {config.training.plan} plan takes the model from {source}; "
                              f"leave model.{key} out")
    return config.replace(model=model_config)


def load_start(path: str, key: str, device: torch.device | str = "cpu") -> ShowerModel:
    """The model checkpoint ``path`` that ``training.<key>`` names (``${CALOFORGE_CACHE}`` and ``~`` expanded).

    Raises:
        ConfigError: a missing or unreadable checkpoint.
    """
    try:
        return load_model(expand_path(path), device=device)
    except (OSError, ValueError) as err:
        raise ConfigError(f"training.{key}: {err}") from None


def load_data(config: TrainConfig) -> tuple[ShowerData, ShowerData]:
    """Training and validation events of a configuration (see :class:`~caloforge.training.config.DataConfig`)."""
    d, particles = config.data, config.model.particles
    data = read_shower_data(d.train_files, particles=particles, max_events=d.max_events)
    if d.val_files:
        val = read_shower_data(d.val_files, particles=particles)
        return data, limit_per_particle(val, d.max_val_events)
    return split_validation(data, fraction=d.val_fraction, seed=config.training.seed, max_val_events=d.max_val_events)


def validate(model: ShowerModel, val: ShowerData, loop: LoopConfig) -> dict[str, float]:
    """Validation metrics: the model's own validation numbers and, per particle type, the separation
    powers of maps generated for the held-out conditions, pairs of nearest neighbours among them included
    (:func:`~caloforge.training.selection.selection_metric`; averaged over the types, keys ``val_sp_*``;
    with several types also ``val_sp_mean_<type>``)."""
    out: dict[str, float] = {}
    device = model.device
    sums: dict[str, float] = defaultdict(float)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(val), loop.sample_batch_size):
            part = val.subset(slice(start, start + loop.sample_batch_size))
            for k, v in model.validation_step(part.to_tensors(device).batch()).items():
                sums[k] += v * len(part)
    model.train(was_training)
    out.update({f"val_{k}": v / len(val) for k, v in sums.items()})
    per_particle = []
    for k, name in enumerate(val.particles):
        sel = val.particle == k
        if not sel.any():
            continue
        maps, cond = val.maps_gev[sel], val.conditions[sel]
        fake = model.sample(cond, particle=name, seed=loop.seed + k, batch_size=loop.sample_batch_size)
        neighbours = None
        if len(cond) > 1:
            nb = nearest_neighbours(cond, np.zeros(len(cond), dtype=np.int64))
            fake_nb = model.sample(cond[nb], particle=name, seed=loop.seed + k + PAIR_SEED_OFFSET,
                                   batch_size=loop.sample_batch_size)
            neighbours = (maps[nb], fake_nb, cond[nb, 0])
        per_particle.append(
            selection_metric(maps, fake, cond[:, 0], bins=loop.selection_bins, neighbours=neighbours)
        )
        if len(val.particles) > 1:
            out[f"val_sp_mean_{name}"] = per_particle[-1]["sp_mean"]
    for key in per_particle[0]:
        out[f"val_{key}"] = float(np.mean([m[key] for m in per_particle]))
    return out


def _initial_weights(path: str, model: ShowerModel) -> dict[str, torch.Tensor]:
    """The state dict of the model checkpoint ``path`` (``training.init_from``), checked against ``model``."""
    start = load_start(path, "init_from")
    if type(start) is not type(model) or start.config.particles != model.config.particles:
        raise ConfigError(
            f"training.init_from: {path} is a {start.name} model of {', '.join(start.config.particles)}, "
            f"not a {model.name} model of {', '.join(model.config.particles)}"
        )
    state = start.state_dict()
    mine = model.state_dict()
    shapes = [k for k in mine if k not in state or state[k].shape != mine[k].shape]
    if shapes:
        raise ConfigError(f"training.init_from: {path} has another architecture (differs in {', '.join(shapes[:3])})")
    return state


class ModelPlan(TrainingPlan):
    """The model of the ``model:`` section trained on Geant4 events with its own steps and losses
    (:meth:`~caloforge.models.ShowerModel.training_plan`); ``best.pt`` is the epoch with the lowest
    :attr:`~caloforge.models.ShowerModel.selection_metric` on held-out events (``val_sp_mean``: the mean
    separation power of shower shapes, unless the model names another). A fresh model starts from
    ``training.init_from`` or from its fits to the training events (condition normalisation,
    :meth:`~caloforge.models.ShowerModel.fit_maps`, and a GAN's energy model by
    :func:`~caloforge.training.energy_fit.fit_energy_model` with its defaults)."""

    name = "model"
    selection_key = "val_sp_mean"

    def __init__(self, model: ShowerModel, loop: LoopConfig, train_data: ShowerData, val_data: ShowerData) -> None:
        super().__init__(model, loop)
        self.selection_key = f"val_{model.selection_metric}"
        self.val_data = val_data
        self.calibration_data = train_data.subset(slice(0, CALIBRATION_EVENTS))
        if model.uses_neighbours:
            train_data = train_data.with_neighbours()
        self.train_tensors = train_data.to_tensors(model.device)

    @classmethod
    def build(
        cls, config: TrainConfig, device: torch.device, state_dict: dict[str, torch.Tensor] | None = None
    ) -> ModelPlan:
        t = config.training
        train_data, val_data = load_data(config)
        torch.manual_seed(t.seed)
        model = build_model(config.model)
        if state_dict is not None:
            model.load_state_dict(state_dict)
        elif t.init_from is not None:
            model.load_state_dict(_initial_weights(t.init_from, model))
        else:
            model.fit_normalisation(train_data.conditions)
            model.fit_maps(train_data.maps_gev, train_data.conditions, train_data.particle)
            if getattr(model, "energy", None) is not None:  # a fresh energy model: the energy plan's fit, in memory
                from caloforge.training.energy_fit import fit_energy_model

                fit_energy_model(model, train_data.maps_gev, train_data.conditions, train_data.particle)
        return cls(model.to(device), t, train_data, val_data)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.model.configure_optimizers()

    def training_plan(self, epoch: int) -> list[TrainingStep]:
        return self.model.training_plan(epoch)

    def batches(self, epoch: int) -> Iterable[Any]:
        return iter_batches(self.train_tensors, batch_size=self.loop.batch_size, seed=self.loop.seed, epoch=epoch)

    def n_batches(self) -> int:
        return n_batches(len(self.train_tensors), self.loop.batch_size)

    def training_step(self, step: str, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.training_step(step, batch)

    def validate(self, epoch: int) -> dict[str, float]:
        if not self.selectable(epoch):
            return {}
        cal = self.calibration_data
        self.model.calibrate(cal.maps_gev, cal.conditions, cal.particle, seed=self.loop.seed,
                             batch_size=self.loop.sample_batch_size)
        return validate(self.model, self.val_data, self.loop)

    def phase(self, epoch: int) -> str:
        return "pretrain" if epoch < self.model.n_pretrain_epochs else "train"

    def selectable(self, epoch: int) -> bool:
        return epoch >= self.model.n_pretrain_epochs


def plan_class(name: str, model_name: str = "") -> type[TrainingPlan]:
    """The plan class of ``training.plan`` ``name`` for a ``model:`` section of family ``model_name``: ``distill``
    of a ``student`` model is :class:`~caloforge.training.distill_shape.ShapeDistillPlan` (a two-stage
    teacher), of a ``gan`` :class:`~caloforge.training.distill.DistillPlan`."""
    from caloforge.training.distill import DistillPlan
    from caloforge.training.distill_shape import ShapeDistillPlan
    from caloforge.training.energy_fit import EnergyPlan

    plans: dict[str, type[TrainingPlan]] = {p.name: p for p in (ModelPlan, EnergyPlan, DistillPlan)}
    if name not in plans:
        raise ConfigError(f"training.plan: {name!r} is not one of {', '.join(plans)}")
    if name == ShapeDistillPlan.name and model_name == "student":
        return ShapeDistillPlan
    return plans[name]


def with_training(config: TrainConfig, **changes: Any) -> TrainConfig:
    """``config`` with ``training:`` settings changed (``with_training(cfg, epochs=3)``)."""
    return config.replace(training=dataclasses.replace(config.training, **changes))


__all__ = [
    "ModelPlan",
    "TrainingPlan",
    "load_data",
    "load_start",
    "model_from_checkpoint",
    "plan_class",
    "validate",
    "with_training",
]
