"""The shipped default models: one checkpoint per particle type, described in MODEL_CARD.md; and the
seed-size models they were distilled from (``seed_gan_<particle>.pt``)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_STEMS = {"e-": "gan_e-", "e+": "gan_e+", "gamma": "gan_gamma"}
"""Particle -> file name (without suffix) in this folder: ``.pt`` checkpoint, ``.onnx`` export and
``_int8.onnx`` 8-bit export."""
SEED_STEMS = {name: f"seed_{stem}" for name, stem in DEFAULT_STEMS.items()}
"""Particle -> file name (without suffix) of the seed-size model (the seed's generator widths) that the default
was distilled from (``caloforge distill``): a ``.pt`` checkpoint, for comparisons and further training."""


INT8_SUFFIX = "_int8.onnx"
"""File name ending of the 8-bit exports (``gan_<particle>_int8.onnx``, :mod:`caloforge.export.quantize`): the
models ``caloforge simulate`` runs by default."""


def default_model_paths(backend: str = "onnx", *, int8: bool = True) -> dict[str, Path]:
    """Particle -> path of its shipped model for the backend, those present: ``onnx``: the 8-bit export
    (``int8``, the default; the float32 one for a model without an 8-bit export) or the float32 one; ``torch``:
    the ``.pt`` checkpoint."""
    suffixes = [".pt"] if backend != "onnx" else [INT8_SUFFIX, ".onnx"] if int8 else [".onnx"]
    paths = {name: next((p for s in suffixes if (p := HERE / f"{stem}{s}").exists()), None)
             for name, stem in DEFAULT_STEMS.items()}
    return {name: p for name, p in paths.items() if p is not None}


def seed_model_paths() -> dict[str, Path]:
    """Particle -> path of its shipped seed-size checkpoint (``.pt``), those present."""
    paths = {name: HERE / f"{stem}.pt" for name, stem in SEED_STEMS.items()}
    return {name: p for name, p in paths.items() if p.exists()}
