import numpy as np
import pytest
import torch

from caloforge.models import (
    GAN,
    CheckpointError,
    ConfigError,
    GANConfig,
    ShowerModel,
    build_model,
    load_model,
    model_config_from_dict,
)
from caloforge.models.base import Batch
from caloforge.models.gan import (
    MeanShower,
    MinibatchDiscrimination,
    containment_fractions,
    shape_mmd,
    shower_features,
    condition_moments,
    lateral_moments,
    lateral_shape_moments,
    shape_moment_constraint,
    cell_covariance_constraint,
    matched_regressor_loss,
    LAT_R0_CRYSTALS,
    ReLUWithLeakyGradient,
    energy_sum_constraint,
    gradient_penalty,
    neighbour_mmd,
    shape_ratios,
)
from caloforge.models.transforms import fraction_to_model, gev_to_model, model_to_fraction, model_to_gev
from caloforge.models.energy import F_MAX, EnergyModel


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conditions(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 6)).astype(np.float32) * np.array([0, 0.06, 0.015, 1.3, 0.015, 60], np.float32)
    c[:, 0] = rng.uniform(0.1, 3.0, n)
    return c


def _batch(n: int, seed: int = 0, n_particles: int = 1) -> Batch:
    rng = np.random.default_rng(seed)
    c = _conditions(n, seed)
    maps = rng.exponential(0.01, (n, 11, 11)).astype(np.float32)
    maps[:, 5, 5] += 0.6 * c[:, 0]
    return Batch(torch.as_tensor(maps), torch.as_tensor(c), torch.as_tensor(rng.integers(0, n_particles, n)))


@pytest.fixture
def gan() -> GAN:
    torch.manual_seed(0)
    model = GAN(GANConfig())
    model.fit_normalisation(_conditions(200))
    return model


def test_generator_shape_non_negative_and_parameter_count(gan):
    z = torch.randn(7, gan.config.noise_dim)
    cond = gan.condition_input(torch.as_tensor(_conditions(7)), torch.zeros(7, dtype=torch.long))
    u = gan.generator(z, cond)
    assert u.shape == (7, 1, 11, 11)
    assert (u >= 0).all()
    assert gan.parameter_counts()["generator"] == 46_041  # seed: "about 46k"
    multi = GAN(GANConfig(particles=["e-", "e+", "gamma"]))
    assert multi.parameter_counts()["generator"] == 46_809  # + 3 one-hot inputs x 256
    assert gan.n_parameters == sum(gan.parameter_counts().values())
    narrow = GAN(GANConfig(generator_channels=(8, 8, 8)))
    # dense 140 x 128 + 128, 4x4 conv 8 x 8 x 16 + 8, two 3x3 convs 8 x 8 x 9 + 8, 2x2 conv 8 x 4 + 1
    assert narrow.parameter_counts()["generator"] == 140 * 128 + 128 + 1024 + 8 + 2 * (576 + 8) + 33
    with pytest.raises(ConfigError, match="generator_channels"):
        GANConfig(generator_channels=(8,))
    mlp = GAN(GANConfig(generator_hidden=(32, 16)))
    # 140 -> 32 -> 16 -> 121, biases included; no convolution
    assert mlp.parameter_counts()["generator"] == 140 * 32 + 32 + 32 * 16 + 16 + 16 * 121 + 121
    assert not any(isinstance(m, torch.nn.Conv2d) for m in mlp.generator.modules())
    with pytest.raises(ConfigError, match="generator_hidden"):
        GANConfig(generator_hidden=(32, 0))


def test_fully_connected_generator_trains_and_exports_as_itself(tmp_path):
    from caloforge.export import OnnxShowerModel, export_onnx

    torch.manual_seed(2)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False, generator_hidden=(24,),
                          output_transform="log", mean_shower_bias=True, mean_shower_degree=2))
    b = _batch(32, seed=6)
    model.fit_normalisation(b.conditions.numpy())
    loss, _ = model.training_step("generator", b)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.generator.mlp.parameters())
    assert model.for_inference().generator.mlp is not model.generator.mlp  # a copy, the same kind
    export_onnx(model, tmp_path / "mlp.onnx")
    c = _conditions(200, seed=3)
    a = model.sample(c, seed=4)
    assert np.allclose(OnnxShowerModel(tmp_path / "mlp.onnx").sample(c, seed=4), a, rtol=1e-4, atol=1e-6)
    assert a.shape == (200, 11, 11) and (a >= 0).all() and a.sum() > 0


