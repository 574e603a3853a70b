"""The ``distill`` plan: a trained GAN's generator distilled into a narrower or fully connected one that samples
faster (``caloforge distill``).

Knowledge distillation (Hinton, Vinyals and Dean, arXiv:1503.02531) in its simplest, deterministic form:
the student generator is given the teacher's own inputs -- standard normal noise and the normalised
conditions of Geant4 training events -- and learns to give the teacher's map for them, by the mean squared
difference of the two generator outputs (the generator's output space: with ``output_transform: log`` the
faint outer crystals count as much as the peak). Nothing adversarial is involved, so it converges in minutes
on a CPU, where a GAN of that size takes hours.

Everything but the generator comes from the teacher: the condition normalisation, the energy model, the
critic and the regressor. The generator's mean shower (:class:`caloforge.models.gan.MeanShower`) starts as the
teacher's and is trained along with the new convolutions, so that the two can share the work differently
(in the shipped students its table moved by 11-12 % of its rms). The student is therefore a complete model of
the same kind -- it samples, exports to ONNX and validates like any other, and ``caloforge train`` can
fine-tune it further (``training.init_from``).

Each step draws ``training.batch_size`` training conditions (with replacement) and fresh noise from one torch
generator seeded with ``training.seed``; Adam on the student generator, ``training.scheduler: one-cycle`` to
``training.learning_rate``; ``training.epochs`` x ``training.steps_per_epoch`` steps. How close the student
comes is measured after each epoch on held-out inputs, the last :data:`HELD_OUT_INPUTS` (at most a fifth) of
the training conditions shuffled with the seed, with fixed noise: the mean squared difference of the outputs
(``val_mse``, which selects ``best.pt``) against its value at the start, when the student's layers give
almost nothing and its map is the teacher's mean shower. ``val_reproduced = 1 - val_mse / mse_start`` is the
share of the teacher's departure from its mean shower that the student reproduces, event by event.
``best.pt`` records the distillation under ``distilled``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from caloforge.models import ConfigError, TrainingStep
from caloforge.models.gan import GAN, POLYNOMIAL_MEAN_SHOWER_INIT_SCALE, GANConfig, keras_init_
from caloforge.training.config import LoopConfig, TrainConfig, expand_path, resolve_sample_path
from caloforge.training.data import read_shower_data
from caloforge.training.plan import TrainingPlan, load_start, model_from_checkpoint

HELD_OUT_INPUTS = 8192
"""(noise, condition) pairs, not trained on, that the student is measured on."""
MIN_EVENTS = 10
"""Fewest events of conditions a distillation accepts."""
MIN_STEPS = 10
"""Fewest optimiser steps a distillation accepts (the learning-rate schedule needs a few)."""
STEP = "generator"
"""The plan's one training step (and optimizer): the student generator."""


def student_config(teacher: GANConfig, channels: Sequence[int], hidden: Sequence[int] = ()) -> GANConfig:
    """The teacher's configuration with the student's generator: convolution ``channels``
    (:attr:`~caloforge.models.GANConfig.generator_channels`) or, with ``hidden`` widths, fully connected.

    Raises:
        ValueError: invalid ``channels`` or ``hidden``.
    """
    return dataclasses.replace(teacher, generator_channels=tuple(int(c) for c in channels),
                               generator_hidden=tuple(int(h) for h in hidden))  # checks them


def student_of(teacher: GAN, channels: Sequence[int], *, hidden: Sequence[int] = (), seed: int = 0) -> GAN:
    """A GAN like ``teacher`` whose generator has the convolution ``channels``
    (:attr:`caloforge.models.gan.GANConfig.generator_channels`), or, with ``hidden`` widths, is fully connected
    (:class:`caloforge.models.gan.MLPGenerator`), its layers freshly initialised, with everything else --
    normalisation, mean shower, energy model, critic, regressor -- copied from the teacher.

    Raises:
        ValueError: ``teacher`` is not a :class:`caloforge.models.GAN`, or invalid ``channels`` or ``hidden``.
    """
    if not isinstance(teacher, GAN):
        raise ValueError(f"distillation is for GAN models, not {type(teacher).__name__}")
    student = GAN(student_config(teacher.config, channels, hidden)).to(teacher.device)
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("generator.") or ".mean_shower." in k}
    student.load_state_dict(state, strict=False)  # leaves out only the generator's own layers
    torch.manual_seed(seed)
    keras_init_(student.generator)
    if student.generator.mean_shower is not None:
        with torch.no_grad():  # start at the mean shower, as the teacher's training did
            student.generator.last_layer.weight.mul_(POLYNOMIAL_MEAN_SHOWER_INIT_SCALE)
    return student


