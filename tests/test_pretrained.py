"""The shipped models: present for every particle type, both backends agree, physically sane, described by their
model card, and the default set (the students) used by ``caloforge simulate`` when no model is given."""

import json

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from caloforge.cli.main import app
from caloforge.export import OnnxShowerModel
from caloforge.models import load_model
from caloforge.models.pretrained import GAN_STEMS, HERE, SEED_STEMS, default_model_paths, seed_model_paths

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PARTICLES = ("gamma", "e-", "e+")


def _conditions(n: int, p_gev: float, name: str) -> np.ndarray:
    """The conditions of particles of ``p_gev`` from the interaction point into the middle of the barrel,
    as the engine's transport gives them. (Not the normal incidence of dtheta_mom = dphi_mom = 0 on the
    centre of a crystal: the crystals do not point at the interaction point, and photons from there meet
    theirs at dphi_mom = dphi_pos + 0.02-0.08 rad; the models are fitted on such conditions only.)"""
    from caloforge.detector import compute_conditions, propagate_to_front
    from caloforge.detector.conditions import PARTICLES as KINDS
    from caloforge.engine import particle_gun

    kind = KINDS[name]
    gun = particle_gun(kind.pdg, n, momentum_gev=(p_gev, p_gev), cos_theta=(-0.3, 0.3), seed=1)
    front = propagate_to_front(gun.vertex_cm, gun.momentum_gev, np.full(n, kind.charge))
    assert front.hit.all()
    return compute_conditions(front.position_cm, front.momentum_gev, front.theta_index, front.phi_index).astype(
        np.float32
    )


def test_every_particle_has_a_checkpoint_and_an_onnx_export():
    for backend in ("torch", "onnx"):
        assert sorted(default_model_paths(backend)) == sorted(PARTICLES)
    assert sorted(seed_model_paths()) == sorted(PARTICLES)
    for name in PARTICLES:
        for stem in (GAN_STEMS[name], SEED_STEMS[name]):
            assert (HERE / f"{stem}.pt").stat().st_size < 2_000_000  # small files in the package


@pytest.mark.parametrize("name", PARTICLES)
def test_defaults_are_students_of_the_seed_size_models(name):
    """The defaults are fully connected generators distilled from the seed-size models (caloforge distill): the
    rest of the model is the teacher's, the mean shower trained along stays near the teacher's, and the same noise
    gives nearly the same showers."""
    student = load_model(HERE / f"{GAN_STEMS[name]}.pt", device="cpu")
    teacher = load_model(HERE / f"{SEED_STEMS[name]}.pt", device="cpu")
    assert teacher.config.generator_channels == (16, 16, 16, 8)

    def network(model):  # the generator's layers, without the mean-shower table
        return sum(p.numel() for k, p in model.generator.named_parameters() if not k.startswith("mean_shower."))

    assert network(teacher) == 46_041
    assert student.config.generator_hidden == (256, 256)  # (noise 134 + 6 conditions) -> 256 -> 256 -> 121
    assert network(student) == 140 * 256 + 256 + 256 * 256 + 256 + 256 * 121 + 121
    t = teacher.state_dict()
    for key, value in student.state_dict().items():
        if not key.startswith("generator."):
            assert torch.equal(value, t[key]), key
    table, start = student.generator.mean_shower.table, teacher.generator.mean_shower.table
    assert (table - start).pow(2).mean() < 0.04 * start.pow(2).mean()  # moved by 11-12 % of its rms
    c = _conditions(2000, 1.0, name)
    a, b, other = student.sample(c, seed=5), teacher.sample(c, seed=5), teacher.sample(c, seed=6)
    # the centre crystal's share of E11x11 (the shape, not the drawn total, which the energy model gives both) for
    # the same noise: much closer than two draws of the teacher
    share = [m[:, 5, 5] / m.sum(axis=(1, 2)) for m in (a, b, other)]
    assert np.abs(share[0] - share[1]).mean() < 0.4 * np.abs(share[2] - share[1]).mean()  # 0.13-0.25