@pytest.mark.parametrize("loss, minibatch", [("gan", True), ("gan", False), ("wgan-gp", False), ("wgan-gp", True)])
def test_discriminator_and_critic_shapes(loss, minibatch):
    model = GAN(GANConfig(loss=loss, minibatch_discrimination=minibatch))
    b = _batch(6)
    cond = model.condition_input(b.conditions, b.particle)
    real = gev_to_model(b.maps_gev, b.conditions[:, 0], kind="none", epsilon=1e-4)
    assert real.shape == (6, 1, 11, 11)
    score = model.discriminator(real, cond, b.conditions[:, 0])
    assert score.shape == (6,) and torch.isfinite(score).all()


@pytest.mark.parametrize(
    "bias, degree, particles, channels",
    [
        (False, 0, ["gamma"], (16, 16, 16, 8)),
        (True, 0, ["e-", "e+", "gamma"], (16, 16, 16, 8)),
        (True, 3, ["e-", "gamma"], (16, 16, 16, 8)),
        (True, 3, ["gamma"], (8, 8, 8)),
        (False, 0, ["e+"], (4, 6)),
    ],
)
def test_fused_generator_is_the_same_function(bias, degree, particles, channels):
    torch.manual_seed(8)
    model = GAN(GANConfig(mean_shower_bias=bias, mean_shower_degree=degree, particles=particles,
                          generator_channels=channels))
    for p in model.generator.parameters():  # away from the initial values, biases included
        p.data.add_(0.05 * torch.randn_like(p))
    z = torch.randn(64, model.config.noise_dim)
    cond = model.condition_input(torch.as_tensor(_conditions(64)), torch.arange(64) % len(particles))
    with torch.no_grad():
        ref = model.generator(z, cond)
        fused = model.generator.fused()(z, cond)
    assert fused.shape == ref.shape == (64, 1, 11, 11)
    assert (ref > 0).float().mean() > 0.05  # a non-trivial comparison
    assert torch.allclose(fused, ref, rtol=1e-4, atol=1e-5)  # float32 sums taken in another order


def test_minibatch_discrimination_features():
    layer = MinibatchDiscrimination(12, 4, 3)
    f = torch.randn(5, 12)
    out = layer(f)
    assert out.shape == (5, 16)
    assert torch.equal(out[:, :12], f)
    perm = torch.tensor([3, 1, 4, 0, 2])
    assert torch.allclose(layer(f[perm]), out[perm], atol=1e-6)  # permutation-equivariant


def test_final_relu_forward_is_relu_and_gradient_leaks():
    x = torch.tensor([-2.0, -0.5, 0.5, 3.0], requires_grad=True)
    y = ReLUWithLeakyGradient(0.01)(x)
    assert torch.equal(y.detach(), torch.relu(x.detach()))
    y.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.01, 0.01, 1.0, 1.0]))
    x.grad = None
    capped = ReLUWithLeakyGradient(0.01, upper=1.0)(x)  # the log output's cap: at most one momentum
    assert torch.equal(capped.detach(), torch.tensor([0.0, 0.0, 0.5, 1.0]))
    capped.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.01, 0.01, 1.0, 0.01]))
    log_model = GAN(GANConfig(output_transform="log", mean_shower_bias=True))
    with torch.no_grad():
        log_model.generator.mean_shower.table.fill_(3.0)  # far above one momentum per crystal
    c = _conditions(5)
    log_model.fit_normalisation(c)
    maps = log_model.sample(c, seed=0)
    assert np.allclose(maps, c[:, :1, None], rtol=1e-5)  # every crystal capped at p


