"""The model interface (caloforge.models.base), the model families (caloforge.models.registry), checkpoints and
configurations, the GAN as a whole (caloforge.models.gan.model), the map transforms and the energy model."""

import numpy as np
import pytest
import torch
from model_inputs import gan, toy_batch, toy_conditions  # noqa: F401  (gan: a fixture)

from caloforge.models import (
    FAMILIES,
    GAN,
    CheckpointError,
    ConfigError,
    GANConfig,
    ShowerModel,
    build_model,
    load_model,
    model_config_from_dict,
    model_registry,
)
from caloforge.models.base import Batch
from caloforge.models.energy import F_MAX
from caloforge.training.energy_fit import fit_energy_model
from caloforge.models.transforms import fraction_to_model, gev_to_model, model_to_fraction, model_to_gev

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REMOVED_ACTIVE = {
    "cell_covariance_weight": 10.0,
    "cell_covariance_size": 3,
    "condition_moment_weight": 1.0,
    "regressor_loss": "matched",
}
"""Options removed on 2026-12-06, each at a value that switched it on."""
REMOVED_INERT = {"cell_covariance_weight": 0.0, "cell_covariance_size": 5, "condition_moment_weight": 0,
                 "regressor_loss": "mse"}
"""The same options at the values at which they did nothing (as the shipped checkpoints hold them)."""


@pytest.mark.parametrize("loss", ["gan", "wgan-gp"])
def test_training_steps_give_finite_losses(loss):
    torch.manual_seed(2)
    model = GAN(GANConfig(particles=["e-", "gamma"], loss=loss, output_transform="log"))
    model.fit_normalisation(toy_conditions(100))
    opts = model.configure_optimizers()
    assert set(opts) == {"generator", "discriminator", "regressor"}
    assert [s.name for s in model.training_plan(0)] == ["regressor"]
    assert [s.name for s in model.training_plan(model.n_pretrain_epochs)] == ["discriminator", "generator"]
    b = toy_batch(8, n_particles=2)
    for step in ("regressor", "discriminator", "generator"):
        loss_t, logs = model.training_step(step, b)
        assert loss_t.ndim == 0 and torch.isfinite(loss_t)
        loss_t.backward()
        assert all(np.isfinite(v) for v in logs.values())
    assert "regressor_mse" in model.validation_step(b)


def test_sample_deterministic_non_negative_and_batch_independent(gan):
    c = toy_conditions(50, seed=3)
    a = gan.sample(c, seed=11)
    assert a.shape == (50, 11, 11) and a.dtype == np.float32 and (a >= 0).all()
    assert np.array_equal(a, gan.sample(c, seed=11))
    # the same noise; float32 sums in another order move crystals by up to 4e-7 GeV (other noise: 1e-2)
    assert np.allclose(a, gan.sample(c, seed=11, batch_size=7), rtol=1e-5, atol=1e-6)
    assert not np.array_equal(a, gan.sample(c, seed=12))
    repeated = gan.sample(c[0], n=4, seed=1)
    assert repeated.shape == (4, 11, 11)
    assert gan.training  # sampling leaves the mode as it was
    with pytest.raises(ValueError, match="does not match"):
        gan.sample(c, n=3)
    with pytest.raises(ValueError, match="shape"):
        gan.sample(np.zeros((3, 5)))


def test_log_transform_round_trip_and_non_negative():
    f = torch.tensor([0.0, 1e-6, 1e-3, 0.2, 1.0])
    u = fraction_to_model(f, kind="log", epsilon=1e-4)
    assert torch.allclose(u[[0, -1]], torch.tensor([0.0, 1.0]))
    assert torch.allclose(model_to_fraction(u, kind="log", epsilon=1e-4), f, rtol=1e-4, atol=1e-9)
    maps = torch.rand(3, 11, 11)
    p = torch.tensor([0.5, 1.0, 2.0])
    back = model_to_gev(gev_to_model(maps, p, kind="log", epsilon=1e-4), p, kind="log", epsilon=1e-4)
    assert torch.allclose(back.squeeze(1), maps, rtol=1e-4, atol=1e-7)


