"""Ship trained models as the package defaults, with their validation numbers and model card.

For each particle type: take ``best.pt`` of its training run (``<runs>/moments_<particle>``, trained with
``caloforge train configs/moments_<particle>.yaml`` from the energy fine-tune
``configs/energy_<particle>.yaml`` of an nbmmd run with the energy model of ``caloforge fit-energy``),
regularise its mean shower on the training conditions (:meth:`caloforge.models.GAN.regularise_mean_shower`),
save the model into ``src/caloforge/models/pretrained/gan_<particle>.pt`` and its ONNX export next to it,
sample it under
the conditions of the Geant4 test sample, validate it against Geant4 (with the independent Geant4
floor sample), measure the energy response per momentum slice, the E5x5 spread of one repeated track
against Geant4's, and the ONNX sampling speed, and write ``MODEL_CARD.md``.

    python scripts/ship_models.py [--runs ~/.cache/caloforge/runs] [--run-name moments_{particle}]
        [--checkpoint best.pt] [--run e-=~/.cache/caloforge/runs/energy2_e-]
        [--config configs/moments_{particle}.yaml] [--events 10000]
    python scripts/ship_models.py --reexport    # after a change to the export: new .onnx files and speeds,
                                                # the shipped checkpoints and their validation unchanged
    python scripts/ship_models.py --int8        # the 8-bit exports (gan_<particle>_int8.onnx, the engine's
                                                # default) made anew and validated beside the float32 ones
    python scripts/ship_models.py --response    # the energy response, the E5x5 spreads per momentum slice and of
                                                # the fixed track of the shipped checkpoints measured anew
    python scripts/ship_models.py --distilled ~/.cache/caloforge/runs/distill/{particle}_mlp256.pt
        # ship students of `caloforge distill` of the shipped models: the shipped seed-size checkpoint is kept as
        # seed_gan_<particle>.pt, its card numbers beside the student's; the student is validated the same way

Needs ``caloforge samples`` (test and floor files) to have run; makes the fixed-track Geant4 samples
(:data:`TRACK_EVENTS` events of (px, py, pz) = (0.32, 0.73, 0.01) GeV/c per particle) when they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from caloforge.data.io import read_attrs, read_sample
from caloforge.data.production import DEFAULT_CACHE, make_sample
from caloforge.export import OnnxShowerModel, export_onnx
from caloforge.export.quantize import NotQuantizableError
from caloforge.fullsim.runner import GunSpec
from caloforge.models import ShowerModel, load_model
from caloforge.models.generate import generate_like
from caloforge.models.pretrained import DEFAULT_STEMS, HERE, INT8_SUFFIX, SEED_STEMS
from caloforge.training.config import expand_path
from caloforge.validation.report import validate

TRACK_GEV = (0.32, 0.73, 0.01)
TRACK_EVENTS = 10_000
SLICES_GEV = ((0.2, 0.4), (0.5, 0.7), (1.1, 1.3), (1.8, 2.0), (0.0, 3.0))
CARD_OBSERVABLES = ("e1x1_gev", "e3x3_gev", "e5x5_gev", "e7x7_gev", "e9x9_gev", "e11x11_gev",
                    "second_moment_cm2", "lat", "a20", "a42")


RESPONSE_DRAWS = 4
"""Model maps drawn per Geant4 event for the momentum-slice study (:func:`slice_study`)."""


def slice_study(model: ShowerModel, geant4: list, *, draws: int = RESPONSE_DRAWS, seed: int = 11) -> dict:
    """Per momentum slice, on the conditions of every event of the Geant4 samples ``geant4`` (the test and floor
    samples: 30k events), ``draws`` model maps per event:

    * ``energy_response``: mean E11x11 of the model over Geant4's, with the error of the mean per-event difference
      (the model's mean over its draws minus Geant4's energy, same conditions) relative to the Geant4 mean.
      Pairing removes the spread of the momentum within a slice, which the unpaired error of the cards until
      2026-12-01 counted (1.2 % at 0.2-0.4 GeV/c on 664 photons and one draw; 0.19 % paired on 1990, 4 draws);
    * ``resolution_slices``: the spread of E5x5 / p, model over Geant4, as standard deviation and sigma68 (the
      model's over all its draws).
    """
    conditions = np.concatenate([g.conditions for g in geant4])
    maps_ref = np.concatenate([g.maps_gev for g in geant4])
    e_ref, e5_ref = maps_ref.sum(axis=(1, 2)), maps_ref[:, 3:8, 3:8].sum(axis=(1, 2))
    maps = [model.sample(conditions, seed=seed + k) for k in range(draws)]
    e_cand = np.stack([m.sum(axis=(1, 2)) for m in maps])  # (draws, N)
    e5_cand = np.stack([m[:, 3:8, 3:8].sum(axis=(1, 2)) for m in maps])  # (draws, N)
    p = conditions[:, 0]
    response, spread = [], []
    for lo, hi in SLICES_GEV:
        sel = (p >= lo) & (p < hi)
        mean_ref, mean_cand = e_ref[sel].mean(), e_cand[:, sel].mean()
        diff = e_cand[:, sel].mean(axis=0) - e_ref[sel]
        response.append({"slice_gev": [lo, hi], "n": int(sel.sum()), "draws": draws,
                         "geant4_mean_gev": float(mean_ref), "model_mean_gev": float(mean_cand),
                         "ratio": float(mean_cand / mean_ref),
                         "ratio_error": float(diff.std(ddof=1) / np.sqrt(sel.sum()) / mean_ref)})
        if (lo, hi) == (0.0, 3.0):
            continue
        f_ref, f_cand = e5_ref[sel] / p[sel], (e5_cand[:, sel] / p[sel]).ravel()
        spread.append({"slice_gev": [lo, hi], "n": int(sel.sum()), "draws": draws,
                       "std_ratio": float(f_cand.std() / f_ref.std()),
                       "sigma68_ratio": _sigma68(f_cand) / _sigma68(f_ref)})
    return {"energy_response": response, "resolution_slices": spread}


def worst_slice(energy_response: list[dict]) -> dict:
    """The momentum slice (not the full range) whose mean energy is furthest from Geant4's."""
    return max((r for r in energy_response if r["slice_gev"] != [0.0, 3.0]), key=lambda r: abs(r["ratio"] - 1))


def _response_samples(samples: Path, name: str) -> list:
    return [read_sample(samples / f"{kind}_{name}.h5") for kind in ("test", "floor")]


def _sigma68(x: np.ndarray) -> float:
    """Half the 16-84 % quantile range."""
    q16, q84 = np.percentile(x, [16, 84])
    return float(0.5 * (q84 - q16))


def track_sample(samples: Path, name: str) -> Path:
    """The fixed-track Geant4 sample of ``name``, made or extended to :data:`TRACK_EVENTS` events (the cards until
    2026-12-01 used 2000; extending continues the same run, so the first 2000 events stay what they were)."""
    track = samples / f"track_{name}.h5"
    have = read_attrs(track)["n_events"] if track.exists() else 0
    if have < TRACK_EVENTS:
        make_sample(track, GunSpec(name, track_gev=TRACK_GEV, seed=3001), TRACK_EVENTS - have, append=have > 0,
                    progress=False)
    return track


def resolution(track_ref, model: ShowerModel, *, draws: int = RESPONSE_DRAWS, seed: int = 2) -> dict:
    """E5x5 spread of the repeated track, model over Geant4: ``draws`` model maps per Geant4 event, under its
    conditions (the model's spread over all of them)."""
    e5_ref = track_ref.maps_gev[:, 3:8, 3:8].sum(axis=(1, 2))
    e5_cand = np.concatenate([model.sample(track_ref.conditions, seed=seed + k)[:, 3:8, 3:8].sum(axis=(1, 2))
                              for k in range(draws)])
    return {"track_gev": list(TRACK_GEV), "n": len(e5_ref), "draws": draws,
            "geant4_e5x5_std_gev": float(e5_ref.std()), "model_e5x5_std_gev": float(e5_cand.std()),
            "std_ratio": float(e5_cand.std() / e5_ref.std()),
            "geant4_e5x5_sigma68_gev": _sigma68(e5_ref), "model_e5x5_sigma68_gev": _sigma68(e5_cand),
            "sigma68_ratio": _sigma68(e5_cand) / _sigma68(e5_ref)}


def sampling_speed(onnx_path: Path, conditions: np.ndarray, n: int = 50_000) -> float:
    model = OnnxShowerModel(onnx_path)
    c = conditions[np.arange(n) % len(conditions)]
    model.sample(c[:1000], seed=0)
    t0 = time.perf_counter()
    model.sample(c, seed=1, batch_size=10_000)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=DEFAULT_CACHE / "runs")
    parser.add_argument("--samples", type=Path, default=DEFAULT_CACHE / "samples")
    parser.add_argument("--work", type=Path, default=DEFAULT_CACHE / "validation")
    parser.add_argument("--run-name", default="moments_{particle}", help="run folder in --runs, per particle")
    parser.add_argument("--checkpoint", default="best.pt",
                        help="checkpoint in each run folder, e.g. best_energy.pt from caloforge fit-energy")
    parser.add_argument("--run", action="append", default=[], metavar="PARTICLE=FOLDER",
                        help="the run folder of one particle, instead of --run-name (repeatable)")
    parser.add_argument("--config", default="configs/moments_{particle}.yaml",
                        help="the configuration the runs were trained with, per particle (named in the card)")
    parser.add_argument("--events", type=int, default=10_000, help="events per validation sample")
    parser.add_argument("--particles", default="gamma,e-,e+")
    parser.add_argument("--distilled", metavar="FILE", default=None,
                        help="ship the students of `caloforge distill` (a path with {particle}) instead of runs")
    parser.add_argument("--int8", action="store_true",
                        help="only export the shipped checkpoints with 8-bit hidden layers and validate that export "
                             "beside the float32 one")
    parser.add_argument("--reexport", action="store_true",
                        help="only export the shipped checkpoints to ONNX again and measure their speed anew")
    parser.add_argument("--response", action="store_true",
                        help="only measure the energy response, the spread per momentum slice and the spread of "
                             "the fixed track of the shipped checkpoints anew")
    args = parser.parse_args()
    if args.int8:
        int8_exports(args.samples, args.work, args.particles.split(","), args.events)
        return
    if args.reexport:
        reexport(args.samples, args.particles.split(","), args.events)
        return
    if args.response:
        response(args.samples, args.particles.split(","))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    runs = {}
    for item in args.run:
        name, sep, folder = item.partition("=")
        if not sep or name not in DEFAULT_STEMS:
            parser.error(f"--run {item!r}: expected PARTICLE=FOLDER with PARTICLE one of {', '.join(DEFAULT_STEMS)}")
        runs[name] = Path(folder).expanduser()

    card_file = HERE / "validation.json"
    cards = json.loads(card_file.read_text()) if card_file.exists() else {}  # --particles replaces only those
    for name in args.particles.split(","):
        target = HERE / f"{DEFAULT_STEMS[name]}.pt"
        if args.distilled:
            model, teacher_card, distilled = _keep_teacher(Path(args.distilled.format(particle=name)).expanduser(),
                                                           name, cards)
            run = args.runs / teacher_card["run"]["folder"]
            mean_shower_change, energy_fit = 0.0, teacher_card.get("energy_fit")  # both the teacher's, unchanged
            config_file = teacher_card["run"]["config_file"]
        else:
            run = runs.get(name, args.runs / args.run_name.format(particle=name))
            best = run / args.checkpoint
            model = load_model(best, device="cpu")
            train_conditions = read_sample(args.samples / f"train_{name}.h5").conditions
            mean_shower_change = model.regularise_mean_shower(train_conditions)  # no-op for a ridge-fitted one
            energy_fit, teacher_card, distilled = _energy_fit(best, run), None, None
            config_file = args.config.format(particle=name)
        model.save(target, **({"distilled": distilled} if distilled else {}))
        onnx_path = target.with_suffix(".onnx")
        if onnx_path.exists():
            onnx_path.unlink()
        export_onnx(model, onnx_path)

        test = args.samples / f"test_{name}.h5"
        floor = args.samples / f"floor_{name}.h5"
        cand = args.work / f"model_{name}.h5"
        if cand.exists():
            cand.unlink()
        generate_like(model, test, cand, seed=1, max_events=args.events, model_path=str(target), progress=False)
        out = args.work / name
        if out.exists():
            shutil.rmtree(out)
        metrics = validate(test, cand, out, floor=floor, max_events=args.events, seed=0)

        track = track_sample(args.samples, name)

        ref = read_sample(test, 0, args.events)
        metrics_file = out / "metrics.json"
        obs = metrics["slices"]["all"]["observables"]
        cards[name] = {
            "validated_on": date.today().isoformat(),
            "checkpoint": target.name,
            "onnx": onnx_path.name,
            "parameters": model.parameter_counts() if hasattr(model, "parameter_counts") else model.n_parameters,
            "run": {"folder": run.name, "config_file": config_file,
                    "config": _read_yaml(run / "config.yaml"), **_run_summary(run / "metrics.csv")},
            "training_sample": _sample_description(args.samples / f"train_{name}.h5"),
            "mean_shower_regularised_rms_change": mean_shower_change,
            "energy_fit": _energy_summary(energy_fit),
            "separation_power": {k: {"model": obs[k]["candidate"]["separation_power"],
                                     "model_error": obs[k]["candidate"]["separation_power_error"],
                                     "geant4_floor": obs[k].get("floor", {}).get("separation_power"),
                                     "verdict": obs[k]["verdict"]} for k in CARD_OBSERVABLES if k in obs},
            "classifier": metrics.get("classifier", {}),
            "impact_point": {k: {"chi2": e["candidate_chi2"]["chi2"], "ndf": e["candidate_chi2"]["ndf"],
                                 "z": e["candidate_chi2"]["z"], "floor_z": e.get("floor_chi2", {}).get("z"),
                                 "geant4_first_last": [e["reference"]["mean"][0], e["reference"]["mean"][-1]],
                                 "model_first_last": [e["candidate"]["mean"][0], e["candidate"]["mean"][-1]],
                                 "verdict": e["verdict"]}
                             for k, e in metrics.get("impact_point", {}).items()},
            "summary": metrics["summary"],
            **slice_study(model, _response_samples(args.samples, name)),
            "resolution": resolution(read_sample(track), model),
            "onnx_showers_per_s": sampling_speed(onnx_path, ref.conditions),
            "report": str(out / "report.html"),
            "metrics_file": str(metrics_file),
        }
        if teacher_card is not None:
            cards[name]["distilled"] = _distill_summary(model, distilled, teacher_card)
        print(f"{name}: {metrics['summary']['overall']} ({metrics['summary']['counts']})", flush=True)

    write_cards(cards)
    # the engine's default, the 8-bit export, follows the new checkpoints (none for a convolutional generator)
    int8_exports(args.samples, args.work, args.particles.split(","), args.events)


