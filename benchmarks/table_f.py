"""Table F's costs on one machine: WiSE-FT's whole grid vs DaWin, DaWin (parallel) and DaWin per sample.

Writes N random JPEGs at ImageNet resolution (the project's on-disk protocol, see logit_caching.py), builds
two classifiers of the given architecture (random weights: runtime, FLOPs and memory depend on the
architecture, not on the values) and runs dawin.inference.profiling.profile_inference on them, in one process.
Prints the table and the ratios DaWin / WiSE-FT of runtime and FLOPs.

    python benchmarks/table_f.py --arch ViT-B-32-quickgelu --n 4096 --batch-size 256 --workers 8
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from dawin.inputs import datasets, models
from dawin.inference.logits import default_device
from dawin.inference.profiling import profile_inference

from logit_caching import make_dataset  # noqa: E402 - the benchmarks folder is the script's own path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-32-quickgelu")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--per-sample-limit", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None, help="also write the table as CSV here")
    args = ap.parse_args()
    grid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root, args.n, args.size)
        clip = models.create_clip(args.arch)
        head = torch.randn(1000, clip.visual.output_dim)
        m0 = models.ImageClassifier.from_clip(clip, args.arch, head)
        m1 = models.ImageClassifier.from_clip(models.create_clip(args.arch), args.arch, head + 0.1 * torch.randn_like(head))
        data = datasets.load_dataset(root, transform=models.preprocess(m0.visual))
        df = profile_inference(m0, m1, data, grid=grid, n_components=3, batch_size=args.batch_size,
                               num_workers=args.workers, per_sample_limit=args.per_sample_limit)
    print(f"device {default_device()}, {args.arch}, {args.n} images of {args.size}px, batch {args.batch_size}, "
          f"{args.workers} workers")
    print(df.to_string(index=False))
    t = df.set_index("method")
    for m in ("dawin", "dawin_parallel", "dawin_per_sample"):
        print(f"{m} / wise_ft: runtime {t.seconds[m] / t.seconds['wise_ft']:.2f}, "
              f"GFLOPs {t.gflops_per_sample[m] / t.gflops_per_sample['wise_ft']:.2f}")
    if args.out:
        df.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
