"""State-dict arithmetic: the one place where weights are combined.

Used by WiSE-FT, DaWin's merged models, soups and the multi-task merging baselines (task
arithmetic, TIES-merging, Model Stock, Fisher-weighted averaging; ``dawin.merging``). State dicts
map parameter names to tensors; all inputs of one operation must share keys and shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

StateDict = Mapping[str, torch.Tensor]


def _same_keys(*sds: StateDict) -> list[str]:
    keys = list(sds[0].keys())
    for sd in sds[1:]:
        if set(sd.keys()) != set(keys):
            missing = sorted(set(keys) ^ set(sd.keys()))
            raise KeyError(f"state dicts differ in {len(missing)} keys, e.g. {missing[:3]}")
        for k in keys:
            if sd[k].shape != sds[0][k].shape:
                raise ValueError(f"shape mismatch for {k}: {tuple(sds[0][k].shape)} vs {tuple(sd[k].shape)}")
    return keys


def _mergeable(t: torch.Tensor) -> bool:
    return t.is_floating_point()


def lerp(theta0: StateDict, theta1: StateDict, weight: float) -> dict[str, torch.Tensor]:
    """theta(l) = (1 - l) * theta0 + l * theta1 for every floating-point entry (others from theta0)."""
    return weighted_sum([theta0, theta1], [1.0 - weight, weight])


def weighted_sum(state_dicts: Sequence[StateDict], coefficients: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_j c_j * theta_j; integer buffers are copied from the first state dict."""
    if len(state_dicts) != len(coefficients) or not state_dicts:
        raise ValueError("need one coefficient per state dict")
    keys = _same_keys(*state_dicts)
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        ref = state_dicts[0][k]
        if not _mergeable(ref):
            out[k] = ref.clone()
            continue
        acc = torch.zeros_like(ref, dtype=torch.float32 if ref.dtype in (torch.float16, torch.bfloat16) else ref.dtype)
        for sd, c in zip(state_dicts, coefficients):
            acc.add_(sd[k].to(acc.dtype), alpha=float(c))
        out[k] = acc.to(ref.dtype)
    return out


def task_vector(theta: StateDict, theta0: StateDict) -> dict[str, torch.Tensor]:
    """tau = theta - theta0 (floating-point entries only)."""
    keys = _same_keys(theta, theta0)
    return {k: theta[k] - theta0[k] for k in keys if _mergeable(theta0[k])}


def add_task_vectors(theta0: StateDict, taus: Sequence[StateDict], coefficients: Sequence[float]) -> dict[str, torch.Tensor]:
    """theta0 + sum_j c_j * tau_j; entries absent from the task vectors are copied from theta0."""
    out = {k: v.clone() for k, v in theta0.items()}
    for tau, c in zip(taus, coefficients):
        for k, v in tau.items():
            out[k] += float(c) * v.to(out[k].dtype)
    return out


def relative_distance(theta: StateDict, reference: StateDict, prefix: str = "") -> tuple[float, float]:
    """(||theta - reference|| / ||reference||, max |theta - reference|) over the float tensors whose keys start
    with ``prefix`` in both; e.g. how far task_vectors' theta0 is from the OpenAI weights."""
    keys = [k for k in _same_keys({k: v for k, v in theta.items() if k.startswith(prefix) and k in reference},
                                  {k: v for k, v in reference.items() if k.startswith(prefix) and k in theta})
            if _mergeable(reference[k])]
    if not keys:
        raise ValueError(f"no common floating-point tensors with prefix {prefix!r} to compare")
    diff = sum(float((theta[k].double() - reference[k].double()).pow(2).sum()) for k in keys)
    norm = sum(float(reference[k].double().pow(2).sum()) for k in keys)
    worst = max(float((theta[k].double() - reference[k].double()).abs().max()) for k in keys)
    return (diff / norm) ** 0.5 if norm else float("inf"), worst


def lerp_into(target: torch.nn.Module, theta0: StateDict, delta: StateDict, weight: float) -> None:
    """Write theta0 + weight * delta into ``target``'s parameters in place (no new allocations).

    With delta = theta1 - theta0 this is lerp(theta0, theta1, weight): the cheap form used when
    many merged models of one pair are evaluated one after the other.
    """
    with torch.no_grad():
        for name, p in target.state_dict(keep_vars=True).items():
            if name in delta:
                torch.add(theta0[name], delta[name], alpha=float(weight), out=p.data)


# --------------------------------------------------------------------------------------------------
# TIES-merging (Yadav et al., NeurIPS 2023, Algorithm 1): trim, elect sign, disjoint merge.
# --------------------------------------------------------------------------------------------------

_REDUCTIONS = ("sum", "mean")


def _check_task_vector(tau: StateDict) -> None:
    if not tau:
        raise ValueError("empty task vector; build one with task_vector(theta, theta0)")
    for k, v in tau.items():
        if not _mergeable(v):
            raise ValueError(f"task vector entry {k} is {v.dtype}, not floating point; build task vectors with task_vector()")


def trim_top_k(tau: StateDict, fraction: float) -> dict[str, torch.Tensor]:
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
    rank = max(n - int(n * fraction), 1)
    threshold = torch.kthvalue(magnitudes, rank).values
    return {k: torch.where(v.abs() >= threshold.to(v.device), v, torch.zeros_like(v)) for k, v in tau.items()}


