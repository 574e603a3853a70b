"""Validation plots in HEP style (hist + mplhep), as matplotlib figures.

Plotting only: the functions take numbers computed elsewhere (:mod:`caloforge.validation.report`)
and return :class:`matplotlib.figure.Figure` objects made without pyplot, so they work without a
display and never touch global figure state; :func:`figure_to_base64_png` turns one into the PNG
text that the HTML report embeds. Models and the engine never import this module.

Conventions: the first entry of every ``samples`` mapping is the reference (Geant4): drawn in black
with error bars and used as the denominator of the ratio panels; the others are drawn as coloured
lines (the candidate, then the Geant4 floor when there is one). Histograms are normalised to unit
area; entries outside the bin range are counted in the first or last bin.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

COLOURS: tuple[str, ...] = ("black", "#d62728", "#1f77b4", "#2ca02c")
"""Line colours in order: reference, candidate, floor, further samples."""
LINESTYLES: tuple[str, ...] = ("-", "-", "--", ":")
RATIO_LIMITS: tuple[float, float] = (0.5, 1.5)
"""y range of the ratio panels (points outside are drawn at the edge)."""

_STYLE_OVERRIDES = {
    "font.size": 11,
    "axes.labelsize": 11,
    "axes.titlesize": 11,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "xtick.major.size": 6,
    "ytick.major.size": 6,
    "xtick.minor.size": 3,
    "ytick.minor.size": 3,
    "mathtext.fontset": "dejavusans",  # tick labels such as 10^-2 (the style's custom set lacks a font here)
    "xtick.minor.visible": False,  # minor ticks cost more drawing time than they add here
    "ytick.minor.visible": False,
}


@contextmanager
def hep_style() -> Iterator[None]:
    """Matplotlib settings of mplhep's ROOT style (experiment-neutral), with font sizes for small figures."""
    import matplotlib
    import mplhep

    with matplotlib.rc_context({**mplhep.style.ROOT, **_STYLE_OVERRIDES}):
        yield


def figure_to_base64_png(fig, *, dpi: int = 80) -> str:
    """Render a figure as PNG and return it base64-encoded (ASCII), for ``<img src="data:...">``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width_in: float, height_in: float, *, right_in: float = 0.2, top_in: float = 0.35):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    # fixed margins in inches (bbox_inches="tight" would draw every figure twice)
    fig.subplots_adjust(
        left=0.75 / width_in, right=1 - right_in / width_in, bottom=0.6 / height_in, top=1 - top_in / height_in
    )
    return fig


def _normalised_histogram(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density (unit area) and its Poisson error on ``edges``; out-of-range entries go to the edge bins."""
    import hist

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    h = hist.Hist(hist.axis.Variable(edges, underflow=False, overflow=False))
    lo, hi = edges[0], edges[-1]
    inside_hi = np.nextafter(hi, lo)
    h.fill(np.clip(v, lo, inside_hi))
    counts = h.values()
    total = max(counts.sum(), 1.0)
    widths = np.diff(edges)
    return counts / total / widths, np.sqrt(counts) / total / widths


def _ratio(num: np.ndarray, num_err: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / den, np.nan)
        e = np.where(den > 0, num_err / den, np.nan)
    return r, e


def _ratio_panel(rax, centres: np.ndarray, ref: np.ndarray, ref_err: np.ndarray, others: list, labels: list) -> None:
    """Ratio to the reference: grey band = reference's relative error, points = the others."""
    with np.errstate(invalid="ignore", divide="ignore"):
        band = np.where(ref > 0, ref_err / ref, np.nan)
    rax.fill_between(centres, 1 - band, 1 + band, step="mid", color="0.8", lw=0)
    rax.axhline(1.0, color="black", lw=0.8)
    for k, ((val, err), _label) in enumerate(zip(others, labels), start=1):
        r, e = _ratio(val, err, ref)
        lo, hi = RATIO_LIMITS
        rax.errorbar(
            centres, np.clip(r, lo, hi), yerr=e, fmt="o", ms=2.5, lw=0.8, color=COLOURS[k % len(COLOURS)]
        )
    rax.set_ylim(*RATIO_LIMITS)
    rax.set_ylabel("ratio")


