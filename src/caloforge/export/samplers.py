"""Shower samplers for the fast simulation from model files, on either backend.

``.onnx`` files run in ONNX Runtime; ``.pt`` checkpoints run in PyTorch with ``backend="torch"``, or
are exported to a temporary ONNX file first with ``backend="onnx"`` (the faster one on a CPU).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from caloforge.export.runtime import OnnxShowerModel

BACKENDS = ("onnx", "torch")


def load_samplers(
    paths: list[str | os.PathLike], *, backend: str = "onnx", device: str = "cpu", int8: bool = True
) -> tuple[dict, list[str]]:
    """PDG id -> sampler for every particle the models cover, and a one-line description per file.

    Args:
        paths: model files (``.pt`` checkpoints or ``.onnx`` exports); empty: the shipped defaults.
        backend: ``onnx`` or ``torch`` (``.onnx`` files always run in ONNX Runtime).
        device: PyTorch device for ``backend="torch"``.
        int8: with no ``paths`` and ``backend="onnx"``: the shipped 8-bit exports (the default) or the
            float32 ones.

    Raises:
        ValueError: unknown backend, no model at all, or a file that is not a model.
    """
    from caloforge.models.pretrained import default_model_paths

    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    paths = list(paths) or list(default_model_paths(backend, int8=int8).values())
    if not paths:
        raise ValueError("no shipped models in this installation: pass --model CHECKPOINT (from caloforge train)")
    samplers, names = {}, []
    for path in map(Path, paths):
        if path.suffix.lower() == ".onnx":
            model = OnnxShowerModel(path)
        else:
            from caloforge.export.onnx import export_onnx  # PyTorch, for checkpoints only
            from caloforge.models import load_model

            model = load_model(path, device=device)
            if backend == "onnx":
                with tempfile.TemporaryDirectory() as tmp:  # the session keeps the graph in memory
                    model = OnnxShowerModel(export_onnx(model, Path(tmp) / "model.onnx"))
        samplers.update(model.samplers())
        names.append(f"{path.name} ({', '.join(model.particles)}; {backend})")
    return samplers, names
