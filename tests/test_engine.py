import h5py
import numpy as np
import pytest
import uproot

from caloforge.detector import barrel_geometry
from caloforge.engine import (
    MISSED,
    NOT_COVERED,
    SIMULATED,
    FastSimulation,
    ParticleInputError,
    make_particles,
    particle_gun,
    read_particles,
    write_result,
)
from caloforge.engine.output import OutputExistsError


class CrossSampler:
    """A test double with known output: 80 % of p in the centre, 10 % to the next phi, 1 MeV corner."""

    def sample(self, conditions, *, seed=None):
        m = np.zeros((len(conditions), 11, 11), dtype=np.float32)
        m[:, 5, 5] = 0.8 * conditions[:, 0]
        m[:, 5, 6] = 0.1 * conditions[:, 0]
        m[:, 0, 0] = 1e-3
        return m


def _towards(theta, phi, p=1.0):
    fc = barrel_geometry().front_center_cm[theta, phi]
    return p * fc / np.linalg.norm(fc)


def test_single_photon_is_placed_on_its_crystal():
    parts = make_particles([22], [_towards(20, 7, 2.0)])
    res = FastSimulation({22: CrossSampler()}).simulate(parts)
    assert res.particle_status[0] == SIMULATED and (res.particle_theta[0], res.particle_phi[0]) == (20, 7)
    hits = {(t, p): e for t, p, e in zip(res.hit_theta, res.hit_phi, res.hit_energy_gev)}
    assert hits[(20, 7)] == pytest.approx(1.6) and hits[(20, 8)] == pytest.approx(0.2)
    assert hits[(15, 2)] == pytest.approx(1e-3) and len(hits) == 3
    assert np.array_equal(res.hit_offsets, [0, 3])
    assert res.particle_conditions[0, 0] == pytest.approx(2.0)


def test_showers_of_one_event_add_up_and_phi_wraps():
    parts = make_particles([22, 22, 22], [_towards(10, 119), _towards(10, 119, 0.5), _towards(30, 0)],
                           event=[4, 4, 9])
    res = FastSimulation({22: CrossSampler()}).simulate(parts)
    assert list(res.event_number) == [4, 9]
    first = slice(res.hit_offsets[0], res.hit_offsets[1])
    hits = {(t, p): e for t, p, e in zip(res.hit_theta[first], res.hit_phi[first], res.hit_energy_gev[first])}
    assert hits[(10, 119)] == pytest.approx(0.8 * 1.5)
    assert hits[(10, 0)] == pytest.approx(0.1 * 1.5)  # the next phi after 119 is 0
    assert hits[(5, 114)] == pytest.approx(2e-3)


def test_compiled_placement_matches_summing_full_barrel_maps():
    """Sparse maps anywhere on the barrel (ends and the phi wrap included), several showers per event in any
    order: the compiled placement gives, event by event and crystal by crystal, the sums of the maps added
    into full 44 x 120 barrel maps."""
    from caloforge.detector.geometry import N_PHI, window_indices
    from caloforge.engine.fastsim import _place_showers

    rng = np.random.default_rng(3)
    n, n_events = 3000, 700
    maps = (rng.exponential(0.1, (n, 11, 11)) * (rng.random((n, 11, 11)) < 0.3)).astype(np.float32)
    theta, phi = rng.integers(0, 44, n), rng.choice([0, 1, 4, 5, 6, 60, 114, 115, 118, 119], n)
    event = rng.integers(0, n_events, n)  # unsorted, 0-13 showers per event
    expected = np.zeros((n_events, 44, 120))
    rows, cols, inside = window_indices(theta, phi)
    np.add.at(expected, (np.broadcast_to(event[:, None, None], rows.shape)[inside], rows[inside], cols[inside]),
              maps[inside])
    ev, cell, energy = _place_showers(maps, theta, phi, event)
    key = ev * 44 * N_PHI + cell
    assert np.all(np.diff(key) > 0)  # sorted by event, then crystal, each crystal once
    assert energy.dtype == np.float32 and np.all(energy > 0)
    want = np.flatnonzero(expected.reshape(-1) > 0)
    assert np.array_equal(key, want)
    assert np.allclose(energy, expected.reshape(-1)[want], rtol=1e-6)


