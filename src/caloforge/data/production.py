"""Make Geant4 sample files: run the reference simulation and write (or extend) a sample file."""

from __future__ import annotations

import json
import os
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

import caloforge
from caloforge.atomic import atomic_path, write_text_atomic
from caloforge.detector.conditions import particle as particle_kind
from caloforge.detector.transport import propagate_to_front
from caloforge.data.io import SampleFileError, open_sample_writer, read_attrs
from caloforge.detector.readout import ReadoutParams, readout_record
from caloforge.fullsim.runner import (
    ACCEPTED,
    MISSED,
    PRODUCTION_CUT_MM,
    FullsimError,
    GunSpec,
    attempt_kinematics,
    check_geant4_data,
    check_production_cut,
    geant4_app,
    resolve_workers,
    run_events,
    simulate_attempts,
)
from caloforge.jobs import Chunk, ChunksFailedError, run_chunks

STATUS_NAMES = {ACCEPTED: "accepted", MISSED: "missed_barrel"}

DEFAULT_CACHE = Path(os.environ.get("CALOFORGE_CACHE", Path.home() / ".cache" / "caloforge"))
"""Where large samples live (outside the repository); ``$CALOFORGE_CACHE`` overrides it."""


@dataclass(frozen=True)
class ProductionSummary:
    """What a production run did."""

    path: Path
    n_new: int
    n_total: int
    n_attempts: int
    seconds: float

    @property
    def ms_per_event(self) -> float:
        return 1000.0 * self.seconds / max(self.n_new, 1)


def _geant4_provenance() -> dict:
    """Geant4 version and data sets, read without starting Geant4 (import only)."""
    from caloforge.fullsim.g4app import PHYSICS_LIST, TRACK_LIMIT, geant4_datasets, geant4_version

    datasets = geant4_datasets()
    reduced = any("surrogate" in v or v.rstrip("/").endswith("empty") for v in datasets.values())
    return {
        "geant4_version": geant4_version(),
        "geant4_datasets": {k: Path(v).name for k, v in datasets.items()},
        "geant4_data_paths": datasets,
        "geant4_data_note": (
            "reduced offline EM data set (shared/geant4-data: Seltzer-Berger tables, xraylib-based "
            "photoelectric and Rayleigh cross sections)"
            if reduced
            else "official Geant4 data sets"
        ),
        "physics_list": PHYSICS_LIST,
        "track_limit": TRACK_LIMIT,
    }


def _run_key(gun: GunSpec, settings: dict, provenance: dict, readout: ReadoutParams | None = None) -> dict:
    """What must agree between the parts of one sample (a file and its extension, the chunks of a run): the gun,
    Geant4's settings and version, and the read-out where one is recorded."""
    key = {"gun": gun.describe(), "settings": settings,
           **{k: provenance[k] for k in ("geant4_version", "geant4_datasets", "physics_list")}}
    return key if readout is None else {**key, "readout": readout_record(readout)}


def _sample_attrs(gun: GunSpec, settings: dict, provenance: dict, limit_from: int, next_attempt: int,
                  counts: dict, readout: ReadoutParams | None = None) -> dict:
    """The provenance attributes of a sample file (:func:`caloforge.data.io.read_attrs` reads them back)."""
    return dict(
        caloforge_version=caloforge.__version__,
        **_run_key(gun, settings, provenance, readout),
        geant4_data_paths=provenance["geant4_data_paths"],
        geant4_data_note=provenance["geant4_data_note"],
        particle=gun.particle,
        production_cut_mm=settings["production_cut_mm"],
        tof=settings["tof"],
        b_field_t=settings["b_field_t"],
        master_seed=gun.seed,
        track_limit=provenance["track_limit"],
        track_limit_from_attempt=limit_from,
        next_attempt=next_attempt,
        attempt_counts=counts,
    )


