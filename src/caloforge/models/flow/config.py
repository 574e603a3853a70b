"""The configuration of the conditional normalizing flow (:class:`FlowConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from caloforge.models.base import ConfigError, ModelConfig

__all__ = ["FlowConfig"]


@dataclass
class FlowConfig(ModelConfig):
    """Configuration of the two-stage conditional flow (:class:`caloforge.models.flow.FlowModel`).

    Attributes:
        transforms: coupling spline transforms of the shape flow, each over a random half of the cells. Default 6.
        hidden: hidden layer widths of each transform's conditioner network. Default (256, 256).
        bins: bins of each rational-quadratic spline. Default 8.
        spline_bound: the splines act on [-spline_bound, spline_bound] of the standardised shape variables and
            are the identity outside, where sampling cannot reach. Default 15: the deposits of the outermost
            crystals, which hold none in 97 % of the showers, lie 3-10 standard deviations above the band of the
            empty cells.
        dequantisation: width of the uniform noise added to each cell fraction of E11x11 before the logit, and
            the fraction below which a sampled cell is empty (:class:`~caloforge.models.flow.preprocessing.
            ShapeTransform`). Default 1e-6.
        threshold: fraction of E11x11 below which a sampled cell is set to 0; None (the default): the
            dequantisation width.
        logit_alpha: margin of the logit transform. Default 1e-6.
        lr: Adam's learning rate of the shape flow and the energy model. Default 1e-3.
        weight_decay: Adam's (decoupled, AdamW) weight decay. Default 0.
    """

    name: str = "flow"
    transforms: int = 6
    hidden: tuple[int, ...] = (256, 256)
    bins: int = 8
    spline_bound: float = 15.0
    dequantisation: float = 1e-6
    threshold: float | None = None
    logit_alpha: float = 1e-6
    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name != "flow":
            raise ConfigError(f"model.name: a FlowConfig has name 'flow', got {self.name!r}")
        checks = {
            "transforms": self.transforms >= 1,
            "hidden": len(self.hidden) >= 1 and min(self.hidden) >= 1,
            "bins": self.bins >= 2,
            "spline_bound": 0 < self.spline_bound < 100,
            "dequantisation": 0 < self.dequantisation < 1e-2,
            "threshold": self.threshold is None or 0 <= self.threshold < 1,
            "logit_alpha": 0 < self.logit_alpha < 0.1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"model.{key}: invalid value {getattr(self, key)!r}")
