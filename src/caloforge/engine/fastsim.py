"""The fast simulation engine: particles in, BESIII EMC barrel hits out.

For each particle: transport from its vertex to the crystal front faces (straight line for photons,
helix in the 1 T field for charged particles; :mod:`caloforge.detector.transport`), conditions as in
the reference samples (:func:`caloforge.detector.compute_conditions`), one batched model call per
particle type, and placement of each 11x11 map into the 44 x 120 barrel (phi wraps, rows beyond the
barrel ends are dropped). Showers of the same event add up crystal by crystal.

Particles that miss the barrel (endcap directions, curling tracks) are reported as ``MISSED``;
particle types without a model (muons, hadrons, neutrinos) as ``NOT_COVERED``; neither deposits energy.
Particles outside the engine's :class:`~caloforge.engine.particles.PhysicsRange` (a momentum beyond the range
their model was trained on, a vertex outside the region the transport assumes) are an error, or, with
``out_of_range="skip"``, skipped and reported as ``OUTSIDE_MOMENTUM`` or ``OUTSIDE_VERTEX`` (a particle outside
both: ``OUTSIDE_MOMENTUM``).

Random numbers: the events are taken in blocks of :data:`EVENT_BLOCK` consecutive events (by the rank of the
event number in the whole run); each block draws its model noise and its read-out from streams of its own,
seeded by (seed, block, particle type or read-out). The same seed thus gives the same showers however a run
is cut into chunks (:meth:`FastSimulation.simulate_chunks` cuts only between blocks).

Optional read-out (off by default), after the showers of an event are summed crystal by crystal: the
digitisation of :func:`caloforge.detector.readout.digitise` (BOSS's: photo-statistics, electronics noise on the
sampled pulse, pedestal, calibration, threshold), the same that is applied to the Geant4 samples. Crystals
without a deposit stay empty, as in BOSS; crystals read out below the threshold are dropped from the hits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from caloforge import _compiled
from caloforge.detector.conditions import PARTICLES_BY_PDG, compute_conditions
from caloforge.detector.geometry import BARREL_GID_OFFSET, N_PHI
from caloforge.detector.readout import ReadoutParams, digitise
from caloforge.detector.transport import prepare_transport, propagate_to_front
from caloforge.engine.particles import OUT_OF_RANGE, Particles, PhysicsRange, iter_chunks

SIMULATED, MISSED, NOT_COVERED, OUTSIDE_MOMENTUM, OUTSIDE_VERTEX = 0, 1, 2, 3, 4
STATUS_NAMES = {
    SIMULATED: "simulated",
    MISSED: "missed the barrel",
    NOT_COVERED: "no model for this particle",
    OUTSIDE_MOMENTUM: "momentum outside the model's range",
    OUTSIDE_VERTEX: "vertex outside the transport's region",
}
"""The ``particle_status`` codes of the output files (their legend is written into each file)."""
EVENT_BLOCK = 4096
"""Consecutive events whose random numbers come from streams of their own (see the module docstring)."""
READOUT_STREAM = 1
"""Stream number of the read-out; a particle type's stream is ``2 |pdg| + (pdg < 0)`` (never 1)."""


def stream_seed(seed: int, block: int, stream: int) -> int:
    """The seed of one block's stream: 64 bits of numpy's SeedSequence of (seed, block, stream)."""
    return int(np.random.SeedSequence([seed, block, stream]).generate_state(1, np.uint64)[0])


def _particle_stream(pdg: int) -> int:
    return 2 * abs(int(pdg)) + (pdg < 0)


class ShowerSampler(Protocol):
    """What the engine needs from a model: maps (N, 11, 11) in GeV for conditions (N, 6)."""

    def sample(self, conditions: np.ndarray, *, seed: int | None = None) -> np.ndarray: ...


