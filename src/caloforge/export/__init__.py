"""Export of trained models for other frameworks: ONNX (for ONNX Runtime in C++ or Python)."""

from caloforge.export.onnx import OnnxShowerModel, export_onnx

__all__ = ["OnnxShowerModel", "export_onnx"]
