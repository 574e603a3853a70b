"""Where a shipped model came from, as its validation record keeps it: the training run (configuration, epochs,
selection), the Geant4 training sample, the energy model's fit and, for a student of ``caloforge distill``, the
distillation and the card of its teacher."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch
import yaml

from caloforge.data.io import read_attrs
from caloforge.training.config import expand_path
from caloforge.training.loop import CONFIG, METRICS

SELECTION_PREFIX = "val_sp_"
"""Columns of a run's ``metrics.csv`` holding the separation power of one selection feature (``val_sp_mean``,
their mean, excluded)."""


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML file (a run's ``config.yaml``) as a dict."""
    return yaml.safe_load(Path(path).read_text())


def run_summary(metrics_csv: str | os.PathLike) -> dict:
    """From a run's ``metrics.csv``: epochs done, the epoch of ``best.pt`` and the features of the selection
    metric it was chosen by (its ``val_sp_<feature>`` columns)."""
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    best = [int(row["epoch"]) for row in rows if row.get("best") == "1"]
    features = [c[len(SELECTION_PREFIX):] for c in columns if c.startswith(SELECTION_PREFIX)
                and not c.startswith((f"{SELECTION_PREFIX}mean", f"{SELECTION_PREFIX}occupancy"))]
    return {"epochs_done": len(rows), "best_epoch": best[-1] if best else 0, "selection_features": features}


def run_record(run: Path, config_file: str) -> dict:
    """The record of the training run in folder ``run``, trained with ``caloforge train <config_file>``
    (``config_file``: the configuration and its options, e.g. ``configs/moments.yaml --particle gamma``): its
    folder name, ``config_file``, the configuration it ran with (its ``config.yaml``) and :func:`run_summary`."""
    return {"folder": run.name, "config_file": config_file, "config": read_yaml(run / CONFIG),
            **run_summary(run / METRICS)}


def sample_description(path: str | os.PathLike) -> dict:
    """The Geant4 provenance of a sample file: events, gun, Geant4 version and data sets, physics list, cut, TOF."""
    a = read_attrs(path)
    return {"file": Path(path).name, "events_in_file": a["n_events"], "gun": a["gun"],
            "geant4_version": a["geant4_version"], "geant4_datasets": a["geant4_datasets"],
            "physics_list": a["physics_list"], "production_cut_mm": a["production_cut_mm"], "tof": a["tof"]}


def energy_fit(checkpoint: Path, run: Path) -> dict | None:
    """How the checkpoint's energy model was fitted (``caloforge fit-energy``): recorded in the checkpoint,
    or in the one its run started from (``training.init_from``), followed back through fine-tunes of
    fine-tunes; None if none says."""
    seen: set[Path] = set()
    while checkpoint.exists() and checkpoint not in seen:
        seen.add(checkpoint)
        fit = torch.load(checkpoint, map_location="cpu", weights_only=True).get("energy_fit")
        if fit is not None:
            return fit
        config = run / CONFIG
        init = read_yaml(config).get("training", {}).get("init_from") if config.exists() else None
        if not init:
            return None
        checkpoint = expand_path(init)
        run = checkpoint.parent
    return None


def energy_summary(fit: dict | None) -> dict | None:
    """The energy fit as the record keeps it: without the per-epoch likelihoods, with the last one."""
    if fit is None or "final_nll" in fit:
        return fit
    return {k: v for k, v in fit.items() if k != "nll_per_epoch"} | {"final_nll": fit["nll_per_epoch"][-1]}


def distill_summary(student, distilled: dict, teacher_card: dict) -> dict:
    """The distillation settings and result of ``student`` (``distilled``: the record ``caloforge distill`` saved
    in its checkpoint) and the validation record of the teacher it came from."""
    return {"channels": list(student.config.generator_channels), "hidden": list(student.config.generator_hidden),
            **{k: distilled[k] for k in ("steps", "batch_size", "learning_rate", "seed", "events", "mse_start",
                                         "mse", "reproduced", "teacher_parameters", "student_parameters")},
            "samples": [Path(p).name for p in distilled["samples"]], "teacher": teacher_card}
