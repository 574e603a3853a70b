import numpy as np
import pytest
import torch

from caloforge.models import GAN, GANConfig, load_model
from caloforge.models.energy import F_MAX, EnergyModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conditions(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 6)).astype(np.float32) * np.array([0, 0.06, 0.015, 1.3, 0.015, 60], np.float32)
    c[:, 0] = rng.uniform(0.1, 3.0, n)
    return c


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
    c = _conditions(20_000, 1)
    _, f = _maps_with_fraction(c, 2)
    x = (c - c.mean(0)) / np.maximum(c.std(0), 1e-6)
    energy = EnergyModel(6)
    nll = energy.fit(x, f, epochs=8, seed=3)
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
    c = _conditions(20_000, 4)
    maps, _ = _maps_with_fraction(c, 5)
    plain = GAN(GANConfig())
    plain.fit_normalisation(c)
    model = GAN(GANConfig())
    model.load_state_dict(plain.state_dict())
    history = model.fit_energy(maps, c, epochs=10, seed=1)
    assert model.config.energy_model and model.noise_size == model.config.noise_dim + 2 and len(history) == 10
    probe = _conditions(3000, 6)
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
    model.fit_normalisation(_conditions(100))
    with pytest.raises(ValueError, match="not fitted"):
        model.sample(_conditions(5), seed=1)


def test_onnx_export_of_a_model_with_energy_model_agrees(tmp_path):
    from caloforge.export import OnnxShowerModel, export_onnx

    torch.manual_seed(0)
    c = _conditions(4000, 8)
    maps, _ = _maps_with_fraction(c, 9)
    model = GAN(GANConfig(output_transform="log", mean_shower_bias=True))
    model.fit_normalisation(c)
    model.fit_energy(maps, c, epochs=2)
    onnx_model = OnnxShowerModel(export_onnx(model, tmp_path / "m.onnx"))
    assert onnx_model.noise_dim == model.noise_size
    probe = _conditions(500, 10)
    a, b = model.sample(probe, seed=11), onnx_model.sample(probe, seed=11)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("transform", ["none", "log"])
def test_training_steps_see_maps_with_the_drawn_total(transform):
    from caloforge.models.base import Batch
    from caloforge.models.transforms import model_to_gev

    torch.manual_seed(0)
    c = _conditions(4000, 12)
    maps, _ = _maps_with_fraction(c, 13)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False, output_transform=transform,
                          energy_constraint_weight=1.0, shape_mmd_weight=1.0))
    model.fit_normalisation(c)
    model.fit_energy(maps, c, epochs=2)
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
