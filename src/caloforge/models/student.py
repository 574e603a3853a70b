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
training events under their conditions, in each momentum bin (``calibration_p_edges_gev``): an offset on the hit
logits, so that each crystal is hit as often as in Geant4, and a monotone map of the values (:class:`ValueMap`),
so that each crystal's deposits, where hit, have Geant4's distribution (quantile mapping). Per momentum bin,
because the shape changes most with the momentum: fitted once for all momenta, the corrections leave the
teacher's large deposits in outer crystals, common below 0.5 GeV/c, at every momentum
(``docs/experiments/flow.md``). A hit cell's value is at least its threshold; the rest is empty.

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
MIN_BIN_EVENTS = 2000
"""Fewest calibration events of a momentum bin for corrections of its own (else: those fitted on all events)."""


class ValueMap(nn.Module):
    """One monotone, piecewise-linear map per momentum bin and crystal of the shape variables (B, 121) ->
    (B, 121): the value at each of :data:`VALUE_MAP_POINTS` points of a uniform grid from ``lo`` in steps of
    ``step`` (per bin and crystal), linear in between, constant beyond the ends. A uniform grid needs no search:
    the map exports to ONNX as a few element-wise operations and gathers. Starts as the identity.

    Args:
        bins: momentum bins, each with its own maps.
    """

    def __init__(self, bins: int = 1) -> None:
        super().__init__()
        grid = torch.linspace(-IDENTITY_RANGE, IDENTITY_RANGE, VALUE_MAP_POINTS)
        self.register_buffer("lo", torch.full((bins, N_CELLS), -IDENTITY_RANGE))  # (bins, 121)
        self.register_buffer("step", torch.full((bins, N_CELLS), float(grid[1] - grid[0])))  # (bins, 121)
        self.register_buffer("table", grid.repeat(bins, N_CELLS, 1))  # (bins, 121, points)

    def forward(self, values: torch.Tensor, bin_index: torch.Tensor) -> torch.Tensor:
        """The mapped values (B, 121) of ``values`` (B, 121) in momentum bins ``bin_index`` (B,)."""
        points = self.table.shape[2]
        u = ((values - self.lo[bin_index]) / self.step[bin_index]).clamp(0.0, points - 1.0)  # (B, 121) on the grid
        left = u.floor().clamp_max(points - 2.0)  # (B, 121)
        row = bin_index[:, None] * N_CELLS + torch.arange(N_CELLS, device=values.device)  # (B, 121)
        index = (left.long() + row * points).flatten()  # (B * 121,)
        flat = self.table.flatten()  # (bins * 121 * points,)
        v0, v1 = flat[index].view_as(u), flat[index + 1].view_as(u)
        return v0 + (u - left) * (v1 - v0)

    def reset(self) -> None:
        """Every map the identity."""
        identity = ValueMap(self.table.shape[0])
        self.load_state_dict(identity.to(self.table.device).state_dict())

    def fit(self, source: list[torch.Tensor], target: list[torch.Tensor], bins: list[int] | None = None) -> None:
        """Per crystal, the map that takes the distribution of the values ``source[i]`` (any number, 1-D) to that of
        ``target[i]``: their :data:`VALUE_MAP_QUANTILES` quantiles joined, tabulated over the source's range, set
        in the momentum bins ``bins`` (None: all); a crystal where either has fewer than
        :data:`VALUE_MAP_MIN_HITS` values keeps its map."""
        levels = np.linspace(0.0, 1.0, VALUE_MAP_QUANTILES)
        bins = list(range(self.table.shape[0])) if bins is None else bins
        for i, (a, b) in enumerate(zip(source, target)):
            if len(a) < VALUE_MAP_MIN_HITS or len(b) < VALUE_MAP_MIN_HITS:
                continue
            qa = np.maximum.accumulate(np.quantile(a.double().numpy(), levels))
            qb = np.quantile(b.double().numpy(), levels)
            if qa[-1] <= qa[0]:
                continue
            grid = np.linspace(qa[0], qa[-1], VALUE_MAP_POINTS)
            self.lo[bins, i] = float(qa[0])
            self.step[bins, i] = float(grid[1] - grid[0])
            self.table[bins, i] = torch.as_tensor(np.interp(grid, qa, qb), dtype=self.table.dtype,
                                                  device=self.table.device)


