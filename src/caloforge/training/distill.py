"""Distil a trained GAN's generator into a narrower or fully connected one that samples faster (``caloforge distill``).

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

How close the student comes is measured on held-out inputs (:class:`DistillResult`): the mean squared
difference of the outputs against its value at the start, when the student's convolutions give almost
nothing and its map is the teacher's mean shower. ``1 - mse / mse_start`` is the share of the teacher's
departure from its mean shower that the student reproduces, event by event.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from caloforge.models.gan import GAN, POLYNOMIAL_MEAN_SHOWER_INIT_SCALE, keras_init_

HELD_OUT_INPUTS = 8192
"""(noise, condition) pairs, not trained on, that :func:`distil_generator` measures the student on."""
MIN_EVENTS = 10
"""Fewest events of conditions :func:`distil_generator` accepts."""
MIN_STEPS = 10
"""Fewest optimiser steps :func:`distil_generator` accepts (the learning-rate schedule needs a few)."""


@dataclass(frozen=True)
class DistillResult:
    """What :func:`distil_generator` measured.

    Attributes:
        mse_start: mean squared difference of student and teacher generator outputs on the held-out inputs
            before training (generator output space, e.g. the log transform's units).
        mse: the same after training.
        reproduced: ``1 - mse / mse_start``: the share of the teacher's departure from its mean shower that
            the student reproduces (1: all of it).
        steps, batch_size, learning_rate, seed: the settings.
        teacher_parameters, student_parameters: trainable generator parameters.
        history: (step, mean training loss over the last ``log_every`` steps) pairs.
    """

    mse_start: float
    mse: float
    reproduced: float
    steps: int
    batch_size: int
    learning_rate: float
    seed: int
    teacher_parameters: int
    student_parameters: int
    history: list[tuple[int, float]]

    def to_dict(self) -> dict:
        """Plain values for a checkpoint or JSON (the history as lists)."""
        out = dataclasses.asdict(self)
        out["history"] = [list(h) for h in self.history]
        return out


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
    config = dataclasses.replace(teacher.config, generator_channels=tuple(int(c) for c in channels),
                                 generator_hidden=tuple(int(h) for h in hidden))  # checks them
    student = GAN(config).to(teacher.device)
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("generator.") or ".mean_shower." in k}
    student.load_state_dict(state, strict=False)  # leaves out only the generator's own layers
    torch.manual_seed(seed)
    keras_init_(student.generator)
    if student.generator.mean_shower is not None:
        with torch.no_grad():  # start at the mean shower, as the teacher's training did
            student.generator.last_layer.weight.mul_(POLYNOMIAL_MEAN_SHOWER_INIT_SCALE)
    return student


def _mse(student: GAN, teacher: GAN, noise: torch.Tensor, x: torch.Tensor, chunk: int = 4096) -> float:
    """Mean squared difference of the two generators' outputs for the same noise and inputs, in chunks."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            z, c = noise[i : i + chunk], x[i : i + chunk]
            diff = student.generator(z, c) - teacher.generator(z, c)
            total, count = total + float(diff.pow(2).sum()), count + diff.numel()
    return total / count


def distil_generator(
    teacher: GAN,
    conditions: np.ndarray,
    particle_index: np.ndarray | None = None,
    *,
    channels: Sequence[int] = (8, 8, 8),
    hidden: Sequence[int] = (),
    steps: int = 8000,
    batch_size: int = 512,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
    log_every: int = 100,
) -> tuple[GAN, DistillResult]:
    """Train a student generator of ``channels`` to reproduce ``teacher``'s maps (see the module).

    Args:
        teacher: the trained GAN (left unchanged).
        conditions: (N, 6) raw conditions of Geant4 training events (GeV/c, rad, cm); each step draws
            ``batch_size`` of them with fresh noise. The last :data:`HELD_OUT_INPUTS` (at most a fifth)
            are held out for the result.
        particle_index: (N,) index into ``teacher.particles`` per event; None: all the first type.
        channels: the student's generator channels (4x4 convolution, then each 3x3 one).
        hidden: hidden widths of a fully connected student generator instead (empty: convolutional).
        steps: optimiser steps, at least :data:`MIN_STEPS` (Adam; a one-cycle learning-rate schedule rising
            to ``learning_rate`` over the first 5 % of the steps, then falling as a cosine).
        batch_size: (noise, condition) pairs per step.
        seed: seed of the student's initial weights, the draws and the held-out noise.
        progress: called as ``progress(step, loss)`` every ``log_every`` steps.

    Returns:
        The student (a :class:`caloforge.models.GAN` in eval mode) and its :class:`DistillResult`.

    Raises:
        ValueError: bad shapes or settings, or fewer than :data:`MIN_EVENTS` events.
    """
    c = np.asarray(conditions, dtype=np.float32)
    if c.ndim != 2 or c.shape[1] != 6:
        raise ValueError(f"conditions must be an (N, 6) array, got shape {c.shape}")
    if len(c) < MIN_EVENTS:
        raise ValueError(f"distillation needs at least {MIN_EVENTS} events of conditions, got {len(c)}")
    if not np.isfinite(c).all():
        raise ValueError("conditions contain NaN or infinite values")
    if steps < MIN_STEPS:
        raise ValueError(f"distillation needs at least {MIN_STEPS} steps, got {steps}")
    if batch_size < 1 or not learning_rate > 0:
        raise ValueError(f"batch_size and learning_rate must be positive, got {batch_size} and {learning_rate}")
    index = np.zeros(len(c), dtype=np.int64) if particle_index is None else np.asarray(particle_index, dtype=np.int64)
    if index.shape != (len(c),) or index.min() < 0 or index.max() >= len(teacher.particles):
        raise ValueError(f"particle_index must be (N,) indices into {list(teacher.particles)}")

    teacher = copy.deepcopy(teacher).eval()
    student = student_of(teacher, channels, hidden=hidden, seed=seed)
    device = teacher.device
    with torch.no_grad():
        x_all = teacher.condition_input(torch.as_tensor(c, device=device), torch.as_tensor(index, device=device))
    n_held = min(HELD_OUT_INPUTS, len(c) // 5)
    x_train, x_held = x_all[: len(c) - n_held], x_all[len(c) - n_held :]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise_dim = teacher.config.noise_dim
    noise_held = torch.randn(n_held, noise_dim, generator=gen).to(device)
    mse_start = _mse(student, teacher, noise_held, x_held)

    student.generator.train()
    optimiser = torch.optim.Adam(student.generator.parameters(), lr=learning_rate)
    warm_up = 0.05 if steps >= 50 else 0.3  # the rise must span a few steps
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate, total_steps=steps, pct_start=warm_up)
    history: list[tuple[int, float]] = []
    running = 0.0
    for step in range(1, steps + 1):
        rows = torch.randint(0, len(x_train), (batch_size,), generator=gen).to(device)
        z = torch.randn(batch_size, noise_dim, generator=gen).to(device)
        x = x_train[rows]
        with torch.no_grad():
            target = teacher.generator(z, x)
        loss = torch.mean((student.generator(z, x) - target) ** 2)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        running += float(loss.detach())
        if step % log_every == 0 or step == steps:
            n = step - (history[-1][0] if history else 0)
            history.append((step, running / n))
            running = 0.0
            if progress is not None:
                progress(step, history[-1][1])
    student.eval()
    mse = _mse(student, teacher, noise_held, x_held)
    result = DistillResult(
        mse_start=mse_start,
        mse=mse,
        reproduced=1.0 - mse / mse_start if mse_start > 0 else math.nan,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        teacher_parameters=teacher.parameter_counts()["generator"],
        student_parameters=student.parameter_counts()["generator"],
        history=history,
    )
    return student, result
