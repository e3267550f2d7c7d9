"""Per-sample interpolation coefficients from model expertise (DaWin Eq. 1, Eq. 2, M-model form).

Inputs are per-sample expertise *losses* (entropies, or cross-entropies for the oracle): the lower
the loss, the more the model is trusted. l is the weight on the fine-tuned model theta_1.
"""

from __future__ import annotations

import torch


def _check(*losses: torch.Tensor) -> None:
    n = losses[0].shape[0]
    for h in losses:
        if h.shape != (n,):
            raise ValueError(f"expertise losses must be 1-D of equal length, got shapes {[tuple(x.shape) for x in losses]}")
        if not torch.isfinite(h).all():
            raise ValueError(f"{int((~torch.isfinite(h)).sum())} non-finite expertise values; check the logits")
    if n == 0:
        raise ValueError("no samples: cannot compute coefficients of an empty domain")


def entropy_ratio_coefficients(h0: torch.Tensor, h1: torch.Tensor) -> torch.Tensor:
    """Eq. 1: l(x) = exp(-H1) / (exp(-H0) + exp(-H1)) = sigmoid(H0 - H1)."""
    _check(h0, h1)
    return torch.sigmoid(h0.double() - h1.double())


def offset_adjusted_coefficients(h0: torch.Tensor, h1: torch.Tensor) -> torch.Tensor:
    """Eq. 2 (Appendix A.1): per-domain offset adjustment.

    With mu_m, sigma_m the mean and unbiased std of H_m over the domain,
    O = (sigma0/mu0 + sigma1/mu1) / 2, T = (mu0 + mu1) / mu0, and
    l(x) = (exp(-H1) + O/T) / (exp(-H0) + exp(-H1) + O).
    A domain of one sample has no std: its offset is 0 (Eq. 1). A domain where a model's mean
    entropy is 0 (every prediction one-hot) has no coefficient of variation: raise.
    """
    _check(h0, h1)
    h0, h1 = h0.double(), h1.double()
    mu0, mu1 = h0.mean(), h1.mean()
    if mu0 <= 0 or mu1 <= 0:
        raise ValueError(
            "mean entropy is 0 for a model on this domain (every prediction is one-hot), so the offset "
            "O = (sigma/mu) is undefined; use offset_adjustment: false or check the temperatures"
        )
    if h0.numel() > 1:
        offset = (h0.std(unbiased=True) / mu0 + h1.std(unbiased=True) / mu1) / 2
    else:
        offset = torch.zeros((), dtype=torch.float64)
    rel = (mu0 + mu1) / mu0
    e0, e1 = torch.exp(-h0), torch.exp(-h1)
    return (e1 + offset / rel) / (e0 + e1 + offset)


def multi_model_coefficients(losses: torch.Tensor) -> torch.Tensor:
    """M models: l_j(x) = softmax_j(-H_j(x)); ``losses`` has shape (N, M), rows of the result sum to 1."""
    if losses.ndim != 2:
        raise ValueError(f"losses must have shape (N, M), got {tuple(losses.shape)}")
    _check(*losses.T)
    return torch.softmax(-losses.double(), dim=1)


def domain_coefficients(h0: torch.Tensor, h1: torch.Tensor, offset_adjustment: bool = True) -> torch.Tensor:
    """The default coefficient of a test domain: Eq. 2 when ``offset_adjustment`` else Eq. 1."""
    return offset_adjusted_coefficients(h0, h1) if offset_adjustment else entropy_ratio_coefficients(h0, h1)
