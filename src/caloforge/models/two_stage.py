"""Two-stage shower models: the deposited energy, then the shape (:class:`TwoStageModel`, :class:`TwoStageConfig`).

CaloFlow's factorisation (Krause and Shih, arXiv:2106.05285; at BESIII the same two stages model anti-neutron
showers): ``p(map | c) = p(E11x11 | c) p(shape | c, E11x11)``.

* **Energy stage**: ``f = E11x11 / p`` given the conditions, the mixture density network of
  :mod:`caloforge.models.energy` (the GAN's energy model), trained by maximum likelihood beside the shape.
* **Shape stage**: the 121 cell fractions of E11x11 in the variables of
  :class:`~caloforge.models.shape_space.ShapeTransform` (dequantisation, logit, standardisation), given a
  context: the normalised conditions [+ one-hot particle type] and the standardised ``logit(f / F_MAX)`` of the
  shower's energy -- in training Geant4's, in sampling the energy stage's draw. What models the shape is the
  subclass's: a coupling flow (:mod:`caloforge.models.flow`), a student network distilled from one.

Sampling takes 2 standard normal numbers per shower for the energy stage, then :attr:`TwoStageModel.shape_noise_size`
for the shape. After sampling, each cell below its threshold (a fraction of E11x11, calibrated per crystal so
that each is hit as often as in Geant4: :meth:`TwoStageModel.calibrate`) is empty.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from caloforge.models.base import Batch, ConfigError, ModelConfig, ShowerModel, TrainingStep
from caloforge.models.energy import NOISE_DIM as ENERGY_NOISE_DIM
from caloforge.models.energy import EnergyModel, fraction_to_y
from caloforge.models.inputs import N_CONDITIONS, gaussian_noise
from caloforge.models.shape_space import ShapeTransform
from caloforge.models.transforms import MIN_MOMENTUM_GEV

__all__ = ["EMPTY_GEV", "TwoStageConfig", "TwoStageModel"]

EMPTY_GEV = 1e-9
"""Maps with less than this in all 121 cells (GeV) are empty: they count in the energy stage only."""


@dataclass
class TwoStageConfig(ModelConfig):
    """What every two-stage model's configuration has (the shape variables and the optimiser).

    Attributes:
        dequantisation: width of the uniform noise added to each cell fraction of E11x11 before the logit, and
            the fraction below which a sampled cell is empty (:class:`~caloforge.models.shape_space.
            ShapeTransform`). Default 1e-6.
        threshold: fraction of E11x11 below which a sampled cell is set to 0; None (the default): the
            dequantisation width.
        logit_alpha: margin of the logit transform. Default 1e-6.
        lr: AdamW's learning rate of both stages. Default 1e-3.
        weight_decay: AdamW's (decoupled) weight decay. Default 0.
        condition_frequencies: Fourier features of the normalised conditions given to both stages besides them:
            ``sin`` and ``cos`` of ``2^k pi x`` for ``k < condition_frequencies`` of each normalised condition
            ``x`` (0, the default: none). They let the networks follow sharp changes with the conditions, such as
            the centre crystal's share where the particle enters near a crystal's edge.
    """

    dequantisation: float = 1e-6
    threshold: float | None = None
    logit_alpha: float = 1e-6
    lr: float = 1e-3
    weight_decay: float = 0.0
    condition_frequencies: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check({
            "dequantisation": 0 < self.dequantisation < 1e-2,
            "threshold": self.threshold is None or 0 <= self.threshold < 1,
            "logit_alpha": 0 < self.logit_alpha < 0.1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "condition_frequencies": 0 <= self.condition_frequencies <= 12,
        })

    def check(self, checks: dict[str, bool]) -> None:
        """ConfigError naming the first key whose check is False."""
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"model.{key}: invalid value {getattr(self, key)!r}")


class TwoStageModel(ShowerModel):
    """Energy stage and shape stage over the standardised logit cell fractions (see the module).

    Subclasses build their shape network in ``__init__`` and implement :meth:`shape_loss`,
    :meth:`sample_shape` and :attr:`shape_noise_size`.
    """

    shape_loss_name: ClassVar[str] = "shape"
    """What :meth:`shape_loss` is, the key it is logged under (``nll_shape`` for a flow)."""

    def __init__(self, config: TwoStageConfig) -> None:
        super().__init__(config)
        self.energy_stage = EnergyModel(self.n_condition_inputs)
        self.shape = ShapeTransform(config.dequantisation, config.logit_alpha, config.threshold)
        self.register_buffer("energy_y_mean", torch.tensor(0.0))
        self.register_buffer("energy_y_std", torch.tensor(1.0))

    @property
    def n_condition_inputs(self) -> int:
        """Width of the networks' condition input: the normalised conditions (+ one-hot type), and their Fourier
        features (``config.condition_frequencies``)."""
        return super().n_condition_inputs + 2 * N_CONDITIONS * self.config.condition_frequencies

    def condition_input(self, conditions: torch.Tensor, particle_index: torch.Tensor) -> torch.Tensor:
        """Network input (B, :attr:`n_condition_inputs`) from raw conditions (B, 6) and particle indices (B,): the
        normalised conditions (+ one-hot type), then the sines and cosines of their Fourier features."""
        x = super().condition_input(conditions, particle_index)  # (B, 6 [+ n_particles])
        k = self.config.condition_frequencies
        if k == 0:
            return x
        scales = math.pi * 2.0 ** torch.arange(k, dtype=x.dtype, device=x.device)  # (k,)
        angles = (x[:, :N_CONDITIONS, None] * scales).flatten(1)  # (B, 6 k)
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=1)

    @property
    def n_context(self) -> int:
        """Width of the shape stage's context: the network conditions and the standardised energy."""
        return self.n_condition_inputs + 1

    @property
    @abstractmethod
    def shape_noise_size(self) -> int:
        """Standard normal numbers per shower that :meth:`sample_shape` takes."""

    @property
    def noise_size(self) -> int:
        """Standard normal numbers per shower: 2 for the energy stage, then :attr:`shape_noise_size`."""
        return ENERGY_NOISE_DIM + self.shape_noise_size

    @abstractmethod
    def shape_loss(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The shape stage's mean training loss on shape variables ``y`` (B, 121) of Geant4 maps with their
        context (B, :attr:`n_context`)."""

    @abstractmethod
    def sample_shape(self, noise: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Shape variables (B, 121) from standard normal noise (B, :attr:`shape_noise_size`) and the context
        (B, :attr:`n_context`); a cell is empty where its variable is -inf or NaN."""

    # ---- the fits before training -----------------------------------------------------------------

    def fit_maps(
        self, maps_gev: np.ndarray, conditions: np.ndarray, particle_index: np.ndarray | None = None
    ) -> None:
        """Fit the standardisation of the shape variables and of the energy context on training maps
        (N, 11, 11) in GeV with their conditions (N, 6) (after :meth:`fit_normalisation`)."""
        maps = torch.as_tensor(np.asarray(maps_gev, dtype=np.float32)).flatten(1)  # (N, 121)
        p = torch.as_tensor(np.asarray(conditions, dtype=np.float32)[:, 0])  # (N,)
        total = maps.sum(dim=1)  # (N,)
        full = total > EMPTY_GEV
        generator = torch.Generator().manual_seed(0)
        self.shape.fit(maps[full] / total[full, None], generator)
        y = fraction_to_y(total / p.clamp_min(MIN_MOMENTUM_GEV))  # (N,)
        self.energy_y_mean.copy_(y.mean())
        self.energy_y_std.copy_(y.std().clamp_min(1e-3))

    # ---- the two stages ---------------------------------------------------------------------------

    def context(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """The shape stage's context (B, :attr:`n_context`): network conditions ``x`` (B, n_condition_inputs)
        and the standardised ``logit(f / F_MAX)`` of the deposited fractions ``f`` (B,)."""
        y = (fraction_to_y(f) - self.energy_y_mean) / self.energy_y_std  # (B,)
        return torch.cat([x, y[:, None]], dim=1)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The mean losses of a batch of Geant4 events: ``energy`` (negative log-likelihood of
        ``logit(f / F_MAX)``) and ``shape`` (:meth:`shape_loss`; maps with a deposit only)."""
        x = self.condition_input(batch.conditions, batch.particle)  # (B, C)
        maps = batch.maps_gev.flatten(1)  # (B, 121)
        total = maps.sum(dim=1)  # (B,)
        f = total / batch.conditions[:, 0].clamp_min(MIN_MOMENTUM_GEV)  # (B,)
        full = total > EMPTY_GEV
        y = self.shape(maps[full] / total[full, None], torch.rand_like(maps[full]))  # (B', 121)
        return {"energy": self.energy_stage.nll(x, f), "shape": self.shape_loss(y, self.context(x[full], f[full]))}

    def draw(
        self, noise: torch.Tensor, conditions: torch.Tensor, particle_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw cell fractions (B, 121), before cells are emptied, and E11x11 (B,) in GeV from standard normal
        noise (B, :attr:`noise_size`), raw conditions (B, 6) and particle indices (B,)."""
        x = self.condition_input(conditions, particle_index)  # (B, C)
        f = self.energy_stage.fraction(x, noise[:, :ENERGY_NOISE_DIM])  # (B,)
        y = self.sample_shape(noise[:, ENERGY_NOISE_DIM:], self.context(x, f))  # (B, 121)
        total = torch.nan_to_num(f, nan=0.0) * conditions[:, 0].clamp_min(MIN_MOMENTUM_GEV)  # (B,) GeV
        return self.shape.raw_fractions(y), total

    def generate(self, noise: torch.Tensor, conditions: torch.Tensor, particle_index: torch.Tensor) -> torch.Tensor:
        """Maps (B, 11, 11) in GeV from standard normal noise (B, :attr:`noise_size`), raw conditions (B, 6) and
        particle indices (B,)."""
        raw, total = self.draw(noise, conditions, particle_index)
        fractions = self.shape.empty_and_normalise(raw)  # (B, 121), each row summing to 1
        return (fractions * total[:, None]).view(-1, 11, 11)

    def calibrate(
        self,
        maps_gev: np.ndarray,
        conditions: np.ndarray,
        particle_index: np.ndarray | None = None,
        *,
        seed: int = 0,
        batch_size: int = 8192,
    ) -> None:
        """Set the shape's per-cell thresholds (:meth:`ShapeTransform.calibrate_thresholds`) so that, under the
        conditions (N, 6) of Geant4 maps (N, 11, 11) in GeV (training events, never the test sample), each
        crystal has a deposit in as many sampled showers as in Geant4's. One set of thresholds for all the
        model's particle types."""
        raw, hit_probability = self.sampled_per_cell(
            maps_gev, conditions, particle_index, lambda noise, c, p: self.draw(noise, c, p)[0], seed, batch_size
        )
        self.shape.calibrate_thresholds(raw, hit_probability)

    def sampled_per_cell(
        self,
        maps_gev: np.ndarray,
        conditions: np.ndarray,
        particle_index: np.ndarray | None,
        per_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        seed: int,
        batch_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What a calibration compares: ``per_batch(noise, conditions, particle_index)`` (B, k) of fresh noise
        (B, :attr:`noise_size`, seeded by ``seed``) under the conditions (N, 6) of Geant4 maps (N, 11, 11) in GeV,
        gathered (N, k) on the CPU; and Geant4's fraction of the maps with a deposit in each cell (121,)."""
        c = np.asarray(conditions, dtype=np.float32)
        index = np.zeros(len(c), dtype=np.int64) if particle_index is None else np.asarray(particle_index)
        hit_probability = torch.as_tensor((np.asarray(maps_gev).reshape(len(c), -1) > 0).mean(axis=0))  # (121,)
        rng = np.random.default_rng(seed)
        values = []
        for _, cb, pb in self.inference_batches(c, index, batch_size):
            noise = torch.as_tensor(gaussian_noise(rng, len(cb), self.noise_size), device=cb.device)
            values.append(per_batch(noise, cb, pb).cpu())  # (B, k)
        return torch.cat(values), hit_probability

    def _sample_batch(
        self, conditions: torch.Tensor, particle_index: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor:
        noise = torch.as_tensor(gaussian_noise(rng, len(conditions), self.noise_size), device=conditions.device)
        return self.generate(noise, conditions, particle_index)

    # ---- training ---------------------------------------------------------------------------------

    @property
    def selection_metric(self) -> str:
        """``sp_occupancy``: the shapes' mean separation power times the crystal occupancy's chi^2 per crystal
        (which crystals are hit is a classifier's first clue, and the shapes alone do not see it)."""
        return "sp_occupancy"

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {self.name: torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)}

    def training_plan(self, epoch: int) -> list[TrainingStep]:
        """One step, named after the family (``flow``), that trains both stages together."""
        return [TrainingStep(self.name)]

    def training_step(self, step: str, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if step != self.name:
            raise ValueError(f"unknown training step {step!r}")
        losses = self.losses(batch)
        loss = losses["shape"] + losses["energy"]
        return loss, {self.shape_loss_name: losses["shape"].item(), "nll_energy": losses["energy"].item(),
                      "loss": loss.item()}

    def validation_step(self, batch: Batch) -> dict[str, float]:
        """Held-out losses (the same as in training, without gradients)."""
        losses = self.losses(batch)
        return {self.shape_loss_name: losses["shape"].item(), "nll_energy": losses["energy"].item()}

