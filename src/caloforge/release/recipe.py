"""The recipe of a shipped model, from the Geant4 samples to the shipped checkpoint (``caloforge recipe``).

Each shipped set has its recipe (``--family``); every training and plan stage is
``caloforge train configs/<stage>.yaml --particle P -o runs/<stage>_P`` (run folders in ``runs``,
``$CALOFORGE_CACHE/runs`` by default; configurations in the repository's ``configs/``). The stages, in order, for
one particle type ``P``:

``student`` (the default set, :data:`caloforge.models.pretrained.DEFAULT_FAMILY`):

* ``flow``: trains the conditional normalizing flow (``configs/flow.yaml``) -> ``flow_P/best.pt``;
* ``ship-flow``: ``caloforge ship --family flow`` of it -> ``flow_P.pt`` in the shipped models' folder;
* ``student``: distils the shipped flow into its one-pass student (plan ``distill``, ``configs/student.yaml``)
  -> ``student_P/best.pt``;
* ``ship-student``: ``caloforge ship --family student`` of it -> ``student_P.pt``.

``gan``:

* ``nbmmd``: trains the GAN (``configs/nbmmd.yaml``) -> ``nbmmd_P/best.pt``;
* ``energy-fit``: fits its energy model (plan ``energy``, ``configs/energy_fit.yaml``) -> ``energy_fit_P/best.pt``;
* ``energy``: trains on with the energy model (``configs/energy.yaml``) -> ``energy_P/best.pt``;
* ``moments``: + lateral second moment and LAT matched (``configs/moments.yaml``) -> ``moments_P/best.pt``;
* ``ship-seed``: ``caloforge ship`` of ``moments_P/best.pt`` (:func:`caloforge.release.ship.ship`: mean
  shower regularised, validated) -> ``gan_P.pt`` in the shipped models' folder, the seed-size model;
* ``distill``: distils that model into a fully connected generator (plan ``distill``,
  ``configs/distill.yaml``) -> ``distill_P/best.pt``;
* ``ship``: ``caloforge ship --distilled`` of the student (:func:`caloforge.release.ship.ship_distilled`) ->
  ``gan_P.pt``, the seed-size model kept beside it as ``seed_gan_P.pt``.

Each stage is ``done`` (skipped), ``partly done`` (an interrupted training run: resumed from its last epoch)
or ``to run``. A training or plan stage is done when its run folder holds ``best.pt`` and all its epochs; a
ship stage when the recipe's record (``runs/recipe_P.json``) says it shipped the present input and the
shipped file is still the one it wrote (SHA-256), so that a model trained again is shipped again. A stage is
not trained again when an earlier one changes: delete its run folder for that.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from caloforge.atomic import write_text_atomic
from caloforge.detector.conditions import PARTICLES
from caloforge.models.pretrained import DEFAULT_FAMILY
from caloforge.training.config import TrainConfig, cache_dir, expand_path, load_config

STAGES: dict[str, tuple[str, ...]] = {
    "student": ("flow", "ship-flow", "student", "ship-student"),
    "gan": ("nbmmd", "energy-fit", "energy", "moments", "ship-seed", "distill", "ship"),
}
"""Shipped set -> the stages of its recipe, in the order they run."""

DONE, PARTLY_DONE, TO_RUN = "done", "partly done", "to run"
"""The states of a stage."""


def default_configs_dir() -> Path:
    """The repository's ``configs/`` beside ``src/`` (an editable install), else ``./configs``."""
    repo_configs = Path(__file__).resolve().parents[3] / "configs"
    return repo_configs if repo_configs.is_dir() else Path("configs")


def default_models_dir() -> Path:
    """The folder of the shipped models (:mod:`caloforge.models.pretrained`)."""
    from caloforge.models.pretrained import HERE

    return HERE


@dataclass(frozen=True)
class Stage:
    """One stage of the recipe.

    Attributes:
        name: one of :data:`STAGES`.
        command: what the stage does, as the command a person would type.
        output: the file the stage makes.
        state: where the stage stands now: :data:`DONE`, :data:`PARTLY_DONE` or :data:`TO_RUN`.
        run: runs the stage (resuming it where it is partly done).
    """

    name: str
    command: str
    output: Path
    state: Callable[[], str]
    run: Callable[[], None]


