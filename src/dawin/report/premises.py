"""Premise checks: what the paper's comparisons take for granted, checked on our own numbers.

DaWin's two settings rest on facts about the models, not about DaWin: in robust fine-tuning the fine-tuned
model beats the zero-shot one in distribution and loses to it out of distribution (else there is no trade-off to
interpolate across); in multi-task merging each expert is the best model on its own task, the static merges
improve on the pre-trained model, RegMean is a merge of its own (not the weight average under another name),
and DaWin's entropy weights recognise each task's own expert (Figure 7). Where one fails (the demo's tiny world
can break them), the tables that build on it mean something else. :func:`premise_rows` checks them on the
metric tables (tidy rows: check, premise, passed, margin, detail with the numbers), :func:`printed` renders them
for the reproduction page, :func:`seed_grid` and :func:`seed_markdown` per seed for ``snakemake seeds``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..registry import MERGING_METHODS


def _merging(name: str) -> str:
    """A merging method's key, checked against the registry (a renamed method fails here, not silently later)."""
    if name not in MERGING_METHODS:
        raise ImportError(f"dawin.report.premises: {name!r} is not a merging method of dawin.registry")
    return name


TASK_ARITHMETIC, WEIGHT_AVERAGE, REGMEAN = _merging("task_arithmetic"), _merging("weight_average"), _merging("regmean")
ZEROSHOT, FINETUNED = "zeroshot", "finetuned"  # the robust pair (dawin.report.paper_tables' method keys)
PRETRAINED, INDIVIDUAL = "pretrained", "individual"  # Table 6's theta0 and the experts on their own tasks
OOD_AVERAGE, TASK_AVERAGE = "ood_avg", "avg"


@dataclass(frozen=True)
class Check:
    premise: str  # the statement checked
    unit: str  # of the margin: "points" (accuracy), "images" (test images) or "coefficient"


CHECKS: dict[str, Check] = {
    "ft_above_zs_id": Check("Robust fine-tuning: FT above ZS on ID", "points"),
    "zs_above_ft_ood": Check("Robust fine-tuning: ZS above FT on the OOD average", "points"),
    "expert_best_on_own_task": Check("Multi-task: each expert is best on its own task among all models evaluated "
                                     "on it (merges, pre-trained, DaWin; ties count as best)", "points"),
    "task_arithmetic_above_pretrained": Check("Multi-task: task arithmetic (lambda {lam}) above pre-trained on the "
                                              "average over tasks", "points"),
    "weight_average_above_pretrained": Check("Multi-task: weight averaging above pre-trained on the average over "
                                             "tasks", "points"),
    "regmean_differs_from_weight_average": Check("Multi-task: RegMean differs from weight averaging (per-sample "
                                                 "correctness on any task)", "images"),
    "own_expert_largest_coefficient": Check("Multi-task: on every task its own expert has the largest mean DaWin "
                                            "coefficient (Figure 7; ties count as largest)", "coefficient"),
}
"""Every check by key; its ``margin`` is how far the premise holds (negative, or 0 for a strict one, fails)."""
ROBUST_CHECKS = ("ft_above_zs_id", "zs_above_ft_ood")
COLUMNS = ["check", "premise", "passed", "margin", "detail"]


def _row(check: str, passed: bool | None, margin: float, detail: str, **fmt) -> dict:
    return dict(check=check, premise=CHECKS[check].premise.format(**fmt), passed=passed, margin=float(margin),
                detail=detail)


def _not_checked(check: str, missing: str, **fmt) -> dict:
    return _row(check, None, np.nan, f"not checked: {missing}", **fmt)


def _accuracies(metrics: pd.DataFrame, where: str) -> pd.Series:
    """(method, dataset) -> accuracy of a tidy metrics table."""
    need = {"method", "dataset", "metric", "value"}
    if not need <= set(metrics.columns):
        raise ValueError(f"{where}: a tidy metrics table needs the columns {sorted(need)}, got {list(metrics.columns)}")
    acc = metrics[metrics.metric == "accuracy"]
    return acc.set_index(["method", "dataset"]).value.astype(float)


