"""Figures: panel counts, Pearson r in titles, "no samples" panels, byte-identical PNG/PDF output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dawin.report import figures

SPLITS = ["all", "TT", "TF", "FT", "FF"]


def _coefs(n: int, shift: float = 0.0) -> np.ndarray:
    return (np.linspace(0.05, 0.95, n) + shift) % 1.0


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def _data_axes(fig: Figure) -> list:
    """Axes other than colorbars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def make_hist() -> Figure:
    data = {d: {"Oracle (X-entropy ratio)": _coefs(50), "DaWin (entropy ratio)": _coefs(50, 0.1)}
            for d in ["IN", "IN-V2", "IN-R"]}
    return figures.coefficient_histograms(data, "Figure 1")


def make_split_hist() -> Figure:
    data = {d: {s: {"Oracle": _coefs(30), "Entropy": _coefs(30, 0.2)} for s in SPLITS} for d in ["IN", "IN-A"]}
    data["IN-A"]["FF"] = {"Oracle": np.array([]), "Entropy": np.array([])}
    return figures.split_histograms(data, "Figure E")


def make_corr() -> Figure:
    x = np.linspace(0.0, 1.0, 40)
    data = {d: {s: (x, 2 * x + 1) for s in SPLITS} for d in ["IN", "IN-R"]}
    return figures.correlation_grid(data, "entropy ratio", "X-entropy ratio", "Figure 2")


def make_corr_two_series() -> Figure:
    x = np.linspace(0.0, 3.0, 7000)  # above MAX_POINTS: subsampled drawing
    cell = [(x, 0.5 * x, "ZS"), (x, -x + 2.0, "FT")]
    return figures.correlation_grid({"IN": {s: cell for s in SPLITS}}, "entropy", "X-entropy", "Figure C")


def make_tradeoff() -> Figure:
    points = pd.DataFrame({"method": ["zeroshot", "finetuned", "wise_ft", "dawin"], "id": [60.0, 75.0, 76.0, 76.5],
                           "ood": [55.0, 50.0, 56.0, 58.0]})
    alpha = np.round(np.linspace(0.1, 0.9, 9), 1)
    sweep = pd.DataFrame({"alpha": alpha, "id": 60 + 16 * alpha, "ood": 55 + 2 * np.sin(np.pi * alpha)})
    extra = pd.DataFrame({"alpha": alpha, "id": 61 + 16 * alpha, "ood": 56 + 2 * np.sin(np.pi * alpha)})
    return figures.id_ood_tradeoff(points, sweep, "Figure A", extra_sweeps={"DaWin x alpha": extra})


def make_bars() -> Figure:
    rows = [{"dataset": d, "split": s, "method": m, "entropy": 0.1 * (i + 1) + 0.01 * j}
            for d in ["IN", "IN-A"] for j, s in enumerate(SPLITS)
            for i, m in enumerate(["zeroshot", "finetuned", "average", "dawin"])]
    return figures.grouped_bars(pd.DataFrame(rows), "split", "method", "entropy", "Figure F", "mean entropy",
                                panels_col="dataset")


def make_valley() -> Figure:
    alpha = np.round(np.concatenate([[0.0], np.linspace(0.05, 0.95, 19), [1.0]]), 2)
    sweep = pd.concat([pd.DataFrame({"dataset": d, "alpha": alpha, "entropy": 1.0 + (alpha - 0.5) ** 2})
                       for d in ["IN", "IN-R"]], ignore_index=True)
    dynamic = pd.DataFrame({"dataset": ["IN", "IN", "IN-R", "IN-R"], "method": ["uniform", "dawin"] * 2,
                            "entropy": [1.05, 0.9, 1.04, 0.85]})
    return figures.entropy_valley(sweep, dynamic, "Figure H")


def make_time() -> Figure:
    df = pd.DataFrame({"panel": ["robust fine-tuning"] * 3 + ["multi-task (SVHN)"] * 2,
                       "method": ["wise_ft", "greedy_soup", "dawin", "adamerging", "dawin"],
                       "seconds": [100.0, 400.0, 150.0, 2000.0, 90.0], "accuracy": [70.0, 69.0, 72.0, 85.0, 90.0]})
    return figures.accuracy_vs_time(df, "Figure 8")


