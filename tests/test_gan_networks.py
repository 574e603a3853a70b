"""The GAN's networks (caloforge.models.gan.networks) and its mean shower (caloforge.models.gan.mean_shower)."""

import numpy as np
import pytest
import torch
from model_inputs import gan, toy_batch, toy_conditions  # noqa: F401  (gan: a fixture)

from caloforge.models import GAN, ConfigError, GANConfig
from caloforge.models.gan import MeanShower, MinibatchDiscrimination, ReLUWithLeakyGradient
from caloforge.models.transforms import gev_to_model
from caloforge.showers.shapes_torch import lateral_moments

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_generator_shape_non_negative_and_parameter_count(gan):
    z = torch.randn(7, gan.config.noise_dim)
    cond = gan.condition_input(torch.as_tensor(toy_conditions(7)), torch.zeros(7, dtype=torch.long))
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
    b = toy_batch(32, seed=6)
    model.fit_normalisation(b.conditions.numpy())
    loss, _ = model.training_step("generator", b)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.generator.mlp.parameters())
    assert model.for_inference().generator.mlp is not model.generator.mlp  # a copy, the same kind
    export_onnx(model, tmp_path / "mlp.onnx")
    c = toy_conditions(200, seed=3)
    a = model.sample(c, seed=4)
    assert np.allclose(OnnxShowerModel(tmp_path / "mlp.onnx").sample(c, seed=4), a, rtol=1e-4, atol=1e-6)
    assert a.shape == (200, 11, 11) and (a >= 0).all() and a.sum() > 0


@pytest.mark.parametrize("loss, minibatch", [("gan", True), ("gan", False), ("wgan-gp", False), ("wgan-gp", True)])
def test_discriminator_and_critic_shapes(loss, minibatch):
    model = GAN(GANConfig(loss=loss, minibatch_discrimination=minibatch))
    b = toy_batch(6)
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
    cond = model.condition_input(torch.as_tensor(toy_conditions(64)), torch.arange(64) % len(particles))
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
    c = toy_conditions(5)
    log_model.fit_normalisation(c)
    maps = log_model.sample(c, seed=0)
    assert np.allclose(maps, c[:, :1, None], rtol=1e-5)  # every crystal capped at p


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
    b = toy_batch(32, seed=11)
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
    b = toy_batch(5)
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


@pytest.mark.parametrize("transform", ["none", "log"])
def test_mean_shower_bias_starts_generator_at_the_mean_map(transform):
    torch.manual_seed(4)
    cfg = GANConfig(mean_shower_bias=True, output_transform=transform)
    model = GAN(cfg)
    b = toy_batch(400, seed=5)
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
    c = toy_conditions(4000, seed=7)
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


def test_a_polynomial_mean_shower_needs_the_bias_and_a_degree_in_range():
    with pytest.raises(ConfigError, match="mean_shower_bias"):
        GANConfig(mean_shower_degree=2)
    with pytest.raises(ConfigError, match="mean_shower_degree"):
        GANConfig(mean_shower_bias=True, mean_shower_degree=9)
