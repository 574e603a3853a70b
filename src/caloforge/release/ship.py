"""Ship models as the package defaults (``caloforge ship``), with their validation records and model card.

The modes, each a function that writes into a models folder (by default the package's
``src/caloforge/models/pretrained/``, :data:`caloforge.models.pretrained.HERE`):

* :func:`ship` -- trained checkpoints of one model set (:data:`~caloforge.models.pretrained.FAMILY_STEMS`), one per
  particle type: for a GAN, regularise the mean shower on the training conditions
  (:meth:`caloforge.models.GAN.regularise_mean_shower`), save the model as ``gan_<particle>.pt`` with its ONNX
  export; a flow is saved as ``flow_<particle>.pt`` with its weights in 16 bits (no export file: ONNX Runtime
  gets one made when the model is loaded); then sample it under the conditions of the Geant4 test sample and
  validate it against Geant4 (with the independent floor sample), run the studies of
  :mod:`caloforge.release.studies`, write the set's records (``validation.json``, ``validation_flow.json``)
  and ``MODEL_CARD.md`` (:mod:`caloforge.release.card`, both sets), then a GAN's 8-bit exports;
* :func:`ship_distilled` -- students of ``caloforge distill`` of the shipped models, validated the same way;
  the shipped seed-size teacher is kept as ``seed_gan_<particle>.pt``, its record beside the student's;
* :func:`reexport` -- the shipped checkpoints exported to ONNX again and their speed measured anew;
* :func:`revalidate` -- the shipped checkpoints of a set validated anew against Geant4 (the report's numbers of
  their records, e.g. after the report gained a measure);
* :func:`measure_response` -- the energy response and E5x5 spreads of the shipped checkpoints measured anew;
* :func:`int8_exports` -- the 8-bit exports (``gan_<particle>_int8.onnx``, the engine's default) made anew
  and validated beside the float32 ones.

Each needs the Geant4 samples of ``caloforge samples`` (``test_``, ``floor_``, and for :func:`ship`
``train_<particle>.h5``) in ``samples_dir``; the fixed-track samples are made there when missing. Bad inputs
raise :class:`ShipError` before any work starts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import date
from pathlib import Path

import torch
from tqdm.auto import tqdm

from caloforge.atomic import atomic_path
from caloforge.data.io import read_sample
from caloforge.data.production import DEFAULT_CACHE
from caloforge.detector.conditions import PARTICLES
from caloforge.export import OnnxShowerModel, export_onnx
from caloforge.export.quantize import NotQuantizableError
from caloforge.models import ShowerModel, load_model
from caloforge.engine.generate import generate_like
from caloforge.models.pretrained import (
    FAMILY_MODELS,
    FAMILY_STEMS,
    GAN_STEMS,
    HERE,
    INT8_SUFFIX,
    RECORD_FILES,
    SEED_STEMS,
)
from caloforge.release import provenance, studies
from caloforge.release.card import read_cards, write_cards
from caloforge.release.targets import TARGET_OBSERVABLES, worst_slice
from caloforge.training.loop import CONFIG, METRICS
from caloforge.training.plans import CALIBRATION_EVENTS
from caloforge.validation.report import validate

DEFAULT_SAMPLES = DEFAULT_CACHE / "samples"
"""Where ``caloforge samples`` writes the Geant4 samples."""
DEFAULT_RUNS = DEFAULT_CACHE / "runs"
"""Where the training runs are."""
DEFAULT_WORK = DEFAULT_CACHE / "validation"
"""Where the generated samples and the validation reports of the shipped models go."""
DEFAULT_CONFIG = "configs/moments.yaml --particle {particle}"
"""The arguments of ``caloforge train`` the shipped runs were trained with (the record's ``run.config_file``,
named in the card), ``{particle}`` per particle."""
DEFAULT_EVENTS = 10_000
"""Events per validation sample (the first ones of the Geant4 test and floor samples)."""


class ShipError(ValueError):
    """An input of a ship mode is missing or wrong (said in one line)."""


# ------------------------------------------------------------------------------------------------
# the modes
# ------------------------------------------------------------------------------------------------


def ship(
    checkpoints: dict[str, Path],
    *,
    samples_dir: Path = DEFAULT_SAMPLES,
    out_dir: Path = HERE,
    work_dir: Path = DEFAULT_WORK,
    config: str = DEFAULT_CONFIG,
    events: int = DEFAULT_EVENTS,
    int8: bool = True,
    progress: bool = False,
    family: str = "gan",
    sampling: tuple[str | None, int | None] | None = None,
) -> dict[str, dict]:
    """Ship trained checkpoints as the models of set ``family`` in ``out_dir``, validated, with their card.

    Args:
        checkpoints: particle (``gamma``, ``e-``, ``e+``) -> checkpoint (``best.pt`` of a ``caloforge train`` run;
            its folder is the run: ``config.yaml``, ``metrics.csv``) of a model of the set's family.
        samples_dir: the Geant4 samples (``train_``, ``test_``, ``floor_<particle>.h5``; ``track_<particle>.h5``
            is made there when missing).
        out_dir: the models folder written: ``gan_<particle>.pt``, ``.onnx``, ``_int8.onnx``, ``validation.json``
            (records of other particles there are kept), ``MODEL_CARD.md``.
        work_dir: generated samples and validation reports (``<particle>/report.html``).
        config: the arguments of ``caloforge train`` the runs were trained with, ``{particle}`` per particle
            (:data:`DEFAULT_CONFIG`; the record's ``run.config_file``, named in the card).
        events: events per validation sample.
        int8: make and validate the 8-bit exports afterwards (:func:`int8_exports`; GANs only).
        progress: show a progress bar and one line per model.
        family: the model set (:data:`caloforge.models.pretrained.FAMILY_STEMS`): ``gan``, ``flow``, ``student``,
            ``diffusion`` or ``diffusion-student``.
        sampling: for diffusion models, the sampler (``ddim``, ``dpm``) and its number of steps to ship them with
            instead of the run's (None in either: the run's); their per-crystal thresholds are then calibrated anew
            on the first :data:`~caloforge.training.plans.CALIBRATION_EVENTS` training events. None: as trained.

    Returns:
        The validation records written (particle -> record).
    """
    particles = list(checkpoints)
    _check_family(family)
    _check_particles(particles)
    if sampling is not None and family != "diffusion":
        raise ShipError(f"a sampler to ship with: only for diffusion models, not the {family} set")
    for name, checkpoint in checkpoints.items():
        _require(checkpoint, "checkpoint")
        for part in (CONFIG, METRICS):
            _require(checkpoint.parent / part, "training run file")
        _require_samples(samples_dir, name, ("train", "test", "floor"))
    out_dir.mkdir(parents=True, exist_ok=True)
    cards = read_cards(out_dir, family)  # records of other particles stay
    with _bar(len(particles) * _SHIP_STEPS, progress) as bar:
        for name, checkpoint in checkpoints.items():
            model = load_model(checkpoint, device="cpu")
            if model.name != FAMILY_MODELS.get(family, family):
                raise ShipError(f"{checkpoint}: a {model.name} model, not one of the {family} set")
            change = 0.0
            resampled = _resample(model, sampling, samples_dir / f"train_{name}.h5", bar) if sampling else None
            if family == "gan":
                bar.set_description(f"{name}: mean shower")
                train_conditions = read_sample(samples_dir / f"train_{name}.h5").conditions
                change = model.regularise_mean_shower(train_conditions)  # no-op for a ridge-fitted one
            cards[name] = _ship_one(
                name, model, samples_dir=samples_dir, out_dir=out_dir, work_dir=work_dir, events=events, bar=bar,
                run=provenance.run_record(checkpoint.parent, config.format(particle=name)),
                mean_shower_change=change,
                energy_fit=provenance.energy_fit(checkpoint, checkpoint.parent), family=family,
                recalibrated_events=resampled)
    write_cards(cards, out_dir, family)
    if int8 and family == "gan":  # the engine's default, the 8-bit export, follows the new checkpoints
        return int8_exports(particles, samples_dir=samples_dir, out_dir=out_dir, work_dir=work_dir, events=events,
                            progress=progress)
    return cards


def ship_distilled(
    students: dict[str, Path],
    *,
    samples_dir: Path = DEFAULT_SAMPLES,
    runs_dir: Path = DEFAULT_RUNS,
    out_dir: Path = HERE,
    work_dir: Path = DEFAULT_WORK,
    events: int = DEFAULT_EVENTS,
    int8: bool = True,
    progress: bool = False,
) -> dict[str, dict]:
    """Ship students of ``caloforge distill`` of the models shipped in ``out_dir`` in their place.

    The shipped seed-size teacher is kept as ``seed_gan_<particle>.pt`` (copied there while the shipped model is
    not itself a student; its record goes into the student's, ``distilled.teacher``); the student is validated like :func:`ship` (without the
    mean-shower regularisation: the teacher's mean shower and energy fit are kept). ``students``: particle ->
    student checkpoint; ``runs_dir``: the folder of the teacher's training run (named in its record); the
    other arguments as for :func:`ship`. Returns the validation records written.
    """
    particles = list(students)
    _check_particles(particles)
    cards = read_cards(out_dir)
    infos = {}
    for name, student in students.items():
        _require(student, "checkpoint")
        _require_samples(samples_dir, name, ("train", "test", "floor"))
        if name not in cards:
            raise ShipError(f"{out_dir / RECORD_FILES['gan']}: no record of the shipped {name} model (the teacher)")
        infos[name] = _distilled_from(student, name, out_dir)
        teacher_run = _teacher_card(name, cards, out_dir)["run"]
        for part in (CONFIG, METRICS):
            _require(runs_dir / teacher_run["folder"] / part, "training run file")
    with _bar(len(particles) * _SHIP_STEPS, progress) as bar:
        for name, student in students.items():
            teacher_card = _keep_teacher(name, cards, out_dir)
            model = ShowerModel.from_checkpoint(torch.load(student, map_location="cpu", weights_only=True),
                                                device="cpu")
            run = teacher_card["run"]
            cards[name] = _ship_one(
                name, model, samples_dir=samples_dir, out_dir=out_dir, work_dir=work_dir, events=events, bar=bar,
                run=provenance.run_record(runs_dir / run["folder"], run["config_file"]),
                mean_shower_change=0.0, energy_fit=teacher_card.get("energy_fit"),  # both the teacher's, unchanged
                distilled=infos[name])
            cards[name]["distilled"] = provenance.distill_summary(model, infos[name], teacher_card)
    write_cards(cards, out_dir)
    if int8:
        return int8_exports(particles, samples_dir=samples_dir, out_dir=out_dir, work_dir=work_dir, events=events,
                            progress=progress)
    return cards


def reexport(
    particles: list[str],
    *,
    samples_dir: Path = DEFAULT_SAMPLES,
    out_dir: Path = HERE,
    events: int = DEFAULT_EVENTS,
    progress: bool = False,
) -> dict[str, dict]:
    """Export the shipped checkpoints of ``out_dir`` to ONNX again and measure the sampling speed on the
    conditions of the first ``events`` events of the Geant4 test sample; the checkpoints, their validation
    numbers and the rest of the card stay as they are. Returns the validation records written."""
    cards = _shipped(particles, samples_dir, out_dir, ("test",))
    with _bar(len(particles), progress) as bar:
        for name in particles:
            bar.set_description(f"{name}: export")
            target = shipped_checkpoint(name, out_dir)
            onnx_path = export_replacing(load_model(target, device="cpu"), target.with_suffix(".onnx"))
            conditions = read_sample(samples_dir / f"test_{name}.h5", 0, events).conditions
            cards[name]["onnx_showers_per_s"] = studies.sampling_speed(onnx_path, conditions)
            cards[name]["updated_on"] = date.today().isoformat()
            bar.update()
            _say(bar, f"{name}: {onnx_path.name} exported again, {cards[name]['onnx_showers_per_s']:,.0f} showers/s")
    write_cards(cards, out_dir)
    return cards


def revalidate(
    particles: list[str],
    *,
    samples_dir: Path = DEFAULT_SAMPLES,
    out_dir: Path = HERE,
    work_dir: Path = DEFAULT_WORK,
    events: int = DEFAULT_EVENTS,
    family: str = "gan",
    progress: bool = False,
) -> dict[str, dict]:
    """Validate the shipped checkpoints of set ``family`` in ``out_dir`` anew against the first ``events`` events of
    the Geant4 test sample (the floor beside it), as :func:`ship` does, and replace their records' numbers from the
    report (separation powers, classifiers, impact-point profiles, occupancy, verdicts); the rest of the card stays
    as it is. Returns the validation records written."""
    _check_family(family)
    cards = _shipped(particles, samples_dir, out_dir, ("test", "floor"), family)
    with _bar(len(particles), progress) as bar:
        for name in particles:
            bar.set_description(f"{name}: validate")
            target = shipped_checkpoint(name, out_dir, family)
            stem = _report_stem(name, family)
            metrics = _validate_model(load_model(target, device="cpu"), str(target), samples_dir / f"test_{name}.h5",
                                      samples_dir / f"floor_{name}.h5", work_dir, f"model_{stem}", stem, events)
            cards[name].update(_validation_entries(metrics))
            cards[name]["updated_on"] = date.today().isoformat()
            bar.update()
            _say(bar, f"{name}: {metrics['summary']['overall']} ({metrics['summary']['counts']})")
    write_cards(cards, out_dir, family)
    return cards


def measure_response(
    particles: list[str],
    *,
    samples_dir: Path = DEFAULT_SAMPLES,
    out_dir: Path = HERE,
    progress: bool = False,
) -> dict[str, dict]:
    """Measure the energy response and the E5x5/p spread per momentum slice (:func:`studies.slice_study`) and the
    E5x5 spread of the fixed track (:func:`studies.track_resolution`) of the shipped checkpoints of ``out_dir``
    anew; the rest of the card stays as it is. Returns the validation records written."""
    cards = _shipped(particles, samples_dir, out_dir, ("test", "floor"))
    with _bar(len(particles), progress) as bar:
        for name in particles:
            bar.set_description(f"{name}: response")
            model = load_model(shipped_checkpoint(name, out_dir), device="cpu")
            cards[name].update(studies.slice_study(model, studies.response_samples(samples_dir, name)))
            track = read_sample(studies.track_sample(samples_dir, name))
            cards[name]["resolution"] = studies.track_resolution(track, model)
            cards[name]["updated_on"] = date.today().isoformat()
            worst = worst_slice(cards[name]["energy_response"])
            bar.update()
            _say(bar, f"{name}: worst slice {worst['slice_gev']} GeV/c, model / Geant4 {worst['ratio']:.4f} "
                      f"+- {worst['ratio_error']:.4f}")
    write_cards(cards, out_dir)
    return cards


def int8_exports(
    particles: list[str],
    *,
    samples_dir: Path = DEFAULT_SAMPLES,
    out_dir: Path = HERE,
    work_dir: Path = DEFAULT_WORK,
    events: int = DEFAULT_EVENTS,
    progress: bool = False,
) -> dict[str, dict]:
    """Export the shipped checkpoints of ``out_dir`` with 8-bit hidden layers (``gan_<particle>_int8.onnx``, what
    ``caloforge simulate`` runs by default; :mod:`caloforge.export.quantize`) and validate that export and the
    float32 one side by side against the Geant4 test sample, under the same conditions with the same noise;
    the rest of the card stays as it is. A checkpoint that cannot be quantized loses its 8-bit export (the
    engine falls back to the float32 one). Returns the validation records written."""
    cards = _shipped(particles, samples_dir, out_dir, ("test", "floor"))
    work_dir.mkdir(parents=True, exist_ok=True)
    with _bar(len(particles) * 4, progress) as bar:
        for name in particles:
            bar.set_description(f"{name}: 8-bit export")
            target = shipped_checkpoint(name, out_dir)
            paths = {"float32": target.with_suffix(".onnx"), "int8": out_dir / f"{GAN_STEMS[name]}{INT8_SUFFIX}"}
            try:
                export_replacing(load_model(target, device="cpu"), paths["int8"], int8=True)
            except NotQuantizableError as err:
                paths["int8"].unlink(missing_ok=True)
                cards[name].pop("int8", None)
                bar.update(4)
                _say(bar, f"{name}: no 8-bit export ({err})")
                continue
            bar.update()
            test, floor = samples_dir / f"test_{name}.h5", samples_dir / f"floor_{name}.h5"
            models = {kind: OnnxShowerModel(path) for kind, path in paths.items()}
            metrics = {}
            for kind, model in models.items():
                bar.set_description(f"{name}: validate {kind}")
                metrics[kind] = _validate_model(model, str(paths[kind]), test, floor, work_dir,
                                                f"onnx_{kind}_{name}", f"{name}_{kind}", events)
                bar.update()
            bar.set_description(f"{name}: speed")
            conditions = read_sample(test, 0, events).conditions
            a, b = (m.sample(conditions, seed=1) for m in models.values())
            speeds = {kind: 0.0 for kind in paths}
            for _ in range(3):  # alternating, the best of three: these shared machines drift
                for kind, path in paths.items():
                    speeds[kind] = max(speeds[kind], studies.sampling_speed(path, conditions))
            cards[name]["int8"] = _int8_record(paths["int8"].name, models["int8"], metrics,
                                               studies.same_noise_differences(a, b), speeds)
            bar.update()
            _say(bar, f"{name}: {paths['int8'].name}, {speeds['int8']:,.0f} showers/s (float32 "
                      f"{speeds['float32']:,.0f}); {cards[name]['int8']['counts']}")
    write_cards(cards, out_dir)
    return cards


# ------------------------------------------------------------------------------------------------
# one model: validation and its record
# ------------------------------------------------------------------------------------------------

_SHIP_STEPS = 5
"""Progress steps of one model in :func:`ship` and :func:`ship_distilled`."""


def _ship_one(name: str, model: ShowerModel, *, samples_dir: Path, out_dir: Path, work_dir: Path, events: int,
              bar: tqdm, run: dict, mean_shower_change: float, energy_fit: dict | None,
              distilled: dict | None = None, family: str = "gan", recalibrated_events: int | None = None) -> dict:
    """Save ``model`` as the model of ``name`` in set ``family`` of ``out_dir`` (a GAN with its ONNX export, the
    other sets with 16-bit weights, and their export if ONNX Runtime runs them faster), validate it and return its
    record (without ``distilled``, which the caller adds); ``recalibrated_events``: the training events a diffusion
    model's thresholds were calibrated on anew for another sampler (:func:`_resample`), None if not."""
    bar.set_description(f"{name}: save and export")
    target = shipped_checkpoint(name, out_dir, family)
    with tempfile.TemporaryDirectory() as tmp:
        if family == "gan":
            model.save(target, **({"distilled": distilled} if distilled else {}))
            onnx_path = export_replacing(model, target.with_suffix(".onnx"))
        else:  # validated as stored: the weights rounded to 16 bits first
            model.round_weights_to_half()
            model.save(target, half_weights=True)
            if model.faster_in_onnx_runtime:  # shipped beside it: the engine runs it without exporting at loading
                onnx_path = export_replacing(model, target.with_suffix(".onnx"))
            else:
                onnx_path = export_onnx(model, Path(tmp) / target.with_suffix(".onnx").name)
        checks = _validation_record(name, model, target, onnx_path, samples_dir=samples_dir, work_dir=work_dir,
                                    events=events, bar=bar, stem=_report_stem(name, family))
    record = {
        "validated_on": date.today().isoformat(),
        "family": family,
        "checkpoint": target.name,
        "onnx": onnx_path.name if family == "gan" or model.faster_in_onnx_runtime else None,
        "parameters": model.parameter_counts() if hasattr(model, "parameter_counts") else model.n_parameters,
        "run": {**run, "selection_metric": model.selection_metric},
        "training_sample": provenance.sample_description(samples_dir / f"train_{name}.h5"),
        "mean_shower_regularised_rms_change": mean_shower_change,
        "energy_fit": provenance.energy_summary(energy_fit),
        **({"sampling": {"sampler": model.config.sampler, "steps": model.config.sampling_steps,
                         "recalibrated_events": recalibrated_events}} if family == "diffusion" else {}),
        **checks,
    }
    bar.update()
    _say(bar, f"{name}: {record['summary']['overall']} ({record['summary']['counts']})")
    return record


def _validation_record(name: str, model: ShowerModel, target: Path, onnx_path: Path, *, samples_dir: Path,
                       work_dir: Path, events: int, bar: tqdm, stem: str) -> dict:
    """The record's validation of the shipped ``model`` of ``name`` (file ``target``, export ``onnx_path``): the
    report's numbers (its files in ``work_dir/<stem>``), the studies and the ONNX Runtime speed."""
    bar.update()
    bar.set_description(f"{name}: validate")
    test, floor = samples_dir / f"test_{name}.h5", samples_dir / f"floor_{name}.h5"
    metrics = _validate_model(model, str(target), test, floor, work_dir, f"model_{stem}", stem, events)
    bar.update()
    bar.set_description(f"{name}: track sample")
    track = studies.track_sample(samples_dir, name)
    bar.update()
    bar.set_description(f"{name}: response")
    slices = studies.slice_study(model, studies.response_samples(samples_dir, name))
    resolution = studies.track_resolution(read_sample(track), model)
    bar.update()
    bar.set_description(f"{name}: speed")
    out = work_dir / stem
    return {
        **_validation_entries(metrics),
        **slices,
        "resolution": resolution,
        "onnx_showers_per_s": studies.sampling_speed(onnx_path, read_sample(test, 0, events).conditions),
        "report": str(out / "report.html"),
        "metrics_file": str(out / "metrics.json"),
    }


def _validate_model(model, model_path: str, test: Path, floor: Path, work_dir: Path, sample_stem: str,
                    report_name: str, events: int) -> dict:
    """Sample ``model`` under the conditions of the first ``events`` events of ``test`` into
    ``work_dir/<sample_stem>.h5`` and validate it against them (floor: ``floor``) into ``work_dir/<report_name>``;
    the metrics (:func:`caloforge.validation.report.validate`)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    cand = work_dir / f"{sample_stem}.h5"
    cand.unlink(missing_ok=True)
    generate_like(model, test, cand, seed=1, max_events=events, model_path=model_path, progress=False)
    out = work_dir / report_name
    if out.exists():
        shutil.rmtree(out)
    return validate(test, cand, out, floor=floor, max_events=events, seed=0)


def _validation_entries(metrics: dict) -> dict:
    """The record's part from the validation report's metrics: the separation power of the target observables
    with the floor's and the verdicts, the classifiers, the impact-point profiles and the summary."""
    obs = metrics["slices"]["all"]["observables"]
    return {
        "separation_power": {k: {"model": obs[k]["candidate"]["separation_power"],
                                 "model_error": obs[k]["candidate"]["separation_power_error"],
                                 "geant4_floor": obs[k].get("floor", {}).get("separation_power"),
                                 "verdict": obs[k]["verdict"]} for k in TARGET_OBSERVABLES if k in obs},
        "classifier": metrics.get("classifier", {}),
        "impact_point": {k: {"chi2": e["candidate_chi2"]["chi2"], "ndf": e["candidate_chi2"]["ndf"],
                             "z": e["candidate_chi2"]["z"], "floor_z": e.get("floor_chi2", {}).get("z"),
                             "geant4_first_last": [e["reference"]["mean"][0], e["reference"]["mean"][-1]],
                             "model_first_last": [e["candidate"]["mean"][0], e["candidate"]["mean"][-1]],
                             "verdict": e["verdict"]}
                         for k, e in metrics.get("impact_point", {}).items()},
        "occupancy": {k: {"chi2": e["candidate_chi2"]["chi2"], "ndf": e["candidate_chi2"]["ndf"],
                          "floor_chi2": e.get("floor_chi2", {}).get("chi2")}
                      for k, e in metrics.get("occupancy", {}).items()},
        "summary": metrics["summary"],
    }


def _int8_record(onnx_name: str, int8_model: OnnxShowerModel, metrics: dict[str, dict], same_noise: dict,
                 speeds: dict[str, float]) -> dict:
    """The record of the 8-bit export validated beside the float32 one (``metrics``: kind -> validation metrics)."""
    obs = {kind: m["slices"]["all"]["observables"] for kind, m in metrics.items()}
    return {
        "validated_on": date.today().isoformat(),
        "onnx": onnx_name,
        "quantization": json.loads(int8_model.metadata["quantization"]),
        "separation_power": {k: {**{kind: obs[kind][k]["candidate"]["separation_power"] for kind in obs},
                                 **{f"{kind}_error": obs[kind][k]["candidate"]["separation_power_error"]
                                    for kind in obs},
                                 **{f"{kind}_verdict": obs[kind][k]["verdict"] for kind in obs},
                                 "geant4_floor": obs["int8"][k].get("floor", {}).get("separation_power")}
                             for k in TARGET_OBSERVABLES if k in obs["int8"]},
        "counts": {kind: m["summary"]["counts"] for kind, m in metrics.items()},
        "classifier_auc": {kind: {c: r["candidate"]["auc"] for c, r in (m.get("classifier") or {}).items()
                                  if isinstance(r, dict) and "candidate" in r} for kind, m in metrics.items()},
        "same_noise": same_noise,
        "showers_per_s": speeds,
    }


# ------------------------------------------------------------------------------------------------
# files, teachers, checks
# ------------------------------------------------------------------------------------------------


def shipped_checkpoint(particle: str, out_dir: Path = HERE, family: str = "gan") -> Path:
    """The checkpoint that :func:`ship` (and, for GANs, :func:`ship_distilled`) writes for ``particle`` in set
    ``family``: ``gan_<particle>.pt``, ``flow_<particle>.pt``."""
    return out_dir / f"{FAMILY_STEMS[family][particle]}.pt"


def export_replacing(model, path: Path, *, int8: bool = False) -> Path:
    """Export ``model`` to ONNX (:func:`caloforge.export.export_onnx`) at ``path``, replacing the file there only
    once the new one is whole (the export is made in a temporary folder beside it)."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.") as tmp:
        fresh = export_onnx(model, Path(tmp) / path.name, int8=int8)
        os.replace(fresh, path)
    return path


def _distilled_from(student: Path, name: str, out_dir: Path) -> dict:
    """The record ``caloforge distill`` saved in ``student``, checked to come from the shipped model of ``name``."""
    info = torch.load(student, map_location="cpu", weights_only=True).get("distilled")
    if info is None:
        raise ShipError(f"{student}: not a checkpoint of `caloforge distill`")
    shipped, keep = shipped_checkpoint(name, out_dir), out_dir / f"{SEED_STEMS[name]}.pt"
    if Path(info["from"]).resolve() not in (shipped.resolve(), keep.resolve()):
        raise ShipError(f"{student} was distilled from {info['from']}, not from the shipped {keep.name}")
    return info


def _teacher_card(name: str, cards: dict, out_dir: Path) -> dict:
    """The record of the seed-size teacher of ``name``: the shipped model's own while the shipped model is not a
    student (its record has no ``distilled``), else the teacher record kept in the student's (the teacher then
    being ``seed_gan_<particle>.pt``)."""
    card = cards[name]
    if "distilled" not in card:
        return card | {"checkpoint": f"{SEED_STEMS[name]}.pt"}
    _require(out_dir / f"{SEED_STEMS[name]}.pt", "seed-size teacher of the shipped student")
    return card["distilled"]["teacher"]


def _keep_teacher(name: str, cards: dict, out_dir: Path) -> dict:
    """Keep the shipped seed-size model of ``name`` as ``seed_gan_<particle>.pt`` (copied there, before the
    default's file is replaced, while the shipped model is not a student) and return its record
    (:func:`_teacher_card`)."""
    teacher_card = _teacher_card(name, cards, out_dir)
    if "distilled" not in cards[name]:  # the shipped default is the seed-size teacher
        with atomic_path(out_dir / f"{SEED_STEMS[name]}.pt") as tmp:
            shutil.copyfile(shipped_checkpoint(name, out_dir), tmp)
    return teacher_card


def _check_particles(particles: list[str]) -> None:
    unknown = [p for p in particles if p not in PARTICLES]
    if unknown or not particles:
        raise ShipError(f"particles {', '.join(unknown) or '(none)'}: expected some of {', '.join(PARTICLES)}")


def _resample(model: ShowerModel, sampling: tuple[str | None, int | None], train_file: Path, bar: tqdm) -> int:
    """Set a diffusion ``model`` to the sampler and steps of ``sampling`` and calibrate its per-crystal thresholds
    anew on the first :data:`~caloforge.training.plans.CALIBRATION_EVENTS` Geant4 events of ``train_file``, as
    training does after each epoch; returns the number of events used."""
    try:
        model.with_sampling(*sampling)
    except ValueError as err:
        raise ShipError(f"--sampler {sampling[0]}, --steps {sampling[1]}: {err}") from None
    bar.set_description(f"{train_file.stem}: {model.config.sampler} sampler, {model.config.sampling_steps} steps")
    model.round_weights_to_half()  # as it will be stored (_ship_one), before the thresholds are fitted to it
    cal = read_sample(train_file, 0, CALIBRATION_EVENTS)
    model.calibrate(cal.maps_gev, cal.conditions, seed=0)
    return len(cal.conditions)


def _report_stem(particle: str, family: str) -> str:
    """The name of a shipped model's validation files in the work folder: ``<particle>`` for the GANs (as before
    the flows), ``<family>_<particle>`` for the other sets."""
    return particle if family == "gan" else f"{family}_{particle}"


def _check_family(family: str) -> None:
    if family not in FAMILY_STEMS:
        raise ShipError(f"model set {family!r}: expected one of {', '.join(FAMILY_STEMS)}")


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise ShipError(f"{path}: no such {what}")


def _require_samples(samples_dir: Path, name: str, kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        _require(samples_dir / f"{kind}_{name}.h5", "Geant4 sample (make it with `caloforge samples`)")


def _shipped(particles: list[str], samples_dir: Path, out_dir: Path, kinds: tuple[str, ...],
             family: str = "gan") -> dict[str, dict]:
    """The validation records of set ``family`` in ``out_dir``, after checking that the shipped models of
    ``particles``, their records and their Geant4 samples are there."""
    _check_particles(particles)
    cards = read_cards(out_dir, family)
    for name in particles:
        _require(shipped_checkpoint(name, out_dir, family), "shipped checkpoint")
        if name not in cards:
            raise ShipError(f"{out_dir / RECORD_FILES[family]}: no record of the shipped {name} model")
        _require_samples(samples_dir, name, kinds)
    return cards


def _bar(total: int, enabled: bool) -> tqdm:
    return tqdm(total=total, unit="step", disable=not enabled, desc="ship")


def _say(bar: tqdm, line: str) -> None:
    """One line of news about a model, above the progress bar (only when it is shown)."""
    if not bar.disable:
        tqdm.write(line)
