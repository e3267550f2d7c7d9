"""AdaMerging and AdaMerging++: merging coefficients learned by test-time entropy minimisation.

Yang et al., "AdaMerging: Adaptive Model Merging for Multi-Task Learning", ICLR 2024; code
github.com/EnnengYang/AdaMerging (``src/main_{task,layer}_wise_adamerging{,pp}.py``).

The merged encoder is a differentiable function of the coefficients lambda:

* task-wise:  theta = theta0 + sum_j lambda_j tau_j            (one lambda per task)
* layer-wise: theta = theta0 + sum_j lambda_{j,l} tau_{j,l}    (one lambda per task and parameter tensor)

and lambda minimises sum_tasks mean_batch H(softmax(head_t(f_theta(x)))) on each task's *unlabelled*
test images, with Adam (lr 1e-3, betas (0.9, 0.999), no weight decay). We evaluate it with
``torch.func.functional_call`` on one encoder module, so no weights are copied in place.

Facts taken from the authors' code (paths above):

* lambdas start at ``prior = 0.3``; the pre-trained weights keep coefficient 1.
* Clamping: the code does **not** clip the parameters after the optimiser step; it uses
  ``torch.clamp(lambdas_raw, 0, 1)`` inside every forward pass, so a raw value that leaves [0, 1]
  gets no gradient and the merged model uses the clamped value. We do exactly that, and report the
  clamped values as the final lambdas.
* One step = for every task, the loss of two batches of 16 images from a freshly shuffled loader
  over the task's *whole* test set (``get_dataloader_shuffle``, ``if i > 0: break``), summed over
  tasks and batches; 500 steps (EnnengYang/AdaMerging ``src/main_layer_wise_adamerging.py``, the
  same in naver-ai/dawin ``dawin_mtl/src/main_layer_wise_adamerging.py``). Summing two batch means
  only doubles the gradient, which Adam's normalisation removes, so ``batch_size=32`` is the
  equivalent single-batch setting. Each step draws its batch afresh from the whole test set:
  ``batch_size`` distinct images chosen uniformly at random, seeded by (seed, task, step)
  (:func:`step_indices`), so the steps see different images and, over the run, the whole set.
  ``data`` holds lazily read datasets: a step's images are read from disk by a DataLoader when
  the step needs them (the 8 test sets are about 52 GB as float tensors; none is ever built).
* Only ``named_parameters`` are merged (the code's ``make_functional``); buffers stay those of the
  pre-trained model. CLIP ViTs have no floating-point buffers; for a ResNet this keeps theta0's
  BatchNorm statistics (``native_batch_norm`` is not differentiable in its running statistics).
* AdaMerging++ replaces tau_j by its TIES version (``ties_merging_split`` with ``reset_thresh=20``,
  ``merge_func="dis-sum"``): trim to the top 20% magnitudes of the flattened task vector, elect
  signs over the trimmed vectors, keep each task's entries that agree with the elected sign. We
  build them with :func:`dawin.merging.ties.trim_top_k`, :func:`~dawin.merging.ties.elect_signs` and
  :func:`~dawin.merging.ties.disjoint_merge` (applied to one task at a time), over the parameters only, the
  top 20 % counted over ``pool.trim_entries`` (the whole pickled encoder, as the code flattens it:
  :mod:`dawin.merging.ties`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..method.expertise import entropy
from ..inference.logits import default_device
from .ties import disjoint_merge, elect_signs, trim_top_k
from .pool import ModelPool, TaskData, example_indices, stack_images

INIT = 0.3
"""AdaMerging's initial coefficient (``prior = 0.3``)."""
TIES_FRACTION = 0.2
"""AdaMerging++ keeps the top 20% magnitudes of every task vector (``K = 20``)."""


@dataclass
class AdaMergingInfo:
    """Training record: the loss before every step and the final (clamped) coefficients.

    ``lambdas`` is (M,) for task-wise and (M, P) for layer-wise merging, rows in ``tasks`` order,
    columns in ``parameter_names`` order.
    """

    granularity: str
    tasks: list[str]
    parameter_names: list[str]
    lambdas: torch.Tensor
    losses: list[float] = field(default_factory=list)
    plus_plus: bool = False