@dataclass
class SimulationResult:
    """Hits and particles of the simulated events.

    Hits are stored event by event: the hits of event ``k`` (number ``event_number[k]``) are
    ``hit_*[hit_offsets[k]:hit_offsets[k + 1]]``.
    """

    event_number: np.ndarray  # (E,)
    hit_offsets: np.ndarray  # (E + 1,)
    hit_theta: np.ndarray  # (M,) BESIII theta index, part 1
    hit_phi: np.ndarray  # (M,)
    hit_energy_gev: np.ndarray  # (M,)
    particles: Particles
    particle_status: np.ndarray  # (N,) a code of STATUS_NAMES
    particle_theta: np.ndarray  # (N,) centre crystal, -1 if not simulated
    particle_phi: np.ndarray
    particle_conditions: np.ndarray  # (N, 6), NaN if not simulated
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def hit_gid(self) -> np.ndarray:
        """pybes3 global crystal id of each hit."""
        return BARREL_GID_OFFSET + N_PHI * self.hit_theta.astype(np.int64) + self.hit_phi

    @property
    def n_events(self) -> int:
        return len(self.event_number)

    @property
    def n_showers(self) -> int:
        return int((self.particle_status == SIMULATED).sum())

    def status_counts(self) -> dict[str, int]:
        return {name: int((self.particle_status == code).sum()) for code, name in STATUS_NAMES.items()}


def concatenate_results(results: Sequence[SimulationResult]) -> SimulationResult:
    """One result holding the events of several, in order (their event numbers must be disjoint and
    increasing from one result to the next, as :func:`caloforge.engine.particles.iter_chunks` makes them)."""
    if len(results) == 1:
        return results[0]
    numbers = np.concatenate([r.event_number for r in results])
    if np.any(np.diff(numbers) <= 0):
        raise ValueError("results to concatenate must have increasing, disjoint event numbers")
    hit_counts = np.concatenate([np.diff(r.hit_offsets) for r in results])
    offsets = np.zeros(len(numbers) + 1, dtype=np.int64)
    np.cumsum(hit_counts, out=offsets[1:])
    parts = [r.particles for r in results]
    timings: dict[str, float] = {}
    for r in results:
        for k, v in r.timings_s.items():
            timings[k] = timings.get(k, 0.0) + v

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for r in results])

    return SimulationResult(
        event_number=numbers,
        hit_offsets=offsets,
        hit_theta=cat("hit_theta"),
        hit_phi=cat("hit_phi"),
        hit_energy_gev=cat("hit_energy_gev"),
        particles=Particles(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("event", "pdg", "momentum_gev", "vertex_cm"))
        ),
        particle_status=cat("particle_status"),
        particle_theta=cat("particle_theta"),
        particle_phi=cat("particle_phi"),
        particle_conditions=cat("particle_conditions"),
        timings_s=timings,
    )


def _place_showers(
    maps: np.ndarray, theta: np.ndarray, phi: np.ndarray, event_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crystals with energy of the maps (N, 11, 11, GeV) placed around their centre crystals (theta, phi)
    and summed crystal by crystal within each event: event index, barrel cell (``theta * 120 + phi``) and
    energy (GeV, float32), sorted by event, then cell. Phi wraps; rows beyond the barrel ends are dropped.

    Compiled (``_kernels.c``): each shower's crystals are written in cell order (in a row whose columns wrap in
    phi, the wrapped crystals in their place), so that a shower alone in its event is done; the runs of an event
    with several showers are merged, then repeated crystals added up. 50k showers of the shipped models: 0.04 s,
    where numpy's flatnonzero, divmod and a stable argsort of all deposits took 0.14 s."""
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    theta, phi, event_index = (np.ascontiguousarray(a, dtype=np.int64) for a in (theta, phi, event_index))
    return _compiled.place_showers(maps, theta, phi, event_index)


