"""The workflow through Snakemake on a smaller variant of the demo config (tests/data/small.yaml)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = [str(REPO / "config/config.yaml"), str(REPO / "tests/data/small.yaml")]
CORES = os.environ["DAWIN_TEST_SNAKEMAKE_CORES"].split()  # this worker's --cores and --max-threads (tests/conftest.py)

pytestmark = pytest.mark.workflow

RUN_ENV: dict[str, str] = {}
"""The environment of every run on the module's workdir: the package imported from a copy (`package_copy`)."""


def snakemake_command(workdir, *args, extra_config=None, profile=None) -> list[str]:
    """A Snakemake command on `workdir` with the small config (and `extra_config` over it)."""
    configs = list(BASE)
    if extra_config is not None:
        path = Path(workdir).parent / f"extra-{abs(hash(str(extra_config)))}.yaml"
        path.write_text(yaml.safe_dump(extra_config))
        configs.append(str(path))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           *CORES, *args]  # targets before --configfile, which takes every following word as a file
    if profile:
        cmd += ["--profile", str(REPO / "profiles" / profile)]
    return [*cmd, "--configfile", *configs]


def snakemake(workdir, *args, **kwargs):
    return subprocess.run(snakemake_command(workdir, *args, **kwargs), capture_output=True, text=True, timeout=3600,
                          env=RUN_ENV or None)


def job_counts(out: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run as {rule: count}."""
    block = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory):
    """A copy of the package, which this module's runs import (PYTHONPATH before the editable install) and whose
    files they therefore take as code inputs (`code_of`). The changed-module tests edit the copy, never the
    checkout: under `pytest -n`, other workers' runs (the rehearsal) read the checkout's files as their code inputs
    at the same time, and an edit there stopped one ("older modification time than input")."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(REPO / "src/dawin", src / "dawin", ignore=shutil.ignore_patterns("__pycache__"))
    RUN_ENV.update(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])))
    yield src / "dawin"
    RUN_ENV.clear()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, package_copy):
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
    # the premise checks (dawin.report.premises), computed by the workflow and printed first; the paired tables
    from dawin.report import premises
    checks = premises.read(res / "premises.csv")
    assert checks.check.tolist() == list(premises.CHECKS) and checks.passed.notna().all()
    assert page.index("## Premise checks") < page.index("## Table 1")
    assert "Paired: DaWin − WiSE-FT, tiny;" in page and "Paired: DaWin − TIES-merging, tiny-vit;" in page


def test_demo_checkpoints_record_the_pinned_cpu_kernels_and_spin_count(workdir):
    from dawin.runtime import CPU_KERNELS, JOB_ENVIRONMENT
    from dawin.tensorio import read_metadata

    ckpts = workdir / "resources/demo/checkpoints"
    for path in (ckpts / "tiny/clip.safetensors", ckpts / "tiny/finetuned.safetensors",
                 ckpts / "tiny-vit/clip.safetensors", ckpts / "tiny-vit/experts/count.safetensors"):
        meta = read_metadata(path)
        assert (meta["cpu_capability"], meta["mkl_cbwr"], meta["onednn_max_cpu_isa"]) == (
            CPU_KERNELS["ATEN_CPU_CAPABILITY"].upper(), CPU_KERNELS["MKL_CBWR"], CPU_KERNELS["ONEDNN_MAX_CPU_ISA"]), path
        assert {k: meta[k.lower()] for k in JOB_ENVIRONMENT} == JOB_ENVIRONMENT, path


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
    from dawin.inference.logits import load_logits
    _, _, meta = load_logits(workdir / "results/demo/logits/tiny/finetuned/in.safetensors")
    assert len(meta["checkpoint_sha256"]) == 64 and meta["n_images"] == "60"
    for rule in ("cache_logits", "coefficients", "merged_eval", "soup", "profile"):
        assert any((workdir / "results/demo/logs" / rule).rglob("*.log")), f"no log for {rule}"


