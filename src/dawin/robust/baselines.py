"""Static baselines: coefficient grids chosen on the ID held-out split, and the output ensemble.

Static coefficients (WiSE-FT, output ensemble) are chosen on ID validation data, never on test data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..method.expertise import accuracy, check_finite, entropy


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


def oracle_domain_coefficient(sweep_accuracy: Mapping[float, float]) -> tuple[float, float]:
    """Table 1's oracle domain-wise l*(X): the grid value with the best accuracy on the TEST set itself.

    ``sweep_accuracy`` maps each coefficient to the merged model's test accuracy (labels are used, so it
    is an oracle, never a deployable method). Ties go to the smaller coefficient. Returns (alpha, acc).
    """
    alpha = select_on_validation(sweep_accuracy)
    return alpha, float(sweep_accuracy[alpha])


def robust_baselines(logits: Mapping[tuple[str, str], tuple[torch.Tensor, torch.Tensor]],
                     sweep_accuracy: Mapping[str, Mapping[float, float]],
                     sweep_pred: Mapping[str, Mapping[float, torch.Tensor]], dawin_coefficients: Mapping[str, torch.Tensor],
                     id_val: str, test_sets: Sequence[str], grid: Sequence[float], t0: float,
                     t1: float) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], torch.Tensor], dict]:
    """Every static and dynamic baseline of the robust fine-tuning tables on every test set.

    ``logits[(model, dataset)]`` = (logits, labels) of ``zeroshot``, ``finetuned`` and ``average`` on the ID
    held-out split ``id_val`` and the test sets; ``sweep_accuracy[dataset][alpha]`` / ``sweep_pred[dataset][alpha]``
    the WiSE-FT grid's accuracies and per-sample predictions; ``dawin_coefficients[dataset]`` DaWin's l(x)
    (for DOE). The output ensemble's and WiSE-FT's weights are chosen on ``id_val`` over ``grid``; the
    domain-wise oracle takes each test set's best grid value (test labels: an oracle).

    Returns {(method, dataset): accuracy (%)}, {(method, dataset): per-sample correctness (bool)} and the
    choices made (``output_ensemble``, ``wise_ft``, ``oracle_domain`` per test set).
    """
    (z0, y), (z1, _) = logits["zeroshot", id_val], logits["finetuned", id_val]
    ensemble = select_on_validation(output_ensemble_grid(z0, z1, y, grid, t0, t1))
    wise = select_on_validation({a: float(sweep_accuracy[id_val][a]) for a in grid})
    accuracy_of, correct, oracle = {}, {}, {}
    for d in test_sets:
        (z0, y), (z1, _), (za, _) = logits["zeroshot", d], logits["finetuned", d], logits["average", d]
        y = y.long()
        alpha, _ = oracle_domain_coefficient({float(a): float(v) for a, v in sweep_accuracy[d].items()})
        oracle[d] = alpha
        predictions = {
            "zeroshot": z0.argmax(-1), "finetuned": z1.argmax(-1), "average": za.argmax(-1),
            "output_ensemble": output_ensemble_probs(z0, z1, ensemble, t0, t1).argmax(-1),
            "wise_ft": sweep_pred[d][wise],
            "dcs": dynamic_classifier_selection(z0, z1, t0, t1).argmax(-1),
            "doe": dynamic_output_ensemble(z0, z1, dawin_coefficients[d], t0, t1).argmax(-1),
            "oracle_domain": sweep_pred[d][alpha],
        }
        for method, pred in predictions.items():
            correct[method, d] = pred.long() == y
            accuracy_of[method, d] = float(correct[method, d].double().mean() * 100)
        # the grid's methods report the sweep's own accuracy (the number they were chosen by)
        accuracy_of["wise_ft", d] = float(sweep_accuracy[d][wise])
        accuracy_of["oracle_domain", d] = float(sweep_accuracy[d][alpha])
    return accuracy_of, correct, {"output_ensemble": ensemble, "wise_ft": wise, "oracle_domain": oracle}
