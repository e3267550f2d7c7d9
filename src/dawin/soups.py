"""Soups of fine-tuning runs (Table 2): uniform soup, greedy soup and Model Stock, as classifiers.

Ingredients are DaWin classifier files of one architecture (image tower + head). The uniform soup is
a streaming mean (one ingredient in memory at a time: model-soups has 72 ViT-B/32 runs); the greedy
soup follows model soups' recipe (:func:`dawin.baselines.greedy_soup`) on the ID held-out split; Model
Stock merges two runs with the pre-trained (zero-shot) classifier (:func:`dawin.weights.model_stock`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .baselines import greedy_soup as greedy_recipe
from .models import ImageClassifier
from .weights import model_stock as model_stock_weights


def _state(path: str | Path, architecture: str | None) -> tuple[dict[str, torch.Tensor], str]:
    clf = ImageClassifier.load(path, architecture)
    return clf.state_dict(), clf.architecture


def uniform_soup(paths: Sequence[str | Path]) -> ImageClassifier:
    """The mean of every ingredient's weights, accumulated one ingredient at a time."""
    if len(paths) < 2:
        raise ValueError("a soup needs at least two fine-tuning runs")
    base = ImageClassifier.load(paths[0])
    acc = {k: v.double() if v.is_floating_point() else v for k, v in base.state_dict().items()}
    for path in paths[1:]:
        sd, _ = _state(path, base.architecture)
        acc = {k: v + sd[k].double() if v.is_floating_point() else v for k, v in acc.items()}
    base.load_state_dict({k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in acc.items()})
    return base


def greedy_soup(paths: Sequence[str | Path], accuracy_of: Callable[[ImageClassifier], float]) -> tuple[ImageClassifier, dict]:
    """Model soups' greedy soup: ingredients by held-out accuracy, each kept if the soup does not get worse.

    ``accuracy_of(classifier)`` is the held-out (ID validation) accuracy. Soups are built from a running
    sum of the accepted ingredients, so each candidate costs one ingredient load and one evaluation.
    """
    names = [str(p) for p in paths]
    work = ImageClassifier.load(names[0])
    arch = work.architecture
    single = {}
    for name in names:
        work.load_state_dict(_state(name, arch)[0])
        single[name] = accuracy_of(work)
    sums: dict[tuple[str, ...], dict[str, torch.Tensor]] = {}

    def summed(soup: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Sum of the weights of ``soup``: the current soup's sum is cached, a candidate adds one load."""
        if soup not in sums:
            base = summed(soup[:-1]) if len(soup) > 1 else None
            sd = _state(soup[-1], arch)[0]
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
    sds = [_state(r, base.architecture)[0] for r in runs]
    merged, ratios = model_stock_weights(base.state_dict(), sds)
    base.load_state_dict(merged)
    return base, {k: float(v) for k, v in ratios.items()}
