"""The paper's tables: the methods and columns of each, built from tidy results beside the paper's numbers.

A table is a :class:`TableSpec` in :data:`TABLES`; :func:`select` picks its rows out of the tidy results
(written as the table's CSV) and :func:`display` turns them into the wide rendering with the paper's
number (and, for the paper suite, the difference) beside ours, and a second reference's numbers (model-soups'
own soups, paper suite) where it has them. Dataset names of a suite are mapped to
the paper's columns (``id``, ``v2``, ``r``, ``a``, ``sketch``, ``objectnet``) by the config's
``datasets.reference_columns``; ``ood_avg`` is the mean over the OOD test sets.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..catalog import MULTITASK as MULTITASK_TARGETS
from ..catalog import caption as caption_of
from ..catalog import source as source_of
from .reference import CELLS, REPORTED_SUFFIX, attach_reference, attach_second_reference, formatted, reference_for
from ..registry import MERGING_METHODS, METHOD_LABELS, kinds_in, method_name
from .results import INTERVAL_METRICS, interval_rows, paired_metrics, paired_rows
from .tidy import COLUMNS

ROBUST = ("id", "v2", "r", "a", "sketch", "objectnet", "ood_avg")
MULTITASK = ("sun397", "stanford_cars", "resisc45", "eurosat", "svhn", "gtsrb", "mnist", "dtd", "avg")
AVERAGES = ("ood_avg", "avg")  # columns that are averages of ours, not datasets
ID_OOD = ("id", "ood_avg")


@dataclass(frozen=True)
class TableSpec:
    methods: tuple[str, ...]  # rows, in order
    columns: tuple[str, ...] = ID_OOD  # the paper's columns (datasets by role, or metrics)
    metric: str = "accuracy"  # the tidy metric the dataset columns show
    extra_metrics: tuple[str, ...] = ()  # further columns that are metrics, not datasets (costs)
    multi_backbone: bool = False  # rows per (backbone, method)
    pools: bool = False  # rows per (method, model pool): Table G
    # results it reads besides each backbone's metrics and its merged evaluations (workflow/rules/tables.smk):
    # "soups" (the soups' metrics and correctness, for backbones with soups), "optimality" (the per-sample optimal
    # coefficient's statistics), "profile" (the measured inference costs)
    reads: tuple[str, ...] = ()

    @property
    def intervals(self) -> bool:
        """Whether it shows accuracies with bootstrap intervals (read from the per-sample correctness files)."""
        return self.metric == "accuracy"


TABLES: dict[str, TableSpec] = {
    "table1": TableSpec(("zeroshot", "finetuned", "wise_ft", "oracle_domain", "oracle_sample"), ROBUST),
    "table2": TableSpec(("zeroshot", "finetuned", "output_ensemble", "wise_ft", "uniform_soup", "greedy_soup",
                                    "model_stock", "dawin_per_sample", "dawin"), ROBUST, extra_metrics=("cost_t", "cost_i"),
                        reads=("soups",)),
    "table3": TableSpec(("zeroshot", "finetuned", "output_ensemble", "wise_ft", "model_stock", "dawin"), reads=("soups",)),
    "table4": TableSpec(("zeroshot", "finetuned", "output_ensemble", "wise_ft", "model_stock", "dawin"), reads=("soups",)),
    "table5": TableSpec(("finetuned", "dcs", "doe", "dawin"), multi_backbone=True),
    "table_a": TableSpec(("dawin_no_offset", "dawin"), multi_backbone=True),
    "table_b": TableSpec(()),
    "table_c": TableSpec(("optimal_std", "mse_uniform", "mse_wise_ft", "mse_ce_ratio"),
                         ROBUST[:-1], metric="value", reads=("optimality",)),
    "table_d": TableSpec(("finetuned", "wise_ft", *(method_name(k, "mixture") for k in kinds_in("table_d")), "dawin")),
    "table_e": TableSpec(("wise_ft", "dawin", "dawin_no_calibration", "dawin_authors_temperatures")),
    "table_f": TableSpec(("wise_ft", "dawin", "dawin_parallel", "dawin_per_sample", "dawin_per_sample_loop",
                          "single_pass_jpeg", "single_pass_decoded"), ("ood_avg",),
                         extra_metrics=("runtime_s", "gflops_per_sample", "memory_mb_per_sample"), reads=("profile",)),
    "table6": TableSpec(("pretrained", "individual", *(m for m, v in MERGING_METHODS.items() if v.table6),
                         "task_arithmetic_grid", "dawin"), MULTITASK),
    "table_g": TableSpec(("task_arithmetic", "adamerging_pp_layer", "dawin"), ("svhn", "eurosat"), pools=True),
}


PAIRED: dict[str, tuple[str, tuple[str, ...]]] = {
    "table2": ("dawin", ("wise_ft", "dawin_per_sample")),
    # on the pool of all tasks, per task and on the average over tasks (registry: MergingMethod.paired says which
    # methods and why)
    "table6": ("dawin", tuple(m for m, v in MERGING_METHODS.items() if v.paired)),
}
"""Paired bootstrap comparisons a table reports: (method, the methods it is compared with)."""
TASK_AVERAGE = "avg"
"""The multi-task tables' average over tasks (pool ``all`` only: Table G's pools have none)."""
COSTS = ("table2",)
"""Tables with the cost columns T and I (:func:`costs`)."""


def table_metrics(name: str) -> set[str]:
    """The tidy metrics table ``name`` keeps: its own, the accuracy intervals and its paired comparisons."""
    spec = TABLES[name]
    metrics = {spec.metric, *spec.extra_metrics}
    if spec.intervals:
        metrics |= set(INTERVAL_METRICS)
    for other in PAIRED.get(name, ("", ()))[1]:
        metrics |= set(paired_metrics(other))
    return metrics


def table_b_methods(batch_sizes: Sequence[int]) -> tuple[str, ...]:
    return (*(f"dawin_batch_{b}" for b in batch_sizes), "dawin")


def methods_of(name: str, batch_sizes: Sequence[int] = ()) -> tuple[str, ...]:
    return table_b_methods(batch_sizes) if name == "table_b" else TABLES[name].methods


def select(name: str, results: pd.DataFrame, backbones: Sequence[str], batch_sizes: Sequence[int] = ()) -> pd.DataFrame:
    """The tidy rows of table ``name``: its methods and metrics, for ``backbones``."""
    spec = TABLES[name]
    rows = results[results.backbone.isin(backbones) & results.method.isin(methods_of(name, batch_sizes))
                   & results.metric.isin(table_metrics(name))]
    if "pool" in rows:  # multi-task results: Table 6 is the pool of all tasks, Table G the others
        rows = rows[(rows.pool == "all") != spec.pools]
        return rows[[*COLUMNS, "pool"]].sort_values(["pool", *COLUMNS[:5]], kind="stable").reset_index(drop=True)
    order = {b: i for i, b in enumerate(backbones)}  # backbones in the target's order (B/32, B/16, L/14)
    rows = rows.sort_values(COLUMNS[:5], kind="stable").sort_values("backbone", key=lambda c: c.map(order), kind="stable")
    return rows[COLUMNS].reset_index(drop=True)


def _wide(name: str, rows: pd.DataFrame, roles: Mapping[str, str], batch_sizes: Sequence[int],
          pools: Mapping[str, Sequence[str]], labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    spec = TABLES[name]
    rows = rows[rows.metric.isin({spec.metric, *spec.extra_metrics})].copy()
    is_extra = rows.metric.isin(spec.extra_metrics)
    rows["column"] = rows.metric.where(is_extra, rows.dataset.map(lambda d: d if d in AVERAGES else roles.get(d)))
    if name == "table_c":  # statistics per dataset: no accuracy, no OOD average
        rows["column"] = rows.dataset.map(roles)
    rows = rows.dropna(subset=["column"])
    if spec.pools:  # a pool by the paper's names of its tasks, as the paper's Table G lists them
        rows["pool"] = rows.pool.map(lambda p: ",".join(roles.get(t, t) for t in pools[p]))
    index = ["backbone", "method"] if spec.multi_backbone else ["method", "pool"] if spec.pools else ["method"]
    wide = rows.pivot_table(index=index, columns="column", values="value", aggfunc="first")
    order = [*(c for c in spec.extra_metrics), *spec.columns]
    wide = wide.reindex(columns=[c for c in order if c in wide.columns])
    methods = methods_of(name, batch_sizes)
    if spec.multi_backbone:
        keys = [(b, m) for b in dict.fromkeys(rows.backbone) for m in methods if (b, m) in wide.index]
    elif spec.pools:
        keys = [(m, p) for p in dict.fromkeys(rows.pool) for m in methods if (m, p) in wide.index]
    else:
        keys = [m for m in methods if m in wide.index]
    wide = wide.loc[keys] if keys else wide.iloc[:0]
    known = {**METHOD_LABELS, **(labels or {})}
    shown = [known.get(k[-1] if isinstance(k, tuple) else k, k[-1] if isinstance(k, tuple) else k) for k in wide.index]
    return wide.assign(label=shown)


def display(name: str, rows: pd.DataFrame, reference: pd.DataFrame | None, roles: Mapping[str, str],
            compare: bool, batch_sizes: Sequence[int] = (), pools: Mapping[str, Sequence[str]] | None = None,
            second: pd.DataFrame | None = None, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The wide table: ours, and the paper's number (+ our difference when ``compare``) where it has one.

    ``labels`` overrides rows' labels (:func:`dawin.registry.merging_labels`: a merging method's non-default variant).

    ``second`` (``dawin.report.reference.load_second_reference``, the paper suite's model-soups numbers) adds its
    numbers as ``c (<name>)`` columns for the rows it has (Table 2's soups) and its note to ``attrs["notes"]``.
    """
    wide = _wide(name, rows, roles, batch_sizes, pools or {}, labels)
    if reference is not None and len(reference_for(reference, name)):
        out = attach_reference(wide, reference, name, compare=compare)
        if labels:  # the paper's label would hide that the row is another variant of its method
            out["label"] = [labels.get(k[-1] if isinstance(k, tuple) else k, shown) if not shown.endswith(
                REPORTED_SUFFIX) else shown for k, shown in zip(out.index, out["label"])]
    else:
        out = wide[["label", *[c for c in wide.columns if c != "label"]]]
        out.attrs = {"table": name, "source": source_of(name), "title": caption_of(name), "decimals": 2,
                     "columns": [c for c in out.columns if c != "label"]}
    if second is not None:
        backbones = list(dict.fromkeys(rows.backbone))
        out = attach_second_reference(out, second, backbones[0] if len(backbones) == 1 else None)
    spec = TABLES[name]
    for metric, suffix in zip(INTERVAL_METRICS, ("low", "high")):  # "<column> (low)": shown by formatted(intervals=)
        bound = rows[rows.metric == metric]
        if len(bound):
            bound = _wide(name, bound.assign(metric=spec.metric), roles, batch_sizes, pools or {}, labels)
            for c in [c for c in bound.columns if c != "label" and c in out.columns]:
                out[f"{c} ({suffix})"] = [bound[c].get(k, math.nan) for k in out.index]
    out.attrs["paired"] = _paired(name, rows, roles, labels or {})
    return out


