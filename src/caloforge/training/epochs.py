"""The epochs of a training plan (:mod:`caloforge.training.plans`): batches, optimiser steps, learning-rate schedules,
the moving average of the weights, validation, and the state they leave (:class:`RunState`). Run folders,
checkpoints and resuming are the loop's (:mod:`caloforge.training.loop`); fits inside other work run the epochs in
memory (:func:`train_in_memory`).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from caloforge.training.config import LoopConfig
from caloforge.training.distributed import Distributed
from caloforge.training.plan import TrainingPlan

if TYPE_CHECKING:
    from diffusers.training_utils import EMAModel

PER_STEP_SCHEDULERS: frozenset[str] = frozenset({"one-cycle"})
"""``training.scheduler`` values that advance after every batch (the others after every epoch)."""
LOGGED_IN_BAR = ("loss", "mse", "nll")
"""Training logs whose running means the progress bar shows (names ending so)."""


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


def _epochs_using(plan: TrainingPlan, name: str, epochs: int) -> int:
    return sum(any(s.name == name for s in plan.training_plan(e)) for e in range(epochs))


def _cosine(epochs: int) -> Callable[[int], float]:
    """Learning-rate factor ``(1 + cos(pi k / epochs)) / 2`` after ``k`` epochs, in closed form."""
    return lambda k: 0.5 * (1.0 + math.cos(math.pi * k / epochs))


class NonFiniteLossError(FloatingPointError, ValueError):
    """A training step gave a NaN or infinite loss (the message names the epoch, the batch and the step)."""


def _check_finite(loss: torch.Tensor, what: str) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` is NaN or infinite (``what``: where, ending in the step)."""
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"{what} loss is {loss.item()}; training stopped (last.pt holds the last "
                                 "finished epoch)")


def make_schedulers(
    plan: TrainingPlan, optimizers: dict[str, torch.optim.Optimizer], loop: LoopConfig
) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
    """One learning-rate schedule per optimizer (``training.scheduler``): per epoch, or per step for
    ``one-cycle`` (:data:`PER_STEP_SCHEDULERS`)."""
    out: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
    for name, opt in optimizers.items():
        if loop.scheduler == "none":
            out[name] = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
        elif loop.scheduler == "cosine":
            out[name] = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(max(1, _epochs_using(plan, name, loop.epochs))))
        elif loop.scheduler == "exponential":
            out[name] = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=loop.scheduler_gamma)
        elif loop.scheduler == "one-cycle":
            steps = loop.epochs * plan.n_batches()
            out[name] = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=opt.param_groups[0]["lr"], total_steps=steps, pct_start=0.05 if steps >= 50 else 0.3
            )
        else:
            out[name] = torch.optim.lr_scheduler.StepLR(
                opt, step_size=loop.scheduler_step_epochs, gamma=loop.scheduler_gamma
            )
    return out


def make_ema(model: torch.nn.Module, decay: float | None) -> EMAModel | None:
    """The moving average of ``model``'s weights for ``training.ema_decay`` (None: none)."""
    if decay is None:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel(model.parameters(), decay=decay)


@contextmanager
def averaged_weights(model: torch.nn.Module, ema: EMAModel | None) -> Iterator[None]:
    """Inside the block ``model`` holds the moving average ``ema`` of its weights (None: its own), after it its
    own weights again."""
    if ema is None:
        yield
        return
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        yield
    finally:
        ema.restore(model.parameters())


