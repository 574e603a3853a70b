"""The ``distill`` plan for a two-stage teacher (a flow, the diffusion model): a one-pass student of its shape stage.

The student (:class:`caloforge.models.student.StudentModel`) is given the teacher's own inputs -- the shape
noise and the context (conditions and the energy stage's draw) under the conditions of Geant4 training events
-- and learns the teacher's shape for them: whether each crystal is hit, and its shape variable where it is
(:meth:`~caloforge.models.student.StudentModel.distillation_losses`). The pairs are drawn fresh at every step
from one torch generator seeded with ``training.seed`` and sampled by the teacher, so that the student never
sees the same pair twice; for a flow, sampling them costs about as much as the student's step. A teacher whose
sampling costs far more (the diffusion model: one U-Net evaluation per sampler step) samples a pool of
``training.pair_pool`` pairs once, before the first step (from a generator of its own, so that a resumed run
draws the same pool), and every step draws its batch from the pool.

After each epoch the student's per-crystal corrections are calibrated on :data:`CALIBRATION_EVENTS` Geant4
training events (:meth:`~caloforge.models.student.StudentModel.calibrate`) and it is measured like any model on held-out
events (:func:`caloforge.training.plan.validate`): ``best.pt`` is the epoch with the lowest
``val_sp_occupancy``, the selection metric of the two-stage models. The held-out distillation losses
(``val_hit``, ``val_value``, on :data:`~caloforge.training.distill.HELD_OUT_INPUTS` fixed pairs) are logged
beside it.

The energy stage, the condition normalisation and the shape variables are the teacher's, copied and not trained;
Adam trains the student's network, ``training.scheduler: one-cycle`` to ``training.learning_rate``,
``training.epochs`` x ``training.steps_per_epoch`` steps of ``training.batch_size`` pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from caloforge.models import ConfigError, TrainingStep
from caloforge.models.energy import NOISE_DIM as ENERGY_NOISE_DIM
from caloforge.models.student import StudentConfig, StudentModel
from caloforge.models.two_stage import TwoStageModel
from caloforge.training.config import LoopConfig, TrainConfig, expand_path, resolve_sample_path
from caloforge.training.data import ShowerData
from caloforge.training.distill import HELD_OUT_INPUTS, MIN_STEPS
from caloforge.training.plan import TrainingPlan, load_data, load_start, model_from_checkpoint
from caloforge.training.plan import validate as validate_model

__all__ = ["ShapeDistillPlan", "student_config_of", "student_of_two_stage", "teacher_pairs"]

CALIBRATION_EVENTS = 100_000
"""Training events on which the student calibrates itself after each epoch: more than other models'
(:data:`caloforge.training.plans.CALIBRATION_EVENTS`), for its corrections are fitted per momentum bin."""

STEP = "student"
"""The plan's one training step (and optimizer): the student's network."""
TEACHER_CHUNK_STEPS = 8
"""Steps whose pairs the teacher samples in one call (larger calls sample faster)."""


def student_config_of(teacher: TwoStageModel, hidden: Sequence[int]) -> StudentConfig:
    """The configuration of a student of ``teacher`` with ``hidden`` layer widths: the teacher's particles, shape
    variables (dequantisation, threshold, logit margin) and condition input (its Fourier features).

    Raises:
        ConfigError: ``teacher`` is not a two-stage model, or invalid ``hidden``.
    """
    if not isinstance(teacher, TwoStageModel):
        raise ConfigError(f"a student learns the shape stage of a two-stage model, not of a {teacher.name} model")
    t = teacher.config
    return StudentConfig(particles=list(t.particles), hidden=tuple(int(h) for h in hidden), teacher=teacher.name,
                         dequantisation=t.dequantisation, threshold=t.threshold, logit_alpha=t.logit_alpha,
                         condition_frequencies=t.condition_frequencies)


def student_of_two_stage(teacher: TwoStageModel, hidden: Sequence[int], *, seed: int = 0) -> StudentModel:
    """A student of ``teacher`` (:func:`student_config_of`), its network freshly initialised (seeded with
    ``seed``), with the teacher's condition normalisation, energy stage, shape standardisation and thresholds."""
    config = student_config_of(teacher, hidden)
    torch.manual_seed(seed)
    student = StudentModel(config).to(teacher.device)
    mine = student.state_dict()
    shared = {k: v for k, v in teacher.state_dict().items() if k in mine and mine[k].shape == v.shape}
    student.load_state_dict(shared, strict=False)
    return student