PAIRED_FIELDS = ("difference", "low", "high", "p_not_better")
"""The numbers of one paired comparison per column, in the order of :func:`dawin.report.results.paired_metrics`."""


def _paired(name: str, rows: pd.DataFrame, roles: Mapping[str, str], labels: Mapping[str, str]) -> list[dict]:
    """Each paired comparison of ``PAIRED[name]`` per backbone, for the page's tables (``dawin.report.reference``):
    ``{"backbone", "method", "other"}`` (labels) and ``"rows"``, one ``{"column", **PAIRED_FIELDS}`` per column of
    the table (the paper's column keys, in the table's order, averages last)."""
    if name not in PAIRED:
        return []
    method, others = PAIRED[name]
    order = {c: i for i, c in enumerate(TABLES[name].columns)}
    out = []
    for other in others:
        metrics = paired_metrics(other)
        sub = rows[(rows.method == method) & rows.metric.isin(metrics)]
        for backbone, by_backbone in sub.groupby("backbone", sort=False):
            cells = []
            for dataset, g in by_backbone.groupby("dataset", sort=False):
                v = dict(zip(g.metric, g.value))
                if len(v) < len(metrics):
                    continue
                column = dataset if dataset in AVERAGES else roles.get(dataset, dataset)
                cells.append({"column": column, **{f: float(v[m]) for f, m in zip(PAIRED_FIELDS, metrics)}})
            if cells:
                cells.sort(key=lambda c: order.get(c["column"], len(order)))
                out.append({"backbone": backbone, "method": METHOD_LABELS.get(method, method),
                            "other": labels.get(other, METHOD_LABELS.get(other, other)), "rows": cells})
    return out


