"""The figures of the validation report: which ones, with what data and captions.

:func:`report_figures` draws them with :mod:`caloforge.validation.plots` (matplotlib, hist, mplhep) and
returns them as base64 PNG text for :func:`caloforge.validation.html.render_page`. Imported only when a
report is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from caloforge.data.io import Sample
from caloforge.validation import plots
from caloforge.validation.comparisons import OBSERVABLES, ROLE_LABELS
from caloforge.validation.html import fmt, metric_caption
from caloforge.validation.observables import energy_profile_phi, energy_profile_theta, sparsity
from caloforge.validation.studies import IMPACT_AXES, IMPACT_QUANTITIES, RESOLUTION_QUANTITIES, resolution_quantities

SPARSITY_THRESHOLDS_GEV = np.geomspace(1e-4, 0.5, 28)
"""Cell thresholds of the sparsity-versus-threshold curve, GeV."""


def _plot_edges(values: list[np.ndarray], n: int) -> np.ndarray:
    pooled = np.concatenate([v[np.isfinite(v)] for v in values])
    if pooled.size == 0:
        return np.array([0.0, 1.0])
    lo, hi = np.quantile(pooled, [0.002, 0.998])
    if hi <= lo:
        lo, hi = pooled.min() - 0.5, pooled.max() + 0.5
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, int(np.clip(1.5 * math.sqrt(n), 10, 60)) + 1)


def _event_pairs(samples: Mapping[str, Sample]) -> tuple[list[dict[str, np.ndarray]], str]:
    """Three reference events (low, middle, high momentum) and the candidate events of the same
    conditions: the same index when the conditions agree, else the one of the nearest momentum.

    Returns:
        (rows of {panel title: map}, a note on how the candidate events were matched).
    """
    ref, cand = samples["reference"], samples["candidate"]
    nonempty = np.flatnonzero(ref.maps_gev.reshape(len(ref), -1).sum(axis=1) > 0)
    if nonempty.size == 0:
        return [], ""
    p = ref.conditions[nonempty, 0]
    picks = nonempty[np.argsort(p)[np.unique((np.array([0.2, 0.5, 0.9]) * (len(p) - 1)).astype(int))]]
    rows, hows = [], set()
    for i in picks:
        if i < len(cand) and np.allclose(cand.conditions[i], ref.conditions[i], rtol=1e-5, atol=1e-6):
            j = int(i)
            hows.add("the candidate events have the same index and conditions")
        else:
            j = int(np.nanargmin(np.abs(cand.conditions[:, 0] - ref.conditions[i, 0])))
            hows.add("the candidate events are those of the nearest momentum (no event with the same conditions)")
        rows.append({
            f"reference #{i}, p = {ref.conditions[i, 0]:.2f} GeV/c": ref.maps_gev[i],
            f"candidate #{j}, p = {cand.conditions[j, 0]:.2f} GeV/c": cand.maps_gev[j],
        })
    return rows, "; ".join(sorted(hows))


def _mean_and_error(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over events (axis 0) and its standard error."""
    err = x.std(axis=0, ddof=1) / math.sqrt(len(x)) if len(x) > 1 else np.zeros(x.shape[1:])
    return x.mean(axis=0), err


