"""Chunked runs on Dask (caloforge.jobs): events per second of the Geant4 production and of the engine on a local
cluster of 1 and 2 workers, side by side, and the scheduler's overhead per chunk (chunks of a no-op), so that a
chunk size can be chosen: a chunk should take long against the overhead.

    python benchmarks/bench_distributed.py [--g4-events 120] [--engine-events 400000] [--noop-chunks 400]

Everything is written into a temporary folder. Numbers and the machine's load: docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from caloforge.data.production import make_sample_chunked
from caloforge.engine.chunks import EngineGun, build_engine, EngineSpec, event_chunk_ranges, simulate_gun_chunk
from caloforge.fullsim.runner import GunSpec
from caloforge.jobs import Chunk, open_client, run_chunks


def noop(output: str) -> int:
    """A chunk that does nothing (no file): the scheduler's overhead alone."""
    return 0


def _load_engine(spec: EngineSpec) -> None:
    build_engine(spec)


def geant4_rate(client, folder: Path, n: int, chunk: int) -> float:
    out = folder / f"g4_{time.monotonic_ns()}.h5"
    summary = make_sample_chunked(out, GunSpec(particle="gamma", seed=1), n, client=client, chunk_attempts=chunk,
                                  progress=False)
    return summary.n_new / summary.seconds


def engine_rate(client, folder: Path, n: int, chunk: int) -> float:
    spec, gun = EngineSpec(compression="zlib"), EngineGun(22, n, seed=1)
    sub = folder / f"engine_{time.monotonic_ns()}"
    sub.mkdir()
    chunks = [Chunk(f"c{k}", sub / f"c{k}.root", (spec, gun, a, b), b - a)
              for k, (a, b) in enumerate(event_chunk_ranges(n, chunk))]
    client.run(_load_engine, spec)  # the models loaded on every worker before the timing
    report = run_chunks(simulate_gun_chunk, chunks, client=client, progress=False)
    return report.events / report.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--g4-events", type=int, default=120)
    parser.add_argument("--g4-chunk", type=int, default=20, help="attempts per Geant4 chunk")
    parser.add_argument("--engine-events", type=int, default=400_000)
    parser.add_argument("--engine-chunk", type=int, default=50_000)
    parser.add_argument("--noop-chunks", type=int, default=400)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for workers in (1, 2):
            with open_client("local", workers=workers) as client:
                geant4_rate(client, folder, workers * args.g4_chunk, args.g4_chunk)  # Geant4 set up on the workers
                g4 = geant4_rate(client, folder, args.g4_events, args.g4_chunk)
                engine = engine_rate(client, folder, args.engine_events, args.engine_chunk)
                chunks = [Chunk(f"n{k}", folder / f"noop_{workers}_{k}") for k in range(args.noop_chunks)]
                t0 = time.perf_counter()
                run_chunks(noop, chunks, client=client, progress=False)
                overhead = (time.perf_counter() - t0) / args.noop_chunks
            rows.append((workers, g4, engine, overhead))
    print(f"{'workers':>7} {'Geant4 events/s':>16} {'engine events/s':>16} {'overhead ms/chunk':>18}")
    for workers, g4, engine, overhead in rows:
        print(f"{workers:>7} {g4:>16.1f} {engine:>16,.0f} {1000 * overhead:>18.2f}")


if __name__ == "__main__":
    main()
