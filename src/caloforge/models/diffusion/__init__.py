"""The conditional diffusion model: deposited energy, then the shape, denoised by a U-Net in a few sampler steps.

* :mod:`caloforge.models.diffusion.config`   -- :class:`DiffusionConfig`
* :mod:`caloforge.models.diffusion.denoiser` -- the conditional U-Net (diffusers' UNet2DModel)
* :mod:`caloforge.models.diffusion.model`    -- :class:`DiffusionModel` (the two-stage model with a shape DDPM)
"""

from caloforge.models.diffusion.config import DiffusionConfig
from caloforge.models.diffusion.model import DiffusionModel

__all__ = ["DiffusionConfig", "DiffusionModel"]
