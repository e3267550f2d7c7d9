"""Soups of fine-tuning runs (Table 2): uniform soup, greedy soup and Model Stock, as classifiers.

Ingredients are DaWin classifier files of one architecture (image tower + head). The uniform soup is
a streaming mean (one ingredient in memory at a time: model-soups has 72 ViT-B/32 runs); the greedy
soup follows model soups' recipe (:func:`greedy_recipe`) on the ID held-out split; Model
Stock merges two runs with the pre-trained (zero-shot) classifier (:func:`model_stock_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..inputs.models import ImageClassifier
from ..method.weights import DistinctWeights, StateDict, is_mergeable, same_keys


def _state(path: str | Path, like: ImageClassifier) -> dict[str, torch.Tensor]:
    """The weights of ``path``, a classifier of ``like``'s architecture and classes."""
    return ImageClassifier.load(path, like=like).state_dict()


def uniform_soup(paths: Sequence[str | Path]) -> ImageClassifier:
    """The mean of every ingredient's weights, accumulated one ingredient at a time."""
    if len(paths) < 2:
        raise ValueError("a soup needs at least two fine-tuning runs")
    base = ImageClassifier.load(paths[0])
    distinct = DistinctWeights("the uniform soup's runs", "visual.")
    distinct.add(f"run {paths[0]}", base.state_dict())
    acc = {k: v.double() if v.is_floating_point() else v for k, v in base.state_dict().items()}
    for path in paths[1:]:
        sd = _state(path, base)
        distinct.add(f"run {path}", sd)
        acc = {k: v + sd[k].double() if v.is_floating_point() else v for k, v in acc.items()}
    base.load_state_dict({k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in acc.items()})
    return base


def greedy_recipe(candidates: Sequence[str], val_accuracy: Mapping[str, float],
                evaluate_soup: Callable[[list[str]], float]) -> tuple[list[str], list[dict[str, Any]]]:
    """Model soups' greedy recipe (Wortsman et al., 2022a; Table 2's greedy soup).

    Ingredients are sorted by held-out accuracy, best first (stable: ties keep ``candidates`` order);
    the soup starts as the best one, with its individual held-out accuracy as the score to beat; each
    next ingredient is kept iff ``evaluate_soup(soup + [it])`` (the held-out accuracy of the uniform
    weight average) is strictly greater than the current best. Strict ``>`` is what
    mlfoundations/model-soups ``main.py`` does (``if held_out_val_accuracy > best_val_acc_so_far``),
    which produced the published greedy soup. Returns the ingredients and one history record per tried
    ingredient: ``{"candidate", "accuracy", "added"}``.
    """
    if not candidates:
        raise ValueError("greedy soup needs at least one candidate")
    if len(set(candidates)) != len(candidates):
        raise ValueError("candidate names must be unique")
    missing = [c for c in candidates if c not in val_accuracy]
    if missing:
        raise ValueError(f"no held-out accuracy for {len(missing)} candidates, e.g. {missing[0]!r}")
    ranked = sorted(candidates, key=lambda c: -val_accuracy[c])
    soup, best = [ranked[0]], float(val_accuracy[ranked[0]])
    history: list[dict[str, Any]] = [{"candidate": ranked[0], "accuracy": best, "added": True}]
    for name in ranked[1:]:
        acc = float(evaluate_soup(soup + [name]))
        added = acc > best
        if added:
            soup, best = soup + [name], acc
        history.append({"candidate": name, "accuracy": acc, "added": added})
    return soup, history


