"""The model card (``MODEL_CARD.md``) of the shipped models, rendered from their validation records alone.

Each shipped set has its records file, one record per particle type (written by :mod:`caloforge.release.ship`):
``validation.json`` for the GANs, ``validation_<set>.json`` for the others (:data:`~caloforge.models.pretrained.
RECORD_FILES`). The card is a pure function of them, :func:`render_card`, so that it can be rendered again from the
JSON at any time and give the same text; with other sets than the GANs shipped it begins with a table of the sets
side by side. :func:`write_cards` writes a set's records and the card.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from caloforge.atomic import write_text_atomic
from caloforge.models.pretrained import DEFAULT_FAMILY, RECORD_FILES
from caloforge.release.targets import (
    CLASSIFIER_AUC_MAX,
    ENERGY_RESPONSE_TOLERANCE,
    OCCUPANCY_FLOOR_FACTOR,
    SEPARATION_POWER_MAX,
    SHOWERS_PER_S_MIN,
    SPREAD_TOLERANCE,
    check_targets,
    occupancy_words,
    worst_slice,
)

VALIDATION_FILE = RECORD_FILES["gan"]
"""The validation records of the GANs, beside the shipped models."""
CARD_FILE = "MODEL_CARD.md"
"""The model card, beside the shipped models."""


def read_cards(models_dir: str | os.PathLike, family: str = "gan") -> dict[str, dict]:
    """The validation records (particle -> record) of the set ``family`` in ``models_dir``; empty when it has
    none."""
    path = Path(models_dir) / RECORD_FILES[family]
    return json.loads(path.read_text()) if path.exists() else {}


def cards_json(cards: dict[str, dict]) -> str:
    """The text of ``validation.json`` for ``cards`` (one-space indent, numpy numbers as floats)."""
    return json.dumps(cards, indent=1, default=float)


def write_cards(cards: dict[str, dict], models_dir: str | os.PathLike, family: str = "gan") -> Path:
    """Write the records of the set ``family`` and the ``MODEL_CARD.md`` rendered from them and the other set's
    records into ``models_dir`` (the card is rendered first, so that a rendering error leaves the files as they
    were). Returns the card's path."""
    models_dir = Path(models_dir)
    sets = {name: read_cards(models_dir, name) for name in RECORD_FILES} | {family: cards}
    card_text = render_card(sets["gan"], **{name.replace("-", "_"): records for name, records in sets.items()
                                            if name != "gan"})
    write_text_atomic(models_dir / RECORD_FILES[family], cards_json(cards))
    return write_text_atomic(models_dir / CARD_FILE, card_text)


def card_date(cards: dict[str, dict]) -> str:
    """The date the card carries (ISO): the latest date a record was validated or updated on (the records'
    ``validated_on`` and ``updated_on``, and those of their 8-bit exports)."""
    dates = [d for c in cards.values()
             for d in (c.get("validated_on"), c.get("updated_on"), (c.get("int8") or {}).get("validated_on")) if d]
    return max(dates, default="n/a")


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _events_used(max_events: int | None, in_file: int) -> str:
    """The card's words for the training events used: all of the file's, or the first ``max_events``."""
    if max_events is None or max_events >= in_file:
        return f"all {in_file:,} events"
    return f"the first {max_events:,} events"


def _started_from(training: dict) -> str:
    """The card's words for ``training.init_from`` (empty when the run started afresh)."""
    init = training.get("init_from")
    return f", starting from the weights of `{init}` (fine-tuning)" if init else ""


def _energy_line(fit: dict | None) -> list[str]:
    """The card's words for the energy model of ``caloforge fit-energy`` (none without one)."""
    if not fit:
        return []
    return [f"- Deposited energy: each map rescaled to E11x11 = f p, f drawn from the energy model "
            f"(`src/caloforge/models/energy.py`) fitted by `caloforge fit-energy` on {fit['events']} events "
            f"of `{', '.join(Path(p).name for p in fit['samples'])}`, {fit['epochs']} epochs, seed {fit['seed']} "
            f"(negative log-likelihood {fit['final_nll']:.4f}), to the checkpoint `{Path(fit['from']).parent.name}/"
            f"{Path(fit['from']).name}`."]