def report_figures(
    samples: Mapping[str, Sample],
    obs: Mapping[str, Mapping[str, np.ndarray]],
    full_slice: Mapping,
    curves: Mapping,
    resolution: Mapping,
    impact: Mapping,
    occupancy: Mapping,
    resolution_values: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> dict[str, list[tuple[str, str, str]]]:
    """The report's figures, per section of the page.

    Args:
        samples: role (``reference``, ``candidate``, optionally ``floor``) -> sample.
        obs: role -> :func:`~caloforge.validation.comparisons.sample_observables`.
        full_slice: the full-range slice of ``metrics.json`` (the captions quote its metrics).
        curves: level -> sample label -> (false-positive rates, true-positive rates, AUC) of the classifiers.
        resolution, impact, occupancy: the sections of ``metrics.json`` (before the JSON conversion for
            ``occupancy``: its maps are arrays).
        resolution_values: role -> :func:`~caloforge.validation.studies.resolution_quantities` of every
            sample when computed already (used when ``resolution`` holds a study; computed otherwise).

    Returns:
        section -> list of (title, caption, base64 PNG).
    """
    labels = {role: ROLE_LABELS[role] for role in samples}
    figs: dict[str, list[tuple[str, str, str]]] = {}

    def add(section: str, title: str, caption: str, fig) -> None:
        figs.setdefault(section, []).append((title, caption, plots.figure_to_base64_png(fig, dpi=72)))

    n_ref = len(samples["reference"])
    for o in OBSERVABLES:
        vals = {labels[r]: np.asarray(obs[r][o.key], dtype=np.float64) for r in samples}
        edges = _plot_edges(list(vals.values()), n_ref)
        entry = full_slice["observables"].get(o.key, {})
        fig = plots.histogram_comparison(vals, edges=edges, xlabel=o.label)
        add("observables", o.label, metric_caption(entry), fig)

    for name, func, axis in (("phi", energy_profile_phi, "phi offset [crystals]"),
                             ("theta", energy_profile_theta, "theta offset [crystals]")):
        prof = {}
        for r, s in samples.items():
            e = func(s.maps_gev)  # (N, 11)
            prof[labels[r]] = _mean_and_error(e)
        add("profiles", f"energy profile along {name}", "mean over events; the reference's statistical error as "
            "grey band in the ratio", plots.profile_comparison(prof, xlabel=axis))

    means = {r: s.maps_gev.mean(axis=0) for r, s in samples.items() if r != "floor"}
    add("maps", "mean 11x11 maps", "rows: theta offset, columns: phi offset from the centre crystal; "
        "right: relative difference of the mean maps", plots.mean_map_comparison(means))
    pairs, how = _event_pairs(samples)
    if pairs:
        add("maps", "event displays", f"single events at low, middle and high momentum; {how}",
            plots.event_displays(pairs))

    spectra = {labels[r]: s.maps_gev[s.maps_gev > 0].ravel() for r, s in samples.items()}
    positive = np.concatenate(list(spectra.values()))
    if positive.size:
        lo = max(float(np.quantile(positive, 0.001)), 1e-6)
        hi = max(float(positive.max()), lo * 10)
        add("cells", "cell-energy spectrum", "energies of all cells above 0, log bins",
            plots.histogram_comparison(spectra, edges=np.geomspace(lo, hi, 41), xlabel="cell energy [GeV]",
                                       logx=True, logy=True))
    curves_sp = {}
    for r, s in samples.items():
        sp = sparsity(s.maps_gev, SPARSITY_THRESHOLDS_GEV)  # (N, T)
        curves_sp[labels[r]] = _mean_and_error(sp)
    add("cells", "sparsity versus threshold", "mean fraction of the 121 cells above the threshold",
        plots.curve_comparison(SPARSITY_THRESHOLDS_GEV, curves_sp, xlabel="cell threshold [GeV]",
                               ylabel="mean sparsity"))
    for e in occupancy.values():
        maps = {labels[r]: e[r] for r in samples if r != "floor"}
        add("cells", f"crystal occupancy above {e['threshold_gev'] * 1e3:g} MeV",
            f"fraction of events with a deposit in each crystal; right: the candidate's pull (binomial errors), "
            f"chi2/ndf {fmt(e['candidate_chi2']['chi2'], 1)}/{e['candidate_chi2']['ndf']}"
            + (f" (floor {fmt(e['floor_chi2']['chi2'], 1)}/{e['floor_chi2']['ndf']})" if "floor_chi2" in e else ""),
            plots.occupancy_comparison(maps, e["candidate_pulls"]))
    for name, e in impact.items():
        edges = np.asarray(e["edges"])
        centres = 0.5 * (edges[:-1] + edges[1:])
        prof = {labels[r]: (np.asarray(e[r]["mean"]), np.asarray(e[r]["error"])) for r in samples}
        add("impact", f"{IMPACT_QUANTITIES[e['quantity']]} versus {IMPACT_AXES[e['axis']]}",
            f"mean per bin of equal reference population, standard errors as bands; candidate chi2/ndf "
            f"{fmt(e['candidate_chi2']['chi2'], 1)}/{e['candidate_chi2']['ndf']}",
            plots.curve_comparison(centres, prof, xlabel=IMPACT_AXES[e["axis"]],
                                   ylabel=IMPACT_QUANTITIES[e["quantity"]], logx=False))
    if curves:
        add("classifier", "ROC curves", "classifier tests on the held-out test split", plots.roc_curves(curves))
    if "quantities" in resolution:
        res_vals = resolution_values or {r: resolution_quantities(s, obs[r]) for r, s in samples.items()}
        q = {}
        for key, label in RESOLUTION_QUANTITIES.items():
            vals = {labels[r]: np.asarray(res_vals[r][key], dtype=np.float64) for r in samples}
            q[label] = (vals, _plot_edges(list(vals.values()), n_ref))
        add("resolution", "fixed-track distributions", "repeated simulation of one track",
            plots.resolution_histograms(q))
    return figs


