"""The ``caloforge`` command.

User mistakes (bad options, missing or corrupt files, an output that exists) end with one
``error: ...`` line on stderr and exit code 2, and leave no partial output behind.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="caloforge",
    help="Fast BESIII EMC barrel simulation with generative models, and its Geant4 reference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _user_errors(func):
    """Turn the errors a user can fix into one clear line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from caloforge.data.io import SampleFileError
        from caloforge.fullsim.runner import FullsimError

        try:
            return func(*args, **kwargs)
        except (FullsimError, SampleFileError, ValueError) as err:  # model config/checkpoint errors are ValueErrors
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing was written", err=True)
            raise typer.Exit(130) from None

    return wrapper


def parse_momentum(text: str) -> tuple[float, float]:
    """``"1.5"`` -> (1.5, 1.5); ``"0:3"`` -> (0.0, 3.0) (GeV/c)."""
    try:
        parts = [float(x) for x in text.split(":")]
    except ValueError:
        raise ValueError(f"momentum {text!r}: expected a number or MIN:MAX in GeV/c") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"momentum {text!r}: expected a number or MIN:MAX in GeV/c")


def parse_track(text: str) -> tuple[float, float, float]:
    """``"0.32,0.73,0.01"`` -> (px, py, pz) in GeV/c."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ValueError(f"track {text!r}: expected PX,PY,PZ in GeV/c")
    return parts  # type: ignore[return-value]


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
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: all cores).")] = None,
    append: Annotated[bool, typer.Option(help="Extend an existing file, continuing its run.")] = False,
    tof: Annotated[bool, typer.Option(help="Put the TOF plastic in front of the EMC.")] = True,
    cut_mm: Annotated[float, typer.Option(help="Geant4 production cut in mm.")] = 0.7,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Run the Geant4 reference simulation of the EMC barrel and write a sample file."""
    from caloforge.data.production import make_sample
    from caloforge.fullsim.runner import GunSpec

    gun = GunSpec(
        particle=particle,
        momentum_gev=parse_momentum(momentum),
        track_gev=None if track is None else parse_track(track),
        seed=seed,
    )
    summary = make_sample(
        output, gun, events, tof=tof, production_cut_mm=cut_mm, append=append, workers=workers, progress=not quiet
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
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: all cores).")] = None,
) -> None:
    """Make the reference training and test samples for e-, e+ and gamma (resumes if interrupted)."""
    from caloforge.data.production import DEFAULT_CACHE, make_reference_samples

    made = make_reference_samples(out_dir or DEFAULT_CACHE / "samples", n_train=train, n_test=test, workers=workers)
    for s in made:
        typer.echo(f"{s.path}: +{s.n_new} events ({s.n_total} in all), {s.ms_per_event:.2f} ms per event")
    if not made:
        typer.echo("all samples complete")


@app.command()
@_user_errors
def train(
    config: Annotated[Path, typer.Argument(help="Training configuration (YAML), e.g. configs/gan_baseline.yaml.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, metrics.csv, config.yaml.")],
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Continue the run in the folder (default); --no-resume refuses a folder that holds one."),
    ] = True,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda (default: the configuration's).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a shower model; an interrupted run continues where it stopped when run again."""
    from caloforge.training import train as run_training

    try:
        best = run_training(config, out_dir, resume=resume, device=device, progress=False if quiet else None)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: run the same command again to resume {out_dir} from its last finished epoch", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"best checkpoint: {best}")


@app.command()
@_user_errors
def info(path: Annotated[Path, typer.Argument(help="A caloforge sample file.")]) -> None:
    """Print a summary of a sample file: provenance, settings, events, energy containment."""
    from caloforge.data.summary import summarize

    typer.echo(summarize(path))


def main() -> None:  # pragma: no cover
    sys.exit(app())
