import pytest
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
