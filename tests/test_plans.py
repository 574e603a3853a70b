import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from caloforge.data.io import open_sample_writer
from caloforge.models import GAN, ConfigError, GANConfig, load_model
from caloforge.models.energy import F_MAX, deposited_fraction
from caloforge.training import TrainConfig, train
from caloforge.training.config import LoopConfig
from caloforge.training.distill import DistillPlan
from caloforge.training.energy_fit import EnergyPlan, fit_energy_model
from caloforge.training.epochs import make_schedulers
from caloforge.training.loop import train_to_file
from test_training import _events

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    """Toy photon samples (training, held-out) and an untrained GAN of them with a quadratic mean shower."""
    folder = tmp_path_factory.mktemp("plans")
    paths = {"train": folder / "train_gamma.h5", "val": folder / "val_gamma.h5", "gan": folder / "gan.pt"}
    for key, n, seed in (("train", 300, 1), ("val", 60, 2)):
        with open_sample_writer(paths[key]) as w:
            w.append(_events(n, 22, seed=seed))
    torch.manual_seed(3)
    model = GAN(GANConfig(particles=["gamma"], output_transform="log", mean_shower_bias=True, mean_shower_degree=2))
    model.fit_normalisation(_events(300, 22, seed=1)["conditions"])
    with torch.no_grad():
        model.generator.mean_shower.table.normal_(0.0, 0.05)
    model.save(paths["gan"])
    return paths


def _config(toy, **training) -> TrainConfig:
    return TrainConfig.from_dict({
        "model": {"name": "gan", "particles": ["gamma"]},
        "data": {"train_files": [str(toy["train"])]},
        "training": {"seed": 0, "device": "cpu", "progress": False, **training},
    })


def _energy(toy, epochs: int, **training) -> TrainConfig:
    return _config(toy, plan="energy", init_from=str(toy["gan"]), epochs=epochs, batch_size=64,
                   scheduler="cosine", **training)


def _distill(toy, epochs: int, **training) -> TrainConfig:
    return _config(toy, plan="distill", teacher=str(toy["gan"]), student_hidden=[16], epochs=epochs,
                   steps_per_epoch=8, batch_size=32, scheduler="one-cycle", **training)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _interrupt_in_second_epoch(monkeypatch, plan_class) -> None:
    """Make ``plan_class`` stop with a KeyboardInterrupt at the end of the second epoch, once."""
    real, calls = plan_class.validate, []

    def validate(self, epoch):
        calls.append(epoch)
        if epoch == 1 and calls.count(1) == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(plan_class, "validate", validate)


def test_energy_plan_fits_a_gan_and_resumes_to_the_same_model(tmp_path, toy, monkeypatch):
    run = tmp_path / "run"
    best = train(_energy(toy, 2), run)
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.csv"]
    rows = _rows(run / "metrics.csv")
    assert [r["best"] for r in rows] == ["1", "1"]  # no held-out events: best.pt is the latest epoch
    assert float(rows[1]["nll"]) < float(rows[0]["nll"]) and float(rows[1]["lr_energy"]) == pytest.approx(1e-3)
    model = load_model(best, device="cpu")
    assert model.config.energy_model and bool(model.energy.fitted)
    fit = torch.load(best, weights_only=True)["energy_fit"]
    assert fit["events"] == 300 and fit["epochs"] == 2 and fit["nll_per_epoch"] == [float(r["nll"]) for r in rows]
    start = load_model(toy["gan"], device="cpu").state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in start.items())  # only the energy model is new
    # the resolved model section is recorded: the run's config.yaml trains the same run
    assert train(run / "config.yaml", run) == best
    assert [r["epoch"] for r in _rows(train(_energy(toy, 3), run).parent / "metrics.csv")] == ["1", "2", "3"]
    # interrupted in its second epoch, then run again: the same model as in one go
    straight = torch.load(train(_energy(toy, 3), tmp_path / "straight"), weights_only=True)["state_dict"]
    _interrupt_in_second_epoch(monkeypatch, EnergyPlan)
    with pytest.raises(KeyboardInterrupt):
        train(_energy(toy, 3), tmp_path / "resumed")
    resumed = torch.load(train(_energy(toy, 3), tmp_path / "resumed"), weights_only=True)["state_dict"]
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    fraction = model.sample(_events(200, 22, seed=5)["conditions"], seed=1).sum(axis=(1, 2)) / _events(
        200, 22, seed=5)["conditions"][:, 0]
    assert np.all((fraction > 0) & (fraction < F_MAX))


