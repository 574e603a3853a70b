"""The shipped default models: one checkpoint per particle type, described in MODEL_CARD.md."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_STEMS = {"e-": "gan_e-", "e+": "gan_e+", "gamma": "gan_gamma"}
"""Particle -> file name (without suffix) in this folder: ``.pt`` checkpoint and ``.onnx`` export."""


def default_model_paths(backend: str = "onnx") -> dict[str, Path]:
    """Particle -> path of its shipped model for the backend (``.onnx`` or ``.pt``), those present."""
    suffix = ".onnx" if backend == "onnx" else ".pt"
    paths = {name: HERE / f"{stem}{suffix}" for name, stem in DEFAULT_STEMS.items()}
    return {name: p for name, p in paths.items() if p.exists()}
