"""Figures of the DaWin paper with deterministic bytes: fixed metadata, no timestamps, the Agg backend.

Every function takes plain, already ordered data (dicts keep their insertion order, DataFrames their row
order: the order of first appearance decides panel, group and colour order) and returns a matplotlib
``Figure``; :func:`save` writes it. Figure sizes are fixed multiples of the panel count, the DPI is fixed,
and no function draws anything random. A panel without data says "no samples" instead of staying blank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

from .analysis import pearson as _pearson  # noqa: E402
from ..registry import METHOD_LABELS  # noqa: E402

matplotlib.rcParams["svg.hashsalt"] = "dawin"

__all__ = [
    "MARKERS", "MAX_POINTS", "SPLIT_LABELS", "Series", "Cell", "save", "pearson", "coefficient_histograms",
    "split_histograms", "correlation_grid", "id_ood_tradeoff", "grouped_bars", "entropy_valley",
    "accuracy_vs_time", "heatmap", "heatmaps", "extreme_images",
]

PNG_DPI = 150
FONT = 7  # base font size (points); titles FONT + 1, annotations FONT - 2
MAX_POINTS = 5000  # scatter panels draw at most this many evenly spaced points per series

SPLIT_LABELS = {"all": "All", "TT": "TrueTrue", "TF": "TrueFalse", "FT": "FalseTrue", "FF": "FalseFalse"}

MARKERS = {"zeroshot": "s", "finetuned": "D", "output_ensemble": "^", "wise_ft": "v",
           "dawin_per_sample": "P", "dawin": "*"}

_COLORS = tuple(plt.get_cmap("tab10").colors) + tuple(plt.get_cmap("Dark2").colors)

Series = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, str]
"""One scatter series: ``(x, y)`` or ``(x, y, label)``."""
Cell = Series | Sequence[Series]
"""One correlation panel: a single series, or a list of series (Figure C: zero-shot and fine-tuned)."""


def save(fig: Figure, stem: str | Path) -> None:
    """Write ``stem``.png and ``stem``.pdf without creation dates or software versions, then close ``fig``.

    The layout is computed once, when the PNG is drawn, and the PDF keeps it: a second constrained-layout pass
    took about a third of the larger figures' time (Figure C: 120 axes), and both files now show one layout."""
    fig.savefig(f"{stem}.png", dpi=PNG_DPI, metadata={"Software": None})
    fig.set_layout_engine("none")
    fig.savefig(f"{stem}.pdf", metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None})
    plt.close(fig)


# --------------------------------------------------------------------------------------------- helpers


def _color(i: int) -> tuple[float, float, float]:
    return _COLORS[i % len(_COLORS)]


def _method(key: str) -> str:
    return METHOD_LABELS.get(key, key)


def _split(key: str) -> str:
    return SPLIT_LABELS.get(key, METHOD_LABELS.get(key, key))


def _grid(nrows: int, ncols: int, panel_w: float, panel_h: float, title: str,
          sharex: bool = False, sharey: bool = False) -> tuple[Figure, np.ndarray]:
    """A constrained-layout grid of ``nrows`` x ``ncols`` axes (always 2-D) with small explicit fonts."""
    nrows, ncols = max(nrows, 1), max(ncols, 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * panel_w, nrows * panel_h + 0.4), squeeze=False,
                             layout="constrained", sharex=sharex, sharey=sharey)
    for ax in axes.flat:
        ax.tick_params(which="both", labelsize=FONT - 1)
    fig.suptitle(title, fontsize=FONT + 2)
    return fig, axes


def _no_samples(ax: Axes, text: str = "no samples") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=FONT, color="0.4")


