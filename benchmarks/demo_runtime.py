"""The demo DAG's wall time at two commits, measured back to back on this machine, and their ratio.

Clones each commit into a temporary folder (sharing this checkout's .venv: the dependencies are pinned), runs
`snakemake` there (the demo, or any target and config overlay given) and reports each run's wall time, job
count and the ratio. Each commit runs the package of its own clone (PYTHONPATH), so an older commit that
reached the package through `sys.path` runs unchanged. Nothing else should run meanwhile.

    python benchmarks/demo_runtime.py --base 580b10c                 # the whole demo at 580b10c and at HEAD
    python benchmarks/demo_runtime.py --base 580b10c --small table2  # tests/data/small.yaml, Table 2 only
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(commit: str, workdir: Path, targets: list[str], small: bool, cores: int) -> tuple[float, int]:
    clone = workdir / commit
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    (clone / ".venv").symlink_to(REPO / ".venv")
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), *targets]
    if small:
        cmd += ["--configfile", "config/config.yaml", "tests/data/small.yaml"]
    env = {**os.environ, "PYTHONPATH": str(clone / "src")}
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{commit}: snakemake failed\n{res.stderr[-3000:]}")
    jobs = re.search(r"^total\s+(\d+)$", res.stdout + res.stderr, re.M)
    return seconds, int(jobs.group(1)) if jobs else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the commit to compare with")
    ap.add_argument("--head", default="HEAD")
    ap.add_argument("--small", action="store_true", help="with tests/data/small.yaml (the workflow tests' config)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", type=Path, help="run in this (new) folder and keep both clones and their results")
    ap.add_argument("targets", nargs="*", default=[])
    args = ap.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        times = {}
        for commit in (args.base, args.head):
            rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", commit], capture_output=True,
                                 text=True, check=True).stdout.strip()
            times[rev] = run(rev, args.keep or Path(tmp), args.targets, args.small, args.cores)
            print(f"{rev}: {times[rev][0]:.0f} s, {times[rev][1]} jobs", flush=True)
    (base_s, _), (head_s, _) = times.values()
    print(f"head / base wall time: {head_s / base_s:.2f}")


if __name__ == "__main__":
    main()
