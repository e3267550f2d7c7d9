"""The workflow through Snakemake on a smaller variant of the demo config (tests/data/small.yaml)."""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = [str(REPO / "config/config.yaml"), str(REPO / "tests/data/small.yaml")]

pytestmark = pytest.mark.workflow


def snakemake(workdir, *args, extra_config=None, profile=None):
    configs = list(BASE)
    if extra_config is not None:
        path = Path(workdir).parent / f"extra-{abs(hash(str(extra_config)))}.yaml"
        path.write_text(yaml.safe_dump(extra_config))
        configs.append(str(path))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--configfile", *configs]
    if profile:
        cmd += ["--profile", str(REPO / "profiles" / profile)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=3600)


def job_counts(out: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run as {rule: count}."""
    block = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf") / "run"
    wd.mkdir()
    res = snakemake(wd)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return wd


TABLES = ["table1", "table2", "table3", "table4", "table5", "table6", "table_a", "table_b", "table_c", "table_d",
          "table_e", "table_f", "table_g"]
FIGURES = ["fig1", "fig2", "fig_c", "fig_d", "fig_e", "fig4", "fig_a", "fig5", "fig6", "fig7", "fig_f", "fig_g", "fig_h",
           "fig8", "fig_b"]


def test_demo_builds_every_table_and_figure(workdir):
    res = workdir / "results/demo"
    for t in TABLES:
        df = pd.read_csv(res / f"tables/{t}.csv")
        tidy = ["suite", "backbone", "method", "dataset", "metric", "value"]
        assert df.columns.tolist() == tidy + (["pool"] if t in ("table6", "table_g") else []), t
        assert len(df) and df.value.notna().all(), t
        for ext in ("md", "tex", "html"):
            assert (res / f"tables/{t}.{ext}").stat().st_size > 0, (t, ext)
    for f in FIGURES:
        for ext in ("png", "pdf"):
            assert (res / f"figures/{f}.{ext}").stat().st_size > 1000, (f, ext)
    page = (res / "reproduction.md").read_text()
    assert all(f"## Table {t.removeprefix('table').removeprefix('_').upper()}" in page for t in TABLES)
    assert (res / "reproduction.html").stat().st_size > 0


def test_table2_has_every_method_with_costs(workdir):
    df = pd.read_csv(workdir / "results/demo/tables/table2.csv")
    acc = df[df.metric == "accuracy"]
    methods = {"zeroshot", "finetuned", "output_ensemble", "wise_ft", "uniform_soup", "greedy_soup", "model_stock",
               "dawin_per_sample", "dawin"}
    assert set(acc.method) == methods
    assert set(acc.dataset) == {"in", "v2", "r", "a", "sketch", "objectnet", "ood_avg"}
    assert len(acc) == len(methods) * 7 and acc.value.between(0, 100).all()
    cost = df[df.metric == "cost_t"].set_index("method").value
    assert cost["uniform_soup"] == 4 and cost["model_stock"] == 2 and cost["dawin"] == 1  # the configured runs
    cost_i = df[df.metric == "cost_i"].set_index("method").value
    assert 3 <= cost_i["dawin"] <= 2 + 2 and cost_i["dawin_per_sample"] > 40  # K=2 clusters; one model per sample
    md = (workdir / "results/demo/tables/table2.md").read_text()
    assert "78.70" in md  # the paper's DaWin ID accuracy beside ours
    # the cache records the checkpoint it was computed with
    from dawin.logits import load_logits
    _, _, meta = load_logits(workdir / "results/demo/logits/tiny/finetuned/in.safetensors")
    assert len(meta["checkpoint_sha256"]) == 64 and meta["n_images"] == "60"
    for rule in ("cache_logits", "coefficients", "merged_eval", "soup", "profile"):
        assert any((workdir / "results/demo/logs" / rule).rglob("*.log")), f"no log for {rule}"


def test_multitask_tables_have_every_method_and_pool(workdir):
    res = workdir / "results/demo"
    df = pd.read_csv(res / "tables/table6.csv")
    methods = {"pretrained", "individual", "weight_average", "fisher", "regmean", "task_arithmetic", "ties",
               "adamerging_task", "adamerging_layer", "adamerging_pp_layer", "opcm", "task_arithmetic_grid", "dawin"}
    assert set(df.method) == methods and set(df.pool) == {"all"}
    tasks = {"angular", "colour", "count", "direction", "position", "round", "scene", "texture"}
    assert set(df.dataset) == tasks | {"avg"} and df.value.between(0, 100).all()
    acc = df.set_index(["method", "dataset"]).value
    assert acc["individual", "avg"] > acc["pretrained", "avg"]  # the experts learned their tasks
    g = pd.read_csv(res / "tables/table_g.csv")
    assert set(g.pool) == {"count+round", "count+round+colour", "count+round+colour+position", "colour+position"}
    assert set(g.method) == {"task_arithmetic", "adamerging_pp_layer", "dawin"}
    assert set(g[g.pool == "colour+position"].dataset) == {"colour"}  # evaluated on the pool tasks it holds
    coef = pd.read_csv(res / "multitask/all/dawin_coefficients.csv")
    assert len(coef) == 64 and abs(coef.groupby("task").coefficient.sum() - 1).max() < 1e-5  # 6 digits in the CSV
    assert "MMD" in (res / "logs/multitask_distances.log").read_text()


def test_figures_are_byte_identical_when_redrawn(workdir):
    figs = sorted((workdir / "results/demo/figures").glob("*.*"))
    before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in figs}
    res = snakemake(workdir, "--forcerun", *[f"{f}_files" for f in FIGURES])
    assert res.returncode == 0, res.stderr[-3000:]
    after = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in figs}
    assert len(before) == 2 * len(FIGURES) and before == after


def test_second_run_does_nothing(workdir):
    res = snakemake(workdir, "-n")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr


def test_report_collects_tables_and_figures(workdir):
    res = snakemake(workdir, "--report", "report.zip")
    assert res.returncode == 0, res.stderr[-3000:]
    import zipfile
    names = zipfile.ZipFile(workdir / "report.zip").namelist()
    assert sum(n.endswith("table2.html") for n in names) == 1 and sum(n.endswith("fig_b.png") for n in names) == 1


def test_config_typo_names_the_key(workdir):
    res = snakemake(workdir, "-n", extra_config={"mixture": {"n_restrats": 2}})
    assert res.returncode != 0 and "n_restrats" in res.stdout + res.stderr


def test_missing_checkpoint_names_the_path(workdir):
    res = snakemake(workdir, "-n", extra_config={"backbones": {"tiny": {"finetuned": "ckpt/missing-ft.safetensors"}}})
    assert res.returncode != 0 and "ckpt/missing-ft.safetensors" in res.stdout + res.stderr


def test_slurm_profile_plans_without_a_cluster(workdir):
    res = snakemake(workdir, "-n", "--forceall", profile="slurm")
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout)["cache_logits"] == 39  # 7 sets x (ZS, FT, average) + 6 test sets x 3 soups


def test_lint_passes():
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile")], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def planned_reasons(out: str) -> dict[str, set[str]]:
    """{rule: its jobs' reason lines} of a dry run."""
    reasons: dict[str, set[str]] = {}
    for m in re.finditer(r"^(?:local)?rule (\w+):\n(.*?)(?:\n\n|\Z)", out, re.M | re.S):
        line = re.search(r"^\s*reason: (.*)$", m.group(2), re.M)
        reasons.setdefault(m.group(1), set()).add(line.group(1) if line else "")
    return reasons


@pytest.mark.parametrize("module, direct, downstream, untouched", [
    # reached by one script only, deep in the graph
    ("calibration.py", {"temperatures"}, {"coefficients", "merged_eval", "table2_files"},
     {"cache_logits", "wise_ft_sweep", "soup", "zeroshot_head", "multitask_merge", "demo_pretrain"}),
    # the merging registry's OPCM module (imported by the registry, once a lazy importlib entry); multitask_dawin's
    # script reaches it too, but its reason names only its first cause, the logits multitask_logits rewrites
    ("merging/opcm.py", {"multitask_logits", "multitask_merge"}, {"multitask_dawin", "table6_files"},
     {"cache_logits", "temperatures", "coefficients", "merged_eval", "demo_task_expert"}),
])
def test_changed_module_reruns_the_rules_whose_scripts_reach_it(workdir, module, direct, downstream, untouched):
    path = REPO / "src/dawin" / module
    text, st = path.read_bytes(), path.stat()
    try:  # an edit (Snakemake compares small inputs by checksum: a touch alone reruns nothing)
        path.write_bytes(text + b"\n# an edit\n")
        os.utime(path, ns=(st.st_atime_ns, time.time_ns() + 10**9))
        plan = snakemake(workdir, "-n")
    finally:
        path.write_bytes(text)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert plan.returncode == 0, plan.stderr[-3000:]
    reasons = planned_reasons(plan.stdout)
    assert {r for r, why in reasons.items() if any(module in w for w in why)} == direct
    assert downstream <= set(reasons) and not untouched & set(reasons)


def test_changed_mixture_reruns_only_the_mixture_and_what_follows(workdir):
    # keep last: it changes the module's workdir
    change = {"backbones": {"tiny": {"n_components": 3}}}
    plan = snakemake(workdir, "-n", extra_config=change)
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = job_counts(plan.stdout)
    # every mixture variant (17 of the 19 merged evaluations: not the two per-sample ones) and the profile
    assert counts.pop("merged_eval") == 17 and counts.pop("profile") == 1
    assert not {"cache_logits", "coefficients", "metrics", "wise_ft_sweep", "soup", "temperatures"} & set(counts)
    per_sample = workdir / "results/demo/merged/tiny/entropy/per_sample/in.safetensors"
    logits = workdir / "results/demo/logits/tiny/zeroshot/in.safetensors"
    before = per_sample.stat().st_mtime_ns, logits.stat().st_mtime_ns
    assert snakemake(workdir, extra_config=change).returncode == 0
    assert (per_sample.stat().st_mtime_ns, logits.stat().st_mtime_ns) == before
    report = json.loads((workdir / "results/demo/merged/tiny/entropy/mixture/assignment.json").read_text())
    assert all(1 <= r["distinct"] <= 3 for r in report.values())


def test_paper_suite_plans_every_target_with_no_data(tmp_path):
    """config/paper.yaml validates against the same schema and plans everything on an empty machine."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(REPO / "config/paper.yaml"), "-n", "all", "paper_inputs"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    counts = job_counts(res.stdout)
    assert {k: counts.pop(k) for k in [k for k in counts if k.endswith("_files")]} == {
        f"{t}_files": 1 for t in [*TABLES, *FIGURES, "reproduction"]}
    assert counts == {
        # 7 robust-fine-tuning sets (fetched by localrules, extracted by jobs), 8 multi-task sets (localrules)
        "fetch_dataset": 7, "paper_dataset": 7, "multitask_dataset": 8,
        # + OpenAI's three CLIP releases and task_vectors' zeroshot.pt (the pool's theta0)
        "fetch_checkpoint": 95, "fetch_hf_model": 9, "convert_checkpoint": 95, "zeroshot_head": 11,
        "zeroshot_model": 3, "cache_logits": 81, "soup": 3, "soup_metrics": 1, "temperatures": 3, "wise_ft_sweep": 21,
        "metrics": 3, "optimality": 1, "profile": 1,
        # B/32: 14 kinds, 31 (kind, assignment) pairs; B/16 and L/14 (Tables 3-5, A, Figures 4, A): 2 kinds, 12 pairs
        "coefficients": 18, "merged_eval": 55,
        "multitask_train_split": 8, "multitask_logits": 8, "multitask_merge": 19, "multitask_dawin": 5,
        "multitask_metrics": 1,
        "multitask_distances": 1, "paper_inputs": 1, "all": 1,
    }
    assert "demo_" not in res.stdout  # the paper suite replaces the demo config, it does not merge into it
