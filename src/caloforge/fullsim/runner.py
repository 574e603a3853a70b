"""Run the Geant4 reference simulation in worker processes and turn events into training records.

Every attempt ``i`` of a run with master seed ``S`` draws its kinematics and its Geant4 seed from
``numpy.random.default_rng([S, i])`` alone, so an event does not depend on how attempts were shared
among workers, and a run extended later (``start_attempt``) continues exactly where it stopped.

Two descriptions of each particle's arrival at the EMC are recorded:

* the **undisturbed track**: the gun particle followed from the origin through vacuum in the 1 T field
  (straight line for photons) to the crystal front face it crosses first. This is what the fast
  simulation engine computes for a generator-level particle, so the window centre and the
  ``conditions`` of a sample come from it, and the model learns everything that happens in front of
  the EMC (TOF showers, bremsstrahlung, conversions) as part of the shower;
* the **Geant4 entry truth**: the primary particle where Geant4 brings it out of the entry shell just
  in front of the crystals, extrapolated to the front face; its conditions (``conditions_entry``,
  relative to the same centre crystal) are the seeds' "MC truth at EMC entry". Primaries that never
  get there (photons converted in the TOF, electrons stopped) have ``reached_emc = False`` and NaN.

An attempt is accepted when its undisturbed track reaches a barrel crystal face; kinematics that miss
the barrel (charged particles curling inside r = 94 cm, tracks leaving through the ends) are skipped
before Geant4 runs (``status = MISSED``).

Resources and signals: a run starts at most one worker process per core and per event asked for, and
sizes its chunks of attempts by the events asked for. Workers ignore SIGINT (the parent stops the run and
kills them: a Geant4 event interrupted in a Python callback leaves Geant4 unusable) and die with their
parent, also when it is killed by SIGKILL (Linux: ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import math
import multiprocessing
import multiprocessing.resource_tracker
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from caloforge.atomic import STOP_SIGNALS, raise_if_stopped
from caloforge.detector.conditions import compute_conditions, particle
from caloforge.detector.geometry import N_PHI, N_THETA, WINDOW, extract_window
from caloforge.detector.transport import B_FIELD_T, K_GEV_PER_T_CM, propagate_to_front
from caloforge.fullsim.g4data import geant4_data_problem

ACCEPTED, MISSED = 0, 1
BARREL_COS_THETA_MAX = 0.83
MAX_MOMENTUM_GEV = 5.0
REACH_RADIUS_CM = 94.0
MAX_PRODUCTION_CUT_MM = 1000.0
"""Upper bound of the Geant4 production cut (a range in the material): 1 m, 3.5 times the crystals' 28 cm."""
PRODUCTION_CUT_MM = 0.7
"""Geant4's default production cut (mm), the reference samples'."""
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class FullsimError(RuntimeError):
    """A problem the user can act on (bad settings, a crashed Geant4 worker)."""