def test_energy_plan_selects_on_held_out_events_and_checks_its_settings(tmp_path, toy):
    cfg = _energy(toy, 2)
    cfg = cfg.replace(data=cfg.data.__class__(train_files=[str(toy["train"])], val_files=[str(toy["val"])]))
    train(cfg, tmp_path / "val")
    assert all(float(r["val_nll"]) < 10 for r in _rows(tmp_path / "val" / "metrics.csv"))
    with pytest.raises(ConfigError, match="init_from"):
        train(_config(toy, plan="energy", epochs=1), tmp_path / "none")
    wrong = TrainConfig.from_dict({**_energy(toy, 1).to_dict(), "model": {"name": "gan", "particles": ["gamma"],
                                                                          "noise_dim": 8}})
    with pytest.raises(ConfigError, match="model.noise_dim"):
        train(wrong, tmp_path / "wrong")
    assert not (tmp_path / "none").exists() and not (tmp_path / "wrong").exists()


def test_fit_energy_model_in_memory_gives_the_deposited_fraction():
    events = _events(2000, 22, seed=7)
    model = GAN(GANConfig(particles=["gamma"]))
    model.fit_normalisation(events["conditions"])
    fitted, nll = fit_energy_model(model, events["maps_gev"], events["conditions"], epochs=4, batch_size=256)
    assert fitted is not model and model.energy is None and fitted.config.energy_model and len(nll) == 4
    assert nll[-1] < nll[0]
    drawn = fitted.sample(events["conditions"], seed=2).sum(axis=(1, 2)) / events["conditions"][:, 0]
    target = deposited_fraction(events["maps_gev"], events["conditions"][:, 0])
    assert np.median(drawn) == pytest.approx(np.median(target), abs=0.02)


def test_distill_plan_trains_a_student_that_resumes_exactly(tmp_path, toy, monkeypatch):
    straight = train(_distill(toy, 2), tmp_path / "straight")
    rows = _rows(tmp_path / "straight" / "metrics.csv")
    assert {"train_generator_mse", "val_mse", "val_reproduced"} <= set(rows[0]) and len(rows) == 2
    student = load_model(straight, device="cpu")
    assert student.config.generator_hidden == (16,)
    record = torch.load(straight, weights_only=True)["distilled"]
    assert record["steps"] == 8 * int(rows[-1]["epoch"] if rows[-1]["best"] == "1" else rows[0]["epoch"])
    assert record["from"] == str(toy["gan"].resolve()) and record["events"] == 300
    # interrupted in its second epoch, then run again: the same student as in one go
    _interrupt_in_second_epoch(monkeypatch, DistillPlan)
    with pytest.raises(KeyboardInterrupt):
        train(_distill(toy, 2), tmp_path / "resumed")
    assert [r["epoch"] for r in _rows(tmp_path / "resumed" / "metrics.csv")] == ["1"]
    resumed = train(_distill(toy, 2), tmp_path / "resumed")
    a, b = torch.load(straight, weights_only=True)["state_dict"], torch.load(resumed, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a one-cycle schedule spans the run: no more epochs
    with pytest.raises(ConfigError, match="training.epochs"):
        train(_distill(toy, 3), tmp_path / "resumed")


def test_train_to_file_leaves_only_the_checkpoint(tmp_path, toy):
    out = train_to_file(_distill(toy, 2), tmp_path / "student.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.pt"]
    assert load_model(out, device="cpu").config.generator_hidden == (16,)
    with pytest.raises(ValueError, match="give a new .pt file"):
        train_to_file(_distill(toy, 2), out)


def test_cosine_schedule_is_the_closed_form():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=2e-3)

    class Plan:
        def training_plan(self, epoch):
            from caloforge.models import TrainingStep
            return [TrainingStep("x")]

    (sched,) = make_schedulers(Plan(), {"x": opt}, LoopConfig(epochs=20, scheduler="cosine")).values()
    for epoch in range(20):
        assert opt.param_groups[0]["lr"] == 2e-3 * 0.5 * (1.0 + math.cos(math.pi * epoch / 20))
        opt.step()
        sched.step()
