"""Generative shower models: conditions (N, 6) + particle type -> 11 x 11 hit maps in GeV.

* :mod:`caloforge.models.base`       -- :class:`ShowerModel` (sampling, checkpoints, training interface),
  typed configurations that reject unknown keys
* :mod:`caloforge.models.gan`        -- the seed's conditional GAN and its WGAN-GP variant, with the
  pre-trained condition regressor
* :mod:`caloforge.models.energy`     -- the deposited-energy model (E11x11 / p given the conditions, a
  mixture density network) that a GAN's maps can be rescaled with
* :mod:`caloforge.models.transforms` -- pure map transforms (E/p normalisation, log output space)

Load any saved model with :func:`load_model` (or ``ShowerModel.load``); give it to the fast simulation
with ``FastSimulation(model.samplers())``.
"""

from __future__ import annotations

import os

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
    model_registry,
    resolve_device,
)
from caloforge.models.gan import GAN, GANConfig

MODELS: dict[str, type[ShowerModel]] = {"gan": GAN}
"""The model families by configuration name."""


def model_config_from_dict(data: dict, *, where: str = "model.") -> ModelConfig:
    """The typed configuration of the model family named by ``data["name"]`` (unknown keys rejected)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.')}: expected a mapping, got {data!r}")
    name = data.get("name")
    if name not in MODELS:
        raise ConfigError(f"{where}name: {name!r} is not a known model; choose one of {', '.join(MODELS)}")
    return config_from_dict(MODELS[name].config_class, data, where=where)


def build_model(config: ModelConfig | dict) -> ShowerModel:
    """A new, untrained model from its configuration (dataclass or plain dict)."""
    if isinstance(config, dict):
        config = model_config_from_dict(config)
    return MODELS[config.name](config)


def load_model(path: str | os.PathLike, *, device: str | torch.device = "auto") -> ShowerModel:
    """Read a model checkpoint (``save()`` output, ``best.pt`` or ``last.pt`` of a training run)."""
    return ShowerModel.load(path, device=device)


__all__ = [
    "GAN",
    "MODELS",
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
    "model_config_from_dict",
    "model_registry",
    "resolve_device",
]
