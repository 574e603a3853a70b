"""The caloforge sample file: HDF5 (h5py), one particle type per file.

Schema ``caloforge-sample`` version 1 (N events, all datasets gzip-compressed and chunked):

=============================  ==========  =======  ================================================
dataset                        shape       dtype    content
=============================  ==========  =======  ================================================
``showers``                    (N, 121)    float32  11x11 energies in **MeV** (CaloChallenge layout),
                                                    row-major: rows = theta_index, columns = phi_index,
                                                    centre crystal at (5, 5); crystals beyond the
                                                    barrel ends are 0
``incident_energies``          (N, 1)      float32  total energy of the incoming particle, **MeV**
``conditions``                 (N, 6)      float32  :data:`caloforge.detector.CONDITION_NAMES` of the
                                                    undisturbed track (what the fast simulation sees)
``conditions_entry``           (N, 6)      float32  the same from Geant4's truth at the EMC entry
                                                    (NaN where the primary did not get there)
``pdg``                        (N,)        int32    particle type
``theta_index``, ``phi_index`` (N,)        int16    centre crystal (BESIII part 1, theta, phi)
``gid``                        (N,)        int32    pybes3 global id of the centre crystal
``edep_barrel_gev``            (N,)        float64  energy deposited in all 5280 barrel crystals
``truth/vertex_momentum_gev``  (N, 3)      float64  gun momentum at the origin
``truth/front_position_cm``    (N, 3)      float64  undisturbed track on the crystal front face
``truth/front_momentum_gev``   (N, 3)      float64  its momentum there
``truth/entry_position_cm``    (N, 3)      float64  Geant4 primary on the front face (NaN: not reached)
``truth/entry_momentum_gev``   (N, 3)      float64  its momentum there
``truth/reached_emc``          (N,)        bool     the primary reached the EMC (False for photons
                                                    converted and electrons stopped in front of it)
``seed``                       (N,)        int64    Geant4 seed of the event
``attempt``                    (N,)        int64    attempt index (kinematics = f(master seed, attempt))
=============================  ==========  =======  ================================================

A sample made with a read-out (``caloforge fullsim --readout boss``) has one more dataset, ``showers_readout``
(N, 121) float32 **MeV**: the same maps read out (:func:`caloforge.detector.readout.digitise_events`, each event's
noise from its Geant4 ``seed``), and the root attribute ``readout_json`` (the read-out's parameters).

Root attributes hold the provenance: caloforge and Geant4 versions, the Geant4 data sets used, the
physics list, the production cut, the geometry switches, the gun (JSON), attempt counters.
The reader returns maps in GeV as (N, 11, 11) arrays.

A **manifest** (``caloforge fullsim/samples --cluster``) is a sample file whose datasets are HDF5 virtual
datasets over the chunk files of a run (relative paths, in ``<stem>_chunks/`` beside it; the attribute
``manifest_json`` lists them): h5py, the reader, training and validation read it as one sample.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from caloforge.atomic import atomic_path
from caloforge.detector.conditions import CONDITION_NAMES, PARTICLES_BY_PDG
from caloforge.detector.geometry import WINDOW, crystal_gid
from caloforge.detector.readout import ReadoutParams, digitise_events, readout_record

SCHEMA = "caloforge-sample"
SCHEMA_VERSION = 1
MEV_PER_GEV = 1000.0

_EVENT_DATASETS: dict[str, tuple[tuple[int, ...], str]] = {
    "showers": ((WINDOW * WINDOW,), "float32"),
    "incident_energies": ((1,), "float32"),
    "conditions": ((len(CONDITION_NAMES),), "float32"),
    "conditions_entry": ((len(CONDITION_NAMES),), "float32"),
    "pdg": ((), "int32"),
    "theta_index": ((), "int16"),
    "phi_index": ((), "int16"),
    "gid": ((), "int32"),
    "edep_barrel_gev": ((), "float64"),
    "truth/vertex_momentum_gev": ((3,), "float64"),
    "truth/front_position_cm": ((3,), "float64"),
    "truth/front_momentum_gev": ((3,), "float64"),
    "truth/entry_position_cm": ((3,), "float64"),
    "truth/entry_momentum_gev": ((3,), "float64"),
    "truth/reached_emc": ((), "bool"),
    "seed": ((), "int64"),
    "attempt": ((), "int64"),
}
_TRUTH = [name.split("/", 1)[1] for name in _EVENT_DATASETS if name.startswith("truth/")]
READOUT_DATASET = "showers_readout"
"""The optional dataset of the read-out maps (MeV, the layout of ``showers``)."""


class SampleFileError(ValueError):
    """The file is missing, not a caloforge sample, corrupt, or incompatible with the request."""


@dataclass
class Sample:
    """Events of a sample file in memory (GeV, cm, rad)."""

    maps_gev: np.ndarray  # (N, 11, 11)
    conditions: np.ndarray  # (N, 6) of the undisturbed track
    conditions_entry: np.ndarray  # (N, 6) of Geant4's entry truth (NaN: not reached)
    pdg: np.ndarray
    theta_index: np.ndarray
    phi_index: np.ndarray
    edep_barrel_gev: np.ndarray
    truth: dict[str, np.ndarray]
    seed: np.ndarray
    attrs: dict = field(default_factory=dict)
    maps_readout_gev: np.ndarray | None = None  # (N, 11, 11) read out; None: the file records no read-out

    def __len__(self) -> int:
        return len(self.maps_gev)

    @property
    def p_gev(self) -> np.ndarray:
        """Momentum of the incoming particle, GeV/c."""
        return self.conditions[:, 0]

    def take(self, index: np.ndarray | slice) -> Sample:
        """The events selected by ``index`` (indices, a boolean mask or a slice), same attributes."""
        return Sample(
            maps_gev=self.maps_gev[index],
            conditions=self.conditions[index],
            conditions_entry=self.conditions_entry[index],
            pdg=self.pdg[index],
            theta_index=self.theta_index[index],
            phi_index=self.phi_index[index],
            edep_barrel_gev=self.edep_barrel_gev[index],
            truth={k: v[index] for k, v in self.truth.items()},
            seed=self.seed[index],
            attrs=dict(self.attrs),
            maps_readout_gev=None if self.maps_readout_gev is None else self.maps_readout_gev[index],
        )


def _event_records(events: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map the runner's event arrays to the datasets of the file."""
    n = len(events["pdg"])
    mass = np.array([PARTICLES_BY_PDG[int(p)].mass_gev for p in events["pdg"]]) if n else np.zeros(0)
    p = np.linalg.norm(events["vertex_momentum_gev"], axis=-1)
    records = {
        "showers": (events["maps_gev"].reshape(n, WINDOW * WINDOW) * MEV_PER_GEV).astype(np.float32),
        "incident_energies": (np.hypot(p, mass) * MEV_PER_GEV).astype(np.float32)[:, None],
        "gid": crystal_gid(events["theta_index"].astype(np.int32), events["phi_index"].astype(np.int32)),
    }
    for name in _EVENT_DATASETS:
        if name not in records:
            records[name] = events[name.split("/", 1)[-1]]
    return records