def _above(check: str, acc: pd.Series, a: str, b: str, dataset: str, shown: str, **fmt) -> dict:
    """``a`` strictly above ``b`` on ``dataset``."""
    missing = [m for m in (a, b) if (m, dataset) not in acc.index]
    if missing:
        return _not_checked(check, f"no accuracy of {' and '.join(missing)} on {dataset}", **fmt)
    va, vb = acc[a, dataset], acc[b, dataset]
    return _row(check, bool(va > vb), va - vb, f"{shown} {va:.2f} vs {b} {vb:.2f} on {dataset} ({va - vb:+.2f})",
                **fmt)


def robust_checks(metrics: pd.DataFrame, *, backbone: str, id_dataset: str) -> list[dict]:
    """FT above ZS on ``id_dataset``; ZS above FT on the OOD average, from ``backbone``'s tidy metrics
    (``metrics/<backbone>.csv``: the accuracy of ``zeroshot`` and ``finetuned`` per test set and ``ood_avg``)."""
    acc = _accuracies(metrics[metrics.backbone == backbone], f"the robust metrics of {backbone}")
    return [_above("ft_above_zs_id", acc, FINETUNED, ZEROSHOT, id_dataset, f"{backbone}: {FINETUNED}"),
            _above("zs_above_ft_ood", acc, ZEROSHOT, FINETUNED, OOD_AVERAGE, f"{backbone}: {ZEROSHOT}")]


def _expert_best(acc: pd.Series) -> dict:
    check = "expert_best_on_own_task"
    tasks = [d for m, d in acc.index if m == INDIVIDUAL and d != TASK_AVERAGE]
    if not tasks:
        return _not_checked(check, "no accuracy of the individual experts")
    leads = []  # (lead, task, individual, best other method, its accuracy)
    for task in sorted(tasks):
        others = acc[[(m, d) for m, d in acc.index if d == task and m != INDIVIDUAL]]
        if others.empty:
            continue
        (best, _), top = others.idxmax(), others.max()
        leads.append((acc[INDIVIDUAL, task] - top, task, acc[INDIVIDUAL, task], best, top))
    if not leads:
        return _not_checked(check, "no other model evaluated on the experts' tasks")
    failing = [lead for lead in leads if lead[0] < 0]
    shown = failing or [min(leads)]
    detail = "; ".join(f"{task}: individual {own:.2f} vs {best} {top:.2f} ({lead:+.2f})"
                       for lead, task, own, best, top in shown)
    prefix = (f"beaten on {len(failing)} of {len(leads)} tasks: " if failing
              else f"best on all {len(leads)} tasks; smallest lead ")
    return _row(check, not failing, min(leads)[0], prefix + detail)


def _regmean_differs(acc: pd.Series, correct: Mapping | None) -> dict:
    check = "regmean_differs_from_weight_average"
    tasks = sorted({d for m, d in acc.index if m == REGMEAN and d != TASK_AVERAGE}
                   & {d for m, d in acc.index if m == WEIGHT_AVERAGE and d != TASK_AVERAGE})
    if not tasks:
        return _not_checked(check, f"no accuracy of both {REGMEAN} and {WEIGHT_AVERAGE}")
    differ = [t for t in tasks if acc[REGMEAN, t] != acc[WEIGHT_AVERAGE, t]]
    avg = (f" (average {REGMEAN} {acc[REGMEAN, TASK_AVERAGE]:.2f}, {WEIGHT_AVERAGE} {acc[WEIGHT_AVERAGE, TASK_AVERAGE]:.2f})"
           if (REGMEAN, TASK_AVERAGE) in acc.index and (WEIGHT_AVERAGE, TASK_AVERAGE) in acc.index else "")
    accuracies = f"accuracies differ on {len(differ)} of {len(tasks)} tasks{avg}"
    by_method = {m: sets for (_, m), sets in (correct or {}).items()}
    if REGMEAN not in by_method or WEIGHT_AVERAGE not in by_method:  # no per-sample correctness: accuracies only
        return _row(check, bool(differ), len(differ), accuracies + " (no per-sample correctness given)")
    r, w = by_method[REGMEAN], by_method[WEIGHT_AVERAGE]
    shared = sorted(set(r) & set(w))
    for t in shared:
        if len(r[t]) != len(w[t]):
            raise ValueError(f"{t}: {REGMEAN} and {WEIGHT_AVERAGE} were evaluated on different numbers of images "
                             f"({len(r[t])} and {len(w[t])}); rebuild the multi-task pool's results")
    n_diff = int(sum(np.sum(np.asarray(r[t], bool) != np.asarray(w[t], bool)) for t in shared))
    n = int(sum(len(r[t]) for t in shared))
    return _row(check, n_diff > 0, n_diff,
                f"correctness differs on {n_diff} of {n} test images of {len(shared)} tasks; {accuracies}")


