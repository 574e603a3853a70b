"""Chunked jobs on Dask (caloforge.jobs): a 2-worker local cluster gives the serial run's events, a chunk whose
worker dies completes by retry, a stopped run resumes without redoing or duplicating chunks, a chunk that always
fails is named and the others kept; ``caloforge simulate`` of many particle files (one output each, the same on 2
workers, resumed, a failing file named, bad inputs refused in one line)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from caloforge.jobs import Chunk, ChunksFailedError, open_client, run_chunks


def _write(output: str, value: int) -> int:
    Path(output).write_text(str(value))
    return 1


def _die_once(output: str, marker: str) -> int:
    """Kill this worker process on the first try (a marker file remembers it), write the output on the next."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return _write(output, 7)


def _always_fails(output: str) -> int:
    raise RuntimeError("no such detector")


@pytest.fixture(scope="module")
def client():
    with open_client("local", workers=2) as c:
        yield c


def _chunks(tmp_path: Path, n: int) -> list[Chunk]:
    return [Chunk(f"c{k}", tmp_path / f"c{k}.txt", (k,), 1) for k in range(n)]


def test_killed_worker_is_retried(client, tmp_path: Path) -> None:
    chunk = Chunk("dies", tmp_path / "dies.txt", (str(tmp_path / "marker"),), 1)
    report = run_chunks(_die_once, [chunk], client=client, progress=False)
    assert report.done == ["dies"] and (tmp_path / "dies.txt").read_text() == "7" and (tmp_path / "marker").exists()