def write_cards(cards: dict) -> None:
    """Write ``validation.json`` and the ``MODEL_CARD.md`` rendered from it (the card first, so that a rendering
    error leaves both files as they were)."""
    card_text = render_card(cards)
    (HERE / "validation.json").write_text(json.dumps(cards, indent=1, default=float))
    (HERE / "MODEL_CARD.md").write_text(card_text)
    print(f"wrote {HERE / 'MODEL_CARD.md'}")


def _keep_teacher(student_file: Path, name: str, cards: dict) -> tuple:
    """The student of ``student_file``, the card of its teacher (the shipped seed-size model, which is kept as
    ``seed_gan_<particle>.pt``: copied there once, before the default's file is replaced) and the record of
    the distillation."""
    ckpt = torch.load(student_file, map_location="cpu", weights_only=True)
    info = ckpt.get("distilled")
    if info is None:
        raise SystemExit(f"{student_file}: not a checkpoint of `caloforge distill`")
    shipped, keep = HERE / f"{DEFAULT_STEMS[name]}.pt", HERE / f"{SEED_STEMS[name]}.pt"
    if Path(info["from"]).resolve() not in (shipped.resolve(), keep.resolve()):
        raise SystemExit(f"{student_file} was distilled from {info['from']}, not from the shipped {keep.name}")
    if not keep.exists():  # the first time: the shipped default is the seed-size teacher
        shutil.copyfile(shipped, keep)
        teacher_card = {k: v for k, v in cards[name].items() if k != "distilled"} | {"checkpoint": keep.name}
    else:  # shipped again: the teacher's card is the one kept then
        teacher_card = cards[name]["distilled"]["teacher"]
    return ShowerModel.from_checkpoint(ckpt, device="cpu"), teacher_card, info