def with_derived(name: str, results: pd.DataFrame, correct: Mapping, *, ood: Sequence[str], suite: str,
                 backbones: Sequence[str] = (), grid_size: int = 0, soups: Mapping[str, Mapping] | None = None
                 ) -> pd.DataFrame:
    """``results`` plus the rows table ``name`` derives from them: every accuracy's 95 % bootstrap interval
    (from the per-sample ``correct``, :func:`dawin.report.results.correctness`), the paired comparisons of
    :data:`PAIRED`, and for :data:`COSTS` the cost rows of each backbone (``soups[backbone]``: the keyword
    arguments ``n_ingredients`` and ``n_model_stock`` of :func:`costs`).

    The multi-task tables take ``correct`` per model pool (:func:`dawin.report.results.pool_correctness`) and
    give their rows the pool; pool ``all`` also gets the average over its tasks (:data:`TASK_AVERAGE`, each
    task's test set resampled on its own), as the table has it."""
    if name in MULTITASK_TARGETS:
        extra = [_pool_derived(name, pool, by_method, suite) for pool, by_method in correct.items()]
        return pd.concat([results, *extra], ignore_index=True)
    extra = [interval_rows(correct, ood, suite)]
    if name in PAIRED:
        method, others = PAIRED[name]
        extra.append(paired_rows(correct, method, others, ood, suite))
    if name in COSTS:
        extra += [costs(results, b, suite, grid_size=grid_size, **(soups or {})[b]) for b in backbones]
    return pd.concat([results, *extra], ignore_index=True)


