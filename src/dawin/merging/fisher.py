"""Fisher merging (Matena & Raffel, NeurIPS 2022): per-parameter Fisher-weighted averaging of the experts.

theta* = sum_j c_j (F_j + eps) theta_j / sum_j c_j (F_j + eps) with F_j the diagonal Fisher of expert j's
*classifier* (expert encoder + task j's frozen head) on task j's train images; see :func:`fisher_weighted_average`.

Which Fisher: the Fisher of the model's own predictive distribution (FusionBench's CLIP Fisher merging never
reads the task labels), F = E_x E_{y~p(y|x)} [(d log p(y|x) / d theta)^2], its inner expectation estimated with
one backward pass of s(x) = sum_c sqrt(p_c(x)) log p_c(x) (p_c held constant). Passing ``labels`` switches to
the empirical Fisher, log p(y_n|x_n) with the given labels.

Two variants (``variant``, declared in :data:`dawin.registry.MERGING_METHODS`):

``fusionbench`` (the default, what Table 6 shows), as tanganke/fusion_bench@54c9e8c9
    ``fusion_bench/method/fisher_merging/clip_fisher_merging.py`` (``get_fisher_weights``) and
    ``fisher_merging.py`` (``merging_with_fisher_weights``) with ``config/method/fisher_merging/
    clip_fisher_merging.yaml``: the first ``n_examples`` = 256 images of each task's train split in its order (an
    unshuffled DataLoader; whole batches, so ceil(n / 32) * 32 images), in batches of 32; each batch contributes
    the **square of the gradient of its summed objective** sum_n s(x_n) (cross terms between the batch's images
    included); the sum over batches is divided by the number of images. Merging weights c_j (F_j + eps) with
    eps = 1e-6 (``minimal_fisher_weight``) and c_j proportional to 1 / (||F_j|| + eps) (``normalize_fisher_weight``:
    the L2 norm of the whole Fisher).
``per_example`` (this project's earlier estimator, a true diagonal Fisher)
    ``n_examples`` images drawn at random with the config seed (:func:`~dawin.merging.pool.example_indices`;
    FusionBench's HF train splits are stored sorted by class, so its first 256 may cover few classes), each
    image's own squared gradient, averaged; each F_j divided by its norm, then + eps (c_j = 1).

Buffers (BatchNorm statistics) have no Fisher and are averaged uniformly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..method.weights import StateDict, is_mergeable, same_keys, weighted_sum
from ..registry import MERGING_METHODS, check_names
from .pool import ModelPool, TaskData, gather_images
from .regmean import task_examples, task_indices


VARIANTS: dict[str, dict] = {
    "fusionbench": {"batch_size": 32, "first": True, "scale_by_norm": True},
    "per_example": {"batch_size": 1, "first": False, "scale_by_norm": False},
}
"""Each variant's estimator (module docstring): images per squared gradient, the split's first images (else a
seeded draw), FusionBench's 1 / ||F_j|| model weights (else F_j / ||F_j|| + eps)."""
check_names("Fisher variants", MERGING_METHODS["fisher"].variants, VARIANTS, __name__)


def diagonal_fisher(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
                    batch_size: int = 1) -> dict[str, torch.Tensor]:
    """Sum over batches of ``batch_size`` images of the squared gradient of the batch's summed objective, divided
    by the number of images, for every trainable parameter of a classifier ``model``; ``batch_size=1`` is the mean
    per-example squared gradient (FusionBench squares batches of 32).

    Without ``labels`` the objective of example x is sum_c sqrt(p_c) log p_c(x) (p detached; the
    model's predictive distribution, as FusionBench); with labels it is log p_{y}(x) (empirical
    Fisher). ``model`` should be in eval mode (BatchNorm then uses its running statistics).
    """
    if images.shape[0] == 0:
        raise ValueError("no images to estimate the Fisher from")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if labels is not None and labels.shape[0] < images.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {images.shape[0]} images; pass one label per image")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameters to estimate a Fisher for")
    device = next(iter(params.values())).device
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    with torch.enable_grad():
        for i in range(0, images.shape[0], batch_size):
            log_p = F.log_softmax(model(images[i:i + batch_size].to(device)).float(), dim=-1)
            if labels is None:
                objective = (log_p.detach().exp().sqrt() * log_p).sum()
            else:
                rows = torch.as_tensor(labels[i:i + batch_size], device=device, dtype=torch.long)
                objective = log_p.gather(1, rows[:, None]).sum()
            grads = torch.autograd.grad(objective, list(params.values()), allow_unused=True)
            for (name, _), g in zip(params.items(), grads):
                if g is not None:  # a parameter the output does not depend on has Fisher 0
                    sums[name] += g.detach().square()
    return {n: s / images.shape[0] for n, s in sums.items()}


