"""The engine's physics range (particle types, momentum range of each model, vertex region) enforced at the input,
the random numbers independent of the chunking, and the bad input of `caloforge simulate`: one line and exit 2,
or the documented skip."""

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest
import uproot
from typer.testing import CliRunner

from caloforge.cli.main import app
from caloforge.detector import barrel_geometry
from caloforge.detector.transport import VERTEX_MAX_ABS_Z_CM, VERTEX_MAX_RADIUS_CM, inside_transport_region
from caloforge.detector.readout import BOSS_READOUT
from caloforge.engine import (
    MISSED,
    NOT_COVERED,
    OUTSIDE_MOMENTUM,
    OUTSIDE_VERTEX,
    SIMULATED,
    STATUS_NAMES,
    FastSimulation,
    ParticleInputError,
    PhysicsRange,
    make_particles,
    particle_gun,
    write_result,
)
from caloforge.engine.fastsim import EVENT_BLOCK, concatenate_results
from caloforge.engine.particles import MODEL_MOMENTUM_RANGE_GEV

runner = CliRunner()


class NoiseSampler:
    """A test double whose maps are the noise of its seeded stream, row by row: 0-1 MeV times |p| on a cross."""

    def sample(self, conditions, *, seed=None):
        rng = np.random.default_rng(seed)
        m = np.zeros((len(conditions), 11, 11), dtype=np.float32)
        m[:, 5, 4:7] = rng.random((len(conditions), 3)) * conditions[:, :1]
        m[:, 4:7:2, 5] = 1e-3 * rng.random((len(conditions), 2))
        return m


def _towards(theta, phi, p=1.0):
    fc = barrel_geometry().front_center_cm[theta, phi]
    return p * fc / np.linalg.norm(fc)


def test_default_range_is_that_of_the_training_gun_and_the_vertex_region_that_of_the_geometry():
    from caloforge.fullsim.runner import GunSpec

    assert MODEL_MOMENTUM_RANGE_GEV == tuple(GunSpec().momentum_gev) == (0.0, 3.0)
    corners = barrel_geometry().front_vertices_cm
    assert VERTEX_MAX_RADIUS_CM <= np.hypot(corners[..., 0], corners[..., 1]).min() < VERTEX_MAX_RADIUS_CM + 0.01
    assert VERTEX_MAX_ABS_Z_CM <= np.abs(corners[..., 2]).max() < VERTEX_MAX_ABS_Z_CM + 0.1
    inside = inside_transport_region(np.array([[0, 0, 0], [93.9, 0, 0], [0, 94.0, 0], [0, 0, -137.8], [np.nan, 0, 0]]))
    assert inside.tolist() == [True, True, False, False, False]
    assert PhysicsRange.for_models([22, 11], {11: (0.1, 5.0)}).momentum_gev == {22: (0.0, 3.0), 11: (0.1, 5.0)}


def test_shipped_models_record_their_training_range():
    from caloforge.export.samplers import recorded_momentum_range_gev
    from caloforge.models.pretrained import default_model_paths

    for name, path in default_model_paths("onnx").items():
        assert recorded_momentum_range_gev(path, name) == (0.0, 3.0)
    path = default_model_paths("onnx")["gamma"]
    assert recorded_momentum_range_gev(path, "e-") is None  # the record of another file


def test_a_renamed_copy_has_no_record(tmp_path):
    from caloforge.export.samplers import recorded_momentum_range_gev
    from caloforge.models.pretrained import default_model_paths

    copy = tmp_path / "mine.onnx"
    shutil.copy(default_model_paths("onnx")["gamma"], copy)
    assert recorded_momentum_range_gev(copy, "gamma") is None


def _mixed():
    """A photon at 10 GeV/c, an electron from r = 120 cm, a muon at 50 GeV/c far away (no model: not checked), and
    two good photons."""
    return make_particles(
        [22, 11, 13, 22, 22],
        [_towards(20, 7, 10.0), _towards(10, 3, 1.0), _towards(30, 30, 50.0), _towards(12, 40, 1.0), _towards(25, 60)],
        vertex_cm=[[0, 0, 0], [120.0, 0, 0], [1e5, 0, 0], [0, 0, 1.0], [0, 0, 0]],
        event=[0, 0, 1, 1, 2],
    )


def test_particles_outside_the_range_are_an_error_by_default():
    engine = FastSimulation({22: NoiseSampler(), 11: NoiseSampler()})
    with pytest.raises(ParticleInputError) as info:
        engine.simulate(_mixed())
    message = str(info.value)
    assert "2 of 5 particles outside the engine's physics range (1 momentum, 1 vertex)" in message
    assert "first: particle 0 (event 0, gamma, |p| 10 GeV/c" in message and "gamma 0-3 GeV/c" in message
    assert "\n" not in message


