"""Expertise measures computed from logits (DaWin Sec. 4).

All functions take logits of shape (N, C) and return one value per sample. NaN or infinite logits
are an error: a silent NaN entropy would turn into a silent wrong coefficient downstream.
"""

from __future__ import annotations

import torch


def check_finite(logits: torch.Tensor, what: str = "logits") -> torch.Tensor:
    """Raise a ValueError naming how many entries of ``logits`` are NaN or infinite."""
    bad = ~torch.isfinite(logits)
    if bad.any():
        rows = int(bad.reshape(bad.shape[0], -1).any(dim=1).sum()) if logits.ndim > 1 else int(bad.sum())
        raise ValueError(
            f"{what} contain {int(bad.sum())} non-finite values in {rows} of {logits.shape[0]} samples; "
            "the model or its checkpoint is broken (recompute the cached logits after fixing it)"
        )
    return logits


def check_informative(logits: torch.Tensor, what: str = "logits") -> torch.Tensor:
    """:func:`check_finite`, and a ValueError when every sample has the same logits: a model whose outputs do not
    depend on its input (a broken or mismatched checkpoint) would otherwise give a plausible-looking accuracy."""
    check_finite(logits, what)
    if logits.shape[0] > 1 and bool((logits == logits[:1]).all()):
        raise ValueError(f"{what} are the same for all {logits.shape[0]} samples: the model's output does not depend "
                         "on its input (a broken or mismatched checkpoint); fix the model, then rerun")
    return logits


def entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Prediction entropy H = -sum_c p_c log p_c, p = softmax(z / T), natural log."""
    check_finite(logits)
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-sample cross-entropy of the true label, -log softmax(z / T)_y (the oracle's expertise)."""
    check_finite(logits)
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    return -logp.gather(1, labels.long().view(-1, 1)).squeeze(1)


def confidence(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Maximum softmax probability."""
    check_finite(logits)
    return torch.softmax(logits.double() / temperature, dim=-1).max(dim=-1).values


def top1_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample top-1 correctness (bool): what the tables' bootstrap intervals resample."""
    return logits.argmax(dim=-1) == labels.long()


def percent_correct(correct: torch.Tensor) -> float:
    """The top-1 accuracy in percent of per-sample correctness."""
    return float(correct.double().mean() * 100.0)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return percent_correct(top1_correct(logits, labels))


def confidence_difference(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Top-1 minus top-2 softmax probability of softmax(z / T) (Table D, "confidence difference ratio").

    Lies in [0, 1]; 0 exactly when the two largest logits tie. Needs at least two classes.
    """
    check_finite(logits)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"confidence difference needs logits of shape (N, C) with C >= 2, got {tuple(logits.shape)}")
    top2 = torch.softmax(logits.double() / temperature, dim=-1).topk(2, dim=-1).values
    return top2[:, 0] - top2[:, 1]


def shifted_max_logit(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Max-logit expertise score for the Table D "max logit ratio": max(z / T) - min(z / T) per sample.

    Why the shift: a ratio s1 / (s0 + s1) needs non-negative scores, but a learned (fine-tuned) head can
    give negative max logits, so the raw max logit only works for CLIP's positive scaled-cosine logits.
    Logits are defined up to a per-sample additive constant (softmax ignores it), so subtracting the
    sample's smallest logit loses nothing the prediction depends on and makes the score >= 0 (0 only for
    a constant row). Dividing by T puts the two models' logits on their calibrated scales.
    """
    check_finite(logits)
    z = logits.double() / temperature
    return z.max(dim=-1).values - z.min(dim=-1).values


def pseudo_label_loss(logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy -sum_c q_c log softmax(z / T)_c against a soft pseudo label q of shape (N, C).

    Fig. 5's soft pseudo-label expertise (q from the output ensemble or the weight average). Hard pseudo
    labels are :func:`cross_entropy` with ``q.argmax(1)`` as labels. The authors' code applied no
    temperature to this loss, which is ``temperature=1``.
    """
    check_finite(logits)
    check_finite(target, "pseudo-label targets")
    if target.shape != logits.shape:
        raise ValueError(f"pseudo-label targets must have the logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}")
    q = target.double()
    bad = int(((q < 0).any(dim=1) | ((q.sum(dim=1) - 1).abs() > 1e-6)).sum())
    if bad:
        raise ValueError(f"{bad} of {q.shape[0]} pseudo-label rows are not probability vectors (non-negative, summing to 1)")
    return -(q * torch.log_softmax(logits.double() / temperature, dim=-1)).sum(dim=-1)


def correctness(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Boolean per-sample top-1 correctness, argmax(z) == y (the TT/TF/FT/FF splits of Fig. 2)."""
    check_finite(logits)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"need logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return logits.argmax(dim=-1) == labels.long()
