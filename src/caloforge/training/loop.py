"""One training loop for every shower model.

The model provides its optimizers (:meth:`~caloforge.models.ShowerModel.configure_optimizers`), the steps
to run on each batch of an epoch (:meth:`~caloforge.models.ShowerModel.training_plan`: for the GAN the
regressor pre-training, then discriminator and generator steps) and the loss of each step
(:meth:`~caloforge.models.ShowerModel.training_step`). The loop does the rest: epochs, shuffled batches,
seeds, progress bars, learning-rate schedules, validation, checkpoints and resuming.

A run folder holds:

* ``config.yaml``  -- the configuration the run was started with,
* ``last.pt``      -- the model after the latest epoch, with the optimizer, scheduler, RNG and epoch state
  (``train`` on the same folder continues from it),
* ``best.pt``      -- the model of the epoch with the lowest selection metric on held-out Geant4 events
  (mean separation power of shower shapes; :mod:`caloforge.training.selection`),
* ``metrics.csv``  -- one row per epoch: mean training losses per step, learning rates, validation metrics.

Both checkpoints load with :func:`caloforge.models.load_model`.
"""

from __future__ import annotations

import csv
import math
import os
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from caloforge.models import ConfigError, ShowerModel, build_model, load_model, resolve_device
from caloforge.training.config import (
    RESUMABLE_CHANGES,
    TrainConfig,
    config_differences,
    expand_path,
    load_config,
    save_config,
)
from caloforge.training.data import (
    ShowerData,
    iter_batches,
    limit_per_particle,
    n_batches,
    nearest_neighbours,
    read_shower_data,
    split_validation,
)
from caloforge.training.selection import selection_metric

BEST, LAST, METRICS, CONFIG = "best.pt", "last.pt", "metrics.csv", "config.yaml"
SELECTION_KEY = "val_sp_mean"
PAIR_SEED_OFFSET = 7919
"""Seed offset of the maps generated for the neighbours' conditions in :func:`validate` (independent noise)."""


@dataclass
class RunState:
    """Where a run stands (saved in ``last.pt``).

    Attributes:
        epoch: the next epoch to run (0-based; equals the number of finished epochs).
        global_step: batches processed since the start of the run.
        best_metric: lowest selection metric so far (inf: none yet).
        best_epoch: the 1-based epoch of ``best.pt`` (0: none yet).
        history: the rows of ``metrics.csv``.
    """

    epoch: int = 0
    global_step: int = 0
    best_metric: float = math.inf
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": self.history,
        }


def load_data(config: TrainConfig) -> tuple[ShowerData, ShowerData]:
    """Training and validation events of a configuration (see :class:`~caloforge.training.config.DataConfig`)."""
    d, particles = config.data, config.model.particles
    data = read_shower_data(d.train_files, particles=particles, max_events=d.max_events)
    if d.val_files:
        val = read_shower_data(d.val_files, particles=particles)
        return data, limit_per_particle(val, d.max_val_events)
    return split_validation(data, fraction=d.val_fraction, seed=config.training.seed, max_val_events=d.max_val_events)


def _epochs_using(model: ShowerModel, name: str, epochs: int) -> int:
    return sum(any(s.name == name for s in model.training_plan(e)) for e in range(epochs))


def make_schedulers(
    model: ShowerModel, optimizers: dict[str, torch.optim.Optimizer], config: TrainConfig
) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
    """One per-epoch learning-rate schedule per optimizer (``training.scheduler``)."""
    t = config.training
    out: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
    for name, opt in optimizers.items():
        if t.scheduler == "none":
            out[name] = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
        elif t.scheduler == "cosine":
            t_max = max(1, _epochs_using(model, name, t.epochs))
            out[name] = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
        elif t.scheduler == "exponential":
            out[name] = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=t.scheduler_gamma)
        else:
            out[name] = torch.optim.lr_scheduler.StepLR(opt, step_size=t.scheduler_step_epochs, gamma=t.scheduler_gamma)
    return out


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_metrics(history: list[dict[str, Any]], path: Path) -> None:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def validate(model: ShowerModel, val: ShowerData, config: TrainConfig) -> dict[str, float]:
    """Validation metrics: the model's own validation numbers and, per particle type, the separation
    powers of maps generated for the held-out conditions, pairs of nearest neighbours among them included
    (:func:`~caloforge.training.selection.selection_metric`; averaged over the types, keys ``val_sp_*``;
    with several types also ``val_sp_mean_<type>``)."""
    t = config.training
    out: dict[str, float] = {}
    device = model.device
    sums: dict[str, float] = defaultdict(float)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(val), t.sample_batch_size):
            part = val.subset(slice(start, start + t.sample_batch_size))
            for k, v in model.validation_step(part.to_tensors(device).batch()).items():
                sums[k] += v * len(part)
    model.train(was_training)
    out.update({f"val_{k}": v / len(val) for k, v in sums.items()})
    per_particle = []
    for k, name in enumerate(val.particles):
        sel = val.particle == k
        if not sel.any():
            continue
        maps, cond = val.maps_gev[sel], val.conditions[sel]
        fake = model.sample(cond, particle=name, seed=t.seed + k, batch_size=t.sample_batch_size)
        neighbours = None
        if len(cond) > 1:
            nb = nearest_neighbours(cond, np.zeros(len(cond), dtype=np.int64))
            fake_nb = model.sample(cond[nb], particle=name, seed=t.seed + k + PAIR_SEED_OFFSET,
                                   batch_size=t.sample_batch_size)
            neighbours = (maps[nb], fake_nb, cond[nb, 0])
        per_particle.append(
            selection_metric(maps, fake, cond[:, 0], bins=t.selection_bins, neighbours=neighbours)
        )
        if len(val.particles) > 1:
            out[f"val_sp_mean_{name}"] = per_particle[-1]["sp_mean"]
    for key in per_particle[0]:
        out[f"val_{key}"] = float(np.mean([m[key] for m in per_particle]))
    return out


