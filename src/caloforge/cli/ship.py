"""The ``caloforge ship`` command: trained models validated against Geant4 and shipped with their model card
(:mod:`caloforge.release.ship`). Registered on the ``caloforge`` app by :mod:`caloforge.cli.main`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def ship(
    particles: Annotated[
        Optional[str], typer.Option("--particles", "--particle", help="Particle types to ship, comma-separated.",
                                    show_default="e-,e+,gamma")
    ] = None,
    runs: Annotated[
        Optional[Path], typer.Option(help="Folder of the training runs.", show_default="$CALOFORGE_CACHE/runs")
    ] = None,
    family: Annotated[
        str, typer.Option(help="The model set to ship: gan, flow, student (the default set of caloforge "
                                "simulate), diffusion or diffusion-student.")
    ] = "gan",
    sampler: Annotated[
        Optional[str], typer.Option(help="Diffusion models: ship with this sampler (ddim or dpm) instead of the "
                                         "run's; the thresholds are calibrated anew on training events.")
    ] = None,
    steps: Annotated[
        Optional[int], typer.Option(help="Diffusion models: ship with this many sampler steps instead of the run's.")
    ] = None,
    run_name: Annotated[
        Optional[str], typer.Option(help="Run folder in --runs, {particle} per particle.",
                                    show_default="moments_{particle}; <family>_{particle} for the other sets")
    ] = None,
    checkpoint: Annotated[
        str, typer.Option(help="Checkpoint in each run folder, e.g. best_energy.pt from caloforge fit-energy.")
    ] = "best.pt",
    run: Annotated[
        Optional[list[str]],
        typer.Option(metavar="PARTICLE=FOLDER",
                     help="The run folder of one particle, instead of --run-name (repeatable)."),
    ] = None,
    config: Annotated[
        Optional[str],
        typer.Option(help="The `caloforge train` arguments the runs were trained with, {particle} per particle "
                     "(named in the card).", show_default="configs/moments.yaml --particle {particle}; "
                     "configs/<family>.yaml for the other sets"),
    ] = None,
    distilled: Annotated[
        Optional[str],
        typer.Option(metavar="FILE",
                     help="Ship the students of `caloforge distill` (a path with {particle}) instead of runs."),
    ] = None,
    int8: Annotated[
        bool, typer.Option("--int8", help="Only export the shipped checkpoints with 8-bit hidden layers and validate "
                           "that export beside the float32 one.")
    ] = False,
    reexport: Annotated[
        bool, typer.Option("--reexport",
                           help="Only export the shipped checkpoints to ONNX again and measure their speed anew.")
    ] = False,
    response: Annotated[
        bool, typer.Option("--response", help="Only measure the energy response, the spread per momentum slice and the "
                           "spread of the fixed track of the shipped checkpoints anew.")
    ] = False,
    revalidate: Annotated[
        bool, typer.Option("--revalidate", help="Only validate the shipped checkpoints of --family anew against Geant4 "
                           "(the report's numbers of their records).")
    ] = False,
    samples: Annotated[
        Optional[Path], typer.Option(help="Folder of the Geant4 samples.", show_default="$CALOFORGE_CACHE/samples")
    ] = None,
    work: Annotated[
        Optional[Path],
        typer.Option(help="Folder for generated samples and reports.", show_default="$CALOFORGE_CACHE/validation"),
    ] = None,
    events: Annotated[int, typer.Option(help="Events per validation sample.")] = 10_000,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(help="Models folder to read and write instead of the package's models/pretrained/."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Ship trained models as one of the package's model sets (--family gan, flow, student, the default set,
    diffusion or diffusion-student): validate them against Geant4, export GANs to ONNX (float32 and 8-bit) and
    write the set's records (validation.json, validation_<set>.json for the others) and MODEL_CARD.md (see
    caloforge.release.ship).

    Writes into src/caloforge/models/pretrained/ (the models caloforge simulate runs) unless --out-dir.

    Needs the Geant4 samples of `caloforge samples` ($CALOFORGE_CACHE is ~/.cache/caloforge if not set).
    """
    from caloforge.detector.conditions import PARTICLES
    from caloforge.release import ship as release

    if particles is None:
        particles = ",".join(PARTICLES)
    names = [p.strip() for p in particles.split(",") if p.strip()]
    modes = [flag for flag, on in (("--distilled", distilled), ("--int8", int8), ("--reexport", reexport),
                                   ("--response", response), ("--revalidate", revalidate)) if on]
    if len(modes) > 1:
        raise ValueError(f"{' and '.join(modes)}: give one mode at a time")
    if family not in release.FAMILY_STEMS:
        raise ValueError(f"--family {family!r}: choose one of {', '.join(release.FAMILY_STEMS)}")
    if family != "gan" and modes and not revalidate:
        raise ValueError(f"{modes[0]}: only for the GANs (--family gan)")
    if (sampler is not None or steps is not None) and (family != "diffusion" or modes):
        raise ValueError("--sampler and --steps: only when shipping trained diffusion models (--family diffusion)")
    runs_dir = (runs or release.DEFAULT_RUNS).expanduser()
    samples_dir = (samples or release.DEFAULT_SAMPLES).expanduser()
    work_dir = (work or release.DEFAULT_WORK).expanduser()
    models_dir = out_dir.expanduser() if out_dir else release.HERE
    common = {"samples_dir": samples_dir, "out_dir": models_dir, "progress": not quiet}
    if int8:
        release.int8_exports(names, work_dir=work_dir, events=events, **common)
    elif reexport:
        release.reexport(names, events=events, **common)
    elif response:
        release.measure_response(names, **common)
    elif revalidate:
        release.revalidate(names, work_dir=work_dir, events=events, family=family, **common)
    elif distilled:
        students = {name: Path(distilled.format(particle=name)).expanduser() for name in names}
        release.ship_distilled(students, runs_dir=runs_dir, work_dir=work_dir, events=events, **common)
    else:
        folders = {}
        for item in run or []:
            name, sep, folder = item.partition("=")
            if not sep or name not in PARTICLES:
                raise ValueError(f"--run {item!r}: expected PARTICLE=FOLDER with PARTICLE one of "
                                 f"{', '.join(PARTICLES)}")
            folders[name] = Path(folder).expanduser()
        run_name = run_name or ("moments_{particle}" if family == "gan" else f"{family}_{{particle}}")
        checkpoints = {name: folders.get(name, runs_dir / run_name.format(particle=name)) / checkpoint
                       for name in names}
        default_config = (release.DEFAULT_CONFIG if family == "gan"
                          else f"configs/{family.replace('-', '_')}.yaml --particle {{particle}}")
        sampling = (sampler, steps) if sampler is not None or steps is not None else None
        release.ship(checkpoints, work_dir=work_dir, config=config or default_config, events=events, family=family,
                     sampling=sampling, **common)
    typer.echo(f"wrote {models_dir / 'MODEL_CARD.md'} and {release.RECORD_FILES[family]}")
