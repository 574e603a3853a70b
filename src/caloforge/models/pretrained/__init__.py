"""The shipped default models: one checkpoint per particle type, described in MODEL_CARD.md."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_FILES = {"e-": "gan_e-.pt", "e+": "gan_e+.pt", "gamma": "gan_gamma.pt"}
"""Particle -> checkpoint file in this folder."""


def default_model_paths() -> dict[str, Path]:
    """Particle -> path of its shipped checkpoint, for those that are present."""
    return {name: HERE / f for name, f in DEFAULT_FILES.items() if (HERE / f).exists()}
