"""The workflow through Snakemake on a smaller variant of the demo config (tests/data/small.yaml)."""

import re
import subprocess
import sys
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
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=1200)


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


def test_demo_builds_table2_and_fig4(workdir):
    res = workdir / "results/demo"
    df = pd.read_csv(res / "tables/table2.csv")
    assert df.columns.tolist() == ["suite", "backbone", "method", "dataset", "metric", "value"]
    methods = {"zeroshot", "finetuned", "output_ensemble", "wise_ft", "dawin_per_sample", "dawin"}
    assert set(df.method) == methods
    assert set(df.dataset) == {"in", "v2", "r", "a", "sketch", "objectnet", "ood_avg"}
    assert len(df) == len(methods) * 7 and df.value.between(0, 100).all()
    for ext in ("md", "tex", "html"):
        assert (res / f"tables/table2.{ext}").stat().st_size > 0
    for ext in ("png", "pdf"):
        assert (res / f"figures/fig4.{ext}").stat().st_size > 1000
    # the cache records the checkpoint it was computed with
    from dawin.logits import load_logits
    _, _, meta = load_logits(res / "logits/tiny/finetuned/in.safetensors")
    assert len(meta["checkpoint_sha256"]) == 64 and meta["n_images"] == "60"
    for rule in ("cache_logits", "beta_mixture", "merged_eval"):
        assert any((res / "logs" / rule).rglob("*.log")), f"no log for {rule}"


def test_second_run_does_nothing(workdir):
    res = snakemake(workdir, "-n")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr


def test_config_typo_names_the_key(workdir):
    res = snakemake(workdir, "-n", extra_config={"mixture": {"n_restrats": 2}})
    assert res.returncode != 0 and "n_restrats" in res.stdout + res.stderr


def test_missing_checkpoint_names_the_path(workdir):
    res = snakemake(workdir, "-n", extra_config={"backbones": {"tiny": {"finetuned": "ckpt/missing-ft.safetensors"}}})
    assert res.returncode != 0 and "ckpt/missing-ft.safetensors" in res.stdout + res.stderr


def test_slurm_profile_plans_without_a_cluster(workdir):
    res = snakemake(workdir, "-n", "--forceall", profile="slurm")
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout)["cache_logits"] == 14


def test_lint_passes():
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile")], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_changed_mixture_reruns_only_the_mixture_and_what_follows(workdir):
    # keep last: it changes the module's workdir
    change = {"backbones": {"tiny": {"n_components": 3}}}
    plan = snakemake(workdir, "-n", extra_config=change)
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = job_counts(plan.stdout)
    assert counts == {"beta_mixture": 6, "merged_eval": 6, "metrics": 1, "table2_files": 1, "fig4_files": 1, "all": 1}
    logits = workdir / "results/demo/logits/tiny/zeroshot/in.safetensors"
    before = logits.stat().st_mtime_ns
    assert snakemake(workdir, extra_config=change).returncode == 0
    assert logits.stat().st_mtime_ns == before
    mix = yaml.safe_load((workdir / "results/demo/mixtures/tiny/in.json").read_text())
    assert len(mix["cluster_coefficients"]) <= 3 and len(set(mix["membership"])) == len(mix["cluster_coefficients"])


def test_paper_suite_plans_every_target_with_no_data(tmp_path):
    """config/paper.yaml validates against the same schema and plans everything on an empty machine."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(REPO / "config/paper.yaml"), "-n", "all", "paper_inputs"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert job_counts(res.stdout) == {
        "paper_dataset": 15, "fetch_checkpoint": 91, "fetch_hf_model": 9, "convert_checkpoint": 91, "zeroshot_head": 11, "zeroshot_model": 3,
        "cache_logits": 14, "temperatures": 1, "coefficients": 6, "beta_mixture": 6, "merged_eval": 12,
        "wise_ft_sweep": 7, "metrics": 1, "table2_files": 1, "fig4_files": 1, "paper_inputs": 1, "all": 1,
    }
    assert "demo_" not in res.stdout  # the paper suite replaces the demo config, it does not merge into it
