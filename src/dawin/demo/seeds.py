"""The demo's spread over seeds: its Tables 2 and 6 rebuilt under other seeds, summarised per cell.

One run of the demo is bit-identical from run to run on one machine (threads and CPU kernels pinned:
:data:`dawin.runtime.CPU_KERNELS`), but its models are tiny and trained for a minute on synthetic data, so the
seed (data, pre-training, fine-tuning, experts, mixture fits) moves its numbers by points, and whether the pins
give the same bytes on every x86 processor is not verified. ``snakemake seeds`` (not part of ``all``) runs the
demo once per seed of ``demo.seeds``, each in folders of its own (:func:`seed_config`), and writes the mean,
standard deviation, minimum and maximum of every cell of those tables (:func:`spread`): the scale against which
a difference between two machines' demo numbers is to be read; and each seed's premise checks
(:data:`PREMISES`, ``dawin.report.premises``): whether the demo's world keeps the paper's premises under every seed.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import yaml

TABLES = ("table2", "table6")
"""The tables the spread covers: the robust fine-tuning and the multi-task comparison of every method."""
PREMISES = "premises"
"""The target of the premise checks, built by every nested run beside :data:`TABLES`."""


def seed_config(config: Mapping, seed: int) -> dict:
    """The config of the demo under ``seed``: every path under the demo's resources or results moved to a
    ``-seed<seed>`` folder of its own (the runs share no file with each other or with the main demo)."""
    roots = [config["demo"]["resources"], config["results"]]

    def move(value):
        if isinstance(value, str):
            for root in roots:
                if value == root or value.startswith(f"{root}/"):
                    return f"{root}-seed{seed}{value[len(root):]}"
            return value
        if isinstance(value, Mapping):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    out = move(copy.deepcopy(dict(config)))
    out["seed"] = seed
    return out


def run_seed(config: Mapping, seed: int, snakefile: str | Path, workdir: str | Path, cores: int, log: str | Path) -> dict[str, Path]:
    """Build the demo's :data:`TABLES` and :data:`PREMISES` under ``seed`` with Snakemake (a nested run: its own
    results, no lock on the caller's); its output goes to ``log``. Returns {table: tidy CSV, "premises": CSV}."""
    cfg = seed_config(config, seed)
    results = Path(workdir) / cfg["results"]
    results.mkdir(parents=True, exist_ok=True)
    cfg_path = results / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir), "--cores", str(cores),
           "--nolock", *TABLES, PREMISES, "--configfile", str(cfg_path)]
    with open(log, "w") as stream:
        done = subprocess.run(cmd, stdout=stream, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"the demo under seed {seed} failed (exit {done.returncode}); its Snakemake output is in "
                           f"{log}, its config in {cfg_path}")
    return {**{t: results / "tables" / f"{t}.csv" for t in TABLES}, PREMISES: results / "premises.csv"}


def spread(tables: Mapping[int, Mapping[str, str | Path]]) -> pd.DataFrame:
    """{seed: {table: tidy CSV}} -> one row per cell (table and every column but ``value``): ``n`` seeds, ``mean``,
    ``std`` (sample standard deviation, ddof 1; NaN for one seed), ``min`` and ``max`` of the value (of
    :data:`TABLES`; the premise checks are reported per seed, not averaged)."""
    frames = [pd.read_csv(path).assign(table=table, seed=seed) for seed, paths in tables.items()
              for table, path in paths.items() if table in TABLES]
    df = pd.concat(frames, ignore_index=True)
    if "pool" in df:  # Table 6 only
        df["pool"] = df["pool"].fillna("")
    keys = ["table", *[c for c in df.columns if c not in ("table", "seed", "value")]]
    grouped = df.groupby(keys, sort=False)["value"]
    return grouped.agg(n="count", mean="mean", std="std", min="min", max="max").reset_index()


def markdown(summary: pd.DataFrame, seeds: Sequence[int]) -> str:
    """The spread as Markdown: per table, a method (and pool) x dataset grid of "mean ± std" (accuracy rows),
    averages last."""
    parts = [f"# The demo over seeds {', '.join(map(str, seeds))}\n",
             "Mean ± sample standard deviation over the seeds, accuracy in %; the tidy numbers (with min, max and "
             "every metric) are in spread.csv.\n"]
    for table, sub in summary[summary.metric == "accuracy"].groupby("table", sort=False):
        sub = sub.assign(cell=[f"{m:.2f} ± {s:.2f}" for m, s in zip(sub["mean"], sub["std"].fillna(0.0))])
        index = ["method", "pool"] if "pool" in sub and (sub["pool"] != "").any() else ["method"]
        grid = sub.pivot_table(index=index, columns="dataset", values="cell", aggfunc="first", sort=False)
        averages = [c for c in grid.columns if c.endswith("avg")]  # `avg`, `ood_avg`: last, as in the tables
        grid = grid[[c for c in grid.columns if c not in averages] + averages].reset_index()
        parts.append(f"## {table}\n\n{grid.to_markdown(index=False)}\n")
    return "\n".join(parts)
