"""The terms of the GAN's generator loss besides the adversarial one: one table, ``name -> (weight field,
function)``, from which each model keeps the terms its configuration switches on.

A term is a function of the :class:`GeneratorPass` (the generated maps of one generator step, the batch and the
model) that returns a scalar; the generator loss is the adversarial loss plus ``weight * term`` for each term
with a positive weight, in the order of :data:`GENERATOR_TERMS`, and each term's value is logged under its name.
Adding a term is one entry here and its weight in :class:`caloforge.models.gan.GANConfig`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from caloforge.models.base import Batch
from caloforge.models.gan.losses import energy_sum_constraint, neighbour_mmd, shape_mmd, shape_moment_constraint
from caloforge.models.inputs import N_CONDITIONS
from caloforge.models.transforms import model_to_gev

if TYPE_CHECKING:
    from caloforge.models.gan.config import GANConfig
    from caloforge.models.gan.model import GAN


@dataclass(frozen=True)
class GeneratorPass:
    """What the loss terms of one generator step see.

    Attributes:
        model: the GAN being trained.
        batch: the Geant4 batch (``batch.maps_gev`` (B, 11, 11) GeV, raw conditions (B, 6)).
        cond: (B, 6 [+ n_particles]) the networks' condition input of the batch.
        fake_maps_gev: (B, 1, 11, 11) the generated maps in GeV for the batch conditions.
    """

    model: GAN
    batch: Batch
    cond: torch.Tensor
    fake_maps_gev: torch.Tensor

    @property
    def fake_gev(self) -> torch.Tensor:
        """(B, 11, 11) the generated maps in GeV: a new view on each access, so that every term's gradient
        reaches :attr:`fake_maps_gev` on its own, summed there in the same order whichever terms are on."""
        return self.fake_maps_gev.squeeze(1)

    @property
    def p_gev(self) -> torch.Tensor:
        """(B,) the momenta, GeV/c."""
        return self.batch.conditions[:, 0]


LossTerm = Callable[[GeneratorPass], torch.Tensor]
"""A generator loss term: a scalar from a :class:`GeneratorPass`."""


def _energy_constraint(g: GeneratorPass) -> torch.Tensor:
    return energy_sum_constraint(g.fake_gev, g.batch.maps_gev, g.p_gev)


def _shape_mmd(g: GeneratorPass) -> torch.Tensor:
    return shape_mmd(g.fake_gev, g.batch.maps_gev, g.p_gev, g.model.config.shape_mmd_features)


def _shape_moments(g: GeneratorPass) -> torch.Tensor:
    return shape_moment_constraint(g.fake_gev, g.batch.maps_gev)


def _neighbour_mmd(g: GeneratorPass) -> torch.Tensor:
    """The neighbour-pair MMD: one more generator pass, for the neighbours' conditions (fresh noise)."""
    batch, model, cfg = g.batch, g.model, g.model.config
    if batch.neighbour_maps_gev is None or batch.neighbour_conditions is None:
        raise ValueError("neighbour_mmd_weight > 0 needs batches with neighbours (uses_neighbours)")
    p_nb = batch.neighbour_conditions[:, 0]  # (B,)
    cond_nb = model.condition_input(batch.neighbour_conditions, batch.particle)
    fake_nb = model._fake(batch.neighbour_conditions, cond_nb)  # (B, 1, 11, 11)
    e_nb = model_to_gev(fake_nb, p_nb, kind=cfg.output_transform, epsilon=cfg.log_epsilon)  # (B, 1, 11, 11)
    return neighbour_mmd(
        g.fake_gev, e_nb.squeeze(1), batch.maps_gev, batch.neighbour_maps_gev, g.p_gev, p_nb,
        cfg.neighbour_mmd_features,
    )


def _regressor_mse(g: GeneratorPass) -> torch.Tensor:
    """The pre-trained regressor's mean squared error on the normalised conditions of the generated maps."""
    pred = g.model.regressor(g.fake_maps_gev, g.cond[:, N_CONDITIONS:])  # (B, 6)
    return F.mse_loss(pred, g.cond[:, :N_CONDITIONS])


GENERATOR_TERMS: dict[str, tuple[str, LossTerm]] = {
    "energy_constraint": ("energy_constraint_weight", _energy_constraint),
    "shape_mmd": ("shape_mmd_weight", _shape_mmd),
    "shape_moments": ("shape_moment_weight", _shape_moments),
    "neighbour_mmd": ("neighbour_mmd_weight", _neighbour_mmd),
    "regressor_mse": ("regressor_weight", _regressor_mse),
}
"""Log name -> (the :class:`GANConfig` field of its weight, the term), in the order they are evaluated."""


def generator_terms(config: GANConfig) -> dict[str, tuple[float, LossTerm]]:
    """The terms ``config`` switches on: log name -> (weight, term), in the order of :data:`GENERATOR_TERMS`."""
    terms = {}
    for name, (field, term) in GENERATOR_TERMS.items():
        weight = getattr(config, field)
        if weight > 0:
            terms[name] = (weight, term)
    return terms
