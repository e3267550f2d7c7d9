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

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..inputs.datasets import DatasetError, ImageFolderDataset
from ..inputs.pixels import open_dataset
from ..inference.logits import compute_logits
from ..method.expertise import percent_correct, top1_correct
from . import get_method
from .dawin_multitask import MultiTaskGroupedEvaluator, cluster_coefficients, expert_coefficients
from .pool import ModelPool
from ..inputs.models import ImageClassifier
from ..method.weights import DistinctWeights
from ..registry import GRID_SEARCH, merging_methods_reading
from ..tensorio import load_tensors, read_metadata

log = logging.getLogger("dawin.merging.multitask")



def trim_entries(pretrained: str, experts: Sequence[str]) -> int | None:
    """The entries TIES / AdaMerging++ rank a task vector over for a pool of these classifier files
    (:mod:`dawin.merging.ties`): for experts converted from pickled encoders (task_vectors'), the whole state dict
    the converter recorded (``source_encoder_entries``, text-side tensors included, as AdaMerging flattens it);
    None (rank over the image tower) for experts from elsewhere (FusionBench's vision-only models, the demo).
    The tensors outside the tower must then be the same in theta0 and every expert (their task vectors 0, as
    upstream's)."""
    meta = {f: read_metadata(f) for f in [pretrained, *experts]}
    pickled = [f for f in experts if meta[f].get("source_format") == "pickled-modules"]
    if not pickled:
        return None
    if len(pickled) < len(experts):
        other = next(f for f in experts if f not in pickled)
        raise ValueError(f"the pool mixes experts from pickled modules ({pickled[0]}) with others ({other}): TIES "
                         "ranks task vectors over one count; use experts of one upstream (multitask.tasks)")
    files = [pretrained, *experts]
    old = next((f for f in files if "source_encoder_entries" not in meta[f]), None)
    if old is not None:
        raise ValueError(f"{old} does not record what its source encoder holds (source_encoder_entries): it is not a "
                         "pickled encoder, or was converted by an older converter; a pool of task_vectors' experts "
                         "needs theta0 from task_vectors' zeroshot.pt (tv-zeroshot), each converted again by "
                         "`snakemake --configfile config/paper.yaml paper_inputs` after deleting the old file")
    fields = ("source_encoder_entries", "source_outside_visual_sha256")
    differs = next((f for f in experts if any(meta[f][k] != meta[pretrained][k] for k in fields)), None)
    if differs is not None:
        raise ValueError(f"{differs} and theta0 {pretrained} differ outside the image tower (the tensors their pickled "
                         "encoders hold besides it): upstream's TIES would merge those entries too, which a pool of "
                         "image towers cannot; use experts fine-tuned from this theta0 with the text side untouched")
    return int(meta[pretrained]["source_encoder_entries"])


def load_pool(pretrained: str, experts: Mapping[str, str]) -> ModelPool:
    """theta0 from the zero-shot classifier file, each expert's tower and head from its classifier file; the count
    TIES ranks over from the files' metadata (:func:`trim_entries`)."""
    base = ImageClassifier.load(pretrained)
    encoders, heads = {}, {}
    distinct = DistinctWeights("the multi-task pool")
    distinct.add(f"theta0 ({pretrained})", base.visual.state_dict())
    for task, path in experts.items():
        clf = ImageClassifier.load(path, base.architecture)
        encoders[task] = clf.visual.state_dict()
        distinct.add(f"the {task} expert ({path})", encoders[task])
        heads[task] = clf.head.weight.detach().clone()
        if clf.head.bias.abs().max() > 0:
            raise ValueError(f"{path}: expert heads must be bias-free zero-shot heads (task_vectors' frozen heads)")
    return ModelPool(base.architecture, base.visual.state_dict(), encoders, heads,
                     trim_entries=trim_entries(pretrained, list(experts.values())))


