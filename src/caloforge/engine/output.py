"""Write fast-simulation results: ROOT (uproot TTree, jagged branches) or HDF5 (h5py, offsets).

ROOT: one TTree ``events`` (and the TObjStrings ``caloforge_version``, ``status_names_json``: the legend of
``particle_status`` as JSON ``{code: meaning}``, and ``units_json``: the unit of each branch with one, as JSON
``{branch: unit}``), one entry per event, with the branches ``event``; ``nhit`` and the jagged ``hit_gid``,
``hit_part``, ``hit_theta``, ``hit_phi``, ``hit_energy_gev``; ``nparticle`` and the jagged ``particle_pdg``,
``particle_px``, ``particle_py``, ``particle_pz`` (GeV/c), ``particle_vx``, ``particle_vy``, ``particle_vz`` (cm),
``particle_status`` (:data:`caloforge.engine.fastsim.STATUS_NAMES`), ``particle_theta``, ``particle_phi``,
``particle_gid`` (centre crystal, -1 if not simulated) and the six conditions ``particle_<name>``.

HDF5: datasets ``event_number`` (E,), ``hits/offsets`` (E+1,) with ``hits/{gid,part,theta,phi,energy_gev}``,
and ``particles/{event,pdg,momentum_gev,vertex_cm,status,theta,phi,gid,conditions}``; the file attributes
``status_names_json`` and ``condition_names_json`` give the legend of ``particles/status`` and the order of the
conditions (the dataset names carry the units).

:class:`HitsWriter` appends results chunk by chunk (the engine streams large inputs through it). It
pools small chunks and writes them together once ``flush_events`` events are waiting: every write
makes a new ROOT basket (or HDF5 resize) per branch, so writing 100-event chunks one by one cost more
than simulating them. The writing (mostly zlib compression, which releases the GIL) runs in one
background thread, one pool at a time and in order, while the engine simulates the next chunk: 50k
photons or electrons end to end took 2.09 s instead of 2.31 s (mean of 6 runs, alternating). An error
in that thread is raised by the next call to the writer. Everything goes to ``<path>.partial``, renamed
when the writer closes without an error. An existing output is an error.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

import caloforge
from caloforge.atomic import atomic_path, partial_path
from caloforge.detector.conditions import CONDITION_NAMES
from caloforge.detector.geometry import BARREL_GID_OFFSET, BARREL_PART, N_PHI
from caloforge.engine.fastsim import STATUS_NAMES, SimulationResult, concatenate_results

COMPRESSIONS = ("zlib", "zstd", "lz4", "none")
"""Output compression choices (:class:`HitsWriter`). ROOT: ``zlib`` (readable by every ROOT version; the
default), ``zstd`` (level 1; ROOT 6.20 or later), ``lz4`` (level 1; ROOT 6.12 or later), ``none``. HDF5:
``zlib`` (gzip level 4 with byte shuffling) or ``none``.

