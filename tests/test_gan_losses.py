"""The GAN's loss functions (caloforge.models.gan.losses) and the table of generator loss terms
(caloforge.models.gan.generator_loss)."""

import numpy as np
import pytest
import torch
from model_inputs import toy_batch

from caloforge.models import GAN, ConfigError, GANConfig
from caloforge.models.gan import (
    GENERATOR_TERMS,
    energy_sum_constraint,
    gradient_penalty,
    neighbour_mmd,
    shape_mmd,
    shape_moment_constraint,
)
from caloforge.models.transforms import gev_to_model
from caloforge.showers.shapes_torch import containment_fractions, shape_ratios, shower_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gradient_penalty_finite_and_differentiable():
    torch.manual_seed(1)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False))
    b = toy_batch(8)
    p = b.conditions[:, 0]
    cond = model.condition_input(b.conditions, b.particle)
    real = gev_to_model(b.maps_gev, p, kind="none", epsilon=1e-4)
    fake = model.generator(torch.randn(8, model.config.noise_dim), cond).detach()
    gp = gradient_penalty(model.discriminator, real, fake, cond, p)
    assert gp.ndim == 0 and torch.isfinite(gp) and gp >= 0
    gp.backward()
    assert all(torch.isfinite(q.grad).all() for q in model.discriminator.parameters() if q.grad is not None)


def test_energy_sum_constraint_is_zero_for_equal_moments_and_grows_with_the_offset():
    b = toy_batch(64, seed=6)
    p = b.conditions[:, 0]
    assert energy_sum_constraint(b.maps_gev, b.maps_gev, p).item() == pytest.approx(0.0, abs=1e-10)
    small = energy_sum_constraint(b.maps_gev * 1.01, b.maps_gev, p).item()
    large = energy_sum_constraint(b.maps_gev * 1.10, b.maps_gev, p).item()
    assert 0 < small < large


def test_containment_fractions_and_shape_mmd():
    b = toy_batch(128, seed=9)
    p = b.conditions[:, 0]
    f = containment_fractions(b.maps_gev, p)
    assert f.shape == (128, 4)
    assert torch.all(f[:, :-1] <= f[:, 1:] + 1e-6)  # E1x1 <= E3x3 <= E5x5 <= E11x11
    assert torch.allclose(f[:, 3], b.maps_gev.sum(dim=(1, 2)) / p)

    def with_centre(fraction: torch.Tensor) -> torch.Tensor:
        maps = b.maps_gev.clone()
        maps[:, 5, 5] = fraction * p
        return maps

    gen = torch.Generator().manual_seed(3)
    real = with_centre(0.1 + 0.7 * torch.rand(128, generator=gen))  # E1x1/p spread over 0.1-0.8
    same_law = with_centre(0.1 + 0.7 * torch.rand(128, generator=gen))
    no_spread = with_centre(torch.full((128,), 0.45))  # the right mean, no spread
    assert shape_mmd(real, real, p).item() == pytest.approx(0.0, abs=1e-6)
    assert shape_mmd(same_law, real, p).item() < 0.3 * shape_mmd(no_spread, real, p).item()
    cfg = GANConfig(shape_mmd_weight=1.0, energy_constraint_weight=1.0, mean_shower_bias=True)
    model = GAN(cfg)
    model.fit_normalisation(b.conditions.numpy())
    loss, logs = model.training_step("generator", b)
    assert torch.isfinite(loss) and {"shape_mmd", "energy_constraint"} <= set(logs)


