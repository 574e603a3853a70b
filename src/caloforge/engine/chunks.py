"""The engine's chunks for ``caloforge.jobs``: a particle gun of any size, or a particle file, cut into ranges of
events, each simulated (in any process, in any order) into a hits file of its own.

A chunk holds whole blocks of :data:`caloforge.engine.fastsim.EVENT_BLOCK` events (by the rank of the event
number in the run) and simulates those events only: a gun's chunk draws the gun's particles of its events alone
(:func:`gun_particles`), a file's chunk reads the file and keeps the particles of its events
(:func:`file_particles`). Its hits are those of the same events in one serial run, bit for bit: the events of a
run depend on (seed, event rank) alone, whatever the number of workers.

Many particle files in one run (``caloforge simulate A.csv B.root ... -o FOLDER``) are one chunk each
(:func:`simulate_file_chunk` over the whole file) with the models' seed :func:`input_seed` of (seed, the file's
name): each output depends on its input, its name, the seed and the settings alone, whatever the other files, their
order and the number of workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caloforge.engine.fastsim import EVENT_BLOCK, FastSimulation, stream_seed
from caloforge.engine.output import HitsWriter
from caloforge.engine.particles import (MODEL_MOMENTUM_RANGE_GEV, Particles, PhysicsRange, split_object,
                                       make_particles, read_particles)

INPUT_STREAM = 0
"""The stream number of :func:`input_seed` (no particle type's, ``2 |pdg| + (pdg < 0)``, nor the read-out's, 1)."""


def gun_particles(
    pdg: int,
    n: int,
    start: int,
    stop: int,
    *,
    momentum_gev: tuple[float, float] = MODEL_MOMENTUM_RANGE_GEV,
    cos_theta: tuple[float, float] = (-0.83, 0.83),
    phi_rad: tuple[float, float] = (-np.pi, np.pi),
    seed: int = 0,
) -> Particles:
    """Events ``[start, stop)`` of :func:`caloforge.engine.particle_gun` ``(pdg, n, ...)``, bit for bit, without
    drawing the others: the gun's three uniform draws (momentum, cos(theta), phi; one 64-bit number of numpy's
    PCG64 each) are reached by advancing the generator (the momentum vector as in
    :func:`caloforge.detector.gun.gun_momenta_gev`)."""
    if not 0 <= start < stop <= n:
        raise ValueError(f"events [{start}, {stop}) are not within the gun's {n}")
    lo, hi = momentum_gev
    k = stop - start

    def draws(offset: int, low: float, high: float) -> np.ndarray:
        bits = np.random.PCG64(seed)
        bits.advance(offset + start)
        return np.random.Generator(bits).uniform(low, high, k)  # (k,)

    offset = 0
    if hi > lo:
        p = draws(0, lo, hi)
        offset = n
    else:
        p = np.full(k, lo)
    p = np.where(p > 0, p, hi * 1e-6)
    ct = draws(offset, *cos_theta)
    ph = draws(offset + n, *phi_rad)
    st = np.sqrt(1 - ct**2)
    mom = p[:, None] * np.stack([st * np.cos(ph), st * np.sin(ph), ct], axis=1)  # (k, 3)
    return make_particles(np.full(k, pdg), mom, event=np.arange(start, stop), source="particle gun")


@dataclass(frozen=True)
class EngineSpec:
    """What a worker needs to build the engine of a run (picklable; the engine is built once per process).

    Attributes: the ``caloforge simulate`` options of the same names (``models``: files or a shipped set's name,
    empty for the default set; ``readout``: ``none`` or ``boss``)."""

    models: tuple[str, ...] = ()
    backend: str = "auto"
    device: str = "cpu"
    int8: bool = True
    readout: str = "none"
    out_of_range: str = "error"
    compression: str = "zlib"
    batch: int = 100_000


_ENGINES: dict[EngineSpec, tuple[FastSimulation, list[str]]] = {}


def build_engine(spec: EngineSpec) -> tuple[FastSimulation, list[str]]:
    """The engine of ``spec`` and the one-line description of each model (built at the first call in a process)."""
    if spec not in _ENGINES:
        from caloforge.detector.readout import readout_from_name
        from caloforge.export import load_samplers

        samplers, names, recorded = load_samplers(list(spec.models), backend=spec.backend, device=spec.device,
                                                  int8=spec.int8)
        physics_range = PhysicsRange.for_models(samplers, recorded)
        engine = FastSimulation(samplers, readout=readout_from_name(spec.readout), physics_range=physics_range,
                                out_of_range=spec.out_of_range)
        _ENGINES[spec] = engine, names
    return _ENGINES[spec]


@dataclass(frozen=True)
class EngineGun:
    """A particle gun of ``caloforge simulate --gun`` (:func:`caloforge.engine.particle_gun`'s arguments)."""

    pdg: int
    n: int
    momentum_gev: tuple[float, float] = MODEL_MOMENTUM_RANGE_GEV
    cos_theta: tuple[float, float] = (-0.83, 0.83)
    seed: int = 0


def input_file(path: str | os.PathLike) -> Path:
    """The file of a particle input ``path`` (``file.h5:group`` and ``file.root:tree`` name an object in it)."""
    return split_object(str(path))[0]


def input_seed(seed: int, name: str) -> int:
    """The models' seed of the input file called ``name`` (its stem) in a run of many files with ``seed`` (>= 0): the
    engine's stream seed (:mod:`caloforge.engine.fastsim`) of (seed, the name's UTF-8 bytes read as one number,
    :data:`INPUT_STREAM`), so that files of other names, or of other runs' seeds, draw other random streams."""
    return stream_seed(seed, int.from_bytes(name.encode("utf-8"), "big"), INPUT_STREAM)


def file_particles(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Particles:
    """The particles of the events of ranks ``[start, stop)`` (in the order of the event numbers; ``stop`` None: to
    the last) of the particle file ``path`` (:func:`caloforge.engine.read_particles`)."""
    particles = read_particles(path)
    if start == 0 and stop is None:
        return particles
    events = np.unique(particles.event)  # (E,) in rank order
    take = np.isin(particles.event, events[start:stop])
    return Particles(particles.event[take], particles.pdg[take], particles.momentum_gev[take],
                     particles.vertex_cm[take])


def event_chunk_ranges(n: int, chunk_events: int) -> list[tuple[int, int]]:
    """Event ranges ``[start, stop)`` of chunks of about ``chunk_events`` events (rounded up to whole blocks of
    :data:`EVENT_BLOCK` events) covering ``[0, n)``."""
    if n <= 0 or chunk_events <= 0:
        raise ValueError(f"the numbers of events and of events per chunk must be positive, got {n} and {chunk_events}")
    size = -(-chunk_events // EVENT_BLOCK) * EVENT_BLOCK
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def simulate_gun_chunk(output: str | os.PathLike, spec: EngineSpec, gun: EngineGun, start: int, stop: int) -> int:
    """Simulate events ``[start, stop)`` of ``gun`` (``start`` a multiple of :data:`EVENT_BLOCK`) into the hits
    file ``output`` (written atomically); returns the events written. A chunk function of
    :func:`caloforge.jobs.run_chunks`."""
    if start % EVENT_BLOCK:
        raise ValueError(f"a chunk starts at a block of {EVENT_BLOCK} events, not at event {start}")
    engine, _ = build_engine(spec)
    particles = gun_particles(gun.pdg, gun.n, start, stop, momentum_gev=gun.momentum_gev, cos_theta=gun.cos_theta,
                              seed=gun.seed)
    if spec.out_of_range == "error":
        engine.physics_range.check(particles, source="particle gun")
    with HitsWriter(Path(output), compression=spec.compression) as writer:
        for result in engine.simulate_chunks(particles, spec.batch, seed=gun.seed, first_event=start):
            writer.append(result)
        return writer.n_events


def simulate_file_chunk(output: str | os.PathLike, spec: EngineSpec, path: str, seed: int, start: int = 0,
                        stop: int | None = None) -> int:
    """Simulate the events of ranks ``[start, stop)`` of the particle file ``path`` (``start`` a multiple of
    :data:`EVENT_BLOCK`; the defaults: the whole file) with ``seed`` into the hits file ``output`` (written
    atomically); returns the events written. A chunk function of :func:`caloforge.jobs.run_chunks`."""
    if start % EVENT_BLOCK:
        raise ValueError(f"a chunk starts at a block of {EVENT_BLOCK} events, not at event {start}")
    engine, _ = build_engine(spec)
    particles = file_particles(path, start, stop)
    if spec.out_of_range == "error":
        engine.physics_range.check(particles, source=str(path))
    with HitsWriter(Path(output), compression=spec.compression) as writer:
        for result in engine.simulate_chunks(particles, spec.batch, seed=seed, first_event=start):
            writer.append(result)
        return writer.n_events
