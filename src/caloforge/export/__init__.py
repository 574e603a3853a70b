"""Export of trained models for other frameworks: ONNX (for ONNX Runtime in C++ or Python).

* :mod:`caloforge.export.onnx`     -- :func:`export_onnx`, the graph and its documented inputs and outputs
* :mod:`caloforge.export.runtime`  -- :class:`OnnxShowerModel`, sampling through ONNX Runtime (no PyTorch)
* :mod:`caloforge.export.samplers` -- :func:`load_samplers`, the fast simulation's models from files
* :mod:`caloforge.export.quantize` -- 8-bit hidden layers of a fully connected generator (``export_onnx(...,
  int8=True)``; the shipped ``gan_<particle>_int8.onnx``), ONNX Runtime's QGemm operator

``export_onnx`` is imported on first use, so that the ONNX Runtime path does not load PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from caloforge.export.runtime import OnnxShowerModel
from caloforge.export.samplers import load_samplers

if TYPE_CHECKING:
    from caloforge.export.onnx import export_onnx


def __getattr__(name: str) -> Any:
    if name == "export_onnx":
        from caloforge.export.onnx import export_onnx

        return export_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["OnnxShowerModel", "export_onnx", "load_samplers"]
