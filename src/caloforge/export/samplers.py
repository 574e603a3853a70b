"""Shower samplers for the fast simulation from model files, on either backend.

``.onnx`` files run in ONNX Runtime; ``.pt`` checkpoints run in PyTorch with ``backend="torch"``, or
are exported to a temporary ONNX file first with ``backend="onnx"``; ``backend="auto"`` takes, per checkpoint, the
faster of the two on a CPU (:attr:`caloforge.models.ShowerModel.faster_in_onnx_runtime`: ONNX Runtime for the
students and the GANs, PyTorch for the flows).

The momentum range a model was trained on is taken from the validation records that ``caloforge ship`` writes
beside the models it ships (the Geant4 gun of their training sample); other model files record none.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import NamedTuple

from caloforge.export.runtime import OnnxShowerModel

BACKENDS = ("auto", "onnx", "torch")


class LoadedModels(NamedTuple):
    """What :func:`load_samplers` returns.

    Attributes:
        samplers: PDG id -> sampler (the ``models`` of the fast simulation).
        names: one line per file: its name, particles and backend.
        momentum_gev: PDG id -> (min, max) momentum range in GeV/c of the training sample, for the models that
            record it (the engine takes its default range for the others).
    """

    samplers: dict
    names: list[str]
    momentum_gev: dict[int, tuple[float, float]]


@cache
def _shipped_records(path: Path) -> dict:
    """The validation records file ``path`` of a models folder (``caloforge ship``); {} where there is none or it
    is unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def recorded_momentum_range_gev(path: Path, particle: str) -> tuple[float, float] | None:
    """The momentum range (GeV/c) of the training sample of the shipped model ``path`` of ``particle``, from the
    validation records beside it (``validation.json``, ``validation_flow.json``: the file must be a record's
    checkpoint or one of its exports); else None."""
    from caloforge.models.pretrained import INT8_SUFFIX, RECORD_FILES

    stem = path.name[: -len(INT8_SUFFIX)] if path.name.endswith(INT8_SUFFIX) else path.stem
    entries = [_shipped_records(path.resolve().parent / name).get(particle) for name in RECORD_FILES.values()]
    entry = next((e for e in entries if isinstance(e, dict) and Path(str(e.get("checkpoint", ""))).stem == stem), None)
    if entry is None:
        return None
    try:
        lo, hi = entry["training_sample"]["gun"]["momentum_gev"]
        return float(lo), float(hi)
    except (KeyError, TypeError, ValueError):
        return None


def load_samplers(
    paths: list[str | os.PathLike], *, backend: str = "onnx", device: str = "cpu", int8: bool = True
) -> LoadedModels:
    """The samplers for every particle the models cover, a one-line description per file, and the momentum
    ranges the models record.

    Args:
        paths: model files (``.pt`` checkpoints or ``.onnx`` exports), or the name of a shipped set (``student``,
            ``gan``, ``flow``: :data:`caloforge.models.pretrained.FAMILY_STEMS`) for its models; empty: the
            default set (:data:`~caloforge.models.pretrained.DEFAULT_FAMILY`).
        backend: ``auto``, ``onnx`` or ``torch`` (``.onnx`` files always run in ONNX Runtime; see the module).
        device: PyTorch device for ``backend="torch"``.
        int8: for a shipped set on ONNX Runtime that has 8-bit exports (the GANs): those (the default) or the
            float32 ones.

    Raises:
        ValueError: unknown backend, no model at all, a file that is not a model, or two files with a model of
            the same particle.
    """
    from caloforge.detector.conditions import particle as lookup
    from caloforge.models.pretrained import DEFAULT_FAMILY, FAMILY_STEMS, default_model_paths

    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    files = []
    for entry in list(paths) or [DEFAULT_FAMILY]:
        if str(entry) in FAMILY_STEMS and not Path(entry).exists():
            kind = "torch" if backend == "torch" else "onnx"
            shipped = list(default_model_paths(kind, int8=int8, family=str(entry)).values())
            if not shipped:
                raise ValueError(f"no shipped {entry} models in this installation: pass --model CHECKPOINT "
                                 "(from caloforge train)")
            files += shipped
        else:
            files.append(entry)
    paths = files
    samplers, names, ranges, sources = {}, [], {}, {}
    for path in map(Path, paths):
        runs_on = "onnx"
        if path.suffix.lower() == ".onnx":
            model = OnnxShowerModel(path)
        else:
            from caloforge.export.onnx import export_onnx  # PyTorch, for checkpoints only
            from caloforge.models import load_model

            model = load_model(path, device=device)
            if backend == "onnx" or (backend == "auto" and model.faster_in_onnx_runtime):
                with tempfile.TemporaryDirectory() as tmp:  # the session keeps the graph in memory
                    model = OnnxShowerModel(export_onnx(model, Path(tmp) / "model.onnx"))
            else:
                runs_on = "torch"
        for name in model.particles:
            if name in sources:
                raise ValueError(f"{path}: a second model for {name} (the first: {sources[name]}); "
                                 "give one model file per particle type")
            sources[name] = path
            recorded = recorded_momentum_range_gev(path, name)
            if recorded is not None:
                ranges[lookup(name).pdg] = recorded
        samplers.update(model.samplers())
        names.append(f"{path.name} ({', '.join(model.particles)}; {runs_on})")
    return LoadedModels(samplers, names, ranges)
