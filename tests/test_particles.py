"""The particle readers (caloforge.engine.particles): every cell checked, every bad input one line naming the file
and the column, row or line; property-based tests that odd inputs give particles that pass the checks or a
ParticleInputError, never another exception."""

import math

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caloforge.engine import ParticleInputError, make_particles, read_particles
from caloforge.engine.particles import KNOWN_PDG, Particles

HEADER = "event,pdg,px,py,pz\n"


def _error(path) -> str:
    with pytest.raises(ParticleInputError) as info:
        read_particles(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path).split(":")[0])
    return message


@pytest.mark.parametrize(
    "rows, expected",
    [
        ("0.2,22,1,0,0\n0.7,22,1,0,0\n", "column event, line 2: 0.2 is not an integer"),  # once one event
        ("1e20,22,1,0,0\n", "column event, line 2: 1e+20 is beyond 64-bit integers"),  # once -2**63
        ("99999999999999999999,22,1,0,0\n", "column event, line 2: 1e+20 is beyond 64-bit integers"),
        ("0,22,1,0,0\n,22,1,0,0\n", "column event, line 3: an empty cell"),  # once -1 or -2**63
        ("nan,22,1,0,0\n", "column event, line 2: nan is not an integer"),
        ("0,22,abc,0,0\n", "column px, line 2: 'abc' is not a number"),  # once a traceback
        ("0,22,,1,0\n", "column px, line 2: an empty cell"),  # once px = 0
        ("0,,1,0,0\n", "column pdg, line 2: an empty cell"),  # once "unknown PDG id 0"
        ("0,22.5,1,0,0\n", "column pdg, line 2: 22.5 is not an integer"),
        ("0,22,1,0\n", "line 2: 4 values for the 5 columns of the header"),
        ("0,99999,1,0,0\n", "unknown PDG id(s) [99999] (first: line 2)"),
        ("0,22,nan,0,0\n", "line 2 has a NaN or infinite momentum"),
        ("0,22,1e400,0,0\n", "line 2 has a NaN or infinite momentum"),
        ("0,22,0,0,0\n", "line 2 has zero momentum"),
    ],
)
def test_bad_csv_cells_name_the_file_column_and_line(tmp_path, rows, expected):
    path = tmp_path / "p.csv"
    path.write_text(HEADER + rows)
    assert expected in _error(path)


def test_csv_integers_written_as_floats_blanks_and_comments_are_read(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("# generator output\nevent, pdg, px, py, pz\n\n3.0, 22, 1, 0, 0\n 3 ,-11, 0.5 ,0.5,0\n")
    parts = read_particles(path)
    assert parts.event.tolist() == [3, 3] and parts.pdg.tolist() == [22, -11]
    assert parts.event.dtype == np.int64 and parts.momentum_gev[1].tolist() == [0.5, 0.5, 0.0]


def test_bad_hdf5_columns(tmp_path):
    cases = {
        "unequal": ({"pdg": [22, 22], "px": [1.0], "py": [0.0, 0.0], "pz": [0.0, 0.0]},
                    "columns of unequal length (pdg 2, px 1, py 2, pz 2)"),  # once a bare numpy message
        "strings": ({"pdg": [22], "px": np.array([b"abc"]), "py": [0.0], "pz": [0.0]},
                    "column px, row 0: 'abc' is not a number"),
        "fraction": ({"event": [0.0, 0.5], "pdg": [22, 22], "px": [1.0, 1.0], "py": [0.0, 0.0], "pz": [0.0, 0.0]},
                     "column event, row 1: 0.5 is not an integer"),
        "huge": ({"event": np.array([2**63 + 10], dtype=np.uint64), "pdg": [22], "px": [1.0], "py": [0.0],
                  "pz": [0.0]}, "column event, row 0: 9223372036854775818 is beyond 64-bit integers"),
        "shape": ({"pdg": [[22]], "px": [[1.0]], "py": [[0.0]], "pz": [[0.0]]}, "column pdg has shape (1, 1)"),
    }
    for name, (columns, expected) in cases.items():
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            for k, v in columns.items():
                f[k] = v
        assert expected in _error(path), name


def test_damaged_hdf5_and_a_dataset_named_as_group(tmp_path):
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        for k in ("pdg", "px", "py", "pz"):
            f.create_dataset(k, data=np.ones(50_000), chunks=(1000,), compression="gzip")
    assert "is not a group" in _error(f"{good}:px")
    data = bytearray(good.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4000] = bytes(4000)  # zero a stretch of compressed chunks
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(data))
    assert "cannot read particles from HDF5" in _error(bad)


def _root_file(path, n=20_000):
    rng = np.random.default_rng(0)
    gen = {"event": np.arange(n), "pdg": np.full(n, 22), "px": rng.normal(size=n), "py": rng.normal(size=n),
           "pz": rng.normal(size=n)}
    with uproot.recreate(path) as f:
        f.mktree("gen", {k: v.dtype for k, v in gen.items()})
        for start in range(0, n, 2000):  # several baskets
            f["gen"].extend({k: v[start : start + 2000] for k, v in gen.items()})
    return path