def _finish_x_axis(ax, rax, xlabel: str, xlim: tuple[float, float], logx: bool) -> None:
    """The shared x axis of a main panel ``ax`` and its ratio panel ``rax`` below it."""
    if logx:
        rax.set_xscale("log")
    rax.set_xlim(*xlim)
    rax.set_xlabel(xlabel)
    ax.label_outer()


def histogram_comparison(
    samples: Mapping[str, np.ndarray],
    *,
    edges: np.ndarray,
    xlabel: str,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    width_in: float = 4.6,
    height_in: float = 4.4,
):
    """Overlaid normalised histograms of one observable with a ratio panel (sample / reference).

    Args:
        samples: label -> (N,) values; the first is the reference. Non-finite values are dropped.
        edges: bin edges (shared by all samples), in the observable's unit.
        xlabel: axis label with the unit.
        title: text above the plot (e.g. the metrics).
        logx, logy: logarithmic axes.

    Returns:
        The figure.
    """
    edges = np.asarray(edges, dtype=np.float64)
    centres = np.sqrt(edges[:-1] * edges[1:]) if logx else 0.5 * (edges[:-1] + edges[1:])
    with hep_style():
        fig = _figure(width_in, height_in)
        ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06})
        dens = [_normalised_histogram(v, edges) for v in samples.values()]
        labels = list(samples)
        _overlay(ax, dens, labels, edges)
        if logy:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, None)
        ax.set_ylabel("normalised entries")
        ax.legend(loc="best")
        if title:
            ax.set_title(title, fontsize=9, loc="left")
        _ratio_panel(rax, centres, *dens[0], dens[1:], labels[1:])
        _finish_x_axis(ax, rax, xlabel, (edges[0], edges[-1]), logx)
    return fig


def _overlay(ax, curves: list[tuple[np.ndarray, np.ndarray]], labels: list[str], edges: np.ndarray) -> None:
    """Draw (values, errors) per bin: the first (the reference) as points with errors, the others as steps."""
    import mplhep

    for k, ((values, errors), label) in enumerate(zip(curves, labels)):
        colour, ls = COLOURS[k % len(COLOURS)], LINESTYLES[k % len(LINESTYLES)]
        if k == 0:
            mplhep.histplot(values, edges, yerr=errors, ax=ax, histtype="errorbar", color=colour, label=label,
                            markersize=3, flow="none")
        else:
            mplhep.histplot(values, edges, ax=ax, histtype="step", color=colour, ls=ls, label=label, flow="none")


def profile_comparison(
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    xlabel: str,
    ylabel: str = "mean energy [GeV]",
):
    """Mean energy profiles (one value per crystal offset) on linear and log scales, with ratio panels.

    Args:
        profiles: label -> ((11,) mean energy per crystal offset in GeV, (11,) its standard error);
            the first is the reference.
        xlabel: the axis (e.g. "phi offset [crystals]").
        ylabel: the y label.
    """
    with hep_style():
        fig = _figure(8.6, 4.4)
        axes = fig.subplots(2, 2, sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06, "wspace": 0.3})
        first = next(iter(profiles.values()))[0]
        n = len(first)
        edges = np.arange(n + 1) - n // 2 - 0.5
        centres = 0.5 * (edges[:-1] + edges[1:])
        vals = [(np.asarray(m, float), np.asarray(e, float)) for m, e in profiles.values()]
        labels = list(profiles)
        for col, log in enumerate((False, True)):
            ax, rax = axes[0, col], axes[1, col]
            _overlay(ax, vals, labels, edges)
            if log:
                ax.set_yscale("log")
            else:
                ax.set_ylim(0, None)
            ax.set_ylabel(ylabel)
            ax.set_title("log scale" if log else "linear scale", fontsize=9, loc="left")
            if col == 0:
                ax.legend(loc="upper right")
            _ratio_panel(rax, centres, *vals[0], vals[1:], labels[1:])
            rax.set_xlim(edges[0], edges[-1])
            rax.set_xlabel(xlabel)
    return fig