def run_epoch(
    plan: TrainingPlan,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler],
    state: RunState,
    epoch: int,
    *,
    show: bool,
    parallel: Distributed | None = None,
    ema: EMAModel | None = None,
) -> dict[str, Any]:
    """Train ``epoch`` (0-based) of ``plan`` and validate it; returns its ``metrics.csv`` row (the selection
    flag ``best`` left to the caller) and advances ``state.global_step`` and ``state.epoch``. With ``ema``, the
    moving average is updated after every batch and validated in place of the weights.

    With ``parallel`` (a run of several processes, :mod:`caloforge.training.distributed`) this process trains on
    its slice of each batch, the gradients averaged over the processes, and process 0 validates; the logged
    numbers are the processes' means, weighted by their shares of the batches."""
    loop = plan.loop
    t0 = time.perf_counter()
    if parallel is not None:
        parallel.seed_epoch(loop.seed, epoch)
    steps = plan.training_plan(epoch)
    for step in steps:
        if step.name not in optimizers:
            raise RuntimeError(f"the {plan.name} plan has a step {step.name!r} without an optimizer")
    per_step = loop.scheduler in PER_STEP_SCHEDULERS
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(int)
    plan.model.train()
    bar = tqdm(plan.batches(epoch), total=plan.n_batches(), desc=f"epoch {epoch + 1}/{loop.epochs}", unit="batch",
               leave=False, disable=not show)
    for index, batch in enumerate(bar):
        share: float = 1
        if parallel is not None:
            batch, share = parallel.shard(batch)
        for step in steps:
            if (state.global_step + 1) % step.every:
                continue
            plan.model.zero_grad(set_to_none=True)
            if parallel is None:
                loss, logs = plan.training_step(step.name, batch)
                _check_finite(loss, f"epoch {epoch + 1}, batch {index + 1} of {plan.n_batches()}: the {step.name}")
                loss.backward()
            else:
                loss, logs = plan.training_step(step.name, batch) if share > 0 else (torch.zeros(()), {})
                if share > 0:
                    loss.backward()
                batch_loss = parallel.average_gradients(optimizers[step.name], loss, share)
                _check_finite(torch.tensor(batch_loss),
                              f"epoch {epoch + 1}, batch {index + 1} of {plan.n_batches()}: the {step.name}")
            optimizers[step.name].step()
            if per_step:
                schedulers[step.name].step()
            for k, v in logs.items():
                sums[f"{step.name}_{k}"] += v * share
                counts[f"{step.name}_{k}"] += share
        if ema is not None:
            ema.step(plan.model.parameters())
        state.global_step += 1
        if show and state.global_step % 20 == 0:
            shown = [k for k in sums if k.endswith(LOGGED_IN_BAR)]
            bar.set_postfix({k: f"{sums[k] / counts[k]:.3g}" for k in shown})
    bar.close()
    if parallel is not None:
        sums, counts = parallel.sum_logs(sums, counts)
    row: dict[str, Any] = {"epoch": epoch + 1, "phase": plan.phase(epoch)}
    row.update({f"lr_{name}": opt.param_groups[0]["lr"] for name, opt in optimizers.items()})
    if not per_step:
        for name in {s.name for s in steps}:
            schedulers[name].step()
    row.update({f"train_{k}": sums[k] / counts[k] for k in sums})
    with averaged_weights(plan.model, ema):
        row.update(plan.validate(epoch) if parallel is None
                   else parallel.on_main(lambda: plan.validate(epoch), plan.model))
    row["seconds"] = time.perf_counter() - t0
    state.epoch = epoch + 1
    return row


def train_in_memory(plan: TrainingPlan, *, progress: bool = False) -> list[dict[str, Any]]:
    """Run the ``plan.loop.epochs`` epochs of ``plan`` without a run folder (no checkpoints, no moving average, no
    resume); returns the ``metrics.csv`` rows. For fits inside other work and for tests."""
    optimizers = plan.configure_optimizers()
    schedulers = make_schedulers(plan, optimizers, plan.loop)
    state = RunState()
    for epoch in range(plan.loop.epochs):
        state.history.append(run_epoch(plan, optimizers, schedulers, state, epoch, show=progress))
    plan.model.zero_grad(set_to_none=True)
    plan.model.eval()
    return state.history


__all__ = ["LOGGED_IN_BAR", "NonFiniteLossError", "PER_STEP_SCHEDULERS", "RunState", "averaged_weights", "make_ema",
           "make_schedulers", "run_epoch", "train_in_memory"]
