"""Merged-model evaluation: each sample is classified by theta(l) = (1 - l) theta0 + l theta1 with its own l.

Evaluators share one interface, ``evaluate(model0, model1, dataset, coefficients) -> logits`` (N, C) in
the dataset's order, so a faster exact per-sample evaluator can replace the loop one without touching
the workflow. Merged weights always come from :mod:`dawin.method.weights`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from ..method.expertise import cross_entropy, entropy
from .logits import autocast, default_device, loader
from ..inputs.models import ImageClassifier
from ..method.weights import lerp_into, task_vector
from .interpolation import split_classifier


class MergedEvaluator(Protocol):
    def evaluate(self, model0: ImageClassifier, model1: ImageClassifier, dataset,
                 coefficients: torch.Tensor) -> torch.Tensor: ...


def _check(dataset, coefficients: torch.Tensor) -> np.ndarray:
    c = np.asarray(coefficients, dtype=np.float64).reshape(-1)
    if len(c) != len(dataset):
        raise ValueError(f"{len(c)} coefficients for {len(dataset)} samples")
    if not np.isfinite(c).all():
        raise ValueError(f"{int((~np.isfinite(c)).sum())} non-finite interpolation coefficients")
    return c


def _float(z: torch.Tensor) -> torch.Tensor:
    """Logits in float32 (fp16/bf16 under autocast are widened), or float64 for a float64 model."""
    return z.to(torch.promote_types(z.dtype, torch.float32))


class _Evaluator:
    def __init__(self, batch_size: int = 256, num_workers: int = 0, device: torch.device | None = None,
                 use_autocast: bool = True):
        self.batch_size, self.num_workers = batch_size, num_workers
        self.device, self.use_autocast = device or default_device(), use_autocast


def _work_model(model0, model1, device):
    """A private copy of model0 on ``device``, theta0 and delta = theta1 - theta0, for in-place merges."""
    work = copy.deepcopy(model0).to(device).eval()
    theta0 = {k: v.to(device) for k, v in model0.state_dict().items()}
    delta = {k: v.to(device) for k, v in task_vector(model1.state_dict(), model0.state_dict()).items()}
    return work, theta0, delta


class GroupedEvaluator(_Evaluator):
    """Materialise one merged model per distinct coefficient and run it over that group's samples.

    This is DaWin's clustered evaluation (K mixture components -> K merged models for the whole
    domain, not per batch) and, with one constant coefficient, WiSE-FT. Original order is restored.
    """

    @torch.no_grad()
    def evaluate(self, model0, model1, dataset, coefficients) -> torch.Tensor:
        c = _check(dataset, coefficients)
        work, theta0, delta = _work_model(model0, model1, self.device)
        groups = [(np.flatnonzero(c == value), partial(lerp_into, work, theta0, delta, float(value)))
                  for value in np.unique(c)]
        return self.run_groups(work, dataset, groups)

    def run_groups(self, work: torch.nn.Module, dataset, groups: Sequence[tuple[np.ndarray, Callable[[], object]]]) -> torch.Tensor:
        """Logits (N, C) of ``dataset``: for each (sample indices, prepare) group, ``prepare()`` writes the
        group's merged weights into ``work`` once, then its samples are classified; order is restored."""
        project = dataset.projection
        out: torch.Tensor | None = None
        for idx, prepare in groups:
            prepare()
            parts = []
            for x, _ in loader(dataset, self.batch_size, self.num_workers, idx):
                with autocast(self.device, self.use_autocast):
                    parts.append(project(_float(work(x.to(self.device)))).cpu())
            z = torch.cat(parts)
            if out is None:
                out = torch.empty(len(dataset), z.shape[1])
            out[torch.as_tensor(idx)] = z
        return out