def _read_run(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable training checkpoint ({err.__class__.__name__}); "
                         "remove it to start the run again") from None
    if not isinstance(ckpt, dict) or "training_state" not in ckpt or "train_config" not in ckpt:
        raise ValueError(f"{path}: not a training checkpoint (no training state)")
    return ckpt


def _with_defaults(saved_config: dict[str, Any]) -> dict[str, Any]:
    """A saved run's configuration with the defaults of the settings added to caloforge since it started
    (as its model checkpoint loads them), so that these do not count as changed; as saved if it no longer
    parses."""
    try:
        return TrainConfig.from_dict(saved_config).to_dict()
    except ConfigError:
        return saved_config


def _initial_weights(path: str, model: ShowerModel) -> dict[str, torch.Tensor]:
    """The state dict of the model checkpoint ``path`` (``training.init_from``), checked against ``model``."""
    try:
        start = load_model(expand_path(path), device="cpu")
    except (OSError, ValueError, ConfigError) as err:
        raise ConfigError(f"training.init_from: {err}") from None
    if type(start) is not type(model) or start.config.particles != model.config.particles:
        raise ConfigError(
            f"training.init_from: {path} is a {start.name} model of {', '.join(start.config.particles)}, "
            f"not a {model.name} model of {', '.join(model.config.particles)}"
        )
    state = start.state_dict()
    mine = model.state_dict()
    shapes = [k for k in mine if k not in state or state[k].shape != mine[k].shape]
    if shapes:
        raise ConfigError(f"training.init_from: {path} has another architecture (differs in {', '.join(shapes[:3])})")
    return state