# what h5py raises when the HDF5 library meets a damaged file (a corrupt chunk, header or attribute)
_DAMAGED = (OSError, KeyError, RuntimeError, TypeError, ValueError)


@contextmanager
def _reading(path: str | os.PathLike, dataset: str | None = None) -> Iterator[None]:
    """Turn an error of h5py inside the block into a :class:`SampleFileError` naming the file (and dataset).

    Only h5py calls go inside such a block, so that an error of caloforge's own code is not mistaken
    for a damaged file."""
    try:
        yield
    except SampleFileError:
        raise
    except _DAMAGED as err:
        where = f"{path}" if dataset is None else f"{path}, dataset {dataset!r}"
        detail = " ".join(str(err).split())  # one line
        raise SampleFileError(f"{where}: damaged file, cannot read it ({err.__class__.__name__}: {detail})") from err


def _read(f: h5py.File, name: str, rows: slice) -> np.ndarray:
    """Rows ``rows`` of dataset ``name``; a damaged dataset raises :class:`SampleFileError`."""
    with _reading(f.filename, name):
        return f[name][rows]


def _open_checked(path: Path, mode: str = "r") -> h5py.File:
    """Open a sample file after checking its schema, its datasets and their shapes."""
    if not path.exists():
        raise SampleFileError(f"{path}: no such file")
    if path.is_dir():
        raise SampleFileError(f"{path}: is a folder, not a sample file")
    try:
        f = h5py.File(path, mode)
    except _DAMAGED as err:
        detail = " ".join(str(err).split())
        raise SampleFileError(f"{path}: not a readable HDF5 file ({err.__class__.__name__}: {detail})") from None
    try:
        with _reading(path):
            schema, version = f.attrs.get("schema"), f.attrs.get("schema_version")
        if schema != SCHEMA:
            raise SampleFileError(f"{path}: not a caloforge sample file (no '{SCHEMA}' schema attribute)")
        if not isinstance(version, (int, np.integer)) or int(version) != SCHEMA_VERSION:
            raise SampleFileError(f"{path}: sample schema version {version}, this caloforge reads {SCHEMA_VERSION}")
        shapes = {}
        for name in _EVENT_DATASETS:
            with _reading(path, name):
                shapes[name] = f[name].shape if name in f else None
            if shapes[name] is None:
                raise SampleFileError(f"{path}: corrupt sample file (no dataset {name!r})")
        for name, (row_shape, _) in _EVENT_DATASETS.items():
            if shapes[name][1:] != row_shape:
                raise SampleFileError(
                    f"{path}: corrupt sample file (dataset {name!r} has rows of shape {shapes[name][1:]}, "
                    f"expected {row_shape})"
                )
        with _reading(path, READOUT_DATASET):
            if READOUT_DATASET in f:
                shapes[READOUT_DATASET] = f[READOUT_DATASET].shape
        if READOUT_DATASET in shapes and shapes[READOUT_DATASET][1:] != (WINDOW * WINDOW,):
            raise SampleFileError(f"{path}: corrupt sample file (dataset {READOUT_DATASET!r} has rows of shape "
                                  f"{shapes[READOUT_DATASET][1:]}, expected {(WINDOW * WINDOW,)})")
        lengths = {name: shape[0] for name, shape in shapes.items()}
        if len(set(lengths.values())) != 1:
            raise SampleFileError(f"{path}: corrupt sample file (datasets of different lengths: {lengths})")
        _check_manifest_sources(f, path)
    except BaseException:
        f.close()
        raise
    return f