def test_multitask_tables_have_every_method_and_pool(workdir):
    res = workdir / "results/demo"
    df = pd.read_csv(res / "tables/table6.csv")
    from dawin.report.paper_tables import PAIRED, TABLES
    methods = set(TABLES["table6"].methods)  # the registry's Table 6 methods, all of them configured in the demo
    assert set(df.method) == methods and set(df.pool) == {"all"}
    tasks = {"angular", "colour", "count", "direction", "position", "round", "scene", "texture"}
    assert set(df.dataset) == tasks | {"avg"}
    assert df[df.metric.str.startswith("accuracy")].value.between(0, 100).all()
    acc = df[df.metric == "accuracy"].set_index(["method", "dataset"]).value
    assert acc["individual", "avg"] > acc["pretrained", "avg"]  # the experts learned their tasks
    # every accuracy with its 95 % bootstrap interval (the average over tasks included), DaWin's paired comparisons
    bounds = df.pivot_table(index=["method", "dataset"], columns="metric", values="value")
    assert len(bounds) == len(methods) * 9 and bounds.accuracy_low.notna().all()
    assert ((bounds.accuracy_low <= bounds.accuracy) & (bounds.accuracy <= bounds.accuracy_high)).all()
    assert {f"minus_{m}_p_not_better" for m in PAIRED["table6"][1]} <= set(df[df.method == "dawin"].metric)
    from dawin.tensorio import load_arrays
    correct, meta = load_arrays(res / "multitask/all/correct.safetensors")
    assert len(correct) == (len(methods) - 1) * 8 and meta["pool"] == "all"  # the individuals have a file of their own
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