def train(
    config: TrainConfig | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resume: bool = True,
    progress: bool | None = None,
    device: str | None = None,
) -> Path:
    """Train a model and return the path of its best checkpoint (``out_dir/best.pt``).

    Args:
        config: a :class:`TrainConfig` or the path of a YAML configuration.
        out_dir: the run folder (created if needed).
        resume: continue the run in ``out_dir`` if it holds one (its ``last.pt``), with the optimizer,
            scheduler, RNG and epoch state; with False, a folder that holds a run is an error. A run is
            resumed only with the same settings, except ``training.epochs`` (raise it to train longer),
            ``training.device``, ``training.progress`` and ``training.sample_batch_size``.
        progress: show progress bars (default: ``training.progress``).
        device: override ``training.device`` (``auto``, ``cpu``, ``cuda``).

    Raises:
        ConfigError: invalid configuration, or one that differs from the run being resumed.
        SampleFileError: missing or invalid sample files.
        ValueError: ``out_dir`` holds a run and ``resume`` is False.
    """
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    t = cfg.training
    show = t.progress if progress is None else progress
    out = Path(out_dir)
    saved: dict[str, Any] | None = None
    if (out / LAST).exists():
        if not resume:
            raise ValueError(f"{out} already holds a training run ({LAST}): resume it or choose another folder")
        saved = _read_run(out / LAST)
        diffs = [d for d in config_differences(_with_defaults(saved["train_config"]), cfg.to_dict())
                 if d not in RESUMABLE_CHANGES]
        if diffs:
            raise ConfigError(
                f"{out / LAST}: the run was started with other settings ({', '.join(diffs)}); "
                "use the original configuration (only training.epochs may grow) or another folder"
            )
        if saved["training_state"]["epoch"] >= t.epochs and (out / BEST).exists():
            return out / BEST
    dev = resolve_device(device or t.device)

    train_data, val_data = load_data(cfg)
    torch.manual_seed(t.seed)
    model = build_model(cfg.model)
    if saved is None and t.init_from is not None:
        model.load_state_dict(_initial_weights(t.init_from, model))
    elif saved is None:
        model.fit_normalisation(train_data.conditions)
        model.fit_maps(train_data.maps_gev, train_data.conditions, train_data.particle)
    else:
        model.load_state_dict(saved["state_dict"])
    model.to(dev)
    optimizers = model.configure_optimizers()
    schedulers = make_schedulers(model, optimizers, cfg)
    state = RunState()
    if saved is None:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / CONFIG)
    else:
        ts = saved["training_state"]
        for name, opt in optimizers.items():
            opt.load_state_dict(ts["optimizers"][name])
        for name, sched in schedulers.items():
            sched.load_state_dict(ts["schedulers"][name])
            if isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR):
                sched.T_max = max(1, _epochs_using(model, name, t.epochs))
        _set_rng_state(ts["rng"])
        state = RunState(
            epoch=ts["epoch"],
            global_step=ts["global_step"],
            best_metric=ts["best_metric"],
            best_epoch=ts["best_epoch"],
            history=list(ts["history"]),
        )

    if model.uses_neighbours:
        train_data = train_data.with_neighbours()
    train_tensors = train_data.to_tensors(dev)
    nb = n_batches(len(train_data), t.batch_size)
    for epoch in range(state.epoch, t.epochs):
        t0 = time.perf_counter()
        plan = model.training_plan(epoch)
        for step in plan:
            if step.name not in optimizers:
                raise RuntimeError(f"{type(model).__name__} plans a step {step.name!r} without an optimizer")
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        model.train()
        bar = tqdm(
            iter_batches(train_tensors, batch_size=t.batch_size, seed=t.seed, epoch=epoch),
            total=nb,
            desc=f"epoch {epoch + 1}/{t.epochs}",
            unit="batch",
            leave=False,
            disable=not show,
        )
        for batch in bar:
            for step in plan:
                if (state.global_step + 1) % step.every:
                    continue
                model.zero_grad(set_to_none=True)
                loss, logs = model.training_step(step.name, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"epoch {epoch + 1}: the {step.name} loss is {loss.item()}")
                loss.backward()
                optimizers[step.name].step()
                for k, v in logs.items():
                    sums[f"{step.name}_{k}"] += v
                    counts[f"{step.name}_{k}"] += 1
            state.global_step += 1
            if show and state.global_step % 20 == 0:
                shown = [k for k in sums if k.endswith(("loss", "mse"))]
                bar.set_postfix({k: f"{sums[k] / counts[k]:.3g}" for k in shown})
        bar.close()
        used = {s.name for s in plan}
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "phase": "pretrain" if epoch < model.n_pretrain_epochs else "train",
        }
        row.update({f"lr_{name}": opt.param_groups[0]["lr"] for name, opt in optimizers.items()})
        for name in used:
            schedulers[name].step()
        row.update({f"train_{k}": sums[k] / counts[k] for k in sums})
        selectable = epoch >= model.n_pretrain_epochs
        row.update(validate(model, val_data, cfg) if selectable else {})
        row["seconds"] = time.perf_counter() - t0
        state.epoch = epoch + 1
        is_best = selectable and row[SELECTION_KEY] < state.best_metric
        if is_best:
            state.best_metric, state.best_epoch = float(row[SELECTION_KEY]), epoch + 1
            model.save(out / BEST, epoch=epoch + 1, selection_metric=state.best_metric)
        row["best"] = int(is_best)
        state.history.append(row)
        _save_last(out / LAST, model, cfg, optimizers, schedulers, state)
        _write_metrics(state.history, out / METRICS)
        if show:
            metric = f", {SELECTION_KEY} {row[SELECTION_KEY]:.4f}" if selectable else ""
            tqdm.write(f"epoch {epoch + 1}/{t.epochs}: {row['seconds']:.1f} s{metric}{' (best)' if is_best else ''}")
    if not (out / BEST).exists():
        warnings.warn(
            f"no epoch trained the generative part (all {t.epochs} were pre-training): best.pt is the last model",
            stacklevel=2,
        )
        model.save(out / BEST, epoch=state.epoch, selection_metric=None)
    return out / BEST


def _save_last(
    path: Path,
    model: ShowerModel,
    cfg: TrainConfig,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler],
    state: RunState,
) -> None:
    ckpt = model.checkpoint()
    ckpt["epoch"] = state.epoch
    ckpt["train_config"] = cfg.to_dict()
    ckpt["training_state"] = {
        **state.to_dict(),
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "rng": _rng_state(),
    }
    _atomic_save(ckpt, path)


__all__ = ["RunState", "load_data", "make_schedulers", "train", "validate"]