def output_mse(student: GAN, teacher: GAN, noise: torch.Tensor, x: torch.Tensor, chunk: int = 4096) -> float:
    """Mean squared difference of the two generators' outputs for the same noise (N, noise_dim) and network
    inputs (N, 6 [+ n_particles]), in chunks (generator output space)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            z, c = noise[i : i + chunk], x[i : i + chunk]
            diff = student.generator(z, c) - teacher.generator(z, c)
            total, count = total + float(diff.pow(2).sum()), count + diff.numel()
    return total / count


def _check_conditions(c: np.ndarray, index: np.ndarray, particles: Sequence[str]) -> None:
    if c.ndim != 2 or c.shape[1] != 6:
        raise ValueError(f"conditions must be an (N, 6) array, got shape {c.shape}")
    if len(c) < MIN_EVENTS:
        raise ValueError(f"distillation needs at least {MIN_EVENTS} events of conditions, got {len(c)}")
    if not np.isfinite(c).all():
        raise ValueError("conditions contain NaN or infinite values")
    if index.shape != (len(c),) or index.min() < 0 or index.max() >= len(particles):
        raise ValueError(f"particle indices must be (N,) indices into {list(particles)}")


def distill_config(
    teacher: str | os.PathLike,
    samples: Sequence[str | os.PathLike],
    *,
    channels: Sequence[int] = (8, 8, 8),
    hidden: Sequence[int] = (),
    steps: int = 8000,
    batch_size: int = 512,
    learning_rate: float = 2e-3,
    max_events: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> TrainConfig:
    """The ``distill`` plan of ``caloforge distill``: the GAN ``teacher`` distilled into a student generator of
    ``channels`` (or fully connected, of ``hidden`` widths) on the conditions of ``samples`` (the first
    ``max_events`` of each), one epoch of ``steps`` steps of ``batch_size`` pairs, one-cycle to ``learning_rate``.

    Raises:
        ValueError: fewer than :data:`MIN_STEPS` steps; ConfigError: another bad setting or checkpoint.
    """
    if steps < MIN_STEPS:
        raise ValueError(f"distillation needs at least {MIN_STEPS} steps, got {steps}")
    start = load_start(str(teacher), "teacher")
    return TrainConfig.from_dict({
        "model": {"name": start.name, "particles": list(start.particles)},
        "data": {"train_files": [str(p) for p in samples], "max_events": max_events},
        "training": {"plan": "distill", "teacher": str(teacher), "student_channels": list(channels),
                     "student_hidden": list(hidden), "epochs": 1, "steps_per_epoch": steps, "batch_size": batch_size,
                     "learning_rate": learning_rate, "scheduler": "one-cycle", "seed": seed, "device": device,
                     "progress": progress},
    })


class DistillPlan(TrainingPlan):
    """A student generator trained to give the teacher's maps for the same noise and conditions (see the module).

    Args:
        teacher: the trained GAN (left unchanged; put in eval mode).
        loop: the ``training:`` section (student shape, steps, batch size, learning rate, seed).
        conditions: (N, 6) raw conditions of Geant4 training events (GeV/c, rad, cm), in the order to use:
            the last :data:`HELD_OUT_INPUTS` (at most a fifth) are held out.
        particle_index: (N,) index into ``teacher.particles`` per event.
        provenance: what the ``distilled`` record says besides the distillation (``from``, ``samples``).
        state_dict: the student's weights of a resumed run (None: freshly initialised).

    Raises:
        ValueError: bad shapes or settings, or fewer than :data:`MIN_EVENTS` events or :data:`MIN_STEPS` steps.
    """

    name = "distill"
    selection_key = "val_mse"

    def __init__(
        self,
        teacher: GAN,
        loop: LoopConfig,
        conditions: np.ndarray,
        particle_index: np.ndarray,
        provenance: dict[str, Any] | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        c = np.asarray(conditions, dtype=np.float32)
        index = np.asarray(particle_index, dtype=np.int64)
        _check_conditions(c, index, teacher.particles)
        self.teacher = teacher.eval()
        student = student_of(teacher, loop.student_channels, hidden=loop.student_hidden, seed=loop.seed)
        super().__init__(student, loop)
        device = teacher.device
        with torch.no_grad():
            x_all = teacher.condition_input(torch.as_tensor(c, device=device), torch.as_tensor(index, device=device))
        n_held = min(HELD_OUT_INPUTS, len(c) // 5)
        self.x_train, self.x_held = x_all[: len(c) - n_held], x_all[len(c) - n_held :]
        self.steps_per_epoch = loop.steps_per_epoch or max(1, len(self.x_train) // loop.batch_size)
        if loop.epochs * self.steps_per_epoch < MIN_STEPS:
            raise ValueError(f"distillation needs at least {MIN_STEPS} steps, got {loop.epochs * self.steps_per_epoch}")
        self.draws = torch.Generator(device="cpu").manual_seed(loop.seed)
        self.noise_dim = teacher.config.noise_dim
        self.noise_held = torch.randn(n_held, self.noise_dim, generator=self.draws).to(device)
        self.mse_start = output_mse(student, teacher, self.noise_held, self.x_held)
        if state_dict is not None:
            student.load_state_dict(state_dict)
        self.events = len(c)
        self.provenance = provenance or {}

    @classmethod
    def resolve(cls, config: TrainConfig) -> TrainConfig:
        """The configuration with the student's model (the teacher's with the student generator) as ``model:``."""
        t = config.training
        if t.teacher is None:
            raise ConfigError("training.teacher: the distill plan needs the trained GAN to distil")
        teacher = load_start(t.teacher, "teacher")
        if not isinstance(teacher, GAN):
            raise ConfigError(f"training.teacher: {t.teacher} is a {teacher.name} model; distillation is for GANs")
        if t.pair_pool is not None:
            raise ConfigError("training.pair_pool: a GAN's pairs are cheap and drawn fresh at every step; leave it out")
        try:
            model = student_config(teacher.config, t.student_channels, t.student_hidden)
        except ValueError as err:
            raise ConfigError(f"training.student_channels / student_hidden: {err}") from None
        return model_from_checkpoint(config, model, "training.teacher")

    @classmethod
    def build(
        cls, config: TrainConfig, device: torch.device, state_dict: dict[str, torch.Tensor] | None = None
    ) -> DistillPlan:
        t, d = config.training, config.data
        teacher = load_start(t.teacher, "teacher", device)
        data = read_shower_data(d.train_files, particles=teacher.particles, max_events=d.max_events)
        order = np.random.default_rng(t.seed).permutation(len(data))  # held-out rows from all of the samples
        provenance = {"from": str(expand_path(t.teacher).resolve()),
                      "samples": [str(resolve_sample_path(p)) for p in d.train_files]}
        return cls(teacher, t, data.conditions[order], data.particle[order], provenance, state_dict)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {STEP: torch.optim.Adam(self.model.generator.parameters(), lr=self.loop.plan_learning_rate)}

    def training_plan(self, epoch: int) -> list[TrainingStep]:
        return [TrainingStep(STEP)]

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(noise (B, noise_dim), network input (B, 6 [+ n_particles])) pairs, drawn step by step."""
        device = self.x_train.device
        for _ in range(self.steps_per_epoch):
            rows = torch.randint(0, len(self.x_train), (self.loop.batch_size,), generator=self.draws).to(device)
            z = torch.randn(self.loop.batch_size, self.noise_dim, generator=self.draws).to(device)
            yield z, self.x_train[rows]

    def n_batches(self) -> int:
        return self.steps_per_epoch

    def training_step(
        self, step: str, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        z, x = batch
        with torch.no_grad():
            target = self.teacher.generator(z, x)  # (B, 1, 11, 11)
        loss = torch.mean((self.model.generator(z, x) - target) ** 2)
        return loss, {"mse": loss.item()}

    def validate(self, epoch: int) -> dict[str, float]:
        """``val_mse`` on the held-out inputs and ``val_reproduced`` (``1 - val_mse / mse_start``)."""
        self.model.eval()
        mse = output_mse(self.model, self.teacher, self.noise_held, self.x_held)
        self.model.train()
        return {"val_mse": mse, "val_reproduced": 1.0 - mse / self.mse_start if self.mse_start > 0 else math.nan}

    def record(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        row = history[-1]
        return {"distilled": {
            **self.provenance,
            "events": self.events,
            "mse_start": self.mse_start,
            "mse": row["val_mse"],
            "reproduced": row["val_reproduced"],
            "steps": len(history) * self.steps_per_epoch,
            "batch_size": self.loop.batch_size,
            "learning_rate": self.loop.plan_learning_rate,
            "seed": self.loop.seed,
            "teacher_parameters": self.teacher.parameter_counts()["generator"],
            "student_parameters": self.model.parameter_counts()["generator"],
            "history": [[r["epoch"] * self.steps_per_epoch, r[f"train_{STEP}_mse"]] for r in history],
        }}

    def state_dict(self) -> dict[str, Any]:
        return {"draws": self.draws.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "draws" in state:
            self.draws.set_state(state["draws"])


__all__ = ["DistillPlan", "HELD_OUT_INPUTS", "distill_config", "output_mse", "student_config", "student_of"]