def _finite(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def _ordered(values: pd.Series | Sequence) -> list:
    """Unique values in order of first appearance."""
    return list(pd.unique(pd.Series(list(values), dtype=object)))


def _legend(fig: Figure, handles: list, labels: list[str], markerscale: float = 1.0) -> None:
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=FONT - 1,
                   frameon=False, markerscale=markerscale)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """:func:`dawin.report.analysis.pearson` over the pairs where both values are finite (what a scatter shows)."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    return _pearson(x[keep], y[keep])


def _fmt_r(r: float) -> str:
    return "n/a" if not np.isfinite(r) else f"{r:.2f}"


def _evenly(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced indices into ``range(n)`` (all of them when ``n <= k``)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


# ------------------------------------------------------------------------------------- histograms


def _hist_panel(ax: Axes, sets: Mapping[str, np.ndarray], colors: Mapping[str, tuple], bins: int,
                handles: dict[str, object]) -> None:
    edges = np.linspace(0.0, 1.0, bins + 1)
    drawn = False
    for name, values in sets.items():
        v = _finite(values)
        if v.size == 0:
            continue
        _, _, patches = ax.hist(np.clip(v, 0.0, 1.0), bins=edges, density=True, histtype="stepfilled",
                                alpha=0.45, color=colors[name], edgecolor=colors[name], linewidth=0.8)
        handles.setdefault(name, patches[0])
        drawn = True
    ax.set_xlim(0.0, 1.0)
    if not drawn:
        _no_samples(ax)


def _set_colors(names: Sequence[str]) -> dict[str, tuple]:
    return {name: _color(i) for i, name in enumerate(names)}


def coefficient_histograms(data: Mapping[str, Mapping[str, np.ndarray]], title: str, bins: int = 20) -> Figure:
    """Figure 1: histograms (density) of sample-wise interpolation coefficients on [0, 1].

    ``data``: dataset -> {coefficient set name -> coefficients}, e.g. {"Oracle (X-entropy ratio)": ...,
    "DaWin (entropy ratio)": ...}. One column per dataset in dict order; the sets are overlaid.
    """
    names = _ordered(n for sets in data.values() for n in sets)
    colors = _set_colors(names)
    fig, axes = _grid(1, len(data), 2.2, 2.0, title)
    handles: dict[str, object] = {}
    for ax, (dataset, sets) in zip(axes[0], data.items()):
        _hist_panel(ax, sets, colors, bins, handles)
        ax.set_title(dataset, fontsize=FONT + 1)
        ax.set_xlabel("coefficient", fontsize=FONT)
    axes[0, 0].set_ylabel("density", fontsize=FONT)
    if not data:
        _no_samples(axes[0, 0])
    _legend(fig, [handles[n] for n in names if n in handles], [n for n in names if n in handles])
    return fig


def _columns(data: Mapping[str, Mapping[str, object]]) -> list[str]:
    return _ordered(split for cells in data.values() for split in cells)


def split_histograms(data: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], title: str,
                     bins: int = 20) -> Figure:
    """Figure E: coefficient histograms per dataset (rows) and correctness split (columns).

    ``data``: dataset -> split ("all", "TT", "TF", "FT", "FF") -> {set name -> coefficients}. Columns follow
    the splits' order of first appearance; a split without coefficients reads "no samples".
    """
    splits = _columns(data)
    names = _ordered(n for cells in data.values() for sets in cells.values() for n in sets)
    colors = _set_colors(names)
    fig, axes = _grid(len(data), len(splits), 2.0, 1.7, title)
    handles: dict[str, object] = {}
    for i, (dataset, cells) in enumerate(data.items()):
        for j, split in enumerate(splits):
            ax = axes[i, j]
            _hist_panel(ax, cells.get(split, {}), colors, bins, handles)
            if i == 0:
                ax.set_title(_split(split), fontsize=FONT + 1)
            if j == 0:
                ax.set_ylabel(f"{dataset}\ndensity", fontsize=FONT)
            if i == len(data) - 1:
                ax.set_xlabel("coefficient", fontsize=FONT)
    if not data:
        _no_samples(axes[0, 0])
    _legend(fig, [handles[n] for n in names if n in handles], [n for n in names if n in handles])
    return fig


# ------------------------------------------------------------------------------------- correlations


def _series_list(cell: Cell, series_labels: Sequence[str] | None) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Normalise a cell to ``[(x, y, label), ...]``; a bare ``(x, y)`` tuple is one series."""
    if isinstance(cell, tuple) and len(cell) in (2, 3) and not isinstance(cell[0], tuple):
        items: list = [cell]
    else:
        items = list(cell)
    out = []
    for k, item in enumerate(items):
        if len(item) == 3:
            x, y, label = item
        else:
            x, y = item
            label = series_labels[k] if series_labels is not None and k < len(series_labels) else ""
        out.append((np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel(), str(label)))
    return out