def make_sample(
    output: str | os.PathLike,
    gun: GunSpec,
    n_events: int,
    *,
    tof: bool = True,
    production_cut_mm: float = PRODUCTION_CUT_MM,
    append: bool = False,
    workers: int | None = None,
    progress: bool = True,
    readout: ReadoutParams | None = None,
) -> ProductionSummary:
    """Simulate ``n_events`` accepted events with Geant4 and write them to ``output``; with ``readout``, their
    read-out maps beside the deposits (:mod:`caloforge.data.io`: ``showers_readout``).

    With ``append=True`` the file is extended: the run continues from the file's next attempt with
    the file's own gun and settings (those given here must match), so that a file made in two goes
    is identical to one made in one go.

    Raises:
        FullsimError: invalid gun settings, production cut or worker count, Geant4's data sets not set up,
            or a crashed Geant4 worker.
        SampleFileError: output exists (without append), is corrupt, or was made with other settings.
        caloforge.atomic.Interrupted: a stop signal; the file is left as it was.
    """
    gun.validate()
    if n_events <= 0:
        raise FullsimError(f"the number of events must be positive, got {n_events}")
    check_production_cut(production_cut_mm)
    resolve_workers(workers)
    check_geant4_data()  # before the first import of Geant4, which would ask on the terminal
    settings = {"tof": tof, "production_cut_mm": production_cut_mm, "b_field_t": 1.0}
    provenance = _geant4_provenance()
    run_key = _run_key(gun, settings, provenance, readout)
    start_attempt = 0
    counts = {name: 0 for name in STATUS_NAMES.values()}
    limit_from = 0  # first attempt simulated with the looper track-length limit
    if append:
        old = read_attrs(output)
        keys = [*run_key, *(["readout"] if "readout" not in run_key else [])]
        old_key = {k: old.get(k) for k in keys}
        if old_key != {k: run_key.get(k) for k in keys}:
            diff = [k for k in keys if old_key[k] != run_key.get(k)]
            raise SampleFileError(f"{output}: made with other {', '.join(diff)}; cannot append to it")
        if "manifest" in old:
            raise SampleFileError(f"{output}: a manifest of chunk files; extend it with the --cluster run that made it")
        start_attempt = int(old["next_attempt"])
        counts = dict(old["attempt_counts"])
        # files begun before the limit existed (first production, 2026-11-22) carry it from here on
        limit_from = int(old.get("track_limit_from_attempt", start_attempt))

    t0 = time.perf_counter()
    n_new = 0
    attempts = 0
    with open_sample_writer(output, append=append, readout=readout) as writer:
        n_before = writer.n_events
        next_attempt = start_attempt
        # on an exception the workers are killed, then the bar closed, then the partial file removed
        with (
            tqdm(total=n_events, unit="evt", disable=not progress, desc=f"Geant4 {gun.particle}") as bar,
            closing(run_events(gun, settings, n_events, start_attempt=start_attempt, workers=workers)) as batches,
        ):
            for batch in batches:
                writer.append(batch.events)
                for code, name in STATUS_NAMES.items():
                    counts[name] += int((batch.status == code).sum())
                next_attempt = int(batch.attempts[-1]) + 1
                attempts += len(batch.attempts)
                n_new += len(batch)
                bar.update(len(batch))
        writer.set_attrs(**_sample_attrs(gun, settings, provenance, limit_from, next_attempt, counts, readout))
        n_total = writer.n_events
    assert n_total == n_before + n_new
    return ProductionSummary(Path(output), n_new, n_total, attempts, time.perf_counter() - t0)


REFERENCE_SAMPLES = {
    # name: (events per particle, master seed offset)
    "train": (200_000, 1),
    "test": (20_000, 1001),
    "floor": (10_000, 2001),  # an independent Geant4 sample: the Geant4-vs-Geant4 floor of the validation
}
SEED_BY_PARTICLE = {"e-": 0, "e+": 100, "gamma": 200}


