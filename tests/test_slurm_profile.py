"""What `snakemake --profile profiles/slurm` hands to sbatch, with stand-in SLURM commands on PATH.

Snakemake always loads profiles/default as the workflow profile after `--profile`, and its keys replace
the profile's; these tests submit the first wave of a small demo target to a recording `sbatch` and check
that each submission carries the SLURM profile's resources, not the local ones. Nothing runs: the stand-in
`sacct` reports every job COMPLETED, so the run ends on the (absent) outputs right after the first wave.
"""

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import yte

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [str(REPO / "config/config.yaml"), str(REPO / "tests/data/small.yaml")]
PROFILE = yte.process_yaml((REPO / "profiles/slurm/config.yaml").read_text())  # as Snakemake renders it
WARNING = "WARNING (profiles/slurm)"

pytestmark = pytest.mark.workflow

# The stand-ins: sbatch records its argv and stdin and prints a job id (the plugin submits with --parsable);
# sacct reports every recorded job COMPLETED and answers the plugin's account guess; sacctmgr lists the
# user's accounts (the plugin validates the account against them); sinfo marks `cpu` as the default partition.
SBATCH = f"""#!{sys.executable}
import fcntl, json, os, sys
record = os.environ["STANDIN_RECORD"]
stdin = sys.stdin.read()
with open(record + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    jobid = 1000 + (sum(1 for _ in open(record)) if os.path.exists(record) else 0)
    with open(record, "a") as f:
        f.write(json.dumps({{"jobid": jobid, "argv": sys.argv[1:], "stdin": stdin}}) + "\\n")
print(jobid)
"""
SACCT = f"""#!{sys.executable}
import json, os, sys
record = os.environ["STANDIN_RECORD"]
if any(a.startswith("--format=JobIdRaw,State") for a in sys.argv):
    for line in open(record) if os.path.exists(record) else []:
        print(f"{{json.loads(line)['jobid']}}|COMPLETED")
elif "Account%256" in sys.argv:
    print("guessedacct")
"""
STANDINS = {
    "sbatch": SBATCH,
    "sacct": SACCT,
    "sacctmgr": "#!/bin/sh\nprintf '  guessedacct\\n  myproj\\n  gpuproj\\n'\n",
    "sinfo": "#!/bin/sh\nprintf 'PARTITION\\ncpu*\\ngpu\\n'\n",
    "scancel": "#!/bin/sh\nexit 0\n",
}

# The first wave: two GPU rules (zero-shot head with the default resources, cached logits with their
# set-resources) and a CPU rule (a demo dataset); their inputs are made beforehand, upstream first.
PREMADE = ["resources/demo/checkpoints/tiny/clip.safetensors",
           *(f"resources/demo/data/{d}/" for d in ("in_val", "in", "v2", "r", "a", "sketch", "objectnet")),
           *(f"results/demo/pixels/resources_demo_data_{d}/32x32-shortest-bicubic-fill0.npy"  # decoded images
             for d in ("in_val", "in", "v2", "r", "a", "sketch", "objectnet")),
           "results/demo/heads/tiny/in.safetensors", "results/demo/models/tiny/zeroshot.safetensors",
           "resources/demo/checkpoints/tiny/finetuned.safetensors"]
TARGETS = ["results/demo/heads/tiny/r.safetensors", "results/demo/logits/tiny/finetuned/in.safetensors",
           "resources/demo/data/mt_angular_test"]  # the multi-task datasets: one CPU job no GPU job waits for
GPU_RULES, CPU_RULES = {"zeroshot_head", "cache_logits"}, {"demo_task_dataset"}


def clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SBATCH_", "SLURM_")) and k != "SNAKEMAKE_PROFILE"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in STANDINS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", STANDIN_RECORD=str(tmp_path / "sbatch.jsonl"), **extra)
    return env