@pytest.mark.parametrize("name", PARTICLES)
def test_shipped_backends_agree_and_showers_are_physical(name):
    torch_model = load_model(HERE / f"{GAN_STEMS[name]}.pt", device="cpu")
    onnx_model = OnnxShowerModel(HERE / f"{GAN_STEMS[name]}.onnx")
    assert torch_model.particles == (name,) and onnx_model.particles == [name]
    c = _conditions(2000, 1.0, name)
    a = torch_model.sample(c, seed=5)
    b = onnx_model.sample(c, seed=5)
    # float32 sums in another order in the fused ONNX graph: at most a few 1e-5 GeV per crystal, far below
    # the 0.2 MeV electronics noise
    assert np.allclose(a, b, rtol=1e-4, atol=5e-5)
    fraction = a.sum(axis=(1, 2)) / 1.0  # E11x11 / p
    # Geant4 (test samples, 1 GeV/c, this geometry): mean E11x11/p about 0.93, central crystal about 0.6
    assert 0.85 < fraction.mean() < 1.0
    assert 0.45 < a[:, 5, 5].mean() < 0.8
    assert a[:, 5, 5].mean() > a[:, 4, 5].mean()  # the shower peaks at the impact crystal
    assert fraction.std() > 0.005  # showers fluctuate: not one fixed map
    twice = torch_model.sample(_conditions(2000, 2.0, name), seed=5).sum(axis=(1, 2)).mean()
    assert twice / fraction.mean() == pytest.approx(2.0, rel=0.1)  # energy scales with the momentum


@pytest.mark.parametrize("name", PARTICLES)
def test_shipped_onnx_graphs_are_the_inference_form(name):
    """Exported in the inference form, without training-only operators: the fully connected generator is its
    three matrix products (a convolutional one would be fused: its first stage one matrix product, where an export
    from the layer-by-layer generator has a transposed convolution or an upsampling); one traced with gradients
    would have the leaky-gradient operators (Less, Cast) of the final ReLU."""
    import onnx

    nodes = onnx.load(HERE / f"{GAN_STEMS[name]}.onnx").graph.node
    ops = [node.op_type for node in nodes if node.name.startswith("/generator/")]  # not the energy model's
    hidden = load_model(HERE / f"{GAN_STEMS[name]}.pt", device="cpu").config.generator_hidden
    assert ops.count("Gemm") == len(hidden) + 1 and "Conv" not in ops
    assert not {"ConvTranspose", "Resize", "Upsample", "Less", "Cast", "Gather"} & set(ops)


def test_shipped_checkpoints_hold_the_removed_options_switched_off_and_load():
    """The shipped checkpoints were saved by caloforge 0.1.0; the defaults hold options removed since at the
    values at which they did nothing, which loading accepts (and drops)."""
    removed = {"cell_covariance_weight": 0.0, "cell_covariance_size": 5, "condition_moment_weight": 0.0,
               "regressor_loss": "mse"}
    paths = [*default_model_paths("torch", family="gan").values(), *seed_model_paths().values()]
    assert len(paths) == 2 * len(PARTICLES)
    for path in paths:
        config = torch.load(path, weights_only=True)["config"]
        assert {k: config.get(k, v) for k, v in removed.items()} == removed, path.name
        model = load_model(path, device="cpu")
        assert not set(removed) & set(vars(model.config)), path.name
    assert "cell_covariance_weight" in torch.load(default_model_paths("torch", family="gan")["gamma"],
                                                  weights_only=True)["config"]


def test_model_card_and_validation_numbers_cover_every_particle():
    card = (HERE / "MODEL_CARD.md").read_text()
    numbers = json.loads((HERE / "validation.json").read_text())
    assert sorted(numbers) == sorted(PARTICLES)
    for name in PARTICLES:
        assert f"## {name}" in card
        assert numbers[name]["separation_power"]["e5x5_gev"]["model"] >= 0
        assert numbers[name]["onnx_showers_per_s"] > 0


