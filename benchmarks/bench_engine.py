"""Fast simulation engine against the Geant4 reference, in one run on one machine.

For each particle type (e-, e+, gamma) and the same random tracks (0-3 GeV/c, barrel directions):

* the engine end to end (particle gun, transport, conditions, model sampling, placement, ROOT writing)
  on ``--tracks`` tracks with the default set (the shipped students, ``student_<particle>.onnx``) or ``--model``
  files, called with batches of 1, 100 and 10k particles (batch 1 on fewer tracks), and at batch 10k once more
  with a zstd-compressed ROOT file instead of zlib;
* the model sampling alone (ONNX Runtime and PyTorch) at the same batch sizes;
* at batch 10k, the other shipped sets side by side (or ``--gan``, ``--flow``, ``--student`` files): sampling alone
  on both backends and the engine end to end (``--repeats`` times, as the headline figure, but for the slow
  flows): the GANs (their 8-bit exports ``gan_<particle>_int8.onnx``, and once more their float32 exports and
  the seed-size models they were distilled from, ``seed_gan_<particle>.pt``), the flows and, with ``--model``,
  the students;
* the Geant4 reference (single thread, all cores would divide both sides alike) on ``--g4-tracks`` of
  the same tracks, before and after the engine runs of that particle type: the speed of these shared
  machines drifts (Geant4 on the same electrons: 65-104 showers/s in three runs of this benchmark on one
  day), and the two runs bracket the engine's; its rate is their sum of showers over their sum of seconds.

The engine end to end at batch 10k, the headline figure, runs ``--repeats`` times; its row gives the median
run, with the range of all in the last column. Every configuration runs in a fresh process, so its peak
memory (max RSS) is its own. The table gives showers per second, the speed-up over Geant4 (showers/s
divided by Geant4's showers/s per core, both measured here), and the peak memory.

    python benchmarks/bench_engine.py [--tracks 50000] [--g4-tracks 300] [--repeats 3] [--model PATH ...]
        [--gan PATH ...] [--flow PATH ...] [--student PATH ...]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from caloforge.export import load_samplers
from caloforge.models.pretrained import DEFAULT_FAMILY, GAN_STEMS, HERE, default_model_paths, seed_model_paths

PARTICLES = {"e-": 11, "e+": -11, "gamma": 22}


def _engine(args: tuple) -> dict:
    """End to end: gun -> one hits file, the engine called on chunks of ``batch`` particles."""
    pdg, n, batch, models, backend, seed, compression = args
    from caloforge.engine import FastSimulation, particle_gun
    from caloforge.engine.output import HitsWriter
    from caloforge.engine.particles import iter_chunks

    sim = FastSimulation(load_samplers(models, backend=backend)[0])
    out = Path(tempfile.mkdtemp()) / "hits.root"
    t0 = time.perf_counter()
    parts = particle_gun(pdg, n, seed=seed)
    showers = 0
    stages = {"transport": 0.0, "sampling": 0.0, "placement": 0.0, "writing": 0.0}
    with HitsWriter(out, compression=compression) as writer:
        for k, chunk in enumerate(iter_chunks(parts, batch)):
            res = sim.simulate(chunk, seed=k)
            t_w = time.perf_counter()
            writer.append(res)
            stages["writing"] += time.perf_counter() - t_w
            for key in ("transport", "sampling", "placement"):
                stages[key] += res.timings_s[key]
            showers += res.n_showers
        t_w = time.perf_counter()
        writer.finish()  # writes run in a background thread: "writing" is the time the loop waited for them
        stages["writing"] += time.perf_counter() - t_w
    dt = time.perf_counter() - t0
    return {"seconds": dt, "showers": showers, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **stages}


def _sampling(args: tuple) -> dict:
    """Model sampling alone on the conditions of the tracks."""
    pdg, n, batch, models, backend, seed = args
    from caloforge.engine import FastSimulation, particle_gun

    samplers = load_samplers(models, backend=backend)[0]
    parts = particle_gun(pdg, n, seed=seed)
    conditions = FastSimulation(samplers).simulate(parts).particle_conditions
    conditions = conditions[np.isfinite(conditions[:, 0])]
    sampler = samplers[pdg]
    t0 = time.perf_counter()
    for start in range(0, len(conditions), batch):
        sampler.sample(conditions[start : start + batch], seed=start, batch_size=batch)
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": dt, "showers": len(conditions), "maxrss_mb": peak_mb}


def _geant4(args: tuple) -> dict:
    """The Geant4 reference on the same tracks (one process, one thread)."""
    pdg, n, seed = args
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    from caloforge.detector.conditions import PARTICLES_BY_PDG
    from caloforge.engine import particle_gun
    from caloforge.fullsim import g4app

    g4app.g4.G4EmParameters.Instance().SetVerbose(0)
    app = g4app.Geant4Barrel(g4app.SimSettings())
    parts = particle_gun(pdg, n, seed=seed)
    name = PARTICLES_BY_PDG[pdg].name
    app.simulate([(name, parts.momentum_gev[0], 1)])  # physics tables
    t0 = time.perf_counter()
    app.simulate([(name, parts.momentum_gev[i], i + 2) for i in range(n)])
    dt = time.perf_counter() - t0
    return {"seconds": dt, "showers": n, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_isolated(func, args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(func, (args,))


def median_run(func, args, repeats: int) -> dict:
    """The median of ``repeats`` isolated runs, with the range of all."""
    runs = sorted((run_isolated(func, args) for _ in range(repeats)), key=lambda r: r["seconds"])
    r = runs[len(runs) // 2]
    if repeats > 1:
        r["range"] = f"median of {repeats}: {runs[0]['seconds']:.2f}-{runs[-1]['seconds']:.2f} s"
    return r


def _set_paths(family: str, given: list[str]) -> dict[str, dict[str, str]]:
    """Particle -> backend (``onnx``, ``torch``) -> model file of the set ``family``: the files ``given``
    (checkpoints or exports, for both backends), else the shipped ones, if any (the export the engine runs by
    default for ONNX Runtime, the checkpoint for PyTorch)."""
    if not given:
        shipped = {kind: default_model_paths(kind, family=family) for kind in ("onnx", "torch")}
        return {name: {kind: str(shipped[kind][name]) for kind in shipped} for name in shipped["torch"]}
    from caloforge.export import OnnxShowerModel
    from caloforge.models import load_model

    paths = {}
    for path in given:
        model = OnnxShowerModel(path) if path.endswith(".onnx") else load_model(path, device="cpu")
        paths.update({name: {"onnx": path, "torch": path} for name in model.particles})
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--batch1-tracks", type=int, default=500, help="tracks for batch size 1")
    parser.add_argument("--g4-tracks", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the engine end to end at batch 10k")
    parser.add_argument("--model", action="append", default=[],
                        help="checkpoint(s) or export(s); default the shipped default set")
    parser.add_argument("--gan", action="append", default=[],
                        help="GAN checkpoint(s) or export(s); default the shipped GANs")
    parser.add_argument("--flow", action="append", default=[],
                        help="flow checkpoint(s) or export(s); default the shipped flows, if any")
    parser.add_argument("--student", action="append", default=[],
                        help="student checkpoint(s) or export(s); default the shipped students, if any")
    parser.add_argument("--particles", default="e-,e+,gamma")
    args = parser.parse_args()

    rows = []
    seed_models = seed_model_paths()
    given = {"gan": args.gan, "flow": args.flow, "student": args.student}
    other_sets = {family: _set_paths(family, files) for family, files in given.items()
                  if args.model or family != DEFAULT_FAMILY}
    for name in args.particles.split(","):
        pdg = PARTICLES[name]
        g4_before = run_isolated(_geant4, (pdg, args.g4_tracks, 5))
        block = []
        for batch in (1, 100, 10_000):
            n = args.batch1_tracks if batch == 1 else args.tracks
            for backend in ("onnx", "torch"):
                r = run_isolated(_sampling, (pdg, n, batch, args.model, backend, 5))
                block.append((name, f"sampling only ({backend})", batch, r))
            repeats = args.repeats if batch == 10_000 else 1
            r = median_run(_engine, (pdg, n, batch, args.model, "onnx", 5, "zlib"), repeats)
            block.append((name, "engine end to end (onnx)", batch, r))
            if batch != 10_000:
                continue
            # the same with the faster ROOT compression (caloforge simulate --compression)
            r = run_isolated(_engine, (pdg, n, batch, args.model, "onnx", 5, "zstd"))
            block.append((name, "engine, zstd ROOT file", batch, r))
            for family, paths in other_sets.items():  # the other sets, side by side
                if name not in paths:
                    continue
                for backend in ("onnx", "torch"):
                    r = run_isolated(_sampling, (pdg, n, batch, [paths[name][backend]], backend, 5))
                    block.append((name, f"sampling, {family} ({backend})", batch, r))
                runs = 1 if family == "flow" else repeats
                r = median_run(_engine, (pdg, n, batch, [paths[name]["onnx"]], "onnx", 5, "zlib"), runs)
                block.append((name, f"engine, {family} (onnx)", batch, r))
                if family == "gan" and not args.gan:  # the shipped float32 export and the seed-size teacher
                    float_model = [str(HERE / f"{GAN_STEMS[name]}.onnx")]
                    r = run_isolated(_sampling, (pdg, n, batch, float_model, "onnx", 5))
                    block.append((name, "sampling, gan float32 export", batch, r))
                    r = median_run(_engine, (pdg, n, batch, float_model, "onnx", 5, "zlib"), repeats)
                    block.append((name, "engine, gan float32 export", batch, r))
                    if name in seed_models:
                        seed_model = [str(seed_models[name])]
                        r = run_isolated(_sampling, (pdg, n, batch, seed_model, "onnx", 5))
                        block.append((name, "sampling, seed-size gan (onnx)", batch, r))
                        r = run_isolated(_engine, (pdg, n, batch, seed_model, "onnx", 5, "zlib"))
                        block.append((name, "engine, seed-size gan", batch, r))
        g4_after = run_isolated(_geant4, (pdg, args.g4_tracks, 5))
        g4_rate = (g4_before["showers"] + g4_after["showers"]) / (g4_before["seconds"] + g4_after["seconds"])
        rows.append((name, "Geant4 (1 thread), before", "-", g4_before, g4_rate))
        rows.append((name, "Geant4 (1 thread), after", "-", g4_after, g4_rate))
        rows.extend((*row, g4_rate) for row in block)

    print(f"{'particle':>8} {'what':>30} {'batch':>6} {'showers':>8} {'seconds':>8} {'showers/s':>10} "
          f"{'vs Geant4':>9} {'peak MB':>8}  where the time goes")
    for name, what, batch, r, g4_rate in rows:
        rate = r["showers"] / r["seconds"]
        where = ""
        if "transport" in r:
            where = ", ".join(f"{k} {r[k]:.2f}" for k in ("transport", "sampling", "placement", "writing"))
        if "range" in r:
            where += f" ({r['range']})"
        if what.startswith("Geant4"):
            where = f"both runs: {g4_rate:.0f} showers/s, what the speed-ups divide by"
        print(f"{name:>8} {what:>30} {batch!s:>6} {r['showers']:>8} {r['seconds']:>8.2f} {rate:>10.0f} "
              f"{rate / g4_rate:>8.0f}x {r['maxrss_mb']:>8.0f}  {where}")


if __name__ == "__main__":
    main()
