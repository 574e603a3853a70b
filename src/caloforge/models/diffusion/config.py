"""The configuration of the conditional diffusion model (:class:`DiffusionConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from caloforge.models.base import ConfigError
from caloforge.models.two_stage import TwoStageConfig

__all__ = ["BETA_SCHEDULES", "DiffusionConfig", "MAX_LEVELS", "PREDICTIONS", "SAMPLERS"]

MAX_LEVELS = 3
"""Resolution levels the U-Net can have: the 11 x 11 map, padded to 12 x 12, is halved twice (12, 6, 3)."""

SAMPLERS = ("ddim", "dpm")
"""Deterministic samplers: ``ddim`` (diffusers' DDIMScheduler, eta 0), ``dpm`` (DPMSolverMultistepScheduler,
DPM-Solver++ of order 2)."""

PREDICTIONS = ("epsilon", "v_prediction")
"""What the U-Net predicts: the added noise, or the velocity ``v = sqrt(abar) eps - sqrt(1 - abar) x0``
(Salimans and Ho, arXiv:2202.00512)."""

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
"""diffusers' names of the noise schedules (``squaredcos_cap_v2``: the cosine schedule of Nichol and Dhariwal,
arXiv:2102.09672)."""


@dataclass
class DiffusionConfig(TwoStageConfig):
    """Configuration of the two-stage conditional diffusion model (:class:`caloforge.models.diffusion.
    DiffusionModel`); the shape variables and the optimiser as in :class:`~caloforge.models.two_stage.
    TwoStageConfig`.

    The seeds' U-Net has about 8.5M trainable parameters; the setting closest to it is ``block_channels:
    [96, 192]``, ``layers_per_block: 2``, ``attention: []`` (8.26M parameters with the energy stage,
    :attr:`~caloforge.models.base.ShowerModel.n_parameters`). The default has 0.20M.

    Attributes:
        block_channels: channels of the U-Net's resolution levels (12 x 12, 6 x 6, 3 x 3), one to three levels;
            the group normalisations have the largest of 8, 4, 2, 1 groups that divides them all. Default
            [16, 32], sized for sampling on a CPU.
        layers_per_block: residual blocks per level on the way down (one more on the way up). Default 1.
        attention: the levels (0-based indices into ``block_channels``) whose blocks have self-attention; the
            middle block has it when the deepest level is listed. Default [] (none).
        train_timesteps: steps of the forward (noising) process. Default 400.
        beta_schedule: the noise schedule, by its diffusers name (:data:`BETA_SCHEDULES`). Default
            ``squaredcos_cap_v2``.
        prediction: what the U-Net predicts, ``epsilon`` or ``v_prediction`` (:data:`PREDICTIONS`). Default
            ``v_prediction``: the cosine schedule ends at abar = 1.5e-8 (400 steps), where the shape an
            epsilon-prediction implies is its error divided by sqrt(abar), while v stays bounded at both ends of
            the schedule (what few-step samplers and progressive distillation need, arXiv:2202.00512; the
            measurement: docs/experiments/diffusion.md).
        sampler: the deterministic sampler, ``ddim`` or ``dpm`` (:data:`SAMPLERS`); can be changed after
            training (:meth:`~caloforge.models.diffusion.DiffusionModel.with_sampling`). Default ``dpm``, the closer to
            Geant4 at the same steps (the measurement: docs/experiments/diffusion.md).
        sampling_steps: U-Net evaluations per shower in sampling. Default 10.
    """

    name: str = "diffusion"
    block_channels: tuple[int, ...] = (16, 32)
    layers_per_block: int = 1
    attention: list[int] = field(default_factory=list)
    train_timesteps: int = 400
    beta_schedule: str = "squaredcos_cap_v2"
    prediction: str = "v_prediction"
    sampler: str = "dpm"
    sampling_steps: int = 10

    def __post_init__(self) -> None:
        if self.name != "diffusion":
            raise ConfigError(f"model.name: a DiffusionConfig has name 'diffusion', got {self.name!r}")
        super().__post_init__()
        self.block_channels = tuple(self.block_channels)
        self.attention = list(self.attention)
        self.check({
            "block_channels": 1 <= len(self.block_channels) <= MAX_LEVELS and min(self.block_channels) >= 1,
            "layers_per_block": self.layers_per_block >= 1,
            "attention": all(0 <= level < len(self.block_channels) for level in self.attention)
            and len(set(self.attention)) == len(self.attention),
            "train_timesteps": self.train_timesteps >= 2,
            "beta_schedule": self.beta_schedule in BETA_SCHEDULES,
            "prediction": self.prediction in PREDICTIONS,
            "sampler": self.sampler in SAMPLERS,
            "sampling_steps": 1 <= self.sampling_steps <= self.train_timesteps,
        })
