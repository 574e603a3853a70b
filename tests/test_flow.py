"""The conditional normalizing flow (caloforge.models.flow) on toy showers: fits, training, sampling, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_inputs import toy_conditions, toy_showers, train_on_toy_showers

from caloforge.models import CheckpointError, build_model, load_model
from caloforge.models.base import Batch, ConfigError
from caloforge.models.flow import FlowModel
from caloforge.models.shape_space import ShapeTransform


def _small_flow(**changes) -> FlowModel:
    """A tiny flow; its splines on [-5, 5] (zuko's default range): after the 60 training steps of the tests, wider
    ones still map many cells to a fraction of 1 of E11x11, ties that no threshold separates."""
    torch.manual_seed(0)
    return build_model({"name": "flow", "particles": ["gamma"], "transforms": 2, "hidden": [32], "bins": 4,
                        "spline_bound": 5.0, **changes})


@pytest.fixture(scope="module")
def trained_flow_state() -> dict:
    """The state of a tiny flow trained for 60 steps on toy showers (trained once for the module)."""
    model = _small_flow(lr=3e-3)
    train_on_toy_showers(model, 60)
    return model.state_dict()


@pytest.fixture
def trained_flow(trained_flow_state) -> FlowModel:
    """A fresh copy of the trained tiny flow (tests may change it)."""
    model = _small_flow(lr=3e-3)
    model.load_state_dict(trained_flow_state)
    return model


def test_shape_transform_round_trip_keeps_fractions_and_empties_the_dequantisation_band():
    transform = ShapeTransform(dequantisation=1e-6, alpha=1e-6)
    maps, _ = toy_showers(500, 2)
    fractions = torch.as_tensor(maps.reshape(500, -1) / maps.sum(axis=(1, 2))[:, None])
    transform.fit(fractions, torch.Generator().manual_seed(0))
    y = transform(fractions, torch.rand(fractions.shape, generator=torch.Generator().manual_seed(1)))
    assert torch.isfinite(y).all() and abs(float(y.mean())) < 0.05
    back = transform.inverse(y)
    # empty cells, and the rare ones inside the dequantisation band, come back empty; the others do not
    assert torch.equal(back == 0, fractions < transform.threshold)
    assert torch.allclose(back, fractions, atol=3e-6)
    assert torch.allclose(back.sum(dim=1), torch.ones(500, dtype=back.dtype))


def test_coupling_transforms_invert_exactly_and_have_fixed_halves():
    one, two = _small_flow(spline_bound=15.0), _small_flow(hidden=[64])
    for a, b in zip(one.flow.transform.transforms, two.flow.transform.transforms):
        assert torch.equal(a.mask, b.mask) and 55 <= int(a.mask.sum()) <= 66  # the same random halves
    assert not torch.equal(*(t.mask for t in one.flow.transform.transforms))  # a new half per transform
    context, z = torch.randn(64, one.n_condition_inputs + 1), torch.randn(64, 121)
    with torch.no_grad():
        transform = one.flow(context).transform
        assert torch.allclose(transform(transform.inv(z)), z, atol=1e-4)


def test_training_lowers_both_likelihoods(trained_flow):
    maps, c = toy_showers(512, 3)
    fresh = _small_flow()
    fresh.load_state_dict({k: v for k, v in trained_flow.state_dict().items() if "flow." not in k and "energy_stage." not in k},
                          strict=False)
    batch = Batch(torch.as_tensor(maps), torch.as_tensor(c), torch.zeros(512, dtype=torch.long))
    with torch.no_grad():
        before = fresh.validation_step(batch)
        after = trained_flow.validation_step(batch)
    assert after["nll_shape"] < before["nll_shape"] - 0.2
    assert after["nll_energy"] < before["nll_energy"] - 0.5


def test_samples_are_finite_non_negative_reproducible_and_batch_independent(trained_flow):
    c = toy_conditions(300, 4)
    maps = trained_flow.sample(c, seed=5)
    assert maps.shape == (300, 11, 11) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0
    assert np.array_equal(maps, trained_flow.sample(c, seed=5))
    assert np.allclose(maps, trained_flow.sample(c, seed=5, batch_size=37), rtol=1e-5, atol=1e-7)
    assert not np.array_equal(maps, trained_flow.sample(c, seed=6))
    fraction = maps.sum(axis=(1, 2)) / c[:, 0]
    assert np.median(fraction) == pytest.approx(0.9, abs=0.05)  # the energy stage learnt E11x11 = 0.9 p
    assert 0.3 < (maps > 0).mean() < 0.99  # empty cells are exact zeros


def test_sampling_never_gives_nan_even_from_a_broken_network(trained_flow):
    with torch.no_grad():
        for p in trained_flow.flow.parameters():
            p.fill_(float("nan"))
    maps = trained_flow.sample(toy_conditions(20, 7), seed=1)
    assert np.isfinite(maps).all() and maps.min() >= 0


def test_checkpoint_round_trip_and_another_kind_refused(tmp_path, trained_flow):
    path = trained_flow.save(tmp_path / "flow.pt")
    again = load_model(path, device="cpu")
    c = toy_conditions(50, 8)
    assert isinstance(again, FlowModel)
    assert np.array_equal(again.sample(c, seed=2), trained_flow.sample(c, seed=2))
    from caloforge.models import GAN

    with pytest.raises(CheckpointError, match="holds a FlowModel, not a GAN"):
        GAN.load(path)


@pytest.mark.parametrize("key, value", [("transforms", 0), ("bins", 1), ("dequantisation", 0.0), ("hidden", [])])
def test_bad_settings_are_refused_in_one_line(key, value):
    with pytest.raises(ConfigError, match=f"model.{key}"):
        build_model({"name": "flow", "particles": ["gamma"], key: value})


def test_calibrated_thresholds_give_geant4_hit_fractions_per_crystal(trained_flow):
    maps, c = toy_showers(3000, 9)
    before = (trained_flow.sample(c, seed=2) > 0).mean(axis=0)
    trained_flow.calibrate(maps, c, seed=1)
    after = (trained_flow.sample(c, seed=2) > 0).mean(axis=0)  # other noise than the calibration's
    geant4 = (maps > 0).mean(axis=0)
    # a threshold can only empty cells: where the model hit a crystal too often it now matches Geant4 (within
    # the sampling error of 3000 showers), where too rarely it is left as it was
    over = before > geant4 + 0.05
    assert over.sum() > 50 and np.abs(after - geant4)[over].max() < 0.05
    assert np.array_equal(after[before < geant4], before[before < geant4])
    assert (trained_flow.shape.cell_threshold >= trained_flow.shape.threshold).all()


def test_weights_of_another_version_give_one_clear_error(tmp_path, trained_flow):
    ckpt = trained_flow.checkpoint()
    del ckpt["state_dict"]["shape.cell_threshold"]
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="flow weights do not fit this caloforge's FlowModel"):
        load_model(tmp_path / "old.pt")


def test_onnx_export_samples_the_same_maps_as_pytorch(tmp_path, trained_flow):
    from caloforge.export import OnnxShowerModel, export_onnx

    maps, c = toy_showers(2000, 10)
    trained_flow.calibrate(maps, c, seed=1)  # the per-crystal thresholds go into the graph too
    onnx_model = OnnxShowerModel(export_onnx(trained_flow, tmp_path / "flow.onnx"))
    assert onnx_model.noise_dim == trained_flow.noise_size == 123
    c = toy_conditions(500, 11)
    a, b = trained_flow.sample(c, seed=4), onnx_model.sample(c, seed=4)
    flips = np.mean((a > 0) != (b > 0))
    close = np.isclose(a, b, rtol=1e-3, atol=1e-6).all(axis=(1, 2))  # (500,) maps that agree cell by cell
    assert flips < 1e-3 and close.mean() > 0.95  # float rounding: a cell at its threshold may flip in a few maps
    assert np.allclose(a.sum(axis=(1, 2)), b.sum(axis=(1, 2)), rtol=1e-4)  # the same energies


def test_fourier_features_of_the_conditions_widen_the_input_and_export(tmp_path):
    """``condition_frequencies``: sines and cosines of the normalised conditions beside them, in both stages; the
    model trains, samples finite maps, exports to ONNX with the same maps, and a student of it takes the same
    input."""
    from caloforge.export import OnnxShowerModel, export_onnx
    from caloforge.training.distill_shape import student_of_two_stage

    model = _small_flow(lr=3e-3, condition_frequencies=3)
    assert model.n_condition_inputs == 6 + 2 * 6 * 3 and model.n_context == model.n_condition_inputs + 1
    train_on_toy_showers(model, 20)
    x = model.condition_input(torch.as_tensor(toy_conditions(4, 1)), torch.zeros(4, dtype=torch.long))
    assert x.shape == (4, 42) and torch.allclose(x[:, 6:24].pow(2) + x[:, 24:].pow(2), torch.ones(4, 18))
    c = toy_conditions(300, 11)
    a = model.sample(c, seed=4)
    assert np.isfinite(a).all() and a.min() >= 0
    b = OnnxShowerModel(export_onnx(model, tmp_path / "flow.onnx")).sample(c, seed=4)
    assert np.mean((a > 0) != (b > 0)) < 1e-3 and np.allclose(a.sum(axis=(1, 2)), b.sum(axis=(1, 2)), rtol=1e-4)
    student = student_of_two_stage(model, (16,))
    assert student.config.condition_frequencies == 3 and student.n_context == model.n_context
    with pytest.raises(ConfigError, match="model.condition_frequencies"):
        _small_flow(condition_frequencies=-1)
