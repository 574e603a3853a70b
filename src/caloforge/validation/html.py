"""The validation report's page (``report.html``): one self-contained file, PNG figures embedded as base64,
inline CSS, no scripts and nothing loaded from the network.

:func:`render_page` turns the content of ``metrics.json`` (:func:`caloforge.validation.report.validate`)
and the figures (:mod:`caloforge.validation.figures`) into the page; the helpers format its tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape as _esc

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
)
from caloforge.validation.studies import IMPACT_AXES, IMPACT_BINS, IMPACT_QUANTITIES, RESOLUTION_QUANTITIES

_CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
td { white-space: nowrap; }
th { background: #f0f0f0; } td.name, th.name { text-align: left; }
.compatible { background: #d9f2d9; } .tension { background: #fff1c2; } .incompatible { background: #f8d0d0; }
.na { background: #eee; color: #777; }
.verdict { font-weight: bold; }
.overall { font-size: 1.15em; padding: 0.5em 0.8em; display: inline-block; border: 1px solid #aaa; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; padding: 0.4em; background: #fff; }
figcaption { font-size: 0.8em; max-width: 420px; color: #444; }
.note { color: #555; font-size: 0.9em; } code { font-size: 0.95em; }
"""
_FIGURE_SECTIONS = {
    "observables": "Observables (full range, ratio to the reference)",
    "profiles": "Energy profiles",
    "maps": "Mean maps and event displays",
    "cells": "Cell energies and sparsity",
    "classifier": "Classifier ROC curves",
    "resolution": "Fixed-track distributions",
    "impact": "Dependence on the impact point",
}