def test_barrel_ends_cut_the_window_and_misses_and_uncovered_are_reported():
    parts = make_particles([22, 22, 13, 11], [_towards(0, 3), [0, 0, 1.0], _towards(20, 20), [0.05, 0, 0]])
    res = FastSimulation({22: CrossSampler(), 11: CrossSampler()}).simulate(parts)
    assert list(res.particle_status) == [SIMULATED, MISSED, NOT_COVERED, MISSED]
    assert np.all(res.hit_theta >= 0) and (0, 3) in set(zip(res.hit_theta, res.hit_phi))
    assert not np.any(res.hit_energy_gev[res.hit_theta < 0])
    assert res.status_counts() == {"simulated": 1, "missed the barrel": 2, "no model for this particle": 1,
                                   "momentum outside the model's range": 0, "vertex outside the transport's region": 0}
    # corner (row 0) of a ring-0 window lies beyond the barrel: dropped, not moved elsewhere
    assert res.hit_offsets[-1] == 2


def test_readout_reads_out_the_summed_deposits_and_drops_those_below_threshold():
    from caloforge.detector.readout import BOSS_READOUT, ReadoutParams, digitise

    parts = particle_gun(22, 200, momentum_gev=(1.0, 1.0), seed=3)
    bare = FastSimulation({22: CrossSampler()}).simulate(parts, seed=1)
    params = ReadoutParams(threshold_gev=3e-3)
    read = FastSimulation({22: CrossSampler()}, readout=params).simulate(parts, seed=1)
    assert np.all(read.hit_energy_gev >= 3e-3)  # the 1 MeV corners are gone, the rest read out
    assert read.hit_offsets[-1] == bare.hit_offsets[-1] - np.count_nonzero(np.isclose(bare.hit_energy_gev, 1e-3))
    big = bare.hit_energy_gev > 0.05
    kept = read.hit_energy_gev > 0.05
    assert np.allclose(read.hit_energy_gev[kept], bare.hit_energy_gev[big], rtol=0, atol=3e-3)
    assert not np.array_equal(read.hit_energy_gev[kept], bare.hit_energy_gev[big])
    # the engine reads out with the pure function: the same as digitise of the bare hits with the block's seed
    from caloforge.engine.fastsim import READOUT_STREAM, stream_seed

    again = digitise(bare.hit_energy_gev, bare.hit_gid, stream_seed(1, 0, READOUT_STREAM), params)
    assert np.array_equal(again[again > 0].astype(np.float32), read.hit_energy_gev)
    same = FastSimulation({22: CrossSampler()}, readout=BOSS_READOUT).simulate(parts, seed=1)
    assert np.array_equal(same.hit_energy_gev,
                          FastSimulation({22: CrossSampler()}, readout=BOSS_READOUT).simulate(parts, seed=1).hit_energy_gev)


