"""Tidy results from the workflow's files: per-backbone metrics CSVs and merged-model evaluations.

Every table and figure reads its numbers through :func:`collect`, so a method's accuracy is computed in
one place: from the predictions stored by the merged-model evaluation, or from the metrics rule's CSV.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from .tidy import COLUMNS, tidy, with_ood_average
from ..tensorio import load_arrays
from .uncertainty import accuracy_interval, paired_difference
from ..registry import method_name


def merged_rows(paths: Iterable[str | Path], suite: str, backbone_of) -> list[dict]:
    """Accuracy, mean output entropy and number of distinct merged models of each merged evaluation file.

    ``backbone_of(path)`` names the backbone (paths are ``merged/{backbone}/{kind}/{assignment}/{dataset}``).
    """
    rows = []
    for path in paths:
        arrays, meta = load_arrays(path)  # pred, cross_entropy, entropy, labels, coefficients
        method = method_name(meta["kind"], meta["assignment"])
        acc = float(np.mean(arrays["pred"] == arrays["labels"]) * 100)
        base = dict(suite=suite, backbone=backbone_of(path), method=method, dataset=meta["dataset"])
        rows.append({**base, "metric": "accuracy", "value": acc})
        rows.append({**base, "metric": "entropy", "value": float(arrays["entropy"].astype(np.float64).mean())})
        rows.append({**base, "metric": "merged_models", "value": float(len(np.unique(arrays["coefficients"])))})
    return rows


def backbone_from_path(path: str | Path) -> str:
    """The backbone of a results path ``.../<tree>/{backbone}/...`` (merged, metrics, logits, wise_ft)."""
    parts = Path(path).parts
    for tree in ("merged", "logits", "wise_ft", "coefficients", "profile", "analysis"):
        if tree in parts:
            return parts[parts.index(tree) + 1]
    if "metrics" in parts:
        i = parts.index("metrics")
        return Path(parts[i + 1]).name.split(".")[0]
    raise ValueError(f"cannot tell the backbone of {path}")


def collect(csvs: Sequence[str | Path] = (), merged: Sequence[str | Path] = (), suite: str = "",
            ood: Sequence[str] = ()) -> pd.DataFrame:
    """One tidy frame of metrics CSVs and merged evaluations; merged methods get their OOD average."""
    frames = [pd.read_csv(f) for f in csvs]
    if merged:
        m = tidy(merged_rows(merged, suite, backbone_from_path))
        acc = m[m.metric == "accuracy"]
        if ood:
            acc = with_ood_average(acc, ood)
        frames += [acc, m[m.metric != "accuracy"]]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    columns = [*COLUMNS, "pool"] if "pool" in df else COLUMNS  # multi-task results name their model pool
    return df[columns].drop_duplicates(subset=[c for c in columns if c != "value"], keep="first").reset_index(drop=True)


def correctness(correct_files: Sequence[str | Path] = (), merged: Sequence[str | Path] = ()
                ) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """{(backbone, method): {dataset: per-sample correctness}} of the metrics' and soups' ``*.correct``
    files (keys ``<method>/<dataset>``) and of merged evaluations (their predictions against the labels)."""
    out: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for path in correct_files:
        arrays, _ = load_arrays(path)
        for key, c in arrays.items():
            method, dataset = key.split("/", 1)
            out.setdefault((backbone_from_path(path), method), {})[dataset] = c.astype(bool)
    for path in merged:
        arrays, meta = load_arrays(path, ["pred", "labels"])
        key = backbone_from_path(path), method_name(meta["kind"], meta["assignment"])
        out.setdefault(key, {})[meta["dataset"]] = arrays["pred"] == arrays["labels"]
    return out


def write_pool_correctness(path: str | Path, correct: Mapping[str, Mapping[str, ArrayLike]], *, backbone: str,
                           pool: str) -> None:
    """Write the per-sample correctness of a multi-task model pool's evaluations, ``{method: {task: 0/1 vector in
    test-set order}}``, as the robust metrics' ``*.correct`` files hold theirs: keys ``<method>/<task>`` (uint8),
    metadata the backbone, the pool and its tasks. :func:`pool_correctness` reads it."""
    import torch

    from ..tensorio import save_tensors

    tensors = {f"{m}/{t}": torch.as_tensor(np.asarray(c)).to(torch.uint8) for m, tasks in correct.items()
               for t, c in tasks.items()}
    tasks = sorted({t for by_task in correct.values() for t in by_task})
    save_tensors(path, tensors, {"backbone": backbone, "pool": pool, "tasks": ",".join(tasks)})


def pool_correctness(paths: Sequence[str | Path]) -> dict[str, dict[tuple[str, str], dict[str, np.ndarray]]]:
    """{pool: {(backbone, method): {task: per-sample correctness}}} of multi-task correctness files
    (:func:`write_pool_correctness`: the pool jobs' ``multitask/<pool>/correct.safetensors`` and the individuals'
    ``multitask/individual.correct.safetensors``), the shape :func:`interval_rows` takes per pool."""
    out: dict[str, dict[tuple[str, str], dict[str, np.ndarray]]] = {}
    for path in paths:
        arrays, meta = load_arrays(path)
        missing = [k for k in ("backbone", "pool") if k not in meta]
        if missing:
            raise ValueError(f"{path}: no {' and no '.join(missing)} in its metadata, so it is not a multi-task "
                             "correctness file (dawin.report.results.write_pool_correctness writes them); delete it "
                             "and rerun snakemake, which rebuilds it")
        for key, c in arrays.items():
            method, task = key.split("/", 1)
            sets = out.setdefault(meta["pool"], {}).setdefault((meta["backbone"], method), {})
            if task in sets:
                raise ValueError(f"{path}: {method} on {task} of pool {meta['pool']} is also in another correctness "
                                 "file; a table takes each pool's files once")
            sets[task] = c.astype(bool)
    return out


INTERVAL_METRICS = ("accuracy_low", "accuracy_high")
"""The bounds of each accuracy's 95 % bootstrap interval (``dawin.report.uncertainty``), as tidy metrics."""


