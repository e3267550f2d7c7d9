"""RegMean (Jin et al., ICLR 2023, "Dataless Knowledge Fusion by Merging Weights of Language Models").

For a linear map y = W x, RegMean picks the W that best reproduces every expert's outputs on that
expert's own inputs, min_W sum_j ||X_j W^T - X_j W_j^T||^2, whose closed form is (Eq. 2)

    W^T = (sum_j G_j)^-1 sum_j G_j W_j^T,   G_j = X_j^T X_j.

Choices (following FusionBench's CLIP RegMean):

* G_j is the Gram matrix **averaged over input rows** (tokens x examples) of task j, so every task
  weighs the same whatever its number of examples;
* off-diagonal entries of each G_j are multiplied by ``alpha`` (non-diagonal shrinkage towards the
  diagonal, which pulls the solution towards a plain average; alpha = 1 is exact RegMean). The
  default 0.95 is FusionBench's ``reduce_non_diagonal_ratio`` (tanganke/fusion_bench@54c9e8c9
  ``config/method/regmean/clip_regmean.yaml``);
* the examples: ``n_examples`` = 256 (``num_regmean_examples``) drawn at random from each task's
  *train* split, as FusionBench does (a shuffled train loader); ours are a seeded draw
  (:func:`~dawin.merging.pool.example_indices`), read from disk when ``data`` holds datasets;
* the system is solved in float64 with the pseudo-inverse of the (symmetric) Gram sum, so input
  directions no task uses (a singular sum) do not break the merge.

Coverage, as FusionBench's ``regmean.py`` (tanganke/fusion_bench@54c9e8c9
``fusion_bench/method/regmean/regmean.py``: ``get_modules_to_merge(model, [nn.Linear])``, a forward hook on each,
``merging_with_regmean_weights`` on their ``.weight``): every linear map of the tower. On FusionBench's
transformers CLIP those are q/k/v/out_proj, fc1 and fc2 of every layer. open_clip's ViT blocks hold the same maps
as ``nn.MultiheadAttention`` (``in_proj_weight`` = q, k and v stacked, all fed the block's input: its Gram is
the query's) and ``mlp.c_fc`` / ``mlp.c_proj``. The attention's ``out_proj`` is an ``nn.Linear`` that PyTorch
applies inside ``F.multi_head_attention_forward`` without calling it, so a hook on it never fires: its input
(the heads' attention outputs, concatenated) is computed by :func:`attention_values` in a hook on the attention
module. Everything else is the simple average of the experts: biases, convolutions, LayerNorms, embeddings and
the ViT ``proj`` matrix (FusionBench's ``visual_projection`` is no part of its merged model), and the q/k/v/c
projections of open_clip's ModifiedResNet attention pool (a functional cross-attention); a ResNet encoder
therefore gets no RegMean layer at all (a warning says so).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..method.weights import StateDict, weighted_sum
from .pool import ModelPool, TaskData, example_indices, gather_images


def task_indices(pool: ModelPool, data: dict[str, TaskData] | None, n_examples: int,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Which ``n_examples`` images of every pool task Fisher / RegMean use: a seeded uniform draw (all when a
    task has fewer), per task (:func:`~dawin.merging.pool.example_indices`)."""
    if not pool.experts:
        raise ValueError("the model pool has no experts to merge; add fine-tuned encoders to pool.experts")
    if data is None:
        raise ValueError(f"this method needs data={{task: images (N, 3, H, W) or a dataset}} for the tasks "
                         f"{pool.tasks}")
    missing = [t for t in pool.tasks if t not in data]
    if missing:
        raise ValueError(f"no images for tasks {missing}; pass data={{task: images}} for every pool task")
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    empty = [t for t in pool.tasks if len(data[t]) == 0]
    if empty:
        raise ValueError(f"no images for tasks {empty}: their data is empty")
    return {t: example_indices(len(data[t]), n_examples, seed, t) for t in pool.tasks}