def fmt(x, digits: int = 3) -> str:
    """A number with ``digits`` significant digits ("-" for None)."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return _esc(str(x))


def _pm(d: Mapping | None, key: str) -> str:
    """``value +- error`` of ``d[key]`` and ``d[key + "_error"]``."""
    if not d or key not in d:
        return "-"
    return f"{fmt(d.get(key))} &plusmn; {fmt(d.get(key + '_error'), 2)}"


def _verdict_cell(v: str, title: str = "") -> str:
    cls = "na" if v == NOT_AVAILABLE else v
    t = f' title="{_esc(title)}"' if title else ""
    return f'<td class="verdict {cls}"{t}>{_esc(v)}</td>'


def _table(header: list[str], rows: list[str], name_columns: int = 1) -> str:
    """A table; ``rows`` are the inner HTML of each ``<tr>``; the first columns are left-aligned names."""
    head = "".join(f"<th{' class=name' if k < name_columns else ''}>{h}</th>" for k, h in enumerate(header))
    return "<table><tr>" + head + "</tr>" + "".join(f"<tr>{r}</tr>" for r in rows) + "</table>"


def metric_caption(entry: Mapping) -> str:
    """One line on the comparison of an observable (full range): S, excess S, W1, chi2/ndf, the verdict."""
    cand = entry.get("candidate")
    if not cand:
        return f"verdict: {entry.get('verdict', NOT_AVAILABLE)}"
    text = (
        f"S = {cand['separation_power']:.4f} ± {cand['separation_power_error']:.4f} "
        f"(excess {cand['excess_separation_power']:.4f}), W1 = {cand['wasserstein_1']:.4g}, "
        f"chi2/ndf = {cand['chi2_ndf']:.2f}"
    )
    flr = entry.get("floor")
    if flr:
        text += f"; floor excess S = {flr['excess_separation_power']:.4f} ± {flr['separation_power_error']:.4f}"
    return f"{text}; verdict: {entry['verdict']} (against {entry['judged_against']})"


def _html_inputs(metrics: Mapping) -> str:
    rows = [
        f"<td class=name>{_esc(role)}</td><td class=name><code>{_esc(str(info['source']))}</code></td>"
        f"<td>{info['n_events']}</td><td class=name><code>{_esc(json.dumps(info.get('gun')))}</code></td>"
        f"<td class=name>{_esc(str(info.get('geant4_version') or '-'))}</td>"
        for role, info in metrics["inputs"].items()
    ]
    return "<h2>Samples</h2>" + _table(["role", "source", "events", "gun", "Geant4"], rows, name_columns=2)


def _html_verdict(metrics: Mapping, has_floor: bool) -> str:
    summary = metrics["summary"]
    counts = ", ".join(f"{n} {_esc(v)}" for v, n in summary["counts"].items() if n)
    overall = summary["overall"]
    if has_floor:
        rule = (
            "every candidate metric is judged against the Geant4-versus-Geant4 floor: compatible within "
            f"{FLOOR_SIGMA_COMPATIBLE:g} sigma of it, tension up to {FLOOR_SIGMA_INCOMPATIBLE:g} sigma, "
            "incompatible beyond"
        )
    else:
        rule = (
            f"fixed thresholds (no floor sample given): excess separation power below {S_COMPATIBLE} "
            f"compatible, above {S_INCOMPATIBLE} incompatible; AUC below {AUC_COMPATIBLE} compatible, above "
            f"{AUC_INCOMPATIBLE} incompatible; each within {THRESHOLD_SIGMAS:g} bootstrap standard deviations"
        )
    cls = "na" if overall == NOT_AVAILABLE else overall
    return (
        "<h2>Verdict</h2>"
        f'<p><span class="overall {cls}">overall: <b>{_esc(overall)}</b></span> ({counts})</p>'
        f'<p class="note">Rule: {_esc(rule)}. Observables are judged on the excess separation power '
        "S - E0[S] (E0[S]: the value S takes on average for two samples of one distribution of these "
        "sizes); the resolution study on pulls of the widths, the impact-point profiles on the significance of "
        "their chi2 (3 and 5 sigma).</p>"
    )


def _html_observables(metrics: Mapping, has_floor: bool) -> str:
    full = metrics["slices"]["all"]
    header = ["observable", "S", "excess S", "W1", "chi2/ndf"]
    if has_floor:
        header += ["floor S", "floor excess S", "floor W1", "floor chi2/ndf"]
    rows = []
    for o in OBSERVABLES:
        e = full["observables"].get(o.key, {})
        row = f"<td class=name>{_esc(o.label)}</td>"
        for d in [e.get("candidate"), e.get("floor")][: 2 if has_floor else 1]:
            row += (
                f"<td>{_pm(d, 'separation_power')}</td><td>{fmt(d.get('excess_separation_power')) if d else '-'}</td>"
                f"<td>{_pm(d, 'wasserstein_1')}</td><td>{_pm(d, 'chi2_ndf')}</td>"
            )
        rows.append(row + _verdict_cell(e.get("verdict", NOT_AVAILABLE), e.get("note", "")))
    return "<h2>Observables, full momentum range</h2>" + _table(header + ["verdict"], rows)


def _html_multivariate(metrics: Mapping, has_floor: bool) -> str:
    dist = metrics["slices"]["all"].get("distances", {})
    roles = ["candidate", "floor"] if has_floor else ["candidate"]
    reported = '<td class="na">reported only</td>'
    rows = []
    for key, label in (("fpd", "FPD (Gaussianised observables)"), ("kpd", "KPD (Gaussianised observables)")):
        cells = "".join(f"<td>{_pm(dist.get(r), key)}</td>" for r in roles)
        rows.append(f"<td class=name>{label}</td>{cells}{reported}")
    for level, entry in metrics["classifier"].items():
        name = level.replace("_", "-")
        for key, label in (("auc", "AUC"), ("jsd_bits", "JSD [bits]")):
            cells = ""
            for r in roles:
                d = entry.get(r) or {}
                value = (_pm(d, key) if key == "auc" else fmt(d.get(key))) if key in d else _esc(d.get("note", "-"))
                cells += f"<td>{value}</td>"
            verdict = _verdict_cell(entry["verdict"]) if key == "auc" else reported
            rows.append(f"<td class=name>classifier, {_esc(name)} inputs: {label}</td>{cells}{verdict}")
    labels = [CANDIDATE_LABEL, FLOOR_LABEL][: len(roles)]
    out = "<h2>Multivariate metrics and classifier tests</h2>" + _table(["metric", *labels, "verdict"], rows)
    if not metrics["classifier"]:
        out += '<p class="note">Classifier tests not run.</p>'
    return out + (
        '<p class="note">FPD and KPD use all observables after a quantile transform to standard normals fitted '
        "on the reference (so that single outliers cannot dominate them). They are biased upwards for small "
        "samples (and their errors are 0 when every batch holds all events): compare the candidate with the "
        "floor, not with 0.</p>"
    )


def _html_slices(metrics: Mapping) -> str:
    header = ["observable"]
    for name, sl in metrics["slices"].items():
        counts = "/".join(str(v) for v in sl["n_events"].values())
        header.append(f"{_esc(name)} GeV/c<br><span class=note>{counts} events</span>")
    rows = []
    for o in OBSERVABLES:
        row = f"<td class=name>{_esc(o.label)}</td>"
        for sl in metrics["slices"].values():
            e = sl["observables"].get(o.key, {})
            c = e.get("candidate")
            tip = (
                f"excess S = {fmt(c.get('excess_separation_power'))} +- {fmt(c.get('separation_power_error'), 2)}"
                if c
                else sl.get("note", e.get("note", ""))
            )
            row += _verdict_cell(e.get("verdict", NOT_AVAILABLE), tip)
        rows.append(row)
    row = "<td class=name>FPD / KPD (candidate)</td>"
    for sl in metrics["slices"].values():
        d = sl.get("distances", {}).get("candidate")
        row += f"<td>{fmt(d.get('fpd'))} / {fmt(d.get('kpd'))}</td>" if d else "<td>-</td>"
    rows.append(row)
    return (
        "<h2>Verdicts per momentum slice</h2>"
        + _table(header, rows)
        + f"<p class=note>Event counts: {' / '.join(metrics['inputs'])}. Hover a cell for its excess separation "
        "power.</p>"
    )


def _html_resolution(metrics: Mapping) -> str:
    out = "<h2>Resolution study (fixed track)</h2>"
    res = metrics["resolution"]
    if "skipped" in res:
        return out + f'<p class="note">Not done: {_esc(res["skipped"])}.</p>'
    out += f"<p>track p = ({', '.join(f'{x:g}' for x in res['track_gev'])}) GeV/c</p>"
    header = ["quantity", "sample", "mean", "std", "sigma68", "std ratio", "sigma68 ratio",
              "pulls (mean, std, sigma68)", "verdict"]
    rows = []
    for q, e in res["quantities"].items():
        for k, role in enumerate(r for r in ("reference", "candidate", "floor") if r in e):
            d = e[role]
            row = (
                f"<td class=name>{_esc(RESOLUTION_QUANTITIES[q]) if k == 0 else ''}</td>"
                f"<td class=name>{_esc(role)}</td><td>{_pm(d, 'mean')}</td><td>{_pm(d, 'std')}</td>"
                f"<td>{_pm(d, 'sigma68')}</td>"
            )
            if role == "candidate":
                pulls = ", ".join(fmt(e.get(f"{w}_pull"), 2) for w in ("mean", "std", "sigma68"))
                row += f"<td>{_pm(e, 'std_ratio')}</td><td>{_pm(e, 'sigma68_ratio')}</td><td>{pulls}</td>"
                row += _verdict_cell(e["verdict"])
            elif role == "floor":
                pulls = ", ".join(["-", fmt(e.get("floor_std_pull"), 2), fmt(e.get("floor_sigma68_pull"), 2)])
                row += f"<td></td><td></td><td>{pulls}</td><td></td>"
            else:
                row += "<td></td>" * 4
            rows.append(row)
    return out + _table(header, rows, name_columns=2)


def _html_impact(metrics: Mapping) -> str:
    has_floor = "floor" in metrics["inputs"]
    header = ["profile", "candidate chi2/ndf", "candidate z"] + (["floor chi2/ndf", "floor z"] if has_floor else [])
    rows = []
    for name, e in metrics["impact_point"].items():
        label = f"{IMPACT_QUANTITIES[e['quantity']]} vs {IMPACT_AXES[e['axis']]}"
        row = f"<td class=name>{_esc(label)}</td>"
        for key in ("candidate_chi2", "floor_chi2") if has_floor else ("candidate_chi2",):
            c = e.get(key, {})
            row += f"<td>{fmt(c.get('chi2'), 1)}/{c.get('ndf', '')}</td><td>{fmt(c.get('z'), 2)}</td>"
        rows.append(row + _verdict_cell(e["verdict"]))
    note = (
        f'<p class="note">Profiles in {IMPACT_BINS} bins of equal reference population; z is the one-sided '
        "Gaussian significance of the chi2 p-value"
        + (", less the floor's z, judged at 3 and 5 sigma" if has_floor else ", judged at 3 and 5 sigma")
        + ". The figures are at the end of the page.</p>"
    )
    return "<h2>Dependence on the impact point</h2>" + _table(header + ["verdict"], rows) + note


def _html_occupancy(metrics: Mapping) -> str:
    entries = metrics.get("occupancy", {})
    if not entries:
        return ""
    has_floor = "floor" in metrics["inputs"]
    header = ["cells above", "candidate chi2/ndf", "candidate z"] + (["floor chi2/ndf", "floor z"] if has_floor else [])
    rows = []
    for e in entries.values():
        row = f"<td class=name>{fmt(e['threshold_gev'] * 1e3)} MeV</td>"
        for key in ("candidate_chi2", "floor_chi2") if has_floor else ("candidate_chi2",):
            c = e.get(key, {})
            row += f"<td>{fmt(c.get('chi2'), 1)}/{c.get('ndf', '')}</td><td>{fmt(c.get('z'), 2)}</td>"
        rows.append(row)
    note = ('<p class="note">Crystal by crystal, the fraction of events with a deposit, against the reference\'s '
            "(binomial errors): a diagnostic without a verdict. The maps are with the cell figures.</p>")
    return "<h2>Crystal occupancy</h2>" + _table(header, rows) + note


def _html_figures(figures: Mapping[str, list]) -> str:
    if not figures:
        return '<p class="note">Figures not drawn.</p>'
    out = []
    for section, items in figures.items():
        out.append(f"<h2>{_esc(_FIGURE_SECTIONS.get(section, section))}</h2><div class=figs>")
        for title, caption, png in items:
            out.append(
                f'<figure><img src="data:image/png;base64,{png}" alt="{_esc(title)}">'
                f"<figcaption><b>{_esc(title)}</b><br>{_esc(caption)}</figcaption></figure>"
            )
        out.append("</div>")
    return "\n".join(out)


def render_page(metrics: Mapping, figures: Mapping[str, list]) -> str:
    """The self-contained report page.

    Args:
        metrics: the content of ``metrics.json``.
        figures: section -> list of (title, caption, base64 PNG), from
            :func:`caloforge.validation.figures.report_figures` (empty: the page says so).
    """
    has_floor = "floor" in metrics["inputs"]
    particle = _esc(metrics["particle"])
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,">'  # no favicon request
        f"<title>caloforge validation: {particle}</title><style>{_CSS}</style></head><body>"
        f"<h1>caloforge validation report: {particle}</h1>"
        f'<p class="note">caloforge {_esc(str(metrics["caloforge_version"]))}, {_esc(metrics["created_utc"])}</p>'
    )
    sections = [
        head,
        _html_inputs(metrics),
        _html_verdict(metrics, has_floor),
        _html_observables(metrics, has_floor),
        _html_multivariate(metrics, has_floor),
        _html_slices(metrics),
        _html_resolution(metrics),
        _html_impact(metrics),
        _html_occupancy(metrics),
        _html_figures(figures),
        "</body></html>\n",
    ]
    return "\n".join(sections)