def test_skipped_particles_get_no_shower_and_a_status_that_says_why(tmp_path):
    engine = FastSimulation({22: NoiseSampler(), 11: NoiseSampler()}, out_of_range="skip")
    res = engine.simulate(_mixed(), seed=4)
    assert res.particle_status.tolist() == [OUTSIDE_MOMENTUM, OUTSIDE_VERTEX, NOT_COVERED, SIMULATED, SIMULATED]
    assert res.status_counts()["momentum outside the model's range"] == 1
    assert res.status_counts()["vertex outside the transport's region"] == 1
    assert res.hit_offsets.tolist()[:2] == [0, 0]  # event 0: both particles skipped, no hits
    good = FastSimulation({22: NoiseSampler(), 11: NoiseSampler()}).simulate(
        make_particles([22, 22], [_towards(12, 40, 1.0), _towards(25, 60)], vertex_cm=[[0, 0, 1.0], [0, 0, 0]],
                       event=[1, 2]), seed=4)
    assert np.array_equal(res.hit_energy_gev, good.hit_energy_gev)  # the others as if alone
    for suffix in (".root", ".h5"):
        out = write_result(res, tmp_path / f"hits{suffix}")
        if suffix == ".root":
            f = uproot.open(out)
            status = f["events"]["particle_status"].array(library="np")
            assert [list(s) for s in status] == [[3, 4], [2, 0], [0]]
            legend = json.loads(str(f["status_names_json"]))
            units = json.loads(str(f["units_json"]))
            assert units["particle_px"] == "GeV/c" and units["particle_vz"] == "cm" and units["hit_energy_gev"] == "GeV"
        else:
            with h5py.File(out) as f:
                assert f["particles/status"][:].tolist() == [3, 4, 2, 0, 0]
                legend = json.loads(f.attrs["status_names_json"])
        assert {int(k): v for k, v in legend.items()} == STATUS_NAMES


def test_a_momentum_range_of_its_own_and_unknown_options():
    engine = FastSimulation({22: NoiseSampler()}, physics_range=PhysicsRange({22: (0.5, 12.0)}))
    assert engine.simulate(make_particles([22], [_towards(20, 7, 10.0)])).particle_status.tolist() == [SIMULATED]
    with pytest.raises(ParticleInputError, match="gamma 0.5-12 GeV/c"):
        engine.simulate(make_particles([22], [_towards(20, 7, 0.3)]))
    with pytest.raises(ValueError, match="out_of_range"):
        FastSimulation({22: NoiseSampler()}, out_of_range="extrapolate")
    with pytest.raises(ValueError, match="no momentum range"):
        FastSimulation({22: NoiseSampler(), 11: NoiseSampler()}, physics_range=PhysicsRange({22: (0.0, 3.0)}))


def test_the_showers_do_not_depend_on_the_chunking():
    """Same seed, same showers and noise whatever the chunk size: several particle types, several particles per
    event, events out of order in the input, more than two blocks of events."""
    rng = np.random.default_rng(0)
    n_events = 2 * EVENT_BLOCK + 350
    event = rng.permutation(np.repeat(np.arange(n_events) * 3, 2))  # 2 particles per event, numbers spaced, shuffled
    parts = particle_gun(22, len(event), seed=5)
    pdg = rng.choice([22, 11, -11], len(event))
    parts = make_particles(pdg, parts.momentum_gev, event=event)
    engine = FastSimulation({22: NoiseSampler(), 11: NoiseSampler(), -11: NoiseSampler()},
                            readout=BOSS_READOUT)
    whole = engine.simulate(parts, seed=9)
    for chunk in (1, 999, 9000, 10**6):
        chunks = list(engine.simulate_chunks(parts, chunk, seed=9))
        assert len(chunks) == {1: 3, 999: 3, 9000: 2, 10**6: 1}[chunk]
        joined = concatenate_results(chunks)
        for name in ("event_number", "hit_offsets", "hit_theta", "hit_phi", "hit_energy_gev"):
            assert np.array_equal(getattr(joined, name), getattr(whole, name)), (chunk, name)
    other = engine.simulate(parts, seed=10)
    assert not np.array_equal(other.hit_energy_gev[:100], whole.hit_energy_gev[:100])
    assert whole.status_counts()["simulated"] + whole.status_counts()["missed the barrel"] == len(parts)
    assert set(np.unique(whole.particle_status)) <= {SIMULATED, MISSED}


# ---- caloforge simulate (the shipped ONNX models: no PyTorch) ----