def correlation_grid(data: Mapping[str, Mapping[str, Cell]], xlabel: str, ylabel: str, title: str,
                     series_labels: Sequence[str] | None = None, max_points: int = MAX_POINTS) -> Figure:
    """Figures 2, C and D: scatter plots of x vs y per dataset (rows) and correctness split (columns).

    ``data``: dataset -> split -> cell, where a cell is ``(x, y)`` (Figures 2 and D: entropy ratio vs
    X-entropy ratio) or a list of ``(x, y)`` / ``(x, y, label)`` series (Figure C: zero-shot and fine-tuned
    entropy vs X-entropy). Labels of plain ``(x, y)`` series come from ``series_labels`` by position.
    Each panel title carries the Pearson r of every series (all finite pairs; "n/a" when undefined) and a
    least-squares line is drawn per series. Above ``max_points`` pairs per series only evenly spaced points
    are drawn (r and the line still use all of them), which the figure notes.
    """
    splits = _columns(data)
    label_order: list[str] = []
    for cells in data.values():
        for cell in cells.values():
            for _, _, label in _series_list(cell, series_labels):
                if label not in label_order:
                    label_order.append(label)
    colors = {label: _color(i) for i, label in enumerate(label_order)}
    fig, axes = _grid(len(data), len(splits), 2.0, 1.9, title)
    handles: dict[str, object] = {}
    subsampled = False
    for i, (dataset, cells) in enumerate(data.items()):
        for j, split in enumerate(splits):
            ax = axes[i, j]
            series = _series_list(cells[split], series_labels) if split in cells else []
            parts = []
            drawn = False
            for x, y, label in series:
                keep = np.isfinite(x) & np.isfinite(y)
                xs, ys = x[keep], y[keep]
                r = pearson(xs, ys)
                parts.append(f"r({label})={_fmt_r(r)}" if label else f"r={_fmt_r(r)}")
                if xs.size == 0:
                    continue
                idx = _evenly(xs.size, max_points)
                subsampled |= idx.size < xs.size
                color = colors[label]
                h = ax.scatter(xs[idx], ys[idx], s=2, alpha=0.35, color=color, linewidths=0, rasterized=True)
                if label:
                    handles.setdefault(label, h)
                if np.isfinite(r):
                    slope, intercept = np.polyfit(xs, ys, 1)
                    line_x = np.array([xs.min(), xs.max()])
                    ax.plot(line_x, slope * line_x + intercept, color=color, linewidth=1.0)
                drawn = True
            if not drawn:
                _no_samples(ax)
            head = f"{dataset}, {_split(split)}" if len(data) > 1 else _split(split)
            r_text = ", ".join(parts) if parts else "r=n/a"
            ax.set_title(f"{head}\n{r_text}", fontsize=FONT)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=FONT)
            if i == len(data) - 1:
                ax.set_xlabel(xlabel, fontsize=FONT)
    if not data:
        _no_samples(axes[0, 0])
    _legend(fig, [handles[n] for n in label_order if n in handles],
            [n for n in label_order if n in handles], markerscale=4.0)
    if subsampled:
        fig.suptitle(f"{title}\n(scatter shows at most {max_points} evenly spaced points per series; "
                     "r and fitted lines use all points)", fontsize=FONT + 2)
    return fig


# ------------------------------------------------------------------------------------- trade-offs