def test_gradient_penalty_finite_and_differentiable():
    torch.manual_seed(1)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False))
    b = _batch(8)
    p = b.conditions[:, 0]
    cond = model.condition_input(b.conditions, b.particle)
    real = gev_to_model(b.maps_gev, p, kind="none", epsilon=1e-4)
    fake = model.generator(torch.randn(8, model.config.noise_dim), cond).detach()
    gp = gradient_penalty(model.discriminator, real, fake, cond, p)
    assert gp.ndim == 0 and torch.isfinite(gp) and gp >= 0
    gp.backward()
    assert all(torch.isfinite(q.grad).all() for q in model.discriminator.parameters() if q.grad is not None)


@pytest.mark.parametrize("loss", ["gan", "wgan-gp"])
def test_training_steps_give_finite_losses(loss):
    torch.manual_seed(2)
    model = GAN(GANConfig(particles=["e-", "gamma"], loss=loss, output_transform="log"))
    model.fit_normalisation(_conditions(100))
    opts = model.configure_optimizers()
    assert set(opts) == {"generator", "discriminator", "regressor"}
    assert [s.name for s in model.training_plan(0)] == ["regressor"]
    assert [s.name for s in model.training_plan(model.n_pretrain_epochs)] == ["discriminator", "generator"]
    b = _batch(8, n_particles=2)
    for step in ("regressor", "discriminator", "generator"):
        loss_t, logs = model.training_step(step, b)
        assert loss_t.ndim == 0 and torch.isfinite(loss_t)
        loss_t.backward()
        assert all(np.isfinite(v) for v in logs.values())
    assert "regressor_mse" in model.validation_step(b)


def test_sample_deterministic_non_negative_and_batch_independent(gan):
    c = _conditions(50, seed=3)
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


@pytest.mark.parametrize("transform", ["none", "log"])
def test_mean_shower_bias_starts_generator_at_the_mean_map(transform):
    torch.manual_seed(4)
    cfg = GANConfig(mean_shower_bias=True, output_transform=transform)
    model = GAN(cfg)
    b = _batch(400, seed=5)
    model.fit_normalisation(b.conditions.numpy())
    model.fit_maps(b.maps_gev.numpy(), b.conditions.numpy())
    mean_u = gev_to_model(b.maps_gev, b.conditions[:, 0], kind=transform, epsilon=cfg.log_epsilon).mean(0)
    assert torch.allclose(model.generator.mean_shower.table[0, 0], mean_u[0])
    assert model.parameter_counts()["generator"] == 46_041 + 121
    fake = model.sample(b.conditions.numpy(), seed=1)  # (400, 11, 11) GeV
    frac_fake = fake[:, 5, 5] / b.conditions[:, 0].numpy()
    frac_real = (b.maps_gev[:, 5, 5] / b.conditions[:, 0]).numpy()
    if transform == "none":  # the untrained generator already puts the central crystal near the mean fraction
        assert frac_fake.mean() == pytest.approx(frac_real.mean(), rel=0.5)
    plain = GAN(GANConfig())
    plain.fit_maps(b.maps_gev.numpy(), b.conditions.numpy())  # a no-op without the option
    assert plain.generator.mean_shower is None


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_mean_shower_monomials_are_the_products_in_combinations_order(degree):
    import itertools

    c = torch.as_tensor(np.random.default_rng(degree).normal(size=(50, 6)) * 2, dtype=torch.float32)
    x = torch.cat([torch.ones(50, 1), c.clamp(-4, 4)], dim=1).double()
    monomials = itertools.combinations_with_replacement(range(7), degree)
    expected = torch.stack([x[:, list(m)].prod(dim=1) for m in monomials], dim=1)
    got = MeanShower(n_particles=1, degree=degree).features(c)
    assert got.shape == expected.shape == (50, {0: 1, 1: 7, 2: 28, 3: 84, 4: 210}[degree])
    assert torch.allclose(got.double(), expected, rtol=1e-6, atol=1e-6)


