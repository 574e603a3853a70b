"""The two-stage conditional normalizing flow (:class:`FlowModel`): the deposited energy, then the shape.

CaloFlow's factorisation (Krause and Shih, arXiv:2106.05285; at BESIII the same two stages model anti-neutron
showers): ``p(map | c) = p(E11x11 | c) p(shape | c, E11x11)``.

* **Energy stage**: ``f = E11x11 / p`` given the conditions, the mixture density network of
  :mod:`caloforge.models.energy` (the GAN's energy model), trained here by maximum likelihood with the shape.
* **Shape stage**: the 121 cell fractions of E11x11, preprocessed by
  :class:`~caloforge.models.flow.preprocessing.ShapeTransform` (dequantisation, logit, standardisation),
  modelled by a conditional coupling flow with rational-quadratic splines
  (:mod:`caloforge.models.flow.coupling`): each transform splines a random half of the cells given the other
  half and the context, so that sampling inverts it in one network pass over half the cells, as CaloINN does
  (arXiv:2312.09290). Its context is the normalised conditions
  [+ one-hot particle type] and the standardised ``logit(f / F_MAX)`` of the shower's energy: in training
  Geant4's, in sampling the energy stage's draw.

Sampling takes 2 + 121 standard normal numbers per shower (:attr:`FlowModel.noise_size`): two for the
energy stage, 121 for the flow's base distribution.
"""

from __future__ import annotations

import numpy as np
import torch

from caloforge.models.base import Batch, ShowerModel, TrainingStep
from caloforge.models.energy import NOISE_DIM as ENERGY_NOISE_DIM
from caloforge.models.energy import EnergyModel, fraction_to_y
from caloforge.models.flow.config import FlowConfig
from caloforge.models.flow.coupling import spline_coupling_flow
from caloforge.models.flow.preprocessing import N_CELLS, ShapeTransform
from caloforge.models.inputs import gaussian_noise
from caloforge.models.transforms import MIN_MOMENTUM_GEV

__all__ = ["FlowModel"]

EMPTY_GEV = 1e-9
"""Maps with less than this in all 121 cells (GeV) are empty: they count in the energy stage only."""


