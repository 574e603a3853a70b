"""Training in several processes started by ``torchrun`` (data parallelism with :mod:`torch.distributed`).

``torchrun --nproc-per-node N --no-python caloforge train CONFIG -o DIR`` starts ``N`` copies of the command;
torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) makes
:func:`caloforge.training.loop.train` join them into one process group (``gloo`` on the CPU, ``nccl`` on CUDA, one
GPU per process: ``cuda:LOCAL_RANK``). The configuration means the same as in one process:

* every process builds the same plan (same data, same initial weights; process 0's weights are broadcast once
  so that they are the same to the bit) and draws the same global batches of ``training.batch_size`` events;
  process ``r`` trains on the ``r``-th of ``N`` contiguous, disjoint slices of each (:meth:`Distributed.shard`),
  so that the slices together are the batch one process would train on;
* after each backward pass the gradients of the step's optimizer are averaged over the processes, each weighted
  by its share of the batch (:meth:`Distributed.average_gradients`): the gradient of the loss of the whole
  batch for losses that are means over events, as in one process;
* random numbers the models draw themselves (a GAN's noise, a flow's dequantisation) come from each process's
  torch generator, seeded at the start of each epoch from (``training.seed``, epoch, rank)
  (:meth:`Distributed.seed_epoch`): independent between processes, and the same for a resumed run as for one
  that was not interrupted;
* validation and the choice of ``best.pt`` run in process 0, which sends the numbers and its buffers (a
  calibration after the epoch) to the others (:meth:`Distributed.on_main`); only process 0 writes the run
  folder (checkpoints, ``metrics.csv``, ``config.yaml``, progress).

Why not :class:`torch.nn.parallel.DistributedDataParallel`: DDP averages gradients through hooks that its own
``forward`` prepares, but a :class:`~caloforge.models.ShowerModel` is trained through ``training_step``, which calls
its sub-networks directly (a GAN's generator, critic and regressor, each with its own optimizer, the critic's
gradients unused in the generator step), and the WGAN-GP gradient penalty differentiates with
``torch.autograd.grad(create_graph=True)``, which DDP does not support. The loop therefore does what DDP does,
with one ``all_reduce`` per optimizer step of the parameters of that step's optimizer (one flat buffer).

Quantities a model computes over its batch as a whole (the GAN critic's minibatch discrimination, batch MMD
terms) see each process's slice, ``training.batch_size / N`` events: these losses are not exactly those of one
process with the whole batch.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")

TIMEOUT = datetime.timedelta(hours=2)
"""How long a process waits for the others at a collective operation (process 0 validates alone meanwhile)."""
SEED_TAG = 0xD15
"""Mixed into the per-epoch seed of each process's torch generator (:meth:`Distributed.seed_epoch`)."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in a training of several processes.

    Attributes:
        rank: the process's index, 0 to ``world_size - 1`` (0 writes the run folder).
        world_size: the number of processes.
        device: the device this process trains on (``cuda:LOCAL_RANK`` on CUDA).
        owns_group: whether :func:`from_environment` created the process group (:meth:`close` ends it).
    """

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this is process 0, the one that writes and validates."""
        return self.rank == 0

    def shard(self, batch: Any) -> tuple[Any, float]:
        """This process's slice of a global batch and its share of the batch's events (0 to 1).

        A batch is a tensor (events along the first axis), a tuple or list of them, or a dataclass of them
        (:class:`~caloforge.models.Batch`; None fields stay None). Process ``r`` of ``N`` takes events
        ``r * B // N`` to ``(r + 1) * B // N`` of the ``B``: disjoint slices that together are the batch."""
        n = _batch_len(batch)
        lo, hi = self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size
        return _slice(batch, lo, hi), (hi - lo) / n if n else 0.0

    def average_gradients(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, share: float) -> float:
        """Replace the gradients of ``optimizer``'s parameters by their average over the processes, each process's
        weighted by its ``share`` of the batch (what :class:`~torch.nn.parallel.DistributedDataParallel` does);
        returns the loss of the whole batch so weighted (non-finite if any process's is).

        One ``all_reduce`` of one flat buffer: the weighted gradients, a flag per parameter (whether it has a
        gradient: one that has none in any process stays None, as the optimizer then skips it) and the loss."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        n_values = sum(p.numel() for p in params)
        grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
        flags = [1.0 if p.grad is not None else 0.0 for p in params]
        tail = torch.tensor([*flags, float(loss.detach())], dtype=torch.float32, device=self.device)
        flat = torch.cat([*grads, tail])  # (n_values + len(params) + 1,)
        flat[:n_values] *= share
        flat[-1] *= share
        dist.all_reduce(flat)
        start = 0
        for k, p in enumerate(params):
            grad = flat[start : start + p.numel()].view_as(p)
            start += p.numel()
            if p.grad is not None:
                p.grad.copy_(grad)
            elif flat[n_values + k] > 0:
                p.grad = grad.to(p.dtype, copy=True)
        return float(flat[-1])

    def sum_logs(self, sums: dict[str, float], counts: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """The epoch's weighted sums of logged numbers and their weights (shares of batches), summed over the
        processes (keys that only some processes logged included; in process 0's order)."""
        keys: list[list[str]] = [[] for _ in range(self.world_size)]
        dist.all_gather_object(keys, list(sums))
        names = list(dict.fromkeys(k for ks in keys for k in ks))  # process 0's order first
        values = [sums.get(k, 0.0) for k in names] + [counts.get(k, 0.0) for k in names]
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        out = total.tolist()
        return dict(zip(names, out[: len(names)])), dict(zip(names, out[len(names) :]))

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Seed this process's torch generators (CPU and CUDA) for ``epoch`` from (``seed``, ``epoch``, rank)."""
        state = np.random.SeedSequence([seed, epoch, self.rank, SEED_TAG]).generate_state(2, dtype=np.uint32)
        torch.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)

    def on_main(self, compute: Callable[[], T], module: torch.nn.Module | None = None) -> T:
        """``compute()`` in process 0, its result (picklable) sent to every process; then ``module``'s buffers
        (changed by a calibration in ``compute``) sent from process 0. An error in process 0 is raised there and,
        as a :class:`RuntimeError` naming it, in the others."""
        payload: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                payload[0] = ("ok", compute())
            except BaseException as err:  # noqa: BLE001 -- re-raised below, after the others were told
                error = err
                payload[0] = ("error", f"{err.__class__.__name__}: {err}")
        dist.broadcast_object_list(payload, src=0, device=self.device if self.device.type == "cuda" else None)
        if error is not None:
            raise error
        status, value = payload[0]
        if status == "error":
            raise RuntimeError(f"process 0 failed: {value}")
        if module is not None:
            self.broadcast_tensors(module.buffers())
        return value

    def broadcast_tensors(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite ``tensors`` (parameters, buffers, in place) with process 0's."""
        for t in tensors:
            data = t.detach()
            wire = data.view(torch.uint8) if data.dtype == torch.bool else data
            if wire.is_contiguous():
                dist.broadcast(wire, src=0)
            else:
                copy = wire.contiguous()
                dist.broadcast(copy, src=0)
                wire.copy_(copy)

    def barrier(self) -> None:
        """Wait until every process arrives here."""
        dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def close(self) -> None:
        """End the process group if :func:`from_environment` began it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def world_size_from_environment() -> int:
    """The number of processes of a ``torchrun`` launch (``WORLD_SIZE``; 1 outside one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process writes files: process 0 of a ``torchrun`` launch (``RANK``), or a lone process."""
    return int(os.environ.get("RANK", "0")) == 0


def from_environment(device: torch.device) -> Distributed | None:
    """Join the processes of a ``torchrun`` launch (``WORLD_SIZE`` > 1): the process group begun (``nccl`` for a
    CUDA ``device``, with this process's GPU ``cuda:LOCAL_RANK``; ``gloo`` otherwise), or the one already begun
    by the caller; None for a lone process (no ``torchrun``, or one process)."""
    if dist.is_available() and dist.is_initialized():
        world, rank, owns = dist.get_world_size(), dist.get_rank(), False
    else:
        world = world_size_from_environment()
        if world <= 1:
            return None
        rank, owns = int(os.environ["RANK"]), True
    if world <= 1:
        return None
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=TIMEOUT, **kwargs)
    return Distributed(rank=rank, world_size=world, device=device, owns_group=owns)


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, (tuple, list)):
        return _batch_len(batch[0])
    if dataclasses.is_dataclass(batch):
        return len(batch)  # type: ignore[arg-type]
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} between processes")


def _slice(batch: Any, lo: int, hi: int) -> Any:
    if batch is None:
        return None
    if isinstance(batch, torch.Tensor):
        return batch[lo:hi]
    if isinstance(batch, (tuple, list)):
        return type(batch)(_slice(b, lo, hi) for b in batch)
    if dataclasses.is_dataclass(batch):
        return dataclasses.replace(
            batch, **{f.name: _slice(getattr(batch, f.name), lo, hi) for f in dataclasses.fields(batch)}
        )
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} between processes")


__all__ = ["Distributed", "from_environment", "is_main_process", "world_size_from_environment"]