def test_damaged_root_files_give_one_line(tmp_path):
    """A file cut in half and one with corrupt baskets: one line naming the file (once tracebacks)."""
    data = _root_file(tmp_path / "good.root").read_bytes()
    assert len(read_particles(tmp_path / "good.root")) == 20_000
    half = tmp_path / "half.root"
    half.write_bytes(data[: len(data) // 2])
    assert "cannot read particles from ROOT file" in _error(half)
    corrupt = bytearray(data)
    for offset in range(len(corrupt) // 4, 3 * len(corrupt) // 4, 97):
        corrupt[offset] ^= 0xFF
    (tmp_path / "corrupt.root").write_bytes(bytes(corrupt))
    assert "cannot read particles from ROOT file" in _error(tmp_path / "corrupt.root")
    (tmp_path / "junk.root").write_bytes(b"not a root file" * 10)
    assert "cannot read particles from ROOT file" in _error(tmp_path / "junk.root")


def test_jagged_root_errors_name_the_entry(tmp_path):
    path = tmp_path / "p.root"
    gen = {"pdg": ak.Array([[22, 11], [-11, 4242]]), "px": ak.Array([[1.0, 0.5], [0.2, 0.1]]),
           "py": ak.Array([[0.0, 0.5], [0.9, 0.1]]), "pz": ak.Array([[0.1, 0.0], [0.0, 0.1]])}
    with uproot.recreate(path) as f:
        f.mktree("gen", {k: v.type for k, v in gen.items()}).extend(gen)
    assert "unknown PDG id(s) [4242] (first: entry 1, particle 1)" in _error(path)


# ---- property-based: odd inputs give checked particles or one ParticleInputError, never another exception ----

ODD_CELLS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e308", "-1e308", "1e400", "0x10", "abc", "1,5", "'", '"',
                     "22", "-11", "11", "0.0", "3.0", "1_000", "\u00e9", "\x00"]),
)
CHECK_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_checked(parts: Particles) -> None:
    """What every particle list that leaves the readers satisfies."""
    n = len(parts)
    assert n > 0 and parts.event.shape == (n,) and parts.pdg.shape == (n,)
    assert parts.event.dtype == np.int64 and parts.pdg.dtype == np.int64
    assert set(parts.pdg.tolist()) <= set(KNOWN_PDG)
    assert parts.momentum_gev.shape == (n, 3) and np.all(np.isfinite(parts.momentum_gev))
    assert np.all(np.abs(parts.momentum_gev).max(axis=1) > 0)
    assert parts.vertex_cm.shape == (n, 3) and np.all(np.isfinite(parts.vertex_cm))


def _outcome(path) -> None:
    try:
        parts = read_particles(path)
    except ParticleInputError as err:
        assert "\n" not in str(err) and str(err)
    else:
        _assert_checked(parts)


@CHECK_SETTINGS
@given(
    header=st.lists(st.sampled_from(["event", "pdg", "px", "py", "pz", "vx", "vy", "vz", "note", "PX"]), min_size=1,
                    max_size=9),
    rows=st.lists(st.lists(ODD_CELLS, min_size=0, max_size=10), min_size=0, max_size=6),
)
def test_csv_reader_on_odd_input(tmp_path, header, rows):
    path = tmp_path / "odd.csv"
    text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _outcome(path)


@CHECK_SETTINGS
@given(
    lengths=st.lists(st.integers(0, 4), min_size=8, max_size=8),
    present=st.lists(st.booleans(), min_size=8, max_size=8),
    kinds=st.lists(st.sampled_from(["int", "float", "bytes", "uint", "bool"]), min_size=8, max_size=8),
    values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**63), 2**63 - 1)),
                    min_size=4, max_size=4),
)
def test_hdf5_reader_on_odd_input(tmp_path, lengths, present, kinds, values):
    path = tmp_path / "odd.h5"
    names = ("event", "pdg", "px", "py", "pz", "vx", "vy", "vz")
    with h5py.File(path, "w") as f:
        for name, n, here, kind in zip(names, lengths, present, kinds):
            if not here:
                continue
            raw = [values[i % 4] for i in range(n)]
            whole = [int(v) if math.isfinite(v) and abs(v) < 2**63 else 0 for v in raw]
            if kind == "int":
                data = np.array(whole, dtype=np.int64)
            elif kind == "uint":
                data = np.array([2 * abs(v) for v in whole], dtype=np.uint64)  # up to 2**64 - 2
            elif kind == "bytes":
                data = np.array([repr(v).encode() for v in raw], dtype="S32")
            elif kind == "bool":
                data = np.array([bool(v) for v in raw], dtype=bool)
            else:
                data = np.array(raw, dtype=np.float64)
            f.create_dataset(name, data=data, shape=(n,))
    _outcome(path)


@CHECK_SETTINGS
@given(
    n=st.integers(0, 5),
    pdg=st.lists(st.one_of(st.sampled_from(sorted(KNOWN_PDG)), st.integers(-(2**40), 2**40),
                           st.floats(allow_nan=True, allow_infinity=True)), min_size=5, max_size=5),
    momentum=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=15, max_size=15),
    event=st.one_of(st.none(), st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats()), min_size=5,
                                        max_size=5)),
)
def test_make_particles_on_odd_values(n, pdg, momentum, event):
    try:
        parts = make_particles(np.array(pdg[:n], dtype=object if n else np.int64), np.array(momentum[: 3 * n]),
                               event=None if event is None else np.array(event[:n], dtype=object))
    except ParticleInputError as err:
        assert "\n" not in str(err)
    else:
        _assert_checked(parts)
