"""Model samples in the sample-file format: the candidate side of a validation.

``generate_like`` takes the conditions (and everything else but the maps) of a Geant4 sample file and
writes a file of the same schema whose maps come from a model, so that the validation compares the
two event by event under identical conditions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

import caloforge
from caloforge.data.io import SampleFileError, iter_batches, open_sample_writer, read_attrs
from caloforge.detector.conditions import PARTICLES_BY_PDG

if TYPE_CHECKING:
    from caloforge.export.runtime import OnnxShowerModel
    from caloforge.models.base import ShowerModel


def generate_like(
    model: ShowerModel | OnnxShowerModel,
    reference: str | os.PathLike,
    output: str | os.PathLike,
    *,
    seed: int = 0,
    max_events: int | None = None,
    batch_size: int = 50_000,
    model_path: str | None = None,
    progress: bool = True,
) -> Path:
    """Write ``output``: the events of ``reference`` with maps sampled from ``model`` (a PyTorch model or an
    ONNX export: the same seed gives both the same noise).

    The barrel deposit of a generated event is the sum of its map (the model knows nothing outside
    the 11 x 11 window). Provenance attributes name the model and the reference.

    Raises:
        SampleFileError: ``output`` exists; ``reference`` is missing, not a sample file or damaged (the
            output is then not written).
    """
    if Path(output).exists():  # before any work
        raise SampleFileError(f"{output} exists: remove it or choose another name")
    ref_attrs = read_attrs(reference)
    n_total = ref_attrs["n_events"] if max_events is None else min(max_events, ref_attrs["n_events"])
    if n_total <= 0:
        raise ValueError(f"{reference}: no events to generate from")
    done = 0
    with open_sample_writer(output) as writer:
        # shown after a second, so that a run that fails at once prints only its error
        with tqdm(total=n_total, unit="evt", disable=not progress, desc="generate", delay=1.0) as bar:
            for k, batch in enumerate(iter_batches(reference, batch_size)):
                take = min(len(batch), n_total - done)
                if take <= 0:
                    break
                pdg = batch.pdg[:take]
                maps = np.empty((take, 11, 11), dtype=np.float32)
                for p in np.unique(pdg):
                    sel = pdg == p
                    maps[sel] = model.sample(batch.conditions[:take][sel], particle=int(p), seed=seed * 100_003 + k)
                writer.append({
                    "attempt": np.arange(done, done + take),
                    "seed": np.full(take, seed),
                    "pdg": pdg,
                    "maps_gev": maps,
                    "edep_barrel_gev": maps.sum(axis=(1, 2)).astype(np.float64),
                    "theta_index": batch.theta_index[:take],
                    "phi_index": batch.phi_index[:take],
                    "conditions": batch.conditions[:take],
                    "conditions_entry": batch.conditions_entry[:take],
                    **{name: batch.truth[name][:take] for name in batch.truth},
                })
                done += take
                bar.update(take)
        writer.set_attrs(
            caloforge_version=caloforge.__version__,
            generator="model",
            model_path=model_path or "",
            model_name=model.config.name if hasattr(model, "config") else model.metadata.get("model_name", ""),
            reference_file=str(reference),
            particle=ref_attrs.get("particle", PARTICLES_BY_PDG[int(pdg[0])].name),
            gun=ref_attrs.get("gun"),
            master_seed=seed,
        )
    return Path(output)
