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
per-sample gradient penalty assumes away: switch it off for WGAN-GP (``configs/wgangp.yaml`` does).

Choices the seed does not state: weights start from the Keras defaults (Glorot-uniform, zero biases,
:func:`keras_init_`); the minibatch-discrimination outputs are means over the batch, not sums; the
generator's final ReLU passes a small gradient below zero during training (``output_gradient_leak``,
forward pass unchanged) so that it cannot die; the regressor (:class:`Regressor`) is a small CNN on
``log(1 + E / 1 MeV)``; the sparsity is the fraction of crystals above ``sparsity_threshold_gev``, a
hard count as in CaloGAN (arXiv:1705.02355) that passes no gradient (a soft count steep enough to
mean anything gave input gradients of order 1/threshold, and gradient penalties of 1e3).
Additions beyond the seed, all off by default and switched on in ``configs/default_<particle>.yaml``
(the models shipped until 2026-12-01): a learned mean-shower bias on the generator output
(``mean_shower_bias``; with ``mean_shower_degree`` a polynomial in the conditions, :class:`MeanShower`),
discriminator features in units of the momentum (``physics_features``), and two batch-level terms in
the generator loss, an energy-sum constraint (:func:`energy_sum_constraint`) and a shower-shape MMD
(:func:`shape_mmd`). The candidate recipes ``configs/polymean_<particle>.yaml`` add a mean shower
that is a cubic in the conditions (``mean_shower_degree``), a log output space capped at one momentum
per crystal (:data:`LOG_OUTPUT_MAX`) and a critic without the gradient-free sparsity input
(``sparsity_feature``); ``configs/pairs_<particle>.yaml`` fine-tune those with a term on the shower
fluctuation at fixed conditions, from pairs of nearest neighbours in condition space
(:func:`neighbour_mmd`); ``configs/energy_<particle>.yaml`` fine-tune the nbmmd runs with the deposited
energy drawn from a separate model of E11x11 / p (``energy_model``, :mod:`caloforge.models.energy`), so that
the generator only shapes the maps; ``configs/moments_<particle>.yaml`` (the seed-size models shipped as
``seed_gan_<particle>.pt``) fine-tune those with the batch mean and spread of the lateral second moment and LAT
matched to Geant4's (:func:`shape_moment_constraint`); the shipped defaults are those distilled into a
fully connected generator (``generator_hidden``, :class:`MLPGenerator`, :mod:`caloforge.training.distill`; the
defaults before them, into a narrower convolutional one, ``generator_channels``). Two further batch-level terms,
the correlations of shower features with the conditions (:func:`condition_moments`) and the covariances of the
central crystals (:func:`cell_covariance_constraint`), are there but off in every shipped recipe. What each
one changed, measured on short runs, is in the configuration comments.
For inference and export :meth:`Generator.fused` gives the same function with its linear first stage as one
matrix (:func:`first_stage_as_linear`).

In tiny test runs on Geant4 photons, PyTorch's default initialisation (untrained generator: 14 times
the momentum in every crystal) drove the plain final ReLU below zero everywhere within a few dozen
steps, and summed minibatch features (up to the batch size) saturated the discriminator.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from caloforge.detector.geometry import WINDOW
from caloforge.models.base import (
    N_CONDITIONS,
    Batch,
    ConfigError,
    ModelConfig,
    ShowerModel,
    TrainingStep,
)
from caloforge.models.energy import NOISE_DIM as ENERGY_NOISE_DIM
from caloforge.models.energy import EnergyModel
from caloforge.models.inputs import gaussian_noise
from caloforge.models.transforms import (
    MIN_MOMENTUM_GEV,
    OUTPUT_TRANSFORMS,
    gev_to_model,
    log_energy,
    model_to_gev,
)

REGRESSOR_LOSSES = ("mse", "matched")
"""Choices of ``GANConfig.regressor_loss``."""
SEED_GENERATOR_CHANNELS = (16, 16, 16, 8)
"""Output channels of the generator's 4x4 convolution and its 3x3 convolutions in the seed (the dense layer
feeds the first of them)."""


