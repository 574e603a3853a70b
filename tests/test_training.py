import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from caloforge.data.io import open_sample_writer
from caloforge.models import ConfigError, GAN, load_model
from caloforge.training import DataConfig, LoopConfig, TrainConfig, load_config, train
from caloforge.training.config import is_template, resolve_sample_path
from caloforge.training.data import iter_batches, nearest_neighbours, read_shower_data, split_validation
from caloforge.models.gan import LAT_R0_CRYSTALS, lateral_shape_moments
from caloforge.training.selection import selection_features, selection_metric, separation_power

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _events(n: int, pdg: int, seed: int) -> dict[str, np.ndarray]:
    """Toy showers: a Gaussian blob around the centre holding ~95 % of the momentum."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.2, 2.0, n)
    y, x = np.mgrid[0:11, 0:11] - 5
    width = rng.uniform(0.6, 1.0, n)[:, None, None]
    blob = np.exp(-(x**2 + y**2)[None] / (2 * width**2))
    maps = (0.95 * p[:, None, None] * blob / blob.sum(axis=(1, 2), keepdims=True)).astype(np.float32)
    direction = rng.normal(size=(n, 3))
    cond = np.column_stack(
        [p, rng.normal(0, 0.06, n), rng.normal(0.05, 0.015, n), rng.normal(0, 1.3, n),
         rng.normal(0, 0.015, n), rng.uniform(-130, 130, n)]
    ).astype(np.float32)
    return {
        "attempt": np.arange(n),
        "seed": rng.integers(1, 1000, n),
        "pdg": np.full(n, pdg, dtype=np.int32),
        "maps_gev": maps,
        "edep_barrel_gev": maps.sum(axis=(1, 2)).astype(np.float64),
        "theta_index": rng.integers(0, 44, n).astype(np.int16),
        "phi_index": rng.integers(0, 120, n).astype(np.int16),
        "conditions": cond,
        "conditions_entry": cond,
        "vertex_momentum_gev": direction / np.linalg.norm(direction, axis=1, keepdims=True) * p[:, None],
        "front_position_cm": rng.normal(size=(n, 3)),
        "front_momentum_gev": rng.normal(size=(n, 3)),
        "entry_position_cm": rng.normal(size=(n, 3)),
        "entry_momentum_gev": rng.normal(size=(n, 3)),
        "reached_emc": np.ones(n, dtype=bool),
    }


@pytest.fixture(scope="module")
def toy_samples(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("toy")
    paths = {}
    for name, pdg in (("gamma", 22), ("e-", 11)):
        paths[name] = folder / f"train_{name}.h5"
        with open_sample_writer(paths[name]) as w:
            w.append(_events(80, pdg, seed=pdg))
    return paths


def _config(toy_samples, *, epochs=2, **model) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "model": {"name": "gan", "particles": ["gamma"], "regressor_epochs": 1, **model},
            "data": {"train_files": [str(toy_samples["gamma"])], "val_fraction": 0.2},
            "training": {"epochs": epochs, "batch_size": 16, "seed": 3, "device": "cpu", "progress": False},
        }
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_two_epoch_smoke_run_then_resume_to_three(tmp_path, toy_samples):
    run = tmp_path / "run"
    best = train(_config(toy_samples, epochs=2), run)
    assert best == run / "best.pt"
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.csv"]
    rows = _rows(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["phase"] == "pretrain" and rows[0]["val_sp_mean"] == ""
    assert rows[1]["phase"] == "train" and 0 <= float(rows[1]["val_sp_mean"]) <= 1 and rows[1]["best"] == "1"
    assert float(rows[1]["val_regressor_mse"]) > 0 and "train_generator_loss" in rows[1]
    model = load_model(best, device="cpu")
    assert isinstance(model, GAN) and model.sample(np.array([1.0, 0, 0.05, 0, 0, 10]), n=3, seed=1).shape == (3, 11, 11)
    assert load_config(run / "config.yaml") == _config(toy_samples, epochs=2)
    state_2 = torch.load(run / "last.pt", weights_only=True)["training_state"]
    assert state_2["epoch"] == 2 and state_2["global_step"] == 2 * (64 // 16)

    # resume: only epoch 3 runs, epochs 1-2 are kept as they were
    train(_config(toy_samples, epochs=3), run)
    rows3 = _rows(run / "metrics.csv")
    assert [r["epoch"] for r in rows3] == ["1", "2", "3"]
    assert [r["seconds"] for r in rows3[:2]] == [r["seconds"] for r in rows[:2]]
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["training_state"]["epoch"] == 3 and last["training_state"]["global_step"] == 3 * 4

    # a run made in one go ends with the same weights as one interrupted after epoch 2
    straight = tmp_path / "straight"
    train(_config(toy_samples, epochs=3), straight)
    once = torch.load(straight / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(once[k], last["state_dict"][k]) for k in once)

    # nothing left to do: returns at once
    assert train(_config(toy_samples, epochs=3), run) == run / "best.pt"


def test_resume_refuses_other_settings_and_existing_runs(tmp_path, toy_samples):
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="pre-training"):
        train(_config(toy_samples, epochs=1), run)
    with pytest.raises(ConfigError, match="model.noise_dim"):
        train(_config(toy_samples, epochs=2, noise_dim=8), run)
    with pytest.raises(ValueError, match="already holds a training run"):
        train(_config(toy_samples, epochs=2), run, resume=False)
    # a run started before a setting existed resumes when the setting keeps its default
    ckpt = torch.load(run / "last.pt", weights_only=True)
    del ckpt["train_config"]["model"]["neighbour_mmd_features"]
    torch.save(ckpt, run / "last.pt")
    train(_config(toy_samples, epochs=2), run)
    assert [r["epoch"] for r in _rows(run / "metrics.csv")] == ["1", "2"]


def test_wgangp_multi_particle_run(tmp_path, toy_samples):
    cfg = TrainConfig.from_dict(
        {
            "model": {"name": "gan", "particles": ["e-", "gamma"], "loss": "wgan-gp", "n_critic": 2,
                      "regressor_weight": 0.0, "regressor_epochs": 0, "minibatch_discrimination": False},
            "data": {"train_files": [str(toy_samples["e-"]), str(toy_samples["gamma"])], "val_fraction": 0.25},
            "training": {"epochs": 1, "batch_size": 32, "device": "cpu", "progress": False, "scheduler": "cosine"},
        }
    )
    best = train(cfg, tmp_path / "w")
    row = _rows(tmp_path / "w" / "metrics.csv")[0]
    assert {"val_sp_mean_e-", "val_sp_mean_gamma", "train_discriminator_gp"} <= set(row)
    assert "train_generator_loss" in row  # generator stepped every n_critic = 2 batches
    assert load_model(best, device="cpu").particles == ("e-", "gamma")


def test_fine_tuning_with_neighbour_pairs_starts_from_a_checkpoint(tmp_path, toy_samples):
    base = dict(loss="wgan-gp", regressor_weight=0.0, regressor_epochs=0, minibatch_discrimination=False)
    first = train(_config(toy_samples, epochs=1, **base), tmp_path / "first")
    cfg = _config(toy_samples, epochs=1, neighbour_mmd_weight=1.0, **base)
    tuned = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, init_from=str(first)))
    run = tmp_path / "tuned"
    train(tuned, run)
    assert float(_rows(run / "metrics.csv")[0]["train_generator_neighbour_mmd"]) > 0
    start, end = load_model(first, device="cpu").state_dict(), load_model(run / "best.pt", device="cpu").state_dict()
    assert torch.equal(start["cond_mean"], end["cond_mean"])  # the normalisation came with the weights
    assert not torch.equal(start["generator.dense.weight"], end["generator.dense.weight"])
    # a checkpoint of another architecture or particle is a configuration error, before any training
    other = train(_config(toy_samples, epochs=1, noise_dim=8, **base), tmp_path / "other")
    for bad in (str(other), str(tmp_path / "missing.pt")):
        wrong = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, init_from=bad))
        with pytest.raises(ConfigError, match="init_from"):
            train(wrong, tmp_path / "wrong")
        assert not (tmp_path / "wrong").exists()


def test_nearest_neighbours_stay_within_the_particle_type():
    rng = np.random.default_rng(4)
    c = rng.normal(size=(200, 6))
    c[100:] = c[:100] + 1e-3 * rng.normal(size=(100, 6))  # events 100.. are near copies of 0..99
    particle = np.zeros(200, dtype=np.int64)
    nb = nearest_neighbours(c, particle)
    assert nb[:100].tolist() == list(range(100, 200)) and nb[100:].tolist() == list(range(100))
    particle[100:] = 1  # the copies are now another type: each finds another event of its own
    nb = nearest_neighbours(c, particle)
    assert (particle[nb] == particle).all() and (nb != np.arange(200)).all()
    assert nearest_neighbours(c[:1], particle[:1]).tolist() == [0]  # alone: its own neighbour


def test_data_split_and_batches(toy_samples):
    both = read_shower_data([toy_samples["e-"], toy_samples["gamma"]], particles=["gamma", "e-"])
    assert len(both) == 160 and both.particle.tolist() == [1] * 80 + [0] * 80
    data = read_shower_data([toy_samples["gamma"]], particles=["gamma"], max_events=70)
    assert len(data) == 70 and (data.particle == 0).all()
    train_, val = split_validation(data, fraction=0.25, seed=1)
    assert len(train_) == 52 and len(val) == 18
    again, _ = split_validation(data, fraction=0.25, seed=1)
    assert np.array_equal(train_.conditions, again.conditions)
    tensors = train_.to_tensors(torch.device("cpu"))
    batches = list(iter_batches(tensors, batch_size=16, seed=1, epoch=0))
    assert [len(b) for b in batches] == [16, 16, 16]  # the incomplete last batch is dropped
    replay = list(iter_batches(tensors, batch_size=16, seed=1, epoch=0))
    assert all(torch.equal(a.maps_gev, b.maps_gev) for a, b in zip(batches, replay))
    assert batches[0].neighbour_maps_gev is None
    paired = train_.with_neighbours()
    batch = next(iter_batches(paired.to_tensors(torch.device("cpu")), batch_size=16, seed=1, epoch=0))
    rows = [int(np.flatnonzero((paired.maps_gev == m.numpy()).all(axis=(1, 2)))[0]) for m in batch.maps_gev]
    assert np.array_equal(batch.neighbour_maps_gev.numpy(), paired.maps_gev[paired.neighbour[rows]])
    assert np.array_equal(batch.neighbour_conditions.numpy(), paired.conditions[paired.neighbour[rows]])
    with pytest.raises(ValueError, match="no usable events"):
        read_shower_data([toy_samples["e-"]], particles=["gamma"])


def test_selection_metric():
    rng = np.random.default_rng(0)
    a = rng.exponential(0.01, (500, 11, 11))
    p = rng.uniform(0.2, 2.0, 500)
    assert selection_metric(a, a, p)["sp_mean"] == 0.0
    assert separation_power(np.zeros(100), np.ones(100)) == pytest.approx(1.0)
    far = selection_metric(a, a + 1.0, p)
    assert far["sp_E11x11/p"] > 0.98 and far["sp_N>1MeV"] > 0.98 and 0 < far["sp_mean"] <= 1  # outliers: last bin
    # the occupancy: same shapes per event, but one crystal never hit -> only the occupancy terms see it
    holed = a.copy()
    holed[:, 0, 0], holed[:, 0, 1] = 0.0, holed[:, 0, 1] + a[:, 0, 0]
    same, hole = selection_metric(a, a, p), selection_metric(a, holed, p)
    assert same["occupancy_chi2"] == 0.0 and same["sp_occupancy"] == 0.0
    assert hole["occupancy_chi2"] > 400 and hole["occupancy_chi2_1MeV"] > 100  # 500 events, one crystal
    assert hole["sp_occupancy"] == pytest.approx(
        hole["sp_mean"] * (hole["occupancy_chi2"] + hole["occupancy_chi2_1MeV"]) / (2 * 121))
    feats = selection_features(np.ones((2, 11, 11)), np.array([1.0, 2.0]))
    assert feats["E1x1/p"].tolist() == [1, 0.5] and feats["E11x11/p"].tolist() == [121, 60.5]
    assert feats["E3x3/E5x5"] == pytest.approx(9 / 25) and feats["E9x9/E11x11"] == pytest.approx(81 / 121)
    assert feats["N>1MeV"].tolist() == [121, 121]
    assert feats["R2"] == pytest.approx(2 * np.mean((np.arange(11) - 5.0) ** 2))  # uniform map, centre 5
    one = np.zeros((1, 11, 11))
    one[0, 2, 7] = 0.3
    assert selection_features(one, np.array([1.0]))["R2"] == pytest.approx(0.0)  # a single hot crystal
    assert selection_features(one, np.array([1.0]))["LAT"] == pytest.approx(0.0)
    three = one.copy()
    three[0, 2, 8], three[0, 4, 7] = 0.2, 0.1  # centre (2 + 2/6, 7 + 1/3); the third crystal enters LAT
    centre = np.array([2 + 0.2 / 0.6, 7 + 0.2 / 0.6])
    num = 0.1 * np.sum((np.array([4, 7]) - centre) ** 2)
    lat = selection_features(three, np.array([1.0]))["LAT"][0]
    assert lat == pytest.approx(num / (num + LAT_R0_CRYSTALS**2 * 0.5))
    torch_lat = lateral_shape_moments(torch.as_tensor(a[:50], dtype=torch.float64))[:, 1].numpy()
    assert selection_features(a[:50], p[:50])["LAT"] == pytest.approx(torch_lat, rel=1e-9)
    with pytest.raises(ValueError, match="one momentum per map"):
        selection_features(a, p[:3])
    ref = rng.normal(0.0, 1.0, 5000)
    ref[0] = 1e6  # one outlier must not squeeze the bulk into one bin
    assert separation_power(ref, rng.normal(0.5, 1.0, 5000)) > 0.03
    assert separation_power(ref, rng.normal(0.0, 1.0, 5000)) < 0.01


def test_selection_metric_with_neighbour_pairs_sees_missing_fluctuations():
    rng = np.random.default_rng(5)
    n = 4000
    p = rng.uniform(0.5, 1.5, n)
    mean = rng.uniform(0.2, 0.9, n)  # E1x1/p set by the conditions; a neighbour has the same conditions

    def maps(fluctuation: float) -> np.ndarray:
        m = np.zeros((n, 11, 11))
        m[:, 5, 5] = p * (mean + rng.normal(0, fluctuation, n))
        m[:, 5, 6] = 0.3 * p
        return m

    real, real_nb = maps(0.02), maps(0.02)
    good = selection_metric(real, maps(0.02), p, neighbours=(real_nb, maps(0.02), p))
    bad = selection_metric(real, maps(0.0), p, neighbours=(real_nb, maps(0.0), p))  # noise ignored
    assert {"sp_pair_dE1x1/p", "sp_pair_dE5x5/p"} <= set(good)
    assert "sp_pair_dE1x1/p" not in selection_metric(real, real, p)
    assert bad["sp_E1x1/p"] < 0.02 and good["sp_pair_dE1x1/p"] < 0.02  # single events hardly tell them apart
    assert bad["sp_pair_dE1x1/p"] > 0.5 and bad["sp_mean"] > good["sp_mean"] + 0.1


def test_config_rejects_unknown_keys_with_clear_errors(tmp_path, toy_samples):
    base = {"model": {"name": "gan"}, "data": {"train_files": ["train_gamma.h5"]}}
    for bad, match in (
        ({**base, "optimiser": {}}, "unknown configuration section 'optimiser'"),
        ({**base, "training": {"epoch": 3}}, r"training.'epoch'.*did you mean 'epochs'"),
        ({**base, "data": {"train_files": ["x.h5"], "val_frac": 0.1}}, r"data.'val_frac'"),
        ({**base, "training": {"batch_size": 0}}, "training.batch_size"),
        ({**base, "training": {"scheduler": "linear"}}, "training.scheduler"),
        ({**base, "training": {"scheduler": "one-cycle"}}, "one-cycle is for training.plan energy or distill"),
        ({**base, "training": {"teacher": "x.pt"}}, "training.teacher: only for training.plan distill"),
        ({**base, "training": {"learning_rate": 1e-3}}, "training.learning_rate: only for training.plan energy"),
        ({**base, "training": {"pair_pool": 1000}}, "training.pair_pool: only for training.plan distill"),
        ({**base, "training": {"plan": "distill", "teacher": "x.pt", "pair_pool": 0}}, "training.pair_pool: must be"),
        ({**base, "training": {"plan": "distill", "teacher": "x.pt", "init_from": "y.pt"}}, "training.init_from"),
        ({**base, "training": {"plan": "fit"}}, "training.plan"),
        ({"model": {"name": "gan"}}, "no 'data' section"),
    ):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError, match=match):
            load_config(path)
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "missing.yaml")
    cfg = TrainConfig.from_dict(base)
    assert cfg.training == LoopConfig() and isinstance(cfg.data, DataConfig)
    assert dataclasses.replace(cfg.training, epochs=5).epochs == 5


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_committed_configs_load_and_have_no_absolute_paths(name, monkeypatch, tmp_path):
    monkeypatch.setenv("CALOFORGE_CACHE", str(tmp_path))
    path = REPO / "configs" / name
    data = yaml.safe_load(path.read_text())
    for particle in data["particles"] if is_template(data) else (None,):
        cfg = load_config(path, particle)
        assert not any(Path(f).is_absolute() for f in cfg.data.train_files + cfg.data.val_files)
        particle = cfg.model.particles[0]
        assert resolve_sample_path(cfg.data.train_files[0]) == tmp_path / "samples" / f"train_{particle}.h5"
    assert resolve_sample_path("train_e-.h5") == tmp_path / "samples" / "train_e-.h5"


def test_ema_weights_are_validated_saved_as_best_and_resumed(tmp_path, toy_samples):
    def config(epochs: int) -> TrainConfig:
        cfg = _config(toy_samples, epochs=epochs)
        return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, ema_decay=0.5))

    straight = tmp_path / "straight"
    train(config(2), straight)  # epoch 1 pre-trains the regressor, so epoch 2 is best.pt
    last = torch.load(straight / "last.pt", weights_only=True)
    shadow = last["training_state"]["ema"]["shadow_params"]
    best = load_model(straight / "best.pt", device="cpu")
    raw = load_model(straight / "last.pt", device="cpu")
    assert len(shadow) == len(list(best.parameters()))
    assert all(torch.equal(s, p) for s, p in zip(shadow, best.parameters()))
    assert not all(torch.equal(s, p) for s, p in zip(shadow, raw.parameters()))

    # interrupted after epoch 1 and resumed: the same average and the same raw weights
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="pre-training"):
        train(config(1), run)
    train(config(2), run)
    resumed = torch.load(run / "last.pt", weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(resumed["training_state"]["ema"]["shadow_params"], shadow))
    assert all(torch.equal(resumed["state_dict"][k], v) for k, v in last["state_dict"].items())

    with pytest.raises(ConfigError, match="training.ema_decay"):
        dataclasses.replace(config(1).training, ema_decay=1.0)
