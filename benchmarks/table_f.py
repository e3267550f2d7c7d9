"""Table F's costs on one machine, and the ratios of issue 12, all measured in one run.

Writes N random JPEGs at ImageNet resolution (the project's on-disk protocol, see logit_caching.py), builds two
classifiers of the given architecture (random weights: runtime, FLOPs and memory depend on the architecture,
not on the values) and, in one process:

1. runs dawin.inference.profiling.profile_inference (Table F's rows) and prints the ratios DaWin / WiSE-FT;
2. times one pass over the images per way of evaluating, the expertise logits already cached
   (dawin.inference.profiling.merged_passes), through the JPEGs and through the decoded images, and prints
   each / one single-model pass through the same data path (goals: exact per sample <= 2.5, clustered <= 1.1),
   and a single pass from the decoded images / from the JPEGs (goal on a GPU: <= 0.2);
3. estimates the ViT-B/32 robust fine-tuning DAG of config/paper.yaml over ImageNet-size data from these
   per-pass costs, with and without the decoded images (see dag_passes).

    python benchmarks/table_f.py --arch ViT-B-32-quickgelu --n 4096 --batch-size 256 --workers 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from dawin import registry
from dawin.inference.logits import default_device
from dawin.inference.profiling import merged_passes, profile_inference
from dawin.inputs import decode, models, pixels

from logit_caching import make_dataset  # noqa: E402 - the benchmarks folder is the script's own path

PAPER = Path(__file__).parents[1] / "config" / "paper.yaml"


def dag_passes(config: dict, backbone: str = "ViT-B-32") -> dict[str, float]:
    """Reads of a test set and forward passes over it in the robust fine-tuning DAG of ``backbone``, per dataset
    (summed over the evaluation sets, so the unit is 'one ImageNet-size set'). A read is one decode of every image
    without the cache; a forward is one model pass. The WiSE-FT sweep reads once and runs every coefficient; an
    exact per-sample pass costs about two forwards; a clustered pass one (its groups split one read)."""
    ds = config["datasets"]
    eval_sets, test_sets = 1 + len(ds["ood"]) + 1, 1 + len(ds["ood"])  # id_val + id_test + OOD; id_test + OOD
    sweep = len({0.0, 1.0, *config["grid"], *config["analysis"]["fine_grid"]})
    soups = config["backbones"][backbone]["soups"]["ingredients"]
    n_ingredients = soups["last"] - soups["first"] + 1 if isinstance(soups, dict) else len(soups)
    pairs = [p for g in registry.merged_groups(batch_sizes=config["analysis"]["batch_sizes"],
                                               grid=config["grid"]).values() for p in g]
    per_sample = sum(a == "per_sample" for _, a in pairs)
    reads = (3 * eval_sets + 3 * test_sets + n_ingredients  # logits, the soups' logits, the greedy soup on id_val
             + eval_sets + len(pairs) * test_sets)  # the sweep, the merged evaluations
    forwards = reads - eval_sets + sweep * eval_sets + per_sample * test_sets
    return {"reads": reads, "forwards": forwards, "sets": eval_sets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-32-quickgelu")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--per-sample-limit", type=int, default=256)
    ap.add_argument("--skip-profile", action="store_true", help="only the pass ratios and the DAG estimate")
    ap.add_argument("--out", type=Path, default=None, help="also write the Table F rows as CSV here")
    args = ap.parse_args()
    grid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    torch.manual_seed(0)
    kw = dict(batch_size=args.batch_size, num_workers=args.workers)
    print(f"device {default_device()}, {args.arch}, {args.n} images of {args.size}px, batch {args.batch_size}, "
          f"{args.workers} workers")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_dataset(root, args.n, args.size)
        clip = models.create_clip(args.arch)
        head = torch.randn(1000, clip.visual.output_dim)
        m0 = models.ImageClassifier.from_clip(clip, args.arch, head)
        m1 = models.ImageClassifier.from_clip(models.create_clip(args.arch), args.arch, head + 0.1 * torch.randn_like(head))
        jpeg = pixels.open_dataset(root, m0.visual)
        if not args.skip_profile:
            df = profile_inference(m0, m1, jpeg, grid=grid, n_components=3, per_sample_limit=args.per_sample_limit, **kw)
            print(df.to_string(index=False))
            t = df.set_index("method")
            for m in t.index.drop("wise_ft"):
                print(f"{m} / wise_ft: runtime {t.seconds[m] / t.seconds['wise_ft']:.2f}, "
                      f"GFLOPs {t.gflops_per_sample[m] / t.gflops_per_sample['wise_ft']:.2f}")
            if args.out:
                df.to_csv(args.out, index=False)

        start = time.perf_counter()
        cache = Path(tmp) / "pixels.npy"
        decode.write_pixels(root, m0.visual.preprocess_cfg, cache, num_workers=args.workers)
        decode_seconds = time.perf_counter() - start
        decoded = pixels.open_dataset(root, m0.visual, {str(root): str(cache)})
        coef = np.random.default_rng(0).beta(2, 2, args.n)  # cached expertise: any coefficients in (0, 1)
        passes = {}
        for path, data in (("jpeg", jpeg), ("decoded", decoded)):
            p = merged_passes(m0, m1, data, coef, n_components=3, loop_limit=args.per_sample_limit, **kw)
            print(f"\npasses over the {path} images (seconds for all {args.n}; ratio to one single-model pass):")
            print(p.to_string(index=False))
            passes[path] = p.set_index("pass").seconds
        for path in passes:
            s = passes[path]
            print(f"{path}: exact per sample / single {s.per_sample / s.single:.2f} (goal <= 2.5; the loop "
                  f"{s.per_sample_loop / s.single:.2f}), clustered / single {s.clustered / s.single:.2f} (goal <= 1.1)")
        print(f"single pass, decoded / JPEG: {passes['decoded'].single / passes['jpeg'].single:.3f} (goal <= 0.2 on "
              f"a GPU); decoding once: {decode_seconds:.1f} s = {decode_seconds / passes['jpeg'].single:.2f} JPEG passes")

    dag = dag_passes(yaml.safe_load(PAPER.read_text()))
    t_jpeg, t_dec = passes["jpeg"].single / args.n, passes["decoded"].single / args.n
    t_fwd = t_dec  # a pass from the decoded images is (nearly) the model alone
    without = dag["reads"] * t_jpeg + (dag["forwards"] - dag["reads"]) * t_fwd
    with_cache = dag["sets"] * decode_seconds / args.n + dag["forwards"] * t_fwd
    hours = lambda seconds_per_image: seconds_per_image * 50_000 / 3600  # noqa: E731
    print(f"\nViT-B/32 robust fine-tuning DAG (config/paper.yaml): {dag['reads']:.0f} reads and {dag['forwards']:.0f} "
          f"forward passes of a test set ({dag['sets']} evaluation sets); at 50,000 images a set, estimated "
          f"{hours(without):.1f} h from the JPEGs, {hours(with_cache):.1f} h with the decoded images "
          f"(ratio {with_cache / without:.2f})")


if __name__ == "__main__":
    main()
