"""Static baselines: coefficient grids chosen on the ID held-out split, and the output ensemble.

Static coefficients (WiSE-FT, output ensemble) are chosen on ID validation data, never on test data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .expertise import accuracy, check_finite, entropy


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


def dynamic_classifier_selection(z0: torch.Tensor, z1: torch.Tensor, t0: float = 1.0, t1: float = 1.0) -> torch.Tensor:
    """Table 5's dynamic classifier selection (DCS): per sample, softmax(z / T) of the lower-entropy model.

    Entropies use each model's temperature. Ties go to the zero-shot model, as in the authors' code
    (``selective_entropy``: the fine-tuned model is chosen only when H0 > H1).
    """
    pick_ft = (entropy(z0, t0) > entropy(z1, t1)).double()
    # weight 0 or 1 makes the ensemble return one model's probabilities exactly
    return output_ensemble_probs(z0, z1, pick_ft, t0, t1)


def dynamic_output_ensemble(z0: torch.Tensor, z1: torch.Tensor, coefficients: torch.Tensor, t0: float = 1.0,
                            t1: float = 1.0) -> torch.Tensor:
    """Table 5's dynamic output ensemble (DOE): (1 - l(x)) softmax(z0 / T0) + l(x) softmax(z1 / T1).

    ``coefficients`` are DaWin's per-sample l(x) (shape (N,), in [0, 1]), applied to probabilities
    instead of weights.
    """
    c = torch.as_tensor(coefficients)
    if c.shape != (z0.shape[0],):
        raise ValueError(f"need one coefficient per sample, shape ({z0.shape[0]},), got {tuple(c.shape)}")
    if not bool(((c >= 0) & (c <= 1)).all()):
        raise ValueError(f"{int((~((c >= 0) & (c <= 1))).sum())} coefficients lie outside [0, 1] (or are NaN)")
    return output_ensemble_probs(z0, z1, c, t0, t1)


def greedy_soup(candidates: Sequence[str], val_accuracy: Mapping[str, float],
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


def oracle_domain_coefficient(sweep_accuracy: Mapping[float, float]) -> tuple[float, float]:
    """Table 1's oracle domain-wise l*(X): the grid value with the best accuracy on the TEST set itself.

    ``sweep_accuracy`` maps each coefficient to the merged model's test accuracy (labels are used, so it
    is an oracle, never a deployable method). Ties go to the smaller coefficient. Returns (alpha, acc).
    """
    alpha = select_on_validation(sweep_accuracy)
    return alpha, float(sweep_accuracy[alpha])
