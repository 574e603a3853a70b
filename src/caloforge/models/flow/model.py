"""The two-stage conditional normalizing flow (:class:`FlowModel`): the deposited energy, then the shape.

The energy stage and the shape variables are those of every two-stage model (:mod:`caloforge.models.two_stage`).
The shape is modelled by a conditional coupling flow with rational-quadratic splines
(:mod:`caloforge.models.flow.coupling`): each transform splines a random half of the cells given the other half
and the context, so that sampling inverts it in one network pass over half the cells, as CaloINN does
(arXiv:2312.09290). It is trained by maximum likelihood, with the energy stage.

Sampling takes 2 + 121 standard normal numbers per shower (:attr:`FlowModel.noise_size`): two for the energy
stage, 121 for the flow's base distribution.
"""

from __future__ import annotations

import torch

from caloforge.models.flow.config import FlowConfig
from caloforge.models.flow.coupling import spline_coupling_flow
from caloforge.models.shape_space import N_CELLS
from caloforge.models.two_stage import TwoStageModel

__all__ = ["FlowModel"]


class FlowModel(TwoStageModel):
    """Conditional normalizing flow for 11 x 11 EMC maps: energy stage and shape flow (see the module)."""

    name = "flow"
    config_class = FlowConfig
    shape_loss_name = "nll_shape"

    def __init__(self, config: FlowConfig) -> None:
        super().__init__(config)
        self.flow = spline_coupling_flow(
            N_CELLS, self.n_context, config.transforms, tuple(config.hidden), config.bins, config.spline_bound
        )

    @property
    def shape_noise_size(self) -> int:
        """121: the flow's standard normal base, one number per cell."""
        return N_CELLS

    def shape_loss(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per cell of the shape variables ``y`` (B, 121), mean over the batch."""
        return -self.flow(context).log_prob(y).mean() / N_CELLS

    def sample_shape(self, noise: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The flow's inverse of its base noise (B, 121) under the context (B, :attr:`n_context`)."""
        return self.flow(context).transform.inv(noise)

    @property
    def faster_in_onnx_runtime(self) -> bool:
        """False: the coupling flow samples faster in PyTorch on a CPU (the measurement: docs/engine.md), and
        skips the export at loading."""
        return False
