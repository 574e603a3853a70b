"""Particles into the fast simulation: read from files or shot by a particle gun, and the engine's physics range.

A particle list is flat: one row per particle with its event number. Files:

* CSV with a header: ``event, pdg, px, py, pz`` (GeV/c) and optionally ``vx, vy, vz`` (cm);
* HDF5 with 1-D datasets of the same names (at the root or in a group given as ``file.h5:group``);
* ROOT TTree (read with uproot) with branches of the same names, flat (one entry per particle) or
  jagged (one entry per event, ``event`` then optional: the entry number is the event).
  Name the tree as ``file.root:tree`` when the file holds more than one.

Every cell is checked: a cell that is empty or not a number, an ``event`` or ``pdg`` that is not an integer
(0.2) or lies beyond 64-bit integers (1e20), columns of unequal length, an unknown PDG id, a non-finite or
zero momentum, a non-finite vertex and a damaged file are each an error (:class:`ParticleInputError`, one
line naming the file and the column, row or line). Nothing is cast silently. Known particles that the models
do not cover (muons, hadrons, neutrinos) are kept and reported by the engine as skipped.

The engine's physics range (:class:`PhysicsRange`) is where its models are valid: the particle types with a
model, the momentum range each model was trained on and the vertex region the transport assumes. A particle
outside it is an error unless the user asks to skip it (then the engine reports it with its own status).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caloforge.detector.gun import gun_momenta_gev
from caloforge.detector.transport import VERTEX_MAX_ABS_Z_CM, VERTEX_MAX_RADIUS_CM, inside_transport_region

REQUIRED = ("pdg", "px", "py", "pz")
OPTIONAL = ("event", "vx", "vy", "vz")
INTEGER_COLUMNS = ("event", "pdg")

# PDG ids the engine recognises: the models' particles and the common long-lived ones it reports as skipped
KNOWN_PDG: dict[int, str] = {
    11: "e-", -11: "e+", 22: "gamma",
    13: "mu-", -13: "mu+", 12: "nu_e", -12: "anti_nu_e", 14: "nu_mu", -14: "anti_nu_mu", 16: "nu_tau",
    -16: "anti_nu_tau", 211: "pi+", -211: "pi-", 111: "pi0", 321: "kaon+", -321: "kaon-", 130: "kaon0L",
    310: "kaon0S", 2212: "proton", -2212: "anti_proton", 2112: "neutron", -2112: "anti_neutron",
    3122: "lambda", -3122: "anti_lambda", 3222: "sigma+", 3112: "sigma-", 3312: "xi-", 3334: "omega-",
    1000010020: "deuteron",
}

MODEL_MOMENTUM_RANGE_GEV: tuple[float, float] = (0.0, 3.0)
"""Momentum range (GeV/c, ``|p|`` at the vertex) of a model whose own range is not recorded: that of the Geant4
particle gun of ``caloforge samples`` (the default of :class:`caloforge.fullsim.runner.GunSpec`; a test keeps the two
equal), on which the shipped models were trained (their ``validation.json`` records it,
:func:`caloforge.export.load_samplers` reads it)."""
OUT_OF_RANGE = ("error", "skip")
"""What the engine does with particles outside its :class:`PhysicsRange`: stop with an error (the default) or skip
them (no shower; reported with a status of their own)."""

RowName = Callable[[int], str]


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


def momentum_magnitude_gev(momentum_gev: np.ndarray) -> np.ndarray:
    """``|p|`` (N,) of momenta (N, 3), GeV/c, without the overflow of squaring components near 1e308."""
    m = np.asarray(momentum_gev, dtype=np.float64)
    return np.hypot(np.hypot(m[:, 0], m[:, 1]), m[:, 2])


def _row(i: int) -> str:
    return f"particle {i}"


@dataclass(frozen=True)
class PhysicsRange:
    """Where the engine's showers are valid; particles of a type with a model are simulated only inside it.

    Attributes:
        momentum_gev: PDG id -> (min, max) ``|p|`` at the vertex in GeV/c that the model of that type was trained
            on (min < |p| <= max; a zero momentum is an input error anyway). Types without an entry have no model:
            the engine reports them as not covered, and neither limit applies to them.
        vertex_max_radius_cm, vertex_max_abs_z_cm: the vertex region the transport assumes
            (:func:`caloforge.detector.transport.inside_transport_region`): inside the barrel's inner radius and
            within the z range of its front faces.
    """

    momentum_gev: Mapping[int, tuple[float, float]] = field(default_factory=dict)
    vertex_max_radius_cm: float = VERTEX_MAX_RADIUS_CM
    vertex_max_abs_z_cm: float = VERTEX_MAX_ABS_Z_CM

    @classmethod
    def for_models(
        cls, pdgs: Iterable[int], recorded_gev: Mapping[int, tuple[float, float]] | None = None
    ) -> PhysicsRange:
        """The range of models of the particle types ``pdgs``: each model's recorded momentum range
        (``recorded_gev``) or else :data:`MODEL_MOMENTUM_RANGE_GEV`."""
        recorded = dict(recorded_gev or {})
        return cls({int(p): tuple(recorded.get(int(p), MODEL_MOMENTUM_RANGE_GEV)) for p in pdgs})

    def outside(self, particles: Particles) -> tuple[np.ndarray, np.ndarray]:
        """(N,) masks of the particles of a type with a model whose momentum, and whose vertex, lie outside."""
        n = len(particles)
        momentum, vertex, covered = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        p = momentum_magnitude_gev(particles.momentum_gev)
        for pdg, (lo, hi) in self.momentum_gev.items():
            sel = particles.pdg == pdg
            covered |= sel
            momentum |= sel & ((p < lo) | (p > hi))
        vertex = covered & ~inside_transport_region(
            particles.vertex_cm, max_radius_cm=self.vertex_max_radius_cm, max_abs_z_cm=self.vertex_max_abs_z_cm
        )
        return momentum, vertex

    def describe(self) -> str:
        """One line: the momentum range of each type and the vertex region."""
        ranges = ", ".join(
            f"{KNOWN_PDG.get(p, p)} {lo:g}-{hi:g} GeV/c" for p, (lo, hi) in sorted(self.momentum_gev.items())
        )
        return (f"momentum {ranges or 'none'}; vertex r < {self.vertex_max_radius_cm:g} cm, "
                f"|z| < {self.vertex_max_abs_z_cm:g} cm")

    def check(self, particles: Particles, *, source: str = "input", row_name: RowName = _row) -> None:
        """Raise :class:`ParticleInputError` (one line: how many, the first one, the range) if any particle of a
        type with a model lies outside the range."""
        momentum, vertex = self.outside(particles)
        bad = momentum | vertex
        if not bad.any():
            return
        i = int(np.flatnonzero(bad)[0])
        p = float(momentum_magnitude_gev(particles.momentum_gev[i : i + 1])[0])
        v = particles.vertex_cm[i]
        raise ParticleInputError(
            f"{source}: {int(bad.sum())} of {len(particles)} particles outside the engine's physics range "
            f"({int(momentum.sum())} momentum, {int(vertex.sum())} vertex); first: {row_name(i)} (event "
            f"{int(particles.event[i])}, {KNOWN_PDG.get(int(particles.pdg[i]), int(particles.pdg[i]))}, |p| {p:.6g} "
            f"GeV/c, vertex ({v[0]:.6g}, {v[1]:.6g}, {v[2]:.6g}) cm); range: {self.describe()}; "
            f"to skip such particles instead: --out-of-range skip"
        )


def make_particles(
    pdg: np.ndarray,
    momentum_gev: np.ndarray,
    *,
    event: np.ndarray | None = None,
    vertex_cm: np.ndarray | None = None,
    source: str = "input",
    row_name: RowName = _row,
) -> Particles:
    """Check and assemble a particle list (one particle per event when ``event`` is None).

    ``row_name(i)`` names particle ``i`` in error messages (a file's line or entry)."""
    pdg = np.asarray(pdg)
    mom = np.asarray(momentum_gev, dtype=np.float64).reshape(-1, 3)
    n = len(mom)
    if n == 0:
        raise ParticleInputError(f"{source}: no particles")
    if pdg.shape != (n,):
        raise ParticleInputError(f"{source}: {pdg.size} pdg ids for {n} momenta")
    pdg = _integers(pdg, "pdg", source, row_name)
    unknown = sorted({int(p) for p in np.unique(pdg)} - set(KNOWN_PDG))
    if unknown:
        first = int(np.flatnonzero(~np.isin(pdg, list(KNOWN_PDG)))[0])
        raise ParticleInputError(f"{source}: unknown PDG id(s) {unknown[:5]} (first: {row_name(first)})")
    bad = ~np.all(np.isfinite(mom), axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParticleInputError(f"{source}: {row_name(i)} has a NaN or infinite momentum {mom[i].tolist()}")
    zero = momentum_magnitude_gev(mom) <= 0
    if zero.any():
        raise ParticleInputError(f"{source}: {row_name(int(np.flatnonzero(zero)[0]))} has zero momentum")
    vtx = np.zeros((n, 3)) if vertex_cm is None else np.asarray(vertex_cm, dtype=np.float64)
    if vtx.shape != (n, 3):
        raise ParticleInputError(f"{source}: {vtx.size // 3} vertices for {n} particles")
    bad = ~np.all(np.isfinite(vtx), axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParticleInputError(f"{source}: {row_name(i)} has a NaN or infinite vertex {vtx[i].tolist()}")
    if event is None:
        ev = np.arange(n)
    else:
        ev = np.asarray(event)
        if ev.shape != (n,):
            raise ParticleInputError(f"{source}: {ev.size} event numbers for {n} particles")
        ev = _integers(ev, "event", source, row_name)
    return Particles(event=ev, pdg=pdg, momentum_gev=mom, vertex_cm=vtx)


def _text(values: np.ndarray) -> np.ndarray:
    """Text cells (str, bytes or objects) without surrounding blanks."""
    if values.dtype.kind == "O":
        values = np.array([v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in values], dtype=str)
    return np.char.strip(values)


def _first_failure(text: np.ndarray, dtype: type) -> int:
    """Index of the first text cell that does not convert to ``dtype`` (a slow loop, for the error message only)."""
    for i, v in enumerate(text):
        try:
            np.asarray(v).astype(dtype)
        except (ValueError, TypeError, OverflowError):
            return i
    return 0


def _floats(values: np.ndarray, name: str, source: str, row_name: RowName) -> np.ndarray:
    """A column as float64: numbers as they are, text cells converted; an empty or non-numeric cell is an error."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64, copy=False)
    if values.dtype.kind not in "USO":
        raise ParticleInputError(f"{source}: column {name} holds {values.dtype} values, not numbers")
    text = _text(values)
    try:
        return text.astype(np.float64)
    except (ValueError, TypeError, OverflowError):
        i = _first_failure(text, np.float64)
        cell = text[i].decode(errors="replace") if isinstance(text[i], bytes) else str(text[i])
        what = "an empty cell" if not cell else f"{cell[:40]!r} is not a number"
        raise ParticleInputError(f"{source}: column {name}, {row_name(i)}: {what}") from None


_INT64_LIMIT = 2.0**63


def _integers(values: np.ndarray, name: str, source: str, row_name: RowName) -> np.ndarray:
    """A column of whole numbers as int64: integers as they are, and numbers or text that hold an integer exactly
    (``3``, ``3.0``); a fraction, a value beyond int64, a NaN or an empty cell is an error."""
    if values.dtype.kind == "i":
        return values.astype(np.int64, copy=False)
    if values.dtype.kind == "u":
        big = values > np.iinfo(np.int64).max
        if big.any():
            i = int(np.flatnonzero(big)[0])
            raise ParticleInputError(f"{source}: column {name}, {row_name(i)}: {values[i]} is beyond 64-bit integers")
        return values.astype(np.int64)
    if values.dtype.kind in "USO":
        text = _text(values)
        try:
            return text.astype(np.int64)
        except (ValueError, TypeError, OverflowError):
            values = _floats(text, name, source, row_name)  # "3.0", "1e20", "abc": decided below
    elif values.dtype.kind != "f":
        raise ParticleInputError(f"{source}: column {name} holds {values.dtype} values, not integers")
    f = values.astype(np.float64, copy=False)
    bad = ~np.isfinite(f) | (np.abs(f) >= _INT64_LIMIT)
    bad[~bad] = f[~bad] != np.round(f[~bad])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        why = "beyond 64-bit integers" if np.isfinite(f[i]) and abs(f[i]) >= _INT64_LIMIT else "not an integer"
        raise ParticleInputError(f"{source}: column {name}, {row_name(i)}: {float(f[i])!r} is {why}")
    return f.astype(np.int64)


def _from_columns(columns: dict[str, np.ndarray], source: str, row_name: RowName = _row) -> Particles:
    """Check the columns a reader found (names in lower case) and make the particle list."""
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ParticleInputError(f"{source}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")
    used = {c: np.asarray(columns[c]) for c in (*REQUIRED, *OPTIONAL) if c in columns}
    for name, values in used.items():
        if values.ndim != 1:
            raise ParticleInputError(f"{source}: column {name} has shape {values.shape}, need one value per particle")
    lengths = {name: len(v) for name, v in used.items()}
    if len(set(lengths.values())) > 1:
        raise ParticleInputError(
            f"{source}: columns of unequal length ({', '.join(f'{k} {n}' for k, n in lengths.items())})"
        )
    ints = {c: _integers(used[c], c, source, row_name) for c in INTEGER_COLUMNS if c in used}
    floats = {c: _floats(v, c, source, row_name) for c, v in used.items() if c not in INTEGER_COLUMNS}
    vertex = None
    if any(c in floats for c in ("vx", "vy", "vz")):
        if not all(c in floats for c in ("vx", "vy", "vz")):
            raise ParticleInputError(f"{source}: give all of vx, vy, vz or none")
        vertex = np.stack([floats["vx"], floats["vy"], floats["vz"]], axis=1)
    return make_particles(
        ints["pdg"],
        np.stack([floats["px"], floats["py"], floats["pz"]], axis=1),
        event=ints.get("event"),
        vertex_cm=vertex,
        source=source,
        row_name=row_name,
    )


def split_object(path: str) -> tuple[Path, str | None]:
    """``file.root:tree`` -> (file, tree)."""
    text = str(path)
    head, sep, tail = text.rpartition(":")
    if sep and Path(head).suffix.lower() in (".root", ".h5", ".hdf5") and "/" not in tail:
        return Path(head), tail
    return Path(text), None


def _one_line(err: BaseException) -> str:
    """An exception as ``Type: its message`` on one line (at most 200 characters of the message)."""
    kind = err.__class__.__name__
    if kind.islower():  # zlib.error and the like
        kind = f"{err.__class__.__module__}.{kind}"
    text = " ".join(str(err).split())
    return f"{kind}: {text[:200]}" if text else kind


CSV_BLOCK_ROWS = 65536
"""Rows of a CSV file held as text at a time: each block is converted to numbers before the next is read."""


def _read_csv(path: Path) -> tuple[dict[str, np.ndarray], RowName]:
    """Columns of a CSV file (header names in lower case) as text, and the line of each row. Blank lines and
    lines starting with ``#`` are skipped."""
    header: list[str] | None = None
    blocks: list[list[list[str]]] = []
    lines: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows: list[list[str]] = []
            for cells in reader:
                if not cells or not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
                    continue
                if header is None:
                    header = [c.strip().lower() for c in cells]
                    continue
                if len(cells) != len(header):
                    raise ParticleInputError(f"{path}: line {reader.line_num}: {len(cells)} values for the "
                                             f"{len(header)} columns of the header")
                rows.append(cells)
                lines.append(reader.line_num)
                if len(rows) == CSV_BLOCK_ROWS:
                    blocks.append(rows)
                    rows = []
            blocks.append(rows)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ParticleInputError(f"{path}: cannot read as CSV ({_one_line(err)})") from None
    if header is None:
        raise ParticleInputError(f"{path}: CSV needs a header line with {', '.join(REQUIRED)}")
    if len(set(header)) != len(header) or "" in header:
        raise ParticleInputError(f"{path}: header {','.join(header)!r}: column names must be unique and not empty")
    columns = {
        name: np.concatenate([np.array([r[j] for r in rows], dtype=str) for rows in blocks])
        for j, name in enumerate(header)
    }
    return columns, lambda i: f"line {lines[i]}"


def _read_hdf5(path: Path, group: str | None) -> tuple[dict[str, np.ndarray], RowName]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            node = f[group] if group else f
            if not isinstance(node, h5py.Group):
                raise ParticleInputError(f"{path}: {group!r} is not a group of datasets")
            columns = {}
            for k in node:
                if isinstance(node[k], h5py.Dataset) and k.lower() in (*REQUIRED, *OPTIONAL):
                    columns[k.lower()] = node[k][()]
    except ParticleInputError:
        raise
    except Exception as err:  # h5py raises OSError, KeyError, RuntimeError, ... for missing or damaged objects
        raise ParticleInputError(f"{path}: cannot read particles from HDF5 ({_one_line(err)})") from None
    return columns, lambda i: f"row {i}"


def _read_root(path: Path, tree: str | None) -> tuple[dict[str, np.ndarray], RowName]:
    import awkward as ak
    import uproot

    try:
        with uproot.open(path) as f:
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
            columns, counts = {}, None
            for name in wanted:
                a = arrays[name]
                if a.ndim == 2:  # jagged: one entry per event
                    counts = ak.to_numpy(ak.num(a))
                    a = ak.flatten(a)
                columns[name.lower()] = ak.to_numpy(a)
    except ParticleInputError:
        raise
    except Exception as err:  # uproot and awkward raise many types for damaged files and odd branches
        raise ParticleInputError(f"{path}: cannot read particles from ROOT file ({_one_line(err)})") from None
    if counts is None:
        return columns, lambda i: f"entry {i}"
    if "event" not in columns:
        columns["event"] = np.repeat(np.arange(len(counts)), counts)
    starts = np.concatenate([[0], np.cumsum(counts)])

    def row_name(i: int) -> str:
        entry = int(np.searchsorted(starts, i, side="right") - 1)
        return f"entry {entry}, particle {i - starts[entry]}"

    return columns, row_name


def read_particles(path: str | os.PathLike, *, physics_range: PhysicsRange | None = None) -> Particles:
    """Read particles from CSV, HDF5 (``file.h5[:group]``) or a ROOT TTree (``file.root[:tree]``).

    ``physics_range``: also refuse particles outside it (:meth:`PhysicsRange.check`, naming the first one's line
    or entry)."""
    file, obj = split_object(str(path))
    if not file.exists():
        raise ParticleInputError(f"{file}: no such file")
    if not file.is_file():
        raise ParticleInputError(f"{file}: not a file")
    if file.stat().st_size == 0:
        raise ParticleInputError(f"{file}: empty file")
    suffix = file.suffix.lower()
    if suffix == ".csv":
        columns, row_name = _read_csv(file)
    elif suffix in (".h5", ".hdf5"):
        columns, row_name = _read_hdf5(file, obj)
    elif suffix == ".root":
        columns, row_name = _read_root(file, obj)
    else:
        raise ParticleInputError(f"{file}: unknown format (use .csv, .h5/.hdf5 or .root)")
    particles = _from_columns(columns, str(file), row_name)
    if physics_range is not None:
        physics_range.check(particles, source=str(file), row_name=row_name)
    return particles


def particle_gun(
    pdg: int,
    n: int,
    *,
    momentum_gev: tuple[float, float] = MODEL_MOMENTUM_RANGE_GEV,
    cos_theta: tuple[float, float] = (-0.83, 0.83),
    phi_rad: tuple[float, float] = (-np.pi, np.pi),
    seed: int = 0,
) -> Particles:
    """``n`` single-particle events from the origin: momentum uniform in the range, direction uniform in
    cos(theta) and phi within the ranges."""
    if n <= 0:
        raise ParticleInputError(f"the number of particles must be positive, got {n}")
    lo, hi = momentum_gev
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi and hi > 0):
        raise ParticleInputError(f"momentum range {lo}..{hi} GeV/c: need finite 0 <= min <= max, max > 0")
    if not (np.all(np.isfinite(cos_theta)) and -1 <= cos_theta[0] <= cos_theta[1] <= 1):
        raise ParticleInputError(f"cos(theta) range {cos_theta} must lie within -1..1")
    if seed < 0:
        raise ParticleInputError(f"the seed must be >= 0, got {seed}")
    mom = gun_momenta_gev(n, momentum_gev=momentum_gev, cos_theta=cos_theta, phi_rad=phi_rad, seed=seed)
    return make_particles(np.full(n, pdg), mom, source="particle gun")


def iter_chunks(particles: Particles, size: int, *, block_events: int = 1) -> Iterator[Particles]:
    """Split a particle list into chunks of about ``size`` particles, never splitting an event, and cut only
    where the event index (the rank of the event number) is a multiple of ``block_events`` (so that a chunk
    holds whole blocks of events; the last one may be shorter).

    Particles are taken in event order (stable within an event).
    """
    if size <= 0:
        raise ValueError(f"chunk size must be positive, got {size}")
    if block_events <= 0:
        raise ValueError(f"block_events must be positive, got {block_events}")
    order = np.argsort(particles.event, kind="stable")
    event = particles.event[order]
    new_event = np.ones(len(event), dtype=bool)
    np.not_equal(event[1:], event[:-1], out=new_event[1:])
    event_index = np.cumsum(new_event) - 1  # (N,) rank of each sorted particle's event
    start = 0
    while start < len(order):
        stop = min(start + size, len(order))
        if stop < len(order):  # move the cut to the next block boundary
            boundary = (event_index[stop - 1] // block_events + 1) * block_events
            stop = int(np.searchsorted(event_index, boundary, side="left"))
        take = order[start:stop]
        yield Particles(
            particles.event[take], particles.pdg[take], particles.momentum_gev[take], particles.vertex_cm[take]
        )
        start = stop
