"""The ``caloforge`` command.

User mistakes (bad options, missing or corrupt files, an output that exists) end with one
``error: ...`` line on stderr and exit code 2, and leave no partial output behind.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from caloforge.cli import jobs
from caloforge.cli.checks import check_writable
from caloforge.cli.ship import ship as ship_command


class _Program(typer.Typer):
    """The typer application. Run as the program (``app()``, the ``caloforge`` script), SIGINT, SIGTERM and SIGHUP
    stop it alike (see :mod:`caloforge.atomic`): the work stops, unfinished files are removed, one line says so,
    and the exit status is 128 + the signal's number. ``CliRunner`` and ``standalone_mode=False`` leave the
    caller's signal handlers alone."""

    def __call__(self, *args, **kwargs):
        if kwargs.get("standalone_mode", True) is False:
            return super().__call__(*args, **kwargs)
        from caloforge.atomic import install_signal_handlers, stop_signal

        install_signal_handlers()
        try:
            code = super().__call__(*args, **kwargs)
        except SystemExit as exit_:
            code = exit_.code
            stop = getattr(exit_.__context__, "__cause__", None)
            if isinstance(stop, KeyboardInterrupt):  # typer turns one outside a command into a silent exit 130
                typer.echo(f"{_stop_words(getattr(stop, 'signum', signal.SIGINT))}: nothing was written", err=True)
        except KeyboardInterrupt as err:  # one outside typer's handling (reading the command line, at the end)
            typer.echo(f"{_stop_words(getattr(err, 'signum', signal.SIGINT))}: nothing was written", err=True)
            code = 130
        except Exception:  # a library that turned the stop into its own error (geant4_pybind: ImportError)
            if stop_signal() is None:
                raise
            typer.echo(f"{_stop_words(stop_signal())}: nothing was written", err=True)
            code = 130
        signum = stop_signal()
        if signum is not None:
            if code in (0, None):
                typer.echo(f"{signal.Signals(signum).name} as the command finished: its output is complete", err=True)
            code = 128 + signum
        sys.exit(code)


app = _Program(
    name="caloforge",
    help="Fast BESIII EMC barrel simulation with generative models, and its Geant4 reference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# errors of the operating system about a file that the user can fix (a missing, protected or full place)
_USER_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                          errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG})


def _user_errors(func):
    """Turn the errors a user can fix into one clear line and exit code 2.

    Those are caloforge's own input errors (ValueError and its subclasses: a bad option, a missing, damaged or
    foreign file, an output that exists or cannot be written; the readers name the file) and the operating
    system's errors about a file (:data:`_USER_ERRNOS`). Anything else is a bug and shows its traceback, as
    do all errors when the environment variable ``CALOFORGE_TRACEBACK`` is set.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from caloforge.data.io import SampleFileError
        from caloforge.fullsim.runner import FullsimError

        try:
            return func(*args, **kwargs)
        except (FullsimError, SampleFileError, ValueError, OSError) as err:  # config/checkpoint errors: ValueErrors
            if os.environ.get("CALOFORGE_TRACEBACK") or (isinstance(err, OSError) and err.errno not in _USER_ERRNOS):
                raise
            message = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename else str(err)
            typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as err:  # SIGINT, or SIGTERM / SIGHUP when run as the program (_Program)
            signum = getattr(err, "signum", signal.SIGINT)
            typer.echo(f"{_stop_words(signum)}: nothing was written", err=True)
            raise typer.Exit(128 + signum) from None

    return wrapper


def _stop_words(signum: int) -> str:
    """``interrupted`` for Ctrl-C (SIGINT), ``stopped by SIGTERM`` for the other stop signals."""
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def _echo_worker_note(workers: Optional[int]) -> None:
    """Check ``--workers`` (>= 1) and say when it is capped at the cores, before any work."""
    from caloforge.fullsim.runner import resolve_workers

    note = resolve_workers(workers)[1]
    if note:
        typer.echo(note, err=True)


def parse_momentum(text: str) -> tuple[float, float]:
    """``"1.5"`` -> (1.5, 1.5); ``"0:3"`` -> (0.0, 3.0) (GeV/c); the numbers must be finite."""

    try:
        parts = [float(x) for x in text.split(":")]
    except ValueError:
        raise ValueError(f"momentum {text!r}: expected a number or MIN:MAX in GeV/c") from None
    if len(parts) not in (1, 2):
        raise ValueError(f"momentum {text!r}: expected a number or MIN:MAX in GeV/c")
    if not all(math.isfinite(x) for x in parts):
        raise ValueError(f"momentum {text!r}: the numbers must be finite")
    return parts[0], parts[-1]


def parse_track(text: str) -> tuple[float, float, float]:
    """``"0.32,0.73,0.01"`` -> (px, py, pz) in GeV/c."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ValueError(f"track {text!r}: expected PX,PY,PZ in GeV/c")
    return parts  # type: ignore[return-value]


