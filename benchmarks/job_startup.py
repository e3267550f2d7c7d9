"""What a workflow job pays before its first line of work: import times, measured back to back in one run.

Each line is imported in a fresh interpreter, the variants interleaved round by round so that a busy machine
slows them alike; the median of the rounds and the ratio to the plain imports are printed.

- open_clip as installed (it imports timm, transformers and, through torchvision, TorchDynamo) against
  `dawin.inputs.openclip` (none of the three; see its docstring), which every job that builds a model runs;
- the method's mixture module with scikit-learn imported at the top (as before) against as it is now, where
  scikit-learn comes only with K-means (fits of more than one cluster).

    python benchmarks/job_startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

PAIRS = {
    "open_clip": ("import torch, open_clip", "import torch, dawin.inputs.openclip"),
    "mixtures": ("import torch, sklearn.cluster, dawin.method.variants", "import torch, dawin.method.variants"),
}


def seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {code: [] for pair in PAIRS.values() for code in pair}
    for _ in range(args.rounds):
        for code in times:
            times[code].append(seconds(code))
    for name, (before, now) in PAIRS.items():
        b, n = statistics.median(times[before]), statistics.median(times[now])
        print(f"{name}: {before!r} {b:.2f} s, {now!r} {n:.2f} s (median of {args.rounds}); "
              f"ratio {n / b:.2f}, {b - n:.2f} s less per job")


if __name__ == "__main__":
    main()