SAMPLER_WORDS = {"ddim": "DDIM (eta 0)", "dpm": "DPM-Solver++ (2nd order)"}
"""How the card names a diffusion model's sampler."""


def _sampling_line(sampling: dict | None) -> list[str]:
    """The card's words for a diffusion model's sampler (none for other models)."""
    if not sampling:
        return []
    line = (f"- Sampling: {SAMPLER_WORDS.get(sampling['sampler'], sampling['sampler'])}, {sampling['steps']} U-Net "
            "evaluations per shower, \"trailing\" timesteps")
    if sampling.get("recalibrated_events"):
        line += (f"; set when shipped (the run validated its epochs with its configured sampler), the per-crystal "
                 f"thresholds calibrated anew for it on the first {sampling['recalibrated_events']:,} training events")
    return [line + "."]


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
        f"- The teacher, validated on {t['validated_on']}: separation power E1x1 {_fmt(sp['e1x1_gev']['model'])}, "
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


def _selection_words(run: dict) -> str:
    """The card's words for the selection metric of a run's ``best.pt``."""
    shapes = f"the mean separation power of {', '.join(run['selection_features'])}"
    if run.get("selection_metric") == "sp_occupancy":
        return f"{shapes} times the crystal occupancy's chi^2 per crystal (any deposit and above 1 MeV)"
    return shapes


def _auc(c: dict, kind: str, role: str = "candidate") -> float | None:
    return ((c.get("classifier") or {}).get(kind) or {}).get(role, {}).get("auc")


def _auc_label(kind: str) -> str:
    return f"classifier AUC, {kind.replace('_', '-')} (target < {CLASSIFIER_AUC_MAX[kind]:g})"


def _occupancy_label(key: str) -> str:
    return f"occupancy chi2/121, {occupancy_words(key)} (target {OCCUPANCY_FLOOR_FACTOR:g} x floor)"


def _side_by_side_rows(c: dict) -> dict[str, str]:
    """One model's entries of the side-by-side table (:func:`side_by_side`), labelled with their targets
    (:mod:`caloforge.release.targets`)."""
    counts = c["summary"]["counts"]
    sp = {k: v["model"] for k, v in c["separation_power"].items()}
    worst = max(sp, key=sp.get)
    return {
        **{_auc_label(kind): _fmt(_auc(c, kind), 3) for kind in CLASSIFIER_AUC_MAX},
        **{_occupancy_label(k): f"{v['chi2']:.0f}" for k, v in (c.get("occupancy") or {}).items()},
        "verdicts: compatible, tension, incompatible": (f"{counts.get('compatible', 0)}, {counts.get('tension', 0)}, "
                                                        f"{counts.get('incompatible', 0)}"),
        f"largest separation power of the targets (< {SEPARATION_POWER_MAX:g})": f"{sp[worst]:.4f} ({worst})",
        f"worst slice mean E11x11, model / Geant4 ({100 * ENERGY_RESPONSE_TOLERANCE:g} %)":
            f"{worst_slice(c['energy_response'])['ratio']:.4f}",
        f"E5x5 spread of one track, model / Geant4 ({100 * SPREAD_TOLERANCE:g} %)": f"{c['resolution']['std_ratio']:.3f}",
        f"showers/s, ONNX Runtime, batch 10k, 2 cores ({SHOWERS_PER_S_MIN // 1000}k)": f"{c['onnx_showers_per_s']:,.0f}",
    }


def _floor_entries(c: dict) -> dict[str, str]:
    """The Geant4 floor's entries of the side-by-side table, from one record."""
    return {**{_auc_label(kind): _fmt(_auc(c, kind, "floor"), 3) for kind in CLASSIFIER_AUC_MAX},
            **{_occupancy_label(k): _fmt(v.get("floor_chi2"), 0) for k, v in (c.get("occupancy") or {}).items()}}


SET_LABELS = {"gan": "GAN", "flow": "flow", "student": "student", "diffusion": "diffusion",
              "diffusion-student": "diffusion student"}
"""How the card names each shipped set."""