def _averages(datasets: Sequence[str], ood: Sequence[str], average: str = "ood_avg") -> list[tuple[str, list[str]]]:
    """Each test set on its own, and the average over ``ood`` (named ``average``) when every set of it is there."""
    return [(d, [d]) for d in datasets] + ([(average, list(ood))] if ood and set(ood) <= set(datasets) else [])


def interval_rows(correct: Mapping[tuple[str, str], Mapping[str, np.ndarray]], ood: Sequence[str], suite: str,
                  seed: int = 0, average: str = "ood_avg") -> pd.DataFrame:
    """Tidy ``accuracy_low`` / ``accuracy_high`` rows: the 95 % bootstrap interval of every accuracy in
    ``correct``, per test set and for the average over ``ood`` (each set resampled on its own), named ``average``
    (``avg``: the multi-task average over tasks)."""
    rows = []
    for (backbone, method), sets in correct.items():
        for name, datasets in _averages(list(sets), ood, average):
            low, high = accuracy_interval(sets, datasets, seed=seed)
            base = dict(suite=suite, backbone=backbone, method=method, dataset=name)
            rows += [{**base, "metric": "accuracy_low", "value": low}, {**base, "metric": "accuracy_high", "value": high}]
    return tidy(rows)


def paired_metrics(other: str) -> tuple[str, ...]:
    """The tidy metrics of a paired comparison with method ``other``."""
    return tuple(f"minus_{other}{suffix}" for suffix in ("", "_low", "_high", "_p_not_better"))


def paired_rows(correct: Mapping[tuple[str, str], Mapping[str, np.ndarray]], method: str, others: Sequence[str],
                ood: Sequence[str], suite: str, seed: int = 0, average: str = "ood_avg") -> pd.DataFrame:
    """Tidy rows of ``method`` minus each of ``others`` (points) per test set and the average over ``ood`` (named
    ``average``), with the paired bootstrap interval and the share of resamples where ``method`` is not better
    (``paired_metrics``)."""
    rows = []
    for (backbone, m), sets in correct.items():
        if m != method:
            continue
        for other in others:
            if (backbone, other) not in correct:
                continue
            theirs = correct[backbone, other]
            for name, datasets in _averages([d for d in sets if d in theirs], ood, average):
                r = paired_difference(sets, theirs, datasets, seed=seed)
                base = dict(suite=suite, backbone=backbone, method=method, dataset=name)
                rows += [{**base, "metric": k, "value": r[v]}
                         for k, v in zip(paired_metrics(other), ("difference", "low", "high", "p_not_better"))]
    return tidy(rows)