def make_reference_samples(
    out_dir: str | os.PathLike = DEFAULT_CACHE / "samples",
    *,
    n_train: int = REFERENCE_SAMPLES["train"][0],
    n_test: int = REFERENCE_SAMPLES["test"][0],
    n_floor: int = REFERENCE_SAMPLES["floor"][0],
    particles: tuple[str, ...] = ("e-", "e+", "gamma"),
    step: int = 25_000,
    workers: int | None = None,
    progress: bool = True,
) -> list[ProductionSummary]:
    """Make (or complete) ``{train,test,floor}_{particle}.h5`` with the default gun (0-3 GeV/c, barrel).

    Files that already hold enough events are left alone; shorter ones are extended, so an
    interrupted production resumes where it stopped when the command is run again. Files grow by
    ``step`` events per particle in turn.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    # grow the files in rounds so that an interrupted production leaves all particles alike
    for split, n_wanted in (("test", n_test), ("train", n_train), ("floor", n_floor)):
        for target in range(step, n_wanted + step, step):
            for name in particles:
                path = out / f"{split}_{name}.h5"
                seed = REFERENCE_SAMPLES[split][1] + SEED_BY_PARTICLE[name]
                have = read_attrs(path)["n_events"] if path.exists() else 0
                goal = min(target, n_wanted)
                if have >= goal:
                    continue
                gun = GunSpec(particle=name, seed=seed)
                summaries.append(
                    make_sample(path, gun, goal - have, append=path.exists(), workers=workers, progress=progress)
                )
    return summaries


# ---------------------------------------------------------------- chunked production (caloforge.jobs)

CHUNK_BATCH = 64
"""Attempts simulated at a time inside a chunk (bounds the memory of the barrel deposits, 42 kB per attempt)."""


def simulate_sample_chunk(output: str | os.PathLike, gun: GunSpec, settings: dict, first_attempt: int,
                          n_attempts: int, readout: ReadoutParams | None = None) -> int:
    """Simulate attempts ``[first_attempt, first_attempt + n_attempts)`` of the run of ``gun`` in this process and
    write their accepted events (with ``readout``, their read-out maps too) to the sample file ``output``
    (atomically); returns the events written.

    A chunk function of :func:`caloforge.jobs.run_chunks`: the events depend on the master seed and the attempt
    indices only, so a chunk gives the events of those attempts in a serial run, bit for bit."""
    app = geant4_app(settings)
    provenance = _geant4_provenance()
    counts = {name: 0 for name in STATUS_NAMES.values()}
    with open_sample_writer(output, readout=readout) as writer:
        for first in range(first_attempt, first_attempt + n_attempts, CHUNK_BATCH):
            stop = min(first + CHUNK_BATCH, first_attempt + n_attempts)
            batch = simulate_attempts(app, gun, np.arange(first, stop))
            writer.append(batch.events)
            for code, name in STATUS_NAMES.items():
                counts[name] += int((batch.status == code).sum())
        writer.set_attrs(**_sample_attrs(gun, settings, provenance, 0, first_attempt + n_attempts, counts, readout),
                         first_attempt=first_attempt)
        return writer.n_events


def chunk_folder(output: str | os.PathLike) -> Path:
    """The folder of the chunk files of ``output``: ``<stem>_chunks`` beside it."""
    output = Path(output)
    return output.with_name(f"{output.stem}_chunks")


def _acceptance(gun: GunSpec, n_attempts: int = 1000) -> float:
    """The fraction of the gun's attempts whose undisturbed track reaches a barrel crystal (from the first ones)."""
    mom, _ = attempt_kinematics(gun, np.arange(n_attempts))
    charge = np.full(n_attempts, float(particle_kind(gun.particle).charge))
    return max(float(propagate_to_front(np.zeros_like(mom), mom, charge).hit.mean()), 0.01)