def parse_widths(text: str, option: str, example: str) -> tuple[int, ...]:
    """``"8,8,8"`` -> (8, 8, 8): layer widths given on the command line as ``option``."""
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{option} {text!r}: give integers separated by commas, e.g. {example}") from None


@app.command()
@_user_errors
def fullsim(
    output: Annotated[Path, typer.Argument(help="HDF5 sample file to write (or extend with --append).")],
    particle: Annotated[str, typer.Option("--particle", "-p", help="e-, e+ or gamma.")] = "gamma",
    events: Annotated[int, typer.Option("--events", "-n", help="Events to add (each reaches the barrel).")] = 1000,
    momentum: Annotated[str, typer.Option(help="GeV/c: MIN:MAX (uniform) or a fixed value.")] = "0:3",
    track: Annotated[
        Optional[str], typer.Option(help="Fixed track PX,PY,PZ in GeV/c from the origin (repeated-track studies).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Master seed: the same seed gives the same events.")] = 1,
    workers: Annotated[
        Optional[int], typer.Option(help="Worker processes (default and at most: all cores; at most one per event).")
    ] = None,
    append: Annotated[bool, typer.Option(help="Extend an existing file, continuing its run.")] = False,
    tof: Annotated[bool, typer.Option(help="Put the TOF plastic in front of the EMC.")] = True,
    cut_mm: Annotated[float, typer.Option(help="Geant4 production cut in mm (0 < cut <= 1000).")] = 0.7,
    readout: Annotated[
        str, typer.Option(help="none, or boss: record the maps as BOSS reads them out (dataset showers_readout) "
                               "beside the deposits (docs/readout.md).")
    ] = "none",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    cluster: Annotated[Optional[str], typer.Option(help=jobs.CLUSTER_HELP)] = None,
    chunk_events: Annotated[int, typer.Option(help=jobs.CHUNK_HELP)] = 1000,
) -> None:
    """Run the Geant4 reference simulation of the EMC barrel and write a sample file."""
    check_writable(output)  # before any work
    from caloforge.data.production import make_sample
    from caloforge.detector.readout import readout_from_name
    from caloforge.fullsim.runner import GunSpec

    try:
        readout_params = readout_from_name(readout)
    except ValueError:
        raise ValueError(f"--readout {readout!r}: choose none or boss") from None

    gun = GunSpec(
        particle=particle,
        momentum_gev=parse_momentum(momentum),
        track_gev=None if track is None else parse_track(track),
        seed=seed,
    )
    if cluster is not None:
        return jobs.fullsim_chunked(output, gun, events, cluster=cluster, workers=workers, chunk=chunk_events, tof=tof,
                                    cut_mm=cut_mm, quiet=quiet, readout=readout_params)
    _echo_worker_note(workers)
    summary = make_sample(
        output, gun, events, tof=tof, production_cut_mm=cut_mm, append=append, workers=workers, progress=not quiet,
        readout=readout_params,
    )
    typer.echo(
        f"wrote {summary.n_new} events to {summary.path} ({summary.n_total} in the file) in "
        f"{summary.seconds:.1f} s: {summary.ms_per_event:.2f} ms per event on all workers"
    )


