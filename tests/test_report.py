"""The validation report: metrics and verdicts on Geant4 samples, the HTML in a real browser, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloforge.data.io import Sample, open_sample_writer, read_sample
from caloforge.detector.geometry import barrel_geometry
from caloforge.showers.compare import occupancy_pulls
from caloforge.validation.comparisons import (
    OBSERVABLES,
    compare_distributions,
    gaussianise,
    metric_bin_edges,
    sample_observables,
    verdict_against_floor,
    verdict_against_thresholds,
)
from caloforge.validation.report import MOMENTUM_SLICES_GEV, ValidationInputError, validate
from caloforge.validation.studies import (
    impact_point_study,
    occupancy_study,
    profile,
    resolution_study,
)

TRACK_GEV = [0.32, 0.73, 0.01]
_NOT_COPIED = {"schema", "schema_version", "created_utc", "updated_utc", "n_events"}

# ----------------------------------------------------------------------------------------------
# helpers: sample files from event arrays
# ----------------------------------------------------------------------------------------------


def _events(sample: Sample, idx: np.ndarray, attempts: np.ndarray, scale: float = 1.0) -> dict[str, np.ndarray]:
    """The event dict that ``SampleWriter.append`` takes, for events ``idx``; energies times ``scale``."""
    return {
        "maps_gev": sample.maps_gev[idx] * scale,
        "conditions": sample.conditions[idx],
        "conditions_entry": sample.conditions_entry[idx],
        "pdg": sample.pdg[idx],
        "theta_index": sample.theta_index[idx],
        "phi_index": sample.phi_index[idx],
        "edep_barrel_gev": sample.edep_barrel_gev[idx] * scale,
        "seed": sample.seed[idx],
        "attempt": attempts[idx],
        **{k: v[idx] for k, v in sample.truth.items()},
    }


def _write(path: Path, sample: Sample, idx, *, attempts=None, scale: float = 1.0, **attrs) -> Path:
    idx = np.asarray(idx, dtype=np.int64)
    attempts = np.arange(len(sample)) if attempts is None else attempts
    with open_sample_writer(path) as w:
        if len(idx):  # (an empty file: no append, which cannot take an empty batch)
            w.append(_events(sample, idx, attempts, scale))
        w.set_attrs(**{**{k: v for k, v in sample.attrs.items() if k not in _NOT_COPIED}, **attrs})
    return path


def _synthetic(n: int, *, pdg: int = 22, seed: int = 0, width: float = 1.0, noise: float = 0.03, track=None) -> Sample:
    """Toy showers: exponential lateral profile of ``width`` crystals, response 0.9 +- ``noise``."""
    rng = np.random.default_rng(seed)
    theta_index = rng.integers(8, 36, n).astype(np.int16)
    phi_index = rng.integers(0, 120, n).astype(np.int16)
    p = np.full(n, np.linalg.norm(track)) if track is not None else rng.uniform(0.1, 3.0, n)
    off = np.arange(11) - 5
    r = np.hypot(off[:, None], off[None, :])
    shape = np.exp(-r / width)
    shape /= shape.sum()
    maps = shape[None] * (0.9 * p * (1 + noise * rng.normal(size=n)))[:, None, None]
    maps = maps * rng.lognormal(0.0, 0.2, size=maps.shape)
    front = barrel_geometry().front_center_cm[theta_index, phi_index]
    cond = np.column_stack([p, rng.normal(0, 0.05, (n, 4)), front[:, 2]]).astype(np.float32)
    mom = front / np.linalg.norm(front, axis=1, keepdims=True) * p[:, None]
    truth = {
        "vertex_momentum_gev": mom, "front_position_cm": front, "front_momentum_gev": mom,
        "entry_position_cm": front, "entry_momentum_gev": mom, "reached_emc": np.ones(n, dtype=bool),
    }
    gun = {"particle": "gamma" if pdg == 22 else "e-", "momentum_gev": [0.0, 3.0], "cos_theta_max": 0.83,
           "track_gev": track, "seed": seed}
    return Sample(
        maps_gev=maps, conditions=cond, conditions_entry=cond.copy(), pdg=np.full(n, pdg, dtype=np.int32),
        theta_index=theta_index, phi_index=phi_index, edep_barrel_gev=maps.sum(axis=(1, 2)), truth=truth,
        seed=np.arange(n, dtype=np.int64), attrs={"schema": "caloforge-sample", "schema_version": 1,
                                                   "particle": gun["particle"], "gun": gun},
    )


# ----------------------------------------------------------------------------------------------
# fixtures: one Geant4 sample, cut into reference / candidate / floor thirds
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def photons(tmp_path_factory) -> Path:
    """400 photons of 0-3 GeV/c in random barrel directions from the real Geant4 application."""
    from caloforge.data.production import make_sample
    from caloforge.fullsim.runner import GunSpec

    path = tmp_path_factory.mktemp("report") / "gamma_0_3gev.h5"
    make_sample(path, GunSpec("gamma", momentum_gev=(0.0, 3.0), seed=21), 400, workers=2, progress=False)
    return path


@pytest.fixture(scope="session")
def thirds(photons) -> dict[str, Path]:
    """Reference, candidate and floor (every third event each), a candidate with energies x 1.05, and
    the same three labelled as fixed-track samples (only so that the report's resolution section is
    drawn; the events are not from one track)."""
    sample = read_sample(photons)
    with h5py.File(photons, "r") as f:
        attempts = f["attempt"][:]
    idx = np.arange(len(sample))
    parts = {"reference": idx[0::3], "candidate": idx[1::3], "floor": idx[2::3]}
    out = {role: _write(photons.with_name(f"{role}.h5"), sample, i, attempts=attempts) for role, i in parts.items()}
    out["scaled"] = _write(photons.with_name("scaled.h5"), sample, parts["candidate"], attempts=attempts, scale=1.05)
    gun = {**sample.attrs["gun"], "track_gev": TRACK_GEV}
    for role, i in parts.items():
        out[f"{role}_track"] = _write(photons.with_name(f"{role}_track.h5"), sample, i, attempts=attempts, gun=gun)
    return out


# ----------------------------------------------------------------------------------------------
# Geant4 samples
# ----------------------------------------------------------------------------------------------


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(arg)
    opts.binary_location = "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


@pytest.mark.geant4
def test_report_is_self_contained_and_loads_in_chromium(thirds, tmp_path):
    out = tmp_path / "report"
    metrics = validate(thirds["reference_track"], thirds["candidate_track"], out, floor=thirds["floor_track"],
                       seed=1, n_boot=20)
    page = (out / "report.html").read_text()
    assert json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail) == metrics

    # self-contained: no scripts, nothing from the network, every figure embedded
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<script" not in page and "<link rel=\"stylesheet\"" not in page
    n_images = page.count("<img ")
    assert n_images == page.count('src="data:image/png;base64,') >= len(OBSERVABLES) + 6

    # contents
    assert metrics["particle"].startswith("gamma")
    assert set(metrics["slices"]) == set(MOMENTUM_SLICES_GEV)
    for level in ("low_level", "high_level"):
        for role in ("candidate", "floor"):
            assert 0 <= metrics["classifier"][level][role]["auc"] <= 1
    full = metrics["slices"]["all"]
    assert full["n_events"] == {"reference": 134, "candidate": 133, "floor": 133}
    assert {"fpd", "kpd"} <= set(full["distances"]["candidate"])
    e5 = full["observables"]["e5x5_gev"]
    assert e5["judged_against"] == "floor" and e5["candidate"]["separation_power_error"] > 0
    quantities = {"e3x3_gev", "e5x5_gev", "centre_theta_cm", "centre_phi_cm", "lat"}
    assert set(metrics["resolution"]["quantities"]) == quantities
    assert metrics["summary"]["overall"] in ("compatible", "tension", "incompatible")
    for text in ("Resolution study", "separation power", "FPD", "AUC", "event displays", "sparsity versus threshold",
                 "energy profile along phi", "energy profile along theta", "mean 11x11 maps", "cell-energy spectrum",
                 "Crystal occupancy", "crystal occupancy above 0 MeV", "crystal occupancy above 1 MeV"):
        assert text in page

    driver = _chromium()
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get((out / "report.html").resolve().as_uri())
        # the page is over 1 MB of inline images: on a loaded machine the last ones can still be parsing
        # when get() returns (once 38 of 39 were there), so wait for them, up to 30 s
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements("tag name", "img")) >= n_images)
        images = driver.find_elements("tag name", "img")
        assert len(images) == n_images
        script = "return arguments[0].complete && arguments[0].naturalWidth"
        widths = [driver.execute_script(script, im) for im in images]
        assert all(w > 0 for w in widths), widths
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        assert "validation" in driver.title
    finally:
        driver.quit()


@pytest.mark.geant4
def test_verdicts_flip_when_the_energy_scale_is_off_by_five_percent(thirds, tmp_path):
    # the energy response E5x5/p of 0-3 GeV photons is sharp enough for 133 events to see a 5 % scale;
    # E5x5 itself is spread over the whole 0-3 GeV range and needs a momentum slice and more events
    key = "e5x5_over_p"
    common = {"seed": 2, "n_boot": 50, "classifier": False, "plots": False}
    ok = validate(thirds["reference"], thirds["candidate"], tmp_path / "ok", **common)
    bad = validate(thirds["reference"], thirds["scaled"], tmp_path / "bad", **common)
    assert ok["summary"]["observables"][key] == "compatible"
    assert bad["summary"]["observables"][key] != "compatible"
    assert bad["summary"]["observables"]["e3x3_over_p"] != "compatible"
    assert ok["slices"]["all"]["observables"][key]["judged_against"] == "thresholds"
    # shapes do not change with the energy scale
    assert bad["summary"]["observables"]["e1_over_e3"] == ok["summary"]["observables"]["e1_over_e3"]
    assert bad["summary"]["counts"]["compatible"] < ok["summary"]["counts"]["compatible"]

    ok_f = validate(thirds["reference"], thirds["candidate"], tmp_path / "ok_f", floor=thirds["floor"], **common)
    bad_f = validate(thirds["reference"], thirds["scaled"], tmp_path / "bad_f", floor=thirds["floor"], **common)
    assert ok_f["summary"]["observables"][key] == "compatible"
    assert bad_f["summary"]["observables"][key] == "incompatible"
    assert bad_f["slices"]["all"]["observables"][key]["judged_against"] == "floor"
    assert bad_f["summary"]["overall"] == "incompatible"
    # the resolution study needs fixed-track samples
    assert "skipped" in ok_f["resolution"]


# ----------------------------------------------------------------------------------------------
# toy samples: metrics, verdicts, resolution study, slices
# ----------------------------------------------------------------------------------------------


def test_compare_distributions_excess_separation_power_is_about_zero_for_one_distribution():
    rng = np.random.default_rng(0)
    excess, s_raw = [], []
    for k in range(20):
        a, b = rng.normal(size=300), rng.normal(size=200)
        d = compare_distributions(a, b, edges=metric_bin_edges([a, b], 17), n_boot=40, seed=k)
        excess.append(d["excess_separation_power"])
        s_raw.append(d["separation_power"])
        assert d["expected_separation_power"] == pytest.approx(16 / 4 * (1 / 300 + 1 / 200))
    assert abs(np.mean(excess)) < 0.005 < np.mean(s_raw)
    # near zero the bootstrap overestimates the spread of independent repeats (S is quadratic in the
    # differences), by up to ~2: conservative
    assert 0.35 < np.std(s_raw) / d["separation_power_error"] < 1.0
    shifted = compare_distributions(a, b + 1.0, edges=metric_bin_edges([a, b + 1.0], 17), n_boot=40)
    assert shifted["excess_separation_power"] > 0.15
    assert shifted["wasserstein_1"] == pytest.approx(1.0, abs=0.2) and shifted["wasserstein_1_error"] > 0


def test_gaussianise_keeps_order_and_tames_outliers():
    rng = np.random.default_rng(1)
    ref = np.column_stack([rng.exponential(size=2000), rng.integers(0, 3, 2000)])
    other = np.array([[0.5, 1.0], [1e6, 2.0], [np.nan, 0.0]])
    zr, zo = gaussianise(ref, other)
    assert abs(zr[:, 0].mean()) < 0.05 and abs(zr[:, 0].std() - 1) < 0.05
    assert zo[0, 0] < zo[1, 0] <= 3.5 and np.isnan(zo[2, 0])
    assert np.all(np.diff(zr[np.argsort(ref[:, 0]), 0]) >= 0)  # monotone
    assert len(np.unique(zr[:, 1])) == 3  # ties share one value


def test_verdict_rules():
    assert verdict_against_thresholds(0.01, 0.005, compatible_below=0.02, incompatible_above=0.1) == "compatible"
    assert verdict_against_thresholds(0.05, 0.005, compatible_below=0.02, incompatible_above=0.1) == "tension"
    assert verdict_against_thresholds(0.05, 0.02, compatible_below=0.02, incompatible_above=0.1) == "compatible"
    assert verdict_against_thresholds(0.3, 0.01, compatible_below=0.02, incompatible_above=0.1) == "incompatible"
    assert verdict_against_thresholds(float("nan"), 0.01, compatible_below=0.02, incompatible_above=0.1) == "n/a"
    assert verdict_against_floor(0.012, 0.004, 0.010, 0.003, negligible=0.005) == "compatible"
    assert verdict_against_floor(0.030, 0.004, 0.010, 0.003, negligible=0.005) == "tension"  # 4 sigma
    assert verdict_against_floor(0.040, 0.004, 0.010, 0.003, negligible=0.005) == "incompatible"  # 6 sigma
    assert verdict_against_floor(0.030, 0.008, 0.010, 0.0, negligible=0.005) == "compatible"  # 2.5 sigma
    assert verdict_against_floor(0.004, 0.0001, 0.0, 0.0001, negligible=0.005) == "compatible"


def test_resolution_study_sees_a_wider_spread():
    ref = _synthetic(1500, seed=1, track=TRACK_GEV)
    same = _synthetic(1500, seed=2, track=TRACK_GEV)
    wide = _synthetic(1500, seed=3, noise=0.06, track=TRACK_GEV)
    ok = resolution_study(ref, same, n_boot=40)
    bad = resolution_study(ref, wide, n_boot=40)
    assert ok["e5x5_gev"]["verdict"] == "compatible" and ok["e3x3_gev"]["verdict"] == "compatible"
    assert bad["e5x5_gev"]["verdict"] == "incompatible"
    assert bad["e5x5_gev"]["std_ratio"] > 1.3 and bad["e5x5_gev"]["sigma68_ratio"] > 1.3
    for q in ("centre_theta_cm", "centre_phi_cm"):
        assert ok[q]["reference"]["std"] < 2.0 and ok[q]["reference"]["std_error"] > 0  # cm


def _impact_toy(n: int, seed: int, *, forget_impact: bool = False) -> Sample:
    """Toy photons whose central crystal loses up to a quarter of its energy to the neighbouring row
    as the impact point moves away from the crystal centre along z (``dz_pos`` uniform in +-2.5 cm);
    with ``forget_impact`` the same maps get the impact points of other events (every distribution of
    the maps unchanged, their dependence on the impact point gone)."""
    s = _synthetic(n, seed=seed)
    dz = np.random.default_rng(seed + 100).uniform(-2.5, 2.5, n)
    moved = s.maps_gev[:, 5, 5] * 0.25 * np.abs(dz) / 2.5
    s.maps_gev[:, 5, 5] -= moved
    s.maps_gev[np.arange(n), np.where(dz > 0, 4, 6), 5] += moved
    s.conditions[:, 3] = np.random.default_rng(seed).permutation(dz) if forget_impact else dz
    return s


def test_impact_point_study_sees_a_model_that_ignores_the_impact_point():
    ref, same, forgot = _impact_toy(2000, 1), _impact_toy(2000, 2), _impact_toy(2000, 3, forget_impact=True)
    ok = impact_point_study({"reference": ref, "candidate": same},
                            {"reference": sample_observables(ref), "candidate": sample_observables(same)})
    bad = impact_point_study({"reference": ref, "candidate": forgot, "floor": same},
                             {r: sample_observables(s) for r, s in (("reference", ref), ("candidate", forgot),
                                                                     ("floor", same))})
    key = "e1_over_e3 vs abs_dz_pos_cm"
    assert ok[key]["verdict"] == "compatible" and ok[key]["candidate_chi2"]["ndf"] == 8
    assert bad[key]["verdict"] == "incompatible" and bad[key]["candidate_chi2"]["z"] > 10
    assert bad[key]["floor_chi2"]["z"] < 3
    ref_means = np.asarray(ok[key]["reference"]["mean"])
    assert ref_means[0] > ref_means[-1] + 0.05  # E1x1/E3x3 falls towards the crystal edge
    assert sum(ok[key]["reference"]["n"]) == 2000


def _sparse(n: int, seed: int) -> Sample:
    s = _synthetic(n, seed=seed)
    s.maps_gev[s.maps_gev < 2e-3] = 0.0  # the outer crystals hit in some events only
    return s


def test_occupancy_study_finds_a_crystal_hit_too_often():
    ref, same, odd = _sparse(3000, 1), _sparse(3000, 2), _sparse(3000, 3)
    odd.maps_gev[:, 0, 3] = np.maximum(odd.maps_gev[:, 0, 3], 1e-5)  # a corner crystal that always fires
    study = occupancy_study({"reference": ref, "candidate": odd, "floor": same}, thresholds_gev=(0.0,))
    e = study["above_0_mev"]
    assert e["threshold_gev"] == 0.0 and e["reference"].shape == (11, 11)
    assert e["candidate"][0, 3] == 1.0 and 0 < e["reference"][0, 3] < 0.5
    pulls = e["candidate_pulls"]
    assert np.nanargmax(np.abs(pulls)) == 3 and pulls[0, 3] > 20
    # the independent sample of the same toy: chi2 about its ndf
    assert 0.5 < e["floor_chi2"]["chi2"] / e["floor_chi2"]["ndf"] < 2 and e["candidate_chi2"]["z"] > 10
    # crystals that neither sample hits have no pull
    none = ref.maps_gev.copy()
    none[:, 0, 0] = 0.0
    assert np.isnan(occupancy_pulls(none, none, 0.0)[0, 0])
    assert np.nanmax(np.abs(occupancy_pulls(ref.maps_gev, ref.maps_gev, 0.0))) == 0.0


def test_profile_means_errors_and_empty_bins():
    x = np.array([0.1, 0.2, 0.3, 1.5, 1.9, np.nan])
    y = np.array([1.0, 2.0, 3.0, 5.0, 7.0, 1.0])
    prof = profile(x, y, np.array([0.0, 1.0, 2.0, 3.0]))
    assert prof["n"] == [3, 2, 0]
    assert prof["mean"][:2] == pytest.approx([2.0, 6.0]) and np.isnan(prof["mean"][2])
    assert prof["error"][0] == pytest.approx(1.0 / np.sqrt(3))


def test_in_memory_toy_samples_slices_and_resolution(tmp_path):
    ref = _synthetic(300, seed=1, track=TRACK_GEV)
    cand = _synthetic(300, seed=2, track=TRACK_GEV)
    m = validate(ref, cand, tmp_path / "toy", seed=0, n_boot=20, classifier=False, plots=False)
    assert m["inputs"]["reference"]["source"] == "(in memory)"
    assert m["resolution"]["track_gev"] == TRACK_GEV
    sl = m["slices"]["1.8-2.0"]
    # a fixed track of 0.80 GeV/c: no events in the high slice
    assert sl["n_events"] == {"reference": 0, "candidate": 0}
    assert set(v["verdict"] for v in sl["observables"].values()) == {"n/a"}
    assert m["slices"]["0.5-0.7"]["n_events"]["reference"] == 0
    assert m["slices"]["all"]["n_events"]["reference"] == 300
    assert set(m["summary"]["impact_point"]) == set(m["impact_point"]) and len(m["impact_point"]) == 4
    assert "Dependence on the impact point" in (tmp_path / "toy" / "report.html").read_text()
    assert "Figures not drawn" in (tmp_path / "toy" / "report.html").read_text()
    # a second run into the same folder needs overwrite
    with pytest.raises(ValidationInputError, match="exists"):
        validate(ref, cand, tmp_path / "toy", classifier=False, plots=False)
    validate(ref, cand, tmp_path / "toy", classifier=False, plots=False, overwrite=True, max_events=100)
    assert json.loads((tmp_path / "toy" / "metrics.json").read_text())["inputs"]["candidate"]["n_events"] == 100


def test_each_sample_s_observables_are_computed_once(tmp_path, monkeypatch):
    import caloforge.validation.comparisons as comparisons
    import caloforge.validation.report as report
    import caloforge.validation.studies as studies

    calls = []

    def counted(sample):
        calls.append(len(sample))
        return sample_observables(sample)

    for module in (comparisons, report, studies):
        monkeypatch.setattr(module, "sample_observables", counted)
    ref, cand, flr = (_synthetic(120, seed=k, track=TRACK_GEV) for k in (1, 2, 3))
    m = validate(ref, cand, tmp_path / "once", floor=flr, n_boot=5, classifier=False, plots=False)
    assert "quantities" in m["resolution"] and "floor" in m["resolution"]["quantities"]["lat"]
    assert len(calls) == 3


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def toy_files(tmp_path) -> dict[str, Path]:
    gamma = _synthetic(60, seed=1)
    electrons = _synthetic(60, pdg=11, seed=2)
    files = {
        "gamma": _write(tmp_path / "gamma.h5", gamma, np.arange(60)),
        "electron": _write(tmp_path / "electron.h5", electrons, np.arange(60)),
        "empty": _write(tmp_path / "empty.h5", gamma, np.arange(0)),
    }
    mixed = _synthetic(60, seed=3)
    mixed.pdg[::2] = 11
    files["mixed"] = _write(tmp_path / "mixed.h5", mixed, np.arange(60))
    files["calochallenge"] = tmp_path / "calochallenge.h5"
    with h5py.File(files["calochallenge"], "w") as f:
        f["showers"] = np.zeros((10, 121), dtype=np.float32)
        f["incident_energies"] = np.ones((10, 1), dtype=np.float32)
    files["v2"] = _write(tmp_path / "v2.h5", gamma, np.arange(60))
    with h5py.File(files["v2"], "a") as f:
        f.attrs["schema_version"] = 2
    return files


@pytest.mark.parametrize(
    "ref, cand, floor, message",
    [
        ("gamma", "missing", None, "candidate sample .*missing.h5: no such file"),
        ("missing", "gamma", None, "reference sample .*: no such file"),
        ("gamma", "empty", None, "candidate sample .*empty.h5 has no events"),
        ("gamma", "electron", None, "refusing to compare different particle types: reference is gamma .* is e-"),
        ("gamma", "gamma", "electron", "different particle types: .* floor is e-"),
        ("gamma", "mixed", None, "mixes particle types"),
        ("gamma", "calochallenge", None, "not a caloforge sample"),
        ("v2", "gamma", None, "schema version 2"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(toy_files, tmp_path, ref, cand, floor, message):
    path = lambda name: toy_files.get(name, tmp_path / f"{name}.h5")  # noqa: E731
    out = tmp_path / "out"
    with pytest.raises(ValidationInputError, match=message):
        validate(path(ref), path(cand), out, floor=None if floor is None else path(floor), plots=False)
    assert not out.exists()


def test_in_memory_samples_of_other_schemas_are_refused(tmp_path):
    ref, cand = _synthetic(40, seed=1), _synthetic(40, seed=2)
    cand.attrs["schema_version"] = 2
    with pytest.raises(ValidationInputError, match="sample schemas differ"):
        validate(ref, cand, tmp_path / "o", plots=False)


def test_bad_options(toy_files, tmp_path):
    with pytest.raises(ValidationInputError, match="max_events"):
        validate(toy_files["gamma"], toy_files["gamma"], tmp_path / "o", max_events=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationInputError, match="not a folder"):
        validate(toy_files["gamma"], toy_files["gamma"], tmp_path / "file")


def test_cli_error_handling_turns_bad_input_into_exit_code_2(toy_files, tmp_path):
    # the CLI wraps validate in _user_errors: a ValidationInputError is one "error:" line and exit code 2
    import typer
    from typer.testing import CliRunner

    from caloforge.cli.main import _user_errors

    app = typer.Typer()

    @app.command()
    @_user_errors
    def run(reference: Path, candidate: Path, out: Path) -> None:
        validate(reference, candidate, out, plots=False)

    result = CliRunner().invoke(app, [str(toy_files["gamma"]), str(toy_files["electron"]), str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: refusing to compare different particle types")
    assert len(result.stderr.strip().splitlines()) == 1
