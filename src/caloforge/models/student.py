"""A one-pass student of a two-stage model (:class:`StudentModel`): the teacher's noise -> shape map, learnt.

A two-stage model (:mod:`caloforge.models.two_stage`) samples a shape by a deterministic map of 121 standard
normal numbers under a context: the flow by inverting its coupling transforms. The student is a fully connected
network of the same noise and context, trained to give the teacher's shape for the same inputs (knowledge
distillation, Hinton, Vinyals and Dean, arXiv:1503.02531; a flow's student, CaloFlow, arXiv:2110.11377), with
two heads per crystal:

* **hit**: whether the teacher's crystal holds a deposit (its fraction of E11x11 at least the crystal's
  threshold), a logit trained by binary cross-entropy;
* **value**: the teacher's shape variable of the crystal where it is hit, by squared error.

A single squared error over all cells blurs the step between the band of empty cells and the smallest deposits
into spurious small deposits; the two heads keep it. Regression also narrows the spread of the values, most in
the outer crystals. So after training :meth:`StudentModel.calibrate` fits two per-crystal corrections on Geant4
training events under their conditions: an offset on the hit logits, so that each crystal is hit as often as in
Geant4, and a monotone map of the values (:class:`ValueMap`), so that each crystal's deposits, where hit, have
Geant4's distribution (quantile mapping). A hit cell's value is at least its threshold; the rest is empty.

The energy stage, the shape variables' standardisation and the thresholds are the teacher's, copied
(:func:`caloforge.training.distill_shape.student_of_two_stage`); the student model is complete on its own:
it samples, exports to ONNX and validates like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from caloforge.models.base import Batch, ConfigError
from caloforge.models.energy import NOISE_DIM as ENERGY_NOISE_DIM
from caloforge.models.shape_space import N_CELLS, hit_edges
from caloforge.models.two_stage import EMPTY_GEV, TwoStageConfig, TwoStageModel

__all__ = ["StudentConfig", "StudentModel", "ValueMap"]

THRESHOLD_MARGIN = 1e-3
"""Standard deviations of a shape variable by which a hit cell's least value lies above its threshold's."""
VALUE_MAP_POINTS = 256
"""Points of each crystal's value map (a uniform grid over the student's range of values there)."""
VALUE_MAP_QUANTILES = 256
"""Quantiles of the student's and Geant4's values per crystal that the value map joins."""
VALUE_MAP_MIN_HITS = 200
"""Fewest hits of a crystal, in the calibration sample and in Geant4's, for its value map to be fitted (else: the
identity)."""
IDENTITY_RANGE = 20.0
"""The identity map spans [-IDENTITY_RANGE, IDENTITY_RANGE] standard deviations of a shape variable."""


class ValueMap(nn.Module):
    """One monotone, piecewise-linear map per crystal of the shape variables (B, 121) -> (B, 121): the value at
    each of :data:`VALUE_MAP_POINTS` points of a uniform grid from ``lo`` in steps of ``step`` (per crystal),
    linear in between, constant beyond the ends. A uniform grid needs no search: the map exports to ONNX as a
    few element-wise operations and one gather. Starts as the identity."""

    def __init__(self) -> None:
        super().__init__()
        grid = torch.linspace(-IDENTITY_RANGE, IDENTITY_RANGE, VALUE_MAP_POINTS)
        self.register_buffer("lo", torch.full((N_CELLS,), -IDENTITY_RANGE))  # (121,)
        self.register_buffer("step", torch.full((N_CELLS,), float(grid[1] - grid[0])))  # (121,)
        self.register_buffer("table", grid.repeat(N_CELLS, 1))  # (121, points)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        points = self.table.shape[1]
        u = ((values - self.lo) / self.step).clamp(0.0, points - 1.0)  # (B, 121) position on the grid
        left = u.floor().clamp_max(points - 2.0)  # (B, 121)
        index = (left.long() + torch.arange(N_CELLS, device=values.device) * points).flatten()  # (B * 121,)
        flat = self.table.flatten()  # (121 * points,)
        v0, v1 = flat[index].view_as(u), flat[index + 1].view_as(u)
        return v0 + (u - left) * (v1 - v0)

    def fit(self, source: list[torch.Tensor], target: list[torch.Tensor]) -> None:
        """Per crystal, the map that takes the distribution of the values ``source[i]`` (any number, 1-D) to that of
        ``target[i]``: their :data:`VALUE_MAP_QUANTILES` quantiles joined, tabulated over the source's range; the
        identity where either has fewer than :data:`VALUE_MAP_MIN_HITS` values."""
        levels = np.linspace(0.0, 1.0, VALUE_MAP_QUANTILES)
        identity = ValueMap()
        lo, step, table = identity.lo.clone(), identity.step.clone(), identity.table.clone()
        for i, (a, b) in enumerate(zip(source, target)):
            if len(a) < VALUE_MAP_MIN_HITS or len(b) < VALUE_MAP_MIN_HITS:
                continue
            qa = np.maximum.accumulate(np.quantile(a.double().numpy(), levels))
            qb = np.quantile(b.double().numpy(), levels)
            if qa[-1] <= qa[0]:
                continue
            grid = np.linspace(qa[0], qa[-1], VALUE_MAP_POINTS)
            lo[i], step[i] = float(qa[0]), float(grid[1] - grid[0])
            table[i] = torch.as_tensor(np.interp(grid, qa, qb), dtype=table.dtype)
        self.lo.copy_(lo)
        self.step.copy_(step)
        self.table.copy_(table)


@dataclass
class StudentConfig(TwoStageConfig):
    """Configuration of a one-pass student (:class:`StudentModel`); the shape variables as the teacher's.

    Attributes:
        hidden: hidden layer widths of the fully connected network (SiLU). Default (512, 512, 512).
        teacher: the model family of the teacher (``flow``), for the record.
    """

    name: str = "student"
    hidden: tuple[int, ...] = (512, 512, 512)
    teacher: str = "flow"

    def __post_init__(self) -> None:
        if self.name != "student":
            raise ConfigError(f"model.name: a StudentConfig has name 'student', got {self.name!r}")
        super().__post_init__()
        self.check({"hidden": len(self.hidden) >= 1 and min(self.hidden) >= 1, "teacher": bool(self.teacher)})


class StudentModel(TwoStageModel):
    """A fully connected one-pass shape network with hit and value heads per crystal (see the module)."""

    name = "student"
    config_class = StudentConfig
    shape_loss_name = "distill_shape"

    def __init__(self, config: StudentConfig) -> None:
        super().__init__(config)
        layers: list[nn.Module] = []
        width = self.n_context + N_CELLS
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        layers.append(nn.Linear(width, 2 * N_CELLS))
        self.net = nn.Sequential(*layers)
        self.register_buffer("hit_offset", torch.zeros(N_CELLS))  # (121,) added to the hit logits
        self.value_map = ValueMap()

    @property
    def shape_noise_size(self) -> int:
        """121, the teacher's shape noise."""
        return N_CELLS

    def heads(self, noise: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hit logits (B, 121), before the calibrated offsets, and shape variables (B, 121) of shape noise
        (B, 121) under the context (B, :attr:`n_context`)."""
        out = self.net(torch.cat([context, noise], dim=1))  # (B, 242)
        return out[:, :N_CELLS], out[:, N_CELLS:]

    def threshold_variables(self) -> torch.Tensor:
        """The least shape variable of a hit cell (121,): its threshold's, plus :data:`THRESHOLD_MARGIN` so that
        the rounding of the way back to fractions cannot empty it."""
        zeros = torch.zeros(1, N_CELLS, device=self.hit_offset.device)
        return self.shape(self.shape.cell_threshold[None, :], zeros)[0] + THRESHOLD_MARGIN

    def sample_shape(self, noise: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Shape variables (B, 121): the value head through the value map where the calibrated hit logit is
        positive (at least the crystal's threshold), -inf (empty) elsewhere."""
        logits, values = self.heads(noise, context)
        hit = logits + self.hit_offset > 0  # (B, 121)
        values = torch.maximum(self.value_map(values), self.threshold_variables())
        return torch.where(hit, values, torch.full_like(values, -torch.inf))

    def distillation_losses(
        self, noise: torch.Tensor, context: torch.Tensor, teacher_y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The two heads' losses against the teacher's shape variables ``teacher_y`` (B, 121) for the same shape
        noise (B, 121) and context: ``hit`` (binary cross-entropy of the teacher's hits, mean per cell) and
        ``value`` (squared error where the teacher's cell is hit, mean per hit cell)."""
        hit = (self.shape.raw_fractions(teacher_y) >= self.shape.cell_threshold).to(teacher_y.dtype)  # (B, 121)
        logits, values = self.heads(noise, context)
        target = torch.nan_to_num(teacher_y, nan=0.0, posinf=0.0, neginf=0.0)
        squared = (values - target) ** 2 * hit
        return {"hit": functional.binary_cross_entropy_with_logits(logits, hit),
                "value": squared.sum() / hit.sum().clamp_min(1.0)}

    def shape_loss(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """A student learns from its teacher (``training.plan: distill``), not from Geant4's maps."""
        raise ConfigError("a student model is trained by distillation: training.plan distill with a teacher")

    def validation_step(self, batch: Batch) -> dict[str, float]:
        """Nothing of its own: its losses are against the teacher (the distillation plan's ``val_hit`` and
        ``val_value``), and its energy stage is the teacher's."""
        return {}

    def calibrate(
        self,
        maps_gev: np.ndarray,
        conditions: np.ndarray,
        particle_index: np.ndarray | None = None,
        *,
        seed: int = 0,
        batch_size: int = 8192,
    ) -> None:
        """Fit the two per-crystal corrections on Geant4 maps (N, 11, 11) in GeV with their conditions (N, 6)
        (training events, never the test sample), sampling the student under the same conditions:

        * the offsets of the hit logits, so that each crystal has a deposit in as many sampled showers as in
          Geant4's: minus the ``1 - p`` quantile of the crystal's sampled logits, ``p`` its Geant4 hit fraction;
        * the value map (:class:`ValueMap`), so that the shape variables of the crystal's sampled hits have the
          distribution of Geant4's (with their dequantisation noise, seeded by ``seed``)."""
        def heads(noise: torch.Tensor, c: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            x = self.condition_input(c, p)
            f = self.energy_stage.fraction(x, noise[:, :ENERGY_NOISE_DIM])
            return torch.cat(self.heads(noise[:, ENERGY_NOISE_DIM:], self.context(x, f)), dim=1)  # (B, 242)

        sampled, hit_probability = self.sampled_per_cell(
            maps_gev, conditions, particle_index, heads, seed, batch_size
        )
        logits, values = sampled[:, :N_CELLS], sampled[:, N_CELLS:]  # (N, 121) each
        self.hit_offset.copy_(-hit_edges(logits, hit_probability).to(self.hit_offset))
        hit = logits + self.hit_offset.cpu() > 0  # (N, 121)
        maps = torch.as_tensor(np.asarray(maps_gev, dtype=np.float32)).flatten(1)  # (N, 121)
        total = maps.sum(dim=1, keepdim=True).clamp_min(EMPTY_GEV)  # (N, 1)
        noise = torch.rand(maps.shape, generator=torch.Generator().manual_seed(seed))
        device = self.hit_offset.device
        with torch.no_grad():
            geant4 = self.shape((maps / total).to(device), noise.to(device)).cpu()  # (N, 121)
        self.value_map.fit([values[hit[:, i], i] for i in range(N_CELLS)],
                           [geant4[maps[:, i] > 0, i] for i in range(N_CELLS)])
