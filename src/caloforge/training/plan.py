"""What every training plan is (:class:`TrainingPlan`) and what the plans share: their data, the checkpoints they
start from and the validation of a model on held-out events. The plans themselves: :mod:`caloforge.training.plans`.
"""

from __future__ import annotations

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
    config_to_dict,
    load_model,
    model_config_from_dict,
)
from caloforge.training.config import LoopConfig, TrainConfig, expand_path
from caloforge.training.data import (
    ShowerData,
    limit_per_particle,
    nearest_neighbours,
    read_shower_data,
    split_validation,
)
from caloforge.training.selection import selection_metric

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


__all__ = ["PAIR_SEED_OFFSET", "TrainingPlan", "load_data", "load_start", "model_from_checkpoint", "validate"]
