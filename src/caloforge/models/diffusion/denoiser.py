"""The conditional U-Net that denoises the shape variables (:class:`Denoiser`).

diffusers' ``UNet2DModel`` (one input and one output channel) on the 11 x 11 map of the 121 shape variables,
padded to 12 x 12 so that each level halves it exactly (12, 6, 3). The context (normalised conditions and the
standardised energy) enters through a small MLP whose output is added to the U-Net's timestep embedding
(``class_embed_type="identity"``), so that every residual block sees both.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from caloforge.detector.geometry import WINDOW
from caloforge.models.diffusion.config import DiffusionConfig
from caloforge.models.shape_space import N_CELLS

__all__ = ["PADDED", "Denoiser", "norm_groups"]

PADDED = 12
"""Side of the padded map: one row at the bottom and one column at the right, zero on the way in, dropped on the
way out (the U-Net's output is cropped to its first 11 rows and columns, the original cells)."""


def norm_groups(channels: tuple[int, ...]) -> int:
    """Group count of the U-Net's group normalisations: the largest of 8, 4, 2, 1 dividing all ``channels`` (at most
    8, so that the groups of a small U-Net still hold several channels)."""
    return math.gcd(8, *channels)


class Denoiser(nn.Module):
    """The U-Net's prediction (epsilon or v, B x 121) from noisy shape variables (B, 121), the diffusion timesteps
    (a scalar or (B,) integers) and the context (B, n_context)."""

    def __init__(self, config: DiffusionConfig, n_context: int) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        channels = tuple(config.block_channels)
        levels = range(len(channels))
        attention = set(config.attention)
        embedding = 4 * channels[0]  # diffusers' timestep embedding width
        self.unet = UNet2DModel(
            sample_size=PADDED,
            in_channels=1,
            out_channels=1,
            down_block_types=tuple("AttnDownBlock2D" if i in attention else "DownBlock2D" for i in levels),
            up_block_types=tuple("AttnUpBlock2D" if i in attention else "UpBlock2D" for i in reversed(levels)),
            block_out_channels=channels,
            layers_per_block=config.layers_per_block,
            attention_head_dim=None,  # one head over all channels of a level
            norm_num_groups=norm_groups(channels),
            add_attention=len(channels) - 1 in attention,  # the middle block, at the deepest level
            class_embed_type="identity",
            num_train_timesteps=config.train_timesteps,
        )
        self.context_embedding = nn.Sequential(
            nn.Linear(n_context, embedding), nn.SiLU(), nn.Linear(embedding, embedding)
        )

    def forward(self, y: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        image = y.view(-1, 1, WINDOW, WINDOW)  # (B, 1, 11, 11)
        image = nn.functional.pad(image, (0, PADDED - WINDOW, 0, PADDED - WINDOW))  # (B, 1, 12, 12)
        out = self.unet(image, timesteps, class_labels=self.context_embedding(context), return_dict=False)[0]
        return out[:, 0, :WINDOW, :WINDOW].reshape(-1, N_CELLS)  # (B, 121)