def side_by_side(sets: dict[str, dict[str, dict]]) -> list[str]:
    """The card's table of the shipped sets (family -> particle -> record) side by side: per particle type of the
    first set after the GANs (in its order) that the GANs have too, each measure as ``GAN / flow / student / ...``
    (``-`` where a set has no model of that particle), and the Geant4 floor (from the validation of the first set
    after the GANs that has the particle)."""
    present = {f: records for f, records in sets.items() if records}
    if len(present) < 2 or "gan" not in present:
        return []
    families = list(present)
    names = [n for n in present[families[1]] if n in present["gan"]]
    if not names:
        return []
    labels = " / ".join(SET_LABELS[f] for f in families)
    options = " against ".join(f"`--model {f}`" + (" (default)" if f == DEFAULT_FAMILY else "") for f in families)
    lines = [f"## The sets side by side: {options}", "",
             "All validated against the same Geant4 test events, with the independent Geant4 sample as the floor; "
             f"each cell reads {labels}. The other sets' own sections follow the GANs'.", "",
             "| measure (target) | " + " | ".join(names) + " | Geant4 floor |",
             "| --- | " + " | ".join("---" for _ in names) + " | --- |"]
    rows = {n: [_side_by_side_rows(present[f][n]) if n in present[f] else {} for f in families] for n in names}
    floors = {n: _floor_entries(next(present[f][n] for f in families[1:] if n in present[f])) for n in names}
    for measure in rows[names[0]][1]:
        cells = [" / ".join(r.get(measure, "n/a") if r else "-" for r in rows[n]) for n in names]
        floor = ", ".join(f for n in names if (f := floors[n].get(measure)) and f != "n/a") or "-"
        lines.append(f"| {measure} | " + " | ".join(cells) + f" | {floor} |")
    return [*lines, ""]


def _set_lines(family: str, records: dict[str, dict]) -> list[str]:
    """The card's opening words on the shipped set ``family`` (its models' ``records``, particle -> record)."""
    default = ", the default (`caloforge simulate` without `--model`)" if family == DEFAULT_FAMILY else ""
    particles = ", ".join(records)
    return {
        "student": [
            f"- **student**{default}, `--model student`: one-pass students of the flows",
            "  (`src/caloforge/models/student.py`: the flow's energy stage, then a fully connected network of the flow's",
            "  noise with a hit and a value head per crystal, distilled from the flow by `configs/student.yaml`, its",
            "  per-crystal corrections fitted to Geant4 in momentum bins); `student_<particle>.pt` with its weights in 16",
            "  bits and its ONNX export `student_<particle>.onnx`; numbers in `validation_student.json`.",
        ],
        "gan": [
            f"- **gan**{default}, `--model gan`: the fastest and the farthest from Geant4. One conditional GAN per",
            "  particle type: the seed's generator and discriminator (SPEC section 4; `src/caloforge/models/gan/`) trained",
            "  as a WGAN-GP with the changes listed in its configuration (below), with `caloforge train <configuration>`;",
            "  where a model says it was distilled, its generator is a narrower (`generator_channels`) or a fully",
            "  connected one (`generator_hidden`) trained by `caloforge distill` to give the same maps as that seed-size",
            "  model (`seed_gan_<particle>.pt`, shipped beside it) for the same noise and conditions. `gan_<particle>.pt`",
            "  with its float32 export `.onnx` and `_int8.onnx`, the export with 8-bit hidden layers that `--model gan`",
            "  runs (each model's section \"8-bit export\"; `--no-int8` runs the float32 one); numbers in",
            "  `validation.json`.",
        ],
        "flow": [
            f"- **flow**{default}, `--model flow`: the students' teachers, one conditional normalizing flow per",
            "  particle type (`src/caloforge/models/flow/`: the deposited energy, then a coupling spline flow over the 121",
            "  cell fractions of E11x11), slow; `flow_<particle>.pt` with its weights in 16 bits; numbers in",
            "  `validation_flow.json`.",
        ],
        "diffusion": [
            f"- **diffusion**{default}, `--model diffusion`: the seeds' third model class, the slowest, for {particles}",
            "  (`src/caloforge/models/diffusion/`: the flows' energy stage, then a DDPM over the 121 cell fractions",
            "  of E11x11 with a conditional U-Net, diffusers' schedulers, sampled in a few deterministic steps);",
            "  `diffusion_<particle>.pt` with its weights in 16 bits and its ONNX export `diffusion_<particle>.onnx` (the",
            "  sampler's steps unrolled in one graph); numbers in `validation_diffusion.json`.",
        ],
        "diffusion-student": [
            f"- **diffusion-student**{default}, `--model diffusion-student`: the diffusion models distilled into one",
            f"  pass, for {particles} (the student network of the flows' students, trained on pairs of shape noise",
            "  and the shipped diffusion model's samples by `configs/diffusion_student.yaml`, its per-crystal corrections",
            "  fitted to Geant4 in momentum bins); `diffusion_student_<particle>.pt` with its weights in 16 bits and its",
            "  ONNX export; numbers in `validation_diffusion_student.json`.",
        ],
    }[family]