def test_mean_shower_polynomial_fit_recovers_each_particles_polynomial():
    rng = np.random.default_rng(3)
    c = torch.as_tensor(rng.normal(size=(3000, 6)), dtype=torch.float32)  # normalised conditions
    kind = torch.as_tensor(rng.integers(0, 2, 3000))
    dz = c[:, 3, None, None]
    peak = torch.zeros(11, 11)
    peak[5, 5] = 1.0
    slope = torch.zeros(11, 11)
    slope[4, 5], slope[6, 5] = 0.3, -0.3
    u = torch.where(kind[:, None, None] == 0, 0.5 * peak + slope * dz, 0.8 * peak - 0.2 * peak * dz**2)
    mean_shower = MeanShower(n_particles=2, degree=2)
    assert mean_shower.n_terms == 28  # 1 + 6 + 21 monomials of 6 conditions
    onehot = torch.nn.functional.one_hot(kind, 2).float()
    mean_shower.fit(u, c, kind, ridge=1e-9)
    assert torch.allclose(mean_shower(torch.cat([c, onehot], dim=1))[:, 0], u, atol=1e-5)  # exact least squares
    mean_shower.fit(u, c, kind)  # the default ridge costs 0.1 % of the peak
    assert torch.allclose(mean_shower(torch.cat([c, onehot], dim=1))[:, 0], u, atol=2e-3)
    gen = GAN(GANConfig(mean_shower_bias=True, mean_shower_degree=3)).generator
    assert gen.mean_shower.n_terms == 84  # the default recipe's cubic


def test_mean_shower_stays_bounded_off_collinear_training_conditions():
    """Training conditions with a fixed relation (dphi_mom = dphi_pos + tilt, as for photons from the
    interaction point) leave monomial directions without data: a fit with a tiny ridge, or a table grown
    there, blows up just off the relation; the default ridge and :meth:`MeanShower.regularise` do not, and
    keep the mean showers on the training conditions."""
    rng = np.random.default_rng(7)
    c = torch.as_tensor(rng.normal(size=(5000, 6)), dtype=torch.float32)
    c[:, 2] = c[:, 4]  # collinear, in normalised units
    u = 0.5 * torch.zeros(5000, 11, 11).index_fill_(1, torch.tensor([5]), 1.0) + 0.1 * c[:, 4, None, None] ** 2
    kind = torch.zeros(5000, dtype=torch.long)
    off = c[:500].clone()
    off[:, 2] += 0.3  # 0.3 standard deviations off the relation
    mean_shower = MeanShower(n_particles=1, degree=3)
    mean_shower.fit(u, c, kind)
    on_fit = mean_shower(c)[:, 0]
    assert torch.allclose(on_fit, u, atol=5e-3)
    assert (mean_shower(off)[:, 0] - on_fit[:500]).abs().max() < 0.5
    with torch.no_grad():  # a large coefficient along a direction without data: c_2 - c_4
        f = mean_shower.features(c)
        null = torch.linalg.svd(f.double(), full_matrices=True).Vh[-1].float()  # (84,)
        mean_shower.table[0] += 1e3 * null[:, None, None]
    assert (mean_shower(c)[:, 0] - on_fit).abs().max() < 1e-2  # invisible on the training conditions
    assert (mean_shower(off)[:, 0] - on_fit[:500]).abs().max() > 5  # and huge just off them
    change = mean_shower.regularise(c, kind)
    assert change < 1e-2
    assert (mean_shower(off)[:, 0] - on_fit[:500]).abs().max() < 0.5


