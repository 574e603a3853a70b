"""The conditional normalizing flow: deposited energy, then the shape, sampled in one pass.

* :mod:`caloforge.models.flow.config`   -- :class:`FlowConfig`
* :mod:`caloforge.models.flow.coupling` -- the coupling spline flow (zuko's parts)
* :mod:`caloforge.models.flow.model`    -- :class:`FlowModel` (the two-stage model with a shape flow)
"""

from caloforge.models.flow.config import FlowConfig
from caloforge.models.flow.model import FlowModel

__all__ = ["FlowConfig", "FlowModel"]
