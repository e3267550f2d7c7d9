"""TIES-merging (Yadav et al., NeurIPS 2023) on the pool's task vectors: trim, elect sign, disjoint merge.

Defaults follow AdaMerging's TIES baseline: keep the top 20% of each (whole, flattened) task vector,
elect signs, disjoint **sum**, scale by lam = 0.3. ``reduce="mean"`` gives TIES's disjoint mean.

What "the whole task vector" counts (``total_entries``). AdaMerging's ``src/main_ties_merging.py`` and
``src/main_layer_wise_adamergingpp.py`` (EnnengYang/AdaMerging@cea1165a; reused by naver-ai/dawin
``dawin_mtl/src``) flatten the whole state dict of task_vectors' pickled ``ImageEncoder`` (``remove_keys = []``),
and that encoder keeps the CLIP's text-side tensors (mlfoundations/task_vectors@826a64c6 ``src/modeling.py``
deletes only ``transformer``): ``token_embedding``, ``positional_embedding``, ``ln_final``, ``text_projection``,
``logit_scale`` (no buffer: open_clip v2.0.2 ``src/open_clip/model.py`` registers ``attn_mask`` with
``persistent=False``). Fine-tuning never changes them (``src/finetune.py`` trains through ``encode_image``; AdamW
skips parameters without a gradient), so their task-vector entries are 0, yet they count in ``n``: for ViT-B/32
the top 20 % of 113,448,705 entries is taken, 25.83 % of the image tower's 87,849,216. ``total_entries`` is that
count (:attr:`dawin.merging.pool.ModelPool.trim_entries`, recorded by the converter from the pickles);
``None`` ranks over the image tower alone (FusionBench's vision-only pools, the demo).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..method.weights import StateDict, add_task_vectors, is_mergeable, same_keys
from .pool import ModelPool

# TIES Algorithm 1: trim, elect sign, disjoint merge

_REDUCTIONS = ("sum", "mean")


def _check_task_vector(tau: StateDict) -> None:
    if not tau:
        raise ValueError("empty task vector; build one with task_vector(theta, theta0)")
    for k, v in tau.items():
        if not is_mergeable(v):
            raise ValueError(f"task vector entry {k} is {v.dtype}, not floating point; build task vectors with task_vector()")


def trim_top_k(tau: StateDict, fraction: float, total_entries: int | None = None) -> dict[str, torch.Tensor]:
    """TIES step 1 (trim): keep the ``fraction`` largest-magnitude entries of a task vector, zero the rest.

    The ranking runs over the **whole flattened task vector** (all tensors concatenated), as in the
    TIES and AdaMerging code, not per tensor: layers whose updates are small may be zeroed entirely.
    As in the reference TIES code (AdaMerging ``src/ties_merging_utils.py`` ``topk_values_mask``, reused by
    FusionBench), the threshold is the ``(n - int(fraction * n))``-th smallest magnitude and every entry at or
    above it is kept: ``int(fraction * n) + 1`` entries out of ``n`` (more when magnitudes tie with the
    threshold). ``fraction = 1`` keeps everything (the reference code fails there: ``kthvalue(0)``).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}; TIES uses 0.2 (keep the top 20%)")
    _check_task_vector(tau)
    # in the tensors' own (promoted) precision: a threshold rounded to float32 would drop float64 ties
    magnitudes = torch.cat([v.detach().reshape(-1).abs() for v in tau.values()])
    if magnitudes.dtype in (torch.float16, torch.bfloat16):
        magnitudes = magnitudes.float()  # exact; kthvalue needs it on the CPU
    n = magnitudes.numel()
    total = n if total_entries is None else int(total_entries)
    if total < n:
        raise ValueError(f"total_entries {total} is smaller than the task vector's {n} entries; pass the number of "
                         "entries of the whole state dict the task vector was taken from (or None)")
    # the k-th smallest of tau's magnitudes and (total - n) zeros is 0 for k <= total - n, else tau's (k - total + n)-th
    rank = max(total - int(total * fraction), 1) - (total - n)
    if rank < 1:
        return {k: v.clone() for k, v in tau.items()}  # threshold 0: everything is kept
    threshold = torch.kthvalue(magnitudes, rank).values
    return {k: torch.where(v.abs() >= threshold.to(v.device), v, torch.zeros_like(v)) for k, v in tau.items()}


def elect_signs(taus: Sequence[StateDict]) -> dict[str, torch.Tensor]:
    """TIES step 2 (elect): gamma = sign(sum_t tau_t) per entry, i.e. the sign of larger total mass.

    An entry whose trimmed values sum to exactly 0 gets sign 0, so (Algorithm 1) no task is
    selected there and the merged update is 0.
    """
    if not taus:
        raise ValueError("need at least one task vector to elect signs")
    keys = same_keys(*taus)
    return {k: torch.sign(torch.stack([tau[k] for tau in taus]).sum(dim=0)) for k in keys}


def disjoint_merge(taus: Sequence[StateDict], signs: StateDict, reduce: str = "sum") -> dict[str, torch.Tensor]:
    """TIES step 3 (disjoint merge): combine only the entries whose sign agrees with the elected one.

    ``reduce="sum"``: sum of the agreeing entries (AdaMerging's "dis-sum", which produced the paper's
    TIES numbers); ``reduce="mean"``: their mean, i.e. divided by the number of agreeing *nonzero*
    entries (TIES Algorithm 1); an entry where no task agrees is 0 either way.
    """
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}")
    if not taus:
        raise ValueError("need at least one task vector to merge")
    keys = same_keys(*taus)
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        stacked = torch.stack([tau[k] for tau in taus])
        # sign(0) == 0 never equals an elected +-1, and an elected 0 selects nothing nonzero
        agree = (torch.sign(stacked) == signs[k]) & (stacked != 0)
        total = torch.where(agree, stacked, torch.zeros_like(stacked)).sum(dim=0)
        if reduce == "mean":
            total = total / agree.sum(dim=0).clamp(min=1).to(total.dtype)
        out[k] = total
    return out


def ties_merge(theta0: StateDict, taus: Sequence[StateDict], fraction: float = 0.2, lam: float = 0.3,
               reduce: str = "sum", total_entries: int | None = None) -> dict[str, torch.Tensor]:
    """TIES-merging: theta0 + lam * disjoint_merge(trim(tau_t), elect(trim(tau_t))).

    Defaults are AdaMerging's TIES setting (keep top 20%, disjoint sum, lambda = 0.3).
    Entries absent from the task vectors (integer buffers) are copied from theta0; ``total_entries``: see
    :func:`trim_top_k`.
    """
    if not taus:
        raise ValueError("TIES needs at least one task vector")
    trimmed = [trim_top_k(tau, fraction, total_entries) for tau in taus]
    merged = disjoint_merge(trimmed, elect_signs(trimmed), reduce)
    return add_task_vectors(theta0, [merged], [lam])



def merge(pool: ModelPool, data: dict[str, torch.Tensor] | None = None, *, fraction: float = 0.2,
          lam: float = 0.3, reduce: str = "sum") -> dict[str, torch.Tensor]:
    """TIES-merged encoder theta_0 + lam * disjoint_merge(trim(tau_j)), trimmed over ``pool.trim_entries``
    entries (``data`` is not used)."""
    if not pool.experts:
        raise ValueError("the model pool has no experts to merge; add fine-tuned encoders to pool.experts")
    return ties_merge(pool.pretrained, list(pool.task_vectors().values()), fraction=fraction, lam=lam, reduce=reduce,
                      total_entries=pool.trim_entries)