@dataclass
class _ChunkedSample:
    """One sample file of a chunked production and where it stands: chunk ``c`` is attempts
    ``[c * chunk_attempts, (c + 1) * chunk_attempts)`` of the run of ``gun``, a sample file in :func:`chunk_folder`;
    chunks are planned in rounds until the finished ones hold ``n_events`` accepted events, then the manifest
    ``output`` is written.

    Attributes:
        n_chunks: the chunks planned so far (``0 .. n_chunks - 1``).
        pending: the names of the planned chunks not finished yet.
        n_new: the events of the chunks finished by this run.
        seconds: from the start of the run to the manifest (None before it is written).
    """

    output: Path
    gun: GunSpec
    n_events: int
    settings: dict
    chunk_attempts: int
    acceptance: float
    readout: ReadoutParams | None = None
    n_chunks: int = 0
    pending: set[str] = field(default_factory=set)
    n_new: int = 0
    seconds: float | None = None

    def chunk_path(self, c: int) -> Path:
        """The file of chunk ``c``."""
        return chunk_folder(self.output) / f"{self.output.stem}_{c:06d}.h5"

    def advance(self, t0: float) -> list[Chunk]:
        """The chunks to run next, once the planned ones are finished: if they hold fewer than ``n_events`` accepted
        events, as many more as the acceptance says are missing (those whose file exists from an earlier run are
        counted, not run, and planning goes on past them); else none, the manifest written (``t0``: the run's
        start, :func:`time.perf_counter`). None while chunks of the file are pending or once it is complete."""
        todo: list[Chunk] = []
        while not self.pending and self.seconds is None:
            paths = [self.chunk_path(c) for c in range(self.n_chunks)]
            have = sum(read_attrs(p)["n_events"] for p in paths)
            if have >= self.n_events:
                write_sample_manifest(self.output, paths, self.n_events)
                self.seconds = time.perf_counter() - t0
                break
            more = max(1, int(np.ceil((self.n_events - have) / (self.chunk_attempts * self.acceptance))))
            todo = [
                Chunk(self.chunk_path(c).stem, self.chunk_path(c),
                      (self.gun, self.settings, c * self.chunk_attempts, self.chunk_attempts, self.readout),
                      int(self.chunk_attempts * self.acceptance))
                for c in range(self.n_chunks, self.n_chunks + more)
                if not self.chunk_path(c).exists()
            ]
            self.n_chunks += more
            self.pending = {chunk.name for chunk in todo}
        return todo

    def summary(self) -> ProductionSummary:
        """What this run did for the file (complete)."""
        return ProductionSummary(self.output, self.n_new, self.n_events, self.n_chunks * self.chunk_attempts,
                                 self.seconds or 0.0)


def _chunked_sample(output: Path, gun: GunSpec, n_events: int, chunk_attempts: int, tof: bool,
                    production_cut_mm: float, readout: ReadoutParams | None = None) -> _ChunkedSample:
    """Check the settings of one chunked sample file and claim its chunk folder (``run.json``: the run's gun,
    settings and chunk size; a folder of another run is refused)."""
    gun.validate()
    if n_events <= 0 or chunk_attempts <= 0:
        raise FullsimError(f"the numbers of events and of attempts per chunk must be positive, got {n_events} "
                           f"and {chunk_attempts}")
    check_production_cut(production_cut_mm)
    check_geant4_data()
    if output.exists() and "manifest" not in read_attrs(output):
        raise SampleFileError(f"{output} exists and is not a manifest of chunk files: remove it or choose another name")
    settings = {"tof": tof, "production_cut_mm": production_cut_mm, "b_field_t": 1.0}
    folder = chunk_folder(output)
    folder.mkdir(exist_ok=True)
    key = {**_run_key(gun, settings, _geant4_provenance(), readout), "chunk_attempts": chunk_attempts}
    key_file = folder / "run.json"
    if key_file.exists():
        if json.loads(key_file.read_text(encoding="utf-8")) != json.loads(json.dumps(key)):
            raise SampleFileError(f"{folder}: holds the chunks of another run (other gun, settings or chunk size); "
                                  "remove it or choose another output name")
    else:
        write_text_atomic(key_file, json.dumps(key, indent=1))
    return _ChunkedSample(output, gun, n_events, settings, chunk_attempts, _acceptance(gun), readout)


