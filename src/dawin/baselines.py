"""Static baselines: coefficient grids chosen on the ID held-out split, and the output ensemble.

Static coefficients (WiSE-FT, output ensemble) are chosen on ID validation data, never on test data.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .expertise import accuracy, check_finite


def select_on_validation(scores: Mapping[float, float]) -> float:
    """The grid value with the best validation score; ties go to the smaller value (closer to ZS)."""
    if not scores:
        raise ValueError("empty grid")
    best = max(scores.values())
    return min(a for a, s in scores.items() if s == best)


def output_ensemble_probs(z0: torch.Tensor, z1: torch.Tensor, weight: float | torch.Tensor,
                          t0: float = 1.0, t1: float = 1.0) -> torch.Tensor:
    """(1 - w) softmax(z0 / T0) + w softmax(z1 / T1); ``weight`` a scalar or one value per sample."""
    check_finite(z0)
    check_finite(z1)
    w = torch.as_tensor(weight, dtype=torch.float64)
    w = w.view(-1, 1) if w.ndim else w
    return (1 - w) * torch.softmax(z0.double() / t0, -1) + w * torch.softmax(z1.double() / t1, -1)


def output_ensemble_grid(z0: torch.Tensor, z1: torch.Tensor, labels: torch.Tensor, alphas, t0: float = 1.0,
                         t1: float = 1.0) -> dict[float, float]:
    """Accuracy of the output ensemble at each weight of ``alphas``."""
    return {float(a): accuracy(output_ensemble_probs(z0, z1, a, t0, t1), labels) for a in alphas}