@app.command()
@_user_errors
def samples(
    out_dir: Annotated[Optional[Path], typer.Option(help="Folder (default ~/.cache/caloforge/samples).")] = None,
    train: Annotated[int, typer.Option(help="Training events per particle.")] = 200_000,
    test: Annotated[int, typer.Option(help="Test events per particle.")] = 20_000,
    floor: Annotated[int, typer.Option(help="Events per particle of the independent Geant4 floor sample.")] = 10_000,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default and at most: all cores).")] = None,
    cluster: Annotated[Optional[str], typer.Option(help=jobs.CLUSTER_HELP)] = None,
    chunk_events: Annotated[int, typer.Option(help=jobs.CHUNK_HELP)] = 1000,
) -> None:
    """Make the Geant4 training, test and floor samples for e-, e+ and gamma (resumes if interrupted)."""
    from caloforge.data.production import DEFAULT_CACHE, make_reference_samples

    if cluster is not None:
        return jobs.samples_chunked(out_dir or DEFAULT_CACHE / "samples", cluster=cluster, workers=workers,
                                    chunk=chunk_events, train=train, test=test, floor=floor)
    _echo_worker_note(workers)
    try:
        made = make_reference_samples(
            out_dir or DEFAULT_CACHE / "samples", n_train=train, n_test=test, n_floor=floor, workers=workers
        )
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        typer.echo(f"{_stop_words(signum)}: the samples finished so far are kept, the one being made is not; run "
                   "the same command again to resume", err=True)
        raise typer.Exit(128 + signum) from None
    for s in made:
        typer.echo(f"{s.path}: +{s.n_new} events ({s.n_total} in all), {s.ms_per_event:.2f} ms per event")
    if not made:
        typer.echo("all samples complete")