def test_resume_skips_finished_chunks(client, tmp_path: Path) -> None:
    chunks = _chunks(tmp_path, 4)
    first = run_chunks(_write, chunks[:2], client=client, progress=False)  # a run stopped after two chunks
    (tmp_path / "c0.txt").write_text("kept")
    again = run_chunks(_write, chunks, client=client, progress=False)
    assert sorted(first.done) == ["c0", "c1"] and sorted(again.skipped) == ["c0", "c1"]
    assert sorted(again.done) == ["c2", "c3"] and (tmp_path / "c0.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"c{k}.txt" for k in range(4)]  # no duplicates, no partials


def test_failing_chunk_is_named_and_others_kept(client, tmp_path: Path) -> None:
    good = _chunks(tmp_path, 2)
    bad = Chunk("broken", tmp_path / "broken.txt")
    report = run_chunks(_always_fails, [bad], client=client, retries=1, progress=False)
    assert report.failed == {"broken": "RuntimeError: no such detector"}
    report = run_chunks(_write, good, client=client, progress=False)
    assert sorted(report.done) == ["c0", "c1"]
    err = ChunksFailedError({"broken": "RuntimeError: no such detector"}, kept=2, folder=tmp_path)
    assert "broken (RuntimeError: no such detector)" in str(err) and "2 finished" in str(err)


def test_serial_runner_retries_and_names_failures(tmp_path: Path) -> None:
    report = run_chunks(_always_fails, [Chunk("broken", tmp_path / "b.txt")], retries=2, progress=False)
    assert list(report.failed) == ["broken"]


@pytest.mark.parametrize("on_client", [False, True])
def test_chunks_added_as_others_finish_run_in_the_same_call(client, tmp_path: Path, on_client: bool) -> None:
    """``then`` adds chunks as chunks finish (not for skipped or failed ones): they run in the same call, those
    whose output exists are skipped."""
    (tmp_path / "c3.txt").write_text("kept")
    seen = []

    def then(chunk: Chunk, n: int) -> list[Chunk]:
        seen.append(chunk.name)
        k = int(chunk.name[1:])
        return [Chunk(f"c{k + 2}", tmp_path / f"c{k + 2}.txt", (k + 2,), 1)] if k + 2 < 6 else []

    report = run_chunks(_write, _chunks(tmp_path, 2), client=client if on_client else None, progress=False,
                        then=then)
    assert sorted(report.done) == ["c0", "c1", "c2", "c4"] and report.skipped == ["c3"] and report.events == 4
    assert sorted(seen) == sorted(report.done) and (tmp_path / "c3.txt").read_text() == "kept"


def _assert_same_hits(serial: Path, listing: Path, n_chunks: int) -> None:
    """The hits of the serial ROOT file equal those of the ``n_chunks`` chunk files that ``listing`` names, event
    for event."""
    import uproot

    files = [str(listing.parent / line) + ":events" for line in listing.read_text().split()]
    assert len(files) == n_chunks
    a = uproot.open(serial)["events"].arrays(["event", "hit_gid", "hit_energy_gev"], library="np")
    b = uproot.concatenate(files, ["event", "hit_gid", "hit_energy_gev"], library="np")
    for key in a:
        assert all(np.array_equal(x, y) for x, y in zip(a[key], b[key], strict=True)), key


def test_engine_two_workers_equal_serial(client, tmp_path: Path) -> None:
    """The gun in chunks on 2 workers: the hits of one serial run, event for event."""
    from caloforge.cli.main import app
    from typer.testing import CliRunner

    runner = CliRunner()
    serial, chunked = tmp_path / "serial.root", tmp_path / "gun.root"
    common = ["simulate", "--gun", "gamma", "-n", "9000", "--seed", "3"]
    assert runner.invoke(app, [*common, "-o", str(serial)]).exit_code == 0
    address = client.scheduler.address
    result = runner.invoke(app, [*common, "-o", str(chunked), "--cluster", address, "--chunk-events", "4096"])
    assert result.exit_code == 0, result.output
    _assert_same_hits(serial, tmp_path / "gun.txt", 3)


def test_particle_file_in_chunks_equals_the_serial_run(client, tmp_path: Path) -> None:
    """A particle file (two particles an event, event numbers out of order and spaced) in chunks on 2 workers: the
    hits of one serial run of the file, event for event."""
    from typer.testing import CliRunner

    from caloforge.cli.main import app
    from caloforge.engine import particle_gun

    gun = particle_gun(22, 2 * 5000, seed=4)
    event = np.random.default_rng(1).permutation(np.repeat(np.arange(5000) * 7 + 3, 2))
    rows = ["event,pdg,px,py,pz"] + [f"{e},{pdg},{px:.17g},{py:.17g},{pz:.17g}" for e, pdg, (px, py, pz) in
                                      zip(event, np.where(np.arange(len(event)) % 2, 11, 22), gun.momentum_gev)]
    particles = tmp_path / "particles.csv"
    particles.write_text("\n".join(rows) + "\n")
    runner = CliRunner()
    serial, chunked = tmp_path / "serial.root", tmp_path / "file.root"
    result = runner.invoke(app, ["simulate", str(particles), "--seed", "5", "-o", str(serial)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["simulate", str(particles), "--seed", "5", "-o", str(chunked), "--cluster",
                                 client.scheduler.address, "--chunk-events", "4096"])
    assert result.exit_code == 0, result.output
    _assert_same_hits(serial, tmp_path / "file.txt", 2)


def test_gun_particles_equal_the_whole_gun() -> None:
    from caloforge.engine import particle_gun
    from caloforge.engine.chunks import gun_particles

    for momentum in ((0.0, 3.0), (1.5, 1.5)):
        whole = particle_gun(11, 9000, momentum_gev=momentum, seed=5)
        part = gun_particles(11, 9000, 4096, 8192, momentum_gev=momentum, seed=5)
        assert np.array_equal(whole.momentum_gev[4096:8192], part.momentum_gev)
        assert np.array_equal(whole.event[4096:8192], part.event)


@pytest.mark.geant4
def test_geant4_two_workers_equal_serial(client, tmp_path: Path) -> None:
    """A tiny Geant4 sample: serial make_sample and 2-worker chunks (manifest) give the same events, read-out and
    counters."""
    from caloforge.data.io import read_attrs, read_sample
    from caloforge.data.production import make_sample, make_sample_chunked
    from caloforge.detector.readout import BOSS_READOUT
    from caloforge.fullsim.runner import GunSpec

    gun = GunSpec(particle="e-", seed=11)
    make_sample(tmp_path / "serial.h5", gun, 24, workers=1, progress=False, readout=BOSS_READOUT)
    make_sample_chunked(tmp_path / "chunked.h5", gun, 24, client=client, chunk_attempts=8, progress=False,
                        readout=BOSS_READOUT)
    a, b = read_sample(tmp_path / "serial.h5"), read_sample(tmp_path / "chunked.h5")
    assert np.array_equal(a.maps_gev, b.maps_gev) and np.array_equal(a.seed, b.seed)
    assert np.array_equal(a.maps_readout_gev, b.maps_readout_gev)  # the read-out too
    assert np.array_equal(a.conditions, b.conditions)
    assert all(np.array_equal(a.truth[k], b.truth[k], equal_nan=True) for k in a.truth)
    ka, kb = read_attrs(tmp_path / "serial.h5"), read_attrs(tmp_path / "chunked.h5")
    assert ka["next_attempt"] == kb["next_attempt"] and ka["attempt_counts"] == kb["attempt_counts"]
    # a missing chunk is an error naming it, not zeros
    chunk = sorted((tmp_path / "chunked_chunks").glob("*.h5"))[0]
    chunk.rename(chunk.with_suffix(".gone"))
    with pytest.raises(ValueError, match="is missing"):
        read_sample(tmp_path / "chunked.h5")


def _fails_on(name: str):
    """:func:`caloforge.data.production.simulate_sample_chunk`, raising for the chunk file ``name``."""
    from caloforge.data.production import simulate_sample_chunk

    def chunk(output: str, *args) -> int:
        if Path(output).name == name:
            raise RuntimeError("worker lost")
        return simulate_sample_chunk(output, *args)

    return chunk


@pytest.mark.geant4
def test_geant4_samples_in_one_run_named_failure_and_resume(client, tmp_path: Path, monkeypatch) -> None:
    """``caloforge samples --cluster`` in small: the chunks of all files in one run; a chunk that fails every try is
    named by file and chunk, the other files' manifests written; the same call resumes (on 2 workers) keeping the
    finished chunks, and a file equals the serial production's event for event."""
    from caloforge.data import production
    from caloforge.data.io import read_sample
    from caloforge.fullsim.runner import GunSpec

    out = tmp_path / "samples"
    kwargs = dict(n_train=6, n_test=4, n_floor=3, particles=("e-", "gamma"), chunk_attempts=4, progress=False)
    monkeypatch.setattr(production, "simulate_sample_chunk", _fails_on("train_gamma_000000.h5"))
    with pytest.raises(ChunksFailedError, match=r"1 chunk\(s\) failed every try: train_gamma_000000 \(RuntimeError"):
        production.make_reference_samples_chunked(out, **kwargs)
    manifests = {f"{split}_{particle}.h5" for split in ("test", "train", "floor") for particle in ("e-", "gamma")}
    assert {p.name for p in out.glob("*.h5")} == manifests - {"train_gamma.h5"}
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*_chunks/*.h5")}
    monkeypatch.undo()
    summaries = production.make_reference_samples_chunked(out, client=client, **kwargs)
    assert [s.path.name for s in summaries] == ["train_gamma.h5"]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    production.make_sample(tmp_path / "serial.h5", GunSpec(particle="gamma", seed=201), 6, workers=1, progress=False)
    a, b = read_sample(tmp_path / "serial.h5"), read_sample(out / "train_gamma.h5")
    assert np.array_equal(a.maps_gev, b.maps_gev) and np.array_equal(a.seed, b.seed)
    assert production.make_reference_samples_chunked(out, client=client, **kwargs) == []


def _particle_csv(path: Path, n_events: int, seed: int) -> Path:
    """A particle file of ``n_events`` events of two particles (a photon and an electron) each."""
    from caloforge.engine import particle_gun

    gun = particle_gun(22, 2 * n_events, momentum_gev=(0.1, 2.0), seed=seed)
    rows = ["event,pdg,px,py,pz"] + [f"{k // 2 + 1},{(22, 11)[k % 2]},{px:.17g},{py:.17g},{pz:.17g}"
                                     for k, (px, py, pz) in enumerate(gun.momentum_gev)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _particle_h5(path: Path, n_events: int, seed: int) -> Path:
    """The same as :func:`_particle_csv` in the group ``gen`` of an HDF5 file."""
    import h5py

    from caloforge.engine import particle_gun

    gun = particle_gun(22, n_events, seed=seed)
    with h5py.File(path, "w") as f:
        f["gen/event"], f["gen/pdg"] = np.arange(n_events), np.full(n_events, 22)
        for k, axis in enumerate("xyz"):
            f[f"gen/p{axis}"] = gun.momentum_gev[:, k]
    return path


def _hits(path: Path) -> dict[str, np.ndarray]:
    import uproot

    return uproot.open(path)["events"].arrays(["event", "hit_gid", "hit_energy_gev"], library="np")


def _same_hits(a: Path, b: Path) -> bool:
    x, y = _hits(a), _hits(b)
    return all(len(x[k]) == len(y[k]) and all(np.array_equal(u, v) for u, v in zip(x[k], y[k])) for k in x)


def test_many_files_serial_equal_two_workers(client, tmp_path: Path) -> None:
    """Several particle files: one hits file each, named after the input, and their list; the serial run and a
    2-worker run give the same files; a file's output does not depend on the others (the same file alone into a
    folder), and two files of the same particles but other names draw other showers."""
    from typer.testing import CliRunner

    from caloforge.cli.main import app

    inputs = [str(_particle_csv(tmp_path / "run_a.csv", 300, 1)), str(_particle_csv(tmp_path / "run_b.csv", 300, 1)),
              f"{_particle_h5(tmp_path / 'run_c.h5', 200, 2)}:gen"]
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", *inputs, "--seed", "7", "-o", str(tmp_path / "serial")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["simulate", *inputs[::-1], "--seed", "7", "-o", str(tmp_path / "dask"), "--cluster",
                                 client.scheduler.address])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "serial.txt").read_text().split() == [f"serial/run_{x}.root" for x in "abc"]
    assert all(_same_hits(tmp_path / "serial" / f"run_{x}.root", tmp_path / "dask" / f"run_{x}.root") for x in "abc")
    (tmp_path / "alone").mkdir()
    result = runner.invoke(app, ["simulate", inputs[1], "--seed", "7", "-o", str(tmp_path / "alone")])
    assert result.exit_code == 0, result.output
    assert _same_hits(tmp_path / "serial" / "run_b.root", tmp_path / "alone" / "run_b.root")
    assert not _same_hits(tmp_path / "serial" / "run_a.root", tmp_path / "serial" / "run_b.root")


def test_many_files_failure_named_and_resumed(tmp_path: Path) -> None:
    """A corrupt input is named at the end (exit status 2), the other outputs written and no partial file left;
    the same command run again keeps the finished outputs and writes the list once all are done."""
    from typer.testing import CliRunner

    from caloforge.cli.main import app

    good = [_particle_csv(tmp_path / f"{x}.csv", 100, k) for k, x in enumerate("ab")]
    bad = tmp_path / "bad.csv"
    bad.write_text("event,pdg,px,py,pz\n1,22,0.1,oops,0.3\n")
    out = tmp_path / "hits"
    command = ["simulate", *map(str, [*good, bad]), "-o", str(out), "--format", "h5"]
    runner = CliRunner()
    result = runner.invoke(app, command)
    assert result.exit_code == 2 and "bad.csv (ParticleInputError" in result.output and "2 finished" in result.output
    assert "engine, 3 files:  67%" in result.output and "2/3" in result.output  # the bar counts the files
    assert sorted(p.name for p in out.iterdir()) == ["a.h5", "b.h5"] and not (tmp_path / "hits.txt").exists()
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    _particle_csv(bad, 100, 5)
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "3: 1 now (100 events), 2 done before" in result.output
    assert {p: (out / p).stat().st_mtime_ns for p in written} == written
    assert (tmp_path / "hits.txt").read_text().split() == ["hits/a.h5", "hits/b.h5", "hits/bad.h5"]


@pytest.mark.parametrize("args, message", [
    (["a.csv", "missing.csv", "-o", "out"], "missing.csv: no such file"),
    (["a.csv", "sub/a.csv", "-o", "out"], "two inputs named 'a'"),
    (["a.csv", "b.csv", "-o", "a.csv"], "a.csv: exists and is not a folder"),
    (["a.csv", "b.csv", "-o", "out.root"], "-o is a folder"),
    (["a.csv", "b.csv", "--gun", "gamma"], "not both"),
    (["a.csv", "--format", "h5"], "--format is for a folder"),
])
def test_many_files_bad_input_one_line(tmp_path: Path, monkeypatch, args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from caloforge.cli.main import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    for name in ("a.csv", "b.csv", "sub/a.csv"):
        (tmp_path / name).write_text("event,pdg,px,py,pz\n1,22,0.1,0.2,0.3\n")
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["simulate", *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before
