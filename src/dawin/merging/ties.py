"""TIES-merging (Yadav et al., NeurIPS 2023) on the pool's task vectors; see ``dawin.weights.ties_merge``.

Defaults follow AdaMerging's TIES baseline: keep the top 20% of each (whole, flattened) task vector,
elect signs, disjoint **sum**, scale by lam = 0.3. ``reduce="mean"`` gives TIES's disjoint mean.
"""

from __future__ import annotations

import torch

from ..weights import ties_merge
from .pool import ModelPool


def merge(pool: ModelPool, data: dict[str, torch.Tensor] | None = None, *, fraction: float = 0.2,
          lam: float = 0.3, reduce: str = "sum") -> dict[str, torch.Tensor]:
    """TIES-merged encoder theta_0 + lam * disjoint_merge(trim(tau_j)) (``data`` is not used)."""
    if not pool.experts:
        raise ValueError("the model pool has no experts to merge; add fine-tuned encoders to pool.experts")
    return ties_merge(pool.pretrained, list(pool.task_vectors().values()), fraction=fraction, lam=lam, reduce=reduce)
