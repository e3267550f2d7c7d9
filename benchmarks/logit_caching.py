"""Throughput of logit caching: images/s with and without autocast, and the data-loading ceiling.

Writes N random JPEGs at ImageNet resolution into a temporary dataset (the project's on-disk protocol),
builds a classifier of the given architecture with random weights and times, in one run:
  loader   : the DataLoader alone (decode + preprocess), the ceiling of any model;
  fp32     : dawin.inference.logits.compute_logits without autocast;
  autocast : the same with autocast (fp16 on CUDA; identical to fp32 on a CPU).
Prints images/s for each and the ratios autocast/fp32 and fp32/loader.

    python benchmarks/logit_caching.py --arch ViT-B-32-quickgelu --n 2048 --batch-size 256 --workers 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dawin.inputs import datasets, models
from dawin.inference.logits import compute_logits, default_device, loader


def make_dataset(root: Path, n: int, size: int, n_classes: int = 1000) -> None:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        y = i % n_classes
        (root / f"{y:04d}").mkdir(parents=True, exist_ok=True)
        rel = f"{y:04d}/{i:06d}.jpg"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / rel, quality=90)
        items.append((rel, y))
    datasets.write_dataset(root, "random-jpegs", [f"class {c}" for c in range(n_classes)], ["a {c}."], items)


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-32-quickgelu")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--size", type=int, default=500, help="side of the generated JPEGs (ImageNet-like: ~500)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    device = default_device()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root, args.n, args.size)
        clip = models.create_clip(args.arch)
        clf = models.ImageClassifier.from_clip(clip, args.arch, torch.randn(1000, clip.visual.output_dim))
        data = datasets.load_dataset(root, transform=models.preprocess(clf.visual))
        compute_logits(clf, data, args.batch_size, args.workers, device, desc="warm-up")
        t_load = timed(lambda: [None for _ in loader(data, args.batch_size, args.workers)])
        t_fp32 = timed(lambda: compute_logits(clf, data, args.batch_size, args.workers, device, use_autocast=False))
        t_amp = timed(lambda: compute_logits(clf, data, args.batch_size, args.workers, device, use_autocast=True))
    rate = {k: args.n / t for k, t in (("loader", t_load), ("fp32", t_fp32), ("autocast", t_amp))}
    print(f"device {device}, {args.arch}, {args.n} images of {args.size}px, batch {args.batch_size}, {args.workers} workers")
    for k, v in rate.items():
        print(f"{k:>9}: {v:9.1f} images/s")
    print(f"autocast/fp32 = {rate['autocast'] / rate['fp32']:.2f}, fp32/loader ceiling = {rate['fp32'] / rate['loader']:.2f}")


if __name__ == "__main__":
    main()