def snakemake(cwd, env, *args):
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(REPO / "Snakefile"), "--configfile", *CONFIGS]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def submit(tmp_path, **extra_env):
    """Run the first wave under profiles/slurm; return the run and {rule: recorded sbatch argv}."""
    wd = tmp_path / "wd"
    now = time.time()
    for i, rel in enumerate(PREMADE):
        path = wd / rel
        if rel.endswith("/"):
            path.mkdir(parents=True)
            (path / "image.png").touch()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        os.utime(path, (now + i, now + i))
    env = clean_env(tmp_path, **extra_env)
    res = snakemake(wd, env, *TARGETS, "--profile", str(REPO / "profiles/slurm"), "--latency-wait", "1",
                    "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1")
    record = tmp_path / "sbatch.jsonl"
    calls = [json.loads(line)["argv"] for line in record.read_text().splitlines()] if record.exists() else []
    by_rule = {re.match(r"rule_(\w+?)(?:_wildcards|$)", argv[argv.index("--comment") + 1]).group(1): argv for argv in calls}
    assert sorted(by_rule) == sorted(GPU_RULES | CPU_RULES), res.stdout[-3000:] + res.stderr[-3000:]
    return res, by_rule


def option(argv, flag):
    """The value of `flag X` or `flag=X` in an sbatch argv; None if absent."""
    for i, a in enumerate(argv):
        if a == flag:
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def test_submissions_carry_the_profile_resources_and_the_users_partition_and_account(tmp_path):
    res, by_rule = submit(tmp_path, SBATCH_PARTITION="gpu", SBATCH_ACCOUNT="myproj")
    defaults, cache_logits = PROFILE["default-resources"], PROFILE["set-resources"]["cache_logits"]
    for rule, argv in by_rule.items():
        expect = {**defaults, **(cache_logits if rule == "cache_logits" else {})}
        assert option(argv, "-p") == "gpu" and option(argv, "-A") == "myproj", (rule, argv)
        assert option(argv, "-t") == str(expect["runtime"]), (rule, argv)
        assert option(argv, "--mem") == str(expect["mem_mb"]), (rule, argv)  # not the local 2000
        assert option(argv, "--cpus-per-task") == str(expect["cpus_per_task"]), (rule, argv)
        assert option(argv, "--gpus") == ("1" if rule in GPU_RULES else None), (rule, argv)
        assert option(argv, "--gres") is None, (rule, argv)
        # the local profile's `cores: all` (this machine's CPU count) is not passed on to the job
        assert re.search(r"--cores '?all'? ", option(argv, "--wrap")), (rule, argv)
    assert option(by_rule["cache_logits"], "-t") == "240" and option(by_rule["demo_task_dataset"], "-t") == "120"
    # a job runs torch on its `threads` (runtime.start_job): the heavy rules' threads are the CPUs they are given
    wrap = option(by_rule["cache_logits"], "--wrap")
    passed = {base64.b64decode(a.removeprefix("base64//")).decode()
              for a in wrap.split("--set-threads", 1)[1].split(" --")[0].split() if a.startswith("base64//")}
    assert {"cache_logits=8", "merged_dawin=8", "wise_ft_sweep=8"} <= passed, wrap
    assert not any(p.startswith("demo_task_dataset=") for p in passed)
    assert WARNING not in res.stderr


def test_gpu_rules_go_to_their_own_partition_and_account_and_the_others_stay_on_the_default(tmp_path):
    # issue 24, item 10: many clusters keep GPUs in a partition of their own; CPU jobs must not queue there
    res, by_rule = submit(tmp_path, SBATCH_PARTITION="cpu", SBATCH_ACCOUNT="myproj", SBATCH_GPU_PARTITION="gpu",
                          SBATCH_GPU_ACCOUNT="gpuproj")
    for rule, argv in by_rule.items():
        expect = ("gpu", "gpuproj") if rule in GPU_RULES else ("cpu", "myproj")
        assert (option(argv, "-p"), option(argv, "-A")) == expect, (rule, argv)
        assert option(argv, "--gpus") == ("1" if rule in GPU_RULES else None), (rule, argv)
    # the GPU rules keep their sizes beside the partition
    assert option(by_rule["cache_logits"], "-t") == "240" and option(by_rule["cache_logits"], "--mem") == "32000"
    assert WARNING not in res.stderr