def _sweep_curve(ax: Axes, sweep: pd.DataFrame, label: str, color: object, marker: str = "o",
                 ls: str = "-") -> None:
    ax.plot(sweep["id"], sweep["ood"], ls=ls, marker=marker, color=color, ms=3, label=label, zorder=1,
            linewidth=1.0)
    for a, x, y in zip(sweep["alpha"], sweep["id"], sweep["ood"]):
        ax.annotate(f"{a:.1f}", (x, y), fontsize=FONT - 2, color=color, xytext=(2, 2), textcoords="offset points")


def _tradeoff_panel(ax: Axes, points: pd.DataFrame, sweep: pd.DataFrame, title: str,
                    extra_sweeps: Mapping[str, pd.DataFrame] | None) -> None:
    ax.tick_params(labelsize=FONT)
    _sweep_curve(ax, sweep, "WiSE-FT sweep", "0.55")
    for k, (label, extra) in enumerate((extra_sweeps or {}).items()):
        _sweep_curve(ax, extra, label, _color(len(points) + k), marker="x", ls="--")
    for k, row in enumerate(points.itertuples()):
        ax.scatter(row.id, row.ood, marker=MARKERS.get(row.method, "o"), s=90 if row.method == "dawin" else 50,
                   color=_color(k), label=_method(row.method), zorder=2)
    ax.set_xlabel("ID accuracy (%)", fontsize=FONT + 1)
    ax.set_ylabel("OOD average accuracy (%)", fontsize=FONT + 1)
    ax.set_title(title, fontsize=FONT + 2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=FONT, loc="best")


def id_ood_tradeoff(points: pd.DataFrame, sweep: pd.DataFrame, title: str,
                    extra_sweeps: Mapping[str, pd.DataFrame] | None = None) -> Figure:
    """Figures 4 and A: ID accuracy vs average OOD accuracy.

    ``points``: method, id, ood (one marker per method, in row order); ``sweep``: alpha, id, ood (the WiSE-FT
    grid, drawn as a grey curve with alpha annotations); ``extra_sweeps``: label -> DataFrame(alpha, id, ood),
    more labelled curves, e.g. Figure A's {"DaWin x alpha": ...}.
    """
    return id_ood_panels({title: (points, sweep, extra_sweeps)}, "")