class FlowModel(ShowerModel):
    """Conditional normalizing flow for 11 x 11 EMC maps: energy stage and shape flow (see the module)."""

    name = "flow"
    config_class = FlowConfig

    def __init__(self, config: FlowConfig) -> None:
        super().__init__(config)
        self.energy_stage = EnergyModel(self.n_condition_inputs)
        self.shape = ShapeTransform(config.dequantisation, config.logit_alpha, config.threshold)
        self.flow = spline_coupling_flow(
            N_CELLS, self.n_condition_inputs + 1, config.transforms, tuple(config.hidden), config.bins,
            config.spline_bound,
        )
        self.register_buffer("energy_y_mean", torch.tensor(0.0))
        self.register_buffer("energy_y_std", torch.tensor(1.0))

    @property
    def noise_size(self) -> int:
        """Standard normal numbers per shower: 2 for the energy stage, 121 for the shape flow."""
        return ENERGY_NOISE_DIM + N_CELLS

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

    def _context(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """The shape flow's context (B, n_condition_inputs + 1): network conditions ``x`` and the standardised
        ``logit(f / F_MAX)`` of the deposited fractions ``f`` (B,)."""
        y = (fraction_to_y(f) - self.energy_y_mean) / self.energy_y_std  # (B,)
        return torch.cat([x, y[:, None]], dim=1)

    def negative_log_likelihoods(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Mean negative log-likelihoods of a batch of Geant4 events: ``energy`` (of ``logit(f / F_MAX)``) and
        ``shape`` (per cell, of the preprocessed fractions; maps with a deposit only)."""
        x = self.condition_input(batch.conditions, batch.particle)  # (B, C)
        maps = batch.maps_gev.flatten(1)  # (B, 121)
        total = maps.sum(dim=1)  # (B,)
        f = total / batch.conditions[:, 0].clamp_min(MIN_MOMENTUM_GEV)  # (B,)
        nll = {"energy": self.energy_stage.nll(x, f)}
        full = total > EMPTY_GEV
        y = self.shape(maps[full] / total[full, None], torch.rand_like(maps[full]))  # (B', 121)
        nll["shape"] = -self.flow(self._context(x[full], f[full])).log_prob(y).mean() / N_CELLS
        return nll

    def _draw(
        self, noise: torch.Tensor, conditions: torch.Tensor, particle_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw cell fractions (B, 121), before cells are emptied, and E11x11 (B,) in GeV from standard normal
        noise (B, :attr:`noise_size`), raw conditions (B, 6) and particle indices (B,)."""
        x = self.condition_input(conditions, particle_index)  # (B, C)
        f = self.energy_stage.fraction(x, noise[:, :ENERGY_NOISE_DIM])  # (B,)
        y = self.flow(self._context(x, f)).transform.inv(noise[:, ENERGY_NOISE_DIM:])  # (B, 121)
        total = torch.nan_to_num(f, nan=0.0) * conditions[:, 0].clamp_min(MIN_MOMENTUM_GEV)  # (B,) GeV
        return self.shape.raw_fractions(y), total

    def generate(self, noise: torch.Tensor, conditions: torch.Tensor, particle_index: torch.Tensor) -> torch.Tensor:
        """Maps (B, 11, 11) in GeV from standard normal noise (B, :attr:`noise_size`), raw conditions (B, 6) and
        particle indices (B,)."""
        raw, total = self._draw(noise, conditions, particle_index)
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
        c = np.asarray(conditions, dtype=np.float32)
        index = np.zeros(len(c), dtype=np.int64) if particle_index is None else np.asarray(particle_index)
        hit_probability = torch.as_tensor((np.asarray(maps_gev).reshape(len(c), -1) > 0).mean(axis=0))  # (121,)
        rng = np.random.default_rng(seed)
        raw = []
        for _, cb, pb in self.inference_batches(c, index, batch_size):
            noise = torch.as_tensor(gaussian_noise(rng, len(cb), self.noise_size), device=cb.device)
            raw.append(self._draw(noise, cb, pb)[0].cpu())  # (B, 121)
        self.shape.calibrate_thresholds(torch.cat(raw), hit_probability)

    def _sample_batch(
        self, conditions: torch.Tensor, particle_index: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor:
        noise = torch.as_tensor(gaussian_noise(rng, len(conditions), self.noise_size), device=conditions.device)
        return self.generate(noise, conditions, particle_index)

    @property
    def faster_in_onnx_runtime(self) -> bool:
        """False: the coupling flow samples faster in PyTorch on a CPU (the measurement: docs/engine.md), and
        skips the export at loading."""
        return False

    # ---- training ---------------------------------------------------------------------------------

    @property
    def selection_metric(self) -> str:
        """``sp_occupancy``: the shapes' mean separation power times the crystal occupancy's chi^2 per crystal
        (which crystals are hit is a classifier's first clue, and the shapes alone do not see it)."""
        return "sp_occupancy"

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {"flow": torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)}

    def training_plan(self, epoch: int) -> list[TrainingStep]:
        return [TrainingStep("flow")]

    def training_step(self, step: str, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if step != "flow":
            raise ValueError(f"unknown training step {step!r}")
        nll = self.negative_log_likelihoods(batch)
        loss = nll["shape"] + nll["energy"]
        return loss, {"nll_shape": nll["shape"].item(), "nll_energy": nll["energy"].item(), "loss": loss.item()}

    def validation_step(self, batch: Batch) -> dict[str, float]:
        """Held-out negative log-likelihoods (the same as in training, without gradients)."""
        return {f"nll_{k}": v.item() for k, v in self.negative_log_likelihoods(batch).items()}