@dataclass(frozen=True)
class GunSpec:
    """Particle gun at the origin (no vertex smearing).

    Attributes:
        particle: Geant4 name: ``e-``, ``e+`` or ``gamma``.
        momentum_gev: (min, max) of the uniform momentum distribution, GeV/c; equal for a fixed momentum.
        cos_theta_max: directions uniform in cos(theta) within +-cos_theta_max and uniform in phi.
        track_gev: fixed momentum vector (px, py, pz) in GeV/c instead of random directions/momenta.
        seed: master seed of the run.
    """

    particle: str = "gamma"
    momentum_gev: tuple[float, float] = (0.0, 3.0)
    cos_theta_max: float = BARREL_COS_THETA_MAX
    track_gev: tuple[float, float, float] | None = None
    seed: int = 1

    def validate(self) -> None:
        """Raise :class:`FullsimError` with a clear message for settings that cannot work."""
        try:
            kind = particle(self.particle)
        except ValueError as err:
            raise FullsimError(str(err)) from None
        if self.track_gev is not None:
            p = np.asarray(self.track_gev, dtype=float)
            if p.shape != (3,) or not np.all(np.isfinite(p)) or not 0 < np.linalg.norm(p) <= MAX_MOMENTUM_GEV:
                raise FullsimError(f"track momentum must be three finite numbers with 0 < |p| <= {MAX_MOMENTUM_GEV} GeV/c")
            hit = propagate_to_front(np.zeros((1, 3)), p[None], np.array([kind.charge]))
            if not hit.hit[0]:
                raise FullsimError(
                    f"a {self.particle} track with p = ({', '.join(f'{x:g}' for x in p)}) GeV/c "
                    "does not reach the EMC barrel"
                )
            return
        lo, hi = self.momentum_gev
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi <= MAX_MOMENTUM_GEV and hi > 0):
            raise FullsimError(
                f"momentum range {lo}..{hi} GeV/c is not valid: need 0 <= min <= max <= {MAX_MOMENTUM_GEV}, max > 0"
            )
        if not 0 < self.cos_theta_max <= BARREL_COS_THETA_MAX:
            raise FullsimError(f"cos_theta_max must be in (0, {BARREL_COS_THETA_MAX}] (the barrel acceptance)")
        if kind.charge:
            # p_T needed to reach the crystals in the solenoid: diameter 2R >= r_barrel
            p_min_reach = 0.5 * REACH_RADIUS_CM * K_GEV_PER_T_CM * B_FIELD_T
            if hi < p_min_reach:
                raise FullsimError(
                    f"{self.particle} tracks below {p_min_reach:.3f} GeV/c cannot reach the EMC barrel "
                    f"in the {B_FIELD_T:g} T field; the range {lo:g}..{hi:g} GeV/c lies below it"
                )

    def describe(self) -> dict:
        """A JSON-able description (stored in sample files)."""
        d = asdict(self)
        d["momentum_gev"] = list(self.momentum_gev)
        d["track_gev"] = None if self.track_gev is None else list(self.track_gev)
        return d


def check_production_cut(cut_mm: float) -> None:
    """Raise :class:`FullsimError` unless ``cut_mm`` is a Geant4 production cut (range) in (0, 1000] mm."""
    try:
        ok = math.isfinite(cut_mm) and 0 < cut_mm <= MAX_PRODUCTION_CUT_MM
    except TypeError:
        ok = False
    if not ok:
        raise FullsimError(
            f"production cut {cut_mm!r} mm is not valid: need a length 0 < cut <= {MAX_PRODUCTION_CUT_MM:g} mm "
            f"(Geant4's default is {PRODUCTION_CUT_MM:g} mm)"
        )


def check_geant4_data() -> None:
    """Raise :class:`FullsimError` if Geant4 would not find its data sets, or would ask to download them."""
    problem = geant4_data_problem()
    if problem is not None:
        raise FullsimError(problem)


