"""Generative shower models: conditions (N, 6) + particle type -> 11 x 11 hit maps in GeV.

* :mod:`caloforge.models.base`       -- :class:`ShowerModel` (sampling, checkpoints, training interface),
  typed configurations that reject unknown keys
* :mod:`caloforge.models.registry`   -- the model families by name (:data:`~caloforge.models.registry.FAMILIES`)
* :mod:`caloforge.models.gan`        -- the seed's conditional GAN and its WGAN-GP variant, with the
  pre-trained condition regressor
* :mod:`caloforge.models.energy`     -- the deposited-energy model (E11x11 / p given the conditions, a
  mixture density network) that a GAN's maps can be rescaled with
* :mod:`caloforge.models.shape_space` -- the shape variables of the two-stage models (cell fractions of
  E11x11, dequantised, logit, standardised)
* :mod:`caloforge.models.two_stage`  -- the energy stage + shape stage models (:class:`TwoStageModel`)
* :mod:`caloforge.models.flow`       -- the conditional normalizing flow, a two-stage model
* :mod:`caloforge.models.transforms` -- pure map transforms (E/p normalisation, log output space)
* :mod:`caloforge.models.inputs`     -- checked condition arrays and the generators' noise (numpy only)

Load any saved model with :func:`load_model` (or ``ShowerModel.load``); give it to the fast simulation
with ``FastSimulation(model.samplers())``.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from caloforge.models.registry import FAMILIES, model_class, model_registry

if TYPE_CHECKING:
    import torch

    from caloforge.models.base import (
        Batch,
        CheckpointError,
        ConfigError,
        ModelConfig,
        ParticleSampler,
        ShowerModel,
        TrainingStep,
        config_from_dict,
        config_to_dict,
        resolve_device,
    )
    from caloforge.models.gan import GAN, GANConfig

_LAZY = {
    **dict.fromkeys(
        ["Batch", "CheckpointError", "ConfigError", "ModelConfig", "ParticleSampler", "ShowerModel", "TrainingStep",
         "config_from_dict", "config_to_dict", "resolve_device"],
        "caloforge.models.base",
    ),
    "GAN": "caloforge.models.gan",
    "GANConfig": "caloforge.models.gan",
}
"""Names imported on first use: PyTorch loads only when a model does, so that the ONNX Runtime path of the
fast simulation (:mod:`caloforge.export.runtime`, the shipped files of :mod:`caloforge.models.pretrained`)
starts without it."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_config_from_dict(data: dict, *, where: str = "model.") -> ModelConfig:
    """The typed configuration of the model family named by ``data["name"]`` (unknown keys rejected)."""
    from caloforge.models.base import ConfigError, config_from_dict

    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.')}: expected a mapping, got {data!r}")
    name = data.get("name")
    if name not in FAMILIES:
        raise ConfigError(f"{where}name: {name!r} is not a known model; choose one of {', '.join(FAMILIES)}")
    return config_from_dict(model_class(name).config_class, data, where=where)


def build_model(config: ModelConfig | dict) -> ShowerModel:
    """A new, untrained model from its configuration (dataclass or plain dict)."""
    if isinstance(config, dict):
        config = model_config_from_dict(config)
    return model_class(config.name)(config)


def load_model(path: str | os.PathLike, *, device: str | torch.device = "auto") -> ShowerModel:
    """Read a model checkpoint (``save()`` output, ``best.pt`` or ``last.pt`` of a training run)."""
    from caloforge.models.base import ShowerModel

    return ShowerModel.load(path, device=device)


__all__ = [
    "FAMILIES",
    "GAN",
    "Batch",
    "CheckpointError",
    "ConfigError",
    "GANConfig",
    "ModelConfig",
    "ParticleSampler",
    "ShowerModel",
    "TrainingStep",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "load_model",
    "model_class",
    "model_config_from_dict",
    "model_registry",
    "resolve_device",
]
