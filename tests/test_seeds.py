"""The demo's spread over seeds (dawin.demo.seeds): moved configs, the per-cell summary, the nested run's plan."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dawin.demo.seeds import PREMISES, TABLES, markdown, seed_config, spread

REPO = Path(__file__).resolve().parents[1]


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_a_seeds_config_moves_every_demo_path_and_only_those():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    moved = seed_config(config, 7)
    assert moved["seed"] == 7 and config["seed"] == 0  # the caller's config is left as it was
    assert moved["results"] == "results/demo-seed7" and moved["demo"]["resources"] == "resources/demo-seed7"
    assert moved["backbones"]["tiny"]["finetuned"] == "resources/demo-seed7/checkpoints/tiny/finetuned.safetensors"
    paths = list(_strings(moved))
    assert not [s for s in paths if s.startswith(("resources/demo/", "results/demo/"))]
    assert sum(s.startswith("resources/demo-seed7/") for s in paths) >= 10  # datasets, checkpoints, experts
    unchanged = {k: v for k, v in config.items() if k not in ("seed", "results", "demo", "backbones", "datasets", "multitask")}
    assert {k: moved[k] for k in unchanged} == unchanged


def test_the_spread_of_each_cell_is_its_mean_and_sample_deviation(tmp_path):
    values = {0: (50.0, 10.0), 1: (52.0, 14.0), 2: (57.0, 15.0)}
    tables = {}
    for seed, (t2, t6) in values.items():
        tables[seed] = {}
        for table, value, extra in (("table2", t2, {}), ("table6", t6, {"pool": "all"})):
            path = tmp_path / f"{seed}-{table}.csv"
            pd.DataFrame([{"suite": "demo", "backbone": "tiny", "method": "dawin", "dataset": "in", "metric": "accuracy",
                           "value": value, **extra}]).to_csv(path, index=False)
            tables[seed][table] = path
        tables[seed][PREMISES] = tmp_path / "premises.csv"  # reported per seed (dawin.report.premises), not spread
    pd.DataFrame([{"check": "ft_above_zs_id", "premise": "FT above ZS", "passed": True, "margin": 30.0,
                   "detail": "..."}]).to_csv(tmp_path / "premises.csv", index=False)
    out = spread(tables).set_index("table")
    assert set(out.index) == set(TABLES)
    assert out.loc["table2", "n"] == 3 and out.loc["table2", "mean"] == pytest.approx(53.0)
    assert out.loc["table2", "std"] == pytest.approx(((9 + 1 + 16) / 2) ** 0.5)  # ddof 1, by hand
    assert (out.loc["table6", "min"], out.loc["table6", "max"], out.loc["table6", "pool"]) == (10.0, 15.0, "all")
    page = markdown(spread(tables), [0, 1, 2]).splitlines()
    assert page[page.index("## table2") + 2].split() == ["|", "method", "|", "in", "|"]
    assert page[page.index("## table6") + 2].split() == ["|", "method", "|", "pool", "|", "in", "|"]  # its own column
    assert [c.strip() for c in page[page.index("## table2") + 4].split("|")[1:3]] == ["dawin", "53.00 ± 3.61"]


def test_a_seeds_config_plans_the_whole_demo_in_its_own_folders(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg = tmp_path / "seed.yaml"
    cfg.write_text(yaml.safe_dump(seed_config(config, 3)))
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                           "-n", "--cores", "2", *TABLES, PREMISES, "--configfile", str(cfg)], capture_output=True,
                          text=True)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "resources/demo-seed3/checkpoints/tiny/clip.safetensors" in plan.stdout
    assert "results/demo-seed3/tables/table6.csv" in plan.stdout and "results/demo/" not in plan.stdout
    assert "results/demo-seed3/premises.csv" in plan.stdout  # every seed's premise checks