def test_save_load_round_trip(tmp_path, gan):
    c = toy_conditions(20, seed=4)
    path = gan.save(tmp_path / "gan.pt")
    for loaded in (load_model(path, device="cpu"), GAN.load(path, device="cpu"), ShowerModel.load(path)):
        assert isinstance(loaded, GAN) and loaded.config == gan.config
        assert np.array_equal(loaded.sample(c, seed=5), gan.sample(c, seed=5))
        assert loaded.normalisation() == gan.normalisation()
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["caloforge_version"] and ckpt["config"]["loss"] == "gan" and ckpt["model"] == "gan"


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(junk)
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a caloforge model checkpoint"):
        load_model(tmp_path / "other.pt")


def test_particles_one_hot_and_engine_samplers():
    model = build_model({"name": "gan", "particles": ["e-", "e+", "gamma"]})
    model.fit_normalisation(toy_conditions(50))
    c = toy_conditions(5)
    with pytest.raises(ValueError, match="pass particle"):
        model.sample(c)
    with pytest.raises(ValueError, match="covers"):
        GAN(GANConfig(particles=["gamma"])).sample(c, particle="e-")
    samplers = model.samplers()
    assert sorted(samplers) == [-11, 11, 22]
    assert np.array_equal(samplers[11].sample(c, seed=3), model.sample(c, particle="e-", seed=3))
    assert not np.array_equal(samplers[11].sample(c, seed=3), samplers[-11].sample(c, seed=3))


def test_model_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown configuration key model.'noise_dims'.*did you mean 'noise_dim'"):
        model_config_from_dict({"name": "gan", "noise_dims": 10})
    with pytest.raises(ConfigError, match="model.loss"):
        model_config_from_dict({"name": "gan", "loss": "hinge"})
    with pytest.raises(ConfigError, match="expected an integer"):
        model_config_from_dict({"name": "gan", "noise_dim": "many"})
    with pytest.raises(ConfigError, match="unknown particle"):
        model_config_from_dict({"name": "gan", "particles": ["mu-"]})
    with pytest.raises(ConfigError, match="not a known model"):
        model_config_from_dict({"name": "vae"})
    cfg = model_config_from_dict({"name": "gan", "betas": [0.0, 0.9], "lr_generator": 1})
    assert cfg.betas == (0.0, 0.9) and cfg.lr_generator == 1.0


def test_one_registry_of_model_families_imported_on_first_use():
    import subprocess
    import sys

    from caloforge.models.diffusion import DiffusionModel
    from caloforge.models.flow import FlowModel
    from caloforge.models.student import StudentModel

    families = {"gan": GAN, "flow": FlowModel, "student": StudentModel, "diffusion": DiffusionModel}
    assert model_registry() == families and list(FAMILIES) == list(families)
    code = "import sys, caloforge.models as m; m.model_config_from_dict; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # importing the package does not import PyTorch
    assert type(build_model({"name": "gan", "noise_dim": 8})) is GAN


@pytest.mark.parametrize("key", sorted(REMOVED_ACTIVE))
def test_a_checkpoint_with_a_removed_option_switched_on_is_one_clear_error(tmp_path, key):
    path = GAN(GANConfig()).save(tmp_path / "old.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"].update(REMOVED_INERT)
    ckpt["config"][key] = REMOVED_ACTIVE[key]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path, device="cpu")
    message = str(err.value)
    assert "\n" not in message and f"model.{key}" in message
    assert "removed on 2026-12-06" in message and "caloforge 0.1.0 (git commit cf77fbe)" in message
    with pytest.raises(ConfigError, match=f"model.{key}: .*removed on 2026-12-06"):  # the same in a configuration
        model_config_from_dict({"name": "gan", key: REMOVED_ACTIVE[key]})


