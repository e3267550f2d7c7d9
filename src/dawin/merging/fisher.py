"""Fisher merging (Matena & Raffel, NeurIPS 2022): per-parameter Fisher-weighted averaging of the experts.

theta* = sum_j F_j theta_j / sum_j F_j with F_j the diagonal Fisher of expert j's *classifier*
(expert encoder + task j's frozen head) on task j's images; see :func:`fisher_weighted_average`.

The images: ``n_examples`` = 256 (FusionBench's ``num_fisher_examples``, tanganke/fusion_bench@54c9e8c9
``config/method/fisher_merging/clip_fisher_merging.yaml``) from each task's *train* split. FusionBench
takes the first 256 of an unshuffled train loader; we draw them at random with the config seed
(:func:`~dawin.merging.pool.example_indices`), since the HF train splits are stored sorted by class.

Which Fisher (following FusionBench's CLIP Fisher merging, which never reads the task labels): the
Fisher of the model's own predictive distribution, F = E_x E_{y~p(y|x)} [(d log p(y|x) / d theta)^2].
FusionBench estimates the inner expectation with one backward pass of
s(x) = sum_c sqrt(p_c(x)) log p_c(x) (p_c held constant), whose squared gradient is
(sum_c sqrt(p_c) d log p_c)^2; we do the same but **per example** (FusionBench squares the gradient of a
whole batch), and average the squared gradients over examples. Passing ``labels`` switches to the
empirical Fisher, (d log p(y_n|x_n) / d theta)^2 with the given labels.

As in FusionBench (``normalize_fisher_weight``, ``minimal_fisher_weight``): each expert's Fisher is
divided by its global L2 norm over all parameters, so tasks whose gradients are larger overall do
not dominate, and ``eps`` = 1e-6 is added to every Fisher value. Buffers (BatchNorm statistics)
have no Fisher and are averaged uniformly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..method.weights import StateDict, is_mergeable, same_keys, weighted_sum
from .pool import ModelPool, TaskData
from .regmean import task_examples, task_indices


def diagonal_fisher(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mean per-example squared gradients of every trainable parameter of a classifier ``model``.

    Without ``labels`` the objective of example x is sum_c sqrt(p_c) log p_c(x) (p detached; the
    model's predictive distribution, as FusionBench); with labels it is log p_{y}(x) (empirical
    Fisher). Each example gets its own backward pass, so ``model`` should be in eval mode (BatchNorm
    then uses its running statistics and examples do not interact).
    """
    if images.shape[0] == 0:
        raise ValueError("no images to estimate the Fisher from")
    if labels is not None and labels.shape[0] < images.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {images.shape[0]} images; pass one label per image")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameters to estimate a Fisher for")
    device = next(iter(params.values())).device
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    with torch.enable_grad():
        for i in range(images.shape[0]):
            log_p = F.log_softmax(model(images[i:i + 1].to(device)).float(), dim=-1)[0]
            if labels is None:
                objective = (log_p.detach().exp().sqrt() * log_p).sum()
            else:
                objective = log_p[int(labels[i])]
            grads = torch.autograd.grad(objective, list(params.values()), allow_unused=True)
            for (name, _), g in zip(params.items(), grads):
                if g is not None:  # a parameter the output does not depend on has Fisher 0
                    sums[name] += g.detach().square()
    return {n: s / images.shape[0] for n, s in sums.items()}


def _normalized(fisher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    norm = torch.sqrt(sum(f.double().square().sum() for f in fisher.values()))
    return fisher if norm == 0 else {k: f / norm.to(f.dtype) for k, f in fisher.items()}


def merge(pool: ModelPool, data: dict[str, TaskData] | None = None, *, n_examples: int = 256,
          labels: dict[str, torch.Tensor] | None = None, eps: float = 1e-6, normalize: bool = True, seed: int = 0,
          device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Fisher-merged encoder; expert j's Fisher from ``n_examples`` images of task j drawn with ``seed``
    (``data``: each task's train split; ``labels``, if given, are indexed like ``data``)."""
    examples = task_examples(pool, data, n_examples, seed)
    indices = task_indices(pool, data, n_examples, seed)
    missing_heads = [t for t in pool.tasks if t not in pool.heads]
    if missing_heads:
        raise ValueError(f"Fisher merging needs each task's head; pool.heads lacks {missing_heads}")
    if labels is not None:
        missing = [t for t in pool.tasks if t not in labels]
        if missing:
            raise ValueError(f"labels given but none for tasks {missing}; pass labels for every task or none")
    fishers = []
    for task in pool.tasks:
        classifier = pool.classifier(task, pool.experts[task]).to(device)
        task_labels = None if labels is None else torch.as_tensor(labels[task])[torch.as_tensor(indices[task])]
        fisher = diagonal_fisher(classifier, examples[task], task_labels)
        # keep the encoder's entries, named as in the encoder state dict (the head is frozen anyway)
        fisher = {k.removeprefix("visual."): v.cpu() for k, v in fisher.items() if k.startswith("visual.")}
        fishers.append(_normalized(fisher) if normalize else fisher)
    return fisher_weighted_average([pool.experts[t] for t in pool.tasks], fishers, eps=eps)


# Fisher-weighted averaging (Matena & Raffel, NeurIPS 2022, Eq. 3 with diagonal Fishers)

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
    keys = same_keys(*state_dicts)
    fisher_keys = set(fishers[0])
    if any(set(f) != fisher_keys for f in fishers) or not fisher_keys <= set(keys):
        raise ValueError("every Fisher must cover the same keys, all of them keys of the state dicts")
    uniform = weighted_sum(state_dicts, [1.0 / len(state_dicts)] * len(state_dicts))
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        ref = state_dicts[0][k]
        if k not in fisher_keys or not is_mergeable(ref):
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
