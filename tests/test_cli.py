import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from caloforge.cli.main import app, parse_momentum, parse_track

runner = CliRunner()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "mu-"], "unknown particle"),
        (["-n", "0"], "must be positive"),
        (["--momentum", "-1:2"], "not valid"),
        (["--momentum", "abc"], "expected a number"),
        (["-p", "e-", "--momentum", "0:0.1"], "cannot reach the EMC barrel"),
        (["--track", "0,0,1"], "does not reach the EMC barrel"),
        (["--track", "1,2"], "expected PX,PY,PZ"),
        (["--readout", "bes2"], "--readout 'bes2': choose none or boss"),
    ],
)
def test_bad_fullsim_input_gives_one_line_and_no_file(tmp_path, args, message):
    out = tmp_path / "s.h5"
    result = runner.invoke(app, ["fullsim", str(out), *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_output_and_corrupt_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 100)
    for args in (["fullsim", str(junk), "-n", "2"], ["fullsim", str(junk), "--append", "-n", "2"], ["info", str(junk)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert junk.read_bytes() == b"\x00" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.h5"]


def test_parsers():
    assert parse_momentum("1.5") == (1.5, 1.5) and parse_momentum("0:3") == (0.0, 3.0)
    assert parse_track("0.32,0.73,0.01") == (0.32, 0.73, 0.01)


@pytest.mark.geant4
def test_info_summarises_a_sample(photon_sample):
    result = runner.invoke(app, ["info", str(photon_sample)])
    assert result.exit_code == 0
    assert "events      60" in result.stdout and "geant4-11" in result.stdout and "G4LEDATA" in result.stdout


@pytest.fixture(scope="module")
def untrained_gamma_model(tmp_path_factory):
    """A real (untrained) GAN checkpoint: enough to check the plumbing of simulate and generate. Its
    mean shower is a quadratic in the conditions with small random terms and its output is in log space,
    both of which the export must keep."""
    from caloforge.models import build_model

    model = build_model({"name": "gan", "particles": ["gamma"], "mean_shower_bias": True, "mean_shower_degree": 2,
                         "output_transform": "log"})
    model.fit_normalisation(np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32))
    with torch.no_grad():
        model.generator.mean_shower.table.normal_(0.0, 0.01)
    path = tmp_path_factory.mktemp("model") / "gamma.pt"
    model.save(path)
    return path


def test_simulate_with_a_gun_writes_root_and_reports(tmp_path, untrained_gamma_model):
    out = tmp_path / "hits.root"
    result = runner.invoke(app, ["simulate", "--gun", "gamma", "-n", "200", "-o", str(out), "--model", str(untrained_gamma_model)])
    assert result.exit_code == 0, result.output
    assert "200 particles" in result.stdout and "showers/s" in result.stdout
    import uproot

    assert uproot.open(out)["events"].num_entries == 200


def test_simulate_input_errors(tmp_path, untrained_gamma_model):
    csv = tmp_path / "p.csv"
    csv.write_text("event,pdg,px,py,pz\n0,22,nan,0,0\n")
    for args in (
        ["simulate", str(csv), "-o", str(tmp_path / "a.root"), "--model", str(untrained_gamma_model)],
        ["simulate", "-o", str(tmp_path / "b.root"), "--model", str(untrained_gamma_model)],
        ["simulate", "--gun", "gamma", "-o", str(tmp_path / "c.root"), "--model", str(tmp_path / "none.pt")],
        ["simulate", "--gun", "gamma", "-o", str(tmp_path / "d.h5"), "--compression", "zstd",
         "--model", str(untrained_gamma_model)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and result.stderr.startswith("error: "), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]


def test_simulate_and_validate_take_a_readout(tmp_path, untrained_gamma_model):
    out = {}
    for name in ("none", "boss"):
        out[name] = tmp_path / f"{name}.h5"
        result = runner.invoke(app, ["simulate", "--gun", "gamma", "-n", "100", "--readout", name, "-o",
                                     str(out[name]), "--model", str(untrained_gamma_model)])
        assert result.exit_code == 0, result.output
    assert "read-out boss" in result.stdout
    import h5py

    with h5py.File(out["boss"]) as f, h5py.File(out["none"]) as g:
        assert f["hits/energy_gev"].shape != g["hits/energy_gev"].shape or not np.array_equal(
            f["hits/energy_gev"][:], g["hits/energy_gev"][:])
        assert f["hits/energy_gev"][:].min() >= 0.0005
    for command in (["simulate", "--gun", "gamma", "-o", str(tmp_path / "x.h5")],
                    ["validate", str(out["none"]), str(out["none"]), "-o", str(tmp_path / "r")]):
        result = runner.invoke(app, [*command, "--readout", "bes2"])
        assert result.exit_code == 2 and result.stderr.startswith("error: --readout 'bes2'"), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boss.h5", "none.h5"]


@pytest.mark.geant4
def test_generate_writes_a_candidate_like_the_reference(tmp_path, photon_sample, untrained_gamma_model):
    from caloforge.data.io import read_sample

    out = tmp_path / "cand.h5"
    result = runner.invoke(app, ["generate", str(untrained_gamma_model), "--like", str(photon_sample), "-o", str(out)])
    assert result.exit_code == 0, result.output
    ref, cand = read_sample(photon_sample), read_sample(out)
    assert len(cand) == len(ref) and np.array_equal(cand.conditions, ref.conditions)
    assert cand.attrs["generator"] == "model" and np.all(cand.maps_gev >= 0)


def test_export_and_both_backends_agree(tmp_path, untrained_gamma_model):
    from caloforge.export import OnnxShowerModel
    from caloforge.models import load_model

    onnx_path = tmp_path / "gamma.onnx"
    result = runner.invoke(app, ["export", str(untrained_gamma_model), "-o", str(onnx_path)])
    assert result.exit_code == 0, result.output
    conditions = np.tile(np.array([1.0, 0.01, 0.03, 0.5, 0.002, 20.0], dtype=np.float32), (500, 1))
    conditions[:, 1:] *= np.random.default_rng(4).uniform(-2, 2, (500, 5)).astype(np.float32)  # the polynomial varies
    torch_maps = load_model(untrained_gamma_model, device="cpu").sample(conditions, seed=11)
    onnx_maps = OnnxShowerModel(onnx_path).sample(conditions, seed=11)
    assert np.allclose(torch_maps, onnx_maps, rtol=1e-4, atol=1e-5)  # float32 sums in another order, at the ReLU edge
    again = runner.invoke(app, ["export", str(untrained_gamma_model), "-o", str(onnx_path)])
    assert again.exit_code == 2 and "exists" in again.stderr
    # the engine with either backend gives the same hits
    hits = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"hits_{backend}.h5"
        r = runner.invoke(app, ["simulate", "--gun", "gamma", "-n", "300", "-o", str(out), "--backend", backend,
                                "--model", str(untrained_gamma_model)])
        assert r.exit_code == 0, r.output
        import h5py

        with h5py.File(out) as f:
            hits[backend] = f["hits/energy_gev"][:]
    # float32 rounding of an untrained generator's large intermediate sums (maps of several GeV), taken in
    # another order by the fused ONNX graph: a few 1e-6 GeV
    assert np.allclose(hits["torch"], hits["onnx"], rtol=1e-4, atol=3e-5)


@pytest.mark.geant4
def test_fit_energy_writes_a_model_that_draws_the_deposit(tmp_path, photon_sample, untrained_gamma_model):
    from caloforge.data.io import read_sample
    from caloforge.models import load_model

    out = tmp_path / "with_energy.pt"
    args = ["fit-energy", str(untrained_gamma_model), "--sample", str(photon_sample), "-o", str(out), "--epochs", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "energy model fitted on 60 events, 3 epochs" in result.stdout
    model = load_model(out, device="cpu")
    assert model.config.energy_model and model.noise_size == model.config.noise_dim + 2
    c = read_sample(photon_sample).conditions
    fraction = model.sample(c, seed=2).sum(axis=(1, 2)) / c[:, 0]
    assert np.all((fraction > 0) & (fraction < 1.05))  # an untrained generator alone puts several GeV in a map
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and again.stderr.startswith("error: ")  # the output exists
    no_epochs = runner.invoke(app, ["fit-energy", str(out), "--sample", str(photon_sample), "-o",
                                    str(tmp_path / "x.pt"), "--epochs", "0"])
    assert no_epochs.exit_code == 2 and "must be positive" in no_epochs.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["with_energy.pt"]


@pytest.mark.geant4
def test_distill_writes_a_narrower_model_and_refuses_bad_input(tmp_path, photon_sample, untrained_gamma_model):
    from caloforge.models import load_model

    out = tmp_path / "student.pt"
    args = ["distill", str(untrained_gamma_model), "--sample", str(photon_sample), "-o", str(out),
            "--channels", "4,4", "--steps", "20", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "20 steps; held-out mean squared difference" in result.stdout
    student = load_model(out, device="cpu")
    assert student.config.generator_channels == (4, 4)
    assert student.parameter_counts()["generator"] < load_model(untrained_gamma_model).parameter_counts()["generator"]
    for bad, message in ((["--channels", "8,x"], "integers separated by commas"), (["--channels", "8"], "channels"),
                         (["--steps", "0"], "at least 10 steps"), (["--hidden", "64,y"], "--hidden"),
                         (["--hidden", "64,0"], "generator_hidden")):
        refused = runner.invoke(app, [*args[:5], str(tmp_path / "other.pt"), *bad])
        assert refused.exit_code == 2 and message in refused.stderr and "Traceback" not in refused.output
    mlp = runner.invoke(app, [*args[:5], str(tmp_path / "mlp.pt"), "--hidden", "16", "--steps", "20", "--quiet"])
    assert mlp.exit_code == 0, mlp.output
    assert load_model(tmp_path / "mlp.pt", device="cpu").config.generator_hidden == (16,)
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "give a new .pt file" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.pt", "student.pt"]


# --- damaged input files, outputs that cannot be written, the error wrapper (issue 22: items 3, 4, 10) ---


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> dict:
    """A good sample file, a configuration that trains on a file named by {path}, the folder they are in."""
    from test_io import _sample_file

    folder = tmp_path_factory.mktemp("inputs")
    return {"good": _sample_file(folder / "good.h5"), "folder": folder,
            "config": "model: {name: gan, particles: [gamma], regressor_epochs: 1}\n"
                      "data: {train_files: ['{path}'], val_fraction: 0.2}\n"
                      "training: {epochs: 1, batch_size: 16, seed: 3, device: cpu, progress: false}\n"}


def _damage(kind: str, path: Path) -> None:
    import h5py
    from test_io import damage_chunk

    if kind == "corrupt chunk":
        damage_chunk(path, "showers")
    elif kind == "cut in half":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "not HDF5":
        path.write_text("event,pdg,px,py,pz\n0,22,1,0,0\n")
    else:  # a valid HDF5 file without the sample schema
        path.unlink()
        with h5py.File(path, "w") as f:
            f["showers"] = np.zeros((3, 121))


def _config(sample_files, train_file: Path) -> Path:
    path = sample_files["folder"] / f"train_{train_file.stem}.yaml"
    path.write_text(sample_files["config"].replace("{path}", str(train_file)))
    return path


@pytest.mark.parametrize("command", ["info", "validate", "generate", "train"])
@pytest.mark.parametrize("damage", ["corrupt chunk", "cut in half", "not HDF5", "no schema"])
def test_a_damaged_sample_file_gives_one_line_naming_it(tmp_path, sample_files, untrained_gamma_model, command,
                                                        damage):
    import shutil

    bad = sample_files["folder"] / f"{damage.replace(' ', '_')}.h5"
    if not bad.exists():
        shutil.copyfile(sample_files["good"], bad)
        _damage(damage, bad)
    out = tmp_path / "out"
    out.mkdir()
    args = {
        "info": ["info", str(bad)],
        "validate": ["validate", str(sample_files["good"]), str(bad), "-o", str(out / "report")],
        "generate": ["generate", str(untrained_gamma_model), "--like", str(bad), "-o", str(out / "cand.h5")],
        "train": ["train", str(_config(sample_files, bad)), "-o", str(out / "run"), "--quiet"],
    }[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(bad) in result.stderr
    if damage == "corrupt chunk":
        assert "dataset 'showers': damaged file" in result.stderr
    assert list(out.iterdir()) == []  # nothing half-written


def _output_commands(model: Path, good: Path, config: Path, base: Path) -> dict[str, tuple[list[str], Path]]:
    """Each writing command with its output in the folder ``base``: (arguments, output)."""
    outputs = {"generate": base / "cand.h5", "export": base / "m.onnx", "validate": base / "report",
               "train": base / "run", "fit-energy": base / "e.pt", "distill": base / "d.pt",
               "simulate": base / "hits.root", "fullsim": base / "g4.h5"}
    args = {
        "generate": ["generate", str(model), "--like", str(good), "-o"],
        "export": ["export", str(model), "-o"],
        "validate": ["validate", str(good), str(good), "-o"],
        "train": ["train", str(config), "--quiet", "-o"],
        "fit-energy": ["fit-energy", str(model), "--sample", str(good), "--epochs", "1", "-o"],
        "distill": ["distill", str(model), "--sample", str(good), "--steps", "10", "--quiet", "-o"],
        "simulate": ["simulate", "--gun", "gamma", "-n", "10", "--model", str(model), "-o"],
        "fullsim": ["fullsim", "-n", "2"],
    }
    return {name: ([*args[name], str(outputs[name])], outputs[name]) for name in args}


@pytest.mark.parametrize(
    "command, where",
    [(command, where) for command in ("generate", "export", "validate", "train", "fit-energy", "distill", "simulate",
                                      "fullsim")
     for where in ("under a regular file", "in a missing folder")
     if not (where == "in a missing folder" and command in ("validate", "train"))],  # they make their folder
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch, sample_files,
                                                                     untrained_gamma_model, command, where):
    import caloforge.validation.report as report

    def no_work(*args, **kwargs):
        raise AssertionError("validate read its inputs before checking its output folder")

    monkeypatch.setattr(report, "_load", no_work)
    (tmp_path / "file").write_text("a regular file, not a folder")
    base = tmp_path / "file" / "sub" if where == "under a regular file" else tmp_path / "none"
    args, output = _output_commands(untrained_gamma_model, sample_files["good"],
                                    _config(sample_files, sample_files["good"]), base)[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {output}: cannot write there, ") and len(result.stderr.splitlines()) == 1
    assert ("file" if where == "under a regular file" else "does not exist") in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _invoke_bound_by_permissions(args: list[str]) -> tuple[int, str]:
    """Run the command in a forked child that the permission bits bind: as root (whom they do not stop), the
    child becomes the user nobody first. Returns the exit status and stderr."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 70
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            result = runner.invoke(app, args)
            os.write(write, result.stderr.encode())
            status = result.exit_code
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as f:
        stderr = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_read_only_output_folder_is_refused_before_any_work(sample_files, untrained_gamma_model):
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="caloforge-read-only-"))  # outside pytest's folder, which only root enters
    try:
        base.chmod(0o755)
        read_only = base / "read-only"
        read_only.mkdir(mode=0o555)
        read_only.chmod(0o555)
        commands = _output_commands(untrained_gamma_model, sample_files["good"], sample_files["good"], read_only)
        for name in ("validate", "generate", "export"):
            args, output = commands[name]
            status, stderr = _invoke_bound_by_permissions(args)
            assert status == 2, stderr
            assert stderr == f"error: {output}: cannot write in folder {read_only} (Permission denied)\n"
        assert list(read_only.iterdir()) == []
    finally:
        base.chmod(0o755)
        (base / "read-only").chmod(0o755)
        shutil.rmtree(base)


def test_generate_onto_an_existing_file_says_what_to_do(tmp_path, sample_files, untrained_gamma_model):
    out = tmp_path / "cand.h5"
    out.write_text("keep me")
    result = runner.invoke(app, ["generate", str(untrained_gamma_model), "--like", str(sample_files["good"]),
                                 "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"error: {out} exists: remove it or choose another name\n"
    assert out.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["cand.h5"]


def test_the_error_wrapper_gives_one_line_for_the_user_and_a_traceback_for_a_bug(monkeypatch):
    import errno

    import typer

    from caloforge.cli.main import _user_errors

    demo = typer.Typer()

    @demo.command()
    @_user_errors
    def run(kind: str) -> None:
        if kind == "disk full":
            raise OSError(errno.ENOSPC, "No space left on device", "/data/hits.root")
        if kind == "device":
            raise OSError(errno.EIO, "Input/output error")
        if kind == "bug":
            raise AttributeError("'NoneType' object has no attribute 'maps_gev'")
        raise ValueError("a message\nover two lines")

    full = runner.invoke(demo, ["disk full"])
    assert full.exit_code == 2 and full.stderr == "error: /data/hits.root: No space left on device\n"
    value = runner.invoke(demo, ["value"])
    assert value.exit_code == 2 and value.stderr == "error: a message over two lines\n"
    for kind, error in (("device", OSError), ("bug", AttributeError)):
        shown = runner.invoke(demo, [kind])
        assert shown.exit_code == 1 and type(shown.exception) is error
    monkeypatch.setenv("CALOFORGE_TRACEBACK", "1")
    assert type(runner.invoke(demo, ["value"]).exception) is ValueError