@dataclass
class GANConfig(ModelConfig):
    """Configuration of the conditional GAN (both loss variants).

    Attributes:
        loss: ``"gan"`` (non-saturating binary cross-entropy, the seed baseline) or ``"wgan-gp"``.
        noise_dim: length of the generator's Gaussian noise vector.
        generator_channels: output channels of the generator's 4x4 convolution and of each 3x3 convolution
            after it (their number sets the depth); the dense layer feeds ``generator_channels[0]`` maps
            of 4 x 4. The seed's (16, 16, 16, 8) by default. The defaults shipped before the fully connected ones
            (``generator_hidden``) had (8, 8, 8), distilled from seed-size models
            (:mod:`caloforge.training.distill`): in ONNX Runtime on 2 cores that generator
            alone ran 2.7 times as fast as the seed's (114.8k against 42.4k maps/s at batch 10k, random
            weights); (8, 8, 8, 8) 2.1 times, (16, 16, 8) 1.3 times.
        generator_hidden: widths of the hidden layers of a fully connected generator (:class:`MLPGenerator`) in
            place of the seed's convolutional one; empty (the default): the convolutional one of
            ``generator_channels``. For distillation (:mod:`caloforge.training.distill`): on 100k photon
            conditions, two layers of 256 reproduced the seed-size photon model to a mean squared difference of
            5.2e-5 in 3000 steps (the (8, 8, 8) convolutions: 7.9e-5 in 3000 steps, 6.0e-5 in 8000), and alone
            in ONNX Runtime it gives 432k maps/s at batch 10k on 2 cores (random weights). The shipped defaults
            are such students (8000 steps on 200k conditions: 4.8e-5, 3.9e-5 and 3.0e-5 for gamma, e- and e+,
            against 6.0e-5, 5.4e-5 and 3.2e-5 for the (8, 8, 8) ones); their whole graph, energy model and mean
            shower included, samples 2.1 times as fast as the (8, 8, 8) one's (same run, alternating).
        output_transform: ``"none"`` (generator outputs E/p) or ``"log"`` (see :mod:`caloforge.models.transforms`).
        log_epsilon: the ``eps`` of the ``log`` transform (fraction of the momentum).
        output_gradient_leak: backward slope of the generator's final ReLU below 0 (forward unchanged,
            see :class:`ReLUWithLeakyGradient`); 0 for the plain ReLU.
        dropout: dropout probability in the discriminator.
        leaky_slope: negative slope of the LeakyReLUs.
        minibatch_discrimination: use the minibatch discrimination layer.
        minibatch_kernels, minibatch_kernel_dim: its number of kernels (outputs) and their dimension.
        sparsity_threshold_gev: sparsity = fraction of the 121 crystals with more energy than this.
        sparsity_feature: give the discriminator the sparsity (the seed does). It is a hard count with
            no input gradient, so a WGAN-GP critic can weight it without bound (the gradient penalty
            does not see it) and the generator cannot answer it: in the first shipped models the
            critic's real-fake gap grew from 250 to 530 over epochs 11-14 while the maps stopped
            improving. Switch it off with ``output_transform: log``, where the critic sees the empty
            and nearly empty crystals in its map input anyway.
        physics_features: the discriminator's extra inputs. ``"gev"`` (the seed): total energy E and
            E - p in GeV; ``"fraction"``: E / p and (E - p) / p, on the scale of the map input.
        mean_shower_bias: add a learned (11, 11) map to the generator's output before its final ReLU,
            started at the mean Geant4 map of the training sample (in the generator's output space); the
            convolutions then learn the fluctuations around the mean shower instead of having to build
            its peak first.
        mean_shower_degree: with ``mean_shower_bias``, the bias is a polynomial of this degree in the
            normalised conditions (:class:`MeanShower`), fitted to the Geant4 maps by least squares before
            training: the mean shower then moves with the impact point and the angles from the first
            step. 0 (the models shipped until 2026-12-01): one fixed map; 3 since. The adversarial loss
            alone never taught the generator this dependence (corr(E1x1/p, |dz_pos|) 0.02 against
            Geant4's -0.44 for photons), although a supervised fit of the same generator learns it in 200
            steps.
        energy_constraint_weight: weight of the energy-sum constraint in the generator loss: the squared
            differences of the batch mean and standard deviation of E11x11 / p between generated and
            Geant4 maps of the same conditions, in units of the Geant4 batch variance (0: off).
        shape_mmd_weight: weight of the shower-shape MMD in the generator loss: the maximum mean
            discrepancy of shower features between generated and Geant4 maps of one batch
            (:func:`shape_mmd`; 0: off).
        shape_mmd_features: the features of the MMD: ``"containment"``, the fractions E1x1/p, E3x3/p,
            E5x5/p, E11x11/p (:func:`containment_fractions`); ``"shower"``, those with E7x7/p, E9x9/p,
            a soft count of crystals above 1 MeV and the lateral second moment (:func:`shower_features`).
        shape_moment_weight: weight of the lateral-moment constraint in the generator loss: the squared
            differences of the batch mean and standard deviation of the lateral second moment and LAT (crystal
            units, :func:`lateral_shape_moments`) between generated and Geant4 maps of the same conditions, in
            units of the Geant4 batch variance (:func:`shape_moment_constraint`; 0: off). The Gaussian kernels
            of the MMD saturate for a far outlier; the standard deviation does not. The fine-tuned photon model
            put more than 30 MeV into one crystal three or more crystals off the centre in 2.5 % of its
            showers (Geant4: 0.04 %), often an isolated one, which made its second moment and LAT too wide.
        cell_covariance_weight: weight of the crystal-covariance term in the generator loss: the mean squared
            difference between generated and Geant4 maps of the same conditions of the batch covariance matrix of
            ``log(1 + E / 1 MeV)`` of the central ``cell_covariance_size`` squared crystals, both in units of the
            Geant4 batch's spread per crystal (:func:`cell_covariance_constraint`; 0: off). The low-level
            classifier of the validation tells the photon model from Geant4 at AUC 0.79 from the four diagonal
            neighbours of the centre crystal alone (0.71 from the four direct ones, 0.53 from the centre crystal),
            although making every crystal's own distribution exactly Geant4's (per-crystal quantile mapping)
            leaves its AUC on all 121 at 0.998: what differs is how crystals vary together. Geant4's correlations
            between the diagonal neighbours respect the window's mirror symmetries (0.41, 0.43 for the pairs
            beside each other), the model's do not (0.46 and 0.16 where Geant4 has 0.41 and -0.02). Tried
            (``configs/covariance_gamma.yaml``, weight 10, two GAN epochs from the shipped photon model): the
            term did its job -- over 10k test events the covariance mismatch fell from 0.018 to 0.0037 (Geant4
            against Geant4: 0.0003; at batch 256 it reached its noise level, 0.009 against 0.008) -- but the
            classifier did not notice: AUC on all crystals 0.998 -> 0.996, central 3 x 3 0.969 -> 0.967, the
            four diagonal neighbours 0.797 -> 0.784. The shipped configurations leave it off.
        cell_covariance_size: the side of that central square (odd, at most 11).
        condition_moment_weight: weight of the conditional moment term in the generator loss: the
            squared differences between generated and Geant4 maps of the batch correlations of shower
            features with the conditions (:func:`condition_moments`; 0: off). The critic and the MMD
            compare distributions over the batch, in which the impact point is mixed away: the shipped
            models give corr(E1x1/p, |dz_pos|) = 0.02 against Geant4's -0.44 (gamma). With this term
            alone (weight 10) it was still 0.00 after 3 epochs; with the cubic mean shower
            (``mean_shower_degree: 3``) it moved that correlation from -0.24 to -0.40 in 1200-step runs
            but worsened the mean separation power of the selection features from 0.099 to 0.128.
        neighbour_mmd_weight: weight of the neighbour-pair MMD in the generator loss: the shower spread
            at (nearly) fixed conditions, from pairs of Geant4 events that are nearest neighbours in
            condition space and maps generated for the same pairs (:func:`neighbour_mmd`; 0: off).
            Costs one more generator pass per generator step.
        neighbour_mmd_features: what the neighbour-pair MMD compares: ``"containment"``, the differences
            of E1x1/p, E3x3/p, E5x5/p, E11x11/p; ``"shape"``, those of E1x1, E3x3, E5x5 and E7x7 over E11x11
            (:func:`shape_ratios`). With the energy model the total is drawn apart, so the differences of the
            fractions of p are mostly its fluctuation, which the generator cannot change. The photon model
            fine-tuned with the lateral-moment constraint fluctuates in E3x3/E11x11 and E5x5/E11x11 at fixed
            conditions 0.46 and 0.29 times as much as Geant4's neighbour pairs differ (sigma68 of the
            differences), and in E5x5/E11x11 of one repeated track 18 times less. The same fine-tune with
            ``"shape"`` brought the two to 1.02 and 0.82 in two epochs but made the marginal distributions
            worse (separation power of LAT 0.011 -> 0.021, E3x3/E5x5 0.005 -> 0.025, E9x9/E11x11 0.05 ->
            0.10 on 10k test events), so the shipped configurations keep ``"containment"``; with weight 3
            instead of 10, two epochs from the shipped photon model gave 0.75 and 0.50 and LAT 0.019.
        energy_model: sample the deposited energy apart from the shape (:mod:`caloforge.models.energy`):
            each generated map is rescaled to ``E11x11 = f p``, ``f`` drawn from a mixture density network of
            the conditions fitted to the training maps (before training, or afterwards on a trained model by
            :meth:`GAN.fit_energy`, ``caloforge fit-energy``); the noise vector grows by two numbers. In
            training the critic and the loss terms see the rescaled maps, so the generator learns the shape
            only; the energy model stays as fitted.
        gp_lambda: gradient-penalty weight (WGAN-GP).
        n_critic: discriminator/critic steps per generator step.
        regressor_weight: weight of the regressor loss in the generator loss (0: no regressor).
        regressor_loss: what the generator is asked of the regressor. ``"mse"`` (the seed): the regressor's
            mean squared error on the conditions of generated maps, as small as it can be made. That rewards
            maps that tell their conditions more clearly than Geant4's do: the regressor pre-trained on Geant4
            maps recovered the conditions of the shipped photon model's maps (2026-12-01) with half the error
            it has on Geant4 maps (0.157 against 0.323 over the six normalised conditions, z 0.31 against
            0.71), and at fixed conditions their energy-weighted phi centre spreads a third less than
            Geant4's (residual of a linear fit on the conditions 0.110 against 0.143 crystals, 10k test events).
            ``"matched"``: the regressor's error on generated maps matched to its error on the Geant4 maps of
            the batch, condition by condition (:func:`matched_regressor_loss`). Two epochs of it from the shipped
            photon and positron models (``configs/matched_<particle>.yaml``) brought the error ratio to 0.97 and
            0.98 and that spread to 0.121 crystals, but left the low-level classifier at AUC 0.998 and 0.999 and
            made the photon's outer-ring ratios worse; the shipped configurations keep ``"mse"``.
        regressor_epochs: epochs of regressor pre-training on Geant4 maps before the GAN epochs.
        lr_generator, lr_discriminator, lr_regressor: Adam learning rates.
        betas: Adam betas of the generator and discriminator.
    """

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
    cell_covariance_weight: float = 0.0
    cell_covariance_size: int = 5
    condition_moment_weight: float = 0.0
    neighbour_mmd_weight: float = 0.0
    neighbour_mmd_features: Literal["containment", "shape"] = "containment"
    energy_model: bool = False
    gp_lambda: float = 10.0
    n_critic: int = 1
    regressor_weight: float = 1.0
    regressor_loss: Literal["mse", "matched"] = "mse"
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
            "cell_covariance_weight": self.cell_covariance_weight >= 0,
            "cell_covariance_size": self.cell_covariance_size in (1, 3, 5, 7, 9, 11),
            "condition_moment_weight": self.condition_moment_weight >= 0,
            "neighbour_mmd_weight": self.neighbour_mmd_weight >= 0,
            "neighbour_mmd_features": self.neighbour_mmd_features in NEIGHBOUR_FEATURES,
            "gp_lambda": self.gp_lambda >= 0,
            "n_critic": self.n_critic >= 1,
            "regressor_weight": self.regressor_weight >= 0,
            "regressor_loss": self.regressor_loss in REGRESSOR_LOSSES,
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


class ReLUWithLeakyGradient(nn.Module):
    """``relu(x)`` in the forward pass, with slope ``leak`` instead of 0 for ``x < 0`` in the backward pass;
    with ``upper``, ``clamp(x, 0, upper)``, with slope ``leak`` above ``upper`` too.

    The output is exactly the seed's ReLU (empty crystals are exact zeros), but a generator whose final
    ReLU has gone negative everywhere, which real maps with about 77 % empty crystals readily push it
    to, still receives gradients and can recover instead of dying.
    """

    def __init__(self, leak: float, upper: float | None = None) -> None:
        super().__init__()
        self.leak = leak
        self.upper = upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(x) if self.upper is None else x.clamp(0.0, self.upper)
        if self.leak > 0 and torch.is_grad_enabled():
            outside = (x < 0) if self.upper is None else (x < 0) | (x > self.upper)
            y = y + self.leak * (x - x.detach()) * outside  # adds 0, passes a leaky gradient
        return y


LOG_OUTPUT_MAX = 1.0
"""With ``output_transform: log`` the generator's output is capped at this ``u``, one momentum in a crystal
(``u = 1`` is ``E = p``): a crystal cannot take more than the particle brings. In log space every 0.1 of
``u`` above it multiplies the energy by 2.5: uncapped, the first epoch of a positron run
(``configs/polymean_e+.yaml``) averaged 7e4 in the energy-sum term (in Geant4 batch variances; photons
9.9, electrons 0.5) and its validation separation power was 0.41 (photons 0.10, electrons 0.05)."""