def _check_manifest_sources(f: h5py.File, path: Path) -> None:
    """A manifest (its datasets HDF5 virtual datasets over chunk files, ``manifest_json`` naming them; written by
    :func:`caloforge.data.production.write_sample_manifest`) reads as one sample; a chunk file that is missing would
    read as zeros, so it is an error here, naming the file."""
    with _reading(path, "pdg"):
        sources = {s.file_name for s in f["pdg"].virtual_sources()} if f["pdg"].is_virtual else set()
    for name in sorted(sources):
        if name != "." and not (path.parent / name).is_file():
            raise SampleFileError(f"{path}: manifest of chunk files, its chunk {path.parent / name} is missing")


def read_attrs(path: str | os.PathLike) -> dict:
    """The provenance attributes of a sample file (JSON ones decoded)."""
    with _open_checked(Path(path)) as f:
        return _decode_attrs(f)


def _decode_attrs(f: h5py.File) -> dict:
    out = {}
    with _reading(f.filename):
        for key, value in f.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and key.endswith("_json"):
                key, value = key[: -len("_json")], json.loads(value)
            elif isinstance(value, np.generic):
                value = value.item()
            out[key] = value
        out["n_events"] = f["pdg"].shape[0]
    return out


def read_sample(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Sample:
    """Read events ``[start, stop)`` of a sample file; maps come back in GeV as (N, 11, 11)."""
    with _open_checked(Path(path)) as f:
        sl = slice(start, stop)
        pdg = _read(f, "pdg", sl)
        with _reading(path):
            has_readout = READOUT_DATASET in f
        readout = _read(f, READOUT_DATASET, sl) / MEV_PER_GEV if has_readout else None
        return Sample(
            maps_gev=(_read(f, "showers", sl) / MEV_PER_GEV).reshape(len(pdg), WINDOW, WINDOW),
            conditions=_read(f, "conditions", sl),
            conditions_entry=_read(f, "conditions_entry", sl),
            pdg=pdg,
            theta_index=_read(f, "theta_index", sl),
            phi_index=_read(f, "phi_index", sl),
            edep_barrel_gev=_read(f, "edep_barrel_gev", sl),
            truth={k: _read(f, f"truth/{k}", sl) for k in _TRUTH},
            seed=_read(f, "seed", sl),
            attrs=_decode_attrs(f),
            maps_readout_gev=None if readout is None else readout.reshape(len(pdg), WINDOW, WINDOW),
        )


def iter_batches(path: str | os.PathLike, batch_size: int) -> Iterator[Sample]:
    """Read a sample file in batches of ``batch_size`` events."""
    n = read_attrs(path)["n_events"]
    for start in range(0, n, batch_size):
        yield read_sample(path, start, min(start + batch_size, n))


class SampleWriter:
    """Appends event batches to a sample file that is open for writing (see :func:`open_sample_writer`); with a
    read-out, their read-out maps too (``showers_readout``)."""

    def __init__(self, f: h5py.File, readout: ReadoutParams | None = None) -> None:
        self.f = f
        self.readout = readout

    @property
    def n_events(self) -> int:
        return int(self.f["pdg"].shape[0])

    def append(self, events: dict[str, np.ndarray]) -> None:
        records = _event_records(events)
        n_new = len(records["pdg"])
        if n_new == 0:
            return
        if self.readout is not None:
            read = digitise_events(events["maps_gev"], records["theta_index"], records["phi_index"], records["seed"],
                                   self.readout)  # (N, 11, 11) GeV
            records[READOUT_DATASET] = (read.reshape(n_new, WINDOW * WINDOW) * MEV_PER_GEV).astype(np.float32)
        for name, data in records.items():
            ds = self.f[name]
            n = ds.shape[0]
            ds.resize(n + n_new, axis=0)
            ds[n:] = data

    def set_attrs(self, **attrs) -> None:
        """Set root attributes; dicts and lists are stored as JSON under ``<name>_json``."""
        for key, value in attrs.items():
            if isinstance(value, (dict, list, tuple)) or value is None:
                self.f.attrs[f"{key}_json"] = json.dumps(value)
            else:
                self.f.attrs[key] = value

    def attrs(self) -> dict:
        return _decode_attrs(self.f)


def _create_layout(f: h5py.File, readout: ReadoutParams | None = None) -> None:
    datasets = dict(_EVENT_DATASETS)
    if readout is not None:
        datasets[READOUT_DATASET] = datasets["showers"]
    for name, (shape, dtype) in datasets.items():
        chunk_rows = max(1, 65536 // max(1, int(np.prod(shape or (1,)))))
        f.create_dataset(
            name,
            shape=(0, *shape),
            maxshape=(None, *shape),
            dtype=dtype,
            chunks=(chunk_rows, *shape),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
    f["showers"].attrs["units"] = "MeV"
    f["showers"].attrs["layout"] = "11x11 row-major, rows theta_index, columns phi_index, centre (5, 5)"
    if readout is not None:
        f[READOUT_DATASET].attrs.update(f["showers"].attrs)
        f.attrs["readout_json"] = json.dumps(readout_record(readout))
    f["incident_energies"].attrs["units"] = "MeV"
    f["conditions"].attrs["names"] = json.dumps(CONDITION_NAMES)
    f.attrs["schema"] = SCHEMA
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def open_sample_writer(
    path: str | os.PathLike, *, append: bool = False, readout: ReadoutParams | None = None
) -> Iterator[SampleWriter]:
    """Write a sample file atomically; with ``readout``, the read-out maps beside the deposits
    (``showers_readout``).

    Everything goes to ``<path>.partial`` (a copy of the existing file when appending), which replaces
    ``path`` only when the block finishes without an exception; otherwise it is removed and ``path``
    is left as it was.

    Raises:
        SampleFileError: ``path`` exists and ``append`` is False; ``append`` on a missing or invalid file, or on a
            file whose read-out (or its absence) differs from ``readout``.
    """
    path = Path(path)
    if path.exists() and not append:
        raise SampleFileError(
            f"{path} exists: remove it or choose another name (caloforge fullsim --append extends a sample file)"
        )
    if append and not path.exists():
        raise SampleFileError(f"{path}: cannot append, no such file")
    if path.parent and not path.parent.exists():
        raise SampleFileError(f"{path.parent}: no such directory")
    if append:
        recorded = read_attrs(path).get("readout")
        if recorded != (None if readout is None else readout_record(readout)):
            have = "no read-out" if recorded is None else "a read-out"
            raise SampleFileError(f"{path}: recorded with {have}; append with the same (caloforge fullsim --readout)")
    with atomic_path(path) as tmp:
        if append:
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a" if append else "w") as f:
            if not append:
                _create_layout(f, readout)
            yield SampleWriter(f, readout)
            f.attrs["updated_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