@dataclass
class StudentConfig(TwoStageConfig):
    """Configuration of a one-pass student (:class:`StudentModel`); the shape variables as the teacher's.

    Attributes:
        hidden: hidden layer widths of the fully connected network (SiLU). Default (512, 512, 512).
        teacher: the model family of the teacher (``flow``), for the record.
        calibration_p_edges_gev: the edges (GeV/c, ascending) of the momentum bins in which the per-crystal
            corrections are fitted (:meth:`StudentModel.calibrate`). Default (0.3, 0.6, 1.0, 1.5, 2.2): six bins,
            narrower at low momentum, where the shape changes fastest.
    """

    name: str = "student"
    hidden: tuple[int, ...] = (512, 512, 512)
    teacher: str = "flow"
    calibration_p_edges_gev: tuple[float, ...] = (0.3, 0.6, 1.0, 1.5, 2.2)

    def __post_init__(self) -> None:
        if self.name != "student":
            raise ConfigError(f"model.name: a StudentConfig has name 'student', got {self.name!r}")
        super().__post_init__()
        edges = self.calibration_p_edges_gev
        self.check({"hidden": len(self.hidden) >= 1 and min(self.hidden) >= 1, "teacher": bool(self.teacher),
                    "calibration_p_edges_gev": all(0 < a < b for a, b in zip((1e-9, *edges), edges))})


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
        bins = len(config.calibration_p_edges_gev) + 1
        self.register_buffer("p_edges_gev", torch.tensor(config.calibration_p_edges_gev, dtype=torch.float32))
        self.register_buffer("hit_offset", torch.zeros(bins, N_CELLS))  # (bins, 121) added to the hit logits
        self.value_map = ValueMap(bins)

    @property
    def shape_noise_size(self) -> int:
        """121, the teacher's shape noise."""
        return N_CELLS

    def heads(self, noise: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hit logits (B, 121), before the calibrated offsets, and shape variables (B, 121) of shape noise
        (B, 121) under the context (B, :attr:`n_context`)."""
        out = self.net(torch.cat([context, noise], dim=1))  # (B, 242)
        return out[:, :N_CELLS], out[:, N_CELLS:]

    def momentum_bin(self, context: torch.Tensor) -> torch.Tensor:
        """The momentum bin (B,) of each shower of a context (B, :attr:`n_context`), from its normalised momentum."""
        edges = (self.p_edges_gev - self.cond_mean[0]) / self.cond_std[0]  # (bins - 1,) normalised
        return (context[:, :1] >= edges[None, :]).sum(dim=1)

    def threshold_variables(self) -> torch.Tensor:
        """The least shape variable of a hit cell (121,): its threshold's, plus :data:`THRESHOLD_MARGIN` so that
        the rounding of the way back to fractions cannot empty it."""
        zeros = torch.zeros(1, N_CELLS, device=self.hit_offset.device)
        return self.shape(self.shape.cell_threshold[None, :], zeros)[0] + THRESHOLD_MARGIN

    def sample_shape(self, noise: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Shape variables (B, 121): the value head through the value map where the calibrated hit logit is
        positive (at least the crystal's threshold), -inf (empty) elsewhere."""
        logits, values = self.heads(noise, context)
        bin_index = self.momentum_bin(context)  # (B,)
        hit = logits + self.hit_offset[bin_index] > 0  # (B, 121)
        values = torch.maximum(self.value_map(values, bin_index), self.threshold_variables())
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
        (training events, never the test sample), sampling the student under the same conditions, in each
        momentum bin (a bin with fewer than :data:`MIN_BIN_EVENTS` events takes the corrections fitted on all
        events; a crystal with too few hits in its bin keeps the student's own values):

        * the offsets of the hit logits, so that each crystal has a deposit in as many sampled showers as in
          Geant4's: minus the ``1 - p`` quantile of the crystal's sampled logits, ``p`` its Geant4 hit fraction;
        * the value map (:class:`ValueMap`), so that the shape variables of the crystal's sampled hits have the
          distribution of Geant4's (with their dequantisation noise, seeded by ``seed``)."""
        def heads(noise: torch.Tensor, c: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            x = self.condition_input(c, p)
            f = self.energy_stage.fraction(x, noise[:, :ENERGY_NOISE_DIM])
            return torch.cat(self.heads(noise[:, ENERGY_NOISE_DIM:], self.context(x, f)), dim=1)  # (B, 242)

        sampled, _ = self.sampled_per_cell(maps_gev, conditions, particle_index, heads, seed, batch_size)
        logits, values = sampled[:, :N_CELLS], sampled[:, N_CELLS:]  # (N, 121) each
        maps = torch.as_tensor(np.asarray(maps_gev, dtype=np.float32)).flatten(1)  # (N, 121)
        total = maps.sum(dim=1, keepdim=True).clamp_min(EMPTY_GEV)  # (N, 1)
        noise = torch.rand(maps.shape, generator=torch.Generator().manual_seed(seed))
        device = self.hit_offset.device
        with torch.no_grad():
            geant4 = self.shape((maps / total).to(device), noise.to(device)).cpu()  # (N, 121)
        p = torch.as_tensor(np.asarray(conditions, dtype=np.float32)[:, 0])
        edges = self.p_edges_gev.cpu()
        bin_index = (p[:, None] >= edges[None, :]).sum(dim=1)  # (N,)
        self.value_map.reset()
        counts = torch.bincount(bin_index, minlength=len(edges) + 1)
        thin = [k for k in range(len(edges) + 1) if counts[k] < MIN_BIN_EVENTS]
        for k in range(-1 if thin else 0, len(edges) + 1):  # -1: all events, for the bins with too few
            if k >= 0 and k in thin:
                continue
            rows = torch.ones(len(p), dtype=torch.bool) if k < 0 else bin_index == k
            bins = thin if k < 0 else [k]
            g4_hit = maps[rows] > 0  # (n, 121)
            offsets = -hit_edges(logits[rows], g4_hit.double().mean(dim=0))  # (121,)
            self.hit_offset[bins] = offsets.to(self.hit_offset)
            hit, v, g = logits[rows] + offsets > 0, values[rows], geant4[rows]  # (n, 121) each
            self.value_map.fit([v[hit[:, i], i] for i in range(N_CELLS)],
                               [g[g4_hit[:, i], i] for i in range(N_CELLS)], bins)
