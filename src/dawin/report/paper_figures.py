"""The paper's figures from the workflow's files: each reads its inputs and returns a matplotlib Figure.

``FIGURES[name](inputs, params)``: ``inputs`` maps an input name (``logits``, ``coefficients``, ``merged``,
``metrics``, ``sweeps``, ``data``, ``temperatures``) to its file paths, ``params`` carries the suite's
test sets, OOD sets, dataset roles and backbones. The drawing itself lives in :mod:`dawin.report.figures`.
The figures drawn from CSVs and summaries never import torch (it would double their job's start-up): the
logit-reading helpers import the torch modules they need when called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import figures as F
from .analysis import correctness_splits
from ..registry import METHOD_LABELS, method_name
from .results import backbone_from_path, collect
from ..runtime import read_json
from ..tensorio import load_arrays

if TYPE_CHECKING:
    import torch

Inputs = Mapping[str, Sequence[str]]


def _stem(path: str) -> str:
    return Path(path).name.split(".")[0]


def _logits(inputs: Inputs) -> dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]]:
    """{(backbone, model, dataset): (logits, labels)} of ``logits/{backbone}/{model}/{dataset}``."""
    from ..inference.logits import load_logits

    out = {}
    for path in inputs.get("logits", []):
        z, y, _ = load_logits(path)
        out[backbone_from_path(path), Path(path).parent.name, _stem(path)] = (z, y)
    return out


def _coefficients(inputs: Inputs) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """{(backbone, kind): {dataset: coefficients}}."""
    out = {}
    for path in inputs.get("coefficients", []):
        arrays, meta = load_arrays(path)
        out[backbone_from_path(path), meta["kind"]] = arrays
    return out


def _merged(inputs: Inputs) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
    """{(backbone, method, dataset): per-sample summary} of the merged evaluations."""
    out = {}
    for path in inputs.get("merged", []):
        arrays, meta = load_arrays(path)
        out[backbone_from_path(path), method_name(meta["kind"], meta["assignment"]), meta["dataset"]] = arrays
    return out


def _splits(z0: torch.Tensor, z1: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    return correctness_splits((z0.argmax(-1) == y).numpy(), (z1.argmax(-1) == y).numpy())


def _pair(logits, backbone: str, dataset: str):
    (z0, y), (z1, _) = logits[backbone, "zeroshot", dataset], logits[backbone, "finetuned", dataset]
    return z0, z1, y


def _temperatures(inputs: Inputs, backbone: str) -> tuple[float, float]:
    for path in inputs.get("temperatures", []):
        if Path(path).stem == backbone:
            t = read_json(path)
            return t["zeroshot"], t["finetuned"]
    return 1.0, 1.0


def _title(params, what: str) -> str:
    return f"{what} ({params.suite} suite, {', '.join(params.backbones)})"


def _role_dataset(params, role: str) -> str:
    """The suite's dataset playing the paper's ``role`` (e.g. "r": ImageNet-R); the last OOD set otherwise."""
    return next((d for d, r in params.roles.items() if r == role), params.ood[-1])


# --- coefficient distributions ---------------------------------------------------------------------

def fig1(inputs: Inputs, params) -> F.Figure:
    coef = _coefficients(inputs)[params.backbones[0], "cross_entropy"]
    data = {d: {"Oracle (X-entropy ratio)": coef[d]} for d in params.datasets}
    return F.coefficient_histograms(data, _title(params, "Figure 1: oracle coefficients per domain"))


def fig_e(inputs: Inputs, params) -> F.Figure:
    bb = params.backbones[0]
    coef, logits = _coefficients(inputs), _logits(inputs)
    data = {}
    for d in params.datasets:
        masks = _splits(*_pair(logits, bb, d))
        data[d] = {s: {"Oracle (X-entropy)": coef[bb, "cross_entropy"][d][m], "DaWin (entropy)": coef[bb, "entropy"][d][m]}
                   for s, m in masks.items()}
    return F.split_histograms(data, _title(params, "Figure E: coefficients by correctness split"))


# --- entropy vs cross-entropy --------------------------------------------------------------------------

def _expertise(inputs: Inputs, params, datasets: Sequence[str]):
    from ..method.expertise import cross_entropy, entropy

    bb = params.backbones[0]
    logits, (t0, t1) = _logits(inputs), _temperatures(inputs, bb)
    for d in datasets:
        z0, z1, y = _pair(logits, bb, d)
        h0, h1 = entropy(z0, t0), entropy(z1, t1)
        c0, c1 = cross_entropy(z0, y, t0), cross_entropy(z1, y, t1)
        yield d, _splits(z0, z1, y), (h0, h1, c0, c1)


def _ratio_grid(inputs: Inputs, params, datasets: Sequence[str], what: str) -> F.Figure:
    from ..method.coefficients import entropy_ratio_coefficients

    data = {}
    for d, masks, (h0, h1, c0, c1) in _expertise(inputs, params, datasets):
        x = entropy_ratio_coefficients(h0, h1).numpy()  # Eq. 1 on entropies: the entropy ratio
        yv = entropy_ratio_coefficients(c0, c1).numpy()  # ... on cross-entropies: the X-entropy ratio
        data[d] = {s: (x[m], yv[m]) for s, m in masks.items()}
    return F.correlation_grid(data, "entropy ratio", "X-entropy ratio", _title(params, what))


def fig2(inputs: Inputs, params) -> F.Figure:
    datasets = list(dict.fromkeys([params.datasets[0], _role_dataset(params, "r")]))
    return _ratio_grid(inputs, params, datasets, "Figure 2: entropy ratio vs X-entropy ratio")


def fig_d(inputs: Inputs, params) -> F.Figure:
    return _ratio_grid(inputs, params, params.datasets, "Figure D: entropy ratio vs X-entropy ratio")


def fig_c(inputs: Inputs, params) -> F.Figure:
    data = {}
    for d, masks, (h0, h1, c0, c1) in _expertise(inputs, params, params.datasets):
        data[d] = {s: [(h0.numpy()[m], c0.numpy()[m], "zero-shot"), (h1.numpy()[m], c1.numpy()[m], "fine-tuned")]
                   for s, m in masks.items()}
    return F.correlation_grid(data, "entropy", "X-entropy", _title(params, "Figure C: entropy vs X-entropy"))


# --- accuracy trade-offs -----------------------------------------------------------------------------

TRADEOFF_METHODS = ("zeroshot", "finetuned", "output_ensemble", "wise_ft", "uniform_soup", "greedy_soup", "model_stock",
                    "dawin_per_sample", "dawin")


def _results(inputs: Inputs, params) -> pd.DataFrame:
    return collect(inputs.get("metrics", []), inputs.get("merged", []), params.suite, params.ood)


def _id_ood(acc: pd.DataFrame, backbone: str, methods: Sequence[str], id_test: str) -> pd.DataFrame:
    sub = acc[(acc.backbone == backbone) & (acc.metric == "accuracy")]
    wide = sub.pivot_table(index="method", columns="dataset", values="value", aggfunc="first")
    rows = [{"method": m, "id": wide.loc[m, id_test], "ood": wide.loc[m, "ood_avg"]} for m in methods if m in wide.index]
    return pd.DataFrame(rows, columns=["method", "id", "ood"])


def _sweep(inputs: Inputs, params, backbone: str) -> pd.DataFrame:
    acc = {_stem(f): pd.read_csv(f).set_index("alpha")["accuracy"]
           for f in inputs["sweeps"] if backbone_from_path(f) == backbone}
    ood = pd.concat([acc[d] for d in params.ood], axis=1).mean(axis=1)
    df = pd.DataFrame({"alpha": acc[params.datasets[0]].index, "id": acc[params.datasets[0]].values, "ood": ood.values})
    return df[np.isin(df.alpha.round(6), np.round([0.0, *params.grid, 1.0], 6))]  # the paper's grid, ZS and FT


def _tradeoff(inputs: Inputs, params, scaled: bool, what: str) -> F.Figure:
    results = _results(inputs, params)
    panels = {}
    for bb in params.backbones:
        extra = None
        if scaled:
            methods = sorted((m for m in results.method.unique() if m.startswith("dawin_x")), key=lambda m: float(m[7:]))
            curve = _id_ood(results, bb, methods, params.datasets[0])
            curve["alpha"] = [float(m[7:]) for m in curve.method]
            extra = {"DaWin x alpha": curve[["alpha", "id", "ood"]]}
        panels[bb] = (_id_ood(results, bb, TRADEOFF_METHODS, params.datasets[0]), _sweep(inputs, params, bb), extra)
    return F.id_ood_panels(panels, _title(params, what))


def fig4(inputs: Inputs, params) -> F.Figure:
    return _tradeoff(inputs, params, False, "Figure 4: ID vs OOD accuracy")


def fig_a(inputs: Inputs, params) -> F.Figure:
    return _tradeoff(inputs, params, True, "Figure A: DaWin x alpha")


EXPERTISE_LABELS = {"dawin": "Entropy H", "expertise_pl_ensemble_soft": "PL ens. soft", "expertise_pl_ensemble_hard": "PL ens. hard",
                    "expertise_pl_average_soft": "PL WA soft", "expertise_pl_average_hard": "PL WA hard"}


def fig5(inputs: Inputs, params) -> F.Figure:
    results = _results(inputs, params)
    acc = results[(results.metric == "accuracy") & results.method.isin(EXPERTISE_LABELS)
                  & results.dataset.isin([params.datasets[0], "ood_avg"])]
    df = pd.DataFrame({"panel": acc.dataset.map({params.datasets[0]: "ID", "ood_avg": "OOD average"}).values,
                       "metric": acc.method.map(EXPERTISE_LABELS).values, "accuracy": acc.value.values})
    order = {label: i for i, label in enumerate(EXPERTISE_LABELS.values())}
    df = df.sort_values(["panel", "metric"], key=lambda c: c.map(order) if c.name == "metric" else c, kind="stable")
    return F.grouped_bars(df, "metric", None, "accuracy", _title(params, "Figure 5: expertise metrics"),
                          "accuracy (%)", panels_col="panel", zoom=True)


# --- entropy analyses ------------------------------------------------------------------------------

def _entropy_by_split(inputs: Inputs, params, datasets: Sequence[str]) -> pd.DataFrame:
    from ..method.expertise import entropy

    bb = params.backbones[0]
    logits, merged = _logits(inputs), _merged(inputs)
    rows = []
    for d in datasets:
        z0, z1, y = _pair(logits, bb, d)
        masks = _splits(z0, z1, y)
        values = {"zeroshot": entropy(z0).numpy(), "finetuned": entropy(z1).numpy(),
                  "average": entropy(logits[bb, "average", d][0]).numpy(), "dawin": merged[bb, "dawin", d]["entropy"]}
        for s, m in masks.items():
            for method, h in values.items():
                rows.append({"dataset": d, "split": s, "method": method, "entropy": float(h[m].mean()) if m.any() else np.nan})
    return pd.DataFrame(rows)


def fig6(inputs: Inputs, params) -> F.Figure:
    df = _entropy_by_split(inputs, params, [_role_dataset(params, "a")])
    return F.grouped_bars(df, "split", "method", "entropy", _title(params, "Figure 6: mean entropy"), "mean entropy")


def fig_f(inputs: Inputs, params) -> F.Figure:
    df = _entropy_by_split(inputs, params, params.datasets)
    return F.grouped_bars(df, "split", "method", "entropy", _title(params, "Figure F: mean entropy"), "mean entropy",
                          panels_col="dataset")


def fig_h(inputs: Inputs, params) -> F.Figure:
    bb = params.backbones[0]
    sweep = []
    for path in inputs["sweeps"]:
        t, meta = load_arrays(path, ["alphas", "entropy"])
        sweep += [{"dataset": meta["dataset"], "alpha": float(a), "entropy": float(h.astype(np.float64).mean())}
                  for a, h in zip(t["alphas"], t["entropy"])]
    dynamic = [{"dataset": d, "method": METHOD_LABELS.get(m, m), "entropy": float(s["entropy"].mean())}
               for (b, m, d), s in sorted(_merged(inputs).items()) if b == bb]
    return F.entropy_valley(pd.DataFrame(sweep), pd.DataFrame(dynamic), _title(params, "Figure H: entropy valley"))


def fig8(inputs: Inputs, params) -> F.Figure:
    results = _results(inputs, params)
    rows = []
    for bb in params.backbones:
        sub = results[results.backbone == bb]
        seconds = sub[sub.metric == "runtime_s"].set_index("method").value
        acc = sub[(sub.metric == "accuracy") & (sub.dataset == "ood_avg")].set_index("method").value
        for m in ("wise_ft", "dawin", "dawin_per_sample"):
            if m in seconds and m in acc:
                rows.append({"panel": f"robust fine-tuning ({bb}), OOD avg", "method": m, "seconds": seconds[m],
                             "accuracy": acc[m]})
    for path in inputs.get("multitask", []):  # merge + evaluation seconds of each method, average accuracy
        mt = pd.read_csv(path)
        mt = mt[mt.pool == "all"]
        seconds = mt[mt.metric.isin(["merge_seconds", "eval_seconds"])].groupby("method").value.sum()
        acc = mt[(mt.metric == "accuracy") & (mt.dataset == "avg")].set_index("method").value
        for m in ("task_arithmetic_grid", "adamerging_layer", "adamerging_pp_layer", "dawin"):
            if m in seconds and m in acc:
                rows.append({"panel": "multi-task, average", "method": m, "seconds": seconds[m], "accuracy": acc[m]})
    return F.accuracy_vs_time(pd.DataFrame(rows), _title(params, "Figure 8: accuracy vs inference time"))


def fig_b(inputs: Inputs, params, k: int = 5) -> F.Figure:
    from ..inputs.datasets import load_dataset

    coef = _coefficients(inputs)[params.backbones[0], "entropy"]
    rows = {}
    for d, root in zip(params.datasets, inputs["data"]):
        data = load_dataset(root)
        c = coef[d]
        order = np.argsort(c, kind="stable")
        picks = [*order[:k], *order[-k:]]
        rows[d] = [(np.asarray(data[i][0]), f"l={c[i]:.2f}\n{data.classnames[data.labels[i]]}") for i in picks]
    return F.extreme_images(rows, _title(params, "Figure B: bottom-5 / top-5 DaWin coefficients"))


def fig7(inputs: Inputs, params) -> F.Figure:
    df = pd.read_csv(inputs["multitask"][0])
    matrix = df.pivot(index="expert", columns="task", values="coefficient")
    return F.heatmap(matrix.to_numpy(), list(matrix.index), list(matrix.columns),
                     _title(params, "Figure 7: mean DaWin coefficient"), xlabel="evaluation task", ylabel="expert")


def fig_g(inputs: Inputs, params) -> F.Figure:
    df = pd.read_csv(inputs["multitask"][0])
    panels = {}
    for metric, label in (("mmd", "MMD (CLIP features)"), ("fid", "FID (Inception-V3 features)")):
        m = df[df.metric == metric].pivot(index="row", columns="column", values="value")
        if len(m):
            panels[label] = (m.to_numpy(), list(m.index), list(m.columns))
    title = "Figure G: dataset distances" + ("" if len(panels) == 2 else " (FID: Inception-V3 weights missing, see the log)")
    return F.heatmaps(panels, _title(params, title))


FIGURES: dict[str, Callable[[Inputs, SimpleNamespace], F.Figure]] = {
    "fig1": fig1, "fig2": fig2, "fig_c": fig_c, "fig_d": fig_d, "fig_e": fig_e, "fig4": fig4, "fig_a": fig_a,
    "fig5": fig5, "fig6": fig6, "fig_f": fig_f, "fig_h": fig_h, "fig8": fig8, "fig_b": fig_b, "fig7": fig7,
    "fig_g": fig_g,
}
