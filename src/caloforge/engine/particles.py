"""Particles into the fast simulation: read from files or shot by a particle gun.

A particle list is flat: one row per particle with its event number. Files:

* CSV with a header: ``event, pdg, px, py, pz`` (GeV/c) and optionally ``vx, vy, vz`` (cm);
* HDF5 with 1-D datasets of the same names (at the root or in a group given as ``file.h5:group``);
* ROOT TTree (read with uproot) with branches of the same names, flat (one entry per particle) or
  jagged (one entry per event, ``event`` then optional: the entry number is the event).
  Name the tree as ``file.root:tree`` when the file holds more than one.

Unknown PDG ids, non-finite or zero momenta and missing columns are errors (:class:`ParticleInputError`);
known particles that the models do not cover (muons, hadrons, neutrinos) are kept and reported by the
engine as skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caloforge.detector.gun import gun_momenta_gev

REQUIRED = ("pdg", "px", "py", "pz")
OPTIONAL = ("event", "vx", "vy", "vz")

# PDG ids the engine recognises: the models' particles and the common long-lived ones it reports as skipped
KNOWN_PDG: dict[int, str] = {
    11: "e-", -11: "e+", 22: "gamma",
    13: "mu-", -13: "mu+", 12: "nu_e", -12: "anti_nu_e", 14: "nu_mu", -14: "anti_nu_mu", 16: "nu_tau",
    -16: "anti_nu_tau", 211: "pi+", -211: "pi-", 111: "pi0", 321: "kaon+", -321: "kaon-", 130: "kaon0L",
    310: "kaon0S", 2212: "proton", -2212: "anti_proton", 2112: "neutron", -2112: "anti_neutron",
    3122: "lambda", -3122: "anti_lambda", 3222: "sigma+", 3112: "sigma-", 3312: "xi-", 3334: "omega-",
    1000010020: "deuteron",
}


class ParticleInputError(ValueError):
    """The particle input cannot be used (a clear one-line message for the user)."""


@dataclass(frozen=True)
class Particles:
    """A flat list of particles.

    Attributes:
        event: (N,) event number of each particle (particles of one event are simulated together).
        pdg: (N,) PDG id.
        momentum_gev: (N, 3) momentum at the vertex, GeV/c.
        vertex_cm: (N, 3) production point, cm.
    """

    event: np.ndarray
    pdg: np.ndarray
    momentum_gev: np.ndarray
    vertex_cm: np.ndarray

    def __len__(self) -> int:
        return len(self.pdg)

    @property
    def n_events(self) -> int:
        return int(len(np.unique(self.event)))


def make_particles(
    pdg: np.ndarray,
    momentum_gev: np.ndarray,
    *,
    event: np.ndarray | None = None,
    vertex_cm: np.ndarray | None = None,
    source: str = "input",
) -> Particles:
    """Check and assemble a particle list (one particle per event when ``event`` is None)."""
    pdg = np.asarray(pdg)
    mom = np.asarray(momentum_gev, dtype=np.float64).reshape(-1, 3)
    n = len(mom)
    if n == 0:
        raise ParticleInputError(f"{source}: no particles")
    if len(pdg) != n:
        raise ParticleInputError(f"{source}: {len(pdg)} pdg ids for {n} momenta")
    if not np.issubdtype(pdg.dtype, np.integer):
        if not np.all(np.isfinite(pdg)) or np.any(pdg != np.round(pdg)):
            raise ParticleInputError(f"{source}: pdg ids must be integers")
    pdg = pdg.astype(np.int64)
    unknown = sorted({int(p) for p in np.unique(pdg)} - set(KNOWN_PDG))
    if unknown:
        raise ParticleInputError(f"{source}: unknown PDG id(s) {unknown[:5]}")
    bad = ~np.all(np.isfinite(mom), axis=1)
    if bad.any():
        raise ParticleInputError(f"{source}: particle {int(np.flatnonzero(bad)[0])} has a NaN or infinite momentum")
    zero = np.linalg.norm(mom, axis=1) <= 0
    if zero.any():
        raise ParticleInputError(f"{source}: particle {int(np.flatnonzero(zero)[0])} has zero momentum")
    vtx = np.zeros((n, 3)) if vertex_cm is None else np.asarray(vertex_cm, dtype=np.float64).reshape(-1, 3)
    if len(vtx) != n or not np.all(np.isfinite(vtx)):
        raise ParticleInputError(f"{source}: vertices must be finite, one per particle")
    ev = np.arange(n) if event is None else np.asarray(event).astype(np.int64)
    if len(ev) != n:
        raise ParticleInputError(f"{source}: {len(ev)} event numbers for {n} particles")
    return Particles(event=ev, pdg=pdg, momentum_gev=mom, vertex_cm=vtx)


def _from_columns(columns: dict[str, np.ndarray], source: str) -> Particles:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ParticleInputError(f"{source}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")
    vertex = None
    if any(c in columns for c in ("vx", "vy", "vz")):
        if not all(c in columns for c in ("vx", "vy", "vz")):
            raise ParticleInputError(f"{source}: give all of vx, vy, vz or none")
        vertex = np.stack([columns["vx"], columns["vy"], columns["vz"]], axis=1)
    return make_particles(
        columns["pdg"],
        np.stack([columns["px"], columns["py"], columns["pz"]], axis=1),
        event=columns.get("event"),
        vertex_cm=vertex,
        source=source,
    )


def _split_object(path: str) -> tuple[Path, str | None]:
    """``file.root:tree`` -> (file, tree)."""
    text = str(path)
    head, sep, tail = text.rpartition(":")
    if sep and Path(head).suffix.lower() in (".root", ".h5", ".hdf5") and "/" not in tail:
        return Path(head), tail
    return Path(text), None


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        table = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")
    except ValueError as err:
        raise ParticleInputError(f"{path}: cannot parse CSV ({err})") from None
    if table.dtype.names is None:
        raise ParticleInputError(f"{path}: CSV needs a header line with {', '.join(REQUIRED)}")
    table = np.atleast_1d(table)
    return {name.strip().lower(): np.asarray(table[name]) for name in table.dtype.names}


def _read_hdf5(path: Path, group: str | None) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            node = f[group] if group else f
            return {k.lower(): node[k][()] for k in node if isinstance(node[k], h5py.Dataset)}
    except (OSError, KeyError) as err:
        raise ParticleInputError(f"{path}: cannot read particles from HDF5 ({err})") from None


def _read_root(path: Path, tree: str | None) -> dict[str, np.ndarray]:
    import awkward as ak
    import uproot

    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises several types for damaged files
        raise ParticleInputError(f"{path}: cannot open ROOT file ({err.__class__.__name__}: {err})") from None
    with f:
        if tree is None:
            trees = [k.split(";")[0] for k, c in f.classnames().items() if c in ("TTree", "ROOT::RNTuple")]
            if len(trees) != 1:
                raise ParticleInputError(f"{path}: name the tree as {path}:TREE (found {trees or 'none'})")
            tree = trees[0]
        if tree not in f:
            raise ParticleInputError(f"{path}: no tree {tree!r}")
        t = f[tree]
        names = {b.lower(): b for b in t.keys()}
        wanted = [names[c] for c in (*REQUIRED, *OPTIONAL) if c in names]
        arrays = t.arrays(wanted, library="ak")
    columns = {}
    counts = None
    for name in wanted:
        a = arrays[name]
        if a.ndim > 1:  # jagged: one entry per event
            counts = ak.num(a)
            a = ak.flatten(a)
        columns[name.lower()] = ak.to_numpy(a)
    if counts is not None and "event" not in columns:
        columns["event"] = np.repeat(np.arange(len(counts)), ak.to_numpy(counts))
    return columns


def read_particles(path: str | os.PathLike) -> Particles:
    """Read particles from CSV, HDF5 (``file.h5[:group]``) or a ROOT TTree (``file.root[:tree]``)."""
    file, obj = _split_object(str(path))
    if not file.exists():
        raise ParticleInputError(f"{file}: no such file")
    if file.stat().st_size == 0:
        raise ParticleInputError(f"{file}: empty file")
    suffix = file.suffix.lower()
    if suffix == ".csv":
        columns = _read_csv(file)
    elif suffix in (".h5", ".hdf5"):
        columns = _read_hdf5(file, obj)
    elif suffix == ".root":
        columns = _read_root(file, obj)
    else:
        raise ParticleInputError(f"{file}: unknown format (use .csv, .h5/.hdf5 or .root)")
    return _from_columns(columns, str(file))


def particle_gun(
    pdg: int,
    n: int,
    *,
    momentum_gev: tuple[float, float] = (0.0, 3.0),
    cos_theta: tuple[float, float] = (-0.83, 0.83),
    phi_rad: tuple[float, float] = (-np.pi, np.pi),
    seed: int = 0,
) -> Particles:
    """``n`` single-particle events from the origin: momentum uniform in the range, direction uniform in
    cos(theta) and phi within the ranges."""
    if n <= 0:
        raise ParticleInputError(f"the number of particles must be positive, got {n}")
    lo, hi = momentum_gev
    if not (0 <= lo <= hi and hi > 0):
        raise ParticleInputError(f"momentum range {lo}..{hi} GeV/c: need 0 <= min <= max, max > 0")
    if not -1 <= cos_theta[0] <= cos_theta[1] <= 1:
        raise ParticleInputError(f"cos(theta) range {cos_theta} must lie within -1..1")
    mom = gun_momenta_gev(n, momentum_gev=momentum_gev, cos_theta=cos_theta, phi_rad=phi_rad, seed=seed)
    return make_particles(np.full(n, pdg), mom, source="particle gun")


def iter_chunks(particles: Particles, size: int) -> Iterator[Particles]:
    """Split a particle list into chunks of about ``size`` particles, never splitting an event.

    Particles are taken in event order (stable within an event).
    """
    if size <= 0:
        raise ValueError(f"chunk size must be positive, got {size}")
    order = np.argsort(particles.event, kind="stable")
    event = particles.event[order]
    start = 0
    while start < len(order):
        stop = min(start + size, len(order))
        if stop < len(order):  # move the cut to the next event boundary
            stop = int(np.searchsorted(event, event[stop - 1], side="right"))
        take = order[start:stop]
        yield Particles(particles.event[take], particles.pdg[take], particles.momentum_gev[take], particles.vertex_cm[take])
        start = stop
