"""The ``--cluster`` runs of ``caloforge samples``, ``fullsim`` and ``simulate``: the work cut into chunks (a range of
attempts or of events -> one file) and run on Dask (:mod:`caloforge.jobs`): a local cluster, a scheduler's address
or HTCondor / SLURM batch jobs from a YAML file (``examples/cluster/``). The serial commands stay the default.

Also ``caloforge simulate`` of many particle files (:func:`simulate_files`): one hits file per input, one after the
other or, with ``--cluster``, one Dask task each; resumed and listed as the chunks are."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

CLUSTER_HELP = ("Run on Dask in chunks: local (a cluster of --workers processes here), a scheduler address "
                "(tcp://host:8786) or a cluster YAML file (HTCondor / SLURM, examples/cluster/). Finished chunks "
                "are kept: the same command resumes.")
CHUNK_HELP = ("With --cluster: attempts (fullsim, samples) or events (simulate of a gun or one particle file) per "
              "chunk file.")
OUTPUT_FORMATS = ("root", "h5")
"""``caloforge simulate --format``: the hits files' format when ``-o`` is a folder (.root or .h5 files)."""


@contextmanager
def dask_client(cluster: str, workers: Optional[int]) -> Iterator:
    """A Dask client for ``--cluster`` (:func:`caloforge.jobs.open_client`); its dashboard's address printed."""
    from caloforge.jobs import open_client

    with open_client(cluster, workers=workers) as client:
        typer.echo(f"dask dashboard: {client.dashboard_link}", err=True)
        yield client


def fullsim_chunked(output: Path, gun, events: int, *, cluster: str, workers: Optional[int], chunk: int, tof: bool,
                    cut_mm: float, quiet: bool, readout=None) -> None:
    """``caloforge fullsim --cluster``: a manifest ``output`` over chunk files (:func:`make_sample_chunked`)."""
    from caloforge.data.production import chunk_folder, make_sample_chunked

    with dask_client(cluster, workers) as client:
        summary = make_sample_chunked(output, gun, events, client=client, chunk_attempts=chunk, tof=tof,
                                      production_cut_mm=cut_mm, progress=not quiet, readout=readout)
    typer.echo(f"wrote {summary.n_new} events in {summary.seconds:.1f} s ({summary.n_new / max(summary.seconds, 1e-9):.1f}"
               f" events/s); {summary.path}: a manifest of {summary.n_total} events over {chunk_folder(output)}/")


def samples_chunked(out_dir: Path, *, cluster: str, workers: Optional[int], chunk: int, train: int, test: int,
                    floor: int) -> None:
    """``caloforge samples --cluster`` (:func:`make_reference_samples_chunked`)."""
    from caloforge.data.production import make_reference_samples_chunked

    with dask_client(cluster, workers) as client:
        made = make_reference_samples_chunked(out_dir, client=client, n_train=train, n_test=test, n_floor=floor,
                                              chunk_attempts=chunk)
    for s in made:
        typer.echo(f"{s.path}: +{s.n_new} events ({s.n_total} in all), {s.n_new / max(s.seconds, 1e-9):.1f} events/s")
    if not made:
        typer.echo("all samples complete")


def simulate_gun_chunked(output: Path, spec, gun, *, cluster: str, workers: Optional[int], chunk: int,
                         quiet: bool = False) -> None:
    """``caloforge simulate --gun --cluster``: the gun's events in chunks of whole event blocks (see
    :func:`_simulate_chunked`)."""
    from caloforge.engine.chunks import build_engine, event_chunk_ranges, gun_particles, simulate_gun_chunk

    engine, names = build_engine(spec)  # the models' errors before any work
    if spec.out_of_range == "error":
        engine.physics_range.check(gun_particles(gun.pdg, gun.n, 0, min(gun.n, 4096), momentum_gev=gun.momentum_gev,
                                                 cos_theta=gun.cos_theta, seed=gun.seed), source="particle gun")
    ranges = event_chunk_ranges(gun.n, chunk)
    _simulate_chunked(output, simulate_gun_chunk, [(spec, gun, a, b) for a, b in ranges], ranges, names,
                      cluster=cluster, workers=workers, quiet=quiet)


def simulate_file_chunked(output: Path, spec, particles: Path, seed: int, *, cluster: str, workers: Optional[int],
                          chunk: int, quiet: bool = False) -> None:
    """``caloforge simulate PARTICLES --cluster``: the file's events in chunks of whole event blocks (see
    :func:`_simulate_chunked`); the file is read and checked here first, then by each chunk for its events."""
    from caloforge.engine import read_particles
    from caloforge.engine.chunks import build_engine, event_chunk_ranges, simulate_file_chunk

    engine, names = build_engine(spec)  # the models' errors before any work
    parts = read_particles(particles, physics_range=engine.physics_range if spec.out_of_range == "error" else None)
    ranges = event_chunk_ranges(parts.n_events, chunk)
    _simulate_chunked(output, simulate_file_chunk, [(spec, str(particles), seed, a, b) for a, b in ranges], ranges,
                      names, cluster=cluster, workers=workers, quiet=quiet)