def _distill_summary(student, d: dict, teacher_card: dict) -> dict:
    """The distillation settings and result of the student, and the card of the teacher it came from."""
    return {"channels": list(student.config.generator_channels), "hidden": list(student.config.generator_hidden),
            **{k: d[k] for k in ("steps", "batch_size", "learning_rate", "seed", "events", "mse_start", "mse",
                                 "reproduced", "teacher_parameters", "student_parameters")},
            "samples": [Path(p).name for p in d["samples"]], "teacher": teacher_card}


def _energy_summary(fit: dict | None) -> dict | None:
    """The energy fit as the card keeps it: without the per-epoch likelihoods, with the last one."""
    if fit is None or "final_nll" in fit:
        return fit
    return {k: v for k, v in fit.items() if k != "nll_per_epoch"} | {"final_nll": fit["nll_per_epoch"][-1]}


def reexport(samples: Path, particles: list[str], n_conditions: int) -> None:
    """Export the shipped checkpoints to ONNX again and measure the sampling speed on the conditions of the
    Geant4 test sample; the checkpoints, their validation numbers and the rest of the card stay as they are."""
    cards = json.loads((HERE / "validation.json").read_text())
    for name in particles:
        target = HERE / f"{DEFAULT_STEMS[name]}.pt"
        onnx_path = target.with_suffix(".onnx")
        fresh = onnx_path.with_name(f"{onnx_path.stem}.new.onnx")  # the shipped file stays until this one is whole
        fresh.unlink(missing_ok=True)
        os.replace(export_onnx(load_model(target, device="cpu"), fresh), onnx_path)
        card = cards[name]
        # what the cards of the first shipped models (2026-11-22) did not record, as their MODEL_CARD.md said it
        card.setdefault("validated_on", "2026-11-22")
        card["run"].setdefault("config_file", f"configs/default_{name}.yaml")
        card["run"].setdefault("selection_features", ["E1x1", "E3x3", "E5x5", "E11x11", "E3x3/E5x5"])
        conditions = read_sample(samples / f"test_{name}.h5", 0, n_conditions).conditions
        card["onnx_showers_per_s"] = sampling_speed(onnx_path, conditions)
        print(f"{name}: {onnx_path.name} exported again, {card['onnx_showers_per_s']:,.0f} showers/s", flush=True)
    write_cards(cards)


