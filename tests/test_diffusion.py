"""The conditional diffusion model (caloforge.models.diffusion) on toy showers: training, samplers, ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_inputs import toy_conditions, toy_showers, train_on_toy_showers

from caloforge.models import CheckpointError, build_model, load_model
from caloforge.models.base import Batch, ConfigError
from caloforge.models.diffusion import DiffusionModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small_diffusion(**changes) -> DiffusionModel:
    """A tiny diffusion model (a two-level U-Net of 8 and 16 channels, 42k parameters)."""
    torch.manual_seed(0)
    return build_model({"name": "diffusion", "particles": ["gamma"], "block_channels": [8, 16], **changes})


@pytest.fixture(scope="module")
def trained_state(one_torch_thread) -> dict:
    """The state of a tiny diffusion model trained for 60 steps on toy showers (trained once for the module)."""
    model = _small_diffusion(lr=3e-3)
    train_on_toy_showers(model, 60)
    return model.state_dict()


@pytest.fixture
def trained(trained_state) -> DiffusionModel:
    """A fresh copy of the trained tiny model (tests may change it)."""
    model = _small_diffusion(lr=3e-3)
    model.load_state_dict(trained_state)
    return model


def test_training_lowers_the_shape_loss(trained):
    maps, c = toy_showers(512, 3)
    fresh = _small_diffusion()
    fresh.load_state_dict({k: v for k, v in trained.state_dict().items()
                           if "denoiser." not in k and "energy_stage." not in k}, strict=False)
    batch = Batch(torch.as_tensor(maps), torch.as_tensor(c), torch.zeros(512, dtype=torch.long))
    with torch.no_grad():
        torch.manual_seed(1)  # the same noise and timesteps for both
        before = fresh.validation_step(batch)
        torch.manual_seed(1)
        after = trained.validation_step(batch)
    assert after["mse_shape"] < before["mse_shape"] - 0.1
    assert after["nll_energy"] < before["nll_energy"] - 0.5


def test_samples_are_finite_non_negative_reproducible_and_batch_independent(trained):
    c = toy_conditions(300, 4)
    maps = trained.sample(c, seed=5)
    assert maps.shape == (300, 11, 11) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0
    assert np.array_equal(maps, trained.sample(c, seed=5))  # the sampler's state does not carry over
    assert np.allclose(maps, trained.sample(c, seed=5, batch_size=37), rtol=1e-4, atol=1e-7)
    assert not np.array_equal(maps, trained.sample(c, seed=6))
    fraction = maps.sum(axis=(1, 2)) / c[:, 0]
    assert np.median(fraction) == pytest.approx(0.9, abs=0.05)  # the energy stage learnt E11x11 = 0.9 p
    assert 0.05 < (maps > 0).mean() < 0.99  # empty cells are exact zeros


@pytest.mark.parametrize("sampler", ["ddim", "dpm"])
@pytest.mark.parametrize("steps", [1, 4])
def test_each_sampler_runs_at_few_steps(trained, sampler, steps):
    c = toy_conditions(100, 12)
    maps = trained.with_sampling(sampler, steps).sample(c, seed=1)
    assert np.isfinite(maps).all() and maps.min() >= 0
    assert np.array_equal(maps, trained.sample(c, seed=1))
    assert len(trained.sampling_scheduler().timesteps) == steps


def test_changed_sampling_is_used_and_kept_in_checkpoints(tmp_path, trained):
    c = toy_conditions(100, 13)
    ten = trained.sample(c, seed=2)
    assert trained.with_sampling(steps=3) is trained and trained.config.sampler == "dpm"  # the default, kept
    three = trained.sample(c, seed=2)
    assert not np.array_equal(ten, three)
    again = load_model(trained.with_sampling("ddim").save(tmp_path / "ddim3.pt"), device="cpu")
    assert (again.config.sampler, again.config.sampling_steps) == ("ddim", 3)
    assert np.array_equal(again.sample(c, seed=2), trained.sample(c, seed=2))
    with pytest.raises(ConfigError, match="model.sampling_steps"):
        trained.with_sampling(steps=0)
    assert trained.config.sampling_steps == 3  # a refused change leaves the model as it was


def test_checkpoint_round_trip_and_another_kind_refused(tmp_path, trained):
    path = trained.save(tmp_path / "diffusion.pt")
    again = load_model(path, device="cpu")
    c = toy_conditions(50, 8)
    assert isinstance(again, DiffusionModel)
    assert np.array_equal(again.sample(c, seed=2), trained.sample(c, seed=2))
    from caloforge.models.flow import FlowModel

    with pytest.raises(CheckpointError, match="holds a DiffusionModel, not a FlowModel"):
        FlowModel.load(path)


@pytest.mark.parametrize("key, value", [
    ("block_channels", []), ("block_channels", [8, 16, 32, 64]), ("layers_per_block", 0), ("attention", [2]),
    ("train_timesteps", 1), ("beta_schedule", "cosine"), ("prediction", "sample"), ("sampler", "euler"),
    ("sampling_steps", 0), ("sampling_steps", 401),
])
def test_bad_settings_are_refused_in_one_line(key, value):
    with pytest.raises(ConfigError, match=f"model.{key}") as err:
        build_model({"name": "diffusion", "particles": ["gamma"], key: value})
    assert "\n" not in str(err.value)


def test_calibrated_thresholds_give_geant4_hit_fractions_per_crystal(trained):
    maps, c = toy_showers(3000, 9)
    trained.with_sampling(steps=4)
    before = (trained.sample(c, seed=2) > 0).mean(axis=0)
    trained.calibrate(maps, c, seed=1)
    after = (trained.sample(c, seed=2) > 0).mean(axis=0)  # other noise than the calibration's
    geant4 = (maps > 0).mean(axis=0)
    # a threshold can only empty cells: where the model hit a crystal too often it now matches Geant4 (within
    # the sampling error of 3000 showers), where too rarely it is left as it was
    over = before > geant4 + 0.05
    assert over.sum() > 50 and np.abs(after - geant4)[over].max() < 0.05
    assert np.array_equal(after[before < geant4], before[before < geant4])
    assert (trained.shape.cell_threshold >= trained.shape.threshold).all()


@pytest.mark.parametrize("sampler", ["ddim", "dpm"])
def test_onnx_export_samples_the_same_maps_as_pytorch(tmp_path, trained, sampler):
    from caloforge.export import OnnxShowerModel, export_onnx

    maps, c = toy_showers(2000, 10)
    trained.with_sampling(sampler, 4).calibrate(maps, c, seed=1)  # the per-crystal thresholds go into the graph too
    onnx_model = OnnxShowerModel(export_onnx(trained, tmp_path / "diffusion.onnx"))
    assert onnx_model.noise_dim == trained.noise_size == 123
    c = toy_conditions(500, 11)
    a, b = trained.sample(c, seed=4), onnx_model.sample(c, seed=4)
    flips = np.mean((a > 0) != (b > 0))
    close = np.isclose(a, b, rtol=1e-3, atol=1e-6).all(axis=(1, 2))  # (500,) maps that agree cell by cell
    assert flips < 1e-3 and close.mean() > 0.95  # float rounding: a cell at its threshold may flip in a few maps
    assert np.allclose(a.sum(axis=(1, 2)), b.sum(axis=(1, 2)), rtol=1e-4)  # the same energies


def test_a_student_learns_from_a_pool_of_pairs_sampled_once(trained, monkeypatch):
    """``training.pair_pool``: the teacher samples its pairs once, the same for the same seed, and the student's
    held-out losses fall as with fresh pairs."""
    from caloforge.training.config import LoopConfig
    from caloforge.training.data import ShowerData
    from caloforge.training.distill_shape import ShapeDistillPlan, student_of_two_stage
    from caloforge.training.epochs import train_in_memory

    def data(n: int, seed: int) -> ShowerData:
        maps, c = toy_showers(n, seed)
        return ShowerData(maps, c, np.zeros(n, dtype=np.int64), ("gamma",))

    trained.with_sampling("ddim", 2)
    maps, c = toy_showers(1000, 1)
    trained.calibrate(maps, c, seed=1)
    loop = LoopConfig(plan="distill", teacher="in memory", student_hidden=(64, 64), epochs=2, steps_per_epoch=40,
                      batch_size=256, learning_rate=1e-2, scheduler="one-cycle", seed=0, device="cpu",
                      progress=False, sample_batch_size=700, pair_pool=1500)
    calls = []
    sample_shape = trained.sample_shape
    monkeypatch.setattr(trained, "sample_shape", lambda z, ctx: calls.append(len(z)) or sample_shape(z, ctx))
    plan = ShapeDistillPlan(trained, loop, data(2000, 2), data(400, 3))
    held_calls = len(calls)
    history = train_in_memory(plan)
    assert calls[held_calls:] == [700, 700, 100]  # the pool, sampled once in chunks, and nothing at the steps
    again = ShapeDistillPlan(trained, loop, data(2000, 2), data(400, 3))
    assert all(torch.equal(a, b) for a, b in zip(plan.pair_pool(), again.pair_pool()))
    fresh = student_of_two_stage(trained, (64, 64), seed=5)
    with torch.no_grad():
        start = fresh.distillation_losses(*plan.held_pairs)
    assert history[-1]["val_hit"] < 0.9 * start["hit"].item()  # measured: 0.84 of the start
    assert history[-1]["val_value"] < 0.5 * start["value"].item()  # 0.24
    assert plan.record(history)["distilled"]["pair_pool"] == 1500