MAX_MEAN_SHOWER_DEGREE = 4
"""Highest polynomial degree of :class:`MeanShower` (degree 4 in the 6 conditions: 210 terms per particle)."""

POLYNOMIAL_MEAN_SHOWER_INIT_SCALE = 0.1
"""With a polynomial :class:`MeanShower` (degree > 0) the generator's last convolution starts at this
fraction of its Keras initial weights, so that the untrained generator is the fitted mean shower plus small
fluctuations. With the full Keras weights, two 1200-step photon runs went through batch energy sums
hundreds (one of them 10^5) of Geant4 variances off in their first 400 steps, and one of the two died
(every crystal 0); scaled, the energy-sum term was 0.9 over the same steps."""

MEAN_SHOWER_RIDGE = 1e-4
"""Ridge of the mean-shower fit (:meth:`MeanShower.fit`), times the mean eigenvalue of the monomials' Gram
matrix. The conditions of a sample are not independent: photons from the interaction point meet their
crystal at dphi_mom = dphi_pos + the crystal's tilt, for example, so 21 of the 84 directions of the cubic's
monomials hold no data on 200k photons (eigenvalues below 1e-6 of the largest). The earlier ridge of 1e-9 of
the trace left large coefficients there, which cancel on the training conditions but not off them: a
photon vertex 1 mm off the beam line took the centre crystal's share of the shower from 0.69 to 0.33, one
5 mm off to 0.10 (1e-4: 0.69, 0.66; :meth:`MeanShower.regularise` repairs a trained table)."""
CONDITION_CLAMP = 4.0
"""The normalised conditions enter :class:`MeanShower` clamped to +-this many standard deviations, so that
the polynomial stays bounded for conditions outside the training range."""


