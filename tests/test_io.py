import re
from pathlib import Path

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


def damage_chunk(path: Path, dataset: str = "showers") -> None:
    """Overwrite 64 bytes in the middle of the first stored chunk of ``dataset``: a corrupt data chunk."""
    with h5py.File(path, "r") as f:
        chunk = f[dataset].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(chunk.byte_offset + chunk.size // 2)
        fh.write(b"\xff" * 64)


def _sample_file(path: Path, n: int = 300) -> Path:
    with open_sample_writer(path) as w:
        w.append(_events(n))
        w.set_attrs(particle="gamma", gun={"seed": 1})
    return path


def test_a_corrupt_chunk_names_the_file_and_the_dataset(tmp_path):
    path = _sample_file(tmp_path / "s.h5")
    damage_chunk(path, "showers")
    assert read_attrs(path)["n_events"] == 300  # the header is intact: the damage shows when the maps are read
    for read in (lambda: read_sample(path), lambda: list(iter_batches(path, 100))):
        with pytest.raises(SampleFileError, match=rf"^{re.escape(str(path))}, dataset 'showers': damaged file, cannot"):
            read()
    other = _sample_file(tmp_path / "t.h5")
    damage_chunk(other, "truth/front_position_cm")
    with pytest.raises(SampleFileError, match="dataset 'truth/front_position_cm': damaged file"):
        read_sample(other)


def test_a_cut_or_inconsistent_file_is_refused_with_its_name(tmp_path):
    path = _sample_file(tmp_path / "s.h5")
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleFileError, match=rf"^{re.escape(str(cut))}: not a readable HDF5 file"):
        read_attrs(cut)
    for name, change, message in (
        ("missing.h5", lambda f: f.__delitem__("truth/entry_momentum_gev"), "no dataset 'truth/entry_momentum_gev'"),
        ("shape.h5", lambda f: (f.__delitem__("conditions"), f.create_dataset("conditions", data=np.zeros((300, 5)))),
         r"dataset 'conditions' has rows of shape \(5,\), expected \(6,\)"),
        ("version.h5", lambda f: f.attrs.__setitem__("schema_version", "one"), "sample schema version one"),
    ):
        bad = tmp_path / name
        bad.write_bytes(data)
        with h5py.File(bad, "a") as f:
            change(f)
        with pytest.raises(SampleFileError, match=rf"^{re.escape(str(bad))}: .*{message}"):
            read_sample(bad)
    folder = tmp_path / "folder.h5"
    folder.mkdir()
    with pytest.raises(SampleFileError, match="is a folder"):
        read_attrs(folder)


def test_an_existing_output_suggests_only_what_works(tmp_path):
    path = _sample_file(tmp_path / "s.h5")
    with pytest.raises(SampleFileError, match=r"exists: remove it or choose another name \(caloforge fullsim --append"):
        with open_sample_writer(path):
            pass