def int8_exports(samples: Path, work: Path, particles: list[str], events: int) -> None:
    """Export the shipped checkpoints with 8-bit hidden layers (``gan_<particle>_int8.onnx``, what
    ``caloforge simulate`` runs by default; :mod:`caloforge.export.quantize`) and validate that export and the
    float32 one side by side against the Geant4 test sample, under the same conditions with the same noise;
    the rest of the card stays as it is."""
    cards = json.loads((HERE / "validation.json").read_text())
    work.mkdir(parents=True, exist_ok=True)
    for name in particles:
        target = HERE / f"{DEFAULT_STEMS[name]}.pt"
        paths = {"float32": target.with_suffix(".onnx"), "int8": HERE / f"{DEFAULT_STEMS[name]}{INT8_SUFFIX}"}
        fresh = HERE / f"{DEFAULT_STEMS[name]}.new.onnx"  # the shipped file stays until this one is whole
        fresh.unlink(missing_ok=True)
        try:
            os.replace(export_onnx(load_model(target, device="cpu"), fresh, int8=True), paths["int8"])
        except NotQuantizableError as err:  # the engine falls back to the float32 export of this checkpoint
            paths["int8"].unlink(missing_ok=True)
            cards[name].pop("int8", None)
            print(f"{name}: no 8-bit export ({err})", flush=True)
            continue
        test, floor = samples / f"test_{name}.h5", samples / f"floor_{name}.h5"
        models = {kind: OnnxShowerModel(path) for kind, path in paths.items()}
        metrics = {}
        for kind, model in models.items():
            cand = work / f"onnx_{kind}_{name}.h5"
            cand.unlink(missing_ok=True)
            generate_like(model, test, cand, seed=1, max_events=events, model_path=str(paths[kind]), progress=False)
            out = work / f"{name}_{kind}"
            if out.exists():
                shutil.rmtree(out)
            metrics[kind] = validate(test, cand, out, floor=floor, max_events=events, seed=0)
        conditions = read_sample(test, 0, events).conditions
        a, b = (m.sample(conditions, seed=1) for m in models.values())
        e_a, e_b = a.sum(axis=(1, 2)), b.sum(axis=(1, 2))
        e5_a, e5_b = a[:, 3:8, 3:8].sum(axis=(1, 2)), b[:, 3:8, 3:8].sum(axis=(1, 2))
        speeds = {kind: 0.0 for kind in paths}
        for _ in range(3):  # alternating, the best of three: these shared machines drift
            for kind, path in paths.items():
                speeds[kind] = max(speeds[kind], sampling_speed(path, conditions))
        obs = {kind: m["slices"]["all"]["observables"] for kind, m in metrics.items()}
        cards[name]["int8"] = {
            "validated_on": date.today().isoformat(),
            "onnx": paths["int8"].name,
            "quantization": json.loads(models["int8"].metadata["quantization"]),
            "separation_power": {k: {**{kind: obs[kind][k]["candidate"]["separation_power"] for kind in obs},
                                     **{f"{kind}_error": obs[kind][k]["candidate"]["separation_power_error"]
                                        for kind in obs},
                                     **{f"{kind}_verdict": obs[kind][k]["verdict"] for kind in obs},
                                     "geant4_floor": obs["int8"][k].get("floor", {}).get("separation_power")}
                                 for k in CARD_OBSERVABLES if k in obs["int8"]},
            "counts": {kind: m["summary"]["counts"] for kind, m in metrics.items()},
            "classifier_auc": {kind: {c: r["candidate"]["auc"] for c, r in (m.get("classifier") or {}).items()
                                      if isinstance(r, dict) and "candidate" in r} for kind, m in metrics.items()},
            "same_noise": {"events": len(conditions),
                           "centre_share_mean_abs_diff": float(np.abs(a[:, 5, 5] / e_a - b[:, 5, 5] / e_b).mean()),
                           "e11x11_rel_max_abs_diff": float(np.abs(e_b / e_a - 1).max()),
                           "e5x5_rel_mean_abs_diff": float(np.abs(e5_b / e5_a - 1).mean())},
            "showers_per_s": speeds,
        }
        print(f"{name}: {paths['int8'].name}, {speeds['int8']:,.0f} showers/s (float32 {speeds['float32']:,.0f}); "
              f"{cards[name]['int8']['counts']}", flush=True)
    write_cards(cards)


