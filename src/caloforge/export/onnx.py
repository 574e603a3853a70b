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
``pdg`` (JSON), ``noise_dim`` and ``condition_names`` (JSON). :class:`OnnxShowerModel` draws the noise
exactly as :meth:`caloforge.models.ShowerModel.sample` does, so both backends give the same maps for
the same seed and batch size, up to float rounding.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import caloforge
from caloforge.detector.conditions import CONDITION_NAMES, PARTICLES, particle
from caloforge.detector.geometry import WINDOW
from caloforge.models.base import condition_array, gaussian_noise

OPSET = 17


class _Graph(nn.Module):
    """noise, raw conditions, particle index -> maps in GeV (the deterministic part of sampling)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, noise: torch.Tensor, cond: torch.Tensor, particle_index: torch.Tensor) -> torch.Tensor:
        return self.model.generate(noise, cond, particle_index).squeeze(1).clamp_min(0.0)  # (B, 11, 11)


def export_onnx(model, path: str | os.PathLike) -> Path:
    """Write the generator of ``model`` (a :class:`caloforge.models.ShowerModel`) as an ONNX file."""
    import onnx

    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"{path}: the output of an ONNX export must end in .onnx")
    if path.exists():
        raise ValueError(f"{path} exists: choose another name or remove it first")
    if not path.parent.exists():
        raise ValueError(f"{path.parent}: no such directory")
    noise_dim = int(getattr(model, "noise_size", model.config.noise_dim))  # generator noise (+ energy model)
    graph = _Graph(model.for_inference()).eval().cpu()
    example = (torch.zeros(2, noise_dim), torch.ones(2, len(CONDITION_NAMES)), torch.zeros(2, dtype=torch.long))
    tmp = path.with_name(path.name + ".partial")
    try:
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
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    model.to(model.device)
    return path


class OnnxShowerModel:
    """Sampling through ONNX Runtime; the same ``sample``/``samplers`` interface as the PyTorch models."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.exists():
            raise ValueError(f"{self.path}: no such file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{self.path}: not a loadable ONNX model ({err.__class__.__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.particles: list[str] = json.loads(meta["particles"])
            self.noise_dim = int(meta["noise_dim"])
        except KeyError:
            raise ValueError(f"{self.path}: not a caloforge model export (metadata missing)") from None
        self.metadata = dict(meta)
        self._inputs = {i.name for i in self.session.get_inputs()}

    def sample(
        self,
        conditions: np.ndarray,
        n: int | None = None,
        *,
        particle: str | int | None = None,
        seed: int | None = None,
        batch_size: int = 8192,
    ) -> np.ndarray:
        """Maps (N, 11, 11) in GeV; arguments as :meth:`caloforge.models.ShowerModel.sample`."""
        c = condition_array(conditions, n, batch_size)
        k = self._index(particle)
        rng = np.random.default_rng(seed)
        out = np.empty((len(c), WINDOW, WINDOW), dtype=np.float32)
        for start in range(0, len(c), batch_size):
            cb = np.ascontiguousarray(c[start : start + batch_size])
            noise = gaussian_noise(rng, len(cb), self.noise_dim)
            feed = {"noise": noise, "cond": cb}
            if "particle" in self._inputs:
                feed["particle"] = np.full(len(cb), k, dtype=np.int64)
            out[start : start + len(cb)] = self.session.run(None, feed)[0]
        return out

    def _index(self, particle_: str | int | None) -> int:
        if particle_ is None:
            if len(self.particles) != 1:
                raise ValueError(f"this model covers {self.particles}: name the particle")
            return 0
        name = particle(particle_).name
        if name not in self.particles:
            raise ValueError(f"this model covers {self.particles}, not {name}")
        return self.particles.index(name)

    def samplers(self) -> dict:
        """PDG id -> sampler for each particle of the model (the ``models`` of the fast simulation)."""
        return {PARTICLES[name].pdg: _Bound(self, name) for name in self.particles}


class _Bound:
    """An ONNX model bound to one particle type."""

    def __init__(self, model: OnnxShowerModel, name: str) -> None:
        self.model, self.name = model, name

    def sample(self, conditions: np.ndarray, *, seed: int | None = None, batch_size: int = 8192) -> np.ndarray:
        return self.model.sample(conditions, particle=self.name, seed=seed, batch_size=batch_size)