def test_the_profiles_gpu_rules_are_the_workflows(tmp_path, monkeypatch):
    # the profile lists the rules that declare `gpu: 1` by name: every one of them, and no other, gets the GPU partition
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    monkeypatch.setenv("SBATCH_GPU_PARTITION", "gpu")
    rendered = yte.process_yaml((REPO / "profiles/slurm/config.yaml").read_text())
    profile_gpu = {r for r, res in rendered["set-resources"].items() if res.get("slurm_partition") == "gpu"}
    monkeypatch.chdir(tmp_path)
    with SnakemakeApi(OutputSettings(quiet=True)) as api:
        wf = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(configfiles=[Path(CONFIGS[0])]),
                          storage_settings=StorageSettings(), snakefile=REPO / "Snakefile", workdir=tmp_path)
        declared = {r.name for r in wf._workflow.rules if getattr(r.resources.get("gpu"), "value", None) == 1}
    assert declared and profile_gpu == declared


def test_unset_partition_and_account_are_reported_once(tmp_path):
    res, by_rule = submit(tmp_path)
    assert res.stderr.count(WARNING) == 1, res.stderr[-3000:]
    line = next(line for line in res.stderr.splitlines() if WARNING in line)
    assert "SBATCH_PARTITION and SBATCH_ACCOUNT not set" in line
    # the plugin's fallbacks: sinfo's default partition and the account sacct reports
    assert all(option(argv, "-p") == "cpu" and option(argv, "-A") == "guessedacct" for argv in by_rule.values())


def test_only_the_unset_one_is_named(tmp_path):
    res = snakemake(tmp_path, clean_env(tmp_path, SBATCH_PARTITION="gpu"), "resources/demo/data/sketch", "-n",
                    "--profile", str(REPO / "profiles/slurm"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count(WARNING) == 1 and "SBATCH_ACCOUNT not set" in res.stderr
    assert "SBATCH_PARTITION not" not in res.stderr


def test_plain_snakemake_runs_locally_on_all_cores_with_the_local_defaults(tmp_path):
    res = snakemake(tmp_path, clean_env(tmp_path), "resources/demo/data/sketch")  # no --cores, no --profile
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert re.search(r"Provided cores: \d+", out) and "localrule demo_dataset:" in out
    assert re.search(r"resources: .*mem_mb=2000.*gpu=0", out) and "runtime=" not in out
    assert not (tmp_path / "sbatch.jsonl").exists()


def test_paper_downloads_run_where_snakemake_runs(tmp_path):
    # compute nodes usually have no internet: every rule that downloads is a localrule (here: a manual set's
    # fetch, which downloads nothing, and a model-soups run taken from a pre-staged mirror folder)
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "model_0.pt").write_bytes(b"run 0")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"paper": {"mirror": str(tmp_path / "mirror")}}))
    targets = ["resources/paper/downloads/imagenet", "resources/paper/downloads/checkpoints/soup-ViT-B-32-0/checkpoint"]
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "Snakefile"), "--configfile",
           str(REPO / "config/paper.yaml"), str(overlay), "--profile", str(REPO / "profiles/slurm"),
           "--latency-wait", "1",
           # the plugin's status loop otherwise sleeps its default 40 s with no job submitted
           # (snakemake_executor_plugin_slurm/__init__.py 2.8.0: init_seconds_before_status_checks)
           "--slurm-init-seconds-before-status-checks", "1"]
    env = clean_env(tmp_path, SBATCH_PARTITION="gpu", SBATCH_ACCOUNT="myproj")
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert not (tmp_path / "sbatch.jsonl").exists()
    out = res.stdout + res.stderr
    assert "localrule fetch_dataset:" in out and "localrule fetch_checkpoint:" in out
    assert (tmp_path / targets[1]).read_bytes() == b"run 0"
    # a fetch only checks against the lock: the hash is recorded once the conversion accepts the file
    assert not (tmp_path / "resources/paper/checkpoints.lock.json").exists()
