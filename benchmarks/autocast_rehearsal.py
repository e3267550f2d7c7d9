"""How many predictions mixed precision changes: the rehearsal's `table2` with `evaluation.autocast` on and off.

The paper suite evaluates in float32 (`config/paper.yaml`: `autocast: false`, as upstream's `get_model_from_sd`
casts to float). This builds the rehearsal (:mod:`dawin.replicas.rehearsal`: replicas of every upstream source on
127.0.0.1), stages its inputs once (`paper_inputs`, server up), then computes `table2` twice offline into two
results folders, `evaluation.autocast: false` and `true`, and compares every per-sample file the two runs share:
the predictions (argmax of cached logits, or a merged evaluation's `pred`) that differ, per kind of file and in
all, and the Table 2 cells that move. On a CPU autocast is off in both runs (dawin.inference.logits.autocast
acts on CUDA only), so there every count is 0; run it where a GPU is.

    python benchmarks/autocast_rehearsal.py --dest /tmp/autocast
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import yaml

from dawin.replicas.rehearsal import build_rehearsal
from dawin.replicas.server import serve
from dawin.tensorio import load_tensors

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config/paper.yaml"
DOWNLOADS = ["fetch_checkpoint", "fetch_hf_model", "fetch_dataset", "multitask_dataset", "multitask_train_split"]


def snakemake(wd: Path, overlays: list[Path], *args: str, cores: int) -> None:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", str(cores), *args,
           "--configfile", str(PAPER), *map(str, overlays)]
    res = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")


def predictions(path: Path):
    tensors, _ = load_tensors(path)
    if "pred" in tensors:
        return tensors["pred"]
    if "logits" in tensors:
        return tensors["logits"].argmax(-1)
    return None


def compare(a: Path, b: Path) -> tuple[dict[str, list[int]], int]:
    """Per kind of file (its folder below the results root, backbone and dataset dropped): [changed predictions,
    predictions]; and how many files were compared."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    n_files = 0
    for fa in sorted(a.rglob("*.safetensors")):
        fb = b / fa.relative_to(a)
        if not fb.exists():
            continue
        pa, pb = predictions(fa), predictions(fb)
        if pa is None or pb is None or pa.shape != pb.shape:
            continue
        kind = "/".join(fa.relative_to(a).parts[:1] + fa.relative_to(a).parts[2:-1]) or fa.parent.name
        counts[kind][0] += int((pa != pb).sum())
        counts[kind][1] += int(pa.numel())
        n_files += 1
    return dict(counts), n_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, required=True, help="an empty folder for the replicas and both runs")
    parser.add_argument("--cores", type=int, default=8)
    args = parser.parse_args()
    dest = args.dest.resolve()
    wd = dest / "wd"
    wd.mkdir(parents=True, exist_ok=True)
    httpd, base = serve(dest / "replicas" / "site")
    try:
        build_rehearsal(yaml.safe_load(PAPER.read_text()), dest / "replicas", base)
        overlay = dest / "replicas/overlay.yaml"
        snakemake(wd, [overlay], "paper_inputs", "--until", *DOWNLOADS, cores=args.cores)
    finally:
        httpd.shutdown()
        httpd.server_close()
    runs = {}
    for autocast in (False, True):
        extra = dest / f"autocast_{str(autocast).lower()}.yaml"
        results = f"results/autocast_{str(autocast).lower()}"
        extra.write_text(yaml.safe_dump({"results": results, "evaluation": {"autocast": autocast}}))
        snakemake(wd, [overlay, extra], "table2", cores=args.cores)
        runs[autocast] = wd / results
    counts, n_files = compare(runs[False], runs[True])
    total = [sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())]
    print(f"{n_files} per-sample files compared (autocast off vs on)")
    for kind, (changed, n) in sorted(counts.items()):
        print(f"  {kind:50s} {changed:6d} of {n:7d} predictions changed")
    print(f"  {'all':50s} {total[0]:6d} of {total[1]:7d} predictions changed")
    t = [pd.read_csv(runs[a] / "tables/table2.csv") for a in (False, True)]
    keys = ["backbone", "method", "dataset", "metric"]
    both = t[0].merge(t[1], on=keys, suffixes=("_off", "_on"))
    moved = both[both.value_off != both.value_on]
    print(f"Table 2: {len(moved)} of {len(both)} cells differ")
    if len(moved):
        print(moved[keys + ["value_off", "value_on"]].to_string(index=False))


if __name__ == "__main__":
    main()
