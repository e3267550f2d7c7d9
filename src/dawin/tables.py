"""Tidy result tables and their renderings (CSV, Markdown, LaTeX, HTML).

Long format: one row per (suite, backbone, method, dataset, metric, value); ``ood_avg`` is the mean over
the OOD test sets. Wide renderings put methods in rows and datasets in columns, in a fixed order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .registry import METHOD_LABELS

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


def wide(df: pd.DataFrame, methods: Sequence[str], datasets: Sequence[str], metric: str = "accuracy") -> pd.DataFrame:
    sub = df[df.metric == metric].pivot_table(index="method", columns="dataset", values="value", aggfunc="first")
    table = sub.reindex(index=list(methods), columns=list(datasets))
    table.index = [METHOD_LABELS.get(m, m) for m in table.index]
    table.index.name = "Method"
    return table


def write_table(df: pd.DataFrame, table: pd.DataFrame, stem: str | Path, caption: str) -> None:
    """Write ``stem``.csv (tidy), .md, .tex and .html (wide, two decimals)."""
    stem = str(stem)
    df.to_csv(stem + ".csv", index=False, float_format="%.4f")
    Path(stem + ".md").write_text(f"{caption}\n\n" + table.to_markdown(floatfmt=".2f") + "\n")
    Path(stem + ".tex").write_text(table.to_latex(float_format="%.2f", caption=caption, na_rep="--"))
    Path(stem + ".html").write_text(f"<p>{caption}</p>\n" + table.to_html(float_format="%.2f", na_rep="--") + "\n")