def elect_signs(taus: Sequence[StateDict]) -> dict[str, torch.Tensor]:
    """TIES step 2 (elect): gamma = sign(sum_t tau_t) per entry, i.e. the sign of larger total mass.

    An entry whose trimmed values sum to exactly 0 gets sign 0, so (Algorithm 1) no task is
    selected there and the merged update is 0.
    """
    if not taus:
        raise ValueError("need at least one task vector to elect signs")
    keys = _same_keys(*taus)
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
    keys = _same_keys(*taus)
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
               reduce: str = "sum") -> dict[str, torch.Tensor]:
    """TIES-merging: theta0 + lam * disjoint_merge(trim(tau_t), elect(trim(tau_t))).

    Defaults are AdaMerging's TIES setting (keep top 20%, disjoint sum, lambda = 0.3).
    Entries absent from the task vectors (integer buffers) are copied from theta0.
    """
    if not taus:
        raise ValueError("TIES needs at least one task vector")
    trimmed = [trim_top_k(tau, fraction) for tau in taus]
    merged = disjoint_merge(trimmed, elect_signs(trimmed), reduce)
    return add_task_vectors(theta0, [merged], [lam])


# --------------------------------------------------------------------------------------------------
# Model Stock (Jang et al., ECCV 2024, "Model Stock: All we need is just a few fine-tuned models").
# --------------------------------------------------------------------------------------------------


def model_stock(theta0: StateDict, finetuned: Sequence[StateDict]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Layer-wise Model Stock: w_H = t * mean_i(w_i) + (1 - t) * w_0, with t = N cos / (1 + (N - 1) cos).

    For every floating-point tensor ("layer"), cos is the cosine of the angle between the runs'
    task vectors w_i - w_0. The paper's N-model derivation assumes one common angle between every
    pair of runs; with N > 2 we estimate it by the mean cosine over all N(N-1)/2 pairs.

    Conventions (documented choices, not in the paper):
    * a negative mean cosine is clamped to 0, so t stays in [0, 1] and w_H stays on the segment from
      w_0 to the runs' average (the paper's geometry is an interpolation);
    * if any run leaves a tensor unchanged (zero-norm task vector), the angle is undefined and
      t = 1: the plain average of the runs (which is w_0 itself when every run is unchanged);
    * non-floating entries (integer buffers) are copied from theta0 and get no ratio.

    Returns the merged state dict and the ratio t of every merged tensor.
    """
    if len(finetuned) < 2:
        raise ValueError(f"Model Stock needs at least two fine-tuned runs, got {len(finetuned)}")
    keys = _same_keys(theta0, *finetuned)
    n = len(finetuned)
    merged: dict[str, torch.Tensor] = {}
    ratios: dict[str, float] = {}
    for k in keys:
        w0 = theta0[k]
        if not _mergeable(w0):
            merged[k] = w0.clone()
            continue
        deltas = [(sd[k].double() - w0.double()).reshape(-1) for sd in finetuned]
        norms = [float(d.norm()) for d in deltas]
        if min(norms) == 0.0:
            t = 1.0
        else:
            pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
            cos = sum(float(deltas[i] @ deltas[j]) / (norms[i] * norms[j]) for i, j in pairs) / len(pairs)
            cos = max(cos, 0.0)
            t = n * cos / (1.0 + (n - 1) * cos)
        average = torch.stack([sd[k].double() for sd in finetuned]).mean(dim=0)
        merged[k] = (t * average + (1.0 - t) * w0.double()).to(w0.dtype)
        ratios[k] = t
    return merged, ratios


# --------------------------------------------------------------------------------------------------
# Fisher-weighted averaging (Matena & Raffel, NeurIPS 2022, Eq. 3 with diagonal Fishers).
# --------------------------------------------------------------------------------------------------


def fisher_weighted_average(state_dicts: Sequence[StateDict], fishers: Sequence[StateDict],
                            eps: float = 0.0) -> dict[str, torch.Tensor]:
    """theta* = sum_j (F_j + eps) theta_j / sum_j (F_j + eps), entry by entry.

    ``eps`` is added to every Fisher value (FusionBench's ``minimal_fisher_weight``, 1e-6 there).
    Entries whose total Fisher is 0 (no model is sensitive to them, eps = 0) fall back to the plain
    mean instead of 0/0. Floating entries without a Fisher (e.g. BatchNorm running statistics, which
    are buffers, not parameters) are averaged uniformly; non-floating entries are copied from the
    first state dict. Every Fisher must cover the same keys.
    """
    if not state_dicts or len(state_dicts) != len(fishers):
        raise ValueError(f"need one Fisher per state dict, got {len(state_dicts)} state dicts and {len(fishers)} Fishers")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    keys = _same_keys(*state_dicts)
    fisher_keys = set(fishers[0])
    if any(set(f) != fisher_keys for f in fishers) or not fisher_keys <= set(keys):
        raise ValueError("every Fisher must cover the same keys, all of them keys of the state dicts")
    uniform = weighted_sum(state_dicts, [1.0 / len(state_dicts)] * len(state_dicts))
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        ref = state_dicts[0][k]
        if k not in fisher_keys or not _mergeable(ref):
            out[k] = uniform[k]
            continue
        for f in fishers:
            if f[k].shape != ref.shape:
                raise ValueError(f"Fisher of {k} has shape {tuple(f[k].shape)}, the parameter {tuple(ref.shape)}")
        weights = torch.stack([f[k].double() + eps for f in fishers])
        values = torch.stack([sd[k].double() for sd in state_dicts])
        total = weights.sum(dim=0)
        weighted = (weights * values).sum(dim=0) / torch.where(total > 0, total, torch.ones_like(total))
        out[k] = torch.where(total > 0, weighted, uniform[k].double()).to(ref.dtype)
    return out