def response(samples: Path, particles: list[str]) -> None:
    """Measure the energy response and the E5x5/p spread per momentum slice (:func:`slice_study`) of the shipped
    checkpoints anew; the rest of the card stays as it is."""
    cards = json.loads((HERE / "validation.json").read_text())
    for name in particles:
        model = load_model(HERE / f"{DEFAULT_STEMS[name]}.pt", device="cpu")
        cards[name].update(slice_study(model, _response_samples(samples, name)))
        cards[name]["resolution"] = resolution(read_sample(track_sample(samples, name)), model)
        worst = worst_slice(cards[name]["energy_response"])
        print(f"{name}: worst slice {worst['slice_gev']} GeV/c, model / Geant4 {worst['ratio']:.4f} "
              f"+- {worst['ratio_error']:.4f}", flush=True)
    write_cards(cards)


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def _run_summary(metrics_csv: Path) -> dict:
    """From a run's ``metrics.csv``: epochs done, the epoch of ``best.pt`` and the features of the
    selection metric it was chosen by (its ``val_sp_<feature>`` columns)."""
    import csv

    with open(metrics_csv) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    best = [int(row["epoch"]) for row in rows if row.get("best") == "1"]
    features = [c[len("val_sp_"):] for c in columns if c.startswith("val_sp_") and not c.startswith("val_sp_mean")]
    return {"epochs_done": len(rows), "best_epoch": best[-1] if best else 0, "selection_features": features}


