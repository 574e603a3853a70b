"""Export of trained models for other frameworks: ONNX (for ONNX Runtime in C++ or Python)."""

from caloforge.export.onnx import OnnxShowerModel, export_onnx
from caloforge.export.samplers import load_samplers

__all__ = ["OnnxShowerModel", "export_onnx", "load_samplers"]