def _map_panel(fig, ax, image: np.ndarray, title: str, *, norm, cmap: str, label: str) -> None:
    n = image.shape[0]
    ext = (-(n // 2) - 0.5, n // 2 + 0.5, n // 2 + 0.5, -(n // 2) - 0.5)
    im = ax.imshow(image, origin="upper", extent=ext, norm=norm, cmap=cmap, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("phi offset [crystals]")
    ax.set_ylabel("theta offset [crystals]")
    ax.minorticks_off()
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label=label)


def mean_map_comparison(maps: Mapping[str, np.ndarray]):
    """Mean 11x11 maps side by side (log colour scale, GeV) and the candidate's relative difference.

    Args:
        maps: label -> (11, 11) mean map in GeV (rows theta, columns phi); the first is the reference,
            the second the one compared with it ((second - first) / first, in the last panel).
    """
    from matplotlib.colors import LogNorm, Normalize

    items = list(maps.items())
    ref = np.asarray(items[0][1], float)
    positive = np.concatenate([np.asarray(m, float).ravel() for _, m in items])
    positive = positive[positive > 0]
    vmin = max(positive.min(), positive.max() * 1e-6) if positive.size else 1e-6
    vmax = positive.max() if positive.size else 1.0
    with hep_style():
        fig = _figure(4.4 * (len(items) + 1), 3.8, right_in=1.0)
        axes = fig.subplots(1, len(items) + 1, gridspec_kw={"wspace": 0.55})
        for ax, (label, m) in zip(axes, items):
            img = np.where(np.asarray(m, float) > 0, m, np.nan)
            _map_panel(fig, ax, img, f"mean map: {label}", norm=LogNorm(vmin, vmax), cmap="viridis", label="GeV")
        other = np.asarray(items[1][1], float)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(ref > 0, (other - ref) / ref, np.nan)
        lim = float(np.nanmax(np.abs(rel))) if np.isfinite(rel).any() else 1.0
        lim = min(max(lim, 1e-3), 1.0)
        _map_panel(fig, axes[-1], rel, f"({items[1][0]} - {items[0][0]}) / {items[0][0]}",
                   norm=Normalize(-lim, lim), cmap="RdBu_r", label="relative difference")
    return fig


def occupancy_comparison(occupancy: Mapping[str, np.ndarray], pulls: np.ndarray, *, pull_range: float = 5.0):
    """Crystal occupancies side by side (log colour scale) and the candidate's pull map.

    Args:
        occupancy: label -> (11, 11) fraction of events with a hit in each crystal (reference first).
        pulls: (11, 11) the second's difference from the first in standard deviations (NaN: no hits);
            the colour scale is clipped at ``pull_range``.
    """
    from matplotlib.colors import LogNorm, Normalize

    items = list(occupancy.items())
    values = np.concatenate([np.asarray(m, float).ravel() for _, m in items])
    positive = values[values > 0]
    vmin = max(float(positive.min()), 1e-4) if positive.size else 1e-4
    with hep_style():
        fig = _figure(4.4 * (len(items) + 1), 3.8, right_in=1.0)
        axes = fig.subplots(1, len(items) + 1, gridspec_kw={"wspace": 0.55})
        for ax, (label, m) in zip(axes, items):
            img = np.where(np.asarray(m, float) > 0, m, np.nan)
            _map_panel(fig, ax, img, f"occupancy: {label}", norm=LogNorm(vmin, 1.0), cmap="viridis",
                       label="fraction of events")
        _map_panel(fig, axes[-1], np.clip(np.asarray(pulls, float), -pull_range, pull_range),
                   f"pull: {items[-1][0]} vs {items[0][0]}", norm=Normalize(-pull_range, pull_range),
                   cmap="RdBu_r", label="standard deviations")
    return fig


def event_displays(events: Sequence[Mapping[str, np.ndarray]]):
    """Single events side by side: one row per event, one column per sample (log colour scale, GeV).

    Args:
        events: per row, {panel title: (11, 11) map in GeV}; one colour scale per row.
    """
    from matplotlib.colors import LogNorm

    n_cols = max(len(m) for m in events)
    with hep_style():
        fig = _figure(4.4 * n_cols, 3.5 * len(events), right_in=1.0)
        axes = fig.subplots(len(events), n_cols, squeeze=False, gridspec_kw={"hspace": 0.5, "wspace": 0.55})
        for row, maps in enumerate(events):
            vals = np.concatenate([np.asarray(m, float).ravel() for m in maps.values()])
            vals = vals[vals > 0]
            vmax = vals.max() if vals.size else 1.0
            vmin = max(vals.min() if vals.size else 1e-4, vmax * 1e-4)
            for col, (title, m) in enumerate(maps.items()):
                img = np.where(np.asarray(m, float) > 0, m, np.nan)
                _map_panel(fig, axes[row, col], img, title, norm=LogNorm(vmin, vmax), cmap="viridis", label="GeV")
    return fig


def curve_comparison(
    x: np.ndarray,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    xlabel: str,
    ylabel: str,
    logx: bool = True,
    logy: bool = False,
):
    """Curves y(x) with error bands and a ratio panel (e.g. mean sparsity versus threshold).

    Args:
        x: (T,) abscissa (e.g. thresholds in GeV).
        curves: label -> ((T,) values, (T,) standard errors); the first is the reference.
    """
    x = np.asarray(x, dtype=np.float64)
    with hep_style():
        fig = _figure(4.6, 4.4)
        ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06})
        vals = [(np.asarray(m, float), np.asarray(e, float)) for m, e in curves.values()]
        labels = list(curves)
        for k, ((m, e), label) in enumerate(zip(vals, labels)):
            colour, ls = COLOURS[k % len(COLOURS)], LINESTYLES[k % len(LINESTYLES)]
            ax.plot(x, m, color=colour, ls=ls, lw=1.2, label=label)
            ax.fill_between(x, m - e, m + e, color=colour, alpha=0.2, lw=0)
        if logy:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.legend(loc="best")
        ref, ref_err = vals[0]
        rax.fill_between(x, 1 - ref_err / np.where(ref > 0, ref, np.nan), 1 + ref_err / np.where(ref > 0, ref, np.nan),
                         color="0.8", lw=0)
        rax.axhline(1.0, color="black", lw=0.8)
        for k, (m, e) in enumerate(vals[1:], start=1):
            r, _ = _ratio(m, e, ref)
            rax.plot(x, np.clip(r, *RATIO_LIMITS), color=COLOURS[k % len(COLOURS)], ls=LINESTYLES[k % len(LINESTYLES)])
        rax.set_ylim(*RATIO_LIMITS)
        rax.set_ylabel("ratio")
        _finish_x_axis(ax, rax, xlabel, (x[0], x[-1]), logx)
    return fig