@dataclass(frozen=True)
class Recipe:
    """The recipe of one particle type's shipped model.

    Attributes:
        particle: ``gamma``, ``e-`` or ``e+``.
        runs_dir: the folder of the run folders (``nbmmd_<particle>``, ``energy_<particle>``, ...).
        configs_dir: the folder of the stage configurations.
        models_dir: where the ship stages put the shipped models.
        family: the shipped set (a key of :data:`STAGES`).
    """

    particle: str
    runs_dir: Path
    configs_dir: Path
    models_dir: Path
    family: str = DEFAULT_FAMILY

    @property
    def record_file(self) -> Path:
        """The recipe's record of its ship stages: ``runs_dir/recipe_<particle>.json``."""
        return self.runs_dir / f"recipe_{self.particle}.json"

    @property
    def shipped_gan(self) -> Path:
        """The shipped GAN ``models_dir/gan_<particle>.pt``: the seed-size model after ``ship-seed`` (the
        distillation's teacher), the student after ``ship``."""
        return self.shipped("gan")

    @property
    def shipped_seed(self) -> Path:
        """Where ``ship`` keeps the seed-size teacher: ``models_dir/seed_gan_<particle>.pt``."""
        return self.models_dir / f"seed_gan_{self.particle}.pt"

    def run_dir(self, stage: str) -> Path:
        """The run folder of a training stage: ``runs_dir/<stage>_<particle>``."""
        return self.runs_dir / f"{stage}_{self.particle}"

    def shipped(self, family: str) -> Path:
        """The shipped model of set ``family``: ``models_dir/<family>_<particle>.pt``."""
        return self.models_dir / f"{family}_{self.particle}.pt"

    def starts(self) -> dict[str, dict[str, Path]]:
        """Per stage, the checkpoints it starts from (``training.init_from`` or ``teacher``): the outputs of
        the stages before it in ``runs_dir``, and the shipped teachers (the seed-size GAN, the flow) in
        ``models_dir``."""
        return {
            "energy_fit": {"init_from": self.run_dir("nbmmd") / "best.pt"},
            "energy": {"init_from": self.run_dir("energy_fit") / "best.pt"},
            "moments": {"init_from": self.run_dir("energy") / "best.pt"},
            "distill": {"teacher": self.shipped_gan},
            "student": {"teacher": self.shipped("flow")},
        }

    def train_config(self, stage: str) -> TrainConfig:
        """The configuration ``configs_dir/<stage>.yaml`` of a training or plan stage for the particle, its
        starting checkpoints (:meth:`starts`) put in where the configuration names others (with the default
        folders it names the same ones, and stays as it is)."""
        cfg = load_config(self.configs_dir / f"{stage}.yaml", self.particle)
        moved = self.moved_starts(stage, cfg)
        return cfg.replace(training=dataclasses.replace(cfg.training, **moved)) if moved else cfg

    def moved_starts(self, stage: str, cfg: TrainConfig) -> dict[str, str]:
        """The starting checkpoints of :meth:`starts` that ``cfg`` names otherwise (training key -> path)."""
        return {key: str(path) for key, path in self.starts().get(stage, {}).items()
                if expand_path(getattr(cfg.training, key) or "").resolve() != path.resolve()}

    def stages(self) -> list[Stage]:
        """The stages of the set's recipe (:data:`STAGES`), in order."""
        p = self.particle

        def training(name: str, stage: str) -> Stage:
            out, config = self.run_dir(stage), self.configs_dir / f"{stage}.yaml"
            moved = self.moved_starts(stage, load_config(config, p)) if config.exists() else {}
            return Stage(
                name=name,
                command=f"caloforge train {config} --particle {p} -o {out}"
                + "".join(f" (training.{key}: {path})" for key, path in moved.items()),
                output=out / "best.pt",
                state=lambda: training_state(out, self.train_config(stage).training.epochs),
                run=lambda: run_training(self.train_config(stage), out),
            )

        ship_command = f"caloforge ship --particle {p} --runs {self.runs_dir}"
        if self.models_dir.resolve() != default_models_dir().resolve():
            ship_command += f" --out-dir {self.models_dir}"

        def shipping(name: str, source: Path, output: Path, keeps: tuple[Path, ...], command: str,
                     family: str, distilled: bool = False) -> Stage:
            return Stage(
                name=name,
                command=command,
                output=output,
                state=lambda: DONE if self._shipped(name, source, keeps) else TO_RUN,
                run=lambda: self._ship(name, source, output, family, distilled),
            )

        if self.family == "student":
            return [
                training("flow", "flow"),
                shipping("ship-flow", self.run_dir("flow") / "best.pt", self.shipped("flow"), (self.shipped("flow"),),
                         f"{ship_command} --family flow", "flow"),
                training("student", "student"),
                shipping("ship-student", self.run_dir("student") / "best.pt", self.shipped("student"),
                         (self.shipped("student"),), f"{ship_command} --family student", "student"),
            ]
        return [
            training("nbmmd", "nbmmd"),
            training("energy-fit", "energy_fit"),
            training("energy", "energy"),
            training("moments", "moments"),
            shipping("ship-seed", self.run_dir("moments") / "best.pt", self.shipped_gan,
                     (self.shipped_gan, self.shipped_seed),
                     f"{ship_command} --config 'configs/moments.yaml --particle {p}'", "gan"),
            training("distill", "distill"),
            shipping("ship", self.run_dir("distill") / "best.pt", self.shipped_gan, (self.shipped_gan,),
                     f"{ship_command} --distilled {self.run_dir('distill') / 'best.pt'}", "gan", distilled=True),
        ]

    def _records(self) -> dict[str, dict[str, str]]:
        return json.loads(self.record_file.read_text()) if self.record_file.exists() else {}

    def _shipped(self, stage: str, source: Path, keeps: tuple[Path, ...]) -> bool:
        """Whether the record says ``stage`` shipped the present ``source``, and one of ``keeps`` still holds
        what it wrote (the seed-size model moves from ``gan_<particle>.pt`` to ``seed_gan_<particle>.pt`` when
        the student is shipped)."""
        record = self._records().get(stage)
        if record is None or not source.exists() or record["input_sha256"] != file_sha256(source):
            return False
        return any(path.exists() and file_sha256(path) == record["output_sha256"] for path in keeps)

    def _ship(self, stage: str, source: Path, output: Path, family: str, distilled: bool) -> None:
        """Ship ``source`` as ``output``, a model of set ``family``, and record both files' hashes."""
        ship_model(source, self.particle, runs_dir=self.runs_dir, models_dir=self.models_dir, distilled=distilled,
                   family=family)
        records = self._records()
        records[stage] = {"input": str(source), "input_sha256": file_sha256(source),
                          "output": str(output), "output_sha256": file_sha256(output)}
        write_text_atomic(self.record_file, json.dumps(records, indent=1) + "\n")


