"""The shipped models, described in MODEL_CARD.md: five sets (families), one model per particle type each.

* ``student`` (the default): one-pass students of the flows, ``student_<particle>.pt`` checkpoints (weights in
  16 bits) with their ONNX exports;
* ``gan`` (the fastest, the farthest from Geant4): ``gan_<particle>.pt`` checkpoints with their ONNX and 8-bit
  ONNX exports, and the seed-size models they were distilled from (``seed_gan_<particle>.pt``);
* ``flow`` (the students' teachers, slow): ``flow_<particle>.pt`` checkpoints, their weights stored in 16 bits
  (exported to ONNX when loaded for ONNX Runtime);
* ``diffusion`` (the seeds' third model class, the slowest): ``diffusion_<particle>.pt`` checkpoints, their
  weights stored in 16 bits, with their ONNX exports (the sampler's steps unrolled in one graph);
* ``diffusion-student``: the diffusion models' one-pass students, ``diffusion_student_<particle>.pt`` checkpoints
  (weights in 16 bits) with their ONNX exports.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
GAN_STEMS = {"e-": "gan_e-", "e+": "gan_e+", "gamma": "gan_gamma"}
"""Particle -> file name (without suffix) of the shipped GAN in this folder: ``.pt`` checkpoint, ``.onnx``
export and ``_int8.onnx`` 8-bit export."""
FLOW_STEMS = {"e-": "flow_e-", "e+": "flow_e+", "gamma": "flow_gamma"}
"""Particle -> file name (without suffix) of the shipped flow: a ``.pt`` checkpoint."""
STUDENT_STEMS = {"e-": "student_e-", "e+": "student_e+", "gamma": "student_gamma"}
"""Particle -> file name (without suffix) of the shipped student of the flow: a ``.pt`` checkpoint and its
``.onnx`` export."""
DIFFUSION_STEMS = {"e-": "diffusion_e-", "e+": "diffusion_e+", "gamma": "diffusion_gamma"}
"""Particle -> file name (without suffix) of the shipped diffusion model: a ``.pt`` checkpoint and its ``.onnx``
export (the sampler's steps unrolled in one graph)."""
DIFFUSION_STUDENT_STEMS = {"e-": "diffusion_student_e-", "e+": "diffusion_student_e+",
                           "gamma": "diffusion_student_gamma"}
"""Particle -> file name (without suffix) of the shipped one-pass student of the diffusion model: a ``.pt``
checkpoint and its ``.onnx`` export."""
FAMILY_STEMS = {"gan": GAN_STEMS, "flow": FLOW_STEMS, "student": STUDENT_STEMS, "diffusion": DIFFUSION_STEMS,
                "diffusion-student": DIFFUSION_STUDENT_STEMS}
"""Model set name (``caloforge simulate --model gan``, ``flow``, ``student``, ``diffusion`` or
``diffusion-student``) -> its file names per particle."""
FAMILY_MODELS = {"diffusion-student": "student"}
"""Model sets whose models are of another kind (``ShowerModel.name``) than the set's name."""
RECORD_FILES = {"gan": "validation.json", "flow": "validation_flow.json", "student": "validation_student.json",
                "diffusion": "validation_diffusion.json", "diffusion-student": "validation_diffusion_student.json"}
"""Model set -> its validation records (particle -> record, written by ``caloforge ship``), beside the models."""
DEFAULT_FAMILY = "student"
"""The set ``caloforge simulate`` runs without ``--model``."""
SEED_STEMS = {name: f"seed_{stem}" for name, stem in GAN_STEMS.items()}
"""Particle -> file name (without suffix) of the seed-size model (the seed's generator widths) that the default
was distilled from (``caloforge distill``): a ``.pt`` checkpoint, for comparisons and further training."""


INT8_SUFFIX = "_int8.onnx"
"""File name ending of the 8-bit exports (``gan_<particle>_int8.onnx``, :mod:`caloforge.export.quantize`): the
GANs ``caloforge simulate --model gan`` runs by default."""


def default_model_paths(backend: str = "onnx", *, int8: bool = True, family: str = DEFAULT_FAMILY) -> dict[str, Path]:
    """Particle -> path of the shipped model of set ``family`` (:data:`FAMILY_STEMS`, the default set unless
    given) for the backend, those present: ``onnx``: the 8-bit export (``int8``, the default, where the set has one,
    the GANs; else the float32 export; for a model shipped without exports, its checkpoint); ``torch``: the
    ``.pt`` checkpoint.

    Raises:
        ValueError: an unknown set.
    """
    if family not in FAMILY_STEMS:
        raise ValueError(f"model set {family!r}: the shipped sets are {', '.join(FAMILY_STEMS)}")
    suffixes = [".pt"] if backend != "onnx" else [INT8_SUFFIX, ".onnx", ".pt"] if int8 else [".onnx", ".pt"]
    paths = {name: next((p for s in suffixes if (p := HERE / f"{stem}{s}").exists()), None)
             for name, stem in FAMILY_STEMS[family].items()}
    return {name: p for name, p in paths.items() if p is not None}


def seed_model_paths() -> dict[str, Path]:
    """Particle -> path of its shipped seed-size checkpoint (``.pt``), those present."""
    paths = {name: HERE / f"{stem}.pt" for name, stem in SEED_STEMS.items()}
    return {name: p for name, p in paths.items() if p.exists()}