def ties_task_vectors(taus: Mapping[str, Mapping[str, torch.Tensor]], fraction: float = TIES_FRACTION,
                      total_entries: int | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """AdaMerging++'s task vectors: each task's trimmed entries that agree with the elected sign (trimmed over
    ``total_entries``, as :func:`dawin.merging.ties.trim_top_k`)."""
    trimmed = {t: trim_top_k(tau, fraction, total_entries) for t, tau in taus.items()}
    signs = elect_signs(list(trimmed.values()))
    # disjoint_merge of a single task vector keeps exactly its sign-agreeing entries
    return {t: disjoint_merge([tau], signs, "sum") for t, tau in trimmed.items()}


class _Merger(torch.nn.Module):
    """theta(lambda) for the encoder's parameters; lambdas_raw is the only trainable tensor."""

    def __init__(self, theta0: Mapping[str, torch.Tensor], taus: list[Mapping[str, torch.Tensor]],
                 names: list[str], layer_wise: bool, init: float, device: torch.device):
        super().__init__()
        self.names = names
        self.base = {n: theta0[n].detach().to(device) for n in names}
        # stacked[n]: (M, *shape), so one tensordot gives sum_j lambda_j tau_j for that tensor
        self.stacked = {n: torch.stack([tau[n].detach() for tau in taus]).to(device) for n in names}
        cols = len(names) if layer_wise else 1
        self.lambdas_raw = torch.nn.Parameter(torch.full((len(taus), cols), float(init), device=device))
        self.layer_wise = layer_wise

    def lambdas(self) -> torch.Tensor:
        # the authors clamp in the forward pass, not after the step (module docstring)
        return self.lambdas_raw.clamp(0.0, 1.0)

    def params(self) -> dict[str, torch.Tensor]:
        lam = self.lambdas()
        return {n: self.base[n] + torch.tensordot(lam[:, i if self.layer_wise else 0].to(self.base[n].dtype),
                                                  self.stacked[n], dims=1)
                for i, n in enumerate(self.names)}


def step_indices(n_images: int, batch_size: int, seed: int, task: str, step: int) -> np.ndarray:
    """The positions in ``task``'s test set of the images AdaMerging step ``step`` trains on: ``batch_size``
    distinct ones drawn uniformly from all ``n_images`` (the authors' freshly shuffled loader), seeded by
    (seed, task, step)."""
    return example_indices(n_images, batch_size, seed, task, step)


class _StepBatches(torch.utils.data.Sampler):
    """A batch sampler yielding, for steps 0..steps-1, the positions of :func:`step_indices`."""

    def __init__(self, n_images: int, batch_size: int, seed: int, task: str, steps: int):
        self.args, self.steps = (n_images, batch_size, seed, task), steps

    def __iter__(self) -> Iterator[list[int]]:
        n_images, batch_size, seed, task = self.args
        return (step_indices(n_images, batch_size, seed, task, s).tolist() for s in range(self.steps))

    def __len__(self) -> int:
        return self.steps


def step_batches(data: TaskData, task: str, *, steps: int, batch_size: int, seed: int, num_workers: int = 0,
                 pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``data`` that yields, step after step, the (B, 3, H, W) batch of :func:`step_indices`;
    it reads only those images, when the step asks for them (``num_workers`` > 0 prefetches a few steps)."""
    return torch.utils.data.DataLoader(data, batch_sampler=_StepBatches(len(data), batch_size, seed, task, steps),
                                       num_workers=num_workers, collate_fn=stack_images, pin_memory=pin_memory)


def _check_inputs(pool: ModelPool, data: Mapping[str, TaskData], steps: int, batch_size: int, lr: float,
                  init: float) -> None:
    if not pool.experts:
        raise ValueError("the pool has no experts to merge")
    missing = [t for t in pool.tasks if t not in data]
    if missing:
        raise ValueError(f"no unlabelled images for tasks {missing}; AdaMerging needs every task's test images")
    no_head = [t for t in pool.tasks if t not in pool.heads]
    if no_head:
        raise ValueError(f"no head for tasks {no_head}")
    empty = [t for t in pool.tasks if len(data[t]) == 0]
    if empty:
        raise ValueError(f"no images for tasks {empty}: their test sets are empty")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not 0.0 <= init <= 1.0:
        raise ValueError(f"init must lie in [0, 1] (lambdas are clamped there), got {init!r}")


def _adamerging(pool: ModelPool, data: Mapping[str, TaskData], *, layer_wise: bool, steps: int,
                batch_size: int, lr: float, init: float, seed: int, plus_plus: bool, num_workers: int,
                device: torch.device | str | None) -> tuple[dict[str, torch.Tensor], AdaMergingInfo]:
    _check_inputs(pool, data, steps, batch_size, lr, init)
    device = torch.device(device) if device is not None else default_device()
    tasks = pool.tasks
    encoder = pool.encoder().to(device).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    names = [n for n, _ in encoder.named_parameters()]
    taus = pool.task_vectors()
    taus = {t: {n: tau[n] for n in names} for t, tau in taus.items()}  # lambdas act on parameters only
    if plus_plus:
        taus = ties_task_vectors(taus, total_entries=pool.trim_entries)
    merger = _Merger(pool.pretrained, [taus[t] for t in tasks], names, layer_wise, init, device)
    heads = {t: pool.heads[t].to(device) for t in tasks}
    optimizer = torch.optim.Adam([merger.lambdas_raw], lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    # one loader per task, iterated in lockstep: step s reads task t's images of step_indices(..., t, s);
    # the num_workers loader processes are shared among the tasks (at least one each when > 0)
    workers = max(1, num_workers // len(tasks)) if num_workers > 0 else 0
    loaders = [iter(step_batches(data[t], t, steps=steps, batch_size=batch_size, seed=seed, num_workers=workers,
                                 pin_memory=device.type == "cuda")) for t in tasks]
    losses: list[float] = []
    for _ in range(steps):
        params = merger.params()
        loss = torch.zeros((), device=device)
        for t, loader in zip(tasks, loaders):
            images = next(loader)
            features = torch.func.functional_call(encoder, params, (images.to(device),))
            # the task's frozen zero-shot head on L2-normalised features, as ImageClassifier does
            logits = F.normalize(features.float(), dim=-1) @ heads[t].T
            loss = loss + entropy(logits).mean().to(loss.dtype)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        final = merger.params()
        state = {k: v.clone() for k, v in pool.pretrained.items()}
        for n in names:
            state[n] = final[n].to(state[n].dtype).cpu()
        lambdas = merger.lambdas().detach().cpu()
    info = AdaMergingInfo("layer" if layer_wise else "task", tasks, names,
                          lambdas if layer_wise else lambdas[:, 0], losses, plus_plus)
    return state, info


def merge_task_wise(pool: ModelPool, data: Mapping[str, TaskData], *, steps: int = 500, batch_size: int = 32,
                    lr: float = 1e-3, init: float = INIT, seed: int = 0, plus_plus: bool = False,
                    num_workers: int = 0,
                    device: torch.device | str | None = None) -> tuple[dict[str, torch.Tensor], AdaMergingInfo]:
    """Task-wise AdaMerging(++): theta0 + sum_j lambda_j tau_j with lambda learned by entropy minimisation.

    ``data`` maps every task of the pool to its whole unlabelled test set: a dataset of preprocessed images
    (read lazily by ``num_workers`` loader processes in all, 0 = in this process) or an (N_t, 3, H, W)
    tensor; every step draws a fresh batch of ``batch_size`` from it (:func:`step_indices`). Returns the merged encoder state dict and an
    :class:`AdaMergingInfo`.
    """
    return _adamerging(pool, data, layer_wise=False, steps=steps, batch_size=batch_size, lr=lr, init=init,
                       seed=seed, plus_plus=plus_plus, num_workers=num_workers, device=device)


def merge_layer_wise(pool: ModelPool, data: Mapping[str, TaskData], *, steps: int = 500, batch_size: int = 32,
                     lr: float = 1e-3, init: float = INIT, seed: int = 0, plus_plus: bool = False,
                     num_workers: int = 0,
                     device: torch.device | str | None = None) -> tuple[dict[str, torch.Tensor], AdaMergingInfo]:
    """Layer-wise AdaMerging(++): one lambda per task and parameter tensor; otherwise as merge_task_wise."""
    return _adamerging(pool, data, layer_wise=True, steps=steps, batch_size=batch_size, lr=lr, init=init,
                       seed=seed, plus_plus=plus_plus, num_workers=num_workers, device=device)


def merge(pool: ModelPool, data: Mapping[str, TaskData], granularity: Literal["task", "layer"] = "layer",
          plus_plus: bool = False, **kw) -> dict[str, torch.Tensor]:
    """The merged encoder state dict of task- or layer-wise AdaMerging(++); ``kw`` go to merge_*_wise."""
    if granularity == "task":
        return merge_task_wise(pool, data, plus_plus=plus_plus, **kw)[0]
    if granularity == "layer":
        return merge_layer_wise(pool, data, plus_plus=plus_plus, **kw)[0]
    raise ValueError(f"granularity must be 'task' or 'layer', got {granularity!r}")