def test_mean_shower_moves_the_generated_shower_with_the_impact_point():
    # Geant4-like toy: the shower centre follows dz_pos (row about -0.3 crystal per cm); a degree-1 mean shower
    # gives the untrained generator that dependence before any training step
    rng = np.random.default_rng(7)
    c = _conditions(4000, seed=7)
    dz = c[:, 3]
    maps = np.zeros((4000, 11, 11), np.float32)
    up = np.clip(0.3 * dz, 0, 1) * c[:, 0]  # as in Geant4, the centre row falls as dz_pos grows
    down = np.clip(-0.3 * dz, 0, 1) * c[:, 0]
    maps[:, 5, 5] = 0.8 * c[:, 0] - up - down
    maps[:, 4, 5], maps[:, 6, 5] = up, down
    maps += rng.exponential(1e-4, maps.shape).astype(np.float32)

    def centre_rows(degree: int) -> np.ndarray:
        torch.manual_seed(2)
        model = GAN(GANConfig(mean_shower_bias=True, mean_shower_degree=degree, output_transform="none"))
        with torch.no_grad():
            model.generator.convs[-1].weight.mul_(0.01)  # the convolutions' own output small, as after init
        model.fit_normalisation(c)
        model.fit_maps(maps, c)
        return lateral_moments(torch.as_tensor(model.sample(c, seed=3)))[:, 0].numpy()

    assert np.corrcoef(centre_rows(1), dz)[0, 1] < -0.8
    row_fixed = centre_rows(0)
    assert abs(np.corrcoef(row_fixed, dz)[0, 1]) < 0.2


def test_checkpoints_with_the_old_fixed_bias_still_load():
    model = GAN(GANConfig(mean_shower_bias=True, particles=["e-", "gamma"]))
    old = {k: v for k, v in model.state_dict().items() if "mean_shower" not in k}
    old["generator.output_bias"] = torch.rand(1, 1, 11, 11)  # the format of the first shipped models
    model.load_state_dict(old)
    assert torch.equal(model.generator.mean_shower.table[1, 0], old["generator.output_bias"][0, 0])
    with pytest.raises(ConfigError, match="mean_shower_bias"):
        GANConfig(mean_shower_degree=2)
    with pytest.raises(ConfigError, match="mean_shower_degree"):
        GANConfig(mean_shower_bias=True, mean_shower_degree=9)


def test_energy_sum_constraint_is_zero_for_equal_moments_and_grows_with_the_offset():
    b = _batch(64, seed=6)
    p = b.conditions[:, 0]
    assert energy_sum_constraint(b.maps_gev, b.maps_gev, p).item() == pytest.approx(0.0, abs=1e-10)
    small = energy_sum_constraint(b.maps_gev * 1.01, b.maps_gev, p).item()
    large = energy_sum_constraint(b.maps_gev * 1.10, b.maps_gev, p).item()
    assert 0 < small < large


def test_containment_fractions_and_shape_mmd():
    b = _batch(128, seed=9)
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
    b = _batch(128, seed=10)
    q = b.conditions[:, 0]
    wider = b.maps_gev.clone()
    wider[:, 0, :] += 0.01  # energy in the outer row: a wider shower, the same centre
    assert shape_mmd(b.maps_gev, b.maps_gev, q, "shower").item() == pytest.approx(0.0, abs=1e-6)
    assert shape_mmd(wider, b.maps_gev, q, "shower").item() > 0.05
    with pytest.raises(ValueError, match="unknown MMD features"):
        shape_mmd(wider, b.maps_gev, q, "rings")
    with pytest.raises(ConfigError, match="shape_mmd_features"):
        GANConfig(shape_mmd_features="rings")


def test_lateral_moments_and_condition_moments():
    maps = torch.zeros(1, 11, 11)
    maps[0, 5, 6] = maps[0, 5, 8] = 0.1  # centre at column +2, one crystal either side
    assert lateral_moments(maps)[0].tolist() == pytest.approx([0.0, 2.0, 1.0])

    b = _batch(256, seed=12)
    p = b.conditions[:, 0]
    cond = (b.conditions - b.conditions.mean(dim=0)) / b.conditions.std(dim=0)
    real = b.maps_gev.clone()
    real[:, 5, 5] = p * (0.8 - 0.2 * cond[:, 3].abs())  # E1x1/p falls with |dz_pos|, as in Geant4
    unconditional = real.clone()
    shuffled = cond[torch.randperm(256, generator=torch.Generator().manual_seed(1)), 3]
    unconditional[:, 5, 5] = p * (0.8 - 0.2 * shuffled.abs())  # the same E1x1/p values, not tied to dz_pos
    assert condition_moments(real, real, p, cond).item() == pytest.approx(0.0, abs=1e-8)
    assert condition_moments(unconditional, real, p, cond).item() > 0.2
    cfg = GANConfig(loss="wgan-gp", minibatch_discrimination=False, condition_moment_weight=1.0)
    model = GAN(cfg)
    model.fit_normalisation(b.conditions.numpy())
    loss, logs = model.training_step("generator", b)
    assert torch.isfinite(loss) and "condition_moments" in logs


