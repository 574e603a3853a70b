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
the family and particles (:func:`caloforge.training.plan.model_from_checkpoint`). What every plan provides:
:class:`caloforge.training.plan.TrainingPlan`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from caloforge.models import ConfigError, ShowerModel, TrainingStep, build_model
from caloforge.training.config import LoopConfig, TrainConfig
from caloforge.training.data import ShowerData, iter_batches, n_batches
from caloforge.training.distill import DistillPlan
from caloforge.training.distill_shape import ShapeDistillPlan
from caloforge.training.energy_fit import EnergyPlan, fit_energy_model
from caloforge.training.plan import TrainingPlan, load_data, load_start, validate

CALIBRATION_EVENTS = 20_000
"""Training events on which a model calibrates itself after each epoch (:meth:`ShowerModel.calibrate`)."""


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
    plans: dict[str, type[TrainingPlan]] = {p.name: p for p in (ModelPlan, EnergyPlan, DistillPlan)}
    if name not in plans:
        raise ConfigError(f"training.plan: {name!r} is not one of {', '.join(plans)}")
    if name == ShapeDistillPlan.name and model_name == "student":
        return ShapeDistillPlan
    return plans[name]


__all__ = ["CALIBRATION_EVENTS", "ModelPlan", "plan_class"]