def test_shower_features_and_their_mmd():
    maps = torch.zeros(2, 11, 11)
    maps[0, 5, 5] = 0.5  # one hot crystal
    maps[1, 5, 4] = maps[1, 5, 6] = 0.2  # two crystals 2 apart, 1 from the centre
    maps[1, 0, 0] = 5e-4  # half a MeV in the corner
    p = torch.tensor([1.0, 0.5])
    f = shower_features(maps, p)
    assert f.shape == (2, 8)
    assert f[0, :6].tolist() == pytest.approx([0.5] * 6)  # E1x1/p .. E11x11/p
    assert f[1, :6].tolist() == pytest.approx([0.0, 0.8, 0.8, 0.8, 0.8, 0.801])
    assert f[0, 6].item() == pytest.approx(1.0) and f[1, 6].item() == pytest.approx(2 + 1 - np.exp(-0.5), abs=1e-4)
    assert f[0, 7].item() == pytest.approx(0.0, abs=1e-6)
    assert f[1, 7].item() == pytest.approx(1.0 + 25 * 5e-4 * 2 / 0.4005, rel=0.05)  # corner: 5^2 + 5^2 from the centre
    b = toy_batch(128, seed=10)
    q = b.conditions[:, 0]
    wider = b.maps_gev.clone()
    wider[:, 0, :] += 0.01  # energy in the outer row: a wider shower, the same centre
    assert shape_mmd(b.maps_gev, b.maps_gev, q, "shower").item() == pytest.approx(0.0, abs=1e-6)
    assert shape_mmd(wider, b.maps_gev, q, "shower").item() > 0.05
    with pytest.raises(ValueError, match="unknown MMD features"):
        shape_mmd(wider, b.maps_gev, q, "rings")
    with pytest.raises(ConfigError, match="shape_mmd_features"):
        GANConfig(shape_mmd_features="rings")


def test_shape_moment_constraint_pulls_a_far_hot_crystal_down():
    b = toy_batch(256, seed=14)
    rng = np.random.default_rng(14)
    compact = np.zeros((256, 11, 11), np.float32)  # a compact shower: centre and 3 x 3 ring, nothing outside
    compact[:, 4:7, 4:7] = rng.exponential(0.03, (256, 3, 3))
    compact[:, 5, 5] = 0.6
    real = torch.as_tensor(compact) * b.conditions[:, 0, None, None]
    assert shape_moment_constraint(real, real).item() == pytest.approx(0.0, abs=1e-8)
    fake = real.clone().requires_grad_(True)
    with torch.no_grad():
        hot = torch.zeros_like(real)
        hot[:8, 0, 0] = 0.3 * b.conditions[:8, 0]  # 8 of 256 showers: 30 % of p in the corner crystal
    loss = shape_moment_constraint(fake + hot, real)
    loss.backward()
    assert loss.item() > 1.0
    assert torch.all(fake.grad[:8, 0, 0] > 0)  # descending the loss lowers the far crystal
    assert fake.grad[:8, 0, 0].mean() > 10 * fake.grad[8:, 0, 0].abs().mean()
    cfg = GANConfig(loss="wgan-gp", minibatch_discrimination=False, shape_moment_weight=1.0)
    model = GAN(cfg)
    model.fit_normalisation(b.conditions.numpy())
    loss, logs = model.training_step("generator", b)
    assert torch.isfinite(loss) and "shape_moments" in logs
    with pytest.raises(ConfigError, match="shape_moment_weight"):
        GANConfig(shape_moment_weight=-1.0)


def test_neighbour_mmd_sees_a_generator_that_ignores_its_noise():
    rng = np.random.default_rng(13)
    n = 256
    p = torch.full((n,), 1.0)
    centre = torch.as_tensor(rng.uniform(0.4, 0.8, n), dtype=torch.float32)  # E1x1/p set by the conditions

    def maps(fluctuation: float, seed: int) -> torch.Tensor:
        out = torch.zeros(n, 11, 11)
        jitter = np.random.default_rng(seed).normal(0, fluctuation, n)
        out[:, 5, 5] = centre + torch.as_tensor(jitter, dtype=torch.float32)
        out[:, 5, 6] = 0.9 - out[:, 5, 5]
        return out

    real, real_nb = maps(0.05, 1), maps(0.05, 2)  # neighbours: same conditions, independent showers
    assert neighbour_mmd(maps(0.05, 3), maps(0.05, 4), real, real_nb, p, p).item() < 0.05
    assert neighbour_mmd(maps(0.0, 3), maps(0.0, 4), real, real_nb, p, p).item() > 0.5  # no fluctuation
    b = toy_batch(32, seed=14)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False, neighbour_mmd_weight=1.0))
    model.fit_normalisation(b.conditions.numpy())
    assert model.uses_neighbours
    with pytest.raises(ValueError, match="neighbours"):
        model.training_step("generator", b)
    b.neighbour_maps_gev, b.neighbour_conditions = b.maps_gev.flip(0), b.conditions.flip(0)
    loss, logs = model.training_step("generator", b)
    assert torch.isfinite(loss) and logs["neighbour_mmd"] > 0


