"""What the parse-time dataset check costs at paper scale: `dawin.provenance.scan_dataset` on a generated dataset.

The check `stat`s every listed image of every dataset a result records (about 340,000 test images for
config/paper.yaml). On a local disk a `stat` is a cached kernel call; on a cluster file system it is a round
trip to a metadata server, which the second measurement stands in for by adding a fixed sleep to each `stat`
(a sleep, like a network wait, releases the GIL). Printed: seconds per scan and per 100,000 files, one thread
against the default (`provenance.SCAN_THREADS` threads once the first `stat`s are slow), and their ratio, all
measured in this run.

    python benchmarks/dataset_scan.py --n 100000 --latency-n 5000 --latency-ms 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

from dawin import provenance
from dawin.inputs.datasets import write_dataset


def make(root: Path, n: int) -> None:
    for c in range(100):
        (root / f"c{c}").mkdir(parents=True)
    rows = [(f"c{i % 100}/{i:07d}.jpg", i % 100) for i in range(n)]
    for path, _ in rows:
        (root / path).write_bytes(b"x" * 64)
    write_dataset(root, "bench", [f"k{c}" for c in range(100)], ["a {c}."], rows)


def timed(root: Path, threads: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        provenance.scan_dataset(root, threads=threads)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="files of the local-disk measurement")
    parser.add_argument("--latency-n", type=int, default=5_000, help="files of the added-latency measurement")
    parser.add_argument("--latency-ms", type=float, default=1.0, help="sleep added to each stat")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    threads = provenance.SCAN_THREADS
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        make(big, args.n)
        make(small, args.latency_n)
        one, many = timed(big, 1, args.rounds), timed(big, threads, args.rounds)
        with mock.patch.object(provenance, "SLOW_STAT_S", 0.0):
            forced = timed(big, threads, args.rounds)
        print(f"local disk, {args.n} files: 1 thread {one:.2f} s ({one / args.n * 1e5:.2f} s per 100k), "
              f"default {many:.2f} s (ratio {many / one:.2f}); {threads} threads forced {forced:.2f} s "
              f"(ratio {forced / one:.2f})")
        stat = os.stat

        def slow_stat(path, *a, **k):
            time.sleep(args.latency_ms / 1000)
            return stat(path, *a, **k)

        with mock.patch.object(provenance.os, "stat", slow_stat):
            one, many = timed(small, 1, 1), timed(small, threads, 1)
        print(f"+{args.latency_ms} ms per stat, {args.latency_n} files: 1 thread {one:.2f} s "
              f"({one / args.latency_n * 1e5:.1f} s per 100k), default {many:.2f} s "
              f"({many / args.latency_n * 1e5:.1f} s per 100k); ratio {many / one:.3f}")


if __name__ == "__main__":
    main()
