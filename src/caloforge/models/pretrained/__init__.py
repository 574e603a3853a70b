"""The shipped default models: one checkpoint per particle type, described in MODEL_CARD.md; and the
seed-size models they were distilled from (``seed_gan_<particle>.pt``)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_STEMS = {"e-": "gan_e-", "e+": "gan_e+", "gamma": "gan_gamma"}
"""Particle -> file name (without suffix) in this folder: ``.pt`` checkpoint and ``.onnx`` export."""
SEED_STEMS = {name: f"seed_{stem}" for name, stem in DEFAULT_STEMS.items()}
"""Particle -> file name (without suffix) of the seed-size model (the seed's generator widths) that the default
was distilled from (``caloforge distill``): a ``.pt`` checkpoint, for comparisons and further training."""


def default_model_paths(backend: str = "onnx") -> dict[str, Path]:
    """Particle -> path of its shipped model for the backend (``.onnx`` or ``.pt``), those present."""
    suffix = ".onnx" if backend == "onnx" else ".pt"
    paths = {name: HERE / f"{stem}{suffix}" for name, stem in DEFAULT_STEMS.items()}
    return {name: p for name, p in paths.items() if p.exists()}


def seed_model_paths() -> dict[str, Path]:
    """Particle -> path of its shipped seed-size checkpoint (``.pt``), those present."""
    paths = {name: HERE / f"{stem}.pt" for name, stem in SEED_STEMS.items()}
    return {name: p for name, p in paths.items() if p.exists()}
