"""Task arithmetic (Ilharco et al., ICLR 2023): theta = theta_0 + lam * sum_j tau_j, tau_j = theta_j - theta_0.

lam = 0.3 is the value used for multi-task merging by task_vectors / AdaMerging when no validation
search is run.
"""

from __future__ import annotations

import torch

from ..method.weights import add_task_vectors
from .pool import ModelPool


def merge(pool: ModelPool, data: dict[str, torch.Tensor] | None = None, *, lam: float = 0.3) -> dict[str, torch.Tensor]:
    """theta_0 + lam * sum_j tau_j over the pool's experts (``data`` is not used)."""
    if not pool.experts:
        raise ValueError("the model pool has no experts to merge; add fine-tuned encoders to pool.experts")
    taus = list(pool.task_vectors().values())
    return add_task_vectors(pool.pretrained, taus, [lam] * len(taus))