def _own_expert_largest(coefficients: pd.DataFrame | None) -> dict:
    check = "own_expert_largest_coefficient"
    if coefficients is None or coefficients.empty:
        return _not_checked(check, "no DaWin coefficients")
    need = {"task", "expert", "coefficient"}
    if not need <= set(coefficients.columns):
        raise ValueError(f"DaWin's mean coefficients need the columns {sorted(need)} (multitask/all/"
                         f"dawin_coefficients.csv), got {list(coefficients.columns)}")
    margins = []  # (margin, task, own, best other expert, its coefficient)
    for task, g in coefficients.groupby("task", sort=True):
        by_expert = g.set_index("expert").coefficient.astype(float)
        if task not in by_expert.index or len(by_expert) < 2:
            continue
        others = by_expert.drop(task)
        margins.append((by_expert[task] - others.max(), task, by_expert[task], others.idxmax(), others.max()))
    if not margins:
        return _not_checked(check, "no task whose own expert is in the pool")
    failing = [m for m in margins if m[0] < 0]
    shown = failing or [min(margins)]
    detail = "; ".join(f"{task}: own {own:.3f} vs {best} {top:.3f}" for _, task, own, best, top in shown)
    prefix = (f"another expert larger on {len(failing)} of {len(margins)} tasks: " if failing
              else f"largest on all {len(margins)} tasks; smallest lead ")
    return _row(check, not failing, min(margins)[0], prefix + detail)


def multitask_checks(metrics: pd.DataFrame, *, coefficients: pd.DataFrame | None = None,
                     correct: Mapping | None = None, lam: float | None = None) -> list[dict]:
    """The multi-task checks on the pool of all tasks: ``metrics`` is the tidy ``multitask/metrics.csv`` (rows of
    pool ``all`` are used; the average over tasks is dataset ``avg``), ``coefficients`` DaWin's mean coefficient
    per (task, expert) (``multitask/all/dawin_coefficients.csv``), ``correct`` the pool's per-sample correctness
    ``{(backbone, method): {task: 0/1}}`` (``dawin.report.results.pool_correctness(...)["all"]``; without it
    RegMean is compared by accuracies only), ``lam`` task arithmetic's configured lambda (shown in the premise)."""
    if "pool" in metrics.columns:
        metrics = metrics[metrics["pool"] == "all"]
    acc = _accuracies(metrics, "the multi-task metrics")
    fmt = {"lam": "as configured" if lam is None else f"{lam:g}"}
    return [
        _expert_best(acc),
        _above("task_arithmetic_above_pretrained", acc, TASK_ARITHMETIC, PRETRAINED, TASK_AVERAGE,
               f"{TASK_ARITHMETIC} (lambda {fmt['lam']})", **fmt),
        _above("weight_average_above_pretrained", acc, WEIGHT_AVERAGE, PRETRAINED, TASK_AVERAGE, WEIGHT_AVERAGE),
        _regmean_differs(acc, correct),
        _own_expert_largest(coefficients),
    ]


def premise_rows(robust: pd.DataFrame | None = None, multitask: pd.DataFrame | None = None, *, backbone: str = "",
                 id_dataset: str = "", coefficients: pd.DataFrame | None = None, correct: Mapping | None = None,
                 lam: float | None = None) -> pd.DataFrame:
    """Every premise check as tidy rows (:data:`COLUMNS`): ``passed`` True, False, or missing where the numbers a
    check needs are not there (its ``detail`` says which); ``margin`` in the check's unit (:data:`CHECKS`); ``detail``
    the numbers compared. The robust checks need ``robust`` (:func:`robust_checks`), the multi-task ones
    ``multitask`` (:func:`multitask_checks`); a suite without one part has no rows for it."""
    rows = []
    if robust is not None:
        rows += robust_checks(robust, backbone=backbone, id_dataset=id_dataset)
    if multitask is not None:
        rows += multitask_checks(multitask, coefficients=coefficients, correct=correct, lam=lam)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["passed"] = df["passed"].astype("boolean")
    return df


