"""The two-stage conditional diffusion model (:class:`DiffusionModel`): the deposited energy, then the shape.

The energy stage and the shape variables are those of every two-stage model (:mod:`caloforge.models.two_stage`).
The shape is modelled by a denoising diffusion probabilistic model (DDPM; Ho, Jain and Abbeel, arXiv:2006.11239)
over the 121 shape variables, arranged as the 11 x 11 map, with a conditional U-Net
(:mod:`caloforge.models.diffusion.denoiser`), as in the seeds' diffusion model for photons and CaloDiffusion
(arXiv:2308.03876). The noise schedule and the samplers are diffusers':

* training: ``DDPMScheduler.add_noise`` at uniform random timesteps, mean squared error of the U-Net's
  prediction of the noise (``epsilon``) or of the velocity (``v_prediction``, ``DDPMScheduler.get_velocity``);
* sampling: a deterministic sampler from x_T = the shape noise, at ``sampling_steps`` U-Net evaluations with
  "trailing" timesteps (the first at t = T - 1, where the schedule holds no signal; Lin et al.,
  arXiv:2305.08891): DDIM with eta 0 (``DDIMScheduler``, arXiv:2010.02502) or DPM-Solver++ of order 2
  (``DPMSolverMultistepScheduler``, arXiv:2211.01095). The scheduler is built afresh for each call, so that
  repeated calls and any batch splitting give the same showers; the ONNX export unrolls its loop at the
  configured number of steps.

Sampling takes 2 + 121 standard normal numbers per shower (:attr:`DiffusionModel.noise_size`): two for the energy
stage, 121 for x_T.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from caloforge.models.diffusion.config import DiffusionConfig
from caloforge.models.diffusion.denoiser import Denoiser
from caloforge.models.shape_space import N_CELLS
from caloforge.models.two_stage import TwoStageModel

if TYPE_CHECKING:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

__all__ = ["DiffusionModel"]


class DiffusionModel(TwoStageModel):
    """Conditional diffusion model for 11 x 11 EMC maps: energy stage and shape U-Net (see the module)."""

    name = "diffusion"
    config_class = DiffusionConfig
    shape_loss_name = "mse_shape"

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__(config)
        from diffusers import DDPMScheduler

        self.denoiser = Denoiser(config, self.n_context)
        self.noise_schedule = DDPMScheduler(**self._schedule_settings())

    def _schedule_settings(self) -> dict:
        """The diffusers settings that every scheduler of this model shares: the forward process and the target."""
        cfg = self.config
        return {"num_train_timesteps": cfg.train_timesteps, "beta_schedule": cfg.beta_schedule,
                "prediction_type": cfg.prediction}

    @property
    def shape_noise_size(self) -> int:
        """121: x_T, one standard normal number per cell."""
        return N_CELLS

    def shape_loss(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Mean squared error per cell of the U-Net's prediction on shape variables ``y`` (B, 121) noised at
        uniform random timesteps; the noise and the timesteps from torch's global generator."""
        t = torch.randint(0, self.config.train_timesteps, (len(y),), device=y.device)  # (B,)
        noise = torch.randn_like(y)  # (B, 121)
        noisy = self.noise_schedule.add_noise(y, noise, t)  # (B, 121)
        target = noise if self.config.prediction == "epsilon" else self.noise_schedule.get_velocity(y, noise, t)
        return torch.nn.functional.mse_loss(self.denoiser(noisy, t, context), target)

    def sampling_scheduler(self) -> DDIMScheduler | DPMSolverMultistepScheduler:
        """A fresh diffusers scheduler of the configured sampler, its timesteps set to ``sampling_steps``."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        cfg = self.config
        if cfg.sampler == "ddim":
            scheduler = DDIMScheduler(**self._schedule_settings(), clip_sample=False, set_alpha_to_one=True,
                                      timestep_spacing="trailing")
        else:
            scheduler = DPMSolverMultistepScheduler(**self._schedule_settings(), algorithm_type="dpmsolver++",
                                                    solver_order=2, timestep_spacing="trailing")
        scheduler.set_timesteps(cfg.sampling_steps)
        return scheduler

    def sample_shape(self, noise: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The sampler's shape variables (B, 121) from x_T = ``noise`` (B, 121) under the context
        (B, :attr:`n_context`), in ``sampling_steps`` U-Net evaluations."""
        scheduler = self.sampling_scheduler()
        y = noise  # (B, 121)
        for t in scheduler.timesteps:  # on the CPU, where the scheduler indexes its schedule with them
            prediction = self.denoiser(y, t, context)  # (B, 121)
            y = scheduler.step(prediction, t, y, return_dict=False)[0]  # (B, 121)
        return y

    def with_sampling(self, sampler: str | None = None, steps: int | None = None) -> DiffusionModel:
        """Sample from now on with ``sampler`` (``ddim``, ``dpm``) and ``steps`` U-Net evaluations (None: keep the
        current one); no retraining needed. The setting is part of the configuration, so that checkpoints and
        ONNX exports written afterwards keep it. Returns the model itself; ConfigError for a bad value."""
        changes = {"sampler": sampler, "sampling_steps": steps}
        self.config = dataclasses.replace(self.config, **{k: v for k, v in changes.items() if v is not None})
        return self

    @property
    def faster_in_onnx_runtime(self) -> bool:
        """True: the default U-Net samples faster from its ONNX export in ONNX Runtime than in PyTorch on a CPU
        (the measurement: docs/experiments/diffusion.md)."""
        return True
