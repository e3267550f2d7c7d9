"""Tidy results from the workflow's files: per-backbone metrics CSVs and merged-model evaluations.

Every table and figure reads its numbers through :func:`collect`, so a method's accuracy is computed in
one place: from the predictions stored by the merged-model evaluation, or from the metrics rule's CSV.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .tables import COLUMNS, tidy, with_ood_average
from .tensorio import load_arrays
from .registry import method_name


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
