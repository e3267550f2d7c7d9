"""Per-sample interpolation coefficients from model expertise (DaWin Eq. 1, Eq. 2, M-model form).

Inputs are per-sample expertise *losses* (entropies, or cross-entropies for the oracle): the lower
the loss, the more the model is trusted. l is the weight on the fine-tuned model theta_1.
"""

from __future__ import annotations

import numpy as np
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


def score_ratio_coefficients(s0: torch.Tensor, s1: torch.Tensor, exponentiate: bool = False) -> torch.Tensor:
    """Table D's data-dependent alternatives: l(x) = s1 / (s0 + s1) for expertise *scores*.

    Scores grow with expertise (the opposite of Eq. 1's losses): confidence, confidence difference
    (:func:`dawin.method.expertise.confidence_difference`) and max logit (use
    :func:`dawin.method.expertise.shifted_max_logit`: raw max logits of a learned head can be negative).
    Each model's score must come from its OWN logits: the authors' code computed the zero-shot and the
    "fine-tuned" confidence (difference) both from the zero-shot logits (with the two temperatures), a
    bug not copied here.

    ``exponentiate=True`` gives exp(s1) / (exp(s0) + exp(s1)) = sigmoid(s1 - s0): the authors' code
    exponentiated confidence and confidence difference (``expconf_ratio``, ``expconfdiff_ratio``) but
    not the max logit. Their Table D rows ran without offset adjustment (their offset is only defined
    for entropy and loss expertise), so none is applied here.

    The plain ratio needs scores >= 0 with s0 + s1 > 0; a single zero score is fine (l = 0 or 1).
    Negative scores or two zero scores raise a ValueError with their count.
    """
    _check(s0, s1)
    s0, s1 = s0.double(), s1.double()
    if exponentiate:
        return torch.sigmoid(s1 - s0)
    n_neg = int(((s0 < 0) | (s1 < 0)).sum())
    if n_neg:
        raise ValueError(
            f"{n_neg} of {s0.numel()} samples have a negative expertise score, so s1 / (s0 + s1) is undefined; "
            "confidences are never negative, and for max logits use shifted_max_logit (max minus min logit)"
        )
    n_zero = int(((s0 + s1) == 0).sum())
    if n_zero:
        raise ValueError(
            f"{n_zero} of {s0.numel()} samples have zero score for both models (e.g. constant logit rows or tied "
            "top-2 probabilities), so s1 / (s0 + s1) is undefined; check the logits or use exponentiate=True"
        )
    return s1 / (s0 + s1)


def random_coefficients(n: int, distribution: str, seed: int, **params: float) -> torch.Tensor:
    """Table D's data-independent per-sample coefficients, float64, from a seeded numpy Generator.

    - ``"uniform"``: U(0, 1); no parameters.
    - ``"normal"``: N(mean, std^2) (parameters ``mean`` and ``std``; the paper's rows are N(0.5, 0.2^2)
      and N(0.8, 0.1^2)), clamped to [``low``, ``high``]. The defaults low=0.01, high=0.99 are the
      authors' clamp (naver-ai/dawin ``dawin_rft/main_dawin.py``, ``torch.clamp(coefs, 0.01, 0.99)``).
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    if distribution == "uniform":
        if params:
            raise ValueError(f"'uniform' is U(0, 1) and takes no parameters, got {sorted(params)}")
        values = rng.uniform(0.0, 1.0, size=int(n))
    elif distribution == "normal":
        unknown = set(params) - {"mean", "std", "low", "high"}
        if unknown or not {"mean", "std"} <= set(params):
            raise ValueError(f"'normal' needs mean and std (optional low, high), got {sorted(params)}")
        low, high = params.get("low", 0.01), params.get("high", 0.99)
        if not params["std"] >= 0 or not 0 <= low <= high <= 1:
            raise ValueError(f"need std >= 0 and 0 <= low <= high <= 1, got {params}")
        values = np.clip(rng.normal(params["mean"], params["std"], size=int(n)), low, high)
    else:
        raise ValueError(f"unknown distribution {distribution!r}; use 'uniform' or 'normal'")
    return torch.from_numpy(values)