def test_shape_neighbour_mmd_sees_a_fixed_shape_under_a_fluctuating_total():
    rng = np.random.default_rng(15)
    n = 256
    p = torch.full((n,), 1.0)
    share = torch.as_tensor(rng.uniform(0.5, 0.8, n), dtype=torch.float32)  # E1x1/E11x11 set by the conditions

    def maps(shape_jitter: float, seed: int) -> torch.Tensor:
        g = np.random.default_rng(seed)
        total = torch.as_tensor(g.normal(0.9, 0.05, n), dtype=torch.float32)  # drawn apart (energy model)
        centre = share + torch.as_tensor(g.normal(0, shape_jitter, n), dtype=torch.float32)
        out = torch.zeros(n, 11, 11)
        out[:, 5, 5], out[:, 5, 6] = centre * total, (1 - centre) * total
        return out

    real, real_nb = maps(0.05, 1), maps(0.05, 2)
    fixed = neighbour_mmd(maps(0.0, 3), maps(0.0, 4), real, real_nb, p, p, "shape").item()
    assert neighbour_mmd(maps(0.05, 3), maps(0.05, 4), real, real_nb, p, p, "shape").item() < 0.2 * fixed
    # the fractions of p see mostly the total's fluctuation, which both have
    assert neighbour_mmd(maps(0.0, 3), maps(0.0, 4), real, real_nb, p, p).item() < fixed
    assert shape_ratios(real)[:, 0] == pytest.approx(real[:, 5, 5] / real.sum(dim=(1, 2)))
    with pytest.raises(ValueError, match="unknown neighbour features"):
        neighbour_mmd(real, real_nb, real, real_nb, p, p, "rings")
    with pytest.raises(ConfigError, match="neighbour_mmd_features"):
        GANConfig(neighbour_mmd_features="rings")
    b = toy_batch(32, seed=16)
    b.neighbour_maps_gev, b.neighbour_conditions = b.maps_gev.flip(0), b.conditions.flip(0)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False, neighbour_mmd_weight=1.0,
                          neighbour_mmd_features="shape"))
    model.fit_normalisation(b.conditions.numpy())
    loss, logs = model.training_step("generator", b)
    assert torch.isfinite(loss) and logs["neighbour_mmd"] > 0


def test_the_generator_loss_is_the_adversarial_loss_plus_the_weighted_terms_of_the_table():
    """Every term of the table is on for this configuration: the model keeps them in the table's order with the
    configured weights, logs each, and the loss is their weighted sum on top of the adversarial loss."""
    cfg = GANConfig(loss="wgan-gp", minibatch_discrimination=False, energy_constraint_weight=2.0,
                    shape_mmd_weight=3.0, shape_moment_weight=0.5, neighbour_mmd_weight=4.0, regressor_weight=1.5)
    model = GAN(cfg)
    assert list(model.generator_terms) == list(GENERATOR_TERMS)
    assert [w for w, _ in model.generator_terms.values()] == [2.0, 3.0, 0.5, 4.0, 1.5]
    assert [getattr(cfg, field) for field, _ in GENERATOR_TERMS.values()] == [2.0, 3.0, 0.5, 4.0, 1.5]
    b = toy_batch(32, seed=17)
    b.neighbour_maps_gev, b.neighbour_conditions = b.maps_gev.flip(0), b.conditions.flip(0)
    model.fit_normalisation(b.conditions.numpy())
    loss, logs = model.training_step("generator", b)
    weights = {name: w for name, (w, _) in model.generator_terms.items()}
    expected = logs["adversarial"] + sum(weights[name] * logs[name] for name in GENERATOR_TERMS)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    plain = GAN(GANConfig(regressor_weight=0.0))  # no term switched on: the adversarial loss alone
    assert plain.generator_terms == {}
    plain.fit_normalisation(b.conditions.numpy())
    loss, logs = plain.training_step("generator", b)
    assert set(logs) == {"adversarial", "loss"} and loss.item() == pytest.approx(logs["adversarial"])
