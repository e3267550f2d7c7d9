"""OPCM: training-free *sequential* merging by orthogonal projection and norm-preserving rescaling.

Tang et al., "Merging Models on the Fly Without Retraining: A Sequential Approach to Scalable
Continual Model Merging" (arXiv 2501.09522; code github.com/tanganke/opcm and FusionBench
``fusion_bench/method/opcm/opcm.py``). Experts arrive one at a time; the merged model never sees
an earlier expert again.

What the reference code does (``OPCMForCLIP.run``), restated on task vectors tau_t = theta_t - theta0:

* The first expert *is* the merged model: S_1 = tau_1 (so one expert gives theta_1 back).
* Expert t >= 2, every linear weight matrix: take the SVD U S V^T of the current merged task
  vector of that matrix, project P = U^T tau_t V, zero its diagonal and its top-left r x r block,
  and map back: G(tau_t) = U P V^T. ``r`` is the 0-based index of the first singular value at
  which the cumulative share sum_{i<=k} s_i / sum_i s_i exceeds ``alpha`` (``split_rank = (cumsum /
  sum > alpha).argmax()``), so the block holds the dominant directions *before* the one that
  crosses alpha. All other entries (biases, norms, embeddings, convolutions) are added unchanged.
  S_t = S_{t-1} + G_{S_{t-1}}(tau_t).
* Adaptive scaling: after every step the merged task vector is rescaled so that its (whole-model,
  Frobenius) norm equals the *average norm of the task vectors seen so far*. The code keeps the
  rescaled vector and the factor lambda_t = ||S_t|| / avg_t separately, but the merged model is
  always theta0 + avg_t * S_t / ||S_t||; the SVD of the rescaled vector has the same singular
  vectors and shares as that of S_t, so projecting against S_t is the same computation.

Decisions and deviations (all documented here because they change numbers):

* Diagonal zeroing: the tanganke/opcm snapshot writes ``projected_task_tv.diag().fill_(0)``, which
  is a no-op (``Tensor.diag()`` returns a copy; checked with torch 2.x); current FusionBench uses
  ``.diagonal().fill_(0)``, which does zero it, as FusionBench's documentation describes. We follow
  FusionBench and zero the diagonal.
* Directions with a zero singular value are arbitrary SVD completions; zeroing "their" diagonal
  entries would make the result depend on the LAPACK driver. We zero diagonal entries only for
  singular values above ``1e-6 * s_max`` (numerical rank), and a merged matrix that is exactly zero
  projects nothing. Real task vectors are full rank, where this changes nothing.
* "Linear weight matrices" are the ``weight`` of every ``nn.Linear`` of the encoder and the packed
  q/k/v ``in_proj_weight`` of ``nn.MultiheadAttention`` (open_clip ViTs), projected as three
  separate matrices because the reference (HuggingFace CLIP) has separate q/k/v Linear layers.
  Everything else, including open_clip's output projection ``proj`` (a bare Parameter there,
  outside HuggingFace's CLIPVisionModel) and float buffers, is treated as "other" (added as is).
* The brief suggested a running mean for non-matrix entries; the reference instead adds them and
  applies the same global norm rescaling as the matrices, which is what we implement.
* Order: pool order by default; ``shuffle_seed`` shuffles like the reference's ``shuffle_order``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import torch

from ..inference.logits import default_device
from ..method.weights import StateDict, task_vector
from .pool import ModelPool

RANK_TOL = 1e-6
"""Singular values below RANK_TOL * s_max count as zero (their diagonal entry is not removed)."""


def split_rank(singular_values: torch.Tensor, alpha: float) -> int:
    """Size of the dominant block removed by OPCM: the number of leading cumulative shares <= alpha.

    With shares c_k = sum_{i<=k} s_i / sum_i s_i this equals the reference's 0-based
    ``(c > alpha).argmax()`` whenever some share exceeds alpha (always, for alpha < 1).
    """
    total = singular_values.sum()
    if total <= 0:
        return 0
    shares = singular_values.cumsum(0) / total
    return int((shares <= alpha).sum())


def project_task_vector(merged_tv: torch.Tensor, task_tv: torch.Tensor, alpha: float) -> torch.Tensor:
    """OPCM's G(tau): remove from ``task_tv`` its components on the merged matrix's singular directions.

    With the thin SVD merged_tv = U diag(s) V^T and P = U^T task_tv V, the removed part is
    U (P * mask) V^T where ``mask`` covers the diagonal (numerical rank only) and the top-left
    ``split_rank(s, alpha)`` block; what lies outside span(U) x span(V) is kept untouched, which is
    exactly the reference's full-SVD reconstruction U_full P_masked V_full^T.
    """
    if merged_tv.ndim != 2 or merged_tv.shape != task_tv.shape:
        raise ValueError(f"need two matrices of one shape, got {tuple(merged_tv.shape)} and {tuple(task_tv.shape)}")
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}")
    work_dtype = torch.float64 if task_tv.dtype == torch.float64 else torch.float32
    m, t = merged_tv.to(work_dtype), task_tv.to(work_dtype)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    if s.numel() == 0 or s[0] <= 0:
        return task_tv.clone()  # nothing merged yet in this matrix: nothing to be orthogonal to
    k = s.numel()
    mask = torch.zeros(k, k, dtype=torch.bool, device=m.device)
    rank = int((s > RANK_TOL * s[0]).sum())
    idx = torch.arange(rank, device=m.device)
    mask[idx, idx] = True
    r = split_rank(s, alpha)
    mask[:r, :r] = True
    p = u.T @ t @ vh.T
    removed = u @ (p * mask) @ vh
    return (t - removed).to(task_tv.dtype)


def matrix_blocks(encoder: torch.nn.Module) -> dict[str, int]:
    """State-dict keys OPCM projects, with how many stacked matrices each holds (3 for packed q/k/v)."""
    blocks: dict[str, int] = {}
    for name, module in encoder.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, torch.nn.Linear):
            blocks[prefix + "weight"] = 1
        elif isinstance(module, torch.nn.MultiheadAttention) and module.in_proj_weight is not None:
            blocks[prefix + "in_proj_weight"] = 3
    return blocks


def _project_blocks(merged: torch.Tensor, new: torch.Tensor, n_blocks: int, alpha: float) -> torch.Tensor:
    if n_blocks == 1:
        return project_task_vector(merged, new, alpha)
    if merged.shape[0] % n_blocks:
        raise ValueError(f"cannot split a {tuple(merged.shape)} matrix into {n_blocks} stacked blocks")
    parts = zip(merged.chunk(n_blocks, dim=0), new.chunk(n_blocks, dim=0))
    return torch.cat([project_task_vector(a, b, alpha) for a, b in parts], dim=0)


def _norm(tau: Mapping[str, torch.Tensor]) -> float:
    """Whole-model Frobenius norm of a task vector (all its entries as one flat vector)."""
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in tau.values()))


def merge_sequence(theta0: StateDict, experts: Sequence[StateDict], blocks: Mapping[str, int], *,
                   alpha: float = 0.5, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """OPCM over ``experts`` in the given order; ``blocks`` names the projected matrices (see matrix_blocks).

    Returns theta0 + mean_t ||tau_t|| * S / ||S|| with S the running sum of projected task vectors
    (module docstring). Entries that are not floating point are copied from ``theta0``.
    """
    if not experts:
        raise ValueError("OPCM needs at least one expert")
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    taus = [task_vector(e, theta0) for e in experts]
    unknown = sorted(set(blocks) - set(taus[0]))
    if unknown:
        raise KeyError(f"matrix keys not among the floating-point entries: {unknown[:3]}")
    avg_norm = sum(_norm(t) for t in taus) / len(taus)
    merged = {k: v.to(device) for k, v in taus[0].items()}
    for tau in taus[1:]:
        for k, v in tau.items():
            v = v.to(device)
            if k in blocks:
                merged[k] = merged[k] + _project_blocks(merged[k], v, blocks[k], alpha)
            else:
                merged[k] = merged[k] + v
    total = _norm(merged)
    # All experts equal to theta0 leave nothing to merge; otherwise keep the average task-vector norm.
    scale = avg_norm / total if total > 0 else 0.0
    out = {k: v.clone() for k, v in theta0.items()}
    for k, v in merged.items():
        out[k] = (theta0[k].to(device) + scale * v).to(theta0[k].dtype).cpu()
    return out


def merge(pool: ModelPool, data: object = None, *, alpha: float = 0.5, shuffle_seed: int | None = None,
          device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Merged encoder state dict of OPCM over the pool's experts (pool order unless ``shuffle_seed``).

    ``data`` is unused (OPCM is data-free); it is accepted so every merging method shares one call
    form. ``alpha`` is the SVD energy threshold (FusionBench default 0.5), not a scaling factor.
    """
    del data
    tasks = pool.tasks
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(tasks)
    # Over the encoder's parameters only: buffers keep theta0's, as for every task-vector method
    # (ModelPool.task_vectors).
    params = pool.parameter_names()
    only = lambda sd: {k: v for k, v in sd.items() if k in params}  # noqa: E731
    out = dict(pool.pretrained)
    out.update(merge_sequence(only(pool.pretrained), [only(pool.experts[t]) for t in tasks], matrix_blocks(pool.encoder()),
                              alpha=alpha, device=device if device is not None else default_device()))
    return out