def simulate_files(folder: Path, spec, inputs: list[Path], seed: int, fmt: str, *, cluster: Optional[str],
                   workers: Optional[int], quiet: bool = False) -> None:
    """``caloforge simulate A.csv B.root C.h5:group ... -o FOLDER``: each input file into ``FOLDER/<its stem>.<fmt>``
    (one task each: one after the other here without ``cluster``, else on Dask) with the models' seed
    :func:`caloforge.engine.chunks.input_seed` of (``seed``, its stem), then ``FOLDER.txt``, the list of the
    outputs (see :func:`_run_engine_chunks`). An output that exists is a finished file: kept, not redone.

    Raises:
        ValueError: before any work, for a folder named ``.`` or with a hits file's suffix, an input file that does
            not exist, two inputs of the same stem (one line each); after the run, for the inputs that failed
            (:class:`caloforge.jobs.ChunksFailedError`, naming them; the other outputs kept).
    """
    from caloforge.cli.checks import check_writable
    from caloforge.engine.chunks import build_engine, input_file, input_seed, simulate_file_chunk
    from caloforge.engine.output import check_compression
    from caloforge.jobs import Chunk

    if folder.name in ("", ".", ".."):
        raise ValueError(f"-o {folder}: name the folder of the hits files (their list, NAME.txt, is written beside it)")
    if folder.suffix.lower() in (".root", ".h5", ".hdf5"):
        raise ValueError(f"-o {folder}: with several particle files -o is a folder (FOLDER/<input name>.root each); "
                         f"the format is --format root or h5")
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"--format {fmt!r}: choose root or h5")
    check_compression(spec.compression, root=fmt == "root")
    check_writable(folder, folder=True)
    by_stem: dict[str, Path] = {}
    for path in inputs:
        file = input_file(path)
        if not file.is_file():
            raise ValueError(f"{file}: no such file" if not file.exists() else f"{file}: not a file")
        if file.stem in by_stem:
            raise ValueError(f"{by_stem[file.stem]} and {path}: two inputs named {file.stem!r} would both write "
                             f"{folder / file.stem}.{fmt}; rename one")
        by_stem[file.stem] = path
    _, names = build_engine(spec)  # the models' errors before any work
    folder.mkdir(parents=True, exist_ok=True)
    chunks = [Chunk(str(path), folder / f"{stem}.{fmt}", (spec, str(path), input_seed(seed, stem)))
              for stem, path in by_stem.items()]
    _run_engine_chunks(simulate_file_chunk, chunks, folder.with_name(f"{folder.name}.txt"), folder, names,
                       cluster=cluster, workers=workers, quiet=quiet, what="files")


def _simulate_chunked(output: Path, func, args: list[tuple], ranges: list[tuple[int, int]], names: list[str], *,
                      cluster: str, workers: Optional[int], quiet: bool) -> None:
    """Run the engine's chunks ``func(output, *args[k])`` (events ``ranges[k]``) on Dask, one hits file each in
    ``<stem>_chunks/``, listed in ``<stem>.txt`` (:func:`_run_engine_chunks`)."""
    from caloforge.jobs import Chunk

    folder = output.with_name(f"{output.stem}_chunks")
    folder.mkdir(exist_ok=True)
    chunks = [Chunk(f"{output.stem}_{k:06d}", folder / f"{output.stem}_{k:06d}{output.suffix}", a, stop - start)
              for k, (a, (start, stop)) in enumerate(zip(args, ranges, strict=True))]
    _run_engine_chunks(func, chunks, output.with_suffix(".txt"), folder, names, cluster=cluster, workers=workers,
                       quiet=quiet, what="chunks")


def _run_engine_chunks(func, chunks: list, listing: Path, folder: Path, names: list[str], *, cluster: Optional[str],
                       workers: Optional[int], quiet: bool, what: str) -> None:
    """Run the engine's chunks (:func:`caloforge.jobs.run_chunks`: on Dask with ``cluster``, else here one after the
    other, untried again), name those that failed (the others kept), and write ``listing``: one output path a
    line, relative to it, for ``uproot.concatenate`` or a ``TChain``."""
    from caloforge.atomic import write_text_atomic
    from caloforge.jobs import ChunksFailedError, run_chunks

    desc = f"engine, {len(chunks)} {what}"
    per_chunk = "file" if what == "files" else None  # whole input files: their events are not counted before
    if cluster is None:
        report = run_chunks(func, chunks, retries=0, progress=not quiet, desc=desc, per_chunk=per_chunk)
    else:
        with dask_client(cluster, workers) as client:
            report = run_chunks(func, chunks, client=client, progress=not quiet, desc=desc, per_chunk=per_chunk)
    if report.failed:
        raise ChunksFailedError(report.failed, kept=len(report.done) + len(report.skipped), folder=folder)
    write_text_atomic(listing, "".join(f"{c.output.relative_to(listing.parent)}\n" for c in chunks))
    where = "on the cluster" if cluster is not None else "here"
    typer.echo(f"models      {'; '.join(names)}")
    typer.echo(f"{what:<11} {len(chunks)}: {len(report.done)} now ({report.events} events), {len(report.skipped)} "
               f"done before")
    typer.echo(f"speed       {report.events_per_s:,.0f} events/s {where}")
    typer.echo(f"wrote       {listing} (the list of {folder}/*{chunks[0].output.suffix if chunks else ''})")