class LoopPerSampleEvaluator(_Evaluator):
    """Every sample with its own merged model, one image at a time: exact, O(N) merges (the reference).

    Streams the data once; for each sample the work model's weights are overwritten in place with
    theta0 + l * (theta1 - theta0) and the single image is classified. It runs any architecture;
    :class:`PerSampleEvaluator` computes the same in batches for the architectures it covers.
    """

    @torch.no_grad()
    def evaluate(self, model0, model1, dataset, coefficients) -> torch.Tensor:
        c = _check(dataset, coefficients)
        work, theta0, delta = _work_model(model0, model1, self.device)
        project = dataset.projection
        outs, i = [], 0
        for x, _ in tqdm(loader(dataset, self.batch_size, self.num_workers), desc="per-sample merge", leave=False):
            for img in x.to(self.device):
                lerp_into(work, theta0, delta, float(c[i]))
                with autocast(self.device, self.use_autocast):
                    outs.append(project(_float(work(img[None]))).cpu())
                i += 1
        return torch.cat(outs)


class PerSampleEvaluator(_Evaluator):
    """Every sample with its own merged model (DaWin w/o mixture, the sample-wise oracle), whole batches at a time.

    Each batch runs once through :func:`dawin.inference.interpolation.split_classifier`, which applies
    theta0 + l_i * (theta1 - theta0) per sample by splitting every parameterised op in its theta0 and delta
    parts: the loop's result at about twice the matrix FLOPs of one forward pass. A model with an op that
    is not covered is refused by name (:class:`dawin.inference.interpolation.UncoveredOpError`).
    """

    @torch.no_grad()
    def evaluate(self, model0, model1, dataset, coefficients) -> torch.Tensor:
        c = torch.as_tensor(_check(dataset, coefficients))
        net = split_classifier(model0, model1).to(self.device)
        project = dataset.projection
        outs, start = [], 0
        for x, _ in tqdm(loader(dataset, self.batch_size, self.num_workers), desc="per-sample merge", leave=False):
            lam = c[start:start + len(x)].to(self.device)
            with autocast(self.device, self.use_autocast):
                outs.append(project(_float(net(x.to(self.device), lam))).cpu())
            start += len(x)
        return torch.cat(outs)


def summarize(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample summary of a merged model's outputs: predicted class, true-label cross-entropy, entropy.

    Merged models' logits are never temperature-scaled (temperatures only shape the expertise); the
    summary is what tables and figures need, at a fraction of the size of (N, C) logits.
    """
    return {"pred": logits.argmax(-1), "cross_entropy": cross_entropy(logits, labels).float(),
            "entropy": entropy(logits).float(), "labels": torch.as_tensor(labels).long()}


@torch.no_grad()
def evaluate_grid(model0, model1, dataset, weights, batch_size: int = 256, num_workers: int = 0,
                  device: torch.device | None = None, use_autocast: bool = True,
                  reduce: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]] | None = None) -> dict:
    """Outputs of every static interpolation theta(w), w in ``weights`` (the WiSE-FT sweep), in one data pass.

    Each batch is loaded once; the work model's weights are rewritten in place for each w, which costs
    one pass over the parameters, far less than re-reading and re-decoding the images per w. Without
    ``reduce`` the result is {w: logits (N, C)}; with it, {w: {name: (N,) tensor}} of ``reduce(logits,
    labels)`` per batch (e.g. :func:`summarize`), so a long sweep over a large test set stays small.
    """
    device = device or default_device()
    work, theta0, delta = _work_model(model0, model1, device)
    project = dataset.projection
    outs: dict[float, list] = {float(w): [] for w in weights}
    for x, y in tqdm(loader(dataset, batch_size, num_workers), desc="weight grid", leave=False):
        x = x.to(device)
        for w in outs:
            lerp_into(work, theta0, delta, w)
            with autocast(device, use_autocast):
                z = project(_float(work(x))).cpu()
            outs[w].append(z if reduce is None else reduce(z, torch.as_tensor(y)))
    if reduce is None:
        return {w: torch.cat(z) for w, z in outs.items()}
    return {w: {k: torch.cat([part[k] for part in parts]) for k in parts[0]} for w, parts in outs.items()}


PER_SAMPLE_EVALUATORS: dict[str, type] = {"batched": PerSampleEvaluator, "loop": LoopPerSampleEvaluator}
"""The ``evaluation.per_sample`` config choices."""