def _sample_description(path: Path) -> dict:
    a = read_attrs(path)
    return {"file": path.name, "events_in_file": a["n_events"], "gun": a["gun"], "geant4_version": a["geant4_version"],
            "geant4_datasets": a["geant4_datasets"], "physics_list": a["physics_list"],
            "production_cut_mm": a["production_cut_mm"], "tof": a["tof"]}


def _targets(c: dict) -> str:
    """One line: each target of the model issue, met or not, with the number."""
    sp = {k: v["model"] for k, v in c["separation_power"].items()}
    target_obs = [k for k in CARD_OBSERVABLES if k in sp]  # the issue's E1x1 ... E11x11, second moment, LAT, A20, A42
    below = [k for k in target_obs if sp[k] < 0.02]
    off = worst_slice(c["energy_response"])
    worst = abs(off["ratio"] - 1)
    res = c["resolution"]["std_ratio"]
    aucs = [r["candidate"]["auc"] for r in (c.get("classifier") or {}).values() if isinstance(r, dict) and "candidate" in r]
    speed = c["onnx_showers_per_s"]

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    parts = [
        f"separation power < 0.02 for {len(below)} of {len(target_obs)} observables ({mark(len(below) == len(target_obs))})",
        f"mean energy per momentum slice within {100 * worst:.1f} +- {100 * off['ratio_error']:.1f} % "
        f"({mark(worst <= 0.01)}, target 1 %)",
        f"E5x5 spread of one track {res:.2f} x Geant4's ({mark(abs(res - 1) <= 0.1)}, target within 10 %)",
    ]
    if c.get("resolution_slices"):
        off = max(c["resolution_slices"], key=lambda r: abs(r["std_ratio"] - 1))
        parts.append(f"E5x5/p spread per momentum slice, worst {off['std_ratio']:.2f} x Geant4's at "
                     f"{off['slice_gev'][0]}-{off['slice_gev'][1]} GeV/c ({mark(abs(off['std_ratio'] - 1) <= 0.1)})")
    if aucs:
        parts.append(f"classifier AUC {max(aucs):.3f} ({mark(max(aucs) < 0.75)}, target < 0.75)")
    parts.append(f"{speed:,.0f} showers/s ({mark(speed >= 25_000)}, target 25k)")
    return "; ".join(parts)


def _events_used(max_events: int | None, in_file: int) -> str:
    return f"all {in_file:,} events" if max_events is None or max_events >= in_file else f"the first {max_events:,} events"


def _started_from(training: dict) -> str:
    """The card's words for ``training.init_from`` (empty when the run started afresh)."""
    init = training.get("init_from")
    return f", starting from the weights of `{init}` (fine-tuning)" if init else ""


def _energy_fit(checkpoint: Path, run: Path) -> dict | None:
    """How the checkpoint's energy model was fitted (``caloforge fit-energy``): recorded in the checkpoint,
    or in the one its run started from (``training.init_from``), followed back through fine-tunes of
    fine-tunes; None if none says."""
    seen: set[Path] = set()
    while checkpoint.exists() and checkpoint not in seen:
        seen.add(checkpoint)
        fit = torch.load(checkpoint, map_location="cpu", weights_only=True).get("energy_fit")
        if fit is not None:
            return fit
        config = run / "config.yaml"
        init = _read_yaml(config).get("training", {}).get("init_from") if config.exists() else None
        if not init:
            return None
        checkpoint = expand_path(init)
        run = checkpoint.parent
    return None


def _energy_line(fit: dict | None) -> list[str]:
    if not fit:
        return []
    return [f"- Deposited energy: each map rescaled to E11x11 = f p, f drawn from the energy model "
            f"(`src/caloforge/models/energy.py`) fitted by `caloforge fit-energy` on {fit['events']} events "
            f"of `{', '.join(Path(p).name for p in fit['samples'])}`, {fit['epochs']} epochs, seed {fit['seed']} "
            f"(negative log-likelihood {fit['final_nll']:.4f}), to the checkpoint `{Path(fit['from']).parent.name}/"
            f"{Path(fit['from']).name}`."]


def _distill_lines(d: dict | None) -> list[str]:
    """The card's words for a student of ``caloforge distill``, with its teacher's numbers beside its own."""
    if not d:
        return []
    t = d["teacher"]
    sp = t["separation_power"]
    aucs = ", ".join(f"{_fmt(r['candidate']['auc'], 3)} ({kind.replace('_', '-')})"
                     for kind, r in (t.get("classifier") or {}).items() if isinstance(r, dict) and "candidate" in r)
    shape = (f"a fully connected generator of hidden widths {tuple(d['hidden'])}" if d.get("hidden")
             else f"generator channels {tuple(d['channels'])}")
    return [
        f"- Distilled (`caloforge distill`, `src/caloforge/training/distill.py`) from the seed-size model "
        f"`{t['checkpoint']}` (the training run above) into {shape} (generator "
        f"parameters, the mean-shower table included: {d['teacher_parameters']} -> {d['student_parameters']}): "
        f"{d['steps']} steps of {d['batch_size']} (noise, condition) pairs, peak learning rate {d['learning_rate']:g}, "
        f"seed {d['seed']}, on the conditions of {d['events']} events of `{', '.join(d['samples'])}`. On held-out "
        f"inputs the student reproduces {100 * d['reproduced']:.1f} % of the teacher's departure from its mean shower "
        f"(mean squared difference {d['mse_start']:.3g} -> {d['mse']:.3g} in output space).",
        f"- The teacher, validated on {t.get('validated_on', 'n/a')}: separation power E1x1 {_fmt(sp['e1x1_gev']['model'])}, "
        f"E5x5 {_fmt(sp['e5x5_gev']['model'])}, second moment {_fmt(sp['second_moment_cm2']['model'])}, LAT "
        f"{_fmt(sp['lat']['model'])}; classifier AUC {aucs}; {t['onnx_showers_per_s']:,.0f} showers/s.",
    ]