def make_heatmap() -> Figure:
    m = np.arange(16, dtype=float).reshape(4, 4) / 15
    m[0, 1] = np.nan
    names = ["SUN397", "Cars", "SVHN", "MNIST"]
    return figures.heatmap(m, names, names, "Figure 7", xlabel="evaluation task", ylabel="expert")


def make_heatmaps() -> Figure:
    names = ["a", "b", "c"]
    m = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
    return figures.heatmaps({"MMD": (m, names, names), "FID": (10 * m, names, names)}, "Figure G", fmt=".1f")


def _image(k: int) -> np.ndarray:
    h = np.arange(64, dtype=np.uint16)[:, None, None]
    w = np.arange(48, dtype=np.uint16)[None, :, None]
    c = np.array([0, 1, 2], dtype=np.uint16)[None, None, :]
    return ((h * 3 + w * 5 + c * 40 + k * 17) % 256).astype(np.uint8)


def make_images() -> Figure:
    rows = {d: [(_image(i * 10 + j), f"l={j / 10:.2f}\nclass {j}") for j in range(10)]
            for i, d in enumerate(["IN", "IN-V2", "IN-R", "IN-A", "IN-S", "ObjNet"])}
    return figures.extreme_images(rows, "Figure B")


MAKERS: dict[str, Callable[[], Figure]] = {
    "hist": make_hist, "split_hist": make_split_hist, "corr": make_corr, "corr2": make_corr_two_series,
    "tradeoff": make_tradeoff, "bars": make_bars, "valley": make_valley, "time": make_time,
    "heatmap": make_heatmap, "heatmaps": make_heatmaps, "images": make_images,
}


@pytest.mark.parametrize("seconds", [[100.0, 400.0, 150.0], [1.1, 1.3, 1.2], [0.02, 30.0, 4.0]])
def test_time_axis_has_labelled_ticks_at_any_span(seconds) -> None:
    df = pd.DataFrame({"panel": ["p"] * 3, "method": ["wise_ft", "dawin", "dawin_per_sample"], "seconds": seconds,
                       "accuracy": [70.0, 72.0, 71.0]})
    ax = figures.accuracy_vs_time(df, "Figure 8").axes[0]
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    labels = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi and t.get_text()]
    assert len(labels) >= 2, labels
    assert lo <= min(seconds) and max(seconds) <= hi  # every point stays in view


def test_pearson_edge_cases() -> None:
    x = np.linspace(0, 1, 10)
    assert figures.pearson(x, 3 * x - 1) == pytest.approx(1.0)
    assert figures.pearson(x, -x) == pytest.approx(-1.0)
    assert np.isnan(figures.pearson(np.array([1.0]), np.array([2.0])))
    assert np.isnan(figures.pearson(np.ones(5), x[:5]))
    assert np.isnan(figures.pearson(np.array([]), np.array([])))
    y = 2 * x
    y[3] = np.nan
    assert figures.pearson(x, y) == pytest.approx(1.0)


def test_histograms_panels() -> None:
    fig = make_hist()
    assert len(fig.axes) == 3
    assert _titles(fig) == ["IN", "IN-V2", "IN-R"]
    fig = make_split_hist()
    assert len(fig.axes) == 10
    assert _texts(fig).count("no samples") == 1
    assert fig.axes[0].get_title() == "All" and fig.axes[4].get_title() == "FalseFalse"


def test_correlation_grid_r_in_titles() -> None:
    fig = make_corr()
    assert len(fig.axes) == 10
    assert all("r=1.00" in t for t in _titles(fig))
    fig = make_corr_two_series()
    assert len(fig.axes) == 5
    assert all("r(ZS)=1.00" in t and "r(FT)=-1.00" in t for t in _titles(fig))
    assert "evenly spaced" in fig.get_suptitle()
    drawn = fig.axes[0].collections[0].get_offsets()
    assert len(drawn) == figures.MAX_POINTS


