"""Multi-task merging experiments (Table 6, Table G, Figures 7 and 8): pools from files, data, evaluation.

A pool is the zero-shot classifier's image tower (theta0) plus one expert classifier per task, each a
tower fine-tuned with its task's frozen head (task_vectors' recipe); the heads stay per task. Merging
methods (:mod:`dawin.merging`) return one encoder; it is evaluated on every task through that task's head.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .datasets import load_dataset
from .expertise import accuracy
from .logits import compute_logits
from .merging import get_method
from .merging.pool import ModelPool
from .models import ImageClassifier, preprocess


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


def run_method(name: str, pool: ModelPool, data: Mapping[str, torch.Tensor] | None,
               **options) -> tuple[dict[str, torch.Tensor], float]:
    """Merge with registry method ``name`` (``pretrained`` returns theta0); also the seconds it took."""
    start = time.perf_counter()
    state = dict(pool.pretrained) if name == "pretrained" else get_method(name)(pool, data, **options)
    return state, time.perf_counter() - start
