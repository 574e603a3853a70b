"""The 8-bit export of the fully connected generators (caloforge.export.quantize) and the shipped 8-bit files."""

import json
from functools import partial

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from caloforge.cli.main import app
from caloforge.export import OnnxShowerModel
from caloforge.export.quantize import NotQuantizableError, calibration_rows, quantize_hidden_layers
from caloforge.models.inputs import NOISE_BOUND, gaussian_noise
from caloforge.models.pretrained import GAN_STEMS, HERE, INT8_SUFFIX, SEED_STEMS, default_model_paths

PARTICLES = ("gamma", "e-", "e+")


@pytest.fixture(scope="module")
def photon_rows():
    """Calibration rows for the photon model (fewer than the export's 50k: the test's time)."""
    return calibration_rows("gamma", 136, 4000, seed=3)


def _share(maps):
    return maps[:, 5, 5] / maps.sum(axis=(1, 2))


def test_noise_bound_is_the_largest_box_muller_value():
    """The 8-bit noise scale relies on it: the radius of the smallest 1 - u of float32 uniforms (2^-24)."""
    assert NOISE_BOUND == pytest.approx(np.sqrt(-2 * np.log(np.float32(2.0**-24))), rel=1e-12)
    assert 5.7 < NOISE_BOUND < 5.8
    assert np.abs(gaussian_noise(np.random.default_rng(0), 20000, 136)).max() <= NOISE_BOUND


def test_8bit_graph_gives_nearly_the_float_maps_and_no_batch_dependence(photon_rows, tmp_path):
    noise, cond, note = photon_rows
    float_path = HERE / f"{GAN_STEMS['gamma']}.onnx"
    q = quantize_hidden_layers(onnx.load(float_path), noise, cond, calibration_note=note)
    ops = [n.op_type for n in q.graph.node if n.name.startswith("/generator/")]
    assert ops.count("QGemm") == 2 and ops.count("Gemm") == 2  # the conditions' product and the output layer
    assert "/generator/Concat" not in {n.name for n in q.graph.node} and ops.count("Relu") == 1
    info = json.loads({p.key: p.value for p in q.metadata_props}["quantization"])
    assert info["input_scales"][0] == pytest.approx(NOISE_BOUND / 127) and info["calibration_rows"] == len(cond)
    onnx.save(q, tmp_path / "gamma_int8.onnx")
    q_model = OnnxShowerModel(tmp_path / "gamma_int8.onnx")
    ref = OnnxShowerModel(float_path)
    c = calibration_rows("gamma", 136, 3000, seed=9)[1]  # other tracks than the calibration's
    a, b = ref.sample(c, seed=2), q_model.sample(c, seed=2)
    # E11x11 is the energy model's (float32): the same; the shape moves by about 1e-3 of the centre's share,
    # where two draws of the model differ by 0.05-0.1
    np.testing.assert_allclose(b.sum(axis=(1, 2)), a.sum(axis=(1, 2)), rtol=1e-5)
    diff = np.abs(_share(a) - _share(b)).mean()
    assert diff < 3e-3 and diff < 0.05 * np.abs(_share(a) - _share(ref.sample(c, seed=3))).mean()
    # fixed scales: a shower does not depend on the rest of its batch
    np.testing.assert_array_equal(q_model.sample(c[:5], seed=2), q_model.sample(c, seed=2, batch_size=7)[:5])


def test_8bit_export_refuses_what_it_cannot_quantise(photon_rows, tmp_path):
    noise, cond, _ = photon_rows
    q = quantize_hidden_layers(onnx.load(HERE / f"{GAN_STEMS['gamma']}.onnx"), noise[:500], cond[:500])
    with pytest.raises(NotQuantizableError, match="quantised already"):
        quantize_hidden_layers(q, noise[:500], cond[:500])
    # the seed-size generator is convolutional: a clear error, no file
    out = tmp_path / "seed.onnx"
    result = CliRunner().invoke(app, ["export", str(HERE / f"{SEED_STEMS['gamma']}.pt"), "-o", str(out), "--int8"])
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert "fully connected generator" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", PARTICLES)
def test_shipped_8bit_exports_are_what_the_gan_set_runs(name):
    path = default_model_paths("onnx", family="gan")[name]
    assert path.name == f"{GAN_STEMS[name]}{INT8_SUFFIX}" and path.stat().st_size < 1_000_000
    assert default_model_paths("onnx", int8=False, family="gan")[name].name == f"{GAN_STEMS[name]}.onnx"
    q, f = OnnxShowerModel(path), OnnxShowerModel(HERE / f"{GAN_STEMS[name]}.onnx")
    assert "quantization" in q.metadata and "quantization" not in f.metadata
    c = calibration_rows(name, 136, 1000, seed=5)[1]
    assert np.abs(_share(q.sample(c, seed=1)) - _share(f.sample(c, seed=1))).mean() < 3e-3
    card = json.loads((HERE / "validation.json").read_text())[name]["int8"]
    assert card["onnx"] == path.name and card["showers_per_s"]["int8"] > 0


def test_default_paths_fall_back_to_float32_where_no_8bit_export_is_shipped(tmp_path, monkeypatch):
    import caloforge.models.pretrained as pretrained

    for stem in ("gan_gamma.onnx", "gan_e-.onnx", "gan_e-_int8.onnx", "gan_e-.pt"):
        (tmp_path / stem).write_bytes(b"")
    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    paths = partial(pretrained.default_model_paths, family="gan")
    assert {k: p.name for k, p in paths("onnx").items()} == {"e-": "gan_e-_int8.onnx", "gamma": "gan_gamma.onnx"}
    assert {k: p.name for k, p in paths("onnx", int8=False).items()} == {"e-": "gan_e-.onnx", "gamma": "gan_gamma.onnx"}
    assert {k: p.name for k, p in paths("torch").items()} == {"e-": "gan_e-.pt"}