def _int8_lines(q: dict | None) -> list[str]:
    """The card's section on the 8-bit export, its validation beside the float32 export's."""
    if not q:
        return []
    same, speed, info = q["same_noise"], q["showers_per_s"], q["quantization"]
    lines = [
        f"### 8-bit export: `{q['onnx']}`", "",
        f"The hidden layers ({', '.join(f'`{x}`' for x in info['int8_layers'])}) in 8 bits "
        "(`src/caloforge/export/quantize.py`: noise and activations in 8 bits with fixed scales, weights in 7 bits "
        "with a scale per output row, exact 32-bit sums; the conditions, the output layer, the mean shower and the "
        "energy model stay float32), "
        f"activation scales from {info['calibration']}. Validated on {q['validated_on']} beside the float32 export, "
        f"both sampled under the conditions of the same {same['events']} Geant4 test events with the same noise: the "
        f"two exports' maps differ by {same['centre_share_mean_abs_diff']:.2g} in the centre crystal's share of "
        f"E11x11 and {100 * same['e5x5_rel_mean_abs_diff']:.2g} % in E5x5 (means of the absolute differences; "
        f"E11x11, which the energy model sets, at most {same['e11x11_rel_max_abs_diff']:.1g} relative). "
        f"ONNX Runtime sampling, best of three alternating runs: {speed['int8']:,.0f} showers/s, float32 "
        f"{speed['float32']:,.0f} (batch 10k, 2 cores).", "",
        "| observable | separation power, float32 export | 8-bit export | Geant4 floor | verdicts |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, v in q["separation_power"].items():
        lines.append(f"| {k} | {_fmt(v['float32'])} +- {_fmt(v['float32_error'])} | {_fmt(v['int8'])} +- "
                     f"{_fmt(v['int8_error'])} | {_fmt(v['geant4_floor'])} | "
                     f"{v['float32_verdict']}, {v['int8_verdict']} |")

    def counts(c: dict) -> str:
        return ", ".join(f"{n} {verdict}" for verdict, n in c.items() if n)

    lines += ["", f"All verdicts of the reports: float32 export {counts(q['counts']['float32'])}; 8-bit export "
              f"{counts(q['counts']['int8'])}."]
    for kind, aucs in q["classifier_auc"].items():
        lines.append(f"Classifier AUC ({'8-bit' if kind == 'int8' else kind} export): "
                     + ", ".join(f"{_fmt(v, 3)} ({c.replace('_', '-')} inputs)" for c, v in aucs.items()) + ".")
    return [*lines, ""]


def _fmt(x, digits=4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def render_card(cards: dict) -> str:
    lines = [
        "# caloforge default models: model card",
        "",
        f"Written by `scripts/ship_models.py` on {date.today().isoformat()}; the numbers below are in",
        "`validation.json` beside this file, each model's validation date with it. One conditional GAN per",
        "particle type: the seed's generator and discriminator (SPEC section 4; `src/caloforge/models/gan.py`)",
        "trained as a WGAN-GP with the changes listed in its configuration (below), trained with",
        "`caloforge train <configuration>`; where a model says it was distilled, its generator is a narrower",
        "(`generator_channels`) or a fully connected one (`generator_hidden`) trained by `caloforge distill` to",
        "give the same maps as that seed-size model (`seed_gan_<particle>.pt`, shipped beside it) for the same",
        "noise and conditions.",
        "Inputs: the six conditions of `docs/conventions.md` of the undisturbed track at the crystal front face;",
        "output: the 11x11 crystal energies in GeV. `.pt` is the PyTorch checkpoint, `.onnx` its float32 ONNX export,",
        "`_int8.onnx` the export with 8-bit hidden layers that `caloforge simulate` runs by default (each model's",
        "section \"8-bit export\"; `caloforge simulate --no-int8` runs the float32 one).",
        "",
    ]
    for name, c in cards.items():
        ts, run = c["training_sample"], c["run"]
        data = run["config"]["data"]
        lines += [
            f"## {name}: `{c['checkpoint']}`, `{c['onnx']}`",
            "",
            f"Targets: {_targets(c)}.",
            "",
            f"- Parameters: {c['parameters']}",
            f"- Training sample: {_events_used(data.get('max_events'), ts['events_in_file'])} of `{ts['file']}` (Geant4 "
            f"{ts['geant4_version']}, {ts['physics_list']}, cut {ts['production_cut_mm']} mm, TOF "
            f"{'on' if ts['tof'] else 'off'}, gun {ts['gun']}, data sets {ts['geant4_datasets'].get('G4LEDATA')} "
            f"(reduced offline EM data)), {data.get('val_fraction')} of them held out for checkpoint selection.",
            f"- Training run `{run['folder']}`: `caloforge train {run['config_file']}`"
            f"{_started_from(run['config']['training'])}. Settings: "
            f"{run['config']['model']}; training {run['config']['training']}; "
            f"{run['epochs_done']} epochs done (regressor pre-training included); the shipped one is epoch "
            f"{run['best_epoch']}, chosen by the mean separation power of "
            f"{', '.join(run['selection_features'])} on the held-out events.",
            *_energy_line(c.get("energy_fit")),
            *_distill_lines(c.get("distilled")),
            *([f"- Mean shower: table regularised on the training conditions (`MeanShower.regularise`, ridge "
               f"1e-4; rms change {c['mean_shower_regularised_rms_change']:.2g} in output space)."]
              if c.get("mean_shower_regularised_rms_change") else []),
            f"- Validation against the Geant4 test sample on {c.get('validated_on', 'n/a')} "
            f"(`{Path(c['report']).parent.name}/report.html`): "
            f"overall **{c['summary']['overall']}**, {c['summary']['counts']}.",
            f"- ONNX Runtime sampling on this machine: {c['onnx_showers_per_s']:,.0f} showers/s (batch 10k, 2 cores).",
            "",
            "| observable | separation power (model) | Geant4 floor | verdict |",
            "| --- | --- | --- | --- |",
        ]
        for k, v in c["separation_power"].items():
            lines.append(f"| {k} | {_fmt(v['model'])} +- {_fmt(v['model_error'])} | {_fmt(v['geant4_floor'])} | {v['verdict']} |")
        draws = c["energy_response"][0].get("draws")
        lines += ["", "| momentum slice (GeV/c) | Geant4 events | Geant4 mean E11x11 (GeV) | model / Geant4 |",
                  "| --- | --- | --- | --- |"]
        for r in c["energy_response"]:
            lines.append(f"| {r['slice_gev'][0]}-{r['slice_gev'][1]} | {r['n']} | {r['geant4_mean_gev']:.4f} | "
                         f"{r['ratio']:.4f} +- {r['ratio_error']:.4f} |")
        if draws:
            lines += ["", f"Energy response on the conditions of the Geant4 test and floor samples together, {draws} "
                      "model maps per Geant4 event; errors of the mean per-event difference (same conditions)."]
        if c.get("impact_point"):
            lines += ["", "| profile against the impact point | Geant4, first and last bin | model | chi2/ndf | z "
                      "(floor z) | verdict |", "| --- | --- | --- | --- | --- | --- |"]
            for k, v in c["impact_point"].items():
                lines.append(f"| {k} | {_fmt(v['geant4_first_last'][0])}, {_fmt(v['geant4_first_last'][1])} | "
                             f"{_fmt(v['model_first_last'][0])}, {_fmt(v['model_first_last'][1])} | "
                             f"{v['chi2']:.0f}/{v['ndf']} | {_fmt(v['z'], 1)} ({_fmt(v['floor_z'], 1)}) | {v['verdict']} |")
        res = c["resolution"]
        draws_text = f", {res['draws']} model maps per Geant4 event" if res.get("draws") else ""
        lines += ["", f"Repeated track {tuple(res['track_gev'])} GeV/c, {res['n']} Geant4 events{draws_text}: "
                  f"E5x5 std Geant4 {res['geant4_e5x5_std_gev']:.4f} GeV, model {res['model_e5x5_std_gev']:.4f} GeV (ratio "
                  f"{res['std_ratio']:.3f}); sigma68 ratio {res['sigma68_ratio']:.3f}.", ""]
        if c.get("resolution_slices"):
            lines += ["| momentum slice (GeV/c) | Geant4 events | E5x5/p spread, model / Geant4 (std) | (sigma68) |",
                      "| --- | --- | --- | --- |"]
            lines += [f"| {r['slice_gev'][0]}-{r['slice_gev'][1]} | {r['n']} | {r['std_ratio']:.3f} | "
                      f"{r['sigma68_ratio']:.3f} |" for r in c["resolution_slices"]]
            lines.append("")
            if c["resolution_slices"][0].get("draws"):
                lines += ["The same Geant4 events and model maps as the energy response; the model's spread over all "
                          "its draws.", ""]
        clf = c.get("classifier") or {}
        for kind, r in clf.items():
            if isinstance(r, dict) and "candidate" in r:
                lines.append(f"Classifier ({kind} inputs): AUC {_fmt(r['candidate'].get('auc'), 3)}; "
                             f"Geant4 floor {_fmt((r.get('floor') or {}).get('auc'), 3)}.")
        lines.append("")
        lines += _int8_lines(c.get("int8"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
