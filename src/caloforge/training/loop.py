"""One training loop for every model and every training plan.

A plan (:mod:`caloforge.training.plans`, picked by ``training.plan``) provides the model, its optimizers,
the steps to run on each batch of an epoch, the batches and the loss of each step (for the ``model`` plan the
model's own :meth:`~caloforge.models.ShowerModel.training_plan` and
:meth:`~caloforge.models.ShowerModel.training_step`: for the GAN the regressor pre-training, then
discriminator and generator steps). The loop does the rest: the epochs (:mod:`caloforge.training.epochs`:
seeds, progress bars, learning-rate schedules, the moving average of the weights, validation), checkpoints and
resuming.

A run folder holds:

* ``config.yaml``  -- the configuration the run was started with (the plan's resolved one),
* ``last.pt``      -- the model after the latest epoch, with the optimizer, scheduler, RNG, plan and epoch
  state (``train`` on the same folder continues from it),
* ``best.pt``      -- the model of the epoch with the lowest selection metric of the plan (``model``: mean
  separation power of shower shapes on held-out Geant4 events, :mod:`caloforge.training.selection`); with
  ``training.ema_decay``, the moving average of the weights, which is also what is validated,
* ``metrics.csv``  -- one row per epoch: mean training losses per step, learning rates, validation metrics.

Both checkpoints load with :func:`caloforge.models.load_model`.

Under ``torchrun`` the loop runs in several processes that share each batch (:mod:`caloforge.training.distributed`).
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from caloforge.atomic import atomic_path
from caloforge.models import ConfigError, resolve_device
from caloforge.training.config import RESUMABLE_CHANGES, TrainConfig, config_differences, load_config
from caloforge.training.config import save_config as _save_config_text
from caloforge.training.distributed import Distributed, from_environment, is_main_process
from caloforge.training.epochs import (
    PER_STEP_SCHEDULERS,
    RunState,
    averaged_weights,
    make_ema,
    make_schedulers,
    run_epoch,
)
from caloforge.training.plan import TrainingPlan
from caloforge.training.plans import plan_class

if TYPE_CHECKING:
    from diffusers.training_utils import EMAModel

BEST, LAST, METRICS, CONFIG = "best.pt", "last.pt", "metrics.csv", "config.yaml"


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_metrics(history: list[dict[str, Any]], path: Path) -> None:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(history)


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


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """Refuse to resume the run of ``path`` with settings other than :data:`RESUMABLE_CHANGES` (a one-cycle
    schedule spans the run: not even ``training.epochs``)."""
    allowed = RESUMABLE_CHANGES - ({"training.epochs"} if cfg.training.scheduler in PER_STEP_SCHEDULERS else set())
    diffs = [d for d in config_differences(_with_defaults(saved["train_config"]), cfg.to_dict()) if d not in allowed]
    if diffs:
        raise ConfigError(
            f"{path}: the run was started with other settings ({', '.join(diffs)}); use the original "
            "configuration (only training.epochs may grow, not with a one-cycle schedule) or another folder"
        )


def _is_best(plan: TrainingPlan, row: dict[str, Any], state: RunState, epoch: int) -> bool:
    """Whether the model after ``epoch`` becomes ``best.pt`` (updates ``state``): the lowest selection metric so
    far, or, for a plan without one, the latest selectable epoch."""
    if not plan.selectable(epoch):
        return False
    key = plan.selection_key
    if key is None or key not in row:
        state.best_metric, state.best_epoch = math.nan, epoch + 1
        return True
    if not row[key] < state.best_metric:
        return False
    state.best_metric, state.best_epoch = float(row[key]), epoch + 1
    return True


def train(
    config: TrainConfig | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resume: bool = True,
    progress: bool | None = None,
    device: str | None = None,
) -> Path:
    """Train what the configuration's plan trains and return the path of its best checkpoint (``out_dir/best.pt``).

    Args:
        config: a :class:`TrainConfig` or the path of a YAML configuration (not a template).
        out_dir: the run folder (created if needed).
        resume: continue the run in ``out_dir`` if it holds one (its ``last.pt``), with the optimizer,
            scheduler, RNG and epoch state; with False, a folder that holds a run is an error. A run is
            resumed only with the same settings, except ``training.epochs`` (raise it to train longer; not
            with a one-cycle schedule), ``training.device``, ``training.progress`` and
            ``training.sample_batch_size``.
        progress: show progress bars (default: ``training.progress``).
        device: override ``training.device`` (``auto``, ``cpu``, ``cuda``).

    Started by ``torchrun`` with several processes (``WORLD_SIZE`` > 1), the processes train together, each on
    its share of every batch of ``training.batch_size`` events, and only process 0 writes ``out_dir``
    (:mod:`caloforge.training.distributed`); the run folder is the same as that of one process and resumes in
    either way.

    Raises:
        ConfigError: invalid configuration, or one that differs from the run being resumed (or, with
            ``torchrun``, a ``training.batch_size`` smaller than the number of processes).
        SampleFileError: missing or invalid sample files.
        ValueError: ``out_dir`` holds a run and ``resume`` is False.
    """
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    kind = plan_class(cfg.training.plan, cfg.model.name)
    cfg = kind.resolve(cfg)
    t = cfg.training
    show = t.progress if progress is None else progress
    out = Path(out_dir)
    saved: dict[str, Any] | None = None
    if (out / LAST).exists():
        if not resume:
            raise ValueError(f"{out} already holds a training run ({LAST}): resume it or choose another folder")
        saved = _read_run(out / LAST)
        _check_resumable(saved, cfg, out / LAST)
        if saved["training_state"]["epoch"] >= t.epochs and (out / BEST).exists():
            return out / BEST
    dev = resolve_device(device or t.device)
    parallel = from_environment(dev)
    if parallel is None:
        return _train(kind, cfg, out, saved, dev, show, None)
    try:
        if t.batch_size < parallel.world_size:
            raise ConfigError(f"training.batch_size: {t.batch_size} events cannot be shared by "
                              f"{parallel.world_size} processes")
        best = _train(kind, cfg, out, saved, parallel.device, show and parallel.is_main, parallel)
        parallel.barrier()
        return best
    finally:
        parallel.close()


def _train(
    kind: type[TrainingPlan],
    cfg: TrainConfig,
    out: Path,
    saved: dict[str, Any] | None,
    dev: torch.device,
    show: bool,
    parallel: Distributed | None,
) -> Path:
    """The epochs of :func:`train` (``saved``: the ``last.pt`` being resumed, or None); with ``parallel`` in a
    run of several processes, of which only process 0 writes."""
    t = cfg.training
    writes = parallel is None or parallel.is_main
    plan = kind.build(cfg, dev, None if saved is None else saved["state_dict"])
    if parallel is not None:
        parallel.broadcast_tensors(plan.model.state_dict().values())
    optimizers = plan.configure_optimizers()
    schedulers = make_schedulers(plan, optimizers, t)
    ema = make_ema(plan.model, t.ema_decay)
    state = RunState()
    if saved is None and writes:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / CONFIG)
    if saved is not None:
        ts = saved["training_state"]
        for name, opt in optimizers.items():
            opt.load_state_dict(ts["optimizers"][name])
        for name, sched in schedulers.items():
            s = ts["schedulers"][name]
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR) and "lr_lambdas" not in s:
                s = {**s, "lr_lambdas": [None] * len(sched.lr_lambdas)}  # a run started with CosineAnnealingLR
            sched.load_state_dict(s)
        _set_rng_state(ts["rng"])
        plan.load_state_dict(ts.get("plan", {}))
        if ema is not None:
            ema.load_state_dict(ts["ema"])
        state = RunState(
            epoch=ts["epoch"],
            global_step=ts["global_step"],
            best_metric=ts["best_metric"],
            best_epoch=ts["best_epoch"],
            history=list(ts["history"]),
        )

    key = plan.selection_key
    for epoch in range(state.epoch, t.epochs):
        row = run_epoch(plan, optimizers, schedulers, state, epoch, show=show, parallel=parallel, ema=ema)
        is_best = _is_best(plan, row, state, epoch)
        row["best"] = int(is_best)
        state.history.append(row)
        if not writes:
            continue
        if is_best:
            with averaged_weights(plan.model, ema):
                plan.model.save(out / BEST, epoch=epoch + 1, selection_metric=row.get(key) if key else None,
                                **plan.record(state.history))
        _save_last(out / LAST, plan, cfg, optimizers, schedulers, state, ema)
        _write_metrics(state.history, out / METRICS)
        if show:
            metric = f", {key} {row[key]:.4g}" if key in row else ""
            tqdm.write(f"epoch {epoch + 1}/{t.epochs}: {row['seconds']:.1f} s{metric}{' (best)' if is_best else ''}")
    if writes and not (out / BEST).exists():
        warnings.warn(
            f"no epoch trained the generative part (all {t.epochs} were pre-training): best.pt is the last model",
            stacklevel=3,
        )
        with averaged_weights(plan.model, ema):
            plan.model.save(out / BEST, epoch=state.epoch, selection_metric=None, **plan.record(state.history))
    return out / BEST


def train_to_file(config: TrainConfig, output: str | os.PathLike, *, progress: bool | None = None) -> Path:
    """Train ``config`` in a temporary run folder beside ``output`` and move its ``best.pt`` to ``output``
    (a new ``.pt`` file in an existing folder); the run folder is removed, also on an error or an interrupt.
    The ``caloforge fit-energy`` and ``caloforge distill`` shortcuts write their checkpoint so.

    Raises:
        ValueError: ``output`` exists, is not a ``.pt`` file or its folder does not exist; and as :func:`train`.
    """
    output = Path(output)
    if output.suffix != ".pt" or output.exists() or not output.parent.is_dir():
        raise ValueError(f"{output}: give a new .pt file in an existing folder")
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.stem}-run-") as run:
        best = train(config, run, resume=False, progress=progress)
        if is_main_process():  # in a run of several processes (torchrun) only process 0 wrote its run folder
            os.replace(best, output)
    return output


def save_config(config: TrainConfig, path: Path) -> None:
    """Write a run's ``config.yaml`` atomically (readable back with :func:`caloforge.training.load_config`)."""
    with atomic_path(path) as tmp:
        _save_config_text(config, tmp)


def _save_last(
    path: Path,
    plan: TrainingPlan,
    cfg: TrainConfig,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler],
    state: RunState,
    ema: EMAModel | None,
) -> None:
    ckpt = plan.model.checkpoint()
    ckpt.update(plan.record(state.history))
    ckpt["epoch"] = state.epoch
    ckpt["train_config"] = cfg.to_dict()
    ckpt["training_state"] = {
        **state.to_dict(),
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "rng": _rng_state(),
        "plan": plan.state_dict(),
    }
    if ema is not None:
        ckpt["training_state"]["ema"] = ema.state_dict()
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


__all__ = ["BEST", "CONFIG", "LAST", "METRICS", "save_config", "train", "train_to_file"]
