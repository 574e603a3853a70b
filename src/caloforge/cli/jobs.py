"""The ``--cluster`` runs of ``caloforge samples``, ``fullsim`` and ``simulate``: the work cut into chunks (a range of
attempts or of events -> one file) and run on Dask (:mod:`caloforge.jobs`): a local cluster, a scheduler's address
or HTCondor / SLURM batch jobs from a YAML file (``examples/cluster/``). The serial commands stay the default."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

CLUSTER_HELP = ("Run on Dask in chunks: local (a cluster of --workers processes here), a scheduler address "
                "(tcp://host:8786) or a cluster YAML file (HTCondor / SLURM, examples/cluster/). Finished chunks "
                "are kept: the same command resumes.")
CHUNK_HELP = "With --cluster: attempts (fullsim, samples) or events (simulate) per chunk file."


@contextmanager
def dask_client(cluster: str, workers: Optional[int]) -> Iterator:
    """A Dask client for ``--cluster`` (:func:`caloforge.jobs.open_client`); its dashboard's address printed."""
    from caloforge.jobs import open_client

    with open_client(cluster, workers=workers) as client:
        typer.echo(f"dask dashboard: {client.dashboard_link}", err=True)
        yield client


def fullsim_chunked(output: Path, gun, events: int, *, cluster: str, workers: Optional[int], chunk: int, tof: bool,
                    cut_mm: float, quiet: bool) -> None:
    """``caloforge fullsim --cluster``: a manifest ``output`` over chunk files (:func:`make_sample_chunked`)."""
    from caloforge.data.production import chunk_folder, make_sample_chunked

    with dask_client(cluster, workers) as client:
        summary = make_sample_chunked(output, gun, events, client=client, chunk_attempts=chunk, tof=tof,
                                      production_cut_mm=cut_mm, progress=not quiet)
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


def _simulate_chunked(output: Path, func, args: list[tuple], ranges: list[tuple[int, int]], names: list[str], *,
                      cluster: str, workers: Optional[int], quiet: bool) -> None:
    """Run the engine's chunks ``func(output, *args[k])`` (events ``ranges[k]``) on Dask, one hits file each in
    ``<stem>_chunks/``, and write their list ``<stem>.txt`` (one path a line, relative to it: for
    ``uproot.concatenate`` or a ``TChain``)."""
    from caloforge.atomic import write_text_atomic
    from caloforge.jobs import Chunk, ChunksFailedError, run_chunks

    folder = output.with_name(f"{output.stem}_chunks")
    folder.mkdir(exist_ok=True)
    listing = output.with_suffix(".txt")
    chunks = [Chunk(f"{output.stem}_{k:06d}", folder / f"{output.stem}_{k:06d}{output.suffix}", a, stop - start)
              for k, (a, (start, stop)) in enumerate(zip(args, ranges, strict=True))]
    with dask_client(cluster, workers) as client:
        report = run_chunks(func, chunks, client=client, progress=not quiet, desc="engine")
    if report.failed:
        raise ChunksFailedError(report.failed, kept=len(report.done) + len(report.skipped), folder=folder)
    write_text_atomic(listing, "".join(f"{c.output.relative_to(listing.parent)}\n" for c in chunks))
    typer.echo(f"models      {'; '.join(names)}")
    typer.echo(f"events      {ranges[-1][1] if ranges else 0} in {len(chunks)} chunks ({len(report.skipped)} done before)")
    typer.echo(f"speed       {report.events_per_s:,.0f} events/s on the cluster")
    typer.echo(f"wrote       {listing} (the list of {folder}/*{output.suffix})")
