"""The real Geant4 reference simulation on small samples (geant4_pybind, a few seconds each), and the checks
made before it starts (settings, worker processes, Geant4's data sets; no Geant4 needed)."""

import concurrent.futures as cf

import numpy as np
import pytest
from typer.testing import CliRunner

from caloforge.cli.main import app
from caloforge.data.io import SampleFileError, read_sample
from caloforge.data.production import make_sample
from caloforge.detector.readout import BOSS_READOUT, digitise_events
from caloforge.fullsim import runner
from caloforge.fullsim.g4data import geant4_data_problem
from caloforge.fullsim.runner import ACCEPTED, Batch, FullsimError, GunSpec, resolve_workers, run_events


@pytest.mark.geant4
def test_photon_showers_are_contained_and_centred(photon_sample):
    s = read_sample(photon_sample)
    assert len(s) == 60 and np.all(s.pdg == 22)
    assert np.allclose(s.p_gev, 1.0, atol=1e-5)
    ratio = s.edep_barrel_gev / s.p_gev
    assert 0.90 < ratio.mean() < 0.99  # SPEC: 0.955 for 1 GeV photons in CsI
    # a photon converting in the TOF at the barrel end can send its pair past the barrel: no deposit
    seen = s.edep_barrel_gev > 0
    assert seen.mean() > 0.9
    share = s.maps_gev[seen].sum(axis=(1, 2)) / s.edep_barrel_gev[seen]
    assert np.median(share) > 0.995  # SPEC: 99.8 % within 11x11
    hottest = np.stack(np.unravel_index(s.maps_gev.reshape(len(s), -1).argmax(axis=1), (11, 11)), axis=1)
    assert np.mean(np.all(np.abs(hottest - 5) <= 1, axis=1)) > 0.95


@pytest.mark.geant4
def test_photon_entry_truth_agrees_with_straight_line_transport(photon_sample):
    s = read_sample(photon_sample)
    r = s.truth["reached_emc"]
    assert 0.6 < r.mean() < 1.0  # some photons convert in the TOF (about 0.24 X0)
    d = np.linalg.norm(s.truth["entry_position_cm"][r] - s.truth["front_position_cm"][r], axis=1)
    assert np.median(d) < 0.01
    assert np.all(np.isnan(s.conditions_entry[~r]))


@pytest.mark.geant4
def test_metadata_records_geant4_and_its_data_sets(photon_sample):
    a = read_sample(photon_sample).attrs
    assert a["geant4_version"].startswith("geant4-11")
    assert "G4LEDATA" in a["geant4_datasets"] and a["geant4_data_note"]
    assert a["physics_list"] == "G4EmStandardPhysics" and a["production_cut_mm"] == 0.7
    assert a["gun"]["particle"] == "gamma" and a["next_attempt"] >= 60


@pytest.mark.geant4
@pytest.mark.parametrize("name", ["e-", "e+"])
def test_helix_transport_agrees_with_geant4_field_without_tof(tmp_path, name):
    path = tmp_path / f"{name}.h5"
    make_sample(path, GunSpec(name, momentum_gev=(0.3, 1.0), seed=5), 12, tof=False, workers=1, progress=False)
    s = read_sample(path)
    assert s.truth["reached_emc"].all()
    d = np.linalg.norm(s.truth["entry_position_cm"] - s.truth["front_position_cm"], axis=1)
    assert d.max() < 0.05  # cm: our helix vs Geant4's field propagation over a metre
    assert np.allclose(s.conditions_entry[:, 0], s.conditions[:, 0], rtol=1e-4)