def _readout_blocks(
    ev: np.ndarray, cell: np.ndarray, energy: np.ndarray, n_events: int, first_event: int, readout: ReadoutParams,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The read-out (:func:`caloforge.detector.readout.digitise`) of the hits (sorted by event) block by block of
    :data:`EVENT_BLOCK` events, each block with its own random stream; hits read out as 0 dropped.
    ``first_event``: the rank of event 0 in the whole run."""
    read = np.empty(len(energy), dtype=np.float32)
    gid = BARREL_GID_OFFSET + cell
    for block in range(first_event // EVENT_BLOCK, (first_event + n_events - 1) // EVENT_BLOCK + 1):
        lo = max(0, block * EVENT_BLOCK - first_event)
        hi = min(n_events, (block + 1) * EVENT_BLOCK - first_event)
        a, b = np.searchsorted(ev, [lo, hi])
        read[a:b] = digitise(energy[a:b], gid[a:b], stream_seed(seed, block, READOUT_STREAM), readout)
    keep = read > 0
    return ev[keep], cell[keep], read[keep]


class FastSimulation:
    """Turns particles into EMC barrel hits with one shower model per particle type.

    Args:
        models: PDG id -> model (anything with ``sample(conditions, seed=...)`` giving GeV maps).
        readout: the read-out (:data:`caloforge.detector.readout.BOSS_READOUT`), or None (the default) for the
            bare deposited energies.
        b_field_t: solenoid field along +z.
        physics_range: where the models are valid (default: :meth:`PhysicsRange.for_models` of ``models``).
        out_of_range: ``"error"`` (the default): particles outside ``physics_range`` raise
            :class:`~caloforge.engine.particles.ParticleInputError`; ``"skip"``: they get no shower and the status
            ``OUTSIDE_MOMENTUM`` or ``OUTSIDE_VERTEX``.
    """

    def __init__(
        self,
        models: Mapping[int, ShowerSampler],
        *,
        readout: ReadoutParams | None = None,
        b_field_t: float = 1.0,
        physics_range: PhysicsRange | None = None,
        out_of_range: str = "error",
    ) -> None:
        if not models:
            raise ValueError("the fast simulation needs at least one model")
        if out_of_range not in OUT_OF_RANGE:
            raise ValueError(f"out_of_range {out_of_range!r}: choose one of {', '.join(OUT_OF_RANGE)}")
        self.models = dict(models)
        self.readout = readout
        self.b_field_t = b_field_t
        self.physics_range = PhysicsRange.for_models(self.models) if physics_range is None else physics_range
        missing = sorted(set(self.models) - set(self.physics_range.momentum_gev))
        if missing:
            raise ValueError(f"the physics range gives no momentum range for the models of PDG {missing}")
        self.out_of_range = out_of_range
        prepare_transport()  # the crystal table and the tables of its front faces, built once, here

    def simulate(self, particles: Particles, *, seed: int = 0, first_event: int = 0) -> SimulationResult:
        """Simulate every event of ``particles``; reproducible for a given ``seed``. Raises
        :class:`~caloforge.engine.particles.ParticleInputError` for particles outside the physics range unless
        ``out_of_range="skip"``.

        ``first_event``: the rank, in the whole run, of the first event of ``particles`` (the number of events
        before it when a run is simulated in chunks; :meth:`simulate_chunks` passes it): the random numbers of an
        event depend on the seed and that rank only (see the module docstring)."""
        if seed < 0 or first_event < 0:
            raise ValueError(f"seed and first_event must be >= 0, got {seed} and {first_event}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        n = len(particles)
        event_number, event_index = np.unique(particles.event, return_inverse=True)
        charge = np.zeros(n)
        for pdg, kind in PARTICLES_BY_PDG.items():
            charge[particles.pdg == pdg] = kind.charge
        covered = np.zeros(n, dtype=bool)
        for pdg in self.models:  # a few types: cheaper than np.isin on the small batches of event-by-event use
            covered |= particles.pdg == pdg
        status = np.where(covered, SIMULATED, NOT_COVERED).astype(np.int8)
        if self.out_of_range == "error":
            self.physics_range.check(particles)  # raises ParticleInputError, naming the first particle outside
        else:
            outside_momentum, outside_vertex = self.physics_range.outside(particles)
            status[outside_vertex] = OUTSIDE_VERTEX
            status[outside_momentum] = OUTSIDE_MOMENTUM
            covered &= ~(outside_momentum | outside_vertex)
        theta = np.full(n, -1, dtype=np.int64)
        phi = np.full(n, -1, dtype=np.int64)
        conditions = np.full((n, 6), np.nan, dtype=np.float32)

        idx = np.flatnonzero(covered)
        front = propagate_to_front(
            particles.vertex_cm[idx], particles.momentum_gev[idx], charge[idx], b_field_t=self.b_field_t
        )
        status[idx[~front.hit]] = MISSED
        hit = idx[front.hit]
        theta[hit], phi[hit] = front.theta_index[front.hit], front.phi_index[front.hit]
        conditions[hit] = compute_conditions(
            front.position_cm[front.hit], front.momentum_gev[front.hit], theta[hit], phi[hit]
        )
        timings["transport"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        maps = self._sample(particles.pdg[hit], conditions[hit], event_index[hit], seed, first_event)
        timings["sampling"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        ev, cell, energy = _place_showers(maps, theta[hit], phi[hit], event_index[hit])
        if self.readout is not None:
            ev, cell, energy = _readout_blocks(ev, cell, energy, len(event_number), first_event, self.readout, seed)
        offsets = np.zeros(len(event_number) + 1, dtype=np.int64)
        np.cumsum(np.bincount(ev, minlength=len(event_number)), out=offsets[1:])
        timings["placement"] = time.perf_counter() - t0

        return SimulationResult(
            event_number=event_number,
            hit_offsets=offsets,
            hit_theta=(cell // N_PHI).astype(np.int16),
            hit_phi=(cell % N_PHI).astype(np.int16),
            hit_energy_gev=energy.astype(np.float32, copy=False),
            particles=particles,
            particle_status=status,
            particle_theta=theta,
            particle_phi=phi,
            particle_conditions=conditions,
            timings_s=timings,
        )

    def _sample(
        self, pdg: np.ndarray, conditions: np.ndarray, event_index: np.ndarray, seed: int, first_event: int
    ) -> np.ndarray:
        """Maps (M, 11, 11) in GeV of the showers with types ``pdg`` (M,) and ``conditions`` (M, 6): one model call
        per type and block of :data:`EVENT_BLOCK` events, the rows of a call in event order (then input order),
        its noise from the block's own stream."""
        maps = None
        block = (first_event + event_index) // EVENT_BLOCK  # (M,)
        for p in sorted(self.models):
            rows = np.flatnonzero(pdg == p)
            if not len(rows):
                continue
            if np.any(np.diff(event_index[rows]) < 0):
                rows = rows[np.argsort(event_index[rows], kind="stable")]
            cuts = np.flatnonzero(np.diff(block[rows])) + 1
            for group in np.split(rows, cuts):
                out = self.models[p].sample(
                    conditions[group], seed=stream_seed(seed, int(block[group[0]]), _particle_stream(p))
                )
                contiguous = bool(np.all(np.diff(group) == 1))
                if maps is None and len(group) == len(pdg) and contiguous:
                    return out  # one type, one block, in order: the model's maps as they come (a copy less)
                if maps is None:
                    maps = np.zeros((len(pdg), 11, 11), dtype=np.float32)
                if contiguous:
                    maps[group[0] : group[-1] + 1] = out
                else:
                    maps[group] = out
        return np.zeros((len(pdg), 11, 11), dtype=np.float32) if maps is None else maps

    def simulate_chunks(
        self, particles: Particles, chunk: int, *, seed: int = 0, first_event: int = 0
    ) -> Iterator[SimulationResult]:
        """Simulate ``particles`` chunk by chunk (about ``chunk`` particles each, whole blocks of
        :data:`EVENT_BLOCK` events, in event order): the results of :meth:`simulate` of the whole list, with the
        same hits, whatever ``chunk``. ``first_event``: the rank of the list's first event in the whole run (a
        multiple of :data:`EVENT_BLOCK`: a part of a run cut between blocks)."""
        for part in iter_chunks(particles, chunk, block_events=EVENT_BLOCK):
            result = self.simulate(part, seed=seed, first_event=first_event)
            first_event += result.n_events
            yield result
