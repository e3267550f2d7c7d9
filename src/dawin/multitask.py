"""Multi-task merging experiments (Table 6, Table G, Figures 7 and 8): pools from files, data, evaluation.

A pool is the zero-shot classifier's image tower (theta0) plus one expert classifier per task, each a
tower fine-tuned with its task's frozen head (task_vectors' recipe); the heads stay per task. Merging
methods (:mod:`dawin.merging`) return one encoder; it is evaluated on every task through that task's head.

What the methods learn from (:func:`method_data`): AdaMerging(++) the whole unlabelled test set of every task
(a fresh batch per step, read from disk), Fisher merging and RegMean ``n_examples`` images of every task's
*train* split (FusionBench's ``clip_fisher_merging.yaml`` / ``clip_regmean.yaml``), which the config must
name (``multitask.tasks.<task>.train``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .datasets import DatasetError, ImageFolderDataset, load_dataset
from .expertise import accuracy
from .logits import compute_logits
from .merging import get_method
from .merging.pool import ModelPool
from .models import ImageClassifier, preprocess
from .registry import merging_methods_reading


def load_pool(pretrained: str, experts: Mapping[str, str]) -> ModelPool:
    """theta0 from the zero-shot classifier file, each expert's tower and head from its classifier file."""
    base = ImageClassifier.load(pretrained)
    encoders, heads = {}, {}
    for task, path in experts.items():
        clf = ImageClassifier.load(path, base.architecture)
        encoders[task] = clf.visual.state_dict()
        heads[task] = clf.head.weight.detach().clone()
        if clf.head.bias.abs().max() > 0:
            raise ValueError(f"{path}: expert heads must be bias-free zero-shot heads (task_vectors' frozen heads)")
    return ModelPool(base.architecture, base.visual.state_dict(), encoders, heads)


def load_images(root: str, n: int | None, seed: int, transform) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``n`` images (a seeded subset, in index order) of a dataset as one tensor, with labels."""
    data = load_dataset(root, transform=transform)
    idx = np.arange(len(data))
    if n is not None and n < len(data):
        idx = np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False))
    images = torch.stack([data[int(i)][0] for i in idx])
    return images, torch.as_tensor([data.labels[int(i)] for i in idx])


def evaluate(pool: ModelPool, state: Mapping[str, torch.Tensor], tasks: Sequence[str], roots: Mapping[str, str],
             **eval_kw) -> dict[str, float]:
    """Top-1 accuracy (%) of the encoder ``state`` on each task's test set through the task's head."""
    out = {}
    for task in tasks:
        clf = pool.classifier(task, state)
        data = load_dataset(roots[task], transform=preprocess(clf.visual))
        logits, labels = compute_logits(clf, data, desc=f"{task}", **eval_kw)
        out[task] = accuracy(logits, labels)
    return out


TRAIN_SPLIT_METHODS = merging_methods_reading("train")
"""Methods that take their examples from each task's train split."""
TEST_SET_METHODS = merging_methods_reading("test")
"""Methods that learn from each task's unlabelled test set (AdaMerging's test-time adaptation)."""


def method_data(name: str, tasks: Sequence[str], *, test: Mapping[str, str], train: Mapping[str, str | None],
                transform) -> dict[str, ImageFolderDataset] | None:
    """The images merging method ``name`` learns from, as lazily read datasets (no image is loaded here):
    each task's test set for AdaMerging, its train split for Fisher / RegMean, None for the others.

    A task without a train split stops Fisher / RegMean with a DatasetError naming the config key to set
    (they never fall back to test images).
    """
    if name in TEST_SET_METHODS:
        return {t: load_dataset(test[t], transform=transform) for t in tasks}
    if name in TRAIN_SPLIT_METHODS:
        missing = [t for t in tasks if not train.get(t)]
        if missing:
            raise DatasetError(f"{name} takes its examples from each task's train split, but no train split is "
                               f"configured for {', '.join(missing)}: set multitask.tasks.{missing[0]}.train (and "
                               "for the others) to the split's dataset directory")
        return {t: load_dataset(train[t], transform=transform) for t in tasks}
    return None


def method_options(name: str, options: Mapping, *, seed: int, num_workers: int = 0) -> dict:
    """The config options of method ``name`` plus the run's ``seed`` for the methods that draw images (and
    the loader workers for AdaMerging), unless the options set them."""
    out = dict(options)
    if name in TRAIN_SPLIT_METHODS or name in TEST_SET_METHODS:
        out.setdefault("seed", seed)
    if name in TEST_SET_METHODS:
        out.setdefault("num_workers", num_workers)
    return out


def run_method(name: str, pool: ModelPool, data: Mapping | None,
               **options) -> tuple[dict[str, torch.Tensor], float]:
    """Merge with registry method ``name`` (``pretrained`` returns theta0); also the seconds it took."""
    start = time.perf_counter()
    state = dict(pool.pretrained) if name == "pretrained" else get_method(name)(pool, data, **options)
    return state, time.perf_counter() - start
