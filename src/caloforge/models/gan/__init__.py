"""The seed's conditional GAN for 11 x 11 EMC hit maps (SPEC section 4, seeds 000-002), and its WGAN-GP variant.

LHCb-style conditional GAN (Chekalina et al., EPJ Web Conf. 214 (2019) 02034): the Monte Carlo truth
(the 6 conditions, :data:`caloforge.detector.CONDITION_NAMES`) is the condition, and a regressor,
pre-trained on Geant4 maps to predict the conditions from a map, constrains the generator through its
loss on generated maps.

Generator (:class:`Generator`, 46,041 trainable parameters for one particle type and the default
``noise_dim`` = 134; the seed says "about 46k" without giving the noise size, 134 reproduces it)::

    noise (134) + normalised conditions (6) [+ one-hot type] -> Dense(16*4*4) -> reshape (16, 4, 4)
    -> UpSample(3) (16, 12, 12) -> Conv(16, 4x4, same) + ReLU -> 2 x [Conv(16, 3x3, same) + ReLU]
    -> Conv(8, 3x3, same) + ReLU -> Conv(1, 2x2, valid) + ReLU -> (1, 11, 11)

Discriminator / critic (:class:`Discriminator`)::

    map normalised by the momentum (1, 11, 11) -> Conv(32, 2x2) + LeakyReLU + Dropout(0.1) (32, 10, 10)
    -> 3 x [Conv(16, 3x3, same) + LeakyReLU + Dropout(0.1)] (16, 10, 10) -> AvgPool(2x2) (16, 5, 5)
    -> Flatten (400) -> minibatch discrimination (Salimans et al. 2016, arXiv:1606.03498) (400 + K)
    -> concatenate(minibatch features, conditions, sparsity, energy, energy - momentum)
    -> Dense(20) + LeakyReLU -> Dense(10) + LeakyReLU -> [Dense(2) + LeakyReLU, Dense(5) + LeakyReLU]
    -> concatenate (7) -> Dense(1)

The seed's slide shows Dense(2) and Dense(5) side by side after Dense(10), then a concatenation; both
heads are read here as parallel branches of the Dense(10) output. The output is a logit: with
``loss: gan`` it goes through a sigmoid inside the binary cross-entropy (non-saturating generator loss,
Goodfellow et al. 2014); with ``loss: wgan-gp`` it is the critic score itself (Gulrajani et al. 2017,
arXiv:1704.00028: gradient penalty ``lambda * (|grad| - 1)^2`` on interpolates, ``n_critic`` critic
steps per generator step). Minibatch discrimination couples the samples of a batch, which the
per-sample gradient penalty assumes away: switch it off for WGAN-GP.

Choices the seed does not state: weights start from the Keras defaults (Glorot-uniform, zero biases,
:func:`keras_init_`); the minibatch-discrimination outputs are means over the batch, not sums; the
generator's final ReLU passes a small gradient below zero during training (``output_gradient_leak``,
forward pass unchanged) so that it cannot die; the regressor (:class:`Regressor`) is a small CNN on
``log(1 + E / 1 MeV)``; the sparsity is the fraction of crystals above ``sparsity_threshold_gev``, a
hard count as in CaloGAN (arXiv:1705.02355) that passes no gradient.

Additions beyond the seed, each an option of :class:`GANConfig` and off by default: a learned mean shower on
the generator output, a polynomial in the conditions (:class:`MeanShower`); a log output space capped at one
momentum per crystal (:data:`LOG_OUTPUT_MAX`); discriminator features in units of the momentum
(``physics_features``) and without the sparsity (``sparsity_feature``); batch-level terms in the generator loss
(:mod:`caloforge.models.gan.generator_loss`): an energy-sum constraint (:func:`energy_sum_constraint`), a
shower-shape MMD (:func:`shape_mmd`), a lateral-moment constraint (:func:`shape_moment_constraint`) and an MMD of
the shower fluctuation at fixed conditions from pairs of nearest neighbours (:func:`neighbour_mmd`); the deposited
energy drawn from a separate model (``energy_model``, :mod:`caloforge.models.energy`); a fully connected
generator for distillation (``generator_hidden``, :class:`MLPGenerator`). For inference and export
:meth:`Generator.fused` gives the same function with its linear first stage as one matrix
(:func:`first_stage_as_linear`). The recipes are ``configs/*.yaml``; what each addition changed, with the
numbers, is in ``docs/experiments/gan.md``.

Modules: :mod:`~caloforge.models.gan.config` (:class:`GANConfig`), :mod:`~caloforge.models.gan.networks`,
:mod:`~caloforge.models.gan.mean_shower`, :mod:`~caloforge.models.gan.losses`,
:mod:`~caloforge.models.gan.generator_loss` (the table of generator loss terms), :mod:`~caloforge.models.gan.model`
(:class:`GAN`). The differentiable shower shapes the losses use are in :mod:`caloforge.showers.shapes_torch`.
"""

from caloforge.models.gan.config import GANConfig
from caloforge.models.gan.generator_loss import GENERATOR_TERMS, GeneratorPass, generator_terms
from caloforge.models.gan.losses import (
    MMD_BANDWIDTHS,
    MMD_FEATURES,
    NEIGHBOUR_FEATURES,
    energy_sum_constraint,
    gradient_penalty,
    neighbour_mmd,
    shape_mmd,
    shape_moment_constraint,
    standardised_mmd,
)
from caloforge.models.gan.mean_shower import (
    CONDITION_CLAMP,
    MAX_MEAN_SHOWER_DEGREE,
    MEAN_SHOWER_RIDGE,
    POLYNOMIAL_MEAN_SHOWER_INIT_SCALE,
    MeanShower,
)
from caloforge.models.gan.model import GAN
from caloforge.models.gan.networks import (
    LOG_OUTPUT_MAX,
    SEED_GENERATOR_CHANNELS,
    Discriminator,
    FusedGenerator,
    Generator,
    MinibatchDiscrimination,
    MLPGenerator,
    Regressor,
    ReLUWithLeakyGradient,
    first_stage_as_linear,
    keras_init_,
)
from caloforge.showers.shapes_torch import (
    LAT_R0_CRYSTALS,
    SOFT_HIT_SCALE_GEV,
    containment_fractions,
    lateral_moments,
    lateral_shape_moments,
    shape_ratios,
    shower_features,
)

__all__ = [
    "CONDITION_CLAMP",
    "GAN",
    "GENERATOR_TERMS",
    "LAT_R0_CRYSTALS",
    "LOG_OUTPUT_MAX",
    "MAX_MEAN_SHOWER_DEGREE",
    "MEAN_SHOWER_RIDGE",
    "MMD_BANDWIDTHS",
    "MMD_FEATURES",
    "NEIGHBOUR_FEATURES",
    "POLYNOMIAL_MEAN_SHOWER_INIT_SCALE",
    "SEED_GENERATOR_CHANNELS",
    "SOFT_HIT_SCALE_GEV",
    "Discriminator",
    "FusedGenerator",
    "GANConfig",
    "Generator",
    "GeneratorPass",
    "MLPGenerator",
    "MeanShower",
    "MinibatchDiscrimination",
    "ReLUWithLeakyGradient",
    "Regressor",
    "containment_fractions",
    "energy_sum_constraint",
    "first_stage_as_linear",
    "generator_terms",
    "gradient_penalty",
    "keras_init_",
    "lateral_moments",
    "lateral_shape_moments",
    "neighbour_mmd",
    "shape_mmd",
    "shape_moment_constraint",
    "shape_ratios",
    "shower_features",
    "standardised_mmd",
]