def test_lateral_shape_moments_by_hand():
    maps = torch.zeros(3, 11, 11)
    maps[0, 5, 5] = 0.5  # one hot crystal: LAT 0
    maps[1, 5, 5], maps[1, 5, 6] = 0.6, 0.3  # two: LAT 0
    maps[2, 5, 5], maps[2, 5, 6], maps[2, 6, 5], maps[2, 5, 3] = 0.4, 0.25, 0.2, 0.15
    out = lateral_shape_moments(maps)
    assert out[:2, 1].tolist() == pytest.approx([0.0, 0.0], abs=1e-7)
    assert out[0, 0].item() == 0.0
    assert out[1, 0].item() == pytest.approx((0.6 * (1 / 3) ** 2 + 0.3 * (2 / 3) ** 2) / 0.9, rel=1e-5)
    # map 2: centre at row +0.2, column -0.05 (crystal units); (5, 5) and (5, 6) are the two hottest
    num = 0.2 * (0.8**2 + 0.05**2) + 0.15 * (0.2**2 + 1.95**2)
    assert out[2, 1].item() == pytest.approx(num / (num + LAT_R0_CRYSTALS**2 * 0.65), rel=1e-5)


def test_cell_covariance_constraint_by_hand_and_its_gradient():
    rng = np.random.default_rng(21)
    real = torch.as_tensor(rng.exponential(0.01, (512, 11, 11)).astype(np.float32))
    assert cell_covariance_constraint(real, real).item() == pytest.approx(0.0, abs=1e-10)
    # size 1: the centre crystal alone, (var_fake / var_real - 1)^2 in log(1 + E / 1 MeV)
    fake = real * torch.as_tensor(rng.uniform(0.5, 2.0, (512, 1, 1)).astype(np.float32))
    lf, lr = torch.log1p(fake[:, 5, 5] / 1e-3), torch.log1p(real[:, 5, 5] / 1e-3)
    assert cell_covariance_constraint(fake, real, size=1).item() == pytest.approx(
        ((lf.var() / lr.var() - 1) ** 2).item(), rel=1e-4)
    # two diagonal neighbours of the centre made to move together: the term sees it, and descending it
    # pulls them apart again
    tied = real.clone()
    tied[:, 4, 4] = tied[:, 6, 6]
    x = tied.clone().requires_grad_(True)
    loss = cell_covariance_constraint(x, real, size=3)
    loss.backward()
    assert loss.item() > 10 * cell_covariance_constraint(real[torch.randperm(512)], real, size=3).item()
    with torch.no_grad():
        after = cell_covariance_constraint(x - 1e-5 * x.grad / x.grad.abs().max(), real, size=3)
    assert after < loss
    b = _batch(64, seed=3)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False, cell_covariance_weight=10.0))
    model.fit_normalisation(b.conditions.numpy())
    loss, logs = model.training_step("generator", b)
    assert torch.isfinite(loss) and "cell_covariance" in logs
    for bad in ({"cell_covariance_weight": -1.0}, {"cell_covariance_size": 4}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            GANConfig(**bad)


def test_shape_moment_constraint_pulls_a_far_hot_crystal_down():
    b = _batch(256, seed=14)
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
    b = _batch(32, seed=14)
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
    b = _batch(32, seed=16)
    b.neighbour_maps_gev, b.neighbour_conditions = b.maps_gev.flip(0), b.conditions.flip(0)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False, neighbour_mmd_weight=1.0,
                          neighbour_mmd_features="shape"))
    model.fit_normalisation(b.conditions.numpy())
    loss, logs = model.training_step("generator", b)
    assert torch.isfinite(loss) and logs["neighbour_mmd"] > 0