def attempt_kinematics(gun: GunSpec, attempts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Momentum vectors (n, 3) in GeV/c and Geant4 seeds (n,) of the given attempt indices."""
    mom = np.empty((len(attempts), 3))
    seeds = np.empty(len(attempts), dtype=np.int64)
    for k, i in enumerate(attempts):
        rng = np.random.default_rng([gun.seed, int(i)])
        seeds[k] = rng.integers(1, 2**31 - 1)
        if gun.track_gev is not None:
            mom[k] = gun.track_gev
            continue
        p = rng.uniform(*gun.momentum_gev)
        cos_t = rng.uniform(-gun.cos_theta_max, gun.cos_theta_max)
        phi = rng.uniform(-np.pi, np.pi)
        sin_t = np.sqrt(1 - cos_t**2)
        mom[k] = p * np.array([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t])
    return mom, seeds


@dataclass
class Batch:
    """Accepted events of consecutive attempts, plus the status of every attempt."""

    attempts: np.ndarray  # (n_attempts,) attempt indices covered
    status: np.ndarray  # (n_attempts,) ACCEPTED / MISSED
    events: dict[str, np.ndarray] = field(default_factory=dict)  # per accepted event

    def __len__(self) -> int:
        return int((self.status == ACCEPTED).sum())

    def truncate(self, n_events: int) -> Batch:
        """Keep the first ``n_events`` accepted events and the attempts up to the last one kept."""
        if n_events >= len(self):
            return self
        last = np.flatnonzero(self.status == ACCEPTED)[n_events - 1]
        return Batch(
            self.attempts[: last + 1],
            self.status[: last + 1],
            {k: v[:n_events] for k, v in self.events.items()},
        )


# ---------------------------------------------------------------- worker side

_APP = None
_APP_SETTINGS: dict | None = None


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies, even by SIGKILL (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(settings_dict: dict, parent_pid: int) -> None:
    """Set up a worker process: signals (see the module's docstring), then the Geant4 application."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _stop_signals())  # held by the parent while it started us
    geant4_app(settings_dict)


def geant4_app(settings_dict: dict):
    """This process's Geant4 application (:class:`caloforge.fullsim.g4app.Geant4Barrel`) for ``settings_dict``, made
    at the first call; from then on the process's standard output goes to /dev/null (Geant4's banner and tables;
    errors still reach stderr). A process holds one Geant4 set-up: other settings later raise
    :class:`FullsimError`."""
    global _APP, _APP_SETTINGS
    if _APP is not None:
        if settings_dict != _APP_SETTINGS:
            raise FullsimError(f"this process runs Geant4 with {_APP_SETTINGS}, cannot switch to {settings_dict}")
        return _APP
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    from caloforge.fullsim import g4app

    g4app.g4.G4EmParameters.Instance().SetVerbose(0)
    _APP = g4app.Geant4Barrel(g4app.SimSettings(**settings_dict))
    _APP_SETTINGS = dict(settings_dict)
    return _APP


def simulate_attempts(app, gun: GunSpec, attempts: np.ndarray) -> Batch:
    """Run the given attempts through a Geant4 application and build their records."""
    kind = particle(gun.particle)
    mom0, seeds = attempt_kinematics(gun, attempts)
    charge = np.full(len(attempts), float(kind.charge))
    front = propagate_to_front(np.zeros_like(mom0), mom0, charge)
    status = np.where(front.hit, ACCEPTED, MISSED).astype(np.int8)
    run = np.flatnonzero(front.hit)
    results = app.simulate([(kind.name, mom0[i], int(seeds[i])) for i in run]) if len(run) else []

    n = len(run)
    shell_pos = np.zeros((n, 3))
    shell_mom = np.ones((n, 3))
    reached = np.zeros(n, dtype=bool)
    edep = np.zeros((n, N_THETA, N_PHI))
    for k, res in enumerate(results):
        edep[k] = res.crystal_edep_gev.reshape(N_THETA, N_PHI)
        if res.entry_position_cm is not None:
            shell_pos[k], shell_mom[k], reached[k] = res.entry_position_cm, res.entry_momentum_gev, True
    entry = propagate_to_front(shell_pos, shell_mom, charge[run])
    reached &= entry.hit

    t, p = front.theta_index[run], front.phi_index[run]
    entry_pos = np.where(reached[:, None], entry.position_cm, np.nan)
    entry_mom = np.where(reached[:, None], entry.momentum_gev, np.nan)
    cond_entry = compute_conditions(np.nan_to_num(entry_pos), np.nan_to_num(entry_mom, nan=1.0), t, p)
    events = {
        "attempt": attempts[run],
        "seed": seeds[run],
        "pdg": np.full(n, kind.pdg, dtype=np.int32),
        "maps_gev": extract_window(edep, t, p, WINDOW).astype(np.float32),
        "edep_barrel_gev": edep.sum(axis=(1, 2)),
        "theta_index": t.astype(np.int16),
        "phi_index": p.astype(np.int16),
        "conditions": compute_conditions(front.position_cm[run], front.momentum_gev[run], t, p).astype(np.float32),
        "conditions_entry": np.where(reached[:, None], cond_entry, np.nan).astype(np.float32),
        "vertex_momentum_gev": mom0[run],
        "front_position_cm": front.position_cm[run],
        "front_momentum_gev": front.momentum_gev[run],
        "entry_position_cm": entry_pos,
        "entry_momentum_gev": entry_mom,
        "reached_emc": reached,
    }
    return Batch(attempts=np.asarray(attempts), status=status, events=events)


def _run_chunk(gun: GunSpec, first: int, count: int) -> Batch:
    return simulate_attempts(_APP, gun, np.arange(first, first + count))


# ---------------------------------------------------------------- parent side


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def resolve_workers(requested: int | None) -> tuple[int, str | None]:
    """Worker processes for ``requested`` (None: all cores): at most the cores, and a note when capped.

    More processes than cores only cost memory (a Geant4 worker holds about 250 MB) and start-up time.

    Raises:
        FullsimError: ``requested`` below 1.
    """
    cores = default_workers()
    if requested is None:
        return cores, None
    if requested < 1:
        raise FullsimError(f"the number of worker processes must be at least 1, got {requested}")
    if requested > cores:
        return cores, f"note: {requested} worker processes asked for, {cores} cores to run on: using {cores}"
    return requested, None


def _stop_signals() -> set[int]:
    return {getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)}


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold the stop signals (blocked, delivered afterwards) while worker processes are started: they inherit
    the mask, so that a Ctrl-C cannot hit them before :func:`_init_worker` has them ignore SIGINT."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - non-POSIX
        yield
        return
    multiprocessing.resource_tracker.ensure_running()  # starting it would unblock SIGINT and SIGTERM
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _stop_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _kill_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Kill the worker processes now: a stopped run drops their chunks, and shutdown() would wait for them."""
    kill = getattr(pool, "kill_workers", None)  # Python >= 3.14
    if kill is not None:
        kill()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.kill()


def _result(future: cf.Future) -> Batch:
    """The future's result, waited for in short steps so that a lost stop request is raised meanwhile."""
    while True:
        try:
            return future.result(timeout=0.25)
        except cf.TimeoutError:
            raise_if_stopped()


def run_events(
    gun: GunSpec,
    settings: dict,
    n_events: int,
    *,
    start_attempt: int = 0,
    workers: int | None = None,
    chunk_size: int = 64,
) -> Iterator[Batch]:
    """Simulate until ``n_events`` events are accepted; yield batches in attempt order.

    Args:
        gun: the particle gun (validated here).
        settings: keyword arguments of :class:`caloforge.fullsim.g4app.SimSettings`.
        n_events: accepted events wanted (> 0).
        start_attempt: first attempt index (to extend an earlier run with the same seed).
        workers: worker processes (default: all cores; at most the cores and ``n_events``).
        chunk_size: attempts per task at most (fewer when few events are asked for).

    Raises:
        FullsimError: bad settings, Geant4's data sets not set up, or a worker process died (a fatal
            Geant4 error).
        caloforge.atomic.Interrupted: a stop signal (the worker processes are killed first).
    """
    gun.validate()
    check_production_cut(settings.get("production_cut_mm", PRODUCTION_CUT_MM))
    if n_events <= 0:
        raise FullsimError(f"the number of events must be positive, got {n_events}")
    workers = min(resolve_workers(workers)[0], n_events)
    chunk = max(1, min(chunk_size, -(-n_events // workers)))
    check_geant4_data()
    raise_if_stopped()
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(settings, os.getpid())
    )
    pending: list[cf.Future] = []
    next_first = start_attempt
    done = 0
    finished = False
    try:
        while done < n_events:
            with _signals_held():
                # no more attempts in flight than events still wanted (more are sent when some miss)
                while len(pending) < 2 * workers and len(pending) * chunk < n_events - done:
                    pending.append(pool.submit(_run_chunk, gun, next_first, chunk))
                    next_first += chunk
            try:
                batch = _result(pending.pop(0))
            except cf.process.BrokenProcessPool:
                raise_if_stopped()  # killed along with us
                raise FullsimError(
                    "a Geant4 worker process died (a fatal Geant4 error, see the messages above, "
                    "or the machine ran out of memory); nothing was written"
                ) from None
            batch = batch.truncate(n_events - done)
            done += len(batch)
            yield batch
        finished = True
    finally:
        if not finished:
            _kill_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