@app.command()
@_user_errors
def train(
    config: Annotated[Path, typer.Argument(help="Training configuration (YAML), e.g. configs/nbmmd.yaml.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, metrics.csv, config.yaml.")],
    particle: Annotated[
        Optional[str], typer.Option("--particle", "-p", help="The particle of a template configuration: e-, e+ or gamma.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Continue the run in the folder (default); --no-resume refuses a folder that holds one."),
    ] = True,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda (default: the configuration's).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a shower model; an interrupted run continues where it stopped when run again."""
    from caloforge.training import load_config, train as run_training
    from caloforge.training.distributed import is_main_process

    check_writable(out_dir, folder=True)
    cfg = load_config(config, particle)
    try:
        best = run_training(cfg, out_dir, resume=resume, device=device, progress=False if quiet else None)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: run the same command again to resume {out_dir} from its last finished epoch", err=True)
        raise typer.Exit(130) from None
    if is_main_process():  # under torchrun: one line, not one per process
        typer.echo(f"best checkpoint: {best}")


@app.command()
@_user_errors
def recipe(
    particle: Annotated[str, typer.Option("--particle", "-p", help="e-, e+ or gamma.")],
    runs: Annotated[
        Optional[Path], typer.Option(help="Folder of the run folders (default ~/.cache/caloforge/runs).")
    ] = None,
    configs: Annotated[
        Optional[Path], typer.Option(help="Folder of the stage configurations (default: the repository's configs/).")
    ] = None,
    models: Annotated[
        Optional[Path], typer.Option(help="Where the ship stages put the models (default: the shipped models' folder).")
    ] = None,
    family: Annotated[
        str, typer.Option(help="The shipped set: student (the default set: train the flow, ship it, distil its "
                               "student, ship it) or gan (train, fit the energy model, fine-tune, ship, distil, "
                               "ship).")
    ] = "student",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list the stages, their state and commands.")] = False,
) -> None:
    """Reproduce a shipped model from the Geant4 samples, every stage of its recipe (--dry-run lists them); stages
    already done are skipped, an interrupted one continues when the command is run again."""
    from caloforge.release.recipe import make_recipe, run_recipe

    plan = make_recipe(particle, runs_dir=runs, configs_dir=configs, models_dir=models, family=family)
    try:
        run_recipe(plan, dry_run=dry_run, echo=typer.echo)
    except KeyboardInterrupt:
        typer.echo("interrupted: run the same command again to continue from the stage that stopped", err=True)
        raise typer.Exit(130) from None


@app.command()
@_user_errors
def simulate(
    particles: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Particle files: .csv, .h5[:group] or .root[:tree] (event, pdg, px, py, pz[, vx, vy, vz]). "
                            "Several: one hits file each, FOLDER/<input name>.root (or .h5, --format) in the folder "
                            "-o, and FOLDER.txt listing them (uproot.concatenate, TChain); outputs that exist are "
                            "kept (the same command resumes); inputs that fail are named at the end, the rest kept.")
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Hits file: .root (TTree) or .h5 (default hits.root). With several particle "
                                         "files, or one and an existing folder: that folder (default hits), made if "
                                         "missing."),
    ] = None,
    output_format: Annotated[
        Optional[str], typer.Option("--format", help="With a folder -o: the hits files' format, root (default) or h5.")
    ] = None,
    gun: Annotated[Optional[str], typer.Option(help="No input file: shoot this particle (e-, e+, gamma or a PDG id).")] = None,
    events: Annotated[int, typer.Option("--events", "-n", help="Gun: number of single-particle events.")] = 1000,
    momentum: Annotated[str, typer.Option(help="Gun: GeV/c, MIN:MAX or a fixed value.")] = "0:3",
    cos_theta: Annotated[str, typer.Option(help="Gun: cos(theta) range MIN:MAX.")] = "-0.83:0.83",
    seed: Annotated[int, typer.Option(help="Seed of the gun and of the models (>= 0). With a folder -o, each file's "
                                           "models' seed is derived from it and the file's name: an output does not "
                                           "depend on the other files, their order or the workers.")] = 0,
    model: Annotated[
        Optional[list[Path]],
        typer.Option(help="Model checkpoint or ONNX export (repeat for several, one per particle type), or a shipped "
                          "set: student (the default: the flows' one-pass students), gan (the fastest, farthest from "
                          "Geant4), flow (the students' teachers), diffusion (photons, slowest) or diffusion-student "
                          "(photons, its one-pass student); see the model card."),
    ] = None,
    out_of_range: Annotated[
        str,
        typer.Option(help="Particles outside the engine's physics range (a momentum beyond the range the model was "
                          "trained on, 0-3 GeV/c for the shipped ones; a vertex outside r < 94 cm, |z| < 137.7 cm): "
                          "error (stop before any work) or skip (no shower; counted, and marked in particle_status)."),
    ] = "error",
    readout: Annotated[
        str, typer.Option(help="none (the deposited energies) or boss (BOSS's digitisation: noise, photo-statistics, "
                               "pedestal, threshold; docs/readout.md).")
    ] = "none",
    backend: Annotated[str, typer.Option(help="auto (per model the faster on a CPU: ONNX Runtime for the GANs and "
                                                "the students, PyTorch for the flows), onnx (ONNX Runtime) or "
                                                "torch.")] = "auto",
    int8: Annotated[
        bool, typer.Option(help="The shipped GANs on ONNX Runtime: their 8-bit exports (faster; see the model card) "
                                "or the float32 ones.")
    ] = True,
    chunk: Annotated[
        int, typer.Option(help="Particles per engine call (events are never split; the showers do not depend on it).")
    ] = 100_000,
    compression: Annotated[
        str, typer.Option(help="zlib (readable by any ROOT; written by ISA-L, about as fast as zstd), zstd "
                               "(ROOT >= 6.20, 8 % smaller), lz4 (ROOT >= 6.12) or none; HDF5: zlib or none.")
    ] = "zlib",
    device: Annotated[str, typer.Option(help="PyTorch backend: cpu, cuda or auto.")] = "cpu",
    cluster: Annotated[Optional[str], typer.Option(help=jobs.CLUSTER_HELP)] = None,
    workers: Annotated[Optional[int], typer.Option(help="With --cluster local: worker processes; with a YAML "
                                                        "file: batch jobs.")] = None,
    chunk_events: Annotated[int, typer.Option(help=jobs.CHUNK_HELP)] = 1_000_000,
) -> None:
    """Fast simulation: particles in, BESIII EMC barrel hits out (uses the shipped models by default)."""
    inputs = particles or []
    if inputs and gun is not None:
        raise ValueError("give particle files or --gun PARTICLE, not both")
    if not inputs and gun is None:
        raise ValueError("give particle files or --gun PARTICLE")
    many = len(inputs) > 1 or (len(inputs) == 1 and output is not None and output.is_dir())
    if output_format is not None and not many:
        raise ValueError("--format is for a folder -o (several particle files); a hits file's suffix gives its format")
    output = output if output is not None else Path("hits" if many else "hits.root")
    particles = None if many or not inputs else inputs[0]
    if not many:
        check_writable(output)  # before any work
    import time

    from caloforge.detector.conditions import particle as lookup
    from caloforge.detector.readout import readout_from_name
    from caloforge.engine import FastSimulation, PhysicsRange, particle_gun, read_particles
    from caloforge.engine.output import HitsWriter
    from caloforge.engine.particles import OUT_OF_RANGE
    from caloforge.export import load_samplers

    t_start = time.perf_counter()
    if out_of_range not in OUT_OF_RANGE:
        raise ValueError(f"--out-of-range {out_of_range!r}: choose one of {', '.join(OUT_OF_RANGE)}")
    if seed < 0:
        raise ValueError(f"--seed {seed}: the seed must be >= 0")
    if chunk <= 0:
        raise ValueError(f"--chunk {chunk}: give a positive number of particles")
    try:
        readout_params = readout_from_name(readout)
    except ValueError:
        raise ValueError(f"--readout {readout!r}: choose none or boss") from None
    if many or cluster is not None:  # the models load in the chunks' engine (and once here, to check them), not twice
        from caloforge.engine.chunks import EngineGun, EngineSpec

        spec = EngineSpec(tuple(str(m) for m in model or ()), backend, device, int8, readout, out_of_range,
                          compression, chunk)
        if many:
            return jobs.simulate_files(output, spec, inputs, seed, output_format or "root", cluster=cluster,
                                       workers=workers)
    # checks the output before any work; the file appears when complete
    writer = HitsWriter(output, compression=compression)
    pdg = None if gun is None else lookup(int(gun) if gun.lstrip("-").isdigit() else gun).pdg
    if cluster is not None:
        if particles is not None:
            return jobs.simulate_file_chunked(output, spec, particles, seed, cluster=cluster, workers=workers,
                                              chunk=chunk_events)
        return jobs.simulate_gun_chunked(output, spec, EngineGun(pdg, events, parse_momentum(momentum),
                                         parse_momentum(cos_theta), seed), cluster=cluster, workers=workers,
                                         chunk=chunk_events)
    samplers, names, recorded = load_samplers(model or [], backend=backend, device=device, int8=int8)
    physics_range = PhysicsRange.for_models(samplers, recorded)
    check = physics_range if out_of_range == "error" else None
    if particles is not None:
        parts = read_particles(particles, physics_range=check)
    else:
        parts = particle_gun(
            pdg, events, momentum_gev=parse_momentum(momentum), cos_theta=parse_momentum(cos_theta), seed=seed
        )
        if check is not None:
            check.check(parts, source=f"--gun {gun} --momentum {momentum}")
    # builds the geometry tables: part of the set-up
    engine = FastSimulation(samplers, readout=readout_params, physics_range=physics_range, out_of_range=out_of_range)
    t_ready = time.perf_counter()
    counts: dict[str, int] = {}
    stages = {"transport": 0.0, "sampling": 0.0, "placement": 0.0, "writing": 0.0}
    n_hits, energy, showers = 0, 0.0, 0
    with writer:
        for result in engine.simulate_chunks(parts, chunk, seed=seed):
            t_write = time.perf_counter()
            writer.append(result)
            stages["writing"] += time.perf_counter() - t_write
            for key in ("transport", "sampling", "placement"):
                stages[key] += result.timings_s[key]
            for name, n in result.status_counts().items():
                counts[name] = counts.get(name, 0) + n
            n_hits += len(result.hit_energy_gev)
            energy += float(result.hit_energy_gev.sum())
            showers += result.n_showers
        t_write = time.perf_counter()
        writer.finish()  # the writer pools chunks and writes in the background: all written inside the timed part
        stages["writing"] += time.perf_counter() - t_write
        n_events = writer.n_events
    t_end = time.perf_counter()
    typer.echo(f"models      {'; '.join(names)}")
    typer.echo(f"events      {n_events} ({len(parts)} particles)")
    typer.echo("particles   " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    typer.echo(f"hits        {n_hits} crystals, {energy:.4g} GeV in all"
               + (f" (read-out {readout})" if readout_params is not None else ""))
    typer.echo(f"time        {t_end - t_start:.2f} s: set-up (input, models, geometry) {t_ready - t_start:.2f}, "
               + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()) + " (writing: waited for, the rest overlaps)")
    typer.echo(f"speed       {showers / max(t_end - t_ready, 1e-9):,.0f} showers/s (after loading)")
    typer.echo(f"wrote       {output}")


