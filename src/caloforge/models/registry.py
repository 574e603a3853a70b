"""The model families: one table from configuration name to class, the classes imported on first use (so that
``import caloforge.models`` does not import PyTorch).

A new family registers with one line in :data:`FAMILIES`; :func:`caloforge.models.build_model`,
:func:`caloforge.models.model_config_from_dict` and checkpoint loading (:meth:`ShowerModel.load`) find it there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from caloforge.models.base import ShowerModel

FAMILIES: dict[str, str] = {
    "gan": "caloforge.models.gan:GAN",
    "flow": "caloforge.models.flow:FlowModel",
    "student": "caloforge.models.student:StudentModel",
    "diffusion": "caloforge.models.diffusion:DiffusionModel",
}
"""Model name (``model.name`` of a configuration, ``"model"`` of a checkpoint) -> ``"module:Class"`` of its
:class:`~caloforge.models.base.ShowerModel` subclass."""


def model_class(name: str) -> type[ShowerModel]:
    """The class of the model family ``name`` (imported now); KeyError for an unknown name."""
    module, _, attribute = FAMILIES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def model_registry() -> dict[str, type[ShowerModel]]:
    """Every model family by name (imports them all)."""
    return {name: model_class(name) for name in FAMILIES}
