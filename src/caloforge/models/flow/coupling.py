"""The shape flow's transforms: rational-quadratic spline couplings built from zuko's parts.

Each transform splines one half of the 121 cells (a random half, fixed by :data:`MASK_SEED`) given the other
half and the context: zuko's :class:`~zuko.flows.coupling.GeneralCouplingTransform` with
:class:`~zuko.transforms.MonotonicRQSTransform` (Durkan et al., arXiv:1906.04032). The one change to zuko is how
the two halves are put back together: one gather instead of zuko's two index assignments into an empty tensor,
which the ONNX exporter turns into an invalid graph. Sampling inverts each transform in one network pass over
half the cells.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor
from zuko.distributions import DiagNormal
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.lazy import Flow, UnconditionalDistribution
from zuko.transforms import CouplingTransform, MonotonicRQSTransform

__all__ = ["MASK_SEED", "SPLINE_MIN_SLOPE", "spline_coupling_flow"]

MASK_SEED = 0
"""Seed of the random halves of the transforms (the same architecture for every run; saved as buffers)."""
SPLINE_MIN_SLOPE = 1e-3
"""The splines' smallest derivative (zuko's default)."""


class _GatherCoupling(CouplingTransform):
    """zuko's coupling transform with the halves merged by one gather (exports to ONNX)."""

    def __init__(self, meta, mask: Tensor) -> None:
        super().__init__(meta, mask)
        self.order = torch.argsort(torch.cat([self.idx_a, self.idx_b]))  # position of each feature in [a, b]

    def merge(self, x_a: Tensor, x_b: Tensor, shape: torch.Size) -> Tensor:
        return torch.cat([x_a, x_b], dim=-1)[..., self.order]


class _SplineCoupling(GeneralCouplingTransform):
    """zuko's lazy general coupling transform whose transform merges by gather (:class:`_GatherCoupling`)."""

    def forward(self, c: Tensor | None = None) -> CouplingTransform:
        return _GatherCoupling(partial(self.meta, c), self.mask)


def spline_coupling_flow(
    features: int, context: int, transforms: int, hidden: tuple[int, ...], bins: int, bound: float
) -> Flow:
    """A conditional coupling flow of ``transforms`` rational-quadratic spline couplings with ``bins`` bins on
    [-``bound``, ``bound``] (the identity outside) over ``features`` variables, each conditioned by an MLP of widths
    ``hidden`` on the other half and ``context`` features, over a standard normal base."""
    generator = torch.Generator().manual_seed(MASK_SEED)
    layers = []
    for _ in range(transforms):
        mask = torch.randperm(features, generator=generator) < features // 2  # True: the half kept as is
        layers.append(
            _SplineCoupling(
                features,
                context,
                mask=mask,
                univariate=partial(MonotonicRQSTransform, bound=bound, slope=SPLINE_MIN_SLOPE),
                shapes=[(bins,), (bins,), (bins - 1,)],
                hidden_features=tuple(hidden),
            )
        )
    base = UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features), buffer=True)
    return Flow(layers, base)
