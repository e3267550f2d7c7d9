"""DaWin for M experts (multi-task merging): per-sample coefficients from the experts' entropies.

Oh et al., "DaWin: Training-free Dynamic Weight Interpolation for Robust Adaptation", ICLR 2025,
multi-task section; the authors' code is github.com/naver-ai/dawin, ``dawin_mtl/src``.

For samples x of one evaluation task d, expert j (theta0 + tau_j) is run through task d's frozen
head; its expertise is the prediction entropy H_j(x) and the coefficients are
l(x) = softmax_j(-H_j(x)) (:func:`dawin.method.coefficients.multi_model_coefficients`). The coefficients
are clustered with a Dirichlet mixture and each cluster gets one merged encoder

    theta(l) = theta0 + lam0 * scale * sum_j l_j tau_j,  lam0 = 0.3,

with scale = M when ``authors_scaling`` (default). The authors' code multiplies by the number of
tasks (``main_dawin.py``: ``(0.3 * n_tasks) * F.softmax(negent)``; ``eval.py``:
``0.3 * n_tasks * dmms[d].params_[k]``) so that uniform coefficients give task arithmetic at 0.3;
the paper's printed formula has no M, which ``authors_scaling=False`` reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch

from ..method.coefficients import multi_model_coefficients
from ..method.expertise import entropy
from ..inference.evaluation import GroupedEvaluator
from ..inference.logits import compute_logits
from ..method.mixtures import DirichletMixture
from ..method.weights import StateDict, add_task_vectors
from .pool import ModelPool

LAM0 = 0.3
"""Task-arithmetic scaling the multi-task DaWin builds on (authors' code and task_vectors default)."""


def expert_entropies(logits_per_expert: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """H (N, M): column j is the prediction entropy of expert j's logits (N, C) on the same N samples.

    ``logits_per_expert`` is a sequence of M tensors (N, C) or one tensor (M, N, C).
    """
    parts = list(logits_per_expert)
    if not parts:
        raise ValueError("need the logits of at least one expert")
    shapes = {tuple(z.shape) for z in parts}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every expert's logits must be (N, C) of one shape, got {sorted(shapes)}")
    return torch.stack([entropy(z) for z in parts], dim=1)


def expert_coefficients(logits_per_expert: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """l (N, M) = softmax_j(-H_j(x)): DaWin's entropy-ratio coefficients over M experts (float64)."""
    return multi_model_coefficients(expert_entropies(logits_per_expert))


@torch.no_grad()
def expert_logits(pool: ModelPool, task: str, dataset, *, batch_size: int = 256, num_workers: int = 0,
                  device: torch.device | None = None, use_autocast: bool = True) -> list[torch.Tensor]:
    """Logits (N, C_task) of every expert's encoder through ``task``'s frozen head, in pool order."""
    if task not in pool.heads:
        raise ValueError(f"no head for task {task!r}; the pool has heads for {sorted(pool.heads)}")
    return [compute_logits(pool.classifier(task, pool.experts[t]), dataset, batch_size, num_workers, device,
                           use_autocast, desc=f"expert {t} on {task}")[0] for t in pool.tasks]


def _check_rows(coefficients: Any, n_experts: int) -> np.ndarray:
    c = np.asarray(coefficients, dtype=np.float64)
    if c.ndim == 1:
        c = c[None]
    if c.ndim != 2 or c.shape[1] != n_experts:
        raise ValueError(f"coefficients must have one column per expert ({n_experts}), got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError(f"{int((~np.isfinite(c)).sum())} non-finite coefficients")
    # DaWin's coefficients are softmax outputs or mixture means: points of the simplex.
    bad = int(((c < 0).any(axis=1) | (np.abs(c.sum(axis=1) - 1.0) > 1e-4)).sum())
    if bad:
        raise ValueError(f"{bad} coefficient rows are not on the simplex (non-negative, summing to 1)")
    return c


def _scale(n_experts: int, lam0: float, authors_scaling: bool) -> float:
    return lam0 * (n_experts if authors_scaling else 1)


def merged_encoder_state(pool: ModelPool, coef_vector: Any, lam0: float = LAM0,
                         authors_scaling: bool = True) -> dict[str, torch.Tensor]:
    """theta0 + lam0 * scale * sum_j l_j tau_j for one coefficient vector l (M,) on the simplex."""
    row = _check_rows(coef_vector, len(pool.experts))
    if len(row) != 1:
        raise ValueError(f"expected one coefficient vector, got {len(row)} rows")
    taus = list(pool.task_vectors().values())
    return add_task_vectors(pool.pretrained, taus, _scale(len(taus), lam0, authors_scaling) * row[0])


def cluster_coefficients(coef: Any, n_components: int = 1, seed: int = 0,
                         **mixture_kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Replace every coefficient row by the mean of its Dirichlet-mixture component.

    Returns ``(assigned (N, M), info)``; ``info`` holds ``labels`` (N,), ``centers`` (K, M),
    ``weights`` (K,), ``n_components`` (the fitted K, possibly reduced) and ``mixture``. With K = 1
    every row becomes the fitted Dirichlet mean, i.e. the sample mean of the (clipped) rows.
    """
    c = np.asarray(coef, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"coefficients must have shape (N, M), got {c.shape}")
    mix = DirichletMixture(n_components, seed=seed, **mixture_kw).fit(c)
    labels = mix.predict(c)
    centers = mix.cluster_coefficients()
    info = {"labels": labels, "centers": centers, "weights": mix.weights_, "n_components": mix.n_components_,
            "mixture": mix}
    return centers[labels], info


class MultiTaskGroupedEvaluator(GroupedEvaluator):
    """One merged encoder per distinct coefficient row, run over that row's samples; order restored.

    This is the multi-task analogue of :class:`dawin.inference.evaluation.GroupedEvaluator` (whose loader settings and
    ``run_groups`` it shares): with clustered coefficients it builds K merged encoders for the whole evaluation
    set of a task.
    """

    def __init__(self, *args: Any, lam0: float = LAM0, authors_scaling: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lam0, self.authors_scaling = lam0, authors_scaling

    @torch.no_grad()
    def evaluate(self, pool: ModelPool, task: str, dataset, coefficients: Any) -> torch.Tensor:
        """Logits (N, C_task) of ``dataset`` (``task``'s samples), sample i under its row's merged encoder."""
        if task not in pool.heads:
            raise ValueError(f"no head for task {task!r}; the pool has heads for {sorted(pool.heads)}")
        c = _check_rows(coefficients, len(pool.experts))
        if len(c) != len(dataset):
            raise ValueError(f"{len(c)} coefficient rows for {len(dataset)} samples")
        if len(c) == 0:
            raise ValueError("no samples to evaluate")
        work = pool.classifier(task).to(self.device)
        theta0: StateDict = {k: v.to(self.device) for k, v in pool.pretrained.items()}
        taus = [{k: v.to(self.device) for k, v in tau.items()} for tau in pool.task_vectors().values()]
        scale = _scale(len(taus), self.lam0, self.authors_scaling)
        rows, inverse = np.unique(c, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)  # numpy 2.0 returned it with an extra axis

        def prepare(row: np.ndarray) -> None:
            work.visual.load_state_dict(add_task_vectors(theta0, taus, scale * row))

        groups = [(np.flatnonzero(inverse == g), partial(prepare, row)) for g, row in enumerate(rows)]
        return self.run_groups(work, dataset, groups)


__all__ = ["LAM0", "MultiTaskGroupedEvaluator", "cluster_coefficients", "expert_coefficients", "expert_entropies",
           "expert_logits", "merged_encoder_state"]