def _run_chunked_samples(samples: list[_ChunkedSample], *, client, retries: int, progress: bool, desc: str,
                         folder: Path) -> None:
    """Make the sample files ``samples`` in one :func:`caloforge.jobs.run_chunks` call: the first chunks of every
    file submitted together, a file's further chunks as soon as its own are finished and short of events, its
    manifest as soon as they are not.

    Raises:
        caloforge.jobs.runner.ChunksFailedError: chunks that failed every try, named by file and chunk (the files
            without a failed chunk are complete, their manifests written; the finished chunks are kept in ``folder``).
    """
    t0 = time.perf_counter()
    owner: dict[str, _ChunkedSample] = {}  # chunk name -> its sample file

    def claim(sample: _ChunkedSample, chunks: list[Chunk]) -> list[Chunk]:
        owner.update((chunk.name, sample) for chunk in chunks)
        return chunks

    def then(chunk: Chunk, n: int) -> list[Chunk]:
        sample = owner[chunk.name]
        sample.pending.discard(chunk.name)
        sample.n_new += n
        return claim(sample, sample.advance(t0))

    first = [chunk for sample in samples for chunk in claim(sample, sample.advance(t0))]
    report = run_chunks(simulate_sample_chunk, first, client=client, retries=retries, progress=progress, desc=desc,
                        then=then)
    if report.failed:
        kept = sum(s.chunk_path(c).exists() for s in samples for c in range(s.n_chunks))
        raise ChunksFailedError(report.failed, kept=kept, folder=folder)


def make_sample_chunked(
    output: str | os.PathLike,
    gun: GunSpec,
    n_events: int,
    *,
    client=None,
    chunk_attempts: int = 1000,
    tof: bool = True,
    production_cut_mm: float = PRODUCTION_CUT_MM,
    retries: int = 2,
    progress: bool = True,
    readout: ReadoutParams | None = None,
) -> ProductionSummary:
    """The sample of :func:`make_sample` (the same events and read-out, bit for bit) made in chunks of ``chunk_attempts``
    attempts, each a sample file in :func:`chunk_folder`, run by :func:`caloforge.jobs.run_chunks` on ``client``
    (None: here, one after the other); ``output`` becomes a manifest (:func:`write_sample_manifest`) that reads as
    one sample. Chunks finished by an earlier run of the same command are kept (a run resumes); more chunks are
    run until ``n_events`` events are accepted.

    Raises:
        FullsimError: bad settings, Geant4's data sets not set up.
        SampleFileError: ``output`` is a sample file that is not a manifest; the chunk folder holds another run.
        caloforge.jobs.runner.ChunksFailedError: chunks that failed every try (named; the others are kept).
    """
    output = Path(output)
    sample = _chunked_sample(output, gun, n_events, chunk_attempts, tof, production_cut_mm, readout)
    _run_chunked_samples([sample], client=client, retries=retries, progress=progress, desc=f"Geant4 {gun.particle}",
                         folder=chunk_folder(output))
    return sample.summary()