def test_a_checkpoint_with_removed_options_at_their_inert_values_loads(tmp_path, gan):
    path = gan.save(tmp_path / "old.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"].update(REMOVED_INERT)
    torch.save(ckpt, path)
    loaded = load_model(path, device="cpu")
    assert loaded.config == gan.config
    c = toy_conditions(20, seed=4)
    assert np.array_equal(loaded.sample(c, seed=5), gan.sample(c, seed=5))
    assert model_config_from_dict({"name": "gan", **REMOVED_INERT}) == GANConfig()


# ---- the energy model (caloforge.models.energy) ---------------------------------------------------------


def _maps_with_fraction(c: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Maps whose E11x11 / p is 0.90 + 0.03 x (dz_pos / 1.3 cm) with a spread of 0.01, and a low tail."""
    rng = np.random.default_rng(seed)
    f = 0.90 + 0.03 * c[:, 3] / 1.3 + 0.01 * rng.normal(size=len(c))
    tail = rng.uniform(size=len(c)) < 0.1
    f[tail] = rng.uniform(0.3, 0.85, tail.sum())
    maps = rng.exponential(1.0, (len(c), 11, 11))
    maps *= (f * c[:, 0] / maps.sum(axis=(1, 2)))[:, None, None]
    return maps.astype(np.float32), f


def test_mixture_density_network_learns_a_conditional_peak_and_its_tail():
    torch.manual_seed(0)
    c = toy_conditions(20_000, 1)
    gan = GAN(GANConfig())
    gan.fit_normalisation(c)
    maps, _ = _maps_with_fraction(c, 2)
    gan, nll = fit_energy_model(gan, maps, c, epochs=8, seed=3)
    energy = gan.energy
    assert nll[-1] < nll[0] - 1.0
    probe = np.zeros((4000, 6), np.float32)
    probe[:, 3] = 1.0  # dz_pos one standard deviation up: the peak moves to 0.90 + 0.03 std(dz_pos) / 1.3
    with torch.no_grad():
        drawn = energy.fraction(torch.as_tensor(probe), torch.randn(4000, 2, generator=torch.Generator().manual_seed(5)))
    drawn = drawn.numpy()
    peak = drawn[drawn > 0.86]
    assert peak.mean() == pytest.approx(0.90 + 0.03 * c[:, 3].std() / 1.3, abs=0.004)
    assert peak.std() == pytest.approx(0.01, rel=0.3)
    assert np.mean(drawn < 0.86) == pytest.approx(0.1, abs=0.03)  # the tail's share
    assert drawn.max() < F_MAX


def test_gan_with_energy_model_draws_the_total_and_keeps_the_shape(tmp_path):
    torch.manual_seed(0)
    c = toy_conditions(20_000, 4)
    maps, _ = _maps_with_fraction(c, 5)
    plain = GAN(GANConfig())
    plain.fit_normalisation(c)
    model = GAN(GANConfig())
    model.load_state_dict(plain.state_dict())
    model, history = fit_energy_model(model, maps, c, epochs=10, seed=1)
    assert model.config.energy_model and model.noise_size == model.config.noise_dim + 2 and len(history) == 10
    probe = toy_conditions(3000, 6)
    noise = torch.randn(3000, model.noise_size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        shaped = model.generate(noise, torch.as_tensor(probe), torch.zeros(3000, dtype=torch.long))[:, 0]
        bare = plain.generate(noise[:, : plain.config.noise_dim], torch.as_tensor(probe), torch.zeros(3000))[:, 0]
    fraction = shaped.sum(dim=(1, 2)) / torch.as_tensor(probe[:, 0])
    assert 0.0 < fraction.min() and fraction.max() < F_MAX
    assert fraction.median().item() == pytest.approx(np.median(maps.sum(axis=(1, 2)) / c[:, 0]), abs=0.02)
    # the same shape: the maps are the generator's, rescaled
    assert torch.allclose(shaped / shaped.sum(dim=(1, 2), keepdim=True), bare / bare.sum(dim=(1, 2), keepdim=True),
                          atol=1e-5)
    path = model.save(tmp_path / "with_energy.pt")
    again = load_model(path, device="cpu")
    assert again.config.energy_model
    assert np.array_equal(again.sample(probe[:50], seed=3), model.sample(probe[:50], seed=3))


def test_an_unfitted_energy_model_is_refused():
    model = GAN(GANConfig(energy_model=True))
    model.fit_normalisation(toy_conditions(100))
    with pytest.raises(ValueError, match="not fitted"):
        model.sample(toy_conditions(5), seed=1)


def test_onnx_export_of_a_model_with_energy_model_agrees(tmp_path):
    from caloforge.export import OnnxShowerModel, export_onnx

    torch.manual_seed(0)
    c = toy_conditions(4000, 8)
    maps, _ = _maps_with_fraction(c, 9)
    model = GAN(GANConfig(output_transform="log", mean_shower_bias=True))
    model.fit_normalisation(c)
    model, _ = fit_energy_model(model, maps, c, epochs=2)
    onnx_model = OnnxShowerModel(export_onnx(model, tmp_path / "m.onnx"))
    assert onnx_model.noise_dim == model.noise_size
    probe = toy_conditions(500, 10)
    a, b = model.sample(probe, seed=11), onnx_model.sample(probe, seed=11)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("transform", ["none", "log"])
def test_training_steps_see_maps_with_the_drawn_total(transform):
    torch.manual_seed(0)
    c = toy_conditions(4000, 12)
    maps, _ = _maps_with_fraction(c, 13)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False, output_transform=transform,
                          energy_constraint_weight=1.0, shape_mmd_weight=1.0))
    model.fit_normalisation(c)
    model, _ = fit_energy_model(model, maps, c, epochs=2)
    batch = Batch(torch.as_tensor(maps[:64]), torch.as_tensor(c[:64]), torch.zeros(64, dtype=torch.long))
    cond = model.condition_input(batch.conditions, batch.particle)
    fake = model._fake(batch.conditions, cond)
    total = model_to_gev(fake, batch.conditions[:, 0], kind=transform, epsilon=model.config.log_epsilon).sum(dim=(1, 2, 3))
    fraction = total / batch.conditions[:, 0]
    assert torch.all((fraction > 0) & (fraction < F_MAX))
    assert fraction.std() > 0.005  # drawn, not one value
    for step in ("discriminator", "generator"):
        loss, logs = model.training_step(step, batch)
        assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for p in model.energy.parameters())  # the energy model stays as fitted


def test_gaussian_noise_is_standard_normal_and_independent_of_blocking():
    from scipy import stats

    from caloforge.models.inputs import gaussian_noise

    z = gaussian_noise(np.random.default_rng(8), 20_000, 51)  # odd width: the last pair loses its sine
    assert z.shape == (20_000, 51) and z.dtype == np.float32 and z.flags.c_contiguous
    assert abs(z.mean()) < 0.003 and abs(z.std() - 1) < 0.003
    assert stats.kstest(z[:, ::5].ravel()[:100_000], "norm").pvalue > 1e-3
    assert abs(stats.kurtosis(z.ravel())) < 0.02
    corr = np.corrcoef(z[:5000].T)  # cosine and sine halves of each row, and rows, uncorrelated
    assert np.abs(corr[~np.eye(51, dtype=bool)]).max() < 0.07
    rng = np.random.default_rng(8)
    assert np.array_equal(z[:30], np.concatenate([gaussian_noise(rng, 7, 51), gaussian_noise(rng, 23, 51)]))
    # drawn into a reused buffer (the ONNX sampler's): the same numbers, a view of the buffer for an even width
    buffer = np.full(30 * 52 + 5, np.nan, dtype=np.float32)
    rng = np.random.default_rng(8)
    assert np.array_equal(gaussian_noise(rng, 30, 51, out=buffer), z[:30])
    even = gaussian_noise(np.random.default_rng(3), 30, 52, out=buffer)
    assert np.shares_memory(even, buffer) and np.array_equal(even, gaussian_noise(np.random.default_rng(3), 30, 52))
    with pytest.raises(ValueError, match="noise buffer"):
        gaussian_noise(rng, 30, 52, out=np.empty(100, dtype=np.float32))