@pytest.mark.geant4
def test_same_seed_same_events_and_append_continues_the_run(tmp_path):
    """... and the read-out recorded beside the deposits (``--readout boss``) too, each event's from its own seed."""
    gun = GunSpec("e+", momentum_gev=(0.5, 1.5), seed=11)
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    make_sample(one, gun, 16, workers=2, progress=False, readout=BOSS_READOUT)
    make_sample(two, gun, 7, workers=1, progress=False, readout=BOSS_READOUT)
    with pytest.raises(SampleFileError, match="other readout"):
        make_sample(two, gun, 9, workers=1, append=True, progress=False)
    make_sample(two, gun, 9, workers=2, append=True, progress=False, readout=BOSS_READOUT)
    a, b = read_sample(one), read_sample(two)
    assert np.array_equal(a.maps_gev, b.maps_gev) and np.array_equal(a.seed, b.seed)
    assert a.attrs["next_attempt"] == b.attrs["next_attempt"]
    assert len(np.unique(a.seed)) == 16
    assert np.array_equal(a.maps_readout_gev, b.maps_readout_gev)
    expected = digitise_events(a.maps_gev, a.theta_index, a.phi_index, a.seed, BOSS_READOUT)
    assert np.allclose(a.maps_readout_gev, expected, rtol=1e-6, atol=1e-9)  # stored in MeV, float32
    assert a.attrs["readout"]["noise_per_sample_mev"] == BOSS_READOUT.noise_per_sample_mev
    read, deposits = a.maps_readout_gev, a.maps_gev
    assert ((read > 0) <= (deposits > 0)).all() and 0 < abs(read - deposits).max() < 0.05


@pytest.mark.geant4
def test_fixed_track_mode_repeats_one_track(tmp_path):
    path = tmp_path / "track.h5"
    make_sample(path, GunSpec("gamma", track_gev=(0.32, 0.73, 0.01), seed=2), 8, workers=1, progress=False)
    s = read_sample(path)
    assert np.allclose(s.truth["vertex_momentum_gev"], [0.32, 0.73, 0.01])
    assert len(set(zip(s.theta_index, s.phi_index))) == 1
    assert len(np.unique(s.edep_barrel_gev)) == 8  # different showers of the same track


@pytest.mark.geant4
def test_a_dying_worker_is_reported_not_hung():
    with pytest.raises(FullsimError, match="worker process died"):
        for _ in run_events(GunSpec("gamma"), {"no_such_setting": 1}, 5, workers=1):
            pass


@pytest.mark.geant4
def test_no_crystal_solid_is_twisted_in_geant4():
    import geant4_pybind as g4

    from caloforge.fullsim.crystals import build_crystal_solids

    solids = build_crystal_solids()
    twisted = 0
    for half, xy in zip(solids.half_length_cm, solids.vertices_local_cm):
        verts = g4.G4TwoVectorVector()
        for x, y in xy:
            verts.append(g4.G4TwoVector(x * g4.cm, y * g4.cm))
        twisted += g4.G4GenericTrap("c", half * g4.cm, verts).IsTwisted()
    assert twisted == 0  # pybes3's raw vertices give 5040 twisted solids