def _norm(fisher: dict[str, torch.Tensor]) -> torch.Tensor:
    """The L2 norm of a whole Fisher (FusionBench's ``get_models_fisher_norm``)."""
    return torch.sqrt(sum(f.double().square().sum() for f in fisher.values()))


def merge(pool: ModelPool, data: dict[str, TaskData] | None = None, *, variant: str = "fusionbench",
          n_examples: int = 256, labels: dict[str, torch.Tensor] | None = None, eps: float = 1e-6,
          normalize: bool = True, seed: int = 0, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Fisher-merged encoder; expert j's Fisher from task j's images (``data``: each task's train split; ``labels``,
    if given, are indexed like ``data``) as ``variant`` estimates it (module docstring): ``fusionbench`` the first
    ``n_examples`` (whole batches of 32), ``per_example`` ``n_examples`` drawn with ``seed``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown Fisher variant {variant!r} (multitask.methods.fisher.variant); choose one of "
                         f"{list(VARIANTS)}")
    spec = VARIANTS[variant]
    if spec["first"]:  # an unshuffled loader's first batches: whole batches, as FusionBench counts them
        n_examples = -(-n_examples // spec["batch_size"]) * spec["batch_size"] if n_examples >= 1 else n_examples
        indices = {t: np.arange(len(idx)) for t, idx in task_indices(pool, data, n_examples, seed).items()}
        examples = {t: gather_images(data[t], idx) for t, idx in indices.items()}
    else:
        indices = task_indices(pool, data, n_examples, seed)
        examples = task_examples(pool, data, n_examples, seed)
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
        fisher = diagonal_fisher(classifier, examples[task], task_labels, batch_size=spec["batch_size"])
        # keep the encoder's entries, named as in the encoder state dict (the head is frozen anyway)
        fishers.append({k.removeprefix("visual."): v.cpu() for k, v in fisher.items() if k.startswith("visual.")})
    states = [pool.experts[t] for t in pool.tasks]
    if not normalize:
        return fisher_weighted_average(states, fishers, eps=eps)
    norms = [_norm(f) for f in fishers]
    if spec["scale_by_norm"]:  # FusionBench: c_j = (1 / (||F_j|| + eps)) / sum_k (1 / (||F_k|| + eps))
        inverse = [1.0 / (float(n) + eps) for n in norms]
        return fisher_weighted_average(states, fishers, eps=eps, scales=[i / sum(inverse) for i in inverse])
    return fisher_weighted_average(states, [f if n == 0 else {k: v / n.to(v.dtype) for k, v in f.items()}
                                            for f, n in zip(fishers, norms)], eps=eps)


# Fisher-weighted averaging (Matena & Raffel, NeurIPS 2022, Eq. 3 with diagonal Fishers)

def fisher_weighted_average(state_dicts: Sequence[StateDict], fishers: Sequence[StateDict],
                            eps: float = 0.0, scales: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """theta* = sum_j c_j (F_j + eps) theta_j / sum_j c_j (F_j + eps), entry by entry (``scales`` c_j, default 1).

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
    if scales is not None and (len(scales) != len(fishers) or min(scales) <= 0):
        raise ValueError(f"need one positive scale per Fisher, got {list(scales)} for {len(fishers)} Fishers")
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
        weights = torch.stack([c * (f[k].double() + eps) for c, f in zip(scales or [1.0] * len(fishers), fishers)])
        values = torch.stack([sd[k].double() for sd in state_dicts])
        total = weights.sum(dim=0)
        weighted = (weights * values).sum(dim=0) / torch.where(total > 0, total, torch.ones_like(total))
        out[k] = torch.where(total > 0, weighted, uniform[k].double()).to(ref.dtype)
    return out