def test_correlation_grid_series_labels_and_empty_split() -> None:
    x = np.linspace(0, 1, 20)
    data = {"IN": {"all": [(x, x), (x, -x)], "FF": (np.array([]), np.array([]))}, "IN-A": {"all": [(x, x)]}}
    fig = figures.correlation_grid(data, "H", "CE", "Figure C", series_labels=["ZS", "FT"])
    assert len(fig.axes) == 4
    titles = _titles(fig)
    assert "r(ZS)=1.00" in titles[0] and "r(FT)=-1.00" in titles[0]
    assert "r(ZS)=n/a" in titles[1] and "r=n/a" in titles[3]
    assert _texts(fig).count("no samples") == 2  # IN/FF empty, IN-A has no FF


def test_other_panel_counts() -> None:
    assert len(make_tradeoff().axes) == 1
    legend = make_tradeoff().axes[0].get_legend()
    assert "DaWin x alpha" in [t.get_text() for t in legend.get_texts()]
    fig = make_bars()
    assert _titles(fig) == ["IN", "IN-A"]
    assert sum(len(c) for c in fig.axes[0].containers) == 20
    fig = make_valley()
    assert _titles(fig) == ["IN", "IN-R"]
    assert len(fig.axes[0].lines) == 3  # sweep + two dynamic methods
    fig = make_time()
    assert _titles(fig) == ["robust fine-tuning", "multi-task (SVHN)"]
    assert fig.axes[0].get_xscale() == "log"
    fig = make_heatmap()
    assert len(_data_axes(fig)) == 1 and "–" in _texts(fig)
    fig = make_heatmaps()
    assert [ax.get_title() for ax in _data_axes(fig)] == ["MMD", "FID"]


def test_grouped_bars_without_bar_col_and_empty_panel() -> None:
    df = pd.DataFrame({"panel": ["ID"] * 5, "metric": ["H", "l_ens_soft", "l_ens_hard", "l_wa_soft", "l_wa_hard"],
                       "accuracy": [80.1, 80.2, 80.0, 79.9, 80.3]})
    fig = figures.grouped_bars(df, "metric", None, "accuracy", "Figure 5", "accuracy (%)", panels_col="panel",
                               zoom=True)
    assert len(fig.axes) == 1
    lo, hi = fig.axes[0].get_ylim()
    assert 79 < lo < 79.9 and 80.3 < hi < 81
    df = pd.DataFrame({"dataset": ["IN", "IN-A"], "split": ["all", "all"], "method": ["dawin", "dawin"],
                       "entropy": [0.5, np.nan]})
    fig = figures.grouped_bars(df, "split", "method", "entropy", "t", "e", panels_col="dataset")
    assert _texts(fig).count("no samples") == 1


def test_extreme_images_grid() -> None:
    fig = make_images()
    assert len(fig.axes) == 60
    assert sum(len(ax.images) for ax in fig.axes) == 60
    assert fig.axes[0].get_ylabel() == "IN" and fig.axes[50].get_ylabel() == "ObjNet"
    assert fig.axes[0].get_xlabel() == "l=0.00\nclass 0"
    short = figures.extreme_images({"IN": [(_image(0), "a")], "IN-R": []}, "t")
    assert len(short.axes) == 2 and _texts(short).count("no samples") == 1


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_save_is_byte_identical(name: str, tmp_path: Path) -> None:
    for stem in ("a", "b"):
        figures.save(MAKERS[name](), tmp_path / stem)
    for ext in ("png", "pdf"):
        a, b = (tmp_path / f"a.{ext}").read_bytes(), (tmp_path / f"b.{ext}").read_bytes()
        assert len(a) > 1000
        assert a == b, f"{name}.{ext} differs between two saves"
    pdf = (tmp_path / "a.pdf").read_bytes()
    assert b"CreationDate" not in pdf and b"Matplotlib" not in pdf
    assert b"Software" not in (tmp_path / "a.png").read_bytes()