def roc_curves(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, float]]]):
    """ROC curves of classifier tests: colour by compared sample, line style by input set.

    Args:
        curves: input set (e.g. "low-level") -> {sample label: (false positive rates, true positive
            rates, AUC)}; the samples in the same order in every input set.
    """
    with hep_style():
        fig = _figure(4.6, 4.4)
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="indistinguishable")
        for m, (level, by_sample) in enumerate(curves.items()):
            for k, (label, (fpr, tpr, auc)) in enumerate(by_sample.items(), start=1):
                ax.plot(fpr, tpr, color=COLOURS[k % len(COLOURS)], ls=("-", "--", ":")[m % 3], lw=1.2,
                        label=f"{level}, {label} (AUC {auc:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("false positive rate (reference)")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize=8)
    return fig


def resolution_histograms(quantities: Mapping[str, tuple[Mapping[str, np.ndarray], np.ndarray]]):
    """Distributions of repeated simulations of one track, one panel per quantity (normalised).

    Args:
        quantities: axis label (with unit) -> ({sample label: (N,) values}, bin edges).
    """
    import mplhep

    with hep_style():
        n = len(quantities)
        fig = _figure(3.6 * n, 3.4)
        axes = np.atleast_1d(fig.subplots(1, n, gridspec_kw={"wspace": 0.35}))
        for ax, (xlabel, (samples, edges)) in zip(axes, quantities.items()):
            for k, (label, v) in enumerate(samples.items()):
                d, e = _normalised_histogram(v, np.asarray(edges, float))
                colour, ls = COLOURS[k % len(COLOURS)], LINESTYLES[k % len(LINESTYLES)]
                if k == 0:
                    mplhep.histplot(d, edges, yerr=e, ax=ax, histtype="errorbar", color=colour, label=label,
                                    markersize=2.5, flow="none")
                else:
                    mplhep.histplot(d, edges, ax=ax, histtype="step", color=colour, ls=ls, label=label, flow="none")
            ax.set_xlabel(xlabel)
            ax.set_ylim(0, None)
        axes[0].set_ylabel("normalised entries")
        axes[0].legend(loc="upper left")
    return fig
