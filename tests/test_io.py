import h5py
import numpy as np
import pytest

from caloforge.data.io import SampleFileError, iter_batches, open_sample_writer, read_attrs, read_sample


def _events(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "attempt": np.arange(n),
        "seed": rng.integers(1, 1000, n),
        "pdg": np.full(n, 22, dtype=np.int32),
        "maps_gev": rng.exponential(0.01, (n, 11, 11)).astype(np.float32),
        "edep_barrel_gev": rng.uniform(0.5, 1.0, n),
        "theta_index": rng.integers(0, 44, n).astype(np.int16),
        "phi_index": rng.integers(0, 120, n).astype(np.int16),
        "conditions": rng.normal(size=(n, 6)).astype(np.float32),
        "conditions_entry": rng.normal(size=(n, 6)).astype(np.float32),
        "vertex_momentum_gev": rng.normal(size=(n, 3)),
        "front_position_cm": rng.normal(size=(n, 3)),
        "front_momentum_gev": rng.normal(size=(n, 3)),
        "entry_position_cm": rng.normal(size=(n, 3)),
        "entry_momentum_gev": rng.normal(size=(n, 3)),
        "reached_emc": rng.random(n) > 0.1,
    }


def test_round_trip_and_calochallenge_view(tmp_path):
    path = tmp_path / "s.h5"
    ev = _events(30)
    with open_sample_writer(path) as w:
        w.append(ev)
        w.set_attrs(particle="gamma", gun={"seed": 1}, next_attempt=30)
    s = read_sample(path)
    assert len(s) == 30
    assert np.allclose(s.maps_gev, ev["maps_gev"], rtol=1e-6)
    assert np.array_equal(s.theta_index, ev["theta_index"])
    assert np.array_equal(s.truth["reached_emc"], ev["reached_emc"])
    assert s.attrs["gun"] == {"seed": 1} and s.attrs["particle"] == "gamma"
    with h5py.File(path) as f:  # what a CaloChallenge reader sees
        assert f["showers"].shape == (30, 121) and f["showers"].attrs["units"] == "MeV"
        assert np.allclose(f["showers"][3].reshape(11, 11), 1000 * ev["maps_gev"][3], rtol=1e-6)
        p = np.linalg.norm(ev["vertex_momentum_gev"], axis=1)
        assert np.allclose(f["incident_energies"][:, 0], 1000 * p, rtol=1e-6)
    assert [len(b) for b in iter_batches(path, 12)] == [12, 12, 6]


def test_append_extends_and_existing_file_needs_append(tmp_path):
    path = tmp_path / "s.h5"
    with open_sample_writer(path) as w:
        w.append(_events(5))
    with pytest.raises(SampleFileError, match="exists"):
        with open_sample_writer(path):
            pass
    with open_sample_writer(path, append=True) as w:
        w.append(_events(7, seed=1))
    assert read_attrs(path)["n_events"] == 12


def test_failure_leaves_nothing_half_written(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError):
        with open_sample_writer(path) as w:
            w.append(_events(5))
            raise RuntimeError("worker died")
    assert list(tmp_path.iterdir()) == []
    with open_sample_writer(path) as w:
        w.append(_events(5))
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with open_sample_writer(path, append=True) as w:
            w.append(_events(5))
            raise RuntimeError("worker died")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_bad_files_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(SampleFileError, match="not a readable HDF5 file"):
        read_sample(junk)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(SampleFileError, match="not a caloforge sample"):
        read_attrs(other)
    with pytest.raises(SampleFileError, match="no such file"):
        read_sample(tmp_path / "missing.h5")
    with pytest.raises(SampleFileError, match="cannot append"):
        with open_sample_writer(tmp_path / "missing.h5", append=True):
            pass
