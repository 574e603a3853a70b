"""The configuration of the conditional GAN (:class:`GANConfig`): architecture, loss terms, optimisers.

What each option did when it was tried, with the numbers, is in ``docs/experiments/gan.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from caloforge.models.base import ConfigError, ModelConfig, RemovedKey
from caloforge.models.gan.losses import MMD_FEATURES, NEIGHBOUR_FEATURES
from caloforge.models.gan.mean_shower import MAX_MEAN_SHOWER_DEGREE
from caloforge.models.gan.networks import SEED_GENERATOR_CHANNELS
from caloforge.models.transforms import OUTPUT_TRANSFORMS

_REMOVED_2026_12_06 = {"removed_on": "2026-12-06", "last_release": "caloforge 0.1.0 (git commit cf77fbe)"}


@dataclass
class GANConfig(ModelConfig):
    """Configuration of the conditional GAN (both loss variants). Weights of loss terms are dimensionless
    (each term is); 0 switches a term off.

    Attributes:
        loss: ``"gan"`` (non-saturating binary cross-entropy, the seed) or ``"wgan-gp"``. Default ``"gan"``.
        noise_dim: length of the generator's Gaussian noise vector. Default 134 (the seed's 46,041 generator
            parameters).
        generator_channels: output channels of the generator's 4x4 convolution and of each 3x3 convolution
            after it (their number sets the depth); the dense layer feeds ``generator_channels[0]`` maps
            of 4 x 4. Default the seed's (16, 16, 16, 8).
        generator_hidden: widths of the hidden layers of a fully connected generator (:class:`MLPGenerator`,
            for distillation, :mod:`caloforge.training.distill`) in place of the convolutional one. Default ()
            (the convolutional one of ``generator_channels``).
        output_transform: the generator's output space, ``"none"`` (E/p) or ``"log"``
            (:mod:`caloforge.models.transforms`). Default ``"none"``.
        log_epsilon: the ``eps`` of the ``log`` transform, a fraction of the momentum. Default 1e-4.
        output_gradient_leak: backward slope of the generator's final ReLU below 0, forward pass unchanged
            (:class:`ReLUWithLeakyGradient`); 0 is the plain ReLU. Default 0.01.
        dropout: dropout probability in the discriminator. Default 0.1.
        leaky_slope: negative slope of the LeakyReLUs. Default 0.2.
        minibatch_discrimination: use the critic's minibatch-discrimination layer. Default True.
        minibatch_kernels, minibatch_kernel_dim: its number of kernels (outputs) and their dimension.
            Defaults 10 and 5.
        sparsity_threshold_gev: the sparsity is the fraction of the 121 crystals above this, GeV. Default 1e-4.
        sparsity_feature: give the discriminator the sparsity (the seed does), a hard count without input
            gradient. Default True.
        physics_features: the discriminator's extra inputs: ``"gev"`` (the seed), total energy E and E - p in
            GeV; ``"fraction"``, E / p and (E - p) / p. Default ``"gev"``.
        mean_shower_bias: add a learned mean shower (:class:`MeanShower`, in the generator's output space,
            fitted to the Geant4 maps before training) to the generator's output before its final ReLU.
            Default False.
        mean_shower_degree: with ``mean_shower_bias``, the polynomial degree of the mean shower in the
            normalised conditions, 0 (one fixed map) to :data:`MAX_MEAN_SHOWER_DEGREE`. Default 0.
        energy_constraint_weight: weight of the energy-sum constraint (:func:`energy_sum_constraint`). Default 0.
        shape_mmd_weight: weight of the shower-shape MMD (:func:`shape_mmd`). Default 0.
        shape_mmd_features: its features: ``"containment"`` (:func:`containment_fractions`) or ``"shower"``
            (:func:`shower_features`). Default ``"containment"``.
        shape_moment_weight: weight of the lateral-moment constraint (:func:`shape_moment_constraint`). Default 0.
        neighbour_mmd_weight: weight of the neighbour-pair MMD (:func:`neighbour_mmd`), which needs training
            batches with nearest neighbours and costs one more generator pass per generator step. Default 0.
        neighbour_mmd_features: its features: ``"containment"`` (differences of E1x1/p, E3x3/p, E5x5/p,
            E11x11/p) or ``"shape"`` (of E1x1, E3x3, E5x5, E7x7 over E11x11, :func:`shape_ratios`).
            Default ``"containment"``.
        energy_model: draw the deposited energy E11x11 / p from a separate model of the conditions
            (:mod:`caloforge.models.energy`) and rescale each generated map to it; the noise vector grows by
            two numbers, and in training the critic and the loss terms see the rescaled maps. Default False.
        gp_lambda: gradient-penalty weight (WGAN-GP). Default 10.
        n_critic: discriminator steps per generator step. Default 1.
        regressor_weight: weight of the regressor's mean squared error on the conditions of generated maps
            (0: no regressor). Default 1.
        regressor_epochs: epochs of regressor pre-training on Geant4 maps before the GAN epochs. Default 2.
        lr_generator, lr_discriminator, lr_regressor: Adam learning rates. Defaults 2e-4, 2e-4, 1e-3.
        betas: Adam betas of the generator and discriminator. Default (0.5, 0.999).
    """

    removed_keys: ClassVar[dict[str, RemovedKey]] = {
        "cell_covariance_weight": RemovedKey(0.0, **_REMOVED_2026_12_06),
        "cell_covariance_size": RemovedKey(5, **_REMOVED_2026_12_06),
        "condition_moment_weight": RemovedKey(0.0, **_REMOVED_2026_12_06),
        "regressor_loss": RemovedKey("mse", **_REMOVED_2026_12_06),
    }
    """Options of earlier versions, accepted (and ignored) at the value that did nothing."""

    name: str = "gan"
    loss: Literal["gan", "wgan-gp"] = "gan"
    noise_dim: int = 134
    generator_channels: tuple[int, ...] = SEED_GENERATOR_CHANNELS
    generator_hidden: tuple[int, ...] = ()
    output_transform: Literal["none", "log"] = "none"
    log_epsilon: float = 1e-4
    output_gradient_leak: float = 0.01
    dropout: float = 0.1
    leaky_slope: float = 0.2
    minibatch_discrimination: bool = True
    minibatch_kernels: int = 10
    minibatch_kernel_dim: int = 5
    sparsity_threshold_gev: float = 1e-4
    sparsity_feature: bool = True
    physics_features: Literal["gev", "fraction"] = "gev"
    mean_shower_bias: bool = False
    mean_shower_degree: int = 0
    energy_constraint_weight: float = 0.0
    shape_mmd_weight: float = 0.0
    shape_mmd_features: Literal["containment", "shower"] = "containment"
    shape_moment_weight: float = 0.0
    neighbour_mmd_weight: float = 0.0
    neighbour_mmd_features: Literal["containment", "shape"] = "containment"
    energy_model: bool = False
    gp_lambda: float = 10.0
    n_critic: int = 1
    regressor_weight: float = 1.0
    regressor_epochs: int = 2
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    lr_regressor: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name != "gan":
            raise ConfigError(f"model.name: a GANConfig has name 'gan', got {self.name!r}")
        if self.output_transform not in OUTPUT_TRANSFORMS:
            raise ConfigError(f"model.output_transform: choose one of {', '.join(OUTPUT_TRANSFORMS)}")
        checks = {
            "noise_dim": self.noise_dim > 0,
            "generator_channels": len(self.generator_channels) >= 2 and min(self.generator_channels) >= 1,
            "generator_hidden": not self.generator_hidden or min(self.generator_hidden) >= 1,
            "mean_shower_degree": 0 <= self.mean_shower_degree <= MAX_MEAN_SHOWER_DEGREE,
            "log_epsilon": self.log_epsilon > 0,
            "output_gradient_leak": 0 <= self.output_gradient_leak < 1,
            "dropout": 0 <= self.dropout < 1,
            "minibatch_kernels": self.minibatch_kernels > 0,
            "minibatch_kernel_dim": self.minibatch_kernel_dim > 0,
            "sparsity_threshold_gev": self.sparsity_threshold_gev > 0,
            "physics_features": self.physics_features in ("gev", "fraction"),
            "shape_mmd_features": self.shape_mmd_features in MMD_FEATURES,
            "energy_constraint_weight": self.energy_constraint_weight >= 0,
            "shape_mmd_weight": self.shape_mmd_weight >= 0,
            "shape_moment_weight": self.shape_moment_weight >= 0,
            "neighbour_mmd_weight": self.neighbour_mmd_weight >= 0,
            "neighbour_mmd_features": self.neighbour_mmd_features in NEIGHBOUR_FEATURES,
            "gp_lambda": self.gp_lambda >= 0,
            "n_critic": self.n_critic >= 1,
            "regressor_weight": self.regressor_weight >= 0,
            "regressor_epochs": self.regressor_epochs >= 0,
            "lr_generator": self.lr_generator > 0,
            "lr_discriminator": self.lr_discriminator > 0,
            "lr_regressor": self.lr_regressor > 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"model.{key}: invalid value {getattr(self, key)!r}")
        if self.mean_shower_degree > 0 and not self.mean_shower_bias:
            raise ConfigError("model.mean_shower_degree needs model.mean_shower_bias: true")
        if self.regressor_weight > 0 and self.regressor_epochs == 0:
            raise ConfigError(
                "model.regressor_epochs: the regressor must be pre-trained for at least one epoch "
                "(or set model.regressor_weight: 0 to train without it)"
            )
