"""Sampling speed of the diffusion model against its number of sampler steps, in PyTorch and in ONNX Runtime.

A diffusion checkpoint (``--checkpoint``; none: an untrained model of the default configuration, whose speed is
the trained one's) samples ``--batch`` showers in one call for each number of steps (``--steps``), with its own
sampler or ``--sampler``, on ``--threads`` threads, in PyTorch and from its ONNX export (one export per number of
steps, the sampler's loop unrolled in the graph). The rounds alternate over all the settings (round 1 over every
setting, then round 2, ...), so that the drift of a shared machine's speed touches all alike; the table gives
showers per second, the slowest and the fastest round. The conditions are drawn around the model's condition
normalisation (the speed does not depend on them). First line: the model's parameter count.

    python benchmarks/bench_diffusion.py [--checkpoint PATH] [--threads 2] [--batch 10000] [--rounds 3]
        [--steps 1,2,4,10,25,50] [--sampler ddim|dpm] [--backends torch,onnx]

Numbers: docs/experiments/diffusion.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from caloforge.export import OnnxShowerModel, export_onnx
from caloforge.models import build_model, load_model
from caloforge.models.diffusion import DiffusionModel


def load(checkpoint: str | None) -> DiffusionModel:
    """The checkpoint's model on the CPU, or an untrained one of the default configuration."""
    if checkpoint:
        model = load_model(checkpoint, device="cpu")
        if not isinstance(model, DiffusionModel):
            raise SystemExit(f"{checkpoint}: a {type(model).__name__}, not a diffusion model")
        return model
    torch.manual_seed(0)
    return build_model({"name": "diffusion", "particles": ["gamma"]})


def conditions(model: DiffusionModel, n: int) -> np.ndarray:
    """(n, 6) conditions: the model's normalisation mean plus its standard deviation times a standard normal
    number, momenta as their absolute value."""
    rng = np.random.default_rng(0)
    mean, std = model.cond_mean.numpy(), model.cond_std.numpy()
    c = (mean + std * rng.standard_normal((n, len(mean)))).astype(np.float32)  # (n, 6)
    c[:, 0] = np.abs(c[:, 0])
    return c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="diffusion checkpoint; default an untrained default-configuration model")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch and ONNX Runtime intra-op threads")
    parser.add_argument("--batch", type=int, default=10_000, help="showers per call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", default="1,2,4,10,25,50", help="comma-separated numbers of sampler steps")
    parser.add_argument("--sampler", choices=["ddim", "dpm"], help="default: the checkpoint's")
    parser.add_argument("--backends", default="torch,onnx", help="comma-separated: torch, onnx")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.checkpoint).eval()
    if args.sampler:
        model.with_sampling(args.sampler)
    steps = [int(s) for s in args.steps.split(",")]
    backends = args.backends.split(",")
    c = conditions(model, args.batch)
    print(f"model: {args.checkpoint or 'untrained default configuration'}; {model.n_parameters} parameters; "
          f"sampler {model.config.sampler}; {args.threads} threads; batch {args.batch}")

    samplers = {}
    folder = Path(tempfile.mkdtemp())
    for n in steps:
        if "torch" in backends:
            samplers["torch", n] = lambda n=n: model.with_sampling(steps=n).sample(c, seed=1, batch_size=args.batch)
        if "onnx" in backends:
            onnx = OnnxShowerModel(export_onnx(model.with_sampling(steps=n), folder / f"steps{n}.onnx"),
                                   threads=args.threads)
            samplers["onnx", n] = lambda onnx=onnx: onnx.sample(c, seed=1, batch_size=args.batch)
    rates: dict[tuple[str, int], list[float]] = {key: [] for key in samplers}
    for _ in range(args.rounds):
        for key, sample in samplers.items():
            t0 = time.perf_counter()
            sample()
            rates[key].append(args.batch / (time.perf_counter() - t0))

    print(f"\n{'steps':>5}  " + "  ".join(f"{b + ' showers/s (min-max)':>32}" for b in backends))
    for n in steps:
        cells = [f"{np.median(rates[b, n]):10.0f} ({min(rates[b, n]):.0f}-{max(rates[b, n]):.0f})" for b in backends]
        print(f"{n:>5}  " + "  ".join(f"{cell:>32}" for cell in cells))


if __name__ == "__main__":
    main()
