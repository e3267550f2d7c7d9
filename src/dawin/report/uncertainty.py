"""How sure an accuracy is: bootstrap intervals from per-sample correctness, and paired comparisons.

A test set of n images gives each accuracy a sampling error of about sqrt(p(1-p)/n): 2 points at n = 500,
so the demo's differences of a fraction of a point are one or two images. Every interval here resamples the
images of each test set with replacement (``n_boot`` times, percentile interval); an average over test sets
(the OOD average) resamples each set independently and averages, as the average itself does. A paired
comparison resamples the same images for both methods, so what the two get right together cancels.

Resampling n 0/1 values with replacement draws the number of ones from Binomial(n, k/n), and resampling n
pairs draws the counts of the four (right, wrong) combinations from a multinomial: the replicates are drawn
that way, exactly the bootstrap's distribution at O(n_boot) cost (ImageNet's 50,000 images would otherwise
need 10^8 indices per interval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

N_BOOT = 2000
LEVEL = 0.95


def _correct(x: ArrayLike, where: str) -> NDArray[np.float64]:
    c = np.asarray(x)
    if c.ndim != 1 or len(c) == 0:
        raise ValueError(f"{where}: per-sample correctness must be a non-empty 1-d array, got shape {c.shape}")
    if not np.isin(c, (0, 1)).all():
        raise ValueError(f"{where}: per-sample correctness must be 0/1 (or boolean)")
    return c.astype(np.float64)


def resampled_accuracies(correct: Mapping[str, ArrayLike], datasets: Sequence[str], n_boot: int = N_BOOT,
                         seed: int = 0) -> NDArray[np.float64]:
    """(n_boot,) bootstrap replicates of the mean accuracy (%) over ``datasets``, each set resampled on its own
    (reproducibly: the generator is seeded by ``seed``, the set's name and its size)."""
    total = np.zeros(n_boot)
    for d in datasets:
        c = _correct(correct[d], d)
        total += _rng(seed, d, len(c)).binomial(len(c), c.mean(), size=n_boot) / len(c)
    return 100.0 * total / len(datasets)


def _rng(seed: int, dataset: str, n: int) -> np.random.Generator:
    return np.random.default_rng([seed, n, *dataset.encode()])


def interval(replicates: ArrayLike, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates."""
    r = np.asarray(replicates, dtype=np.float64)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(r, [tail, 100 - tail])
    return float(lo), float(hi)


def accuracy_interval(correct: Mapping[str, ArrayLike], datasets: Sequence[str], n_boot: int = N_BOOT,
                      seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` bootstrap interval of the mean accuracy (%) over ``datasets``."""
    return interval(resampled_accuracies(correct, datasets, n_boot, seed), level)


def paired_difference(correct_a: Mapping[str, ArrayLike], correct_b: Mapping[str, ArrayLike],
                      datasets: Sequence[str], n_boot: int = N_BOOT, seed: int = 0,
                      level: float = LEVEL) -> dict[str, float]:
    """Accuracy of a minus b (points) over ``datasets``, its paired bootstrap interval, and the share of
    replicates where a is not better (a one-sided bootstrap p-value for "a beats b")."""
    diff = np.zeros(n_boot)
    for d in datasets:
        a, b = _correct(correct_a[d], d), _correct(correct_b[d], d)
        if len(a) != len(b):
            raise ValueError(f"{d}: the two methods were evaluated on different numbers of images")
        only_a, only_b = float(np.sum(a * (1 - b))), float(np.sum((1 - a) * b))
        cells = np.array([only_a, only_b, len(a) - only_a - only_b]) / len(a)
        counts = _rng(seed, d, len(a)).multinomial(len(a), cells, size=n_boot)
        diff += 100.0 * (counts[:, 0] - counts[:, 1]) / len(a)
    diff /= len(datasets)
    observed = 100.0 * float(np.mean([_correct(correct_a[d], d).mean() - _correct(correct_b[d], d).mean()
                                      for d in datasets]))
    lo, hi = interval(diff, level)
    return {"difference": observed, "low": lo, "high": hi, "p_not_better": float(np.mean(diff <= 0))}


def verdict(value: float, low: float, high: float) -> str:
    """Whether a published number lies in our interval: "inside", "above" or "below" it."""
    if value < low:
        return "below"
    return "above" if value > high else "inside"
