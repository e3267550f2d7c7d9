"""Pure numpy helpers for the paper's analyses: correctness splits (Fig. 2, C, D, E, F), Pearson r
(Fig. 2, C, D), per-sample optimal coefficients and their optimality check (Table C), split means
(Fig. 6, F).

Inputs may be numpy arrays or CPU torch tensors; results are numpy arrays or Python floats.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

SPLITS = ("all", "TT", "TF", "FT", "FF")
"""Split names; first letter: zero-shot correct (T) or wrong (F), second letter: fine-tuned."""


def _finite_1d(x: ArrayLike, what: str) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contain {int((~np.isfinite(a)).sum())} non-finite values")
    return a


def correctness_splits(correct0: ArrayLike, correct1: ArrayLike) -> dict[str, NDArray[np.bool_]]:
    """Boolean masks "all", "TT", "TF", "FT", "FF" (Fig. 2): letters are zero-shot then fine-tuned correctness."""
    c0, c1 = np.asarray(correct0), np.asarray(correct1)
    if c0.dtype != np.bool_ or c1.dtype != np.bool_ or c0.shape != c1.shape or c0.ndim != 1:
        raise ValueError(f"need two boolean 1-D arrays of equal length, got {c0.dtype}{c0.shape} and {c1.dtype}{c1.shape}")
    return {"all": np.ones_like(c0), "TT": c0 & c1, "TF": c0 & ~c1, "FT": ~c0 & c1, "FF": ~c0 & ~c1}


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation of x and y (Fig. 2, C, D).

    Undefined cases give NaN instead of a warning: fewer than 2 samples (an empty correctness split)
    or a constant x or y. Non-finite inputs are an error: they would hide a broken upstream value.
    """
    a, b = _finite_1d(x, "x"), _finite_1d(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y must have equal length, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return float("nan")
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt((da @ da) * (db @ db))
    return float(da @ db / denom) if denom > 0 else float("nan")


def optimal_coefficients(ce_grid: ArrayLike, alphas: ArrayLike) -> NDArray[np.float64]:
    """Table C's per-sample optimal l*(x): the grid value minimising the merged model's cross-entropy.

    ``ce_grid[a, i]`` is the cross-entropy of sample i under the model interpolated at ``alphas[a]``
    (the paper's grid is 0.05, 0.10, ..., 0.95). Ties go to the smaller alpha.
    """
    ce = np.asarray(ce_grid, dtype=np.float64)
    al = _finite_1d(alphas, "alphas")
    if ce.ndim != 2 or ce.shape[0] != len(al) or ce.shape[1] == 0:
        raise ValueError(f"ce_grid must have shape (len(alphas)={len(al)}, N>0), got {ce.shape}")
    if not np.isfinite(ce).all():
        raise ValueError(f"ce_grid contains {int((~np.isfinite(ce)).sum())} non-finite values")
    order = np.argsort(al, kind="stable")
    # argmin returns the first minimum: on the ascending grid that is the smaller alpha
    return al[order][np.argmin(ce[order], axis=0)]


def optimality_check(optimal: ArrayLike, ce_ratio_coef: ArrayLike, wise_alpha: float, seed: int) -> dict[str, float]:
    """Table C's four rows for one dataset.

    ``optimal_std``: std of l*(x) (unbiased, ddof=1); ``mse_uniform``: MSE between l*(x) and per-sample
    U(0, 1) draws (numpy Generator seeded with ``seed``); ``mse_wise_ft``: MSE to the WiSE-FT constant
    (0.8 in the paper); ``mse_ce_ratio``: MSE to the cross-entropy-ratio coefficients (the oracle of
    Sec. 2.2, "X-entropy ratio (ours)").
    """
    opt, ratio = _finite_1d(optimal, "optimal coefficients"), _finite_1d(ce_ratio_coef, "ce-ratio coefficients")
    if opt.shape != ratio.shape or len(opt) < 2:
        raise ValueError(f"need two equal-length arrays of >= 2 samples, got {len(opt)} and {len(ratio)}")
    uniform = np.random.default_rng(seed).uniform(0.0, 1.0, size=len(opt))
    return {
        "optimal_std": float(opt.std(ddof=1)),
        "mse_uniform": float(np.mean((opt - uniform) ** 2)),
        "mse_wise_ft": float(np.mean((opt - wise_alpha) ** 2)),
        "mse_ce_ratio": float(np.mean((opt - ratio) ** 2)),
    }
