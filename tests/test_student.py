"""The one-pass student of a two-stage model (caloforge.models.student) and its distillation plan
(caloforge.training.distill_shape), with a tiny flow on toy showers as the teacher."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from model_inputs import toy_conditions, toy_showers, train_on_toy_showers

from caloforge.models import ConfigError, build_model, load_model
from caloforge.models.base import Batch
from caloforge.models.flow import FlowModel
from caloforge.models.student import StudentModel, ValueMap
from caloforge.training.config import LoopConfig
from caloforge.training.data import ShowerData
from caloforge.training.distill_shape import ShapeDistillPlan, student_of_two_stage
from caloforge.training.epochs import train_in_memory
from caloforge.training.plans import plan_class

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher() -> FlowModel:
    """A tiny flow fitted to toy showers, trained for 30 steps, its thresholds calibrated."""
    torch.manual_seed(0)
    model = build_model({"name": "flow", "particles": ["gamma"], "transforms": 2, "hidden": [32], "bins": 4,
                         "spline_bound": 5.0, "lr": 3e-3})
    train_on_toy_showers(model, 30)
    maps, c = toy_showers(2000, 1)
    model.calibrate(maps, c, seed=1)
    return model.eval()


def _data(n: int, seed: int) -> ShowerData:
    maps, c = toy_showers(n, seed)
    return ShowerData(maps, c, np.zeros(n, dtype=np.int64), ("gamma",))


@pytest.fixture(scope="module")
def distilled(teacher) -> ShapeDistillPlan:
    """A student of (64, 64) distilled for 2 x 60 steps of 256 pairs, in memory."""
    loop = LoopConfig(plan="distill", teacher="in memory", student_hidden=(64, 64), epochs=2, steps_per_epoch=60,
                      batch_size=256, learning_rate=1e-2, scheduler="one-cycle", seed=0, device="cpu", progress=False,
                      sample_batch_size=1024)
    plan = ShapeDistillPlan(teacher, loop, _data(3000, 2), _data(600, 3))
    plan.history = train_in_memory(plan)
    return plan


def test_the_student_takes_the_teachers_stages_and_a_fresh_network(teacher):
    student = student_of_two_stage(teacher, (32,))
    assert isinstance(student, StudentModel) and student.config.teacher == "flow"
    t, s = teacher.state_dict(), student.state_dict()
    shared = [k for k in s if not k.startswith(("net.", "value_map.")) and k not in ("hit_offset", "p_edges_gev")]
    assert any(k.startswith("energy_stage.") for k in shared) and "shape.cell_threshold" in shared
    for key in shared:
        assert torch.equal(t[key], s[key]), key
    assert student.noise_size == teacher.noise_size == 123
    assert plan_class("distill", "student") is ShapeDistillPlan and plan_class("distill", "gan") is not ShapeDistillPlan
    with pytest.raises(ConfigError, match="trained by distillation"):
        student.training_step("student", Batch(torch.ones(4, 11, 11), torch.as_tensor(toy_conditions(4)),
                                               torch.zeros(4, dtype=torch.long)))


def test_distillation_learns_the_teachers_hits_and_values_and_leaves_it_unchanged(teacher, distilled):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    fresh = student_of_two_stage(teacher, (64, 64), seed=5)
    with torch.no_grad():
        start = fresh.distillation_losses(*distilled.held_pairs)
    first, last = distilled.history[0], distilled.history[-1]
    assert last["val_hit"] < 0.6 * start["hit"].item() and last["val_value"] < 0.6 * start["value"].item()
    assert last["val_hit"] <= first["val_hit"] * 1.05
    assert np.isfinite(last["val_sp_occupancy"])
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    record = distilled.record(distilled.history)["distilled"]
    assert record["steps"] == 120 and record["hit_bce"] == last["val_hit"]
    # the same noise gives the teacher's hits more often than each crystal's commoner state would
    z, context, y = distilled.held_pairs
    hit = distilled.teacher.shape.raw_fractions(y) >= distilled.teacher.shape.cell_threshold  # (N, 121)
    with torch.no_grad():
        logits, _ = distilled.model.heads(z, context)
    share = hit.float().mean(dim=0)
    assert ((logits > 0) == hit).float().mean() > torch.maximum(share, 1 - share).mean() + 0.02


def test_calibrated_offsets_give_geant4_hit_fractions_per_crystal(distilled):
    student = distilled.model
    maps, c = toy_showers(3000, 9)
    student.calibrate(maps, c, seed=1)
    after = (student.sample(c, seed=2) > 0).mean(axis=0)  # other noise than the calibration's
    geant4 = (maps > 0).mean(axis=0)
    assert np.abs(after - geant4).max() < 0.05  # the sampling error of 3000 showers is at most 0.009
    # and where hit, each crystal's deposits (fractions of E11x11, before the sampled map is normalised to its
    # drawn E11x11) have Geant4's distribution
    noise = torch.randn(3000, student.noise_size, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        raw = student.draw(noise, torch.as_tensor(c), torch.zeros(3000, dtype=torch.long))[0].numpy()  # (N, 121)
    g4 = maps.reshape(3000, -1) / maps.sum(axis=(1, 2))[:, None]
    for cell in (0, 40, 60):
        a, b = raw[:, cell][raw[:, cell] > 0], g4[:, cell][g4[:, cell] > 0]
        assert np.quantile(a, [0.25, 0.5, 0.75]) == pytest.approx(np.quantile(b, [0.25, 0.5, 0.75]), rel=0.15)


def test_the_value_map_starts_as_the_identity_and_maps_one_distribution_onto_another():
    value_map = ValueMap(bins=2)
    y = torch.linspace(-15, 15, 121 * 4).view(4, 121)
    assert torch.allclose(value_map(y, torch.tensor([0, 1, 1, 0])), y, atol=1e-3)  # float rounding of the grid
    rng = torch.Generator().manual_seed(0)
    source = [torch.randn(5000, generator=rng) * 0.5 for _ in range(121)]  # a narrow student
    target = [torch.randn(4000, generator=rng) * 2.0 + 1.0 for _ in range(121)]  # a wider Geant4
    source[3], target[3] = source[3][:10], target[3][:10]  # too few hits: left as the identity
    value_map.fit(source, target, bins=[1])
    x = torch.stack([s[:4000] for s in source[:3]] + [torch.zeros(4000)] * 118, dim=1)  # (4000, 121)
    mapped = value_map(x, torch.ones(4000, dtype=torch.long))
    assert torch.allclose(mapped[:, :3].mean(dim=0), torch.full((3,), 1.0), atol=0.1)
    assert torch.allclose(mapped[:, :3].std(dim=0), torch.full((3,), 2.0), rtol=0.05)
    assert torch.allclose(mapped[:, 3], torch.zeros(4000), atol=1e-3)
    order = torch.argsort(source[0][:4000])
    assert (mapped[order, 0].diff() >= -1e-6).all()  # monotone: the order of the values is kept
    assert torch.allclose(value_map(x, torch.zeros(4000, dtype=torch.long)), x, atol=1e-3)  # bin 0 untouched
    value_map.reset()
    assert torch.allclose(value_map(x, torch.ones(4000, dtype=torch.long)), x, atol=1e-3)


def test_the_corrections_are_fitted_in_each_momentum_bin(distilled):
    """Toy showers whose halo is five times denser below 1 GeV/c than above: the calibrated student hits the
    halo as often as they do on both sides (one correction for all momenta would give the average)."""
    student = copy.deepcopy(distilled.model)
    rng = np.random.default_rng(4)
    c = toy_conditions(24000, 4)
    dense = np.where(c[:, 0] < 1.0, 0.5, 0.1).astype(np.float32)[:, None, None]
    maps = (rng.exponential(1.0, (24000, 11, 11)) * (rng.random((24000, 11, 11)) < dense)).astype(np.float32)
    maps[:, 5, 5] += 5.0
    maps *= (0.9 * c[:, 0] / maps.sum(axis=(1, 2)))[:, None, None]
    student.calibrate(maps, c, seed=1)
    sampled = student.sample(c, seed=2) > 0
    for low in (True, False):
        rows = ((c[:, 0] >= 0.3) & (c[:, 0] < 1.0)) if low else (c[:, 0] >= 1.0)  # bin 0 has too few events
        halo = np.ones((11, 11), dtype=bool)
        halo[5, 5] = False
        assert sampled[rows][:, halo].mean() == pytest.approx((maps[rows] > 0)[:, halo].mean(), abs=0.03)
    assert (student.hit_offset[1] != student.hit_offset[-1]).any()


def test_samples_are_finite_reproducible_and_survive_a_checkpoint(tmp_path, distilled):
    student = distilled.model
    c = toy_conditions(300, 6)
    maps = student.sample(c, seed=3)
    assert maps.shape == (300, 11, 11) and np.isfinite(maps).all() and maps.min() >= 0
    assert np.array_equal(maps, student.sample(c, seed=3))
    assert np.allclose(maps, student.sample(c, seed=3, batch_size=41), rtol=1e-5, atol=1e-7)
    again = load_model(student.save(tmp_path / "student.pt"), device="cpu")
    assert isinstance(again, StudentModel) and np.array_equal(again.sample(c, seed=3), maps)


def test_onnx_export_samples_the_same_maps_as_pytorch(tmp_path, distilled):
    from typer.testing import CliRunner

    from caloforge.cli.main import app
    from caloforge.export import OnnxShowerModel

    student = distilled.model
    result = CliRunner().invoke(app, ["export", str(student.save(tmp_path / "student.pt")), "-o",
                                      str(tmp_path / "student.onnx")])
    assert result.exit_code == 0 and "noise (batch, 123)" in result.output, result.output
    onnx_model = OnnxShowerModel(tmp_path / "student.onnx")
    c = toy_conditions(500, 11)
    a, b = student.sample(c, seed=4), onnx_model.sample(c, seed=4)
    assert np.mean((a > 0) != (b > 0)) < 1e-3  # float rounding: a logit at 0 may flip in a few cells
    assert np.isclose(a, b, rtol=1e-3, atol=1e-6).all(axis=(1, 2)).mean() > 0.95


@pytest.mark.parametrize("key, value", [("hidden", []), ("teacher", ""), ("dequantisation", 0.0),
                                        ("calibration_p_edges_gev", [1.0, 0.5])])
def test_bad_settings_are_refused_in_one_line(key, value):
    with pytest.raises(ConfigError, match=f"model.{key}"):
        build_model({"name": "student", "particles": ["gamma"], key: value})