def test_snakedeploy_deployment_runs_table2(workdir, tmp_path):
    """`snakedeploy deploy-workflow` of the repository (a local path) gives a deployment that runs table2 with the
    checkout's rules and scripts and the installed package, and writes the same table."""
    import shutil

    source = tmp_path / "dawin"  # what a clone holds: the tracked files (no .venv, no results)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, tracked.split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    dest = tmp_path / "deployment"
    deploy = subprocess.run([str(Path(sys.executable).parent / "snakedeploy"), "deploy-workflow", str(source), str(dest),
                             "--branch", "main"], capture_output=True, text=True)
    assert deploy.returncode == 0, deploy.stderr[-3000:]
    assert (dest / "config/config.yaml").exists() and (dest / "LICENSE").exists() and (dest / "profiles/slurm").is_dir()
    # snakedeploy 0.17.1 declares a local source's module snakefile by its path inside the repository ("Snakefile",
    # providers.py Local.get_source_file_declaration), which Snakemake resolves next to the deployment's own
    # workflow/Snakefile: point it at the source (README, "Deploying")
    module = dest / "workflow/Snakefile"
    assert 'snakefile: \n        "Snakefile"' in module.read_text()
    module.write_text(module.read_text().replace('"Snakefile"', json.dumps(str(source / "Snakefile"))))
    for tree in ("results", "resources"):  # the demo's inputs and results as the checkout's run left them
        shutil.copytree(workdir / tree, dest / tree, symlinks=True)
    for old in (dest / "results/demo/tables").glob("table2.*"):
        old.unlink()
    res = subprocess.run([sys.executable, "-m", "snakemake", *CORES, "table2", "--configfile",
                          "config/config.yaml", str(REPO / "tests/data/small.yaml")], cwd=dest, capture_output=True,
                         text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert job_counts(res.stdout + res.stderr) == {"table2": 1, "table2_files": 1}
    pd.testing.assert_frame_equal(pd.read_csv(dest / "results/demo/tables/table2.csv"),
                                  pd.read_csv(workdir / "results/demo/tables/table2.csv"))


def test_config_typo_names_the_key(workdir):
    res = snakemake(workdir, "-n", extra_config={"mixture": {"n_restrats": 2}})
    assert res.returncode != 0 and "n_restrats" in res.stdout + res.stderr


@pytest.mark.parametrize("datasets, message", [
    ({"ood": ["v2", "r", "a", "sketch", "objectnet", "in"]}, "['in'] listed more than once among datasets.id_val"),
    ({"roots": {"v2": "resources/demo/data/r"}}, "datasets.roots of v2, r are the same directory"),
])
def test_datasets_with_two_roles_or_one_directory_stop_at_parse_time(workdir, datasets, message):
    res = snakemake(workdir, "-n", extra_config={"datasets": datasets})
    assert res.returncode != 0 and message in res.stdout + res.stderr


def test_missing_checkpoint_names_the_path(workdir):
    res = snakemake(workdir, "-n", extra_config={"backbones": {"tiny": {"finetuned": "ckpt/missing-ft.safetensors"}}})
    assert res.returncode != 0 and "ckpt/missing-ft.safetensors" in res.stdout + res.stderr


@pytest.mark.parametrize("overlay, key", [
    ({"datasets": {"roots": {"v2": "resources/demo/data/gone"}}}, "datasets.roots.v2"),
    ({"multitask": {"tasks": {"count": {"train": "resources/demo/data/gone"}}}}, "multitask.tasks.count.train"),
])
def test_a_dataset_directory_that_is_gone_names_the_key(workdir, overlay, key):
    """With the results already built, Snakemake would count them as given (the jobs that would rebuild them lack an
    input) and rebuild the tables from the old dataset's results with exit 0."""
    res = snakemake(workdir, "-n", extra_config=overlay)
    assert res.returncode != 0
    assert f"config {key}: dataset directory resources/demo/data/gone does not exist" in res.stdout + res.stderr


def test_slurm_profile_plans_without_a_cluster(workdir):
    res = snakemake(workdir, "-n", "--forceall", profile="slurm")
    assert res.returncode == 0, res.stderr[-3000:]
    counts = job_counts(res.stdout)  # one job per model: (ZS, FT, average) on the 7 sets, the 3 soups on the 6 test sets
    assert counts["cache_logits"] == 3 and counts["cache_soup_logits"] == 3


def test_a_target_after_configfile_is_named_without_a_traceback(tmp_path):
    """`--configfile` takes every word after it as a file: profiles/default says so before Snakemake's traceback."""
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                          "-n", "--configfile", str(REPO / "config/config.yaml"), "table2"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1 and "Traceback" not in res.stdout + res.stderr
    assert "Error: config file 'table2' does not exist; fix the path. If 'table2' is a target" in res.stderr


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


def plan_with_edit(workdir, path, edit):
    """A dry run with ``path`` edited by ``edit`` (text -> text) and dated newer than every output; the file and its
    time are restored after."""
    text, st = path.read_text(), path.stat()
    try:
        path.write_text(edit(text))
        os.utime(path, ns=(st.st_atime_ns, time.time_ns() + 10**9))
        plan = snakemake(workdir, "-n")
    finally:
        path.write_text(text)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert plan.returncode == 0, plan.stderr[-3000:]
    return plan


@pytest.mark.parametrize("module, direct, downstream, untouched", [
    # reached by one script only, deep in the graph
    ("method/calibration.py", {"temperatures"}, {"coefficients", "merged_dawin", "table2_files"},
     {"cache_logits", "wise_ft_sweep", "soup", "zeroshot_head", "multitask_all", "demo_pretrain"}),
    # a module of the merging registry (dawin.merging imports each entry's module by name: every module of the
    # package counts); the pool jobs' script reaches it too, but their reason names only the first cause, the
    # logits multitask_logits rewrites
    ("merging/opcm.py", {"multitask_logits"}, {"multitask_all", "multitask_pool", "multitask_metrics", "table6_files"},
     {"cache_logits", "temperatures", "coefficients", "merged_dawin", "demo_task_experts"}),
])
def test_changed_module_reruns_the_rules_whose_scripts_reach_it(workdir, package_copy, module, direct, downstream,
                                                               untouched):
    plan = plan_with_edit(workdir, package_copy / module, lambda text: text + "\nAN_EDIT = 1  # a new constant\n")
    reasons = planned_reasons(plan.stdout)
    # the rule's code stamp of the module (.code-stamps/dawin/<module>.sha256) is the updated input
    assert {r for r, why in reasons.items() if any(module in w for w in why)} == direct
    assert downstream <= set(reasons) and not untouched & set(reasons)


def test_a_comment_or_docstring_edit_reruns_nothing(workdir, package_copy):
    """Every script imports tensorio: as a text change (code inputs compared by time) it reran 93 of the demo's 102
    jobs. Its code stamp keeps its digest and its time, so nothing reruns."""
    def reworded(text):
        assert text.startswith('"""safetensors files')
        return text.replace('"""safetensors files', '"""Reworded: safetensors files', 1).replace(
            "\nMETA_KEY =", "\n# a comment\n\nMETA_KEY =", 1) + "\n# a last comment\n"

    plan = plan_with_edit(workdir, package_copy / "tensorio.py", reworded)
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[-3000:]


def test_unknown_architecture_stops_before_any_job_and_deletes_nothing(workdir):
    clip = workdir / "resources/demo/checkpoints/tiny/clip.safetensors"
    before = clip.stat().st_mtime_ns
    res = snakemake(workdir, extra_config={"backbones": {"tiny": {"architecture": "dawin-tiny-rnn"}}})
    assert res.returncode != 0
    assert "backbones.tiny.architecture: unknown architecture 'dawin-tiny-rnn'; did you mean dawin-tiny-rn" in res.stderr
    assert clip.stat().st_mtime_ns == before


def test_unknown_multitask_architecture_names_its_key(workdir):
    res = snakemake(workdir, "-n", extra_config={"multitask": {"architecture": "dawin-tiny-vitt"}})
    assert res.returncode != 0
    assert "multitask.architecture: unknown architecture 'dawin-tiny-vitt'; did you mean dawin-tiny-vit" in res.stdout + res.stderr


@pytest.mark.parametrize("swapped, other, expected, unaffected", [
    ("tiny/finetuned", "tiny/runs/run1", ["results/demo/logits/tiny/finetuned/in.safetensors",
                                          "results/demo/merged/tiny/entropy/mixture/in.safetensors"], "zeroshot"),
    ("tiny-vit/experts/round", "tiny-vit/experts/count", ["results/demo/multitask/logits/round.safetensors",
                                                  "results/demo/multitask/all/provenance.json",
                                                  "results/demo/multitask/count+round/provenance.json"],
     "multitask/colour+position/"),
])
def test_a_checkpoint_swapped_with_its_old_timestamp_stops_the_run(workdir, swapped, other, expected, unaffected):
    """`cp -p` of another model over a checkpoint (the fine-tuned one, a multi-task expert) changes no timestamp
    Snakemake compares: the results computed from it (logit caches, merged evaluations, the multi-task pools' CSVs
    through their records) are named as stale before any job runs; with the right bytes back, nothing is to be done."""
    import shutil

    ft = workdir / f"resources/demo/checkpoints/{swapped}.safetensors"
    backup = workdir.parent / "swapped.backup"
    shutil.copy2(ft, backup)
    st = ft.stat()
    try:
        shutil.copyfile(workdir / f"resources/demo/checkpoints/{other}.safetensors", ft)
        os.utime(ft, ns=(st.st_atime_ns, st.st_mtime_ns))
        res = snakemake(workdir, "-n", "table2")
        out = res.stdout + res.stderr
        assert res.returncode != 0 and "has changed since" in out
        assert f"`touch resources/demo/checkpoints/{swapped}.safetensors`" in out
        stale = (workdir / "results/demo/stale.txt").read_text().split()
        assert set(expected) <= set(stale)
        assert not any(unaffected in s for s in stale)
        # a cluster job's own Snakemake process (remote mode) does not scan again: the main process did
        res = snakemake(workdir, "-n", "table2", "--mode", "remote")
        assert res.returncode == 0 and "has changed since" not in res.stdout + res.stderr
    finally:
        shutil.copyfile(backup, ft)
        os.utime(ft, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = snakemake(workdir, "-n")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr


def test_an_image_rewritten_in_place_stops_the_run_and_its_fix_reruns_what_read_it(workdir, tmp_path):
    """On a copy of the built demo (`cp -a` to scratch: every ctime new, still valid), an image of v2 rewritten with
    its old size and mtime later: only its ctime tells. The results read from v2 are named as stale before any job
    runs; the `touch` the message gives dates v2 as new, and Snakemake then reruns what read it (Snakemake 9 would
    not rebuild deleted intermediate files while the tables after them exist)."""
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    assert snakemake(copy, "-n", "table2").returncode == 0  # the copy is valid, and its ctimes are remembered
    root = copy / "resources/demo/data/v2"
    image = root / pd.read_csv(root / "index.csv")["path"][0]
    st = image.stat()
    time.sleep(0.05)  # file times have the kernel clock's coarse resolution
    image.write_bytes(bytes(reversed(image.read_bytes())))
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = snakemake(copy, "-n", "table2")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "(dataset resources/demo/data/v2)" in out
    stale = (copy / "results/demo/stale.txt").read_text().split()
    assert "results/demo/logits/tiny/finetuned/v2.safetensors" in stale and all("v2" in f for f in stale)
    assert any(f.startswith("results/demo/pixels/") and f.endswith(".npy") for f in stale)
    fix = re.search(r"`(touch [^`]*)`", out).group(1)
    assert fix == "touch resources/demo/data/v2/.snakemake_timestamp"
    subprocess.run(fix, shell=True, cwd=copy, check=True)
    res = snakemake(copy, "-n", "table2")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    counts = job_counts(res.stdout)
    assert counts["decode_images"] == 1 and counts["cache_logits"] == 3 and counts["table2"] == 1
    assert "demo_dataset" not in counts


def test_a_failed_rerun_keeps_the_logit_caches_it_would_have_rebuilt(workdir):
    """A damaged soup makes the rerun of its logit cache fail; the caches (`update` outputs: backed up by Snakemake,
    written whole or not at all by dawin.tensorio) are back as they were, and the error names the damaged file."""
    soup = workdir / "results/demo/models/tiny/model_stock.safetensors"
    caches = sorted((workdir / "results/demo/logits/tiny/model_stock").glob("*.safetensors"))
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in [soup, *caches]}
    assert caches
    try:
        soup.write_bytes(b"not a checkpoint")
        res = snakemake(workdir, "--printshellcmds", str(caches[0].relative_to(workdir)))
        out = res.stdout + res.stderr
        assert res.returncode != 0 and f"{soup.relative_to(workdir)}: not a readable safetensors file" in out
        assert "Restored previous version" in out
        assert all(f.read_bytes() == before[f][0] for f in caches)
        assert not list(caches[0].parent.glob("*.partial"))
    finally:
        for f, (data, mtime) in before.items():  # as the fixture had them, for the tests that follow
            f.write_bytes(data)
            os.utime(f, ns=(mtime, mtime))


def test_a_killed_run_unlocks_and_reruns_to_the_same_result(workdir):
    """SIGKILL of snakemake and its job mid-job (when the job's log appears) leaves Snakemake's lock: the next run
    stops with it; after `--unlock` (README, Troubleshooting) the rerun redoes the killed job and its output is
    byte-identical to the uninterrupted run's. (The output itself is the target: Snakemake 9 does not rebuild a
    missing intermediate file for a table that is up to date.)"""
    import signal

    target = "results/demo/analysis/tiny/optimality.csv"
    output, log = workdir / target, workdir / "results/demo/logs/optimality/tiny.log"
    before = output.read_bytes()
    output.unlink()
    log.unlink()

    run = subprocess.Popen(snakemake_command(workdir, target), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True, env=RUN_ENV)
    deadline = time.time() + 600
    while not log.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before the job's log appeared"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not output.exists()
    locked = snakemake(workdir, target)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    assert snakemake(workdir, "--unlock").returncode == 0
    rerun = snakemake(workdir, target)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "rule optimality:" in rerun.stdout + rerun.stderr and output.read_bytes() == before


def test_changed_mixture_reruns_only_the_mixture_and_what_follows(workdir):
    # keep last: it changes the module's workdir
    change = {"backbones": {"tiny": {"n_components": 3}}}
    plan = snakemake(workdir, "-n", extra_config=change)
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = job_counts(plan.stdout)
    # every group of merged evaluations with a mixture (not the two per-sample groups) and the profile
    merged = {rule: counts.pop(rule) for rule in list(counts) if rule.startswith("merged_")}
    assert merged == {f"merged_{g}": 1 for g in ("dawin", "no_offset", "no_calibration", "batches", "scaled",
                                                  "alternatives", "pseudo_labels")}
    assert counts.pop("profile") == 1
    assert not {"cache_logits", "coefficients", "metrics", "wise_ft_sweep", "soup", "temperatures"} & set(counts)
    per_sample = workdir / "results/demo/merged/tiny/entropy/per_sample/in.safetensors"
    logits = workdir / "results/demo/logits/tiny/zeroshot/in.safetensors"
    before = per_sample.stat().st_mtime_ns, logits.stat().st_mtime_ns
    # the run, of one table (the plan above covers the rest): its mixture job again, nothing before it
    run = snakemake(workdir, "table2", extra_config=change)
    assert run.returncode == 0, run.stderr[-3000:]
    assert job_counts(run.stdout + run.stderr) == {"merged_dawin": 1, "table2": 1, "table2_files": 1}
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
        f"{t}_files": 1 for t in [*TABLES, *FIGURES, "reproduction", "premises"]}
    assert counts == {
        # 7 robust-fine-tuning sets (fetched by localrules, extracted by jobs), 8 multi-task sets (localrules)
        "fetch_dataset": 7, "paper_dataset": 7, "multitask_dataset": 8,
        # + OpenAI's three CLIP releases and task_vectors' zeroshot.pt (the pool's theta0)
        "fetch_checkpoint": 95, "fetch_hf_model": 9, "convert_checkpoint": 95, "zeroshot_head": 11,
        "fetch_inception": 1,  # torchvision's Inception-V3 weights (Figure G's FID panel)
        "zeroshot_model": 3, "cache_logits": 9, "cache_soup_logits": 3, "soup": 3, "soup_metrics": 1, "temperatures": 3, "wise_ft_sweep": 21,
        "metrics": 3, "optimality": 1, "profile": 1,
        # one coefficients job per backbone (+ the weight average's kinds on B/32); merged evaluations by group:
        # all 9 groups on B/32, DaWin, w/o mixture, w/o offset and the alpha sweep on B/16 and L/14
        "coefficients": 3, "coefficients_with_average": 1, "merged_dawin": 3, "merged_dawin_per_sample": 3,
        "merged_no_offset": 3, "merged_scaled": 3, "merged_oracle_sample": 1, "merged_no_calibration": 1,
        "merged_batches": 1, "merged_alternatives": 1, "merged_pseudo_labels": 1,
        # Table E's row with naver-ai/dawin's hard-coded temperatures (the backbone Table E is built for)
        "coefficients_authors_temperatures": 1, "merged_authors_temperatures": 1,
        "multitask_train_split": 8, "multitask_logits": 1, "multitask_all": 1, "multitask_pool": 4,
        "multitask_metrics": 1,
        "multitask_distances": 1, "paper_inputs": 1, "all": 1,
        # each of the 15 test sets decoded once: B/32, B/16 and L/14 resize and crop alike (224 px)
        "decode_images": 15,
    }
    assert "demo_" not in res.stdout  # the paper suite replaces the demo config, it does not merge into it