def write_sample_manifest(path: str | os.PathLike, sources: list[Path], n_events: int) -> Path:
    """Write ``path``: an HDF5 file whose datasets are virtual (HDF5 virtual datasets) over the first ``n_events``
    events of the sample files ``sources``, in order; it reads as one sample file (:func:`caloforge.data.io.read_sample`,
    h5py, training, validation). The sources are named relative to ``path``'s folder (HDF5 looks for them there).

    Attributes: those of the first source, with the attempt counters of the events taken and ``manifest_json`` (the
    sources, relative paths)."""
    path = Path(path)
    counts = [read_attrs(s)["n_events"] for s in sources]
    take, left = [], n_events
    for n in counts:
        take.append(min(n, left))
        left -= take[-1]
    if left > 0:
        raise SampleFileError(f"{path}: the chunk files hold {sum(counts)} events, {n_events} wanted")
    used = [(s, n, t) for s, n, t in zip(sources, counts, take) if t > 0]
    names = [os.path.relpath(s, path.parent) for s, _, _ in used]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f, h5py.File(used[0][0], "r") as first:
        datasets: list[str] = []
        first.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in datasets:
            ds = first[name]
            layout = h5py.VirtualLayout((n_events, *ds.shape[1:]), ds.dtype)
            offset = 0
            for (source, n, t), rel in zip(used, names):
                layout[offset : offset + t] = h5py.VirtualSource(rel, name, shape=(n, *ds.shape[1:]))[:t]
                offset += t
            f.create_virtual_dataset(name, layout)
            f[name].attrs.update(dict(ds.attrs))
        f.attrs.update(dict(first.attrs))
        # the attempts up to the last event taken (an attempt is accepted or missed the barrel)
        first_attempt = int(first.attrs.get("first_attempt", 0))
        last, _, t_last = used[-1]
        with h5py.File(last, "r") as f_last:
            next_attempt = int(f_last["attempt"][t_last - 1]) + 1
        f.attrs["next_attempt"] = next_attempt
        f.attrs["attempt_counts_json"] = json.dumps(
            {"accepted": n_events, "missed_barrel": next_attempt - first_attempt - n_events}
        )
        f.attrs["manifest_json"] = json.dumps(names)
        f.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for name in ("first_attempt", "updated_utc"):
            f.attrs.pop(name, None)
    return path


def make_reference_samples_chunked(
    out_dir: str | os.PathLike = DEFAULT_CACHE / "samples",
    *,
    client=None,
    n_train: int = REFERENCE_SAMPLES["train"][0],
    n_test: int = REFERENCE_SAMPLES["test"][0],
    n_floor: int = REFERENCE_SAMPLES["floor"][0],
    particles: tuple[str, ...] = ("e-", "e+", "gamma"),
    chunk_attempts: int = 1000,
    retries: int = 2,
    progress: bool = True,
) -> list[ProductionSummary]:
    """The samples of :func:`make_reference_samples` (the same events), each as :func:`make_sample_chunked` makes it:
    ``{split}_{particle}.h5`` a manifest over ``{split}_{particle}_chunks/``. The chunks of all files that are not
    complete run in one :func:`caloforge.jobs.run_chunks` call (one progress bar): submitted together, a file's
    further chunks as soon as its own are short of events, its manifest written as soon as they are not. A sample
    file that already holds enough events (a manifest or a file of the serial production) is left alone; a shorter
    file of the serial production is an error (complete it without ``--cluster``, or remove it), raised before any
    chunk runs. Returns the summaries of the files made (``seconds``: from the start of the run to the file's
    manifest).

    Raises:
        caloforge.jobs.runner.ChunksFailedError: chunks that failed every try, named by file and chunk; the other
            files are complete (their manifests written) and the finished chunks kept: the same call resumes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for split, n_wanted in (("test", n_test), ("train", n_train), ("floor", n_floor)):
        for name in particles:
            path = out / f"{split}_{name}.h5"
            if path.exists():
                attrs = read_attrs(path)
                if attrs["n_events"] >= n_wanted:
                    continue
                if "manifest" not in attrs:
                    raise SampleFileError(f"{path}: {attrs['n_events']} of {n_wanted} events, made without --cluster: "
                                          "complete it without --cluster, or remove it")
            gun = GunSpec(particle=name, seed=REFERENCE_SAMPLES[split][1] + SEED_BY_PARTICLE[name])
            samples.append(_chunked_sample(path, gun, n_wanted, chunk_attempts, tof=True,
                                           production_cut_mm=PRODUCTION_CUT_MM))
    _run_chunked_samples(samples, client=client, retries=retries, progress=progress, desc="Geant4 samples", folder=out)
    return [sample.summary() for sample in samples]