@pytest.mark.geant4
def test_a_looper_in_the_vacuum_is_killed_not_followed_for_kilometres():
    """An e- of 50 MeV/c with almost no p_z spirals in the vacuum; the 10 m track limit ends it."""
    import subprocess
    import sys

    script = (
        "import os, time, numpy as np\n"
        "from caloforge.fullsim.g4app import Geant4Barrel, SimSettings\n"
        "os.dup2(os.open(os.devnull, os.O_WRONLY), 1)\n"
        "app = Geant4Barrel(SimSettings(tof=False))\n"
        "d = np.array([1.0, 0.0, 2e-4]); d /= np.linalg.norm(d)\n"
        "t0 = time.perf_counter(); app.simulate([('e-', 0.05 * d, 1)])\n"
        "os.write(2, f'SECONDS {time.perf_counter() - t0:.2f}'.encode())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seconds = float(out.stderr.rsplit("SECONDS", 1)[1])
    assert seconds < 20  # without the limit: 30 km of spiral, hours


# ---------------------------------------------------------------- checks before Geant4 starts (no Geant4)


@pytest.mark.parametrize("cut", ["-1", "0", "nan", "inf", "-inf", "1e9"])
def test_a_production_cut_that_is_no_length_is_one_line_and_writes_nothing(tmp_path, cut):
    out = tmp_path / "g.h5"
    result = CliRunner().invoke(app, ["fullsim", str(out), "-n", "2", f"--cut-mm={cut}"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: production cut {float(cut)!r} mm is not valid: need a length 0 < cut <= 1000 mm "
        "(Geant4's default is 0.7 mm)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_workers_are_capped_at_the_cores_with_a_note(monkeypatch):
    monkeypatch.setattr(runner, "default_workers", lambda: 4)
    assert resolve_workers(None) == (4, None) and resolve_workers(3) == (3, None)
    assert resolve_workers(100) == (4, "note: 100 worker processes asked for, 4 cores to run on: using 4")
    for bad in (0, -3):
        with pytest.raises(FullsimError, match="at least 1"):
            resolve_workers(bad)


class _InlinePool:
    """Stands in for the process pool: runs nothing, records the workers and the chunks asked for."""

    made: list = []

    def __init__(self, max_workers, **kwargs):
        self.max_workers, self.chunks = max_workers, []
        _InlinePool.made.append(self)

    def submit(self, fn, gun, first, count):
        self.chunks.append(count)
        future = cf.Future()
        attempts = np.arange(first, first + count)
        future.set_result(Batch(attempts, np.full(count, ACCEPTED, dtype=np.int8), {"attempt": attempts}))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_a_run_of_few_events_starts_few_workers_and_simulates_few_attempts(monkeypatch):
    monkeypatch.setattr(runner, "default_workers", lambda: 16)
    monkeypatch.setattr(runner.cf, "ProcessPoolExecutor", _InlinePool)
    _InlinePool.made.clear()
    batches = list(run_events(GunSpec("gamma"), {}, 5, workers=100))
    pool, = _InlinePool.made
    assert pool.max_workers == 5 and sum(pool.chunks) == 5
    assert np.array_equal(np.concatenate([b.events["attempt"] for b in batches]), np.arange(5))
    _InlinePool.made.clear()
    list(run_events(GunSpec("gamma"), {}, 1000, workers=2))
    assert _InlinePool.made[0].max_workers == 2 and max(_InlinePool.made[0].chunks) == 64


def test_missing_geant4_data_is_one_line_not_a_download_prompt(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("G4") and k != "GEANT4_DATA_DIR"}
    env.update(HOME=str(tmp_path), CI="false")
    out = tmp_path / "g.h5"
    command = [sys.executable, "-c", "from caloforge.cli.main import app; app()", "fullsim", str(out), "-n", "2"]
    run = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Geant4 data sets not found (G4LEDATA"), lines
    assert "source the env.sh of an offline data set" in lines[0] and not out.exists()


def test_the_data_check_follows_geant4_pybind(tmp_path):
    data = tmp_path / "data"
    (data / "G4EMLOW8.8").mkdir(parents=True)
    (data / "G4ENSDFSTATE3.0").mkdir()
    assert geant4_data_problem({"GEANT4_DATA_DIR": str(data)}, home=tmp_path) is None
    assert "G4ENSDFSTATEDATA" in geant4_data_problem(  # geant4_pybind would not ask, Geant4 would fail
        {"GEANT4_DATA_DIR": str(data / "G4EMLOW8.8")}, home=tmp_path)
    assert "not a folder" in geant4_data_problem({"G4LEDATA": str(tmp_path / "nowhere"), "GEANT4_DATA_DIR": str(data)})
    assert geant4_data_problem({"CI": "true"}, home=tmp_path) is None  # geant4_pybind downloads without asking
    named = {v: str(data) for v in ("G4LEDATA", "G4ENSDFSTATEDATA")}
    assert "G4LEVELGAMMADATA" in geant4_data_problem(named, home=tmp_path)  # the others: it would ask
