"""The GAN's networks: the generators (the seed's convolutional one, a fully connected one for distillation, and
the fused inference form), the discriminator / critic, the condition regressor, and their initialisation.

Architectures are drawn in :mod:`caloforge.models.gan`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from caloforge.detector.geometry import WINDOW
from caloforge.models.gan.mean_shower import MeanShower
from caloforge.models.inputs import N_CONDITIONS
from caloforge.models.transforms import MIN_MOMENTUM_GEV, log_energy, model_to_gev

if TYPE_CHECKING:
    from caloforge.models.gan.config import GANConfig

SEED_GENERATOR_CHANNELS = (16, 16, 16, 8)
"""Output channels of the generator's 4x4 convolution and its 3x3 convolutions in the seed (the dense layer
feeds the first of them)."""

LOG_OUTPUT_MAX = 1.0
"""With ``output_transform: log`` the generator's output is capped at this ``u``, one momentum in a crystal
(``u = 1`` is ``E = p``): a crystal cannot take more than the particle brings. In log space (``eps`` = 1e-4)
every 0.1 of ``u`` above it multiplies the energy by 2.5."""


class ReLUWithLeakyGradient(nn.Module):
    """``relu(x)`` in the forward pass, with slope ``leak`` instead of 0 for ``x < 0`` in the backward pass;
    with ``upper``, ``clamp(x, 0, upper)``, with slope ``leak`` above ``upper`` too.

    The output is exactly the seed's ReLU (empty crystals are exact zeros), but a generator whose final
    ReLU has gone negative everywhere, which real maps with mostly empty crystals readily push it to, still
    receives gradients and can recover instead of dying.
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
    """The seed's generator: noise + conditions -> maps in the generator's output space (B, 1, 11, 11),
    non-negative.

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

    def forward(self, noise: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        x = self.first_stage(torch.cat([noise, conditions], dim=1))  # (B, c0, 12, 12)
        return self.output(self.convs[2:](x), conditions)  # (B, 1, 11, 11)

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

    Not the seed's architecture: the student of distillation from a seed-size model
    (:mod:`caloforge.training.distill`, ``GANConfig.generator_hidden``)."""

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
    float64. It costs (noise_dim + n_conditions) x 2304 multiplications per shower, more than the layers it
    replaces, but a matrix product runs much faster per multiplication than the upsampling and convolution.
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
    rounding), its first stage one matrix product (:func:`first_stage_as_linear`). A snapshot: later changes
    to the generator's weights do not reach it."""

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
    """CNN that predicts the 6 normalised conditions from a map in GeV (B, 1, 11, 11) [+ one-hot type], on
    ``log(1 + E / 1 MeV)``."""

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
    defaults the seed's networks were built with). With them the untrained generator deposits a few times
    the momentum over part of the crystals, not many times over all of them as with PyTorch's defaults,
    which keeps the final ReLU from being driven below zero everywhere at the start."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