@pytest.mark.parametrize("suffix", [".root", ".h5"])
def test_outputs_round_trip(tmp_path, suffix):
    parts = make_particles([22, 11, 13], [_towards(12, 40), _towards(30, 90, 0.8), _towards(5, 5)], event=[0, 0, 1])
    res = FastSimulation({22: CrossSampler(), 11: CrossSampler()}).simulate(parts)
    out = write_result(res, tmp_path / f"hits{suffix}")
    if suffix == ".root":
        tree = uproot.open(out)["events"]
        assert tree.classname == "TTree"
        ev = tree.arrays(library="ak")
        assert len(ev) == 2 and list(ev["event"]) == [0, 1] and list(ev["nparticle"]) == [2, 1]
        assert np.isclose(np.sum(ev["hit_energy_gev"][0]), res.hit_energy_gev.sum())
        assert list(ev["particle_pdg"][0]) == [22, 11] and list(ev["particle_status"][1]) == [2]
        assert int(ev["hit_gid"][0][0]) == 480 + 120 * int(ev["hit_theta"][0][0]) + int(ev["hit_phi"][0][0])
    else:
        with h5py.File(out) as f:
            assert list(f["hits/offsets"]) == list(res.hit_offsets)
            assert np.allclose(f["hits/energy_gev"][:], res.hit_energy_gev)
            assert list(f["particles/status"]) == [0, 0, 2]
    with pytest.raises(OutputExistsError):
        write_result(res, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_particle_files(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("event,pdg,px,py,pz\n0,22,0.5,0.5,0.1\n0,-11,0.3,-0.7,0.0\n1,11,1.0,0.2,0.3\n")
    parts = read_particles(csv)
    assert len(parts) == 3 and parts.n_events == 2 and list(parts.pdg) == [22, -11, 11]
    h5 = tmp_path / "p.h5"
    with h5py.File(h5, "w") as f:
        for k, v in {"pdg": [22], "px": [1.0], "py": [0.0], "pz": [0.0], "vx": [0.0], "vy": [1.0], "vz": [2.0]}.items():
            f[k] = v
    assert np.allclose(read_particles(h5).vertex_cm, [[0, 1, 2]])
    root = tmp_path / "p.root"
    with uproot.recreate(root) as f:
        import awkward as ak

        gen = {"pdg": ak.Array([[22, 11], [-11]]), "px": ak.Array([[1.0, 0.5], [0.2]]),
               "py": ak.Array([[0.0, 0.5], [0.9]]), "pz": ak.Array([[0.1, 0.0], [0.0]])}
        f.mktree("gen", {k: v.type for k, v in gen.items()}).extend(gen)
    parts = read_particles(root)
    assert list(parts.event) == [0, 0, 1] and list(parts.pdg) == [22, 11, -11]


@pytest.mark.parametrize(
    "content, message",
    [
        ("event,pdg,px,py,pz\n0,99999,1,0,0\n", "unknown PDG"),
        ("event,pdg,px,py,pz\n0,22,nan,0,0\n", "NaN"),
        ("event,pdg,px,py,pz\n0,22,0,0,0\n", "zero momentum"),
        ("event,pdg,px,py\n0,22,1,0\n", "missing column"),
        ("", "empty file"),
    ],
)
def test_bad_particle_files(tmp_path, content, message):
    path = tmp_path / "p.csv"
    path.write_text(content)
    with pytest.raises(ParticleInputError, match=message):
        read_particles(path)


def test_bad_root_input(tmp_path):
    root = tmp_path / "p.root"
    with uproot.recreate(root) as f:
        f.mktree("gen", {"pdg": np.int32, "px": np.float64}).extend({"pdg": np.array([22]), "px": np.array([1.0])})
    with pytest.raises(ParticleInputError, match="missing column"):
        read_particles(root)
    with pytest.raises(ParticleInputError, match="no such file"):
        read_particles(tmp_path / "none.root")


@pytest.mark.parametrize("suffix", [".root", ".h5"])
@pytest.mark.parametrize("flush_events", [1, 10_000])  # each chunk written alone, or pooled into one write
@pytest.mark.parametrize("background", [True, False])
def test_chunks_stream_into_one_file(tmp_path, suffix, flush_events, background):
    from caloforge.engine.output import HitsWriter

    sim = FastSimulation({22: CrossSampler()})
    first = sim.simulate(make_particles([22, 22], [_towards(10, 10), _towards(20, 20)], event=[0, 1]))
    second = sim.simulate(make_particles([22], [_towards(30, 30)], event=[2]))
    earlier = sim.simulate(make_particles([22, 22], [_towards(12, 40), _towards(14, 50)], event=[-5, -5]))
    with HitsWriter(tmp_path / f"hits{suffix}", flush_events=flush_events, background=background) as w:
        w.append(first)
        w.append(second)
        w.append(earlier)  # out of order: the pooled events are written first
    path = tmp_path / f"hits{suffix}"
    if suffix == ".root":
        ev = uproot.open(path)["events"].arrays(library="ak")
        assert list(ev["event"]) == [0, 1, 2, -5] and list(ev["nhit"]) == [3, 3, 3, 6]
        assert list(ev["particle_theta"][2]) == [30] and list(ev["particle_theta"][3]) == [12, 14]
        assert list(ev["particle_phi"][1]) == [20]
    else:
        with h5py.File(path) as f:
            assert list(f["event_number"]) == [0, 1, 2, -5] and list(f["hits/offsets"]) == [0, 3, 6, 9, 15]
            assert list(f["hits/theta"][6:9]) == [25, 30, 30]
            assert list(f["particles/event"]) == [0, 1, 2, -5, -5] and list(f["particles/theta"][3:]) == [12, 14]
    with pytest.raises(RuntimeError):
        with HitsWriter(tmp_path / f"broken{suffix}") as w:
            w.append(first)
            raise RuntimeError("stop")
    assert not (tmp_path / f"broken{suffix}").exists() and not (tmp_path / f"broken{suffix}.partial").exists()


@pytest.mark.parametrize("suffix", [".root", ".h5"])
def test_an_error_in_the_writer_thread_reaches_the_caller_and_leaves_no_file(tmp_path, suffix, monkeypatch):
    from caloforge.engine.output import HitsWriter

    def full_disk(self, result):
        raise OSError("No space left on device")

    monkeypatch.setattr(HitsWriter, "_append_root" if suffix == ".root" else "_append_hdf5", full_disk)
    result = FastSimulation({22: CrossSampler()}).simulate(make_particles([22], [_towards(10, 10)]))
    path = tmp_path / f"hits{suffix}"
    with pytest.raises(OSError, match="No space"):
        with HitsWriter(path, flush_events=1) as w:
            w.append(result)  # handed to the writer thread, which fails there
            w.append(result)  # raised here, at the latest when the writer closes
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "suffix,compression", [(".root", c) for c in ("zlib", "zstd", "lz4", "none")] + [(".h5", "zlib"), (".h5", "none")]
)
def test_every_compression_reads_back_the_same_hits(tmp_path, suffix, compression):
    from caloforge.engine.output import HitsWriter

    result = FastSimulation({22: CrossSampler()}).simulate(
        make_particles([22, 22, 22], [_towards(10, 10), _towards(20, 20), _towards(30, 119)], event=[0, 0, 1])
    )
    path = tmp_path / f"hits{suffix}"
    with HitsWriter(path, compression=compression) as w:
        w.append(result)
    if suffix == ".root":
        f = uproot.open(path)
        assert repr(f.file.compression) == {"zlib": "ZLIB(3)", "zstd": "ZSTD(1)", "lz4": "LZ4(1)", "none": "None"}[
            compression
        ]
        # zlib baskets come from ISA-L, but uproot reads them back with Python's zlib: the same deflate format
        assert uproot.ZLIB.library == "zlib"
        ev = f["events"].arrays(["hit_gid", "hit_energy_gev"], library="ak")
        gid, energy = np.asarray(ev["hit_gid"][1]), np.asarray(ev["hit_energy_gev"][1])
    else:
        with h5py.File(path) as f:
            assert f["hits/energy_gev"].compression == ("gzip" if compression == "zlib" else None)
            lo, hi = f["hits/offsets"][1:3]
            gid, energy = f["hits/gid"][lo:hi], f["hits/energy_gev"][lo:hi]
    k = slice(result.hit_offsets[1], result.hit_offsets[2])
    assert np.array_equal(gid, result.hit_gid[k]) and np.array_equal(energy, result.hit_energy_gev[k])


def test_root_zlib_is_written_by_isal_without_changing_uproots_default():
    import isal.isal_zlib
    import zlib

    from caloforge.engine.output import ROOT_ZLIB_LEVEL, _root_codec

    codec = _root_codec("zlib")
    assert codec.library == "isal" and codec.level == ROOT_ZLIB_LEVEL and uproot.ZLIB.library == "zlib"
    data = np.random.default_rng(0).normal(size=10_000).astype(np.float32).tobytes() + bytes(40_000)
    packed = codec.compress(data)
    assert packed == isal.isal_zlib.compress(data, level=1) and len(packed) < len(data)
    assert zlib.decompress(packed) == data


def test_unknown_or_unsupported_compression_is_refused_before_any_file_is_made(tmp_path):
    from caloforge.engine.output import HitsWriter

    with pytest.raises(ValueError, match="choose one of"):
        HitsWriter(tmp_path / "a.root", compression="gzip9")
    with pytest.raises(ValueError, match="HDF5 takes zlib or none"):
        HitsWriter(tmp_path / "a.h5", compression="zstd")
    assert sorted(tmp_path.iterdir()) == []


def test_chunks_never_split_an_event():
    from caloforge.engine.particles import iter_chunks

    parts = make_particles(np.full(10, 22), np.tile([1.0, 0.0, 0.0], (10, 1)), event=[3, 1, 1, 2, 2, 2, 0, 4, 4, 5])
    chunks = list(iter_chunks(parts, 3))
    assert sum(len(c) for c in chunks) == 10
    seen = [set(c.event.tolist()) for c in chunks]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    assert [list(c.event) for c in chunks][0] == [0, 1, 1]


def test_chunks_hold_whole_blocks_of_events():
    from caloforge.engine.particles import iter_chunks

    event = np.repeat([7, 2, 9, 4, 5, 1, 3], [1, 2, 1, 3, 1, 1, 2])  # event ranks 0..6 after sorting: 1 2 3 4 5 7 9
    parts = make_particles(np.full(len(event), 22), np.tile([1.0, 0.0, 0.0], (len(event), 1)), event=event)
    chunks = [c.event.tolist() for c in iter_chunks(parts, 2, block_events=3)]
    assert chunks == [[1, 2, 2, 3, 3], [4, 4, 4, 5, 7], [9]]  # cut after ranks 2 and 5 only
    with pytest.raises(ValueError):
        list(iter_chunks(parts, 2, block_events=0))