def test_simulate_runs_the_shipped_students_without_a_model_argument_and_the_gans_on_request(tmp_path):
    out = tmp_path / "hits.h5"
    result = CliRunner().invoke(app, ["simulate", "--gun", "e-", "-n", "200", "-o", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "student_e-.onnx" in result.output  # the default set, its shipped export
    with h5py.File(out) as f:
        energy = f["hits/energy_gev"][:]
    assert energy.sum() > 0 and (energy > 0).all()
    # the GANs: their 8-bit exports unless --no-int8; the same tracks and noise, energies within the 8-bit
    # export's differences
    sums = []
    for extra, shown in ((), "gan_e-_int8.onnx"), (("--no-int8",), "gan_e-.onnx"):
        args = ["simulate", "--gun", "e-", "-n", "200", "-o", str(tmp_path / f"gan{len(sums)}.h5"), "--seed", "3",
                "--model", "gan", *extra]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and shown in result.output, result.output
        with h5py.File(tmp_path / f"gan{len(sums)}.h5") as f:
            sums.append(f["hits/energy_gev"][:].sum())
    assert sums[1] == pytest.approx(sums[0], rel=1e-3)


@pytest.mark.parametrize("name", PARTICLES)
def test_showers_from_displaced_vertices_keep_their_shape(name):
    """The training samples start every particle at the origin; a vertex off it (BESIII: about 1 cm along
    the beam, well below 1 mm across it) changes the conditions slightly off their training relations. The
    share of the centre crystal must stay (a mean shower with large coefficients along those relations
    once took it from 0.69 to 0.33 for photons 1 mm off the beam line). Farther off it does drift: 0.70 to
    0.66 for photons 5 mm off the beam line."""
    import dataclasses

    from caloforge.detector.conditions import PARTICLES as KINDS
    from caloforge.engine import FastSimulation, particle_gun

    pdg = KINDS[name].pdg
    sim = FastSimulation({pdg: load_model(HERE / f"{GAN_STEMS[name]}.pt", device="cpu")})
    base = particle_gun(pdg, 1500, momentum_gev=(0.9, 1.1), seed=3)
    shares = []
    for offset_cm in ([0, 0, 0], [0.1, 0, 0], [0, 0.2, 0], [0, 0, 1.5], [0, 0, -1.5]):
        r = sim.simulate(dataclasses.replace(base, vertex_cm=base.vertex_cm + np.array(offset_cm)), seed=1)
        event = np.repeat(np.arange(r.n_events), np.diff(r.hit_offsets))
        centre = (r.hit_theta == r.particle_theta[event]) & (r.hit_phi == r.particle_phi[event])
        shares.append(r.hit_energy_gev[centre].sum() / r.hit_energy_gev.sum())
    assert 0.4 < shares[0] < 0.85
    assert np.abs(np.array(shares[1:]) - shares[0]).max() < 0.03, shares


def test_the_onnx_fast_simulation_runs_without_pytorch():
    """The shipped .onnx files, the transport and the placement need no PyTorch: `caloforge simulate` does not pay
    the 2 s of importing it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from caloforge.engine import FastSimulation, particle_gun\n"
        "from caloforge.export import load_samplers\n"
        "res = FastSimulation(load_samplers([])[0]).simulate(particle_gun(22, 50, seed=1))\n"
        "assert res.n_showers > 40 and len(res.hit_energy_gev) > 0\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_onnx_sampling_is_the_same_in_one_call_or_several_and_takes_no_conditions():
    model = OnnxShowerModel(HERE / f"{GAN_STEMS['gamma']}.onnx")
    c = _conditions(300, 1.0, "gamma")
    whole = model.sample(c, seed=3)  # one ONNX Runtime call: its output array, as it comes
    parts = model.sample(c, seed=3, batch_size=64)  # five calls into one array
    assert whole.shape == parts.shape == (300, 11, 11) and whole.dtype == np.float32
    assert np.allclose(whole, parts, rtol=1e-5, atol=1e-6)
    assert model.sample(c[:0], seed=3).shape == (0, 11, 11)


def test_model_sets_are_named_by_family_and_an_unshipped_set_says_so(monkeypatch, tmp_path):
    from caloforge.export import load_samplers
    from caloforge.models import pretrained

    by_name = load_samplers(["student"]).names
    assert by_name == load_samplers([]).names and all(".onnx" in n and "student_" in n for n in by_name)
    assert all("_int8.onnx" in n for n in load_samplers(["gan"]).names)
    with pytest.raises(ValueError, match="model set 'vae': the shipped sets are gan, flow"):
        default_model_paths(family="vae")
    monkeypatch.setattr(pretrained, "HERE", tmp_path)  # an installation without shipped flows
    assert default_model_paths(family="flow") == {}
    with pytest.raises(ValueError, match="no shipped flow models in this installation"):
        load_samplers(["flow"])


def test_the_shipped_flows_are_small_16_bit_and_run_in_the_engine(tmp_path):
    from caloforge.models.pretrained import FLOW_STEMS, RECORD_FILES

    records = json.loads((HERE / RECORD_FILES["flow"]).read_text())
    assert sorted(records) == sorted(PARTICLES) == sorted(default_model_paths("torch", family="flow"))
    for name in PARTICLES:
        path = HERE / f"{FLOW_STEMS[name]}.pt"
        assert path.stat().st_size < 6_000_000 and records[name]["checkpoint"] == path.name
        state = torch.load(path, weights_only=True)["state_dict"]
        model = load_model(path, device="cpu")
        assert {state[k].dtype for k, _ in model.named_parameters()} == {torch.float16}  # the weights; buffers float32
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert "## e-, flow: `flow_e-.pt`" in (HERE / "MODEL_CARD.md").read_text()
    out = tmp_path / "hits.h5"
    result = CliRunner().invoke(app, ["simulate", "--gun", "gamma", "-n", "300", "--model", "flow", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "flow_gamma.pt (gamma; torch)" in result.output  # --backend auto: the flows run faster in PyTorch
    with h5py.File(out) as f:
        energy = f["hits/energy_gev"][:]
        momenta_gev = np.linalg.norm(f["particles/momentum_gev"][:], axis=1)
    assert energy.sum() > 0 and (energy > 0).all() and energy.sum() < momenta_gev.sum()


def test_the_shipped_students_are_16_bit_with_their_exports_and_run_in_the_engine(tmp_path):
    from caloforge.export import OnnxShowerModel
    from caloforge.models.pretrained import RECORD_FILES, STUDENT_STEMS

    records = json.loads((HERE / RECORD_FILES["student"]).read_text())
    assert sorted(records) == sorted(PARTICLES) == sorted(default_model_paths("torch", family="student"))
    c = np.tile(np.array([1.0, 0.01, 0.03, 0.5, 0.002, 20.0], dtype=np.float32), (200, 1))
    for name in PARTICLES:
        path = HERE / f"{STUDENT_STEMS[name]}.pt"
        assert records[name]["checkpoint"] == path.name and records[name]["onnx"] == path.with_suffix(".onnx").name
        state = torch.load(path, weights_only=True)["state_dict"]
        model = load_model(path, device="cpu")
        assert {state[k].dtype for k, _ in model.named_parameters()} == {torch.float16}  # the weights; buffers float32
        a, b = model.sample(c, seed=2), OnnxShowerModel(path.with_suffix(".onnx")).sample(c, seed=2)
        assert np.mean((a > 0) != (b > 0)) < 1e-3 and np.allclose(a.sum(axis=(1, 2)), b.sum(axis=(1, 2)), rtol=1e-4)
    out = tmp_path / "hits.h5"
    result = CliRunner().invoke(app, ["simulate", "--gun", "e-", "-n", "300", "--model", "student", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "student_e-.onnx (e-; onnx)" in result.output  # the shipped export, not an export at loading


@pytest.mark.parametrize("family", ["diffusion", "diffusion-student"])
@pytest.mark.parametrize("particle", ["gamma", "e-", "e+"])
def test_the_shipped_diffusion_sets_are_16_bit_with_exports_that_agree(family, particle, tmp_path):
    """The diffusion models (10 DPM-Solver++ steps) and their one-pass students: weights
    in 16 bits, the ONNX export gives the PyTorch model's showers, and the engine runs them by their set's name."""
    from caloforge.models.pretrained import FAMILY_STEMS, RECORD_FILES

    records = json.loads((HERE / RECORD_FILES[family]).read_text())
    assert sorted(records) == sorted(FAMILY_STEMS[family]) == sorted(default_model_paths("torch", family=family))
    path = HERE / f"{FAMILY_STEMS[family][particle]}.pt"
    assert records[particle]["checkpoint"] == path.name and records[particle]["onnx"] == path.with_suffix(".onnx").name
    assert path.stat().st_size < 3_000_000
    model = load_model(path, device="cpu")
    state = torch.load(path, weights_only=True)["state_dict"]
    assert {state[k].dtype for k, _ in model.named_parameters()} == {torch.float16}
    c = _conditions(200, 1.0, particle)
    a, b = model.sample(c, seed=2), OnnxShowerModel(path.with_suffix(".onnx")).sample(c, seed=2)
    assert np.mean((a > 0) != (b > 0)) < 2e-3 and np.allclose(a.sum(axis=(1, 2)), b.sum(axis=(1, 2)), rtol=1e-4)
    e5x5 = a[:, 3:8, 3:8].sum(axis=(1, 2))
    assert 0.85 < np.median(e5x5) < 1.0  # GeV: a 1 GeV/c photon's or electron's 5x5 sum peaks at 0.94-0.96
    out = tmp_path / "hits.h5"
    result = CliRunner().invoke(app, ["simulate", "--gun", particle, "-n", "100", "--model", family, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{path.with_suffix('.onnx').name} ({particle}; onnx)" in result.output
