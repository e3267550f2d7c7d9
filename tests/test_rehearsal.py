"""The paper suite on replicas of its upstream sources (dawin.replicas): every source of config/paper.yaml in
its upstream form, served on 127.0.0.1 (URLs through paper.url_rewrite, the hub's dataset API through
paper.hf_endpoint) or pre-staged in the mirror folder (Google Drive, the hub's model repositories).

With the server up, the download rules of `paper_inputs` fetch everything; then the server stops and, offline,
`paper_inputs` builds every input (all dataset builders, every checkpoint format, the zero-shot models and
heads) and `table2` and `table6` are computed from them: temperatures, coefficients, mixtures, soups, WiSE-FT,
merged evaluation, every multi-task merging method. The replica images are drawn from class prototypes the
replica models recognise (dawin.replicas.prototypes), so every model is informative and calibration has an
optimum. config/paper.yaml is used as is, with one overlay that says only where things are, how big they are,
smaller batches and fewer AdaMerging steps.
"""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dawin.replicas.rehearsal import build_rehearsal
from dawin.replicas.server import serve

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config/paper.yaml"
DOWNLOADS = ["fetch_checkpoint", "fetch_hf_model", "fetch_dataset", "fetch_inception", "multitask_dataset",
             "multitask_train_split"]
CORES = os.environ["DAWIN_TEST_SNAKEMAKE_CORES"].split()  # this worker's --cores and --max-threads (tests/conftest.py)

pytestmark = pytest.mark.workflow


def snakemake(wd, overlay, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *CORES, *args,
           "--configfile", str(PAPER), str(overlay)]
    res = subprocess.run(cmd, cwd=wd, capture_output=True, text=True, timeout=2400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return res


def read_table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_paper_tables_from_upstream_replicas(tmp_path):
    httpd, base = serve(tmp_path / "replicas" / "site")
    try:
        overlay = build_rehearsal(yaml.safe_load(PAPER.read_text()), tmp_path / "replicas", base)
        wd = tmp_path / "wd"
        wd.mkdir()
        snakemake(wd, tmp_path / "replicas/overlay.yaml", "paper_inputs", "--until", *DOWNLOADS)
    finally:
        httpd.shutdown()
        httpd.server_close()
    # offline from here: nothing may reach for the network
    res = snakemake(wd, tmp_path / "replicas/overlay.yaml", "paper_inputs", "table2", "table6")
    assert not any(f"rule {r}:" in res.stdout + res.stderr for r in DOWNLOADS)

    # every dataset and multi-task train split, built by its own builder with every class present
    for name, size in overlay["paper"]["expected"].items():
        record = json.loads((wd / f"resources/paper/data/{name}/verify.json").read_text())
        assert (record["n_images"], record["n_classes_present"]) == (size["images"], size["classes"]), name
    held = json.loads((wd / "resources/paper/data/imagenet_heldout/verify.json").read_text())
    assert held["n_images"] == overlay["paper"]["heldout"]["expected_images"]
    formats = {json.loads(p.read_text())["source_format"]
               for p in (wd / "resources/paper/checkpoints").glob("*.json")}
    assert formats == {"openai-clip", "model-soups", "pickled-modules", "hf-clip-vision"}
    lock = json.loads((wd / "resources/paper/checkpoints.lock.json").read_text())
    assert {"imagenet_98_idxs.npy", "dataset:imagenetv2/imagenetv2-matched-frequency.tar.gz",
            "dataset:imagenet_sketch/ImageNet-Sketch.zip", "tv-SVHN/encoder", "ViT-B-32/checkpoint"} <= set(lock)
    assert (wd / "results/paper/models/ViT-B-32/zeroshot.safetensors").exists()

    # Table 2: every method on every test set, the paper's number beside ours; the replicas are informative
    rows = read_table(wd / "results/paper/tables/table2.csv")
    acc = {(r["method"], r["dataset"]): float(r["value"]) for r in rows if r["metric"] == "accuracy"}
    methods = {m for m, _ in acc}
    assert {"zeroshot", "finetuned", "wise_ft", "uniform_soup", "greedy_soup", "model_stock", "dawin_per_sample",
            "dawin"} <= methods
    for m in methods:
        assert {d for mm, d in acc if mm == m} >= {"imagenet", "imagenetv2", "imagenet_r", "imagenet_a",
                                                    "imagenet_sketch", "objectnet"}, m
    assert acc["zeroshot", "imagenet"] > 20 * 100 / 1000  # 20 times chance among 1000 classes
    zeroshot = next(line for line in (wd / "results/paper/tables/table2.md").read_text().splitlines()
                    if line.startswith("| zeroshot "))
    assert re.search(r"\| \d+\.\d\d \(63\.35\) \|", zeroshot), zeroshot  # ours (the paper's) in one cell
    # Table 6: every merging method on the 8 tasks
    rows = read_table(wd / "results/paper/tables/table6.csv")
    merged = {r["method"] for r in rows if r["metric"] == "accuracy" and r["dataset"] == "avg"}
    assert {"weight_average", "task_arithmetic", "ties", "fisher", "regmean", "adamerging_task",
            "adamerging_layer", "adamerging_pp_layer"} <= merged