def test_critic_without_sparsity_feature_trains_in_log_space():
    torch.manual_seed(2)
    cfg = GANConfig(
        loss="wgan-gp",
        output_transform="log",
        sparsity_feature=False,
        minibatch_discrimination=False,
        mean_shower_bias=True,
        shape_mmd_weight=1.0,
        shape_mmd_features="shower",
    )
    model = GAN(cfg)
    b = _batch(32, seed=11)
    model.fit_normalisation(b.conditions.numpy())
    model.fit_maps(b.maps_gev.numpy(), b.conditions.numpy())
    assert model.discriminator.dense20.in_features == 400 + 6 + 2  # features, conditions, E/p, (E-p)/p
    for step in ("discriminator", "generator"):
        loss, logs = model.training_step(step, b)
        loss.backward()
        assert torch.isfinite(loss)
    assert "shape_mmd" in logs and "gp" not in logs


def test_fraction_physics_features_do_not_scale_with_the_momentum():
    torch.manual_seed(7)
    model = GAN(GANConfig(physics_features="fraction", minibatch_discrimination=False, dropout=0.0))
    b = _batch(5)
    cond = model.condition_input(b.conditions, b.particle)
    maps = b.maps_gev + 1e-3  # every crystal above the sparsity threshold at both momenta
    u = gev_to_model(maps, b.conditions[:, 0], kind="none", epsilon=1e-4)
    # the same E/p map at ten times the momentum: with E/p features nothing the discriminator sees changes
    scaled = model.discriminator(u, cond, b.conditions[:, 0] * 10)
    gev = GAN(GANConfig(physics_features="gev", minibatch_discrimination=False, dropout=0.0))
    gev.load_state_dict(model.state_dict())
    same = model.discriminator(u, cond, b.conditions[:, 0])
    assert torch.allclose(scaled, same, atol=1e-5)
    assert not torch.allclose(gev.discriminator(u, cond, b.conditions[:, 0] * 10), gev.discriminator(u, cond, b.conditions[:, 0]))
    with pytest.raises(ConfigError, match="physics_features"):
        GANConfig(physics_features="joule")


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
    c = _conditions(20, seed=4)
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
    model.fit_normalisation(_conditions(50))
    c = _conditions(5)
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


def test_matched_regressor_loss_by_hand():
    rng = np.random.default_rng(5)
    cond = torch.as_tensor(rng.normal(size=(400, 6)).astype(np.float32))
    real = cond + torch.as_tensor(rng.normal(0, 0.5, (400, 6)).astype(np.float32))
    assert matched_regressor_loss(real, real, cond).item() == pytest.approx(0.0, abs=1e-12)
    # maps that give their conditions away exactly (the seed's term's optimum) cost 1 per condition
    assert matched_regressor_loss(cond, real, cond).item() == pytest.approx(6.0, rel=1e-6)
    # one condition twice as badly recovered: ((4 m - m) / m)^2 = 9 for it alone
    worse = real.clone()
    worse[:, 2] = cond[:, 2] + 2 * (real[:, 2] - cond[:, 2])
    assert matched_regressor_loss(worse, real, cond).item() == pytest.approx(9.0, rel=1e-5)
    b = _batch(64, seed=4)
    model = GAN(GANConfig(loss="wgan-gp", minibatch_discrimination=False, regressor_loss="matched"))
    model.fit_normalisation(b.conditions.numpy())
    loss, logs = model.training_step("generator", b)
    loss.backward()
    assert torch.isfinite(loss) and logs["regressor_mse"] >= 0 and logs["regressor_mismatch"] >= 0
    assert all(q.grad is not None for q in model.generator.parameters())
    with pytest.raises(ConfigError, match="regressor_loss"):
        GANConfig(regressor_loss="mae")


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
