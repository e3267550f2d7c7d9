"""Tidy result tables: one row per (suite, backbone, method, dataset, metric, value); ``ood_avg`` is the mean
over the OOD test sets. The paper's wide renderings are :mod:`dawin.report.paper_tables`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

COLUMNS = ["suite", "backbone", "method", "dataset", "metric", "value"]


def tidy(rows: Sequence[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    if df[COLUMNS[:-1]].duplicated().any():
        raise ValueError("duplicate (suite, backbone, method, dataset, metric) rows")
    return df


def with_ood_average(df: pd.DataFrame, ood: Sequence[str]) -> pd.DataFrame:
    """Append ``ood_avg`` rows: the mean over exactly the OOD datasets (all must be present)."""
    keys = ["suite", "backbone", "method", "metric"]
    sub = df[df.dataset.isin(ood)]
    counts = sub.groupby(keys).dataset.nunique()
    if (counts != len(ood)).any():
        raise ValueError(f"OOD average needs all of {list(ood)}; some methods miss some")
    avg = sub.groupby(keys, as_index=False).value.mean().assign(dataset="ood_avg")
    return pd.concat([df, avg[COLUMNS]], ignore_index=True)
