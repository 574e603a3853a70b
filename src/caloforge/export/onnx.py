"""ONNX export of a shower model's generator, and an ONNX Runtime sampler with the same interface.

The exported graph (opset 17, dynamic batch dimension ``batch``), in the spirit of Geant4's Par04
example, so that a C++ framework can call it with ONNX Runtime:

=========  ================  =======  ==================================================================
name       shape             type     meaning
=========  ================  =======  ==================================================================
noise      (batch, noise)    float32  standard normal noise, ``noise`` = metadata ``noise_dim``
cond       (batch, 6)        float32  raw conditions in the order of ``condition_names`` (GeV/c, rad,
                                      cm; see docs/conventions.md); normalisation is inside the graph
particle   (batch,)          int64    index into metadata ``particles``; only in models of several
                                      particle types (a single-type graph has no such input)
maps       (batch, 11, 11)   float32  output: deposited energy per crystal in GeV, rows theta_index,
                                      columns phi_index, centre crystal at [5, 5]; never negative
=========  ================  =======  ==================================================================

The model is exported in its inference form (:meth:`caloforge.models.ShowerModel.for_inference`; for the
GAN the generator's dense layer, upsampling and first convolution become one matrix), the same function
as the trained network, checked against it by the tests. It is traced without gradients, so that the
training-only parts (the leaky gradient of the final ReLU) leave no operators in the graph.

The metadata (``metadata_props``) holds the caloforge version, the model name, ``particles`` (JSON),
``pdg`` (JSON), ``noise_dim`` and ``condition_names`` (JSON), and for an 8-bit export (``int8=True``)
``quantization`` (JSON: the 8-bit layers, their input scales, the calibration rows).
:class:`caloforge.export.runtime.OnnxShowerModel` runs such a file.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

import caloforge
from caloforge.atomic import atomic_path
from caloforge.detector.conditions import CONDITION_NAMES, PARTICLES

OPSET = 17


class _Graph(nn.Module):
    """noise, raw conditions, particle index -> maps in GeV (the deterministic part of sampling)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, noise: torch.Tensor, cond: torch.Tensor, particle_index: torch.Tensor) -> torch.Tensor:
        maps = self.model.generate(noise, cond, particle_index)  # (B, 1, 11, 11) or (B, 11, 11)
        if maps.dim() == 4:  # decided while tracing: no dynamic If in the graph
            maps = maps.squeeze(1)
        return maps.clamp_min(0.0)  # (B, 11, 11)


def export_onnx(model, path: str | os.PathLike, *, int8: bool = False) -> Path:
    """Write the generator of ``model`` (a :class:`caloforge.models.ShowerModel`) as an ONNX file.

    ``int8``: the hidden layers of a fully connected generator in 8 bits (:mod:`caloforge.export.quantize`),
    calibrated on :data:`~caloforge.export.quantize.CALIBRATION_ROWS` particle-gun tracks; the same inputs
    and outputs."""
    import onnx

    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"{path}: the output of an ONNX export must end in .onnx")
    if path.exists():
        raise ValueError(f"{path} exists: choose another name or remove it first")
    if not path.parent.exists():
        raise ValueError(f"{path.parent}: no such directory")
    noise_dim = int(model.noise_size)  # standard normal numbers per shower (a GAN's generator + energy model)
    graph = _Graph(model.for_inference()).eval().cpu()
    example = (torch.zeros(2, noise_dim), torch.ones(2, len(CONDITION_NAMES)), torch.zeros(2, dtype=torch.long))
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its retirement
            torch.onnx.export(
                graph, example, tmp, input_names=["noise", "cond", "particle"], output_names=["maps"],
                dynamic_axes={"noise": {0: "batch"}, "cond": {0: "batch"}, "particle": {0: "batch"},
                              "maps": {0: "batch"}},
                opset_version=OPSET, dynamo=False,
            )
        proto = onnx.load(tmp)
        meta = {
            "caloforge_version": caloforge.__version__,
            "model_name": model.config.name,
            "particles": json.dumps(list(model.particles)),
            "pdg": json.dumps([PARTICLES[p].pdg for p in model.particles]),
            "noise_dim": str(noise_dim),
            "condition_names": json.dumps(CONDITION_NAMES),
            "units": "maps in GeV; cond in GeV/c, rad, rad, cm, rad, cm",
        }
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        if int8:
            from caloforge.export.quantize import NotQuantizableError, calibration_rows, quantize_hidden_layers

            if len(model.particles) != 1:
                raise NotQuantizableError("8-bit export is for models of one particle type")
            noise, cond, note = calibration_rows(model.particles[0], noise_dim)
            proto = quantize_hidden_layers(proto, noise, cond, calibration_note=note)
        onnx.save(proto, tmp)
    model.to(model.device)
    return path