def task_examples(pool: ModelPool, data: dict[str, TaskData] | None, n_examples: int,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """The images of :func:`task_indices` (only those are read), checked to be (N, 3, H, W) batches."""
    out = {}
    for t, idx in task_indices(pool, data, n_examples, seed).items():
        images = gather_images(data[t], idx)
        if images.ndim != 4:
            raise ValueError(f"images of task {t} have shape {tuple(images.shape)}; expected a non-empty (N, 3, H, W) batch")
        out[t] = images
    return out


def shrink_off_diagonal(gram: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * G + (1 - alpha) * diag(G): off-diagonal entries scaled by alpha, the diagonal kept."""
    return alpha * gram + (1.0 - alpha) * torch.diag_embed(torch.diagonal(gram))


def attention_values(attention: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     key_padding_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                     is_causal: bool = False) -> torch.Tensor:
    """The input of ``attention.out_proj`` for these arguments of ``attention.forward``: the heads' attention
    outputs, concatenated, (..., embed_dim). The module's own arithmetic (``F.multi_head_attention_forward``, eval
    mode), with the output projection replaced by the identity."""
    if attention.batch_first and query.dim() == 3:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    eye = torch.eye(attention.embed_dim, dtype=query.dtype, device=query.device)
    separate = not attention._qkv_same_embed_dim
    out, _ = F.multi_head_attention_forward(
        query, key, value, attention.embed_dim, attention.num_heads, attention.in_proj_weight,
        attention.in_proj_bias, attention.bias_k, attention.bias_v, attention.add_zero_attn, 0.0, eye, None,
        training=False, key_padding_mask=key_padding_mask, need_weights=False, attn_mask=attn_mask,
        use_separate_proj_weight=separate, q_proj_weight=attention.q_proj_weight if separate else None,
        k_proj_weight=attention.k_proj_weight if separate else None,
        v_proj_weight=attention.v_proj_weight if separate else None, is_causal=is_causal)
    return out


def input_grams(module: nn.Module, inputs: torch.Tensor, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Row-averaged Gram matrices X^T X / rows of the inputs of every covered weight (see module docs).

    Keys are the weights' state-dict names (``...weight`` / ``...in_proj_weight``); X stacks every
    input row the layer saw (all tokens of all examples) while ``module`` runs on ``inputs``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = {}

    def record(key: str, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        sums[key] = sums[key] + x.T @ x if key in sums else x.T @ x
        rows[key] = rows.get(key, 0) + x.shape[0]

    def linear_hook(key: str):
        return lambda _module, args: record(key, args[0])

    def attention_hook(prefix: str):
        def hook(attention, args, kwargs):
            names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
                     "is_causal")
            bound = {**dict(zip(names, args)), **kwargs}
            query, key_, value = bound["query"], bound["key"], bound["value"]
            if key_ is query and value is query and attention.in_proj_weight is not None:
                record(prefix + "in_proj_weight", query)  # self-attention: one input for all of in_proj
            record(prefix + "out_proj.weight", attention_values(
                attention, query, key_, value, key_padding_mask=bound.get("key_padding_mask"),
                attn_mask=bound.get("attn_mask"), is_causal=bound.get("is_causal", False)))
        return hook

    handles = []
    out_projs = set()
    for name, sub in module.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(sub, nn.MultiheadAttention):
            handles.append(sub.register_forward_pre_hook(attention_hook(prefix), with_kwargs=True))
            out_projs.add(prefix + "out_proj")
        elif isinstance(sub, nn.Linear) and name not in out_projs:  # out_proj: recorded by its attention's hook
            handles.append(sub.register_forward_pre_hook(linear_hook(prefix + "weight")))
    device = next(module.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                module(inputs[start:start + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
    return {k: sums[k] / rows[k] for k in sums}


def regmean_merge(module: nn.Module, states: Sequence[StateDict], inputs: Sequence[torch.Tensor],
                  alpha: float = 0.95, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """RegMean-merge ``states`` (expert j run on ``inputs[j]``) of the architecture ``module``.

    ``module`` is a work copy: each state is loaded into it in turn to record that expert's layer
    inputs. Covered weights get W^T = (sum_j G_j')^+ sum_j G_j' W_j^T with G_j' the shrunk Gram;
    every other entry is the uniform average.
    """
    if not states or len(states) != len(inputs):
        raise ValueError(f"need one input batch per state dict, got {len(states)} states and {len(inputs)} batches")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (off-diagonal shrinkage) must be in [0, 1], got {alpha}; "
                         "use 0.95 (default) or 1.0 for exact RegMean")
    # Accumulate the sums over tasks directly (shrinkage is linear), so only one Gram per layer is held.
    gram_sum: dict[str, torch.Tensor] = {}
    gw_sum: dict[str, torch.Tensor] = {}
    seen: dict[str, int] = {}
    for state, x in zip(states, inputs):
        module.load_state_dict(dict(state))
        module.eval()
        for key, gram in input_grams(module, x, batch_size).items():
            g = shrink_off_diagonal(gram.double(), alpha)
            gw = g @ state[key].to(g).T  # W is (out, in): G (in, in) @ W^T (in, out)
            gram_sum[key] = gram_sum[key] + g if key in gram_sum else g
            gw_sum[key] = gw_sum[key] + gw if key in gw_sum else gw
            seen[key] = seen.get(key, 0) + 1
    merged = weighted_sum(states, [1.0 / len(states)] * len(states))
    covered = [k for k, n in seen.items() if n == len(states)]  # a layer some expert skipped is averaged
    if not covered:
        warnings.warn("RegMean observed no nn.Linear or attention inputs in this module; "
                      "the result is the simple average of the experts", stacklevel=2)
    for key in covered:
        solution = torch.linalg.pinv(gram_sum[key], hermitian=True) @ gw_sum[key]
        merged[key] = solution.T.to(device=merged[key].device, dtype=merged[key].dtype)
    return merged


def merge(pool: ModelPool, data: dict[str, TaskData] | None = None, *, n_examples: int = 256,
          alpha: float = 0.95, batch_size: int = 32, seed: int = 0,
          device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """RegMean over the pool's experts, expert j's Grams from ``n_examples`` images of task j drawn with ``seed``
    (``data``: each task's train split, see the module docstring)."""
    examples = task_examples(pool, data, n_examples, seed)
    work = pool.encoder().to(device)
    return regmean_merge(work, [pool.experts[t] for t in pool.tasks], [examples[t] for t in pool.tasks],
                         alpha=alpha, batch_size=batch_size)
