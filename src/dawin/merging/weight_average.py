"""Weight averaging (model soup over task experts; Wortsman et al. 2022): theta = (1/M) sum_j theta_j."""

from __future__ import annotations

import torch

from ..method.weights import weighted_sum
from .pool import ModelPool


def merge(pool: ModelPool, data: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The arithmetic mean of the experts' encoders (``data`` is not used)."""
    if not pool.experts:
        raise ValueError("the model pool has no experts to merge; add fine-tuned encoders to pool.experts")
    experts = list(pool.experts.values())
    return weighted_sum(experts, [1.0 / len(experts)] * len(experts))