def write(rows: pd.DataFrame, path: str | Path) -> None:
    rows.to_csv(path, index=False, float_format="%.4f")


def read(path: str | Path) -> pd.DataFrame:
    """A premises CSV (:func:`write`) with ``passed`` as a nullable boolean."""
    df = pd.read_csv(path, dtype={"passed": "boolean", "detail": str})
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{path}: not a premises table (no column {sorted(missing)}); delete it and rerun snakemake "
                         "(rule premises_files rebuilds it)")
    return df


def result(passed) -> str:
    """How a check's outcome is printed."""
    if passed is None or passed is pd.NA or (isinstance(passed, float) and np.isnan(passed)):
        return "not checked"
    return "pass" if bool(passed) else "FAIL"


NOTE = ("What the paper's comparisons take for granted, checked on our numbers (dawin.report.premises; also in "
        "premises.csv). A failed premise changes what the table that rests on it shows.")


def printed(rows: pd.DataFrame) -> pd.DataFrame:
    """The checks as the reproduction page prints them: premise, result (pass, FAIL, not checked) and the numbers;
    the page's note on them in ``attrs["note"]``."""
    out = pd.DataFrame({"premise": rows["premise"].tolist(), "result": [result(p) for p in rows["passed"]],
                        "numbers": rows["detail"].tolist()})
    out.attrs["note"] = NOTE
    return out


def _margin(check: str, margin: float) -> str:
    if np.isnan(margin):
        return ""
    unit = CHECKS[check].unit if check in CHECKS else "points"
    return {"images": f"{int(margin)} images", "coefficient": f"{margin:+.3f}"}.get(unit, f"{margin:+.2f}")


def seed_grid(by_seed: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """{seed: premise rows} -> one row per seed, one column per check (in :data:`CHECKS` order): the result and its
    margin, e.g. ``pass (+35.20)``, ``FAIL (0 images)``."""
    cells = {}
    for seed, rows in by_seed.items():
        cells[seed] = {c: f"{result(p)} ({_margin(c, m)})" if _margin(c, m) else result(p)
                       for c, p, m in zip(rows["check"], rows["passed"], rows["margin"])}
    grid = pd.DataFrame.from_dict(cells, orient="index")
    grid = grid[[c for c in CHECKS if c in grid.columns] + [c for c in grid.columns if c not in CHECKS]].fillna("—")
    grid.index.name = "seed"
    return grid


def seed_rows(by_seed: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """{seed: premise rows} -> one tidy frame with a ``seed`` column first."""
    frames = [rows.assign(seed=seed)[["seed", *COLUMNS]] for seed, rows in by_seed.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["seed", *COLUMNS])


def seed_markdown(by_seed: Mapping[int, pd.DataFrame], seeds: Sequence[int] | None = None) -> str:
    """The premise checks under each seed as Markdown: the seed x check grid (result and margin), the premises it
    abbreviates, and each seed's numbers."""
    seeds = list(by_seed) if seeds is None else list(seeds)
    by_seed = {s: by_seed[s] for s in seeds}
    grid = seed_grid(by_seed)
    premises = {c: p for rows in by_seed.values() for c, p in zip(rows["check"], rows["premise"])}
    parts = ["## Premise checks\n",
             "Result per seed and check, with its margin (accuracy points, test images whose correctness differs, "
             "or coefficient); the checks:\n",
             "\n".join(f"- `{c}`: {premises[c]}" for c in grid.columns) + "\n",
             grid.reset_index().to_markdown(index=False) + "\n"]
    for seed, rows in by_seed.items():
        parts.append(f"### Seed {seed}\n\n" + printed(rows).to_markdown(index=False) + "\n")
    return "\n".join(parts)