def id_ood_panels(panels: Mapping[str, tuple[pd.DataFrame, pd.DataFrame, Mapping[str, pd.DataFrame] | None]],
                  title: str) -> Figure:
    """Figures 4 and A with one panel per backbone: ``panels`` maps a panel title to (points, sweep, extra)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), layout="constrained", squeeze=False)
    for ax, (name, (points, sweep, extra)) in zip(axes[0], panels.items()):
        _tradeoff_panel(ax, points, sweep, name, extra)
    if title:
        fig.suptitle(title, fontsize=FONT + 2)
    return fig


# ------------------------------------------------------------------------------------- bars and lines


def grouped_bars(df: pd.DataFrame, group_col: str, bar_col: str | None, value_col: str, title: str, ylabel: str,
                 panels_col: str | None = None, ncols: int | None = None, zoom: bool = False,
                 fmt: str = ".2f") -> Figure:
    """Figures 5, 6 and F: grouped bar charts, one panel per value of ``panels_col``.

    Groups (x positions) are the values of ``group_col`` (split keys read TrueTrue etc.), bars within a group
    the values of ``bar_col`` (method keys read through ``METHOD_LABELS``; ``None``: one bar per group), both in
    order of first appearance, with consistent colours across panels. Figure 5: panels ID / OOD, groups the
    expertise metrics; Figure 6: groups the splits, bars the methods, one dataset; Figure F: as 6, one panel per
    dataset. ``zoom`` narrows each panel's y-range to its data (for accuracies that differ by little); bars are
    annotated with ``fmt``. Missing (group, bar) pairs leave a gap; a panel without rows reads "no samples".
    """
    panels = _ordered(df[panels_col]) if panels_col is not None else [None]
    groups = _ordered(df[group_col])
    bars = _ordered(df[bar_col]) if bar_col is not None else [None]
    ncols = min(len(panels), 3) if ncols is None else max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    width_per_panel = max(2.6, 0.16 * len(groups) * max(len(bars), 1) + 0.9)
    fig, axes = _grid(nrows, ncols, width_per_panel, 2.4, title)
    bar_w = 0.8 / max(len(bars), 1)
    handles: dict[object, object] = {}
    for p, panel in enumerate(panels):
        ax = axes.flat[p]
        sub = df if panel is None else df[df[panels_col] == panel]
        vals = []
        for b, bar in enumerate(bars):
            rows = sub if bar is None else sub[sub[bar_col] == bar]
            for g, group in enumerate(groups):
                v = rows.loc[rows[group_col] == group, value_col]
                if v.empty or not np.isfinite(float(v.iloc[0])):
                    continue
                value = float(v.iloc[0])
                vals.append(value)
                x = g + (b - (len(bars) - 1) / 2) * bar_w
                color = _color(b) if bar is not None else _color(g)
                cont = ax.bar(x, value, width=bar_w * 0.95, color=color)
                if bar is not None:
                    handles.setdefault(bar, cont)
                ax.annotate(format(value, fmt), (x, value), xytext=(0, 1), textcoords="offset points",
                            ha="center", va="bottom", fontsize=FONT - 2.5, rotation=90 if len(bars) > 3 else 0)
        ax.set_xticks(range(len(groups)), [_split(str(g)) for g in groups], fontsize=FONT - 1,
                      rotation=30 if len(groups) > 4 else 0)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        if panel is not None:
            ax.set_title(str(panel), fontsize=FONT + 1)
        if p % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=FONT)
        ax.grid(axis="y", alpha=0.3)
        if not vals:
            _no_samples(ax)
        elif zoom:
            lo, hi = min(vals), max(vals)
            span = max(hi - lo, 1e-6 + 0.01 * abs(hi))
            ax.set_ylim(lo - 0.6 * span, hi + 0.5 * span)
        else:
            lo, hi = min(0.0, min(vals)), max(0.0, max(vals))
            ax.set_ylim(lo - 0.02 * (hi - lo), hi + 0.15 * (hi - lo) + 1e-9)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    _legend(fig, [handles[b] for b in bars if b in handles], [_method(str(b)) for b in bars if b in handles])
    return fig


def entropy_valley(sweep: pd.DataFrame, dynamic: pd.DataFrame, title: str, ncols: int = 3) -> Figure:
    """Figure H: mean entropy over the static interpolation grid and of dynamic interpolation methods.

    ``sweep``: dataset, alpha, entropy (WiSE-FT grid incl. alpha 0 = ZS and 1 = FT, drawn as a line with the
    endpoints marked); ``dynamic``: dataset, method, entropy (one horizontal dashed line per method, colours
    consistent across panels). One panel per dataset in order of first appearance (sweep first).
    """
    datasets = _ordered(list(sweep["dataset"]) + list(dynamic["dataset"]))
    methods = _ordered(dynamic["method"])
    ncols = max(1, min(ncols, len(datasets)))
    nrows = -(-len(datasets) // ncols)
    fig, axes = _grid(nrows, ncols, 2.6, 2.2, title)
    handles: dict[str, object] = {}
    for p, dataset in enumerate(datasets):
        ax = axes.flat[p]
        s = sweep[sweep["dataset"] == dataset].sort_values("alpha", kind="stable")
        d = dynamic[dynamic["dataset"] == dataset]
        if not s.empty:
            (h,) = ax.plot(s["alpha"], s["entropy"], "-o", color="0.3", ms=2, linewidth=1.0)
            handles.setdefault("Static (WiSE-FT grid)", h)
            for alpha, marker, name in ((0.0, "s", "zeroshot"), (1.0, "D", "finetuned")):
                end = s[np.isclose(s["alpha"].to_numpy(dtype=float), alpha)]
                if not end.empty:
                    h = ax.scatter(alpha, float(end["entropy"].iloc[0]), marker=marker, s=25, color="0.1", zorder=3)
                    ax.annotate(_method(name), (alpha, float(end["entropy"].iloc[0])), xytext=(3, 3),
                                textcoords="offset points", fontsize=FONT - 2)
        for m, method in enumerate(methods):
            v = d.loc[d["method"] == method, "entropy"]
            if v.empty:
                continue
            h = ax.axhline(float(v.iloc[0]), color=_color(m), ls="--", linewidth=1.0)
            handles.setdefault(_method(method), h)
        if s.empty and d.empty:
            _no_samples(ax)
        ax.set_xlim(-0.05, 1.05)
        ax.set_title(dataset, fontsize=FONT + 1)
        ax.set_xlabel("static coefficient (0 = ZS, 1 = FT)", fontsize=FONT - 1)
        if p % ncols == 0:
            ax.set_ylabel("mean entropy", fontsize=FONT)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(datasets):]:
        ax.set_axis_off()
    _legend(fig, list(handles.values()), list(handles.keys()))
    return fig


def _label_log_axis(ax: Axes, values: pd.Series) -> None:
    """Labelled ticks on a log x axis, whatever its span: 1-2-5 steps of each decade in view, or, when fewer than
    two of those fall inside (a span under a factor of about 2.5), the plotted values themselves. Matplotlib's
    default labels only powers of ten, so a narrower span showed no number at all."""
    lo, hi = ax.get_xlim()
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [m * 10.0**e for e in decades for m in (1, 2, 5) if lo <= m * 10.0**e <= hi]
    if len(ticks) < 2:
        ticks = sorted({float(f"{v:.2g}") for v in values if v > 0})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)


def accuracy_vs_time(df: pd.DataFrame, title: str) -> Figure:
    """Figure 8: accuracy vs wall-clock inference time (log x), one panel per ``panel`` value.

    ``df``: panel, method, seconds, accuracy; each point is labelled with its method; a method keeps its colour
    and marker across panels (robust fine-tuning on the left, multi-task SVHN on the right in the paper).
    """
    panels = _ordered(df["panel"])
    methods = _ordered(df["method"])
    fig, axes = _grid(1, len(panels), 3.4, 2.8, title)
    for ax, panel in zip(axes[0], panels):
        sub = df[df["panel"] == panel]
        for row in sub.itertuples():
            m = methods.index(row.method)
            ax.scatter(row.seconds, row.accuracy, marker=MARKERS.get(row.method, "o"), s=40, color=_color(m),
                       zorder=2)
            ax.annotate(_method(row.method), (row.seconds, row.accuracy), xytext=(4, 3), textcoords="offset points",
                        fontsize=FONT - 1.5)
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.15)
        _label_log_axis(ax, sub["seconds"])
        ax.tick_params(which="both", labelsize=FONT - 1)
        ax.set_title(str(panel), fontsize=FONT + 1)
        ax.set_xlabel("wall-clock inference time (s, log scale)", fontsize=FONT)
        ax.set_ylabel("accuracy (%)", fontsize=FONT)
        ax.grid(alpha=0.3, which="both")
    if not panels:
        _no_samples(axes[0, 0])
    return fig


# ------------------------------------------------------------------------------------- heatmaps


def _draw_heatmap(fig: Figure, ax: Axes, matrix: np.ndarray, row_labels: Sequence[str],
                  col_labels: Sequence[str], fmt: str, cmap: str, xlabel: str, ylabel: str) -> None:
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix shape {m.shape} does not match {len(row_labels)} x {len(col_labels)} labels")
    finite = m[np.isfinite(m)]
    if finite.size == 0:
        _no_samples(ax)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    lo, hi = float(finite.min()), float(finite.max())
    norm = Normalize(lo, hi if hi > lo else lo + 1.0)
    colormap = plt.get_cmap(cmap)
    im = ax.imshow(np.ma.masked_invalid(m), cmap=colormap, norm=norm, aspect="auto", interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cbar.ax.tick_params(labelsize=FONT - 1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            v = m[i, j]
            if np.isfinite(v):
                r, g, b, _ = colormap(norm(v))
                color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                text = format(v, fmt)
            else:
                color, text = "0.4", "–"
            ax.text(j, i, text, ha="center", va="center", fontsize=FONT - 2, color=color)
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels], rotation=45, ha="right",
                  rotation_mode="anchor", fontsize=FONT - 1)
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels], fontsize=FONT - 1)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)


def heatmap(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
            fmt: str = ".2f", cmap: str = "viridis", xlabel: str = "", ylabel: str = "") -> Figure:
    """Figure 7: an annotated heatmap, e.g. DaWin's mean coefficient per (expert row, evaluation task column).

    Non-finite cells are left uncoloured and read "–"; text is black or white by the cell colour's luminance.
    """
    n_rows, n_cols = np.asarray(matrix).shape[:2] if np.asarray(matrix).ndim == 2 else (1, 1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * max(n_cols, 4), 1.0 + 0.42 * max(n_rows, 4)), layout="constrained")
    ax.tick_params(labelsize=FONT - 1)
    _draw_heatmap(fig, ax, matrix, row_labels, col_labels, fmt, cmap, xlabel, ylabel)
    ax.set_title(title, fontsize=FONT + 2)
    return fig


def heatmaps(panels: Mapping[str, tuple[np.ndarray, Sequence[str], Sequence[str]]], title: str,
             fmt: str = ".2f", cmap: str = "viridis") -> Figure:
    """Figure G: annotated heatmaps side by side (e.g. MMD and FID between the eight multi-task datasets).

    ``panels``: panel title -> (matrix, row labels, column labels); each panel has its own colour scale.
    """
    sizes = [np.asarray(m).shape for m, _, _ in panels.values()]
    n_rows = max([s[0] for s in sizes if len(s) == 2] + [4])
    n_cols = max([s[1] for s in sizes if len(s) == 2] + [4])
    fig, axes = _grid(1, len(panels), 1.4 + 0.5 * n_cols, 1.0 + 0.42 * n_rows, title)
    for ax, (name, (matrix, rows, cols)) in zip(axes[0], panels.items()):
        _draw_heatmap(fig, ax, matrix, rows, cols, fmt, cmap, "", "")
        ax.set_title(name, fontsize=FONT + 1)
    if not panels:
        _no_samples(axes[0, 0])
    return fig


# ------------------------------------------------------------------------------------- images


def _shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Nearest-neighbour downsample (evenly spaced rows/columns) so that no side exceeds ``max_side``."""
    img = np.asarray(image)
    if max_side is None or max(img.shape[:2]) <= max_side:
        return img
    scale = max_side / max(img.shape[:2])
    h, w = max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale))
    rows = np.linspace(0, img.shape[0] - 1, h).round().astype(np.int64)
    cols = np.linspace(0, img.shape[1] - 1, w).round().astype(np.int64)
    return img[rows][:, cols]


def extreme_images(rows: Mapping[str, Sequence[tuple[np.ndarray, str]]], title: str,
                   max_side: int | None = 160) -> Figure:
    """Figure B: test images with the bottom-5 and top-5 DaWin coefficients, one row per dataset.

    ``rows``: dataset -> [(HxWx3 uint8 image, caption such as "l=0.03\\n<class>"), ...] in display order
    (bottom-5 then top-5). Images are downsampled to at most ``max_side`` pixels per side (nearest neighbour,
    evenly spaced pixels) to keep the PDF small; cells past a row's end, or a row without images, read
    "no samples".
    """
    ncols = max([len(images) for images in rows.values()] + [1])
    fig, axes = _grid(len(rows), ncols, 1.15, 1.5, title)
    for i, (dataset, images) in enumerate(rows.items()):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(images):
                image, caption = images[j]
                ax.imshow(_shrink(image, max_side), interpolation="nearest")
                ax.set_xlabel(caption, fontsize=FONT - 1.5)
            else:
                _no_samples(ax)
            if j == 0:
                ax.set_ylabel(dataset, fontsize=FONT + 0.5)
    if not rows:
        _no_samples(axes[0, 0])
    return fig