ROOT's zlib baskets are compressed by ISA-L (Intel's storage-acceleration library, python-isal, through
uproot's ``ZLIB.library = "isal"``) at its level 1 (:data:`ROOT_ZLIB_LEVEL`): the same deflate format, which
ROOT, uproot and Python's own zlib decompress. 50k photons of the shipped models (1.5M hits, 30 per event),
written in the calling thread, in one run (before :func:`_event_lists` took 0.05 s off each): Python's zlib at
level 1 0.61-0.72 s for 14.0 MB, ISA-L 0.17 s for 15.3 MB (libdeflate, uproot's other choice: 0.24 s, 14.6 MB;
zstd 0.16 s, 14.1 MB; lz4 0.12 s, 19.0 MB; none 0.10 s); ISA-L now 0.12-0.14 s. HDF5 with zlib: 0.52-0.56 s
for 9.9 MB (h5py's gzip filter, which ISA-L cannot serve; level 1 instead of 4: 0.41-0.46 s for 10.3 MB)."""
ROOT_ZLIB_LEVEL = 3
"""uproot's zlib level for ROOT output; with ISA-L, uproot passes ``round(level / 3)``, so this is ISA-L's level 1
(its level 0 wrote 18.3 MB instead of 15.3 MB, no faster)."""


def check_compression(compression: str, *, root: bool) -> None:
    """ValueError (one line) unless ``compression`` is one of :data:`COMPRESSIONS` that the format takes (``root``:
    a ROOT file; else HDF5, which takes zlib or none)."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r}: choose one of {', '.join(COMPRESSIONS)}")
    if not root and compression not in ("zlib", "none"):
        raise ValueError(f"compression {compression!r} is for ROOT output; HDF5 takes zlib or none")


def _root_codec(compression: str):
    """The uproot compression object of :data:`COMPRESSIONS` entry ``compression`` (None: uncompressed)."""
    import uproot

    if compression == "zlib":
        codec = uproot.ZLIB(ROOT_ZLIB_LEVEL)
        codec.library = "isal"  # this writer's codec only: uproot's class default stays Python's zlib
        return codec
    return {"zstd": uproot.ZSTD(1), "lz4": uproot.LZ4(1), "none": None}[compression]


ROOT_UNITS: dict[str, str] = {
    "hit_energy_gev": "GeV",
    **{f"particle_p{c}": "GeV/c" for c in "xyz"},
    **{f"particle_v{c}": "cm" for c in "xyz"},
    **{f"particle_{name}": unit for name, unit in zip(CONDITION_NAMES, ("GeV/c", "rad", "rad", "cm", "rad", "cm"))},
}
"""The unit of each ROOT branch that has one (the conditions' as in :mod:`caloforge.detector.conditions`), written
into the file as the TObjString ``units_json``."""


ROOT_TREE_TITLE = "caloforge fast simulation: one entry per event; units in the TObjString units_json"


class OutputExistsError(ValueError):
    """The output file exists already."""


def _hit_columns(result: SimulationResult) -> dict[str, np.ndarray]:
    return {
        "gid": result.hit_gid.astype(np.int32),
        "part": np.full(len(result.hit_theta), BARREL_PART, dtype=np.int16),
        "theta": result.hit_theta,
        "phi": result.hit_phi,
        "energy_gev": result.hit_energy_gev,
    }


def _particle_columns(result: SimulationResult) -> dict[str, np.ndarray]:
    """Per-particle columns, ordered by event like the hits."""
    p = result.particles
    order = np.argsort(np.searchsorted(result.event_number, p.event), kind="stable")
    sim = result.particle_theta >= 0
    gid = np.where(sim, BARREL_GID_OFFSET + N_PHI * result.particle_theta + result.particle_phi, -1)
    columns = {
        "event": p.event,
        "pdg": p.pdg.astype(np.int32),
        "px": p.momentum_gev[:, 0], "py": p.momentum_gev[:, 1], "pz": p.momentum_gev[:, 2],
        "vx": p.vertex_cm[:, 0], "vy": p.vertex_cm[:, 1], "vz": p.vertex_cm[:, 2],
        "status": result.particle_status.astype(np.int8),
        "theta": result.particle_theta.astype(np.int16),
        "phi": result.particle_phi.astype(np.int16),
        "gid": gid.astype(np.int32),
    }
    for k, name in enumerate(CONDITION_NAMES):
        columns[name] = result.particle_conditions[:, k]
    return {k: v[order] for k, v in columns.items()}


def _event_lists(columns: dict[str, np.ndarray], offsets: np.ndarray):
    """One list of records per event (event k: rows ``offsets[k]:offsets[k + 1]`` of ``columns``), built from its
    buffers: ``ak.zip`` of ``ak.unflatten`` per column gives the same array, in a third of the writer's time."""
    import awkward as ak

    records = ak.contents.RecordArray([ak.contents.NumpyArray(v) for v in columns.values()], list(columns))
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets.astype(np.int64, copy=False)), records))