def make_recipe(
    particle: str,
    runs_dir: str | os.PathLike | None = None,
    configs_dir: str | os.PathLike | None = None,
    models_dir: str | os.PathLike | None = None,
    family: str = DEFAULT_FAMILY,
) -> Recipe:
    """The :class:`Recipe` of ``particle``'s model of the shipped set ``family`` (by default the default set, the
    students); folders default to ``$CALOFORGE_CACHE/runs``, :func:`default_configs_dir` and
    :func:`default_models_dir`.

    Raises:
        ValueError: an unknown particle or set.
    """
    if particle not in PARTICLES:
        raise ValueError(f"particle {particle!r}: choose one of {', '.join(PARTICLES)}")
    if family not in STAGES:
        raise ValueError(f"--family {family!r}: the recipes are {', '.join(STAGES)}")
    return Recipe(
        particle=particle,
        runs_dir=Path(runs_dir).expanduser() if runs_dir is not None else cache_dir() / "runs",
        configs_dir=Path(configs_dir) if configs_dir is not None else default_configs_dir(),
        models_dir=Path(models_dir) if models_dir is not None else default_models_dir(),
        family=family,
    )


def run_recipe(recipe: Recipe, *, dry_run: bool = False, echo: Callable[[str], None] = print) -> list[tuple[str, str]]:
    """Run the stages of ``recipe`` in order, skipping those done and resuming those partly done.

    Args:
        recipe: what to run (:func:`make_recipe`).
        dry_run: only report each stage's state and command.
        echo: where the one-line reports go.

    Returns:
        (stage, state before this call) for every stage.
    """
    states = []
    for stage in recipe.stages():
        state = stage.state()
        states.append((stage.name, state))
        echo(f"{stage.name:<11} {state:<12} {stage.command}")
        if not dry_run and state != DONE:
            stage.run()
            echo(f"{stage.name:<11} done         {stage.output}")
    return states


def training_state(run_dir: Path, epochs: int) -> str:
    """Where a training run stands: done when ``metrics.csv`` has ``epochs`` rows and ``best.pt`` exists,
    partly done when it holds a ``last.pt`` (the loop resumes it), to run otherwise."""
    metrics = run_dir / "metrics.csv"
    if metrics.exists() and (run_dir / "best.pt").exists():
        with open(metrics, newline="") as f:
            if sum(1 for _ in csv.DictReader(f)) >= epochs:
                return DONE
    return PARTLY_DONE if (run_dir / "last.pt").exists() else TO_RUN


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_training(config: TrainConfig, out_dir: Path) -> Path:
    """A training stage: :func:`caloforge.training.train` (which resumes an interrupted run)."""
    from caloforge.training import train

    return train(config, out_dir)


def ship_model(
    checkpoint: Path, particle: str, *, runs_dir: Path, models_dir: Path, distilled: bool, family: str = "gan"
) -> None:
    """A ship stage: ``caloforge ship`` of a trained ``checkpoint`` into ``models_dir``: for the GANs, a seed-size
    model (``best.pt`` of the moments run; :func:`caloforge.release.ship.ship`) or, with ``distilled``, the student
    of the distillation (:func:`caloforge.release.ship.ship_distilled`, its teacher's run in ``runs_dir``); for the
    other sets (``flow``, ``student``), the model of that set."""
    from caloforge.release.ship import ship, ship_distilled

    samples = cache_dir() / "samples"
    if distilled:
        ship_distilled({particle: checkpoint}, samples_dir=samples, runs_dir=runs_dir, out_dir=models_dir,
                       progress=True)
    else:
        stage_config = "moments" if family == "gan" else family
        ship({particle: checkpoint}, samples_dir=samples, out_dir=models_dir, progress=True,
             config=f"configs/{stage_config}.yaml --particle {particle}", family=family)
