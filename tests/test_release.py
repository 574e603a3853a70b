"""Tests of caloforge.release: the card rendered from the shipped validation records, the targets, the studies on
tiny inputs and the `caloforge ship` command's input checks (a full shipping run needs training runs and the
Geant4 samples, and is not run here)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from caloforge.cli.main import app
from caloforge.models.pretrained import HERE, RECORD_FILES
from caloforge.release.card import CARD_FILE, VALIDATION_FILE, card_date, cards_json, read_cards, render_card
from caloforge.release.targets import TargetCheck, check_targets, worst_slice

runner = CliRunner()


@pytest.fixture(scope="module")
def shipped() -> dict:
    return read_cards(HERE)


# ------------------------------------------------------------------------------------------------
# card
# ------------------------------------------------------------------------------------------------


def test_card_rendered_from_the_shipped_json_is_the_shipped_card(shipped):
    others = {family.replace("-", "_"): read_cards(HERE, family) for family in RECORD_FILES if family != "gan"}
    assert render_card(shipped, **others) == (HERE / CARD_FILE).read_text()


def test_validation_json_round_trips_byte_for_byte(shipped):
    assert cards_json(shipped) == (HERE / VALIDATION_FILE).read_text()
    for family, file in RECORD_FILES.items():
        assert (HERE / file).exists(), f"no records of the shipped {family} set"
        assert cards_json(read_cards(HERE, family)) == (HERE / file).read_text()


def test_card_date_is_the_latest_date_of_the_records(shipped):
    records = copy.deepcopy(shipped)
    for c in records.values():
        c["validated_on"] = "2026-12-01"
        c.pop("updated_on", None)
        c["int8"]["validated_on"] = "2026-12-02"
    assert card_date(records) == "2026-12-02"  # the 8-bit exports' validation
    later = copy.deepcopy(records)
    later["e-"]["updated_on"] = "2027-01-05"  # e.g. a --response run
    assert card_date(later) == "2027-01-05"
    assert "Written by `caloforge ship` on 2027-01-05;" in render_card(later)


def test_card_without_8bit_export_or_student_has_no_such_sections(shipped):
    record = {k: v for k, v in shipped["gamma"].items() if k not in ("int8", "distilled")}
    text = render_card({"gamma": record})
    assert "## gamma:" in text and "8-bit export:" not in text and "Distilled" not in text


def test_card_with_flows_puts_the_two_sets_side_by_side(shipped):
    gamma = {k: v for k, v in copy.deepcopy(shipped["gamma"]).items() if k not in ("int8", "distilled")}
    gamma.update(family="flow", checkpoint="flow_gamma.pt", onnx=None, onnx_showers_per_s=4321.0,
                 occupancy={"above_0_mev": {"chi2": 250.0, "ndf": 121, "floor_chi2": 120.0},
                            "above_1_mev": {"chi2": 900.0, "ndf": 121, "floor_chi2": 110.0}})
    gamma["classifier"]["low_level"]["candidate"]["auc"] = 0.7
    text = render_card(shipped, flow={"gamma": gamma})
    gans_only = render_card(shipped)
    assert gans_only[gans_only.index("## "):] in text  # the GANs' sections as without flows
    assert "- **flow**, `--model flow`: the students' teachers" in text and "**flow**" not in gans_only
    table = text[text.index("## The sets side by side: `--model gan` against `--model flow`"):
                 text.index("## gamma:")]
    assert "| measure (target) | gamma | Geant4 floor |" in table  # only the particle with both sets
    low = shipped["gamma"]["classifier"]["low_level"]
    assert f"| classifier AUC, low-level (target < 0.75) | {low['candidate']['auc']:.3f} / 0.700 | " \
           f"{low['floor']['auc']:.3f} |" in table
    gan_occupancy = shipped["gamma"]["occupancy"]["above_1_mev"]["chi2"]
    assert f"| occupancy chi2/121, above 1 MeV (target 3 x floor) | {gan_occupancy:.0f} / 900 | 110 |" in table
    counts = ", ".join(str(shipped["gamma"]["summary"]["counts"][k]) for k in ("compatible", "tension", "incompatible"))
    assert f"| verdicts: compatible, tension, incompatible | {counts} / {counts} | - |" in table
    assert f"| {shipped['gamma']['onnx_showers_per_s']:,.0f} / 4,321 | - |" in table
    flow = text[text.index("## gamma, flow: `flow_gamma.pt`"):]
    assert "crystal occupancy, above 1 MeV: chi2 8.2 x the floor's (NOT met, target 3 x)" in flow
    assert "the export made when the checkpoint is loaded" in flow and "8-bit export:" not in flow
    # a third set adds a column to every cell and its own sections
    student = copy.deepcopy(gamma)
    student.update(family="student", checkpoint="student_gamma.pt", onnx_showers_per_s=30000.0)
    three = render_card(shipped, flow={"gamma": gamma}, student={"gamma": student})
    assert "against `--model flow` against `--model student` (default)" in three
    assert "each cell reads GAN / flow / student" in three
    assert f"| {shipped['gamma']['onnx_showers_per_s']:,.0f} / 4,321 / 30,000 | - |" in three
    assert "- **student**, the default (`caloforge simulate` without `--model`), `--model student`" in three
    assert "## gamma, student: `student_gamma.pt`" in three
    assert "Three sets, one model per particle type each" in three


def test_card_with_a_set_of_fewer_particles_marks_the_others(shipped):
    def record(particle: str, family: str, speed: float) -> dict:
        r = {k: v for k, v in copy.deepcopy(shipped[particle]).items() if k not in ("int8", "distilled")}
        return r | {"family": family, "checkpoint": f"{family}_{particle}.pt", "onnx": None, "onnx_showers_per_s": speed}

    flows = {p: record(p, "flow", 4000.0) for p in ("gamma", "e-")}
    diffusion = {"gamma": record("gamma", "diffusion", 300.0)
                 | {"sampling": {"sampler": "dpm", "steps": 10, "recalibrated_events": 20000}}}
    text = render_card(shipped, flow=flows, diffusion=diffusion)
    assert "Four sets" not in text and "Three sets, one model per particle type each" in text
    assert "- **diffusion**, `--model diffusion`: the seeds' third model class, the slowest, for gamma\n" in text
    table = text[text.index("## The sets side by side: `--model gan` against `--model flow` against "
                            "`--model diffusion`"):text.index("## gamma:")]
    assert "| measure (target) | gamma | e- | Geant4 floor |" in table  # the particles of the flows
    speeds = [f"{shipped[p]['onnx_showers_per_s']:,.0f}" for p in ("gamma", "e-")]
    assert f"| {speeds[0]} / 4,000 / 300 | {speeds[1]} / 4,000 / - | - |" in table  # no diffusion model for e-
    section = text[text.index("## gamma, diffusion: `diffusion_gamma.pt`"):]
    assert ("- Sampling: DPM-Solver++ (2nd order), 10 U-Net evaluations per shower, \"trailing\" timesteps; set "
            "when shipped") in section and "on the first 20,000 training events." in section
    students = {"gamma": record("gamma", "diffusion-student", 30000.0)}
    five = render_card(shipped, flow=flows, diffusion=diffusion, diffusion_student=students)
    assert f"| {speeds[0]} / 4,000 / 300 / 30,000 | {speeds[1]} / 4,000 / - / - | - |" in five
    assert "each cell reads GAN / flow / diffusion / diffusion student" in five
    assert "- **diffusion-student**, `--model diffusion-student`: the diffusion models distilled" in five
    with pytest.raises(ValueError, match="no shipped set 'vae'"):
        render_card(shipped, vae=flows)


# ------------------------------------------------------------------------------------------------
# targets
# ------------------------------------------------------------------------------------------------


def _record(*, sp=0.005, ratio=1.004, track=1.05, slice_std=0.95, auc=0.6, auc_high=0.6, occupancy=250.0,
            speed=30_000.0) -> dict:
    """A tiny validation record with the fields the targets read."""
    return {
        "separation_power": {"e1x1_gev": {"model": sp}, "lat": {"model": 0.001}, "other": {"model": 0.5}},
        "energy_response": [
            {"slice_gev": [0.2, 0.4], "ratio": ratio, "ratio_error": 0.002},
            {"slice_gev": [0.5, 0.7], "ratio": 1.0, "ratio_error": 0.001},
            {"slice_gev": [0.0, 3.0], "ratio": 0.9, "ratio_error": 0.001},  # the full range: not a slice
        ],
        "resolution": {"std_ratio": track},
        "resolution_slices": [{"slice_gev": [0.2, 0.4], "std_ratio": slice_std},
                              {"slice_gev": [0.5, 0.7], "std_ratio": 1.01}],
        "classifier": {"low_level": {"candidate": {"auc": auc}}, "high_level": {"candidate": {"auc": auc_high}},
                       "other": {"error": "skipped"}},
        "occupancy": {"above_0_mev": {"chi2": occupancy, "floor_chi2": 100.0}, "above_1_mev": {"chi2": 90.0}},
        "onnx_showers_per_s": speed,
    }


def test_targets_met_on_a_good_record():
    checks = check_targets(_record())
    assert all(c.met for c in checks) and len(checks) == 8
    assert [str(c) for c in checks] == [
        "separation power < 0.02 for 2 of 2 observables (met)",
        "mean energy per momentum slice within 0.4 +- 0.2 % (met, target 1 %)",
        "E5x5 spread of one track 1.05 x Geant4's (met, target within 10 %)",
        "E5x5/p spread per momentum slice, worst 0.95 x Geant4's at 0.2-0.4 GeV/c (met)",
        "classifier AUC 0.600 (low-level) (met, target < 0.75)",
        "classifier AUC 0.600 (high-level) (met, target < 0.65)",
        "crystal occupancy, any deposit: chi2 2.5 x the floor's (met, target 3 x)",  # no floor above 1 MeV: no check
        "30,000 showers/s (met, target 25k)",
    ]


@pytest.mark.parametrize("change, failed", [
    ({"sp": 0.02}, 0),  # the bound is strict
    ({"ratio": 0.985}, 1),
    ({"track": 1.11}, 2),
    ({"slice_std": 0.89}, 3),
    ({"auc": 0.75}, 4),
    ({"auc_high": 0.65}, 5),
    ({"occupancy": 301.0}, 6),
    ({"speed": 24_999.0}, 7),
])
def test_each_target_fails_alone(change, failed):
    checks = check_targets(_record(**change))
    assert [not c.met for c in checks] == [k == failed for k in range(8)]
    assert "NOT met" in str(checks[failed])


def test_worst_slice_leaves_out_the_full_range():
    assert worst_slice(_record(ratio=1.004)["energy_response"])["slice_gev"] == [0.2, 0.4]
    assert str(TargetCheck("x", False)) == "x (NOT met)"


# ------------------------------------------------------------------------------------------------
# studies
# ------------------------------------------------------------------------------------------------


def _geant4(n: int, seed: int) -> SimpleNamespace:
    """Tiny stand-in of a Geant4 sample: (n, 6) conditions, p uniform in 0-3 GeV/c, (n, 11, 11) maps."""
    rng = np.random.default_rng(seed)
    conditions = np.zeros((n, 6), dtype=np.float32)
    conditions[:, 0] = rng.uniform(0.0, 3.0, n)
    maps = rng.exponential(0.01, (n, 11, 11)).astype(np.float32)
    maps[:, 5, 5] += 0.8 * conditions[:, 0]
    return SimpleNamespace(conditions=conditions, maps_gev=maps)


class _Scaled:
    """A 'model' that returns the Geant4 maps of the conditions it is given, times ``scale``."""

    def __init__(self, geant4: list, scale: float) -> None:
        self.maps = np.concatenate([g.maps_gev for g in geant4])
        self.conditions = np.concatenate([g.conditions for g in geant4])
        self.scale = scale

    def sample(self, conditions: np.ndarray, seed: int = 0) -> np.ndarray:
        assert np.array_equal(conditions, self.conditions)
        return self.scale * self.maps


def test_slice_study_of_a_scaled_copy_of_geant4():
    from caloforge.release.studies import SLICES_GEV, slice_study

    geant4 = [_geant4(400, 1), _geant4(300, 2)]
    result = slice_study(_Scaled(geant4, 1.02), geant4, draws=2)
    response, spread = result["energy_response"], result["resolution_slices"]
    assert [r["slice_gev"] for r in response] == [list(s) for s in SLICES_GEV]
    assert response[-1]["n"] == 700 and all(r["draws"] == 2 for r in response)
    assert all(r["ratio"] == pytest.approx(1.02, rel=1e-5) for r in response)
    same = slice_study(_Scaled(geant4, 1.0), geant4, draws=2)["energy_response"]
    assert all(r["ratio_error"] == 0.0 for r in same)  # paired: the momentum spread within a slice cancels
    assert len(spread) == len(SLICES_GEV) - 1
    assert all(r["std_ratio"] == pytest.approx(1.02, rel=1e-5) for r in spread)
    one_draw = slice_study(_Scaled(geant4, 1.02), geant4, draws=1)["resolution_slices"]
    assert all(r["sigma68_ratio"] == pytest.approx(1.02, rel=1e-5) for r in one_draw)


def test_track_resolution_and_same_noise_differences():
    from caloforge.release.studies import TRACK_GEV, same_noise_differences, track_resolution

    track = _geant4(500, 3)
    result = track_resolution(track, _Scaled([track], 0.9), draws=3)
    assert result["track_gev"] == list(TRACK_GEV) and result["n"] == 500 and result["draws"] == 3
    assert result["std_ratio"] == pytest.approx(0.9, rel=1e-5)
    assert result["model_e5x5_std_gev"] == pytest.approx(0.9 * result["geant4_e5x5_std_gev"], rel=1e-5)
    same = same_noise_differences(track.maps_gev, track.maps_gev)
    assert same == {"events": 500, "centre_share_mean_abs_diff": 0.0, "e11x11_rel_max_abs_diff": 0.0,
                    "e5x5_rel_mean_abs_diff": 0.0}


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------


def test_ship_help_names_the_modes_and_where_it_writes():
    result = runner.invoke(app, ["ship", "--help"])
    assert result.exit_code == 0
    for option in ("--distilled", "--int8", "--reexport", "--response", "--revalidate", "--family", "--out-dir", "--run"):
        assert option in result.output
    assert "src/caloforge/models/pretrained/" in result.output


@pytest.mark.parametrize("args, message", [
    (["--run", "gamma={tmp}/nowhere", "--particles", "gamma"], "nowhere/best.pt: no such checkpoint"),
    (["--runs", "{tmp}", "--particles", "e-"], "moments_e-/best.pt: no such checkpoint"),
    (["--distilled", "{tmp}/{{particle}}.pt", "--particles", "e+"], "e+.pt: no such checkpoint"),
    (["--run", "mu-={tmp}", "--particles", "gamma"], "expected PARTICLE=FOLDER"),
    (["--particles", "mu-"], "particles mu-: expected some of"),
    (["--int8", "--reexport"], "give one mode at a time"),
    (["--family", "vae"], "--family 'vae': choose one of gan, flow"),
    (["--family", "flow", "--int8"], "--int8: only for the GANs"),
    (["--revalidate", "--response"], "give one mode at a time"),
    (["--revalidate", "--family", "flow", "--particles", "gamma", "--out-dir", "{tmp}/models"],
     "flow_gamma.pt: no such shipped checkpoint"),
    (["--family", "flow", "--runs", "{tmp}", "--particles", "e-"], "flow_e-/best.pt: no such checkpoint"),
    (["--family", "diffusion", "--runs", "{tmp}", "--particles", "e+"], "diffusion_e+/best.pt: no such checkpoint"),
    (["--family", "diffusion-student", "--runs", "{tmp}"], "diffusion-student_e-/best.pt: no such checkpoint"),
    (["--sampler", "dpm"], "--sampler and --steps: only when shipping trained diffusion models"),
    (["--family", "diffusion", "--steps", "4", "--revalidate"], "--sampler and --steps: only when shipping"),
    (["--reexport", "--particles", "gamma", "--out-dir", "{tmp}/models"], "no such shipped checkpoint"),
])
def test_bad_ship_input_gives_one_line_and_writes_nothing(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result = runner.invoke(app, ["ship", "--samples", str(tmp_path / "samples"), "--work", str(tmp_path / "work"),
                                 *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_ship_reports_missing_samples_before_any_work(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best.pt", "config.yaml", "metrics.csv"):
        (run / name).write_text("")
    result = runner.invoke(app, ["ship", "--run", f"gamma={run}", "--particles", "gamma", "--samples",
                                 str(tmp_path / "samples"), "--out-dir", str(tmp_path / "models")])
    assert result.exit_code == 2
    assert "train_gamma.h5: no such Geant4 sample" in result.stderr
    assert not (tmp_path / "models").exists()


def test_export_replacing_replaces_the_file_whole(tmp_path):
    from caloforge.models import load_model
    from caloforge.release.ship import export_replacing

    model = load_model(HERE / "gan_gamma.pt", device="cpu")
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    assert export_replacing(model, path) == path
    assert path.read_bytes()[:3] != b"old" and path.stat().st_size > 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary folder left



def test_the_teacher_is_kept_beside_a_student_once(tmp_path):
    from caloforge.release.ship import ShipError, _keep_teacher

    (tmp_path / "gan_gamma.pt").write_bytes(b"seed-size model")
    cards = {"gamma": {"checkpoint": "gan_gamma.pt", "validated_on": "2026-12-01"}}
    teacher = _keep_teacher("gamma", cards, tmp_path)  # the shipped model is the seed-size teacher
    assert teacher == {"checkpoint": "seed_gan_gamma.pt", "validated_on": "2026-12-01"}
    assert (tmp_path / "seed_gan_gamma.pt").read_bytes() == b"seed-size model"
    (tmp_path / "gan_gamma.pt").write_bytes(b"student")
    cards = {"gamma": {"checkpoint": "gan_gamma.pt", "distilled": {"teacher": teacher}}}
    assert _keep_teacher("gamma", cards, tmp_path) == teacher  # shipped again: the kept teacher stays
    assert (tmp_path / "seed_gan_gamma.pt").read_bytes() == b"seed-size model"
    (tmp_path / "seed_gan_gamma.pt").unlink()
    with pytest.raises(ShipError, match="no such seed-size teacher"):
        _keep_teacher("gamma", cards, tmp_path)


def test_ship_distilled_refuses_a_checkpoint_that_is_not_a_student(tmp_path):
    import torch

    torch.save({"config": {}}, tmp_path / "gamma.pt")
    samples = tmp_path / "samples"
    samples.mkdir()
    for kind in ("train", "test", "floor"):
        (samples / f"{kind}_gamma.h5").write_bytes(b"")
    result = runner.invoke(app, ["ship", "--distilled", str(tmp_path / "{particle}.pt"), "--particles", "gamma",
                                 "--samples", str(samples)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'gamma.pt'}: not a checkpoint of `caloforge distill`"
