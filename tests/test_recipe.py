"""The recipe of the shipped models (caloforge.release.recipe, ``caloforge recipe``), with stand-in stages: the
training stages and the ship stages are replaced by functions that write files of the right shape."""

import csv
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caloforge.cli.main import app
from caloforge.release import recipe as recipe_module
from caloforge.release.recipe import DONE, PARTLY_DONE, STAGES, TO_RUN, make_recipe, run_recipe, training_state
from caloforge.training.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _write_run(out: Path, epochs: int, tag: str) -> None:
    """A stand-in run folder: ``epochs`` rows of metrics, a last and a best checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "best"])
        writer.writerows([[e + 1, 0] for e in range(epochs)])
    (out / "last.pt").write_text(f"last {tag}")
    (out / "best.pt").write_text(f"best {tag}")


class StandIns:
    """Records the stage calls; trains by writing run folders, ships as ``caloforge ship`` does (the student's
    shipping keeps the seed-size model as ``seed_gan_<particle>.pt``)."""

    def __init__(self, interrupt_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.interrupt_at = interrupt_at
        self.configs: dict[str, object] = {}

    def train(self, config, out_dir: Path) -> Path:
        stage = out_dir.name.rsplit("_", 1)[0]
        self.calls.append(stage)
        self.configs[stage] = config
        if stage == self.interrupt_at:
            _write_run(out_dir, 1, "partial")
            (out_dir / "best.pt").unlink()
            raise KeyboardInterrupt
        _write_run(out_dir, config.training.epochs, f"{stage} {len(self.calls)}")
        return out_dir / "best.pt"

    def ship(self, checkpoint: Path, particle: str, *, runs_dir: Path, models_dir: Path, distilled: bool,
             family: str = "gan") -> None:
        self.calls.append(("ship" if distilled else "ship-seed") if family == "gan" else f"ship-{family}")
        default = models_dir / f"{family}_{particle}.pt"
        if distilled:
            shutil.copyfile(default, models_dir / f"seed_gan_{particle}.pt")
        default.write_text(f"shipped {checkpoint.read_text()}")


@pytest.fixture
def stand_ins(monkeypatch):
    def install(**kwargs) -> StandIns:
        fake = StandIns(**kwargs)
        monkeypatch.setattr(recipe_module, "run_training", fake.train)
        monkeypatch.setattr(recipe_module, "ship_model", fake.ship)
        return fake

    return install


def _recipe(tmp_path: Path, particle: str = "gamma", family: str = "gan"):
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    return make_recipe(particle, runs_dir=tmp_path / "runs", models_dir=models, family=family)


def _states(recipe) -> dict[str, str]:
    return {stage.name: stage.state() for stage in recipe.stages()}


def test_dry_run_lists_the_stages_and_runs_nothing(tmp_path, stand_ins):
    fake = stand_ins()
    lines: list[str] = []
    states = run_recipe(_recipe(tmp_path), dry_run=True, echo=lines.append)
    assert [name for name, _ in states] == list(STAGES["gan"])
    assert all(state == TO_RUN for _, state in states)
    assert len(lines) == len(STAGES["gan"])
    assert lines[0].startswith("nbmmd") and "configs/nbmmd.yaml --particle gamma" in lines[0]
    assert fake.calls == [] and not (tmp_path / "runs").exists()


def test_recipe_runs_every_stage_once_then_skips_them(tmp_path, stand_ins):
    fake = stand_ins()
    recipe = _recipe(tmp_path)
    run_recipe(recipe, echo=lambda line: None)
    assert fake.calls == ["nbmmd", "energy_fit", "energy", "moments", "ship-seed", "distill", "ship"]
    runs = tmp_path / "runs"
    # each stage starts from the one before it, in the recipe's folders
    assert fake.configs["energy_fit"].training.init_from == str(runs / "nbmmd_gamma" / "best.pt")
    assert fake.configs["energy"].training.init_from == str(runs / "energy_fit_gamma" / "best.pt")
    assert fake.configs["moments"].training.init_from == str(runs / "energy_gamma" / "best.pt")
    assert fake.configs["distill"].training.teacher == str(tmp_path / "models" / "gan_gamma.pt")
    assert fake.configs["nbmmd"].to_dict() == load_config(REPO / "configs" / "nbmmd.yaml", "gamma").to_dict()
    assert (tmp_path / "models" / "seed_gan_gamma.pt").read_text() == "shipped best moments 4"
    assert set(_states(recipe).values()) == {DONE}  # the seed-size model moved to seed_gan_gamma.pt: still done
    fake.calls.clear()
    run_recipe(recipe, echo=lambda line: None)
    assert fake.calls == []


def test_the_default_sets_recipe_ships_the_flow_then_its_student(tmp_path, stand_ins):
    fake = stand_ins()
    recipe = _recipe(tmp_path, "e-", family="student")
    assert make_recipe("e-").family == "student"  # the default set's recipe by default
    lines: list[str] = []
    run_recipe(recipe, echo=lines.append)
    assert fake.calls == ["flow", "ship-flow", "student", "ship-student"]
    assert "caloforge ship --particle e-" in lines[2] and "--family flow" in lines[2]
    # the student learns from the flow the recipe shipped
    assert fake.configs["student"].training.teacher == str(tmp_path / "models" / "flow_e-.pt")
    assert (tmp_path / "models" / "student_e-.pt").read_text() == "shipped best student 3"
    assert set(_states(recipe).values()) == {DONE}
    (tmp_path / "runs" / "flow_e-" / "best.pt").write_text("best flow, trained again")
    assert _states(recipe)["ship-flow"] == TO_RUN and _states(recipe)["ship-student"] == DONE


def test_an_interrupted_stage_is_partly_done_and_resumed(tmp_path, stand_ins):
    recipe = _recipe(tmp_path, "e-")
    fake = stand_ins(interrupt_at="energy")
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, echo=lambda line: None)
    assert fake.calls == ["nbmmd", "energy_fit", "energy"]
    states = _states(recipe)
    assert [states[s] for s in ("nbmmd", "energy-fit", "energy", "moments")] == [DONE, DONE, PARTLY_DONE, TO_RUN]
    fake = stand_ins()
    run_recipe(recipe, echo=lambda line: None)
    assert fake.calls == ["energy", "moments", "ship-seed", "distill", "ship"]


def test_a_model_trained_again_is_shipped_again(tmp_path, stand_ins):
    recipe = _recipe(tmp_path)
    stand_ins()
    run_recipe(recipe, echo=lambda line: None)
    (tmp_path / "runs" / "moments_gamma" / "best.pt").write_text("best moments, trained again")
    states = _states(recipe)
    assert states["ship-seed"] == TO_RUN and states["moments"] == DONE


def test_training_state_reads_the_run_folder(tmp_path):
    run = tmp_path / "run"
    assert training_state(run, 3) == TO_RUN
    _write_run(run, 2, "x")
    assert training_state(run, 3) == PARTLY_DONE
    assert training_state(run, 2) == DONE


def test_default_folders_keep_the_configurations_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("CALOFORGE_CACHE", str(tmp_path / "cache"))
    recipe = make_recipe("e+", family="gan")
    assert recipe.runs_dir == tmp_path / "cache" / "runs"
    for stage in ("nbmmd", "energy_fit", "energy", "moments"):
        assert recipe.train_config(stage).to_dict() == load_config(REPO / "configs" / f"{stage}.yaml", "e+").to_dict()
    for stage in ("flow", "student"):
        config = make_recipe("e+").train_config(stage).to_dict()
        assert config == load_config(REPO / "configs" / f"{stage}.yaml", "e+").to_dict()
    with pytest.raises(ValueError, match="choose one of"):
        make_recipe("mu-")
    with pytest.raises(ValueError, match="the recipes are student, gan"):
        make_recipe("e+", family="vae")


def test_cli_recipe_dry_run_and_train_particle_errors(tmp_path):
    runner = CliRunner()
    for family in STAGES:
        result = runner.invoke(app, ["recipe", "--particle", "gamma", "--dry-run", "--runs", str(tmp_path / "runs"),
                                     "--models", str(tmp_path), "--family", family])
        assert result.exit_code == 0, result.output
        assert [line.split()[:2] for line in result.output.splitlines()] == [[s, "to"] for s in STAGES[family]]
    result = runner.invoke(app, ["train", str(REPO / "configs" / "nbmmd.yaml"), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "give one of them (--particle)" in result.output
    assert "gamma, e-, e+" in result.output and not (tmp_path / "x").exists()
    result = runner.invoke(app, ["recipe", "--particle", "mu-", "--dry-run"])
    assert result.exit_code == 2 and "choose one of" in result.output