def greedy_soup(paths: Sequence[str | Path], accuracy_of: Callable[[ImageClassifier], float]) -> tuple[ImageClassifier, dict]:
    """Model soups' greedy soup: ingredients by held-out accuracy, each kept if the soup does not get worse.

    ``accuracy_of(classifier)`` is the held-out (ID validation) accuracy. Soups are built from a running
    sum of the accepted ingredients, so each candidate costs one ingredient load and one evaluation.
    """
    names = [str(p) for p in paths]
    work = ImageClassifier.load(names[0])
    single, distinct = {}, DistinctWeights("the greedy soup's runs", "visual.")
    for name in names:
        state = _state(name, work)
        distinct.add(f"run {name}", state)
        work.load_state_dict(state)
        single[name] = accuracy_of(work)
    sums: dict[tuple[str, ...], dict[str, torch.Tensor]] = {}

    def summed(soup: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Sum of the weights of ``soup``: the current soup's sum is cached, a candidate adds one load."""
        if soup not in sums:
            base = summed(soup[:-1]) if len(soup) > 1 else None
            sd = _state(soup[-1], work)
            sums[soup] = {k: (base[k] if base else 0) + v.double() for k, v in sd.items() if v.is_floating_point()}
        return sums[soup]

    def evaluate(soup: list[str]) -> float:
        total = summed(tuple(soup))
        for key in [k for k in sums if k != tuple(soup) and k != tuple(soup[:-1])]:
            del sums[key]  # only the current soup and this candidate can be extended next
        _load_mean(work, total, len(soup))
        return accuracy_of(work)

    chosen, history = greedy_recipe(names, single, evaluate)
    _load_mean(work, summed(tuple(chosen)), len(chosen))
    return work, {"ingredients": chosen, "history": history, "individual_accuracy": single}


def _load_mean(model: ImageClassifier, total: dict[str, torch.Tensor], n: int) -> None:
    own = model.state_dict()
    model.load_state_dict({k: (total[k] / n).to(v.dtype) if k in total else v for k, v in own.items()})


def model_stock(pretrained: str | Path, runs: Sequence[str | Path]) -> tuple[ImageClassifier, dict[str, float]]:
    """Model Stock of fine-tuning ``runs`` anchored at the pre-trained (zero-shot) classifier."""
    base = ImageClassifier.load(pretrained)
    sds = [_state(r, base) for r in runs]
    distinct = DistinctWeights("Model Stock", "visual.")
    distinct.add(f"the pre-trained model ({pretrained})", base.state_dict())
    for run, sd in zip(runs, sds):
        distinct.add(f"run {run}", sd)
    merged, ratios = model_stock_state(base.state_dict(), sds)
    base.load_state_dict(merged)
    return base, {k: float(v) for k, v in ratios.items()}


# Model Stock (Jang et al., ECCV 2024, "Model Stock: All we need is just a few fine-tuned models")

def model_stock_state(theta0: StateDict, finetuned: Sequence[StateDict]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Layer-wise Model Stock: w_H = t * mean_i(w_i) + (1 - t) * w_0, with t = N cos / (1 + (N - 1) cos).

    For every floating-point tensor ("layer"), cos is the cosine of the angle between the runs'
    task vectors w_i - w_0. The paper's N-model derivation assumes one common angle between every
    pair of runs; with N > 2 we estimate it by the mean cosine over all N(N-1)/2 pairs.

    Conventions (documented choices, not in the paper):
    * a negative mean cosine is clamped to 0, so t stays in [0, 1] and w_H stays on the segment from
      w_0 to the runs' average (the paper's geometry is an interpolation);
    * if any run leaves a tensor unchanged (zero-norm task vector), the angle is undefined and
      t = 1: the plain average of the runs (which is w_0 itself when every run is unchanged);
    * non-floating entries (integer buffers) are copied from theta0 and get no ratio.

    Returns the merged state dict and the ratio t of every merged tensor.
    """
    if len(finetuned) < 2:
        raise ValueError(f"Model Stock needs at least two fine-tuned runs, got {len(finetuned)}")
    keys = same_keys(theta0, *finetuned)
    n = len(finetuned)
    merged: dict[str, torch.Tensor] = {}
    ratios: dict[str, float] = {}
    for k in keys:
        w0 = theta0[k]
        if not is_mergeable(w0):
            merged[k] = w0.clone()
            continue
        deltas = [(sd[k].double() - w0.double()).reshape(-1) for sd in finetuned]
        norms = [float(d.norm()) for d in deltas]
        if min(norms) == 0.0:
            t = 1.0
        else:
            pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
            cos = sum(float(deltas[i] @ deltas[j]) / (norms[i] * norms[j]) for i, j in pairs) / len(pairs)
            cos = max(cos, 0.0)
            t = n * cos / (1.0 + (n - 1) * cos)
        average = torch.stack([sd[k].double() for sd in finetuned]).mean(dim=0)
        merged[k] = (t * average + (1.0 - t) * w0.double()).to(w0.dtype)
        ratios[k] = t
    return merged, ratios
