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


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """Largest raw logit."""
    check_finite(logits)
    return logits.double().max(dim=-1).values


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(dim=-1) == labels.long()).double().mean() * 100.0)