def _simulate(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy overflow warnings once came with 1e308
        return runner.invoke(app, ["simulate", *map(str, args)])


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_simulate_refuses_momenta_beyond_the_models(tmp_path):
    out = tmp_path / "m.h5"
    _one_line_error(_simulate("--gun", "gamma", "-n", 200, "--momentum", 10, "-o", out),
                    "200 of 200 particles outside", "gamma 0-3 GeV/c", "--out-of-range skip")
    _one_line_error(_simulate("--gun", "gamma", "-n", 20, "--momentum", "1e308", "-o", out), "20 of 20 particles")
    _one_line_error(_simulate("--gun", "gamma", "-n", 20, "--momentum", "0:inf", "-o", out), "must be finite")
    _one_line_error(_simulate("--gun", "gamma", "-n", 20, "--momentum", "nan", "-o", out), "must be finite")
    _one_line_error(_simulate("--gun", "gamma", "--out-of-range", "maybe", "-o", out), "--out-of-range")
    assert sorted(tmp_path.iterdir()) == []


def test_simulate_skips_on_request_and_counts(tmp_path):
    out = tmp_path / "m.h5"
    result = _simulate("--gun", "gamma", "-n", 50, "--momentum", "1e308", "--out-of-range", "skip", "-o", out)
    assert result.exit_code == 0, result.output
    assert "50 momentum outside the model's range" in result.stdout and "hits        0 crystals" in result.stdout
    with h5py.File(out) as f:
        assert (f["particles/status"][:] == OUTSIDE_MOMENTUM).all()


def test_simulate_refuses_vertices_outside_the_barrel(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("event,pdg,px,py,pz,vx,vy,vz\n0,22,0.5,0.5,0.1,0,0,0\n1,22,-1,0,0,1e5,0,0\n2,11,1,0,0,120,0,0\n")
    _one_line_error(_simulate(csv, "-o", tmp_path / "a.root"),
                    f"{csv}: 2 of 3 particles", "first: line 3 (event 1, gamma", "vertex r < 94 cm, |z| < 137.7 cm")
    result = _simulate(csv, "-o", tmp_path / "a.root", "--out-of-range", "skip")
    assert result.exit_code == 0, result.output
    assert "2 vertex outside the transport's region" in result.stdout
    status = uproot.open(tmp_path / "a.root")["events"]["particle_status"].array(library="np")
    assert [list(s) for s in status] == [[SIMULATED], [OUTSIDE_VERTEX], [OUTSIDE_VERTEX]]


def test_simulate_bad_options_and_inputs_give_one_line(tmp_path):
    from caloforge.models.pretrained import default_model_paths

    out = tmp_path / "x.h5"
    _one_line_error(_simulate("--gun", "gamma", "--readout", "bes2", "-o", out), "--readout")
    _one_line_error(_simulate("--gun", "gamma", "--seed", "-1", "-o", out), "--seed")
    _one_line_error(_simulate("--gun", "gamma", "--chunk", "0", "-o", out), "--chunk")
    paths = (default_model_paths("onnx", family="gan")["gamma"],
             default_model_paths("onnx", int8=False, family="gan")["gamma"])
    _one_line_error(_simulate("--gun", "gamma", "--model", paths[0], "--model", paths[1], "-o", out),
                    "a second model for gamma", paths[0].name)
    csv = tmp_path / "p.csv"
    csv.write_text("event,pdg,px,py,pz\n0.2,22,1,0,0\n0.7,22,1,0,0\n")
    _one_line_error(_simulate(csv, "-o", out), f"{csv}: column event, line 2: 0.2 is not an integer")
    root = tmp_path / "cut.root"
    with uproot.recreate(root) as f:
        n = 20_000
        f["gen"] = {"pdg": np.full(n, 22), "px": np.linspace(0.1, 1, n), "py": np.zeros(n), "pz": np.zeros(n)}
    root.write_bytes(root.read_bytes()[: root.stat().st_size // 2])
    _one_line_error(_simulate(root, "-o", out), f"{root}: cannot read particles from ROOT file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.root", "p.csv"]


def test_simulate_gives_the_same_showers_whatever_the_chunk(tmp_path):
    hits = {}
    for chunk in (700, 100_000):
        out = tmp_path / f"c{chunk}.h5"
        result = _simulate("--gun", "e-", "-n", EVENT_BLOCK + 300, "--readout", "boss", "--chunk", chunk, "--seed", 2,
                           "-o", out)
        assert result.exit_code == 0, result.output
        with h5py.File(out) as f:
            hits[chunk] = {k: f[k][:] for k in ("hits/offsets", "hits/gid", "hits/energy_gev")}
    for k in hits[700]:
        assert np.array_equal(hits[700][k], hits[100_000][k]), k
