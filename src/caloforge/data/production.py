"""Make Geant4 sample files: run the reference simulation and write (or extend) a sample file."""

from __future__ import annotations

import os
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

import caloforge
from caloforge.data.io import SampleFileError, open_sample_writer, read_attrs
from caloforge.fullsim.runner import (
    ACCEPTED,
    MISSED,
    FullsimError,
    GunSpec,
    check_geant4_data,
    check_production_cut,
    resolve_workers,
    run_events,
)

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


def make_sample(
    output: str | os.PathLike,
    gun: GunSpec,
    n_events: int,
    *,
    tof: bool = True,
    production_cut_mm: float = 0.7,
    append: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> ProductionSummary:
    """Simulate ``n_events`` accepted events with Geant4 and write them to ``output``.

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
    run_key = {"gun": gun.describe(), "settings": settings, **{k: provenance[k] for k in ("geant4_version", "geant4_datasets", "physics_list")}}
    start_attempt = 0
    counts = {name: 0 for name in STATUS_NAMES.values()}
    limit_from = 0  # first attempt simulated with the looper track-length limit
    if append:
        old = read_attrs(output)
        old_key = {k: old.get(k) for k in run_key}
        if old_key != run_key:
            diff = [k for k in run_key if old_key[k] != run_key[k]]
            raise SampleFileError(f"{output}: made with other {', '.join(diff)}; cannot append to it")
        start_attempt = int(old["next_attempt"])
        counts = dict(old["attempt_counts"])
        # files begun before the limit existed (first production, 2026-11-22) carry it from here on
        limit_from = int(old.get("track_limit_from_attempt", start_attempt))

    t0 = time.perf_counter()
    n_new = 0
    attempts = 0
    with open_sample_writer(output, append=append) as writer:
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
        writer.set_attrs(
            caloforge_version=caloforge.__version__,
            **run_key,
            geant4_data_paths=provenance["geant4_data_paths"],
            geant4_data_note=provenance["geant4_data_note"],
            particle=gun.particle,
            production_cut_mm=production_cut_mm,
            tof=tof,
            b_field_t=1.0,
            master_seed=gun.seed,
            track_limit=provenance["track_limit"],
            track_limit_from_attempt=limit_from,
            next_attempt=next_attempt,
            attempt_counts=counts,
        )
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
