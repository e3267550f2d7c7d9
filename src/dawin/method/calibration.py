"""Temperature scaling (Guo et al., 2017) fitted on held-out in-distribution logits.

Temperatures only shape entropies and output-ensemble probabilities, never the merged model's logits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from scipy.optimize import minimize_scalar

from .expertise import check_finite


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / T)."""
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels.long()))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T > 0 minimising the held-out NLL, found by bounded scalar search over log T.

    The NLL is convex in 1/T, so the bounded Brent search on log T finds the global minimum inside
    ``bounds``; a minimum on a bound means the logits are degenerate (e.g. constant) and is an error.
    """
    check_finite(logits, "held-out logits")
    if logits.shape[0] != labels.shape[0] or logits.shape[0] == 0:
        raise ValueError(f"need matching, non-empty logits and labels, got {logits.shape[0]} and {labels.shape[0]}")
    z, y = logits.double(), labels.long()
    if bool((z.amax(1) == z.amin(1)).all()):
        raise ValueError("held-out logits are constant across classes: the NLL does not depend on T")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    res = minimize_scalar(lambda s: nll(z, y, math.exp(s)), bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    t = math.exp(res.x)
    if min(abs(res.x - lo), abs(res.x - hi)) < 1e-2 or res.fun < 1e-12:
        raise ValueError(
            f"temperature search hit its bound ({t:.4g}); the held-out logits look degenerate "
            "(constant or perfectly separable) and cannot be calibrated"
        )
    return t


def read_temperatures(path: str | Path, models: Sequence[str] = ("zeroshot", "finetuned")) -> dict[str, float]:
    """The fitted temperatures of ``models`` from a ``temperatures`` rule's JSON file; each must be a positive,
    finite number, else a ValueError names the file, the entry and how to rebuild it."""
    values = json.loads(Path(path).read_text())
    out = {}
    for model in models:
        t = values.get(model) if isinstance(values, dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"{path}: temperature of {model!r} is {t!r}, not a positive finite number; delete the "
                             "file and rerun snakemake (rule temperatures refits it)")
        out[model] = float(t)
    return out