class MeanShower(nn.Module):
    """The mean shower in the generator's output space (B, 1, 11, 11) as a polynomial of the normalised
    conditions, one per particle type: ``sum_t table[type, t] * m_t(c)`` over the monomials ``m_t`` of
    the 6 normalised conditions up to ``degree`` (84 for degree 3). Degree 0 is one fixed map.

    A learned table, started by :meth:`fit` at the least-squares fit to the Geant4 maps. On 100k Geant4
    photons (log output space) a cubic in the 6 conditions explains 29 % of the per-crystal variance, a
    quadratic in dz_pos and dphi_pos alone 19 %: the rest are shower fluctuations, the generator's part.
    """

    def __init__(self, n_particles: int, degree: int) -> None:
        super().__init__()
        if not 0 <= degree <= MAX_MEAN_SHOWER_DEGREE:
            raise ValueError(f"mean-shower degree must be in 0..{MAX_MEAN_SHOWER_DEGREE}, got {degree}")
        self.degree = degree
        # each monomial as ``degree`` indices into (1, c_1, ..., c_6): (1, 1, 4) is c_4, (2, 4, 4) is c_2 c_4^2,
        # in the order of itertools.combinations_with_replacement (the rows of the table)
        monomials = list(itertools.combinations_with_replacement(range(N_CONDITIONS + 1), degree)) or [()]
        # the monomials of degree d with first index i are x_i times those of degree d - 1 whose first index is
        # i or more, a contiguous tail of that list: where each tail starts, per degree 2 .. degree
        self._tails = [
            [sum(1 for m in itertools.combinations_with_replacement(range(N_CONDITIONS + 1), d - 1) if m[0] < i)
             for i in range(N_CONDITIONS + 1)]
            for d in range(2, degree + 1)
        ]
        self.table = nn.Parameter(torch.zeros(n_particles, len(monomials), 11, 11))  # (P, T, 11, 11)

    @property
    def n_terms(self) -> int:
        """Number of monomials per particle type."""
        return self.table.shape[1]

    def features(self, conditions: torch.Tensor) -> torch.Tensor:
        """The monomials (B, T) of normalised conditions (B, 6)."""
        if self.degree == 0:
            return conditions.new_ones(len(conditions), 1)
        c = conditions.clamp(-CONDITION_CLAMP, CONDITION_CLAMP)  # (B, 6)
        x = torch.cat([torch.ones_like(c[:, :1]), c], dim=1)  # (B, 7): the monomials of degree 1
        m = x
        for tails in self._tails:  # products of slices: the gather they replace took 7.6 % of the ONNX graph's time
            m = torch.cat([x[:, i : i + 1] * m[:, start:] for i, start in enumerate(tails)], dim=1)
        return m  # (B, T)

    def forward(self, condition_input: torch.Tensor) -> torch.Tensor:
        """The mean maps (B, 1, 11, 11) for the generator's condition input (B, 6 [+ one-hot type]); for one
        fixed map (degree 0, one type) the map itself, (1, 1, 11, 11), which broadcasts."""
        if self.degree == 0 and len(self.table) == 1:
            return self.table  # (1, 1, 11, 11): no per-event work on the shipped models' path
        f = self.features(condition_input[:, :N_CONDITIONS])  # (B, T)
        table = self.table.flatten(2)  # (P, T, 121)
        if len(table) == 1:
            out = f @ table[0]  # (B, 121)
        else:
            onehot = condition_input[:, N_CONDITIONS:]  # (B, P)
            out = torch.einsum("bp,bt,ptk->bk", onehot, f, table)  # (B, 121)
        return out.view(-1, 1, 11, 11)

    def _normal_equations(
        self, conditions: torch.Tensor, rows: torch.Tensor, u: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gram matrix (T, T) of the monomials of the conditions ``rows``, and their moments (T, 121) with
        maps ``u`` (if given), in float64."""
        gram = torch.zeros(self.n_terms, self.n_terms, dtype=torch.float64)
        moment = None if u is None else torch.zeros(self.n_terms, 121, dtype=torch.float64)
        for chunk in torch.split(rows, 50_000):
            f = self.features(conditions[chunk].double().cpu())  # (n, T)
            gram += f.T @ f
            if moment is not None:
                moment += f.T @ u[chunk].reshape(len(chunk), 121).double().cpu()
        return gram, moment

    def _ridge(self, gram: torch.Tensor, ridge: float) -> torch.Tensor:
        """The ridge term (T, T); none for the one fixed map of degree 0, which has nothing to regularise."""
        scale = ridge * torch.trace(gram) / self.n_terms if self.degree > 0 else 0.0
        return scale * torch.eye(self.n_terms, dtype=torch.float64)

    @torch.no_grad()
    def fit(
        self, u: torch.Tensor, conditions: torch.Tensor, particle_index: torch.Tensor, ridge: float = MEAN_SHOWER_RIDGE
    ) -> None:
        """Least-squares fit of the table to maps ``u`` (N, 11, 11) in the generator's output space, with
        their normalised conditions (N, 6) and particle indices (N,); a type without events keeps its
        table. Solved in float64 from the normal equations, with a ridge of ``ridge`` times the mean
        eigenvalue of the Gram matrix (:data:`MEAN_SHOWER_RIDGE`)."""
        for k in range(len(self.table)):
            rows = torch.nonzero(particle_index == k).squeeze(1)
            if not len(rows):
                continue
            gram, moment = self._normal_equations(conditions, rows, u)
            coef = torch.linalg.solve(gram + self._ridge(gram, ridge), moment)  # (T, 121)
            self.table[k] = coef.view(self.n_terms, 11, 11).to(self.table)

    @torch.no_grad()
    def regularise(
        self, conditions: torch.Tensor, particle_index: torch.Tensor, ridge: float = MEAN_SHOWER_RIDGE
    ) -> float:
        """Replace the table by the one that gives the closest mean showers on the normalised conditions
        (N, 6) of the training sample (ridge as in :meth:`fit`): the same function on those conditions, up
        to the ridge, without the large coefficients along monomial directions the conditions do not
        span, which a fit with a much smaller ridge leaves and training does not remove. Returns the rms
        change of the mean shower on those conditions (output space)."""
        change, count = 0.0, 0
        for k in range(len(self.table)):
            rows = torch.nonzero(particle_index == k).squeeze(1)
            if not len(rows):
                continue
            gram, _ = self._normal_equations(conditions, rows, None)
            table = self.table[k].double().cpu().flatten(1)  # (T, 121)
            new = torch.linalg.solve(gram + self._ridge(gram, ridge), gram @ table)  # (T, 121)
            delta = new - table
            change += float(torch.einsum("tk,ts,sk->", delta, gram, delta))  # sum over events of |F delta|^2
            count += len(rows) * 121
            self.table[k] = new.view(self.n_terms, 11, 11).to(self.table)
        return (change / max(count, 1)) ** 0.5


class _GeneratorOutput(nn.Module):
    """What both generators end with: the mean shower (a :class:`MeanShower` of ``mean_shower_degree``, or none
    for None) added to the map, then the final ReLU (:class:`ReLUWithLeakyGradient`, capped at ``output_max``)."""

    def __init__(
        self, n_conditions: int, output_leak: float, output_max: float | None, mean_shower_degree: int | None
    ) -> None:
        super().__init__()
        n_particles = max(1, n_conditions - N_CONDITIONS)
        self.mean_shower = None if mean_shower_degree is None else MeanShower(n_particles, mean_shower_degree)
        self.activation = ReLUWithLeakyGradient(output_leak, output_max)

    def output(self, x: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """The last step on (B, 1, 11, 11): the mean shower (if any) for the conditions, and the final ReLU."""
        if self.mean_shower is not None:
            x = x + self.mean_shower(conditions)
        return self.activation(x)


class Generator(_GeneratorOutput):
    """Noise + conditions -> maps in the generator's output space (B, 1, 11, 11), non-negative.

    With ``mean_shower_degree`` set (None: no bias), a :class:`MeanShower` of that degree is added before
    the final ReLU; with ``output_max`` the output is capped there (:class:`ReLUWithLeakyGradient`)."""

    def __init__(
        self,
        noise_dim: int,
        n_conditions: int,
        *,
        channels: tuple[int, ...] = SEED_GENERATOR_CHANNELS,
        output_leak: float = 0.0,
        output_max: float | None = None,
        mean_shower_degree: int | None = None,
    ) -> None:
        super().__init__(n_conditions, output_leak, output_max, mean_shower_degree)
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"generator channels {channels!r}: the 4x4 convolution and at least one 3x3 one")
        self.channels = c0 = int(channels[0])
        self.dense = nn.Linear(noise_dim + n_conditions, c0 * 4 * 4)
        self.upsample = nn.Upsample(scale_factor=3, mode="nearest")
        layers: list[nn.Module] = [
            nn.ZeroPad2d((1, 2, 1, 2)),  # (B, c0, 15, 15): "same" padding of an even kernel, as Keras pads
            nn.Conv2d(c0, c0, 4),  # (B, c0, 12, 12)
        ]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ReLU(), nn.Conv2d(c_in, c_out, 3, padding=1)]  # (B, c_out, 12, 12)
        layers += [nn.ReLU(), nn.Conv2d(channels[-1], 1, 2)]  # (B, 1, 11, 11)
        self.convs = nn.Sequential(*layers)
        self._register_load_state_dict_pre_hook(self._upgrade_state_dict)

    def forward(self, noise: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        x = self.first_stage(torch.cat([noise, conditions], dim=1))  # (B, c0, 12, 12)
        return self.output(self.convs[2:](x), conditions)  # (B, 1, 11, 11)

    def _upgrade_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        """Read checkpoints written before :class:`MeanShower`: their fixed map ``output_bias`` (1, 1, 11, 11),
        shared by all particle types, is the degree-0 table."""
        old = state_dict.pop(prefix + "output_bias", None)
        if old is not None and self.mean_shower is not None:
            state_dict[prefix + "mean_shower.table"] = old.expand_as(self.mean_shower.table).clone()

    @property
    def last_layer(self) -> nn.Module:
        """The layer that gives the map, before the mean shower and the final ReLU."""
        return self.convs[-1]

    def fused(self) -> FusedGenerator:
        """The same function for inference, with the dense layer, the upsampling, the padding and the 4x4
        convolution done by one matrix (:class:`FusedGenerator`)."""
        return FusedGenerator(self)

    def first_stage(self, x: torch.Tensor) -> torch.Tensor:
        """The linear part before the first ReLU: generator input (B, noise_dim + n_conditions) -> dense ->
        (B, c0, 4, 4) -> upsampling -> padding and the 4x4 convolution -> (B, c0, 12, 12), ``c0`` the first of the
        generator channels."""
        return self.convs[1](self.convs[0](self.upsample(self.dense(x).view(-1, self.channels, 4, 4))))


class MLPGenerator(_GeneratorOutput):
    """A fully connected generator with the :class:`Generator`'s interface: noise + conditions -> ``hidden``
    layers with ReLU -> the 121 crystals (B, 1, 11, 11), then the mean shower (if any) and the final ReLU.

    Not the seed's architecture: it is there to be distilled from a seed-size model
    (:mod:`caloforge.training.distill`), which it reproduces more closely than the convolutional students in
    less than half their sampling time (``GANConfig.generator_hidden``)."""

    def __init__(
        self,
        noise_dim: int,
        n_conditions: int,
        *,
        hidden: tuple[int, ...],
        output_leak: float = 0.0,
        output_max: float | None = None,
        mean_shower_degree: int | None = None,
    ) -> None:
        super().__init__(n_conditions, output_leak, output_max, mean_shower_degree)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"generator hidden widths {hidden!r}: at least one layer, each at least 1 wide")
        layers: list[nn.Module] = []
        n_in = noise_dim + n_conditions
        for width in hidden:
            layers += [nn.Linear(n_in, int(width)), nn.ReLU()]
            n_in = int(width)
        layers.append(nn.Linear(n_in, WINDOW * WINDOW))
        self.mlp = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        x = self.mlp(torch.cat([noise, conditions], dim=1)).view(-1, 1, WINDOW, WINDOW)  # (B, 1, 11, 11)
        return self.output(x, conditions)

    @property
    def last_layer(self) -> nn.Module:
        """The layer that gives the map, before the mean shower and the final ReLU."""
        return self.mlp[-1]

    def fused(self) -> MLPGenerator:
        """Itself: it is one chain of matrix products already."""
        return self


def first_stage_as_linear(generator: Generator) -> nn.Linear:
    """One dense layer equal to the generator's first stage (:meth:`Generator.first_stage`, with its output
    flattened to c0 x 12 x 12 values, 2304 for the seed's c0 = 16).

    Dense layer, nearest upsampling, zero padding and convolution are all linear, and nothing non-linear
    comes between them, so their composition is one affine map ``y = W x + b``: ``b`` is the stage's output
    for ``x = 0`` and column ``i`` of ``W`` its output for the unit vector ``e_i`` minus ``b``, both taken in
    float64. It costs (noise_dim + n_conditions) x 2304 multiplications per shower, 323k for the seed's
    sizes against 184k for the dense layer and a transposed convolution; but the matrix product runs about
    4 times faster per multiplication on a CPU than ONNX Runtime's transposed convolution, which took half
    of the generator's time (the three 3x3 convolutions, with 4.5 times its multiplications, took 37 %).
    """
    n_in = generator.dense.in_features
    exact = copy.deepcopy(generator).double()
    with torch.no_grad():
        x = torch.cat([torch.zeros(1, n_in), torch.eye(n_in)]).to(exact.dense.weight)  # (1 + n_in, n_in)
        y = exact.first_stage(x).flatten(1)  # (1 + n_in, 2304)
        out = nn.Linear(n_in, y.shape[1]).to(device=generator.dense.weight.device)
        out.weight.copy_((y[1:] - y[:1]).T)
        out.bias.copy_(y[0])
    return out


class FusedGenerator(nn.Module):
    """A :class:`Generator` for inference and export: the same maps from the same inputs (up to float
    rounding), its first stage one matrix product (:func:`first_stage_as_linear`): in ONNX Runtime on 2 cores
    1.3-1.6 times as many showers per second as with the earlier stride-3 transposed convolution, which had
    been about 1.1 times as fast as the layer-by-layer graph. A snapshot: later changes to the generator's
    weights do not reach it."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator
        self.first = first_stage_as_linear(generator)
        self.rest = generator.convs[2:]

    def forward(self, noise: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        x = self.first(torch.cat([noise, conditions], dim=1))
        x = x.view(-1, self.generator.channels, 12, 12)  # (B, c0, 12, 12)
        return self.generator.output(self.rest(x), conditions)  # (B, 1, 11, 11)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, arXiv:1606.03498, section 3.2).

    Features f (B, A) are projected by a tensor T to M (B, K, C); for each kernel k,
    ``o_k(x_i) = mean_{j != i} exp(-|M_i,k - M_j,k|_L1)`` (the paper sums over j; the mean keeps o in
    [0, 1] whatever the batch size, so that it does not swamp the other inputs of the dense layers).
    Returns ``[f, o]`` (B, A + K).
    """

    def __init__(self, in_features: int, n_kernels: int, kernel_dim: int) -> None:
        super().__init__()
        self.n_kernels = n_kernels
        self.kernel_dim = kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, n_kernels * kernel_dim) * 0.05)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        m = (f @ self.T).view(-1, self.n_kernels, self.kernel_dim)  # (B, K, C)
        dist = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(dim=3)  # (B, B, K)
        o = (torch.exp(-dist).sum(dim=1) - 1.0) / max(f.shape[0] - 1, 1)  # (B, K), without the sample itself
        return torch.cat([f, o], dim=1)  # (B, A + K)


class Discriminator(nn.Module):
    """Map (generator space, B x 1 x 11 x 11) + conditions + momentum -> one logit / critic score (B,)."""

    def __init__(self, config: GANConfig, n_conditions: int) -> None:
        super().__init__()
        self.config = config
        slope, p = config.leaky_slope, config.dropout
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 2),  # (B, 32, 10, 10)
            nn.LeakyReLU(slope),
            nn.Dropout(p),
            nn.Conv2d(32, 16, 3, padding=1),  # (B, 16, 10, 10)
            nn.LeakyReLU(slope),
            nn.Dropout(p),
            nn.Conv2d(16, 16, 3, padding=1),  # (B, 16, 10, 10)
            nn.LeakyReLU(slope),
            nn.Dropout(p),
            nn.Conv2d(16, 16, 3, padding=1),  # (B, 16, 10, 10)
            nn.LeakyReLU(slope),
            nn.Dropout(p),
            nn.AvgPool2d(2),  # (B, 16, 5, 5)
            nn.Flatten(),  # (B, 400)
        )
        n_flat = 16 * 5 * 5
        if config.minibatch_discrimination:
            self.minibatch: nn.Module = MinibatchDiscrimination(
                n_flat, config.minibatch_kernels, config.minibatch_kernel_dim
            )
            n_flat += config.minibatch_kernels
        else:
            self.minibatch = nn.Identity()
        self.act = nn.LeakyReLU(slope)
        n_physics = 3 if config.sparsity_feature else 2
        self.dense20 = nn.Linear(n_flat + n_conditions + n_physics, 20)
        self.dense10 = nn.Linear(20, 10)
        self.head2 = nn.Linear(10, 2)
        self.head5 = nn.Linear(10, 5)
        self.out = nn.Linear(7, 1)

    def forward(self, u: torch.Tensor, conditions: torch.Tensor, p_gev: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        e_gev = model_to_gev(u, p_gev, kind=cfg.output_transform, epsilon=cfg.log_epsilon)  # (B, 1, 11, 11)
        energy = e_gev.sum(dim=(1, 2, 3))  # (B,) GeV
        if cfg.physics_features == "fraction":
            energy = energy / p_gev.clamp_min(MIN_MOMENTUM_GEV)  # (B,) E / p
            physics = [energy, energy - 1.0]
        else:
            physics = [energy, energy - p_gev]
        if cfg.sparsity_feature:
            sparsity = (e_gev > cfg.sparsity_threshold_gev).to(u.dtype).mean(dim=(1, 2, 3))  # (B,), no gradient
            physics.insert(0, sparsity)
        physics = torch.stack(physics, dim=1)  # (B, 2 or 3)
        h = self.minibatch(self.features(u))  # (B, 400 [+ K])
        x = torch.cat([h, conditions, physics], dim=1)  # (B, 400 [+ K] + n_conditions + 2 or 3)
        x = self.act(self.dense10(self.act(self.dense20(x))))  # (B, 10)
        x = torch.cat([self.act(self.head2(x)), self.act(self.head5(x))], dim=1)  # (B, 7)
        return self.out(x).squeeze(1)  # (B,)


class Regressor(nn.Module):
    """CNN that predicts the 6 normalised conditions from a map in GeV (B, 1, 11, 11) [+ one-hot type]."""

    def __init__(self, n_particle_inputs: int, *, slope: float = 0.2) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),  # (B, 32, 11, 11)
            nn.LeakyReLU(slope),
            nn.Conv2d(32, 32, 3, padding=1),  # (B, 32, 11, 11)
            nn.LeakyReLU(slope),
            nn.AvgPool2d(2),  # (B, 32, 5, 5)
            nn.Conv2d(32, 32, 3, padding=1),  # (B, 32, 5, 5)
            nn.LeakyReLU(slope),
            nn.Flatten(),  # (B, 800)
        )
        self.dense = nn.Sequential(
            nn.Linear(32 * 5 * 5 + n_particle_inputs, 64),
            nn.LeakyReLU(slope),
            nn.Linear(64, N_CONDITIONS),
        )

    def forward(self, maps_gev: torch.Tensor, particle_onehot: torch.Tensor) -> torch.Tensor:
        x = self.convs(log_energy(maps_gev))  # (B, 800)
        return self.dense(torch.cat([x, particle_onehot], dim=1))  # (B, 6)


def keras_init_(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every Conv2d and Linear of ``module`` (the Keras
    defaults the seed's networks were built with). With them the untrained generator deposits about
    twice the momentum over about 30 % of the crystals, instead of 14 times over all of them with
    PyTorch's defaults, which keeps the final ReLU from being driven below zero everywhere at the start."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    conditions: torch.Tensor,
    p_gev: torch.Tensor,
) -> torch.Tensor:
    """WGAN-GP penalty ``mean((|grad_x critic(x)|_2 - 1)^2)`` on random interpolates of real and fake maps
    (B, 1, 11, 11) (Gulrajani et al. 2017, arXiv:1704.00028, algorithm 1)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)  # (B, 1, 1, 1)
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (B, 1, 11, 11)
    score = critic(x, conditions, p_gev)  # (B,)
    (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)  # (B, 1, 11, 11)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def energy_sum_constraint(fake_gev: torch.Tensor, real_gev: torch.Tensor, p_gev: torch.Tensor) -> torch.Tensor:
    """Moment matching of the deposited fraction ``E11x11 / p`` between generated and Geant4 maps (B, 11, 11)
    of the same conditions: ``((mean_f - mean_r)^2 + (std_f - std_r)^2) / var_r`` over the batch."""
    scale = p_gev.clamp_min(MIN_MOMENTUM_GEV)  # (B,)
    f = fake_gev.sum(dim=(1, 2)) / scale  # (B,)
    r = real_gev.sum(dim=(1, 2)) / scale  # (B,)
    var = r.var().clamp_min(1e-6)
    return ((f.mean() - r.mean()) ** 2 + (f.std() - r.std()) ** 2) / var


MMD_BANDWIDTHS = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Gaussian kernel widths of :func:`shape_mmd`, in units of the standardised features."""


MMD_FEATURES = ("containment", "shower")
"""Feature sets of :func:`shape_mmd`."""
SOFT_HIT_SCALE_GEV = 1e-3
"""Energy scale of the soft hit count of :func:`shower_features` (1 MeV)."""


def _central(maps_gev: torch.Tensor, n: int) -> torch.Tensor:
    """The central n x n crystals (B, n, n) of maps (B, 11, 11), n odd."""
    lo = WINDOW // 2 - n // 2
    return maps_gev[:, lo : lo + n, lo : lo + n]


def _window_sums(maps_gev: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """En x n (B, len(sizes)) of maps (B, 11, 11): the energy in the central n x n crystals, n odd."""
    return torch.stack([_central(maps_gev, n).sum(dim=(1, 2)) for n in sizes], dim=1)


def containment_fractions(
    maps_gev: torch.Tensor, p_gev: torch.Tensor, sizes: tuple[int, ...] = (1, 3, 5, 11)
) -> torch.Tensor:
    """En x n / p for each n in ``sizes`` (B, len(sizes)) of maps (B, 11, 11) in GeV (default E1x1/p,
    E3x3/p, E5x5/p, E11x11/p)."""
    scale = p_gev.clamp_min(MIN_MOMENTUM_GEV)  # (B,)
    return _window_sums(maps_gev, sizes) / scale[:, None]  # (B, len(sizes))


def _centre_and_distances(maps_gev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Energy-weighted centre (row, column; each (B,)) of maps (B, 11, 11) relative to the centre crystal,
    and the squared distance of every crystal from it (B, 11, 11), in crystal units; centre 0 for empty maps."""
    idx = torch.arange(maps_gev.shape[-1], dtype=maps_gev.dtype, device=maps_gev.device) - 5.0  # (11,)
    total = maps_gev.sum(dim=(1, 2)).clamp_min(1e-9)  # (B,)
    row = (maps_gev.sum(dim=2) * idx).sum(dim=1) / total  # (B,)
    col = (maps_gev.sum(dim=1) * idx).sum(dim=1) / total  # (B,)
    d2 = (idx.view(1, -1, 1) - row.view(-1, 1, 1)) ** 2 + (idx.view(1, 1, -1) - col.view(-1, 1, 1)) ** 2
    return row, col, d2


def lateral_moments(maps_gev: torch.Tensor) -> torch.Tensor:
    """Energy-weighted centre (row, column), relative to the centre crystal, and lateral second moment
    ``sum E |x - x_c|^2 / sum E`` (B, 3) of maps (B, 11, 11), in crystal units (squared for the moment);
    0 for empty maps."""
    row, col, d2 = _centre_and_distances(maps_gev)
    r2 = (maps_gev * d2).sum(dim=(1, 2)) / maps_gev.sum(dim=(1, 2)).clamp_min(1e-9)  # (B,)
    return torch.stack([row, col, r2], dim=1)  # (B, 3)


LAT_R0_CRYSTALS = 5.2 / 5.0
"""The LAT radius r0 = 5.2 cm (BOSS) in crystal pitches (front faces about 5 cm wide)."""


def lateral_shape_moments(maps_gev: torch.Tensor) -> torch.Tensor:
    """Lateral second moment and LAT (B, 2) of maps (B, 11, 11) in GeV, in crystal units, differentiable.

    The second moment is :func:`lateral_moments`' (crystal units squared). LAT is BOSS's
    ``sum_{i>=3} E_i r_i^2 / (sum_{i>=3} E_i r_i^2 + r0^2 (E_1 + E_2))`` (crystals sorted by energy) with
    ``r_i`` the distance from the energy-weighted centre in crystal units and ``r0`` =
    :data:`LAT_R0_CRYSTALS`: a stand-in for the validation's LAT, whose distances are in cm from the line
    through the IP. The gradient flows to every crystal's energy; which two are the hottest is taken as given.
    """
    _, _, d2 = _centre_and_distances(maps_gev)  # (B, 11, 11)
    e, d2 = maps_gev.flatten(1), d2.flatten(1)  # (B, 121)
    r2 = (e * d2).sum(dim=1) / e.sum(dim=1).clamp_min(1e-9)  # (B,) the second moment
    top = torch.zeros_like(e).scatter(1, e.topk(2, dim=1).indices, 1.0)  # (B, 121): 1 at the two hottest
    num = (e * d2 * (1.0 - top)).sum(dim=1)  # (B,)
    den = num + LAT_R0_CRYSTALS**2 * (e * top).sum(dim=1)
    lat = num / den.clamp_min(1e-9)  # (B,)
    return torch.stack([r2, lat], dim=1)  # (B, 2)


def shape_moment_constraint(fake_gev: torch.Tensor, real_gev: torch.Tensor) -> torch.Tensor:
    """Moment matching of the lateral second moment and LAT (:func:`lateral_shape_moments`) between
    generated and Geant4 maps (B, 11, 11) in GeV of the same conditions: the sum over both of
    ``((mean_f - mean_r)^2 + (std_f - std_r)^2) / var_r`` over the batch."""
    f = lateral_shape_moments(fake_gev)  # (B, 2)
    r = lateral_shape_moments(real_gev)  # (B, 2)
    var = r.var(dim=0).clamp_min(1e-6)  # (2,)
    return (((f.mean(dim=0) - r.mean(dim=0)) ** 2 + (f.std(dim=0) - r.std(dim=0)) ** 2) / var).sum()


def shower_features(maps_gev: torch.Tensor, p_gev: torch.Tensor) -> torch.Tensor:
    """Shower features (B, 8) of maps (B, 11, 11) in GeV, all differentiable: En x n / p for n = 1, 3, 5,
    7, 9, 11; a soft count of crystals above 1 MeV, ``sum 1 - exp(-E / 1 MeV)``; the lateral second
    moment ``sum E |x - x_c|^2 / sum E`` in crystal units squared (``x_c`` the energy-weighted centre)."""
    fractions = containment_fractions(maps_gev, p_gev, (1, 3, 5, 7, 9, 11))  # (B, 6)
    hits = (1.0 - torch.exp(-maps_gev.clamp_min(0) / SOFT_HIT_SCALE_GEV)).sum(dim=(1, 2))  # (B,)
    r2 = lateral_moments(maps_gev)[:, 2]  # (B,)
    return torch.cat([fractions, hits[:, None], r2[:, None]], dim=1)  # (B, 8)


def shape_mmd(
    fake_gev: torch.Tensor, real_gev: torch.Tensor, p_gev: torch.Tensor, features: str = "containment"
) -> torch.Tensor:
    """Squared maximum mean discrepancy (Gretton et al. 2012, biased estimator, a sum of Gaussian kernels of
    widths :data:`MMD_BANDWIDTHS`) between shower features (``features``: ``"containment"``,
    :func:`containment_fractions`, or ``"shower"``, :func:`shower_features`) of generated and Geant4
    maps (B, 11, 11) of the same conditions, standardised by the Geant4 batch: it compares the
    distributions of the shower shape, spread included, which a per-event loss cannot do."""
    if features not in MMD_FEATURES:
        raise ValueError(f"unknown MMD features {features!r}: choose one of {', '.join(MMD_FEATURES)}")
    observe = containment_fractions if features == "containment" else shower_features
    return standardised_mmd(observe(fake_gev, p_gev), observe(real_gev, p_gev))


def standardised_mmd(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Squared MMD (biased estimator, Gaussian kernels of widths :data:`MMD_BANDWIDTHS`) between generated
    and Geant4 feature vectors (B, F), both standardised with the Geant4 batch's mean and spread."""
    mean, std = real.mean(dim=0), real.std(dim=0).clamp_min(1e-3)
    x = (fake - mean) / std  # (B, F)
    y = (real - mean) / std  # (B, F)
    xy = torch.cat([x, y])  # (2B, F)
    d2 = torch.cdist(xy, xy).pow(2)  # (2B, 2B)
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in MMD_BANDWIDTHS)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


NEIGHBOUR_FEATURES = ("containment", "shape")
"""Feature sets of :func:`neighbour_mmd`."""


def shape_ratios(maps_gev: torch.Tensor) -> torch.Tensor:
    """E1x1, E3x3, E5x5 and E7x7 over E11x11 (B, 4) of maps (B, 11, 11) in GeV: the shape without the
    total; 0 for empty maps."""
    total = maps_gev.sum(dim=(1, 2)).clamp_min(1e-9)  # (B,)
    return _window_sums(maps_gev, (1, 3, 5, 7)) / total[:, None]  # (B, 4)


def neighbour_mmd(
    fake_gev: torch.Tensor,
    fake_neighbour_gev: torch.Tensor,
    real_gev: torch.Tensor,
    real_neighbour_gev: torch.Tensor,
    p_gev: torch.Tensor,
    p_neighbour_gev: torch.Tensor,
    features: str = "containment",
) -> torch.Tensor:
    """Squared MMD between the differences of shower features (``features``: ``"containment"``,
    :func:`containment_fractions`; ``"shape"``, :func:`shape_ratios`) within pairs of nearest neighbours
    in condition space: Geant4 events and their neighbours (``real_*``, B x 11 x 11 in GeV) against maps
    generated, with independent noise, for the same two conditions (``fake_*``).

    A single generated map cannot show whether the noise makes showers fluctuate at fixed conditions
    as much as Geant4's: a generator that ignores its noise can still match every marginal distribution
    through the conditions. Within a pair the conditions hardly differ (median 0.12 standard deviations
    on 200k electrons) and Geant4's difference is mostly shower fluctuation: on that sample its E5x5/p
    differs by 0.044 x sqrt(2) (rms), the polymean candidate's by 0.016 x sqrt(2), the shipped model's
    by 0.093 x sqrt(2)."""
    if features == "shape":
        fake = shape_ratios(fake_gev) - shape_ratios(fake_neighbour_gev)
        real = shape_ratios(real_gev) - shape_ratios(real_neighbour_gev)
    elif features == "containment":
        fake = containment_fractions(fake_gev, p_gev) - containment_fractions(fake_neighbour_gev, p_neighbour_gev)
        real = containment_fractions(real_gev, p_gev) - containment_fractions(real_neighbour_gev, p_neighbour_gev)
    else:
        raise ValueError(f"unknown neighbour features {features!r}: choose one of {', '.join(NEIGHBOUR_FEATURES)}")
    return standardised_mmd(fake, real)


def shower_position_features(maps_gev: torch.Tensor, p_gev: torch.Tensor) -> torch.Tensor:
    """Features (B, 6) of maps (B, 11, 11) in GeV that depend on where the particle entered: E1x1/p,
    E3x3/p, E5x5/p, the energy-weighted centre (row, column) relative to the centre crystal, in crystal
    units, and the lateral second moment (crystal units squared)."""
    fractions = containment_fractions(maps_gev, p_gev, (1, 3, 5))  # (B, 3)
    return torch.cat([fractions, lateral_moments(maps_gev)], dim=1)  # (B, 6)


def cell_covariance_constraint(fake_gev: torch.Tensor, real_gev: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Mean squared difference of the batch covariance matrices of ``log(1 + E / 1 MeV)`` of the central
    ``size`` x ``size`` crystals of generated and Geant4 maps (B, 11, 11) in GeV of the same conditions, each
    crystal in units of the Geant4 batch's spread there: the diagonal compares the spreads, the rest how the
    crystals vary together."""
    f = log_energy(_central(fake_gev, size), scale_gev=SOFT_HIT_SCALE_GEV).flatten(1)  # (B, size^2)
    r = log_energy(_central(real_gev, size), scale_gev=SOFT_HIT_SCALE_GEV).flatten(1)  # (B, size^2)
    scale = r.std(dim=0).clamp_min(0.05)  # (size^2,)
    f = (f - f.mean(dim=0)) / scale
    r = (r - r.mean(dim=0)) / scale
    n = len(f)
    return ((f.T @ f - r.T @ r) / (n - 1)).pow(2).mean()


def matched_regressor_loss(
    pred_fake: torch.Tensor, pred_real: torch.Tensor, conditions: torch.Tensor
) -> torch.Tensor:
    """How differently well the regressor recovers the conditions of generated and of Geant4 maps.

    Args:
        pred_fake: (B, 6) the regressor's predictions on generated maps of the batch conditions.
        pred_real: (B, 6) its predictions on the Geant4 maps of the same conditions.
        conditions: (B, 6) the normalised conditions.

    Returns:
        The squared relative differences of the per-condition mean squared errors, summed over the six:
        ``sum_k ((mse_fake_k - mse_real_k) / mse_real_k)^2``. Zero when generated maps carry as much
        information on each condition as Geant4's, whether the generator makes them tell more or less.
    """
    mse_fake = ((pred_fake - conditions) ** 2).mean(dim=0)  # (6,)
    mse_real = ((pred_real - conditions) ** 2).mean(dim=0).clamp_min(1e-6)  # (6,)
    return (((mse_fake - mse_real) / mse_real) ** 2).sum()


def condition_moments(
    fake_gev: torch.Tensor, real_gev: torch.Tensor, p_gev: torch.Tensor, conditions: torch.Tensor
) -> torch.Tensor:
    """Conditional moment matching between generated and Geant4 maps (B, 11, 11) of the same conditions:
    the squared differences, summed, of the batch correlations between the
    :func:`shower_position_features` and the normalised conditions (B, 6) together with ``|dz_pos|``
    and ``|dphi_pos|`` (the containment depends on the distance from the crystal centre, not its sign).
    Both correlations are taken with the Geant4 batch's feature scale, so the term also sees a
    generated feature whose spread is too small."""
    c = torch.cat([conditions, conditions[:, 3:5].abs()], dim=1)  # (B, 8)
    c = (c - c.mean(dim=0)) / c.std(dim=0).clamp_min(1e-6)
    real = shower_position_features(real_gev, p_gev)  # (B, 6)
    fake = shower_position_features(fake_gev, p_gev)  # (B, 6)
    scale = real.std(dim=0).clamp_min(1e-3)  # (6,)
    corr_real = ((real - real.mean(dim=0)) / scale).T @ c / len(c)  # (6, 8)
    corr_fake = ((fake - fake.mean(dim=0)) / scale).T @ c / len(c)  # (6, 8)
    return ((corr_fake - corr_real) ** 2).sum()


class GAN(ShowerModel):
    """The seed's conditional GAN (``loss: gan``) or its WGAN-GP variant (``loss: wgan-gp``), with the
    pre-trained regressor constraint. See the module docstring for the architecture."""

    name = "gan"
    config_class = GANConfig

    def __init__(self, config: GANConfig) -> None:
        super().__init__(config)
        shape = ({"hidden": tuple(config.generator_hidden)} if config.generator_hidden
                 else {"channels": tuple(config.generator_channels)})
        self.generator = (MLPGenerator if config.generator_hidden else Generator)(
            config.noise_dim,
            self.n_condition_inputs,
            **shape,
            output_leak=config.output_gradient_leak,
            output_max=LOG_OUTPUT_MAX if config.output_transform == "log" else None,
            mean_shower_degree=config.mean_shower_degree if config.mean_shower_bias else None,
        )
        self.discriminator = Discriminator(config, self.n_condition_inputs)
        self.regressor = Regressor(self.n_particle_inputs, slope=config.leaky_slope)
        for net in (self.generator, self.discriminator, self.regressor):
            keras_init_(net)
        self.energy = EnergyModel(self.n_condition_inputs) if config.energy_model else None
        if config.mean_shower_bias and config.mean_shower_degree > 0:
            with torch.no_grad():  # start as the fitted mean shower plus small fluctuations
                self.generator.last_layer.weight.mul_(POLYNOMIAL_MEAN_SHOWER_INIT_SCALE)

    def for_inference(self) -> GAN:
        """A copy whose generator is the :meth:`Generator.fused` form (the ONNX export uses it)."""
        fast = copy.deepcopy(self)
        fast.generator = fast.generator.fused()
        return fast.eval()

    @property
    def noise_size(self) -> int:
        """Standard normal numbers per shower: the generator's ``noise_dim``, and two for the energy model."""
        return self.config.noise_dim + (ENERGY_NOISE_DIM if self.energy is not None else 0)

    def fit_energy(
        self,
        maps_gev: np.ndarray,
        conditions: np.ndarray,
        particle_index: np.ndarray | None = None,
        *,
        epochs: int = 20,
        seed: int = 0,
        progress: bool = False,
    ) -> list[float]:
        """Fit the energy model (made here if the model has none, ``energy_model`` then set) to the
        fractions E11x11 / p of training maps (N, 11, 11) in GeV with their conditions (N, 6) and particle
        indices (N,; None: all of the first). Returns the negative log-likelihood per epoch."""
        if self.energy is None:
            self.config = dataclasses.replace(self.config, energy_model=True)
            self.energy = EnergyModel(self.n_condition_inputs).to(self.device)
        c = torch.as_tensor(np.asarray(conditions, dtype=np.float32), device=self.device)
        index = torch.zeros(len(c), dtype=torch.long) if particle_index is None else torch.as_tensor(particle_index)
        with torch.no_grad():
            x = self.condition_input(c, index.to(self.device)).cpu().numpy()
        f = np.asarray(maps_gev, dtype=np.float64).sum(axis=(1, 2)) / np.maximum(
            np.asarray(conditions, dtype=np.float64)[:, 0], MIN_MOMENTUM_GEV
        )
        return self.energy.fit(x, f, epochs=epochs, seed=seed, progress=progress)

    def regularise_mean_shower(self, conditions: np.ndarray, particle_index: np.ndarray | None = None) -> float:
        """:meth:`MeanShower.regularise` on the training conditions (N, 6), raw units, with the particle
        indices (N,; None: all of the first); for models whose mean shower was fitted with the earlier tiny
        ridge (:data:`MEAN_SHOWER_RIDGE`). Returns the rms change of the mean shower there (0 without a
        polynomial mean shower)."""
        mean_shower = self.generator.mean_shower
        if mean_shower is None or mean_shower.degree == 0:
            return 0.0
        c = torch.as_tensor(np.asarray(conditions, dtype=np.float32))
        index = torch.zeros(len(c), dtype=torch.long) if particle_index is None else torch.as_tensor(particle_index)
        return mean_shower.regularise((c - self.cond_mean.cpu()) / self.cond_std.cpu(), index)

    def fit_maps(
        self, maps_gev: np.ndarray, conditions: np.ndarray, particle_index: np.ndarray | None = None
    ) -> None:
        """Start the generator's mean shower (``mean_shower_bias``) at the least-squares fit to training maps
        (N, 11, 11) in GeV, taken in the generator's output space, with their conditions (N, 6) and the
        indices of their particle types (N,; None: all of the first); degree 0 gives the mean map. Fit the
        energy model too (``energy_model``). A no-op without either option. Fit the condition
        normalisation first."""
        if self.energy is not None:
            self.fit_energy(maps_gev, conditions, particle_index)
        mean_shower = self.generator.mean_shower
        if mean_shower is None:
            return
        cfg = self.config
        maps = torch.as_tensor(np.asarray(maps_gev, dtype=np.float32))  # (N, 11, 11)
        c = torch.as_tensor(np.asarray(conditions, dtype=np.float32))  # (N, 6)
        index = torch.zeros(len(c), dtype=torch.long) if particle_index is None else torch.as_tensor(particle_index)
        u = gev_to_model(maps, c[:, 0], kind=cfg.output_transform, epsilon=cfg.log_epsilon)  # (N, 1, 11, 11)
        mean_shower.fit(u.squeeze(1), (c - self.cond_mean) / self.cond_std, index)

    # ---- generation -------------------------------------------------------------------------------

    def generate(self, noise: torch.Tensor, conditions: torch.Tensor, particle_index: torch.Tensor) -> torch.Tensor:
        """Maps in GeV (B, 1, 11, 11) from noise (B, :attr:`noise_size`), raw conditions (B, 6), particle
        indices (B,). With the energy model, the generator's map is rescaled to the drawn E11x11."""
        cfg = self.config
        x = self.condition_input(conditions, particle_index)  # (B, 6 [+ n_particles])
        u = self.generator(noise[:, : cfg.noise_dim], x)  # (B, 1, 11, 11)
        maps = model_to_gev(u, conditions[:, 0], kind=cfg.output_transform, epsilon=cfg.log_epsilon)
        if self.energy is None:
            return maps
        if not bool(self.energy.fitted):
            raise ValueError("this model's energy model is not fitted (GAN.fit_energy, or caloforge fit-energy)")
        return self._with_drawn_energy(maps, conditions[:, 0], x, noise[:, cfg.noise_dim :])

    def _with_drawn_energy(
        self, maps_gev: torch.Tensor, p_gev: torch.Tensor, x: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """Maps (B, 1, 11, 11) in GeV rescaled to ``E11x11 = f p``, ``f`` from the energy model for the network
        input ``x`` and its noise (B, 2); the energy model passes no gradient (it is fitted on its own)."""
        total = p_gev.clamp_min(MIN_MOMENTUM_GEV) * self.energy.fraction(x, noise).detach()  # (B,)
        return maps_gev * (total / maps_gev.sum(dim=(1, 2, 3)).clamp_min(1e-9)).view(-1, 1, 1, 1)

    def _sample_batch(
        self, conditions: torch.Tensor, particle_index: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor:
        noise = gaussian_noise(rng, len(conditions), self.noise_size)
        z = torch.as_tensor(noise, device=conditions.device)  # (B, noise_size)
        return self.generate(z, conditions, particle_index).squeeze(1)  # (B, 11, 11)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per network."""
        nets = ("generator", "discriminator", "regressor") + (("energy",) if self.energy is not None else ())
        return {name: sum(p.numel() for p in getattr(self, name).parameters() if p.requires_grad) for name in nets}

    # ---- training ---------------------------------------------------------------------------------

    @property
    def uses_regressor(self) -> bool:
        return self.config.regressor_weight > 0

    @property
    def n_pretrain_epochs(self) -> int:
        return self.config.regressor_epochs if self.uses_regressor else 0

    @property
    def uses_neighbours(self) -> bool:
        return self.config.neighbour_mmd_weight > 0

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        opts: dict[str, torch.optim.Optimizer] = {
            "discriminator": torch.optim.Adam(
                self.discriminator.parameters(), lr=cfg.lr_discriminator, betas=cfg.betas
            ),
            "generator": torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_generator, betas=cfg.betas),
        }
        if self.uses_regressor:
            opts["regressor"] = torch.optim.Adam(self.regressor.parameters(), lr=cfg.lr_regressor)
        return opts

    def training_plan(self, epoch: int) -> list[TrainingStep]:
        if epoch < self.n_pretrain_epochs:
            return [TrainingStep("regressor")]
        return [TrainingStep("discriminator"), TrainingStep("generator", every=self.config.n_critic)]

    def validation_step(self, batch: Batch) -> dict[str, float]:
        """Regressor mean squared error (normalised conditions) on held-out Geant4 maps."""
        if not self.uses_regressor:
            return {}
        cond = self.condition_input(batch.conditions, batch.particle)  # (B, 6 [+ n_particles])
        pred = self.regressor(batch.maps_gev.unsqueeze(1), cond[:, N_CONDITIONS:])  # (B, 6)
        return {"regressor_mse": F.mse_loss(pred, cond[:, :N_CONDITIONS]).item()}

    def _real(self, batch: Batch) -> torch.Tensor:
        cfg = self.config
        p = batch.conditions[:, 0]
        return gev_to_model(batch.maps_gev, p, kind=cfg.output_transform, epsilon=cfg.log_epsilon)  # (B, 1, 11, 11)

    def _noise(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.noise_size, device=device)  # (B, noise_size)

    def _fake(self, conditions: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Generated maps (B, 1, 11, 11) in the generator's output space for raw conditions (B, 6) and the
        network input ``cond``; with the energy model their total is the drawn one (the energy model is
        fixed: it is fitted before training, not by the adversarial loss)."""
        cfg = self.config
        noise = self._noise(len(cond), cond.device)
        u = self.generator(noise[:, : cfg.noise_dim], cond)  # (B, 1, 11, 11)
        if self.energy is None:
            return u
        p = conditions[:, 0]
        maps = model_to_gev(u, p, kind=cfg.output_transform, epsilon=cfg.log_epsilon)
        maps = self._with_drawn_energy(maps, p, cond, noise[:, cfg.noise_dim :])
        return gev_to_model(maps.squeeze(1), p, kind=cfg.output_transform, epsilon=cfg.log_epsilon)

    def training_step(self, step: str, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        p = batch.conditions[:, 0]  # (B,) GeV/c
        cond = self.condition_input(batch.conditions, batch.particle)  # (B, 6 [+ n_particles])
        onehot = cond[:, N_CONDITIONS:]  # (B, n_particles) or (B, 0)
        if step == "regressor":
            pred = self.regressor(batch.maps_gev.unsqueeze(1), onehot)  # (B, 6)
            loss = F.mse_loss(pred, cond[:, :N_CONDITIONS])
            return loss, {"mse": loss.item()}
        if step == "discriminator":
            real = self._real(batch)  # (B, 1, 11, 11)
            with torch.no_grad():
                fake = self._fake(batch.conditions, cond)  # (B, 1, 11, 11)
            d_real = self.discriminator(real, cond, p)  # (B,)
            d_fake = self.discriminator(fake, cond, p)  # (B,)
            logs = {"real": d_real.mean().item(), "fake": d_fake.mean().item()}
            if cfg.loss == "gan":
                loss = F.binary_cross_entropy_with_logits(
                    d_real, torch.ones_like(d_real)
                ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
            else:
                gp = gradient_penalty(self.discriminator, real, fake, cond, p)
                wdist = d_real.mean() - d_fake.mean()
                loss = -wdist + cfg.gp_lambda * gp
                logs.update(wasserstein=wdist.item(), gp=gp.item())
            logs["loss"] = loss.item()
            return loss, logs
        if step == "generator":
            fake = self._fake(batch.conditions, cond)  # (B, 1, 11, 11)
            d_fake = self.discriminator(fake, cond, p)  # (B,)
            if cfg.loss == "gan":
                adv = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))  # non-saturating
            else:
                adv = -d_fake.mean()
            loss = adv
            logs = {"adversarial": adv.item()}
            e_fake = model_to_gev(fake, p, kind=cfg.output_transform, epsilon=cfg.log_epsilon)  # (B, 1, 11, 11)
            if cfg.energy_constraint_weight > 0:
                energy = energy_sum_constraint(e_fake.squeeze(1), batch.maps_gev, p)
                loss = loss + cfg.energy_constraint_weight * energy
                logs["energy_constraint"] = energy.item()
            if cfg.shape_mmd_weight > 0:
                mmd = shape_mmd(e_fake.squeeze(1), batch.maps_gev, p, cfg.shape_mmd_features)
                loss = loss + cfg.shape_mmd_weight * mmd
                logs["shape_mmd"] = mmd.item()
            if cfg.shape_moment_weight > 0:
                moments_lat = shape_moment_constraint(e_fake.squeeze(1), batch.maps_gev)
                loss = loss + cfg.shape_moment_weight * moments_lat
                logs["shape_moments"] = moments_lat.item()
            if cfg.neighbour_mmd_weight > 0:
                if batch.neighbour_maps_gev is None or batch.neighbour_conditions is None:
                    raise ValueError("neighbour_mmd_weight > 0 needs batches with neighbours (uses_neighbours)")
                p_nb = batch.neighbour_conditions[:, 0]  # (B,)
                cond_nb = self.condition_input(batch.neighbour_conditions, batch.particle)
                fake_nb = self._fake(batch.neighbour_conditions, cond_nb)  # (B, 1, 11, 11)
                e_nb = model_to_gev(fake_nb, p_nb, kind=cfg.output_transform, epsilon=cfg.log_epsilon)
                spread = neighbour_mmd(
                    e_fake.squeeze(1), e_nb.squeeze(1), batch.maps_gev, batch.neighbour_maps_gev, p, p_nb,
                    cfg.neighbour_mmd_features,
                )
                loss = loss + cfg.neighbour_mmd_weight * spread
                logs["neighbour_mmd"] = spread.item()
            if cfg.cell_covariance_weight > 0:
                covariance = cell_covariance_constraint(e_fake.squeeze(1), batch.maps_gev, cfg.cell_covariance_size)
                loss = loss + cfg.cell_covariance_weight * covariance
                logs["cell_covariance"] = covariance.item()
            if cfg.condition_moment_weight > 0:
                moments = condition_moments(e_fake.squeeze(1), batch.maps_gev, p, cond[:, :N_CONDITIONS])
                loss = loss + cfg.condition_moment_weight * moments
                logs["condition_moments"] = moments.item()
            if self.uses_regressor:
                pred = self.regressor(e_fake, onehot)  # (B, 6)
                reg = F.mse_loss(pred, cond[:, :N_CONDITIONS])
                logs["regressor_mse"] = reg.item()
                if cfg.regressor_loss == "matched":
                    with torch.no_grad():
                        pred_real = self.regressor(batch.maps_gev.unsqueeze(1), onehot)  # (B, 6)
                    reg = matched_regressor_loss(pred, pred_real, cond[:, :N_CONDITIONS])
                    logs["regressor_mismatch"] = reg.item()
                loss = loss + cfg.regressor_weight * reg
            logs["loss"] = loss.item()
            return loss, logs
        raise ValueError(f"unknown training step {step!r}")