class HitsWriter:
    """Append :class:`SimulationResult` chunks to one ROOT (``.root``) or HDF5 (``.h5``) file.

    Use as a context manager; the file appears under its name only when the block ends cleanly.

    Args:
        path: the output file.
        flush_events: write once this many events are pooled (and when the block ends).
        background: write in a background thread (False: in the calling thread).
        compression: one of :data:`COMPRESSIONS`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        flush_events: int = 10_000,
        background: bool = True,
        compression: str = "zlib",
    ) -> None:
        if flush_events <= 0:
            raise ValueError(f"flush_events must be positive, got {flush_events}")
        self.path = Path(path)
        self.flush_events = flush_events
        self._pending: list[SimulationResult] = []
        self._n_pending = 0
        suffix = self.path.suffix.lower()
        if suffix not in (".root", ".h5", ".hdf5"):
            raise ValueError(f"{self.path}: output must end in .root, .h5 or .hdf5")
        if self.path.exists():
            raise OutputExistsError(f"{self.path} exists: choose another name or remove it first")
        if not self.path.parent.exists():
            raise ValueError(f"{self.path.parent}: no such directory")
        self.root = suffix == ".root"
        check_compression(compression, root=self.root)
        self.compression = compression
        self._atomic = atomic_path(self.path)
        self.tmp = partial_path(self.path)
        self._file = None
        self._tree = None
        self.n_events = 0
        # its thread starts with the first write, so a writer that is never entered leaves nothing running
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="caloforge-writer") if background else None
        )
        self._job: Future | None = None

    def __enter__(self) -> HitsWriter:
        self.tmp = self._atomic.__enter__()
        if self.root:
            import uproot

            self._file = uproot.recreate(self.tmp, compression=_root_codec(self.compression))
            self._file["caloforge_version"] = caloforge.__version__  # a TObjString
            self._file["status_names_json"] = json.dumps({int(k): v for k, v in STATUS_NAMES.items()})
            self._file["units_json"] = json.dumps(ROOT_UNITS)
        else:
            import h5py

            self._file = h5py.File(self.tmp, "w")
            self._file.attrs["caloforge_version"] = caloforge.__version__
            self._file.attrs["status_names_json"] = json.dumps({int(k): v for k, v in STATUS_NAMES.items()})
            self._file.attrs["condition_names_json"] = json.dumps(CONDITION_NAMES)
        return self

    def append(self, result: SimulationResult) -> None:
        """Add the events of one result (written at the latest when the writer closes)."""
        if self._pending and result.n_events and result.event_number[0] <= self._pending[-1].event_number[-1]:
            self.flush()  # event numbers out of order: write what is pooled first
        self._pending.append(result)
        self._n_pending += result.n_events
        self.n_events += result.n_events
        if self._n_pending >= self.flush_events:
            self.flush()

    def flush(self) -> None:
        """Write the pooled results (in the background: hand them to the writer thread, after the pool
        before them is written)."""
        if not self._pending:
            return
        result = concatenate_results(self._pending)
        self._pending, self._n_pending = [], 0
        write = self._append_root if self.root else self._append_hdf5
        self.wait()
        if self._executor is None:
            write(result)
        else:
            self._job = self._executor.submit(write, result)

    def wait(self) -> None:
        """Wait until everything handed to the writer thread is written; raise the error it met, if any."""
        job, self._job = self._job, None
        if job is not None:
            job.result()

    def finish(self) -> None:
        """Write the pooled results and wait until all is written (the file is complete once it closes)."""
        self.flush()
        self.wait()

    def _append_root(self, result: SimulationResult) -> None:
        particles = _particle_columns(result)
        particle_counts = np.bincount(
            np.searchsorted(result.event_number, particles.pop("event")), minlength=result.n_events
        )
        particle_offsets = np.zeros(result.n_events + 1, dtype=np.int64)
        np.cumsum(particle_counts, out=particle_offsets[1:])
        data = {
            "event": result.event_number.astype(np.int64),
            "hit": _event_lists(_hit_columns(result), result.hit_offsets),
            "particle": _event_lists(particles, particle_offsets),
        }
        if self._tree is None:
            types = {k: (v.dtype if isinstance(v, np.ndarray) else v.type) for k, v in data.items()}
            self._tree = self._file.mktree("events", types, title=ROOT_TREE_TITLE)
        self._tree.extend(data)

    def _append_hdf5(self, result: SimulationResult) -> None:
        f = self._file
        particles = _particle_columns(result)
        columns = {
            "event_number": result.event_number,
            **{f"hits/{k}": v for k, v in _hit_columns(result).items()},
            "particles/event": particles["event"],
            "particles/pdg": particles["pdg"],
            "particles/momentum_gev": np.stack([particles[k] for k in ("px", "py", "pz")], axis=1),
            "particles/vertex_cm": np.stack([particles[k] for k in ("vx", "vy", "vz")], axis=1),
            **{f"particles/{k}": particles[k] for k in ("status", "theta", "phi", "gid")},
            "particles/conditions": np.stack([particles[k] for k in CONDITION_NAMES], axis=1),
        }
        if "hits/offsets" not in f:
            f.create_dataset("hits/offsets", data=np.zeros(1, dtype=np.int64), maxshape=(None,), chunks=(65536,))
            for name, data in columns.items():
                f.create_dataset(name, shape=(0, *data.shape[1:]), maxshape=(None, *data.shape[1:]),
                                 dtype=data.dtype, chunks=(65536, *data.shape[1:]), **self._h5_filters())
        offsets = f["hits/offsets"]
        base = offsets[-1]
        n_old = offsets.shape[0]
        offsets.resize(n_old + result.n_events, axis=0)
        offsets[n_old:] = base + result.hit_offsets[1:]
        for name, data in columns.items():
            ds = f[name]
            n = ds.shape[0]
            ds.resize(n + len(data), axis=0)
            ds[n:] = data

    def _h5_filters(self) -> dict:
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True} if self.compression == "zlib" else {}

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            try:
                if exc_type is None:
                    self.finish()
            finally:
                if self._executor is not None:
                    self._executor.shutdown(wait=True)  # a write still running ends before the file closes
                self._file.close()
        except BaseException as err:
            self._atomic.__exit__(type(err), err, err.__traceback__)  # removes the partial file
            raise
        self._atomic.__exit__(exc_type, exc, tb)  # renames the finished file, or removes it after an error


def write_result(result: SimulationResult, path: str | os.PathLike, *, compression: str = "zlib") -> Path:
    """Write one result to ``.root`` or ``.h5``/``.hdf5`` (by suffix), atomically; refuse to overwrite.
    ``compression``: one of :data:`COMPRESSIONS`."""
    with HitsWriter(path, compression=compression) as writer:
        writer.append(result)
    return Path(path)
