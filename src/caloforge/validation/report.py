"""Compare a candidate sample with a Geant4 reference: metrics, verdicts, an HTML report.

:func:`validate` reads two sample files (and optionally a second Geant4 sample, the *floor*), checks that
they can be compared, computes the shower observables of every event once
(:func:`~caloforge.validation.comparisons.sample_observables`), and compares them

* per observable (:data:`~caloforge.validation.comparisons.OBSERVABLES`): separation power, W1 and
  chi^2/ndf with bootstrap errors, in the full momentum range and in the BESIII momentum slices
  (:data:`MOMENTUM_SLICES_GEV`), and FPD/KPD of all observables together
  (:mod:`caloforge.validation.comparisons`, which also holds the verdict rules);
* with classifiers on low- and high-level inputs (:mod:`caloforge.validation.classifier`), full range;
* in the studies of :mod:`caloforge.validation.studies`: the fixed-track resolution (when the samples
  repeat one track), the dependence on the impact point, the crystal occupancy.

Slices with fewer than :data:`MIN_SLICE_EVENTS` events in a sample get ``n/a``. ``metrics.json`` holds
every number of the report; ``report.html`` (:mod:`caloforge.validation.html`) shows them, with the
figures of :mod:`caloforge.validation.figures` (matplotlib imported only when they are drawn).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from caloforge.atomic import write_text_atomic
from caloforge.data.io import Sample, SampleFileError, read_attrs, read_sample
from caloforge.detector.conditions import PARTICLES_BY_PDG
from caloforge.detector.readout import ReadoutParams, digitise_maps
from caloforge.validation.comparisons import (
    AUC_COMPATIBLE,
    AUC_INCOMPATIBLE,
    CANDIDATE_LABEL,
    FLOOR_LABEL,
    FLOOR_SIGMA_COMPATIBLE,
    FLOOR_SIGMA_INCOMPATIBLE,
    NOT_AVAILABLE,
    OBSERVABLES,
    S_COMPATIBLE,
    S_INCOMPATIBLE,
    THRESHOLD_SIGMAS,
    VERDICTS,
    auc_verdict,
    compare_distributions,
    distance_metrics,
    metric_bin_edges,
    observable_verdict,
    sample_observables,
    worst_verdict,
)
from caloforge.validation.html import render_page
from caloforge.validation.studies import impact_point_study, occupancy_study, resolution_quantities, resolution_study

MOMENTUM_SLICES_GEV: dict[str, tuple[float, float] | None] = {
    "all": None,
    "0.2-0.4": (0.2, 0.4),
    "0.5-0.7": (0.5, 0.7),
    "1.1-1.3": (1.1, 1.3),
    "1.8-2.0": (1.8, 2.0),
}
"""Momentum slices (GeV/c, of ``conditions[:, 0]``, edges included) of the BESIII validation; "all" is
the full range."""
MIN_SLICE_EVENTS = 30
"""Fewest events per sample for the metrics of a slice."""
DEFAULT_MAX_EVENTS = 50_000
"""Events read from each file by default."""


class ValidationInputError(ValueError):
    """The samples cannot be compared: missing, empty, of different types or layouts."""


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------


def _load(source: str | os.PathLike | Sample, role: str, max_events: int) -> tuple[Sample, str]:
    """A sample (at most ``max_events`` events) and a description of where it came from."""
    if isinstance(source, Sample):
        sample, origin = source, "(in memory)"
        if len(sample) > max_events:
            sample = sample.take(slice(0, max_events))
    else:
        path = Path(source)
        if not path.exists():
            raise ValidationInputError(f"{role} sample {path}: no such file")
        try:
            n = read_attrs(path)["n_events"]
            sample = read_sample(path, 0, min(n, max_events))
        except SampleFileError as err:
            raise ValidationInputError(f"{role} sample: {err}") from None
        origin = str(path)
    if len(sample) == 0:
        raise ValidationInputError(f"{role} sample {origin} has no events")
    if sample.maps_gev.ndim != 3 or sample.maps_gev.shape[1:] != (11, 11) or sample.conditions.shape[1:] != (6,):
        raise ValidationInputError(
            f"{role} sample {origin}: unexpected layout (maps {sample.maps_gev.shape[1:]}, "
            f"conditions {sample.conditions.shape[1:]}; expected (11, 11) and (6,))"
        )
    if len(np.unique(sample.pdg)) != 1:
        pdgs = sorted(set(sample.pdg.tolist()))
        raise ValidationInputError(f"{role} sample {origin} mixes particle types (PDG {pdgs})")
    return sample, origin


def _read_out(sample: Sample, readout: ReadoutParams, seed: int) -> Sample:
    """The sample with its maps read out (the energy in the whole barrel stays the deposit)."""
    maps = digitise_maps(sample.maps_gev, sample.theta_index, sample.phi_index, seed, readout)  # (N, 11, 11)
    return dataclasses.replace(sample, maps_gev=maps)


def _particle_name(pdg: int) -> str:
    p = PARTICLES_BY_PDG.get(int(pdg))
    return f"{p.name} (PDG {pdg})" if p else f"PDG {pdg}"


def _check_compatible(samples: Mapping[str, tuple[Sample, str]]) -> None:
    """Same schema and one particle type in all samples."""
    (ref_role, (ref, ref_origin)), *others = samples.items()
    ref_schema = (ref.attrs.get("schema"), ref.attrs.get("schema_version"))
    ref_pdg = int(ref.pdg[0])
    for role, (s, origin) in others:
        schema = (s.attrs.get("schema"), s.attrs.get("schema_version"))
        if schema != ref_schema:
            raise ValidationInputError(
                f"sample schemas differ: {ref_role} {ref_origin} is {ref_schema[0]} v{ref_schema[1]}, "
                f"{role} {origin} is {schema[0]} v{schema[1]}"
            )
        if int(s.pdg[0]) != ref_pdg:
            raise ValidationInputError(
                f"refusing to compare different particle types: {ref_role} is {_particle_name(ref_pdg)}, "
                f"{role} is {_particle_name(int(s.pdg[0]))}"
            )


def fixed_track_gev(sample: Sample) -> tuple[float, float, float] | None:
    """The fixed gun momentum (px, py, pz) in GeV/c of a fixed-track sample, None otherwise."""
    gun = sample.attrs.get("gun")
    track = gun.get("track_gev") if isinstance(gun, Mapping) else None
    return None if track is None else tuple(float(x) for x in track)  # type: ignore[return-value]

# ----------------------------------------------------------------------------------------------
# the sections of metrics.json
# ----------------------------------------------------------------------------------------------


def _slice_mask(sample: Sample, bounds: tuple[float, float] | None) -> np.ndarray:
    """(N,) events with the momentum within ``bounds`` (GeV/c, edges included); all for None."""
    p = sample.conditions[:, 0]
    if bounds is None:
        return np.ones(len(p), dtype=bool)
    return (p >= bounds[0]) & (p <= bounds[1])


def _n_bins(n: int) -> int:
    """Bins of the binned metrics for samples of ``n`` events: sqrt(n), from 5 to 50."""
    return int(np.clip(round(math.sqrt(n)), 5, 50))


def _feature_matrix(obs: Mapping[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """(n, len(OBSERVABLES)) observables of the events in ``mask``, the inputs of FPD and KPD."""
    return np.column_stack([np.asarray(obs[o.key], dtype=np.float64)[mask] for o in OBSERVABLES])


def _compare_slice(
    samples: Mapping[str, Sample], obs: Mapping[str, Mapping[str, np.ndarray]], bounds, *, n_boot: int, seed: int
) -> dict:
    """The section of one momentum slice: event counts, every observable compared (candidate and floor
    against the reference) with its verdict, FPD and KPD."""
    masks = {role: _slice_mask(s, bounds) for role, s in samples.items()}
    counts = {role: int(m.sum()) for role, m in masks.items()}
    result: dict = {"range_gev": list(bounds) if bounds else None, "n_events": counts, "observables": {}}
    enough = {role: n >= MIN_SLICE_EVENTS for role, n in counts.items()}
    if not (enough["reference"] and enough["candidate"]):
        result["note"] = f"fewer than {MIN_SLICE_EVENTS} events in the reference or the candidate"
        for o in OBSERVABLES:
            result["observables"][o.key] = {"verdict": NOT_AVAILABLE, "judged_against": "-"}
        return result
    use_floor = "floor" in samples and enough["floor"]
    if "floor" in samples and not use_floor:
        result["note"] = f"fewer than {MIN_SLICE_EVENTS} floor events: judged against the fixed thresholds"
    roles = ["candidate", "floor"] if use_floor else ["candidate"]
    for k, o in enumerate(OBSERVABLES):
        vals = {role: np.asarray(obs[role][o.key])[masks[role]] for role in samples}
        entry: dict = {}
        try:
            edges = metric_bin_edges([vals[r] for r in ("reference", *roles)], _n_bins(min(counts.values())))
            for role in roles:
                entry[role] = compare_distributions(vals["reference"], vals[role], edges=edges, n_boot=n_boot,
                                                    seed=seed + 1000 * k + (role == "floor"))
        except ValueError as err:
            entry = {"note": str(err)}
        entry["verdict"], entry["judged_against"] = observable_verdict(entry.get("candidate"), entry.get("floor"))
        result["observables"][o.key] = entry
    ref_x = _feature_matrix(obs["reference"], masks["reference"])
    result["distances"] = {
        role: distance_metrics(ref_x, _feature_matrix(obs[role], masks[role]), seed) for role in roles
    }
    return result


def _classifier_section(
    samples: Mapping[str, Sample], obs: Mapping[str, Mapping[str, np.ndarray]], *, seed: int, n_boot: int
) -> tuple[dict, dict]:
    """(JSON section, ROC curves for the plot) of the low- and high-level classifier tests."""
    from caloforge.validation.classifier import classifier_test, high_level_inputs, low_level_inputs

    keys = [o.key for o in OBSERVABLES]
    out: dict = {}
    curves: dict = {}
    for level in ("low_level", "high_level"):
        if level == "low_level":
            inputs = {r: low_level_inputs(s.maps_gev, s.conditions) for r, s in samples.items()}
        else:
            inputs = {r: high_level_inputs(obs[r], s.conditions, names=keys) for r, s in samples.items()}
        entry: dict = {}
        for role in [r for r in ("candidate", "floor") if r in samples]:
            try:
                res = classifier_test(inputs["reference"], inputs[role], seed=seed, n_boot=n_boot)
            except ValueError as err:
                entry[role] = {"note": str(err)}
                continue
            entry[role] = res.to_dict()
            label = CANDIDATE_LABEL if role == "candidate" else FLOOR_LABEL
            curves.setdefault(level.replace("_", "-"), {})[label] = (res.roc_fpr, res.roc_tpr, res.auc)
        entry["verdict"], entry["judged_against"] = auc_verdict(entry.get("candidate", {}), entry.get("floor"))
        out[level] = entry
    return out, curves


def _resolution_section(
    samples: Mapping[str, Sample], obs: Mapping[str, Mapping[str, np.ndarray]], *, n_boot: int, seed: int
) -> tuple[dict, dict[str, dict[str, np.ndarray]] | None]:
    """The resolution study when reference and candidate repeat the same fixed track, else why not; and the
    per-event quantities of the study for every sample (None without a study)."""
    tracks = {role: fixed_track_gev(s) for role, s in samples.items()}
    ref_track, cand_track = tracks["reference"], tracks["candidate"]
    if ref_track is None or cand_track is None:
        return {"skipped": "not both samples repeat a fixed track (attrs['gun']['track_gev'])"}, None
    if not np.allclose(ref_track, cand_track, rtol=0, atol=1e-9):
        return {"skipped": f"different fixed tracks: {ref_track} and {cand_track} GeV/c"}, None
    floor_track = tracks.get("floor")
    same_floor = floor_track is not None and np.allclose(floor_track, ref_track, rtol=0, atol=1e-9)
    values = {role: resolution_quantities(s, obs[role]) for role, s in samples.items()}
    study = resolution_study(
        samples["reference"], samples["candidate"], floor=samples["floor"] if same_floor else None,
        n_boot=n_boot, seed=seed, quantities=values,
    )
    return {"track_gev": list(ref_track), "quantities": study}, values


def _jsonable(obj):
    """Plain JSON types; NaN and infinities become null."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def validate(
    reference: str | os.PathLike | Sample,
    candidate: str | os.PathLike | Sample,
    out_dir: str | os.PathLike,
    *,
    floor: str | os.PathLike | Sample | None = None,
    max_events: int = DEFAULT_MAX_EVENTS,
    seed: int = 0,
    n_boot: int = 100,
    classifier: bool = True,
    plots: bool = True,
    overwrite: bool = False,
    readout: ReadoutParams | None = None,
) -> dict:
    """Compare a candidate sample with a Geant4 reference and write ``report.html`` and ``metrics.json``.

    See the module for the metrics, :mod:`caloforge.validation.comparisons` for the verdict rules.

    Args:
        reference: the Geant4 sample file (or a :class:`~caloforge.data.io.Sample`).
        candidate: the sample to validate (same particle type).
        out_dir: folder for ``report.html`` and ``metrics.json`` (made if missing).
        floor: a second, independent Geant4 sample of the same kind; its comparison with the
            reference is the floor that the candidate's metrics are judged against.
        max_events: read at most this many events (the first ones) of each file.
        seed: seed of the bootstrap, the classifiers and FPD/KPD.
        n_boot: bootstrap resamples of every error.
        classifier: run the classifier tests (the slowest part).
        plots: draw the figures (otherwise the report holds the tables only).
        overwrite: replace an existing ``report.html`` / ``metrics.json`` in ``out_dir``.
        readout: compare after this read-out (:func:`caloforge.detector.readout.digitise_maps`, applied alike to
            the reference, the floor and the candidate, each with its own noise seed); None: the deposits.

    Returns:
        The content of ``metrics.json`` as a dict (``summary`` holds the verdicts).

    Raises:
        ValidationInputError: missing or unreadable files, empty samples, different particle types or
            sample layouts, bad options, outputs that exist, an output folder that cannot be written.
    """
    if isinstance(max_events, bool) or not isinstance(max_events, (int, np.integer)) or max_events < 1:
        raise ValidationInputError(f"max_events must be a positive integer, got {max_events!r}")
    if n_boot < 2:
        raise ValidationInputError(f"n_boot must be at least 2, got {n_boot}")
    out = Path(out_dir)
    report_path, metrics_path = out / "report.html", out / "metrics.json"
    if out.exists() and not out.is_dir():
        raise ValidationInputError(f"{out} exists and is not a folder")
    if not overwrite:
        for p in (report_path, metrics_path):
            if p.exists():
                raise ValidationInputError(
                    f"{p} exists: choose another output folder, or overwrite it (caloforge validate --force)"
                )

    loaded = {"reference": _load(reference, "reference", int(max_events)),
              "candidate": _load(candidate, "candidate", int(max_events))}
    if floor is not None:
        loaded["floor"] = _load(floor, "floor", int(max_events))
    _check_compatible(loaded)
    try:
        out.mkdir(parents=True, exist_ok=True)  # before the work, which may take minutes
    except OSError as err:
        raise ValidationInputError(f"{out}: cannot make the output folder ({err.strerror})") from None
    samples = {role: s for role, (s, _) in loaded.items()}
    if readout is not None:
        samples = {role: _read_out(s, readout, seed + k) for k, (role, s) in enumerate(samples.items())}
    obs = {role: sample_observables(s) for role, s in samples.items()}

    slices = {
        name: _compare_slice(samples, obs, bounds, n_boot=n_boot, seed=seed)
        for name, bounds in MOMENTUM_SLICES_GEV.items()
    }
    clf, curves = _classifier_section(samples, obs, seed=seed, n_boot=n_boot) if classifier else ({}, {})

    resolution, resolution_values = _resolution_section(samples, obs, n_boot=n_boot, seed=seed)
    impact = impact_point_study(samples, obs)
    occupancy = occupancy_study(samples)

    verdicts = {o.key: slices["all"]["observables"][o.key]["verdict"] for o in OBSERVABLES}
    classifier_verdicts = {level: entry["verdict"] for level, entry in clf.items()}
    resolution_verdicts = {q: e["verdict"] for q, e in resolution.get("quantities", {}).items()}
    impact_verdicts = {name: e["verdict"] for name, e in impact.items()}
    everything = [*verdicts.values(), *classifier_verdicts.values(), *resolution_verdicts.values(),
                  *impact_verdicts.values()]
    particle = _particle_name(int(samples["reference"].pdg[0]))
    metrics = {
        "caloforge_version": _version(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "particle": particle,
        "inputs": {
            role: {
                "source": origin,
                "n_events": len(s),
                "gun": s.attrs.get("gun"),
                "geant4_version": s.attrs.get("geant4_version"),
                "caloforge_version": s.attrs.get("caloforge_version"),
            }
            for role, (s, origin) in loaded.items()
        },
        "settings": {
            "seed": seed, "max_events": int(max_events), "n_boot": n_boot, "min_slice_events": MIN_SLICE_EVENTS,
            "judged_against": "floor" if floor is not None else "thresholds",
            "readout": None if readout is None else dataclasses.asdict(readout),
            "thresholds": {"excess_separation_power": [S_COMPATIBLE, S_INCOMPATIBLE],
                           "auc": [AUC_COMPATIBLE, AUC_INCOMPATIBLE], "sigmas": THRESHOLD_SIGMAS},
            "floor_sigmas": [FLOOR_SIGMA_COMPATIBLE, FLOOR_SIGMA_INCOMPATIBLE],
        },
        "slices": slices,
        "classifier": clf,
        "resolution": resolution,
        "impact_point": impact,
        "occupancy": occupancy,
        "summary": {
            "overall": worst_verdict(everything),
            "counts": {v: everything.count(v) for v in (*VERDICTS, NOT_AVAILABLE)},
            "observables": verdicts,
            "classifier": classifier_verdicts,
            "resolution": resolution_verdicts,
            "impact_point": impact_verdicts,
        },
        "outputs": {"report": str(report_path), "metrics": str(metrics_path)},
    }
    metrics = _jsonable(metrics)
    figures: dict = {}
    if plots:
        from caloforge.validation.figures import report_figures

        figures = report_figures(samples, obs, slices["all"], curves, resolution, impact, occupancy,
                                 resolution_values)
    page = render_page(metrics, figures)
    write_text_atomic(metrics_path, json.dumps(metrics, indent=1))
    write_text_atomic(report_path, page)
    return metrics


def _version() -> str:
    import caloforge

    return caloforge.__version__