def correct_predictions(pool: ModelPool, state: Mapping[str, torch.Tensor], tasks: Sequence[str],
                        roots: Mapping[str, str], decoded: Mapping[str, str] | None = None,
                        **eval_kw) -> dict[str, torch.Tensor]:
    """Per-sample top-1 correctness (bool, in test-set order) of the encoder ``state`` on each task's test set
    through the task's head (read from its decoded images where ``decoded``, {root: file} of
    :func:`dawin.inputs.pixels.by_root`, has them): what the tables' bootstrap intervals resample."""
    out = {}
    for task in tasks:
        clf = pool.classifier(task, state)
        data = open_dataset(roots[task], clf.visual, decoded)
        logits, labels = compute_logits(clf, data, desc=f"{task}", **eval_kw)
        out[task] = top1_correct(logits, labels)
    return out


def accuracies(correct: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Top-1 accuracy (%) of each task's per-sample correctness."""
    return {task: percent_correct(c) for task, c in correct.items()}


def evaluate(pool: ModelPool, state: Mapping[str, torch.Tensor], tasks: Sequence[str], roots: Mapping[str, str],
             decoded: Mapping[str, str] | None = None, **eval_kw) -> dict[str, float]:
    """Top-1 accuracy (%) of the encoder ``state`` on each task's test set (:func:`correct_predictions`)."""
    return accuracies(correct_predictions(pool, state, tasks, roots, decoded=decoded, **eval_kw))


TRAIN_SPLIT_METHODS = merging_methods_reading("train")
"""Methods that take their examples from each task's train split."""
TEST_SET_METHODS = merging_methods_reading("test")
"""Methods that learn from each task's unlabelled test set (AdaMerging's test-time adaptation)."""


def method_data(name: str, tasks: Sequence[str], *, test: Mapping[str, str], train: Mapping[str, str | None],
                visual: torch.nn.Module, decoded: Mapping[str, str] | None = None) -> dict[str, ImageFolderDataset] | None:
    """The images merging method ``name`` learns from, as lazily read datasets (no image is loaded here):
    each task's test set for AdaMerging, its train split for Fisher / RegMean, None for the others.

    A task without a train split stops Fisher / RegMean with a DatasetError naming the config key to set
    (they never fall back to test images).
    """
    if name in TEST_SET_METHODS:
        return {t: open_dataset(test[t], visual, decoded) for t in tasks}
    if name in TRAIN_SPLIT_METHODS:
        missing = [t for t in tasks if not train.get(t)]
        if missing:
            raise DatasetError(f"{name} takes its examples from each task's train split, but no train split is "
                               f"configured for {', '.join(missing)}: set multitask.tasks.{missing[0]}.train (and "
                               "for the others) to the split's dataset directory")
        return {t: open_dataset(train[t], visual) for t in tasks}
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


def task_arithmetic_grid(pool: ModelPool, grid: Sequence[float], tasks: Sequence[str], roots: Mapping[str, str],
                         decoded: Mapping[str, str] | None = None,
                         **eval_kw) -> tuple[float, dict[str, torch.Tensor]]:
    """Task arithmetic at every lambda of ``grid``: the lambda with the best accuracy summed over ``tasks``
    (ties: the smaller lambda) and its per-sample correctness on each task. The choice is made on the test sets,
    so the result is an upper bound for a search (Figure 8's baseline), not a method with a held-out choice."""
    if not grid:
        raise ValueError("the task-arithmetic grid is empty: set multitask.task_arithmetic_grid")
    results = {}
    for lam in grid:
        state, _ = run_method("task_arithmetic", pool, None, lam=lam)
        results[lam] = correct_predictions(pool, state, tasks, roots, decoded=decoded, **eval_kw)
    summed = {lam: sum(accuracies(c).values()) for lam, c in results.items()}
    best = max(results, key=lambda lam: (summed[lam], -lam))
    return best, results[best]


def method_rows(name: str, pool: ModelPool, *, data: Mapping | None, options: Mapping, tasks: Sequence[str],
                roots: Mapping[str, str], grid: Sequence[float] = (), decoded: Mapping[str, str] | None = None,
                **eval_kw) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Merge ``pool`` with method ``name`` (``pretrained``, a registry method or :data:`GRID_SEARCH`) and evaluate
    it on ``tasks``: tidy rows (method, dataset, metric, value) of each task's accuracy and of the seconds spent
    merging and evaluating (all tasks: dataset ``all``), and each task's per-sample correctness (the grid search's
    at its chosen lambda). The grid search's whole time counts as evaluation, and its chosen lambda is a row of
    its own."""
    rows = []
    if name == GRID_SEARCH:
        start = time.perf_counter()
        best, correct = task_arithmetic_grid(pool, grid, tasks, roots, decoded=decoded, **eval_kw)
        merge_seconds, eval_seconds = 0.0, time.perf_counter() - start
        log.info("task arithmetic grid: best lambda %.2f (chosen on the test sets: an upper bound for a search)", best)
        rows.append(dict(method=name, dataset="all", metric="lambda", value=best))
    else:
        state, merge_seconds = run_method(name, pool, data, **options)
        start = time.perf_counter()
        correct = correct_predictions(pool, state, tasks, roots, decoded=decoded, **eval_kw)
        eval_seconds = time.perf_counter() - start
    rows += [dict(method=name, dataset=t, metric="accuracy", value=a) for t, a in accuracies(correct).items()]
    return rows + [dict(method=name, dataset="all", metric="merge_seconds", value=merge_seconds),
                   dict(method=name, dataset="all", metric="eval_seconds", value=eval_seconds)], correct


def expert_share_seconds(meta: Mapping[str, str], n_experts: int) -> float:
    """The share of a pool of ``n_experts`` in the seconds a logit cache spent on experts' logits: the cache holds
    the logits of every expert of the configured tasks (``meta['experts']``), computed in one pass."""
    return float(meta["expert_seconds"]) * n_experts / len(meta["experts"].split(","))


def dawin_rows(pool: ModelPool, evaluator: MultiTaskGroupedEvaluator, tasks: Sequence[str],
               logits: Mapping[str, str], roots: Mapping[str, str], *, n_components: int, seed: int,
               decoded: Mapping[str, str] | None = None,
               **mixture_kw) -> tuple[list[dict], list[dict], dict[str, torch.Tensor]]:
    """Multi-task DaWin on each of ``tasks``: coefficients from the cached logits of the pool's experts
    (``logits[task]``: a logit cache holding every expert's logits on that task's test set), a Dirichlet mixture
    of ``n_components``, one merged encoder per cluster. Returns the tidy rows (accuracy per task; ``eval_seconds``
    over all tasks, including the pool's share of the experts' passes), each task's mean coefficient per
    expert (task, expert, coefficient) and each task's per-sample correctness."""
    rows, means, seconds, correct = [], [], 0.0, {}
    for task in tasks:
        cached, meta = load_tensors(logits[task])
        start = time.perf_counter()
        coef = expert_coefficients([cached[t] for t in pool.tasks])  # the pool's experts only
        assigned, info = cluster_coefficients(coef.numpy(), n_components, seed, **mixture_kw)
        data = open_dataset(roots[task], pool.encoder(), decoded)
        out = evaluator.evaluate(pool, task, data, assigned)
        seconds += time.perf_counter() - start + expert_share_seconds(meta, len(pool.tasks))
        correct[task] = top1_correct(out, torch.as_tensor(data.labels))
        acc = percent_correct(correct[task])
        rows.append(dict(method="dawin", dataset=task, metric="accuracy", value=acc))
        mean = coef.mean(0).numpy()
        means += [dict(task=task, expert=t, coefficient=float(c)) for t, c in zip(pool.tasks, mean)]
        log.info("DaWin on %s: accuracy %.2f, %d cluster(s), mean coefficients %s", task, acc,
                 info["n_components"], np.round(mean, 3))
    return rows + [dict(method="dawin", dataset="all", metric="eval_seconds", value=seconds)], means, correct
