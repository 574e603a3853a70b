"""The conditional GAN model (:class:`GAN`): its networks put together, sampling, the fits before training and
the training steps."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.nn import functional as F

from caloforge.models.base import Batch, ShowerModel, TrainingStep
from caloforge.models.energy import NOISE_DIM as ENERGY_NOISE_DIM
from caloforge.models.energy import EnergyModel
from caloforge.models.gan.config import GANConfig
from caloforge.models.gan.generator_loss import GeneratorPass, generator_terms
from caloforge.models.gan.losses import gradient_penalty
from caloforge.models.gan.mean_shower import POLYNOMIAL_MEAN_SHOWER_INIT_SCALE
from caloforge.models.gan.networks import (
    LOG_OUTPUT_MAX,
    Discriminator,
    Generator,
    MLPGenerator,
    Regressor,
    keras_init_,
)
from caloforge.models.inputs import N_CONDITIONS, gaussian_noise
from caloforge.models.transforms import MIN_MOMENTUM_GEV, gev_to_model, model_to_gev


class GAN(ShowerModel):
    """The seed's conditional GAN (``loss: gan``) or its WGAN-GP variant (``loss: wgan-gp``), with the
    pre-trained regressor constraint. See :mod:`caloforge.models.gan` for the architecture."""

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
        self.generator_terms = generator_terms(config)
        """The generator loss terms besides the adversarial one: log name -> (weight, term)."""

    def for_inference(self) -> GAN:
        """A copy whose generator is the :meth:`Generator.fused` form (the ONNX export uses it)."""
        fast = copy.deepcopy(self)
        fast.generator = fast.generator.fused()
        return fast.eval()

    @property
    def noise_size(self) -> int:
        """Standard normal numbers per shower: the generator's ``noise_dim``, and two for the energy model."""
        return self.config.noise_dim + (ENERGY_NOISE_DIM if self.energy is not None else 0)

    def regularise_mean_shower(self, conditions: np.ndarray, particle_index: np.ndarray | None = None) -> float:
        """:meth:`MeanShower.regularise` on the training conditions (N, 6), raw units, with the particle
        indices (N,; None: all of the first); for models whose mean shower was fitted with a much smaller
        ridge than :data:`MEAN_SHOWER_RIDGE`. Returns the rms change of the mean shower there (0 without a
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
        indices of their particle types (N,; None: all of the first); degree 0 gives the mean map. A no-op
        without it. Fit the condition normalisation first. The energy model (``energy_model``) is fitted by the
        ``energy`` plan of the training loop (:mod:`caloforge.training.energy_fit`); a fresh training run does
        so first."""
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
            raise ValueError("this model's energy model is not fitted (training.plan: energy, or caloforge fit-energy)")
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
        """Whether the generator loss has the regressor term (and the regressor is pre-trained)."""
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
        """The Geant4 maps of the batch in the generator's output space (B, 1, 11, 11)."""
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
        if step == "regressor":
            return self._regressor_step(batch)
        if step == "discriminator":
            return self._discriminator_step(batch)
        if step == "generator":
            return self._generator_step(batch)
        raise ValueError(f"unknown training step {step!r}")

    def _regressor_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The regressor's mean squared error on the normalised conditions of Geant4 maps."""
        cond = self.condition_input(batch.conditions, batch.particle)  # (B, 6 [+ n_particles])
        pred = self.regressor(batch.maps_gev.unsqueeze(1), cond[:, N_CONDITIONS:])  # (B, 6)
        loss = F.mse_loss(pred, cond[:, :N_CONDITIONS])
        return loss, {"mse": loss.item()}

    def _discriminator_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Binary cross-entropy of real against generated maps (``gan``), or the negative Wasserstein estimate
        plus the gradient penalty (``wgan-gp``)."""
        cfg = self.config
        p = batch.conditions[:, 0]  # (B,) GeV/c
        cond = self.condition_input(batch.conditions, batch.particle)  # (B, 6 [+ n_particles])
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

    def _generator_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The adversarial loss (non-saturating for ``gan``, minus the critic score for ``wgan-gp``) plus the
        weighted terms of :attr:`generator_terms`, each logged under its name."""
        cfg = self.config
        p = batch.conditions[:, 0]  # (B,) GeV/c
        cond = self.condition_input(batch.conditions, batch.particle)  # (B, 6 [+ n_particles])
        fake = self._fake(batch.conditions, cond)  # (B, 1, 11, 11)
        d_fake = self.discriminator(fake, cond, p)  # (B,)
        if cfg.loss == "gan":
            adv = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))  # non-saturating
        else:
            adv = -d_fake.mean()
        loss = adv
        logs = {"adversarial": adv.item()}
        e_fake = model_to_gev(fake, p, kind=cfg.output_transform, epsilon=cfg.log_epsilon)  # (B, 1, 11, 11)
        g = GeneratorPass(model=self, batch=batch, cond=cond, fake_maps_gev=e_fake)
        for name, (weight, term) in self.generator_terms.items():
            value = term(g)
            loss = loss + weight * value
            logs[name] = value.item()
        logs["loss"] = loss.item()
        return loss, logs