def teacher_pairs(
    teacher: TwoStageModel, conditions: torch.Tensor, particle_index: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher's inputs and outputs for raw conditions (B, 6), particle indices (B,) and standard normal noise
    (B, noise_size): shape noise (B, 121), context (B, n_context) and the teacher's shape variables (B, 121)."""
    with torch.inference_mode():
        x = teacher.condition_input(conditions, particle_index)
        f = teacher.energy_stage.fraction(x, noise[:, :ENERGY_NOISE_DIM])
        context = teacher.context(x, f)
        z = noise[:, ENERGY_NOISE_DIM:]
        return z.clone(), context.clone(), teacher.sample_shape(z, context).clone()


class ShapeDistillPlan(TrainingPlan):
    """A one-pass student of a two-stage teacher's shape stage (see the module).

    Args:
        teacher: the trained two-stage model (left unchanged; put in eval mode).
        loop: the ``training:`` section (student widths, steps, batch size, learning rate, seed).
        train_data: Geant4 training events: their conditions start the pairs, their maps calibrate the student.
        val_data: held-out Geant4 events: the selection metric and the held-out pairs.
        provenance: what the ``distilled`` record says besides the distillation (``from``, ``samples``).
        state_dict: the student's weights of a resumed run (None: freshly initialised).

    Raises:
        ValueError: fewer than :data:`~caloforge.training.distill.MIN_STEPS` steps.
    """

    name = "distill"
    selection_key = "val_sp_occupancy"

    def __init__(
        self,
        teacher: TwoStageModel,
        loop: LoopConfig,
        train_data: ShowerData,
        val_data: ShowerData,
        provenance: dict[str, Any] | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.teacher = teacher.eval()
        student = student_of_two_stage(teacher, loop.student_hidden, seed=loop.seed)
        super().__init__(student, loop)
        self.train_data, self.val_data = train_data, val_data
        self.calibration_data = train_data.subset(slice(0, CALIBRATION_EVENTS))
        self.steps_per_epoch = loop.steps_per_epoch or max(1, len(train_data) // loop.batch_size)
        if loop.epochs * self.steps_per_epoch < MIN_STEPS:
            raise ValueError(f"distillation needs at least {MIN_STEPS} steps, got {loop.epochs * self.steps_per_epoch}")
        device = teacher.device
        self.conditions = torch.as_tensor(train_data.conditions, device=device)  # (N, 6)
        self.particle = torch.as_tensor(train_data.particle, dtype=torch.long, device=device)  # (N,)
        self.draws = torch.Generator(device="cpu").manual_seed(loop.seed)
        held = val_data.subset(slice(0, HELD_OUT_INPUTS))
        noise = torch.randn(len(held), teacher.noise_size, generator=self.draws).to(device)
        self.held_pairs = teacher_pairs(
            teacher, torch.as_tensor(held.conditions, device=device),
            torch.as_tensor(held.particle, dtype=torch.long, device=device), noise,
        )
        self.pool: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # sampled at the first step
        if state_dict is not None:
            student.load_state_dict(state_dict)
        self.provenance = provenance or {}

    @classmethod
    def resolve(cls, config: TrainConfig) -> TrainConfig:
        """The configuration with the student's model (:func:`student_config_of` the teacher) as ``model:``."""
        t = config.training
        if t.teacher is None:
            raise ConfigError("training.teacher: the distill plan needs the trained model to distil")
        teacher = load_start(t.teacher, "teacher")
        if not isinstance(teacher, TwoStageModel):
            raise ConfigError(f"training.teacher: {t.teacher} is a {teacher.name} model; a student model learns "
                              f"from a two-stage model (flow, diffusion)")
        try:
            model = student_config_of(teacher, t.student_hidden)
        except (ValueError, ConfigError) as err:
            raise ConfigError(f"training.student_hidden: {err}") from None
        return model_from_checkpoint(config, model, "training.teacher")

    @classmethod
    def build(
        cls, config: TrainConfig, device: torch.device, state_dict: dict[str, torch.Tensor] | None = None
    ) -> ShapeDistillPlan:
        t = config.training
        teacher = load_start(t.teacher, "teacher", device)
        train_data, val_data = load_data(config)
        provenance = {"from": str(expand_path(t.teacher).resolve()),
                      "samples": [str(resolve_sample_path(p)) for p in config.data.train_files]}
        return cls(teacher, t, train_data, val_data, provenance, state_dict)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {STEP: torch.optim.Adam(self.model.net.parameters(), lr=self.loop.plan_learning_rate)}

    def training_plan(self, epoch: int) -> list[TrainingStep]:
        return [TrainingStep(STEP)]

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(shape noise (B, 121), context (B, n_context), teacher's shape variables (B, 121)), fresh every step
        (the teacher samples :data:`TEACHER_CHUNK_STEPS` steps' pairs at a time), or drawn from the pool of
        ``training.pair_pool`` pairs."""
        b, device = self.loop.batch_size, self.conditions.device
        if self.loop.pair_pool is not None:
            pool = self.pair_pool()
            for _ in range(self.steps_per_epoch):
                rows = torch.randint(0, len(pool[0]), (b,), generator=self.draws).to(device)
                yield pool[0][rows], pool[1][rows], pool[2][rows]
            return
        for first in range(0, self.steps_per_epoch, TEACHER_CHUNK_STEPS):
            steps = min(TEACHER_CHUNK_STEPS, self.steps_per_epoch - first)
            rows = torch.randint(0, len(self.conditions), (steps * b,), generator=self.draws).to(device)
            noise = torch.randn(steps * b, self.teacher.noise_size, generator=self.draws).to(device)
            z, context, y = teacher_pairs(self.teacher, self.conditions[rows], self.particle[rows], noise)
            for k in range(steps):
                take = slice(k * b, (k + 1) * b)
                yield z[take], context[take], y[take]

    def pair_pool(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pool of ``training.pair_pool`` teacher pairs (shape noise, context, shape variables), sampled at
        the first call from a generator seeded with ``training.seed`` under the conditions of training events
        drawn at random, with a progress bar (``training.progress``)."""
        if self.pool is None:
            n, chunk, device = int(self.loop.pair_pool), self.loop.sample_batch_size, self.conditions.device
            draws = torch.Generator(device="cpu").manual_seed(self.loop.seed)
            parts = []
            with tqdm(total=n, desc="teacher pairs", unit="pair", disable=not self.loop.progress, leave=False) as bar:
                for first in range(0, n, chunk):
                    m = min(chunk, n - first)
                    rows = torch.randint(0, len(self.conditions), (m,), generator=draws).to(device)
                    noise = torch.randn(m, self.teacher.noise_size, generator=draws).to(device)
                    parts.append(teacher_pairs(self.teacher, self.conditions[rows], self.particle[rows], noise))
                    bar.update(m)
            self.pool = tuple(torch.cat(column) for column in zip(*parts))  # type: ignore[assignment]
        return self.pool

    def n_batches(self) -> int:
        return self.steps_per_epoch

    def training_step(
        self, step: str, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        losses = self.model.distillation_losses(*batch)
        loss = losses["hit"] + losses["value"]
        return loss, {"hit": losses["hit"].item(), "value": losses["value"].item(), "loss": loss.item()}

    def validate(self, epoch: int) -> dict[str, float]:
        """The student calibrated on training events, then the held-out losses (``val_hit``, ``val_value``) and
        the selection metrics of :func:`caloforge.training.plan.validate`."""
        cal = self.calibration_data
        self.model.calibrate(cal.maps_gev, cal.conditions, cal.particle, seed=self.loop.seed,
                             batch_size=self.loop.sample_batch_size)
        self.model.eval()
        with torch.no_grad():
            held = self.model.distillation_losses(*self.held_pairs)
        self.model.train()
        return {"val_hit": held["hit"].item(), "val_value": held["value"].item(),
                **validate_model(self.model, self.val_data, self.loop)}

    def record(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        row = history[-1]
        return {"distilled": {
            **self.provenance,
            "events": len(self.train_data),
            "hit_bce": row.get("val_hit", math.nan),
            "value_mse": row.get("val_value", math.nan),
            "steps": len(history) * self.steps_per_epoch,
            "pair_pool": self.loop.pair_pool,
            "batch_size": self.loop.batch_size,
            "learning_rate": self.loop.plan_learning_rate,
            "seed": self.loop.seed,
            "teacher_parameters": self.teacher.n_parameters,
            "student_parameters": sum(p.numel() for p in self.model.net.parameters()),
        }}

    def state_dict(self) -> dict[str, Any]:
        return {"draws": self.draws.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "draws" in state:
            self.draws.set_state(state["draws"])