def _pool_derived(name: str, pool: str, correct: Mapping, suite: str) -> pd.DataFrame:
    """The intervals (and :data:`PAIRED` comparisons) of one multi-task model pool's rows."""
    tasks = sorted({t for sets in correct.values() for t in sets}) if pool == "all" else []
    extra = [interval_rows(correct, tasks, suite, average=TASK_AVERAGE)]
    if name in PAIRED:
        method, others = PAIRED[name]
        extra.append(paired_rows(correct, method, others, tasks, suite, average=TASK_AVERAGE))
    return pd.concat(extra, ignore_index=True).assign(pool=pool)


def costs(results: pd.DataFrame, backbone: str, suite: str, n_ingredients: int, n_model_stock: int,
          grid_size: int) -> pd.DataFrame:
    """Table 2's cost columns from what was run: training runs (T) and models evaluated per test set (I).

    Cost I counts distinct models evaluated on a test set, averaged over the test sets: 2 expertise models
    plus DaWin's merged models (one per mixture cluster, or one per sample without the mixture); the
    static grids count their H candidates, the output ensemble its two members.
    """
    merged = results[(results.backbone == backbone) & (results.metric == "merged_models")]
    models = merged.groupby("method").value.mean()
    cost_t = {"zeroshot": 0, "finetuned": 1, "output_ensemble": 1, "wise_ft": 1, "uniform_soup": n_ingredients,
              "greedy_soup": n_ingredients, "model_stock": n_model_stock, "dawin_per_sample": 1, "dawin": 1}
    cost_i = {"zeroshot": 1, "finetuned": 1, "output_ensemble": 2, "wise_ft": grid_size, "uniform_soup": 1,
              "greedy_soup": 1, "model_stock": 1}
    for m in ("dawin", "dawin_per_sample"):
        if m in models:
            cost_i[m] = 2 + float(models[m])
    rows = [dict(suite=suite, backbone=backbone, method=m, dataset="all", metric=metric, value=float(v))
            for metric, table in (("cost_t", cost_t), ("cost_i", cost_i)) for m, v in table.items()
            if not (m in ("uniform_soup", "greedy_soup", "model_stock") and n_ingredients == 0)]
    return pd.DataFrame(rows, columns=COLUMNS)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (captions: pandas escapes only the cells)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def write(name: str, rows: pd.DataFrame, shown: pd.DataFrame, stem: str | Path, heading: str) -> None:
    """``stem``.csv (tidy, ours), .md, .tex and .html (wide, with the paper's and a second reference's numbers).

    The caption is ``heading``, the table's catalog caption and the notes of ``shown.attrs["notes"]`` (a
    second reference's, e.g. which soup pools the rows come from).
    """
    stem = str(stem)
    caption = " ".join([heading, caption_of(name), *shown.attrs.get("notes", []),
                        *([CELLS] if any(c.endswith(" (paper)") for c in shown.columns) else [])])
    rows.to_csv(stem + ".csv", index=False, float_format="%.4f")  # tidy (+ the model pool for Table G)
    text = formatted(shown)
    Path(stem + ".md").write_text(f"{caption}\n\n{text.to_markdown(disable_numparse=True)}\n")
    Path(stem + ".tex").write_text(text.to_latex(caption=latex_escape(caption), escape=True))
    Path(stem + ".html").write_text(f"<p>{html.escape(caption, quote=False)}</p>\n{text.to_html()}\n")