_NUMBER_WORDS = {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five"}
HEADER_ORDER = ("student", "gan", "flow", "diffusion", "diffusion-student")
"""The order in which the card's opening lists the shipped sets (the default first)."""


def _header(sets: dict[str, dict[str, dict]]) -> list[str]:
    present = {family: records for family, records in sets.items() if records}
    dated = {f"{family} {name}" if family != "gan" else name: record
             for family, records in present.items() for name, record in records.items()}
    return [
        "# caloforge shipped models: model card",
        "",
        f"Written by `caloforge ship` on {card_date(dated)}; the numbers below are in the records files beside this",
        f"file, each model's validation date with it. {_NUMBER_WORDS.get(len(present), len(present))} sets, one model "
        "per particle type each:",
        "",
        *[line for family in HEADER_ORDER if family in present for line in _set_lines(family, present[family])],
        "",
        "Inputs: the six conditions of `docs/conventions.md` of the undisturbed track at the crystal front face;",
        "output: the 11x11 crystal energies in GeV. `.pt` is the PyTorch checkpoint, `.onnx` its ONNX export.",
        "",
    ]


def _model_section(name: str, c: dict) -> list[str]:
    """The card's section on the model of one particle type, from its record ``c``."""
    ts, run = c["training_sample"], c["run"]
    data = run["config"]["data"]
    family = c.get("family", "gan")
    gan = family == "gan"
    lines = [
        f"## {name}, {family}: `{c['checkpoint']}`{f', `{o}`' if (o := c.get('onnx')) else ''}" if not gan
        else f"## {name}: `{c['checkpoint']}`, `{c['onnx']}`",
        "",
        f"Targets: {'; '.join(str(check) for check in check_targets(c))}.",
        "",
        f"- Parameters: {c['parameters']}",
        f"- Training sample: {_events_used(data.get('max_events'), ts['events_in_file'])} of `{ts['file']}` (Geant4 "
        f"{ts['geant4_version']}, {ts['physics_list']}, cut {ts['production_cut_mm']} mm, TOF "
        f"{'on' if ts['tof'] else 'off'}, gun {ts['gun']}, data sets {ts['geant4_datasets'].get('G4LEDATA')} "
        f"(reduced offline EM data)), {data.get('val_fraction')} of them held out for checkpoint selection.",
        f"- Training run `{run['folder']}`: `caloforge train {run['config_file']}`"
        f"{_started_from(run['config']['training'])}. Settings: "
        f"{run['config']['model']}; training {run['config']['training']}; "
        f"{run['epochs_done']} epochs done{' (regressor pre-training included)' if gan else ''}; the shipped one "
        f"is epoch {run['best_epoch']}, chosen by {_selection_words(run)} on the held-out events.",
        *_energy_line(c.get("energy_fit")),
        *_sampling_line(c.get("sampling")),
        *_distill_lines(c.get("distilled")),
        *([f"- Mean shower: table regularised on the training conditions (`MeanShower.regularise`, ridge "
           f"1e-4; rms change {c['mean_shower_regularised_rms_change']:.2g} in output space)."]
          if c.get("mean_shower_regularised_rms_change") else []),
        f"- Validation against the Geant4 test sample on {c['validated_on']} "
        f"(`{Path(c['report']).parent.name}/report.html`): "
        f"overall **{c['summary']['overall']}**, {c['summary']['counts']}.",
        f"- ONNX Runtime sampling on this machine: {c['onnx_showers_per_s']:,.0f} showers/s (batch 10k, 2 cores"
        f"{'; the export made when the checkpoint is loaded' if not c.get('onnx') else ''}).",
        "",
        "| observable | separation power (model) | Geant4 floor | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for k, v in c["separation_power"].items():
        lines.append(f"| {k} | {_fmt(v['model'])} +- {_fmt(v['model_error'])} | {_fmt(v['geant4_floor'])} | "
                     f"{v['verdict']} |")
    lines += ["", "| momentum slice (GeV/c) | Geant4 events | Geant4 mean E11x11 (GeV) | model / Geant4 |",
              "| --- | --- | --- | --- |"]
    for r in c["energy_response"]:
        lines.append(f"| {r['slice_gev'][0]}-{r['slice_gev'][1]} | {r['n']} | {r['geant4_mean_gev']:.4f} | "
                     f"{r['ratio']:.4f} +- {r['ratio_error']:.4f} |")
    lines += ["", f"Energy response on the conditions of the Geant4 test and floor samples together, "
              f"{c['energy_response'][0]['draws']} model maps per Geant4 event; errors of the mean per-event "
              "difference (same conditions)."]
    if c.get("impact_point"):
        lines += ["", "| profile against the impact point | Geant4, first and last bin | model | chi2/ndf | z "
                  "(floor z) | verdict |", "| --- | --- | --- | --- | --- | --- |"]
        for k, v in c["impact_point"].items():
            lines.append(f"| {k} | {_fmt(v['geant4_first_last'][0])}, {_fmt(v['geant4_first_last'][1])} | "
                         f"{_fmt(v['model_first_last'][0])}, {_fmt(v['model_first_last'][1])} | "
                         f"{v['chi2']:.0f}/{v['ndf']} | {_fmt(v['z'], 1)} ({_fmt(v['floor_z'], 1)}) | {v['verdict']} |")
    res = c["resolution"]
    lines += ["", f"Repeated track {tuple(res['track_gev'])} GeV/c, {res['n']} Geant4 events, {res['draws']} model "
              f"maps per Geant4 event: E5x5 std Geant4 {res['geant4_e5x5_std_gev']:.4f} GeV, model "
              f"{res['model_e5x5_std_gev']:.4f} GeV (ratio {res['std_ratio']:.3f}); sigma68 ratio "
              f"{res['sigma68_ratio']:.3f}.", ""]
    if c.get("resolution_slices"):
        lines += ["| momentum slice (GeV/c) | Geant4 events | E5x5/p spread, model / Geant4 (std) | (sigma68) |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['slice_gev'][0]}-{r['slice_gev'][1]} | {r['n']} | {r['std_ratio']:.3f} | "
                  f"{r['sigma68_ratio']:.3f} |" for r in c["resolution_slices"]]
        lines += ["", "The same Geant4 events and model maps as the energy response; the model's spread over all "
                  "its draws.", ""]
    for kind, r in (c.get("classifier") or {}).items():
        if isinstance(r, dict) and "candidate" in r:
            lines.append(f"Classifier ({kind} inputs): AUC {_fmt(r['candidate'].get('auc'), 3)}; "
                         f"Geant4 floor {_fmt((r.get('floor') or {}).get('auc'), 3)}.")
    return [*lines, "", *_int8_lines(c.get("int8"))]


def render_card(cards: dict[str, dict], **others: dict[str, dict]) -> str:
    """The text of ``MODEL_CARD.md`` for the validation records ``cards`` of the GANs (particle -> record, the
    content of ``validation.json``) and those of the other shipped sets, by set name (``flow=``, ``student=``,
    ``diffusion=``, ``diffusion_student=``: the content of their records files, :data:`RECORD_FILES`), if any: a
    header, the sets side by side, then per model its targets (:func:`caloforge.release.targets.check_targets`),
    provenance, validation tables and a GAN's 8-bit export's validation."""
    sets = {"gan": cards}
    for key, records in others.items():
        family = key.replace("_", "-")
        if family not in RECORD_FILES:
            raise ValueError(f"render_card: no shipped set {family!r} (the sets: {', '.join(RECORD_FILES)})")
        sets[family] = records or {}
    sets = {family: sets.get(family, {}) for family in RECORD_FILES}  # the sets' order
    lines = _header(sets)
    lines += side_by_side(sets)
    for records in sets.values():
        for name, c in records.items():
            lines += _model_section(name, c)
    return "\n".join(lines)