def _planned_inputs(out: str, rule: str) -> list[str]:
    """The input files of every planned job of ``rule`` in a dry run's listing."""
    return [f for m in re.finditer(rf"^rule {rule}:\n    input: (.*)$", out, re.M) for f in m.group(1).split(", ")]


def test_a_backbone_id_val_and_the_authors_temperatures_are_planned(tmp_path):
    """Issue 24 items 12 and 14, as a dry run of a fresh directory (nothing built): backbones.<b>.id_val replaces
    datasets.id_val for that backbone's temperatures, metrics and greedy soup; Table E's row with the authors'
    temperatures is planned only for a backbone that has them, without the fitted temperatures."""
    targets = ["results/demo/tables/table_e.csv", "results/demo/metrics/tiny.csv", "results/demo/models/tiny/greedy_soup.safetensors"]
    res = snakemake(tmp_path / "plain", "-n", *targets)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "coefficients_authors_temperatures" not in res.stdout and "merged_authors_temperatures" not in res.stdout
    assert "results/demo/logits/tiny/zeroshot/in_val.safetensors" in _planned_inputs(res.stdout, "temperatures")

    res = snakemake(tmp_path / "own", "-n", *targets, extra_config={
        "backbones": {"tiny": {"id_val": "in_train", "authors_temperatures": [0.9, 1.1]}}})
    assert res.returncode == 0, res.stderr[-3000:]
    counts = job_counts(res.stdout)
    assert counts["coefficients_authors_temperatures"] == 1 and counts["merged_authors_temperatures"] == 1
    assert not any(f.endswith("calibration/tiny.json") for f in _planned_inputs(res.stdout, "coefficients_authors_temperatures"))
    assert "results/demo/calibration/tiny.json" in _planned_inputs(res.stdout, "coefficients")
    assert "results/demo/merged/tiny/entropy_authors_temperatures/mixture/in.safetensors" in _planned_inputs(
        res.stdout, "table_e_files")
    for rule in ("temperatures", "metrics"):
        held_out = [f for f in _planned_inputs(res.stdout, rule) if "/logits/" in f and f.endswith("in_train.safetensors")]
        assert held_out and not any(f.endswith("/in_val.safetensors") for f in _planned_inputs(res.stdout, rule)), rule
    assert "resources/demo/data/in_train" in _planned_inputs(res.stdout, "soup")