@app.command()
@_user_errors
def generate(
    checkpoint: Annotated[
        Path, typer.Argument(help="Model checkpoint (best.pt of a training run, a shipped model) or ONNX export.")
    ],
    like: Annotated[Path, typer.Option(help="Sample file whose conditions (and truth) to reuse, e.g. a Geant4 test sample.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="Sample file to write (same schema).")],
    max_events: Annotated[Optional[int], typer.Option(help="Only the first N events of --like.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the model's noise.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
) -> None:
    """Sample a model under the conditions of a Geant4 sample file (the candidate of `caloforge validate`)."""
    from caloforge.engine.generate import generate_like

    check_writable(output)
    if checkpoint.suffix.lower() == ".onnx":
        from caloforge.export import OnnxShowerModel

        model = OnnxShowerModel(checkpoint)
    else:
        from caloforge.models import load_model

        model = load_model(checkpoint, device=device)
    path = generate_like(model, like, output, seed=seed, max_events=max_events, model_path=str(checkpoint))
    typer.echo(f"wrote {path}")


@app.command("export")
@_user_errors
def export_model(
    checkpoint: Annotated[Path, typer.Argument(help="Model checkpoint (.pt) to export.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write (.onnx).")],
    int8: Annotated[
        bool, typer.Option(help="Hidden layers in 8 bits (fully connected generators of one particle type).")
    ] = False,
) -> None:
    """Export a model's generator to ONNX (dynamic batch; inputs noise, cond[, particle]; output maps in GeV)."""
    from caloforge.export import export_onnx
    from caloforge.models import load_model

    check_writable(output)
    model = load_model(checkpoint, device="cpu")
    path = export_onnx(model, output, int8=int8)
    inputs = f"noise (batch, {model.noise_size}), cond (batch, 6)"
    if len(model.particles) > 1:
        inputs += f", particle (batch,) indexing {list(model.particles)}"
    typer.echo(f"wrote {path}: inputs {inputs}; output maps (batch, 11, 11) in GeV")


@app.command("fit-energy")
@_user_errors
def fit_energy(
    checkpoint: Annotated[Path, typer.Argument(help="Trained GAN checkpoint (best.pt of a training run).")],
    sample: Annotated[list[Path], typer.Option(help="Geant4 training sample(s) of the model's particle types.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (.pt), with the energy model.")],
    epochs: Annotated[int, typer.Option(help="Passes over the sample.")] = 20,
    max_events: Annotated[Optional[int], typer.Option(help="Only the first N events of each sample.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fit.")] = 0,
) -> None:
    """Fit the deposited-energy model (E11x11 / p given the conditions) of a trained GAN: its maps keep the
    generator's shape, rescaled to a total drawn from the fit. A shortcut for `caloforge train` of a
    configuration with `training.plan: energy` (see caloforge.training.energy_fit)."""
    import torch

    from caloforge.training.energy_fit import energy_fit_config
    from caloforge.training.loop import train_to_file

    check_writable(output)
    if epochs <= 0:
        raise ValueError(f"--epochs must be positive, got {epochs}")
    config = energy_fit_config(checkpoint, sample, epochs=epochs, max_events=max_events, seed=seed)
    fit = torch.load(train_to_file(config, output), map_location="cpu", weights_only=True)["energy_fit"]
    nll = fit["nll_per_epoch"]
    typer.echo(f"wrote {output}: energy model fitted on {fit['events']} events, {fit['epochs']} epochs, "
               f"negative log-likelihood {nll[0]:.4f} -> {nll[-1]:.4f}")


@app.command()
@_user_errors
def distill(
    checkpoint: Annotated[Path, typer.Argument(help="Trained GAN checkpoint to distil (e.g. a shipped seed-size model).")],
    sample: Annotated[list[Path], typer.Option(help="Geant4 training sample(s): their conditions feed the teacher.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (.pt): the student model.")],
    channels: Annotated[str, typer.Option(help="Student generator channels: 4x4 convolution, then each 3x3 one.")] = "8,8,8",
    hidden: Annotated[
        Optional[str], typer.Option(help="A fully connected student instead: hidden layer widths, e.g. 256,256.")
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 8000,
    batch_size: Annotated[int, typer.Option(help="(noise, condition) pairs per step.")] = 512,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate of the one-cycle schedule.")] = 2e-3,
    max_events: Annotated[Optional[int], typer.Option(help="Only the first N events of each sample.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the student's weights and of the draws.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Distil a GAN's generator into a narrower or fully connected, faster one that gives the same maps for the
    same noise and conditions; the rest of the model is the teacher's. A shortcut for `caloforge train` of a
    configuration with `training.plan: distill` (see caloforge.training.distill)."""
    import torch

    from caloforge.training.distill import distill_config
    from caloforge.training.loop import train_to_file

    check_writable(output)
    widths = parse_widths(channels, "--channels", "8,8,8")
    layers = parse_widths(hidden, "--hidden", "256,256") if hidden else ()
    config = distill_config(checkpoint, sample, channels=widths, hidden=layers, steps=steps, batch_size=batch_size,
                            learning_rate=learning_rate, max_events=max_events, seed=seed, device=device,
                            progress=not quiet)
    result = torch.load(train_to_file(config, output), map_location="cpu", weights_only=True)["distilled"]
    typer.echo(
        f"wrote {output}: generator {result['teacher_parameters']} -> {result['student_parameters']} parameters, "
        f"{result['steps']} steps; held-out mean squared difference {result['mse_start']:.3g} -> {result['mse']:.3g} "
        f"({100 * result['reproduced']:.1f} % of the teacher's departure from its mean shower reproduced)"
    )


@app.command()
@_user_errors
def validate(
    reference: Annotated[Path, typer.Argument(help="The Geant4 reference sample file.")],
    candidate: Annotated[Path, typer.Argument(help="The sample file to validate (same particle type).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for report.html and metrics.json.")],
    floor: Annotated[
        Optional[Path], typer.Option(help="A second, independent Geant4 sample: the Geant4-vs-Geant4 floor.")
    ] = None,
    max_events: Annotated[int, typer.Option(help="Events read from each file (the first ones).")] = 50_000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap, the classifiers and FPD/KPD.")] = 0,
    force: Annotated[bool, typer.Option(help="Replace report.html and metrics.json in the folder.")] = False,
    readout: Annotated[
        str, typer.Option(help="Compare the deposits (none) or the energies after BOSS's read-out (boss), applied alike "
                               "to reference, floor and candidate (docs/readout.md).")
    ] = "none",
) -> None:
    """Compare a sample with a Geant4 reference: metrics, verdicts and a self-contained HTML report."""
    from caloforge.detector.readout import readout_from_name
    from caloforge.validation.report import validate as validate_samples

    try:
        readout_params = readout_from_name(readout)
    except ValueError:
        raise ValueError(f"--readout {readout!r}: choose none or boss") from None
    check_writable(output, folder=True)  # before the work, which takes minutes
    metrics = validate_samples(
        reference, candidate, output, floor=floor, max_events=max_events, seed=seed, overwrite=force,
        readout=readout_params,
    )
    summary = metrics["summary"]
    counts = ", ".join(f"{n} {verdict}" for verdict, n in summary["counts"].items() if n)
    typer.echo(f"report:  {metrics['outputs']['report']}")
    typer.echo(f"metrics: {metrics['outputs']['metrics']}")
    typer.echo(
        f"verdict: {summary['overall']} ({counts}; judged against the {metrics['settings']['judged_against']})"
    )
    flagged = {
        **summary["observables"],
        **{f"classifier, {k.replace('_', '-')} inputs": v for k, v in summary["classifier"].items()},
        **{f"resolution, {k}": v for k, v in summary["resolution"].items()},
    }
    for name, verdict in flagged.items():
        if verdict != "compatible":
            typer.echo(f"  {verdict:<12} {name}")


@app.command()
@_user_errors
def info(path: Annotated[Path, typer.Argument(help="A caloforge sample file.")]) -> None:
    """Print a summary of a sample file: provenance, settings, events, energy containment."""
    from caloforge.data.summary import summarize

    typer.echo(summarize(path))


app.command("ship")(_user_errors(ship_command))
