"""Inference cost of static (WiSE-FT) and dynamic (DaWin) interpolation: Table F and Fig. 8.

Each method is timed end to end on one test domain (a subset of it, see :func:`subset`):

* ``wise_ft``: the whole coefficient grid, theta(a) evaluated for each of the H grid values
  (:func:`dawin.inference.evaluation.evaluate_grid`); the grid is WiSE-FT's cost since a is chosen by it.
* ``dawin``: logits of theta0 and theta1 (two data passes), entropies, Eq. 2 coefficients, a Beta
  mixture with K components, then one merged model per cluster (:class:`GroupedEvaluator`).
* ``dawin_parallel``: the same, with both expertise models fed each batch of ONE data pass
  (:func:`dawin.inference.logits.compute_logits_pair`).
* ``dawin_per_sample``: DaWin without the mixture, exact per sample in batches (:class:`PerSampleEvaluator`,
  the split theta0 / delta forward of :mod:`dawin.inference.interpolation`): what the workflow runs.
* ``dawin_per_sample_loop``: the same coefficients with one merge and one forward per image
  (:class:`LoopPerSampleEvaluator`, as the authors' code does), optionally timed on the first
  ``per_sample_limit`` samples and extrapolated linearly.

FLOPs are counted, not timed: forward FLOPs of one model come from
:class:`torch.utils.flop_counter.FlopCounterMode`, which counts matrix products and convolutions
(a multiply-add = 2 FLOPs) and ignores element-wise ops, norms and softmax. Merge FLOPs are added on
top (see :func:`merge_flops`). Table F's "DaWin (parallel)" reports fewer FLOPs than DaWin because it
appears to count one device's share over several GPUs; here all rows report the total work.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..method.coefficients import offset_adjusted_coefficients
from .evaluation import GroupedEvaluator, LoopPerSampleEvaluator, PerSampleEvaluator, evaluate_grid
from .interpolation import split_classifier
from ..method.expertise import entropy
from .logits import compute_logits, compute_logits_pair, default_device, loader
from ..method.mixtures import BetaMixture

log = logging.getLogger("dawin.inference.profiling")

MB = 2**20


# --- subsets ---------------------------------------------------------------------------------------


class SubsetDataset(torch.utils.data.Subset):
    """A :class:`torch.utils.data.Subset` that keeps the parent's ``projection`` and ``labels``,
    which the logit and evaluation code read from the dataset."""

    def __init__(self, dataset: Any, indices: list[int]):
        super().__init__(dataset, indices)
        self.projection = dataset.projection
        labels = getattr(dataset, "labels", None)
        self.labels = None if labels is None else [int(labels[i]) for i in indices]


def subset(dataset: Any, n: int, seed: int = 0) -> SubsetDataset:
    """``n`` samples of ``dataset`` drawn without replacement with ``seed``, kept in dataset order
    (sorted indices, so the loader reads them like the full domain)."""
    if not 0 < n <= len(dataset):
        raise ValueError(f"cannot draw {n} samples from a dataset of {len(dataset)}")
    idx = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    return SubsetDataset(dataset, idx.tolist())


# --- FLOPs -----------------------------------------------------------------------------------------


@torch.no_grad()
def flops_per_sample(model: torch.nn.Module, example: torch.Tensor) -> float:
    """Forward FLOPs of ``model`` on the batch ``example``, divided by the batch size.

    Counted in fp32 without autocast (the count does not depend on the dtype). The model is put in
    eval mode for the count (so batch norm does not update its statistics) and its mode restored.
    """
    if example.ndim == 0 or example.shape[0] == 0:
        raise ValueError(f"example must be a non-empty batch, got shape {tuple(example.shape)}")
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / example.shape[0]


@torch.no_grad()
def split_flops_per_sample(model0: torch.nn.Module, model1: torch.nn.Module, example: torch.Tensor) -> float:
    """Forward FLOPs per sample of the batched per-sample pass (:func:`dawin.inference.interpolation.split_classifier`)."""
    net = split_classifier(model0, model1).to(example.device)
    lam = torch.full((example.shape[0],), 0.5, device=example.device)
    with FlopCounterMode(display=False) as counter:
        net(example, lam)
    return counter.get_total_flops() / example.shape[0]


def mergeable_parameters(model: torch.nn.Module) -> int:
    """Number of floating-point state entries, the ones :func:`dawin.method.weights.lerp_into` rewrites."""
    return sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())


def merge_flops(n_params: int, merges: int) -> float:
    """FLOPs of ``merges`` merges as the evaluators do them: delta = theta1 - theta0 once (1 FLOP per
    parameter), then theta0 + l * delta per merge (a multiply and an add, 2 FLOPs per parameter).
    The textbook (1 - l) theta0 + l theta1 would be 3 per merge; the evaluators precompute delta."""
    return float(n_params) * (1 + 2 * merges)


# --- time and memory -------------------------------------------------------------------------------


class Measurement(NamedTuple):
    """Wall-clock seconds of one run, its peak tensor memory in bytes (see :func:`measure`) and the
    return value of the timed run."""

    seconds: float
    peak_bytes: int
    result: Any


def _cpu_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak live CPU tensor bytes allocated while ``fn`` runs, above the level at its start.

    The torch profiler with ``profile_memory=True`` records every allocation and free of the CPU
    tensor allocator with its size (negative for frees); the running sum of these in time order is
    the live tensor memory, and its maximum is the peak. Tensors that exist before ``fn`` (weights
    already in place) are not counted, as on CUDA. Not seen: Python objects, allocator caching and
    fragmentation, and memory of DataLoader worker processes (``num_workers > 0``).
    """
    from torch._C._profiler import _EventType  # the allocation events are only exposed here
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak


def measure(fn: Callable[[], Any], device: torch.device | str, warmup: bool = True) -> Measurement:
    """Time ``fn()`` and measure its peak tensor memory on ``device``.

    With ``warmup`` it is run once untimed first (the first CUDA call pays for context creation,
    cuDNN/cuBLAS autotuning and allocator growth). Time is wall-clock with ``torch.cuda.synchronize``
    before and after on CUDA.

    Peak memory is the peak of bytes held by live tensors during the run, above what was allocated
    when it started: on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` minus
    ``memory_allocated`` at the start (the timed run); on the CPU the profiler's allocation record
    (:func:`_cpu_peak_bytes`), taken in a separate run (the warm-up one) because the profiler slows
    the run. Both exclude allocator caches, but the CPU peak also holds the images and the
    CPU copies of the logits, which on CUDA live on the host: CPU and GPU peaks are not comparable.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    peak = 0
    if warmup:
        if cuda:
            fn()
        else:
            peak = _cpu_peak_bytes(fn)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    result = fn()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) - base
    elif not warmup:
        peak = _cpu_peak_bytes(fn)
    return Measurement(seconds, int(peak), result)


# --- the DaWin pipeline ----------------------------------------------------------------------------


class DawinRun(NamedTuple):
    """Merged-model logits (N, C), the per-sample coefficients used and the number of merges done."""

    logits: torch.Tensor
    coefficients: np.ndarray
    merges: int


def dawin_pipeline(model0: torch.nn.Module, model1: torch.nn.Module, dataset: Any, *,
                   n_components: int | None, temperatures: tuple[float, float] = (1.0, 1.0),
                   parallel: bool = False, batch_size: int = 256, num_workers: int = 0,
                   device: torch.device | None = None, use_autocast: bool = True, seed: int = 0,
                   per_sample: type = PerSampleEvaluator) -> DawinRun:
    """DaWin inference on one domain: expertise logits, entropies, Eq. 2, mixture, merged evaluation.

    ``parallel``: both expertise models in one data pass. ``n_components=None``: no mixture, every
    sample gets its own merged model, by the evaluator class ``per_sample`` (merges: N for the loop,
    none for the batched evaluator, which never materialises a merged model).
    """
    kw = dict(batch_size=batch_size, num_workers=num_workers, device=device, use_autocast=use_autocast)
    if parallel:
        z0, z1 = compute_logits_pair(model0, model1, dataset, **kw)
    else:
        z0, _ = compute_logits(model0, dataset, desc="theta0", **kw)
        z1, _ = compute_logits(model1, dataset, desc="theta1", **kw)
    lam = offset_adjusted_coefficients(entropy(z0, temperatures[0]), entropy(z1, temperatures[1])).numpy()
    if n_components is None:
        merges = len(lam) if per_sample is LoopPerSampleEvaluator else 0
        return DawinRun(per_sample(**kw).evaluate(model0, model1, dataset, lam), lam, merges)
    mix = BetaMixture(n_components, seed=seed).fit(lam)
    coef = mix.cluster_coefficients()[mix.predict(lam)]
    # GroupedEvaluator merges once per distinct coefficient, which may be fewer than K.
    logits = GroupedEvaluator(**kw).evaluate(model0, model1, dataset, coef)
    return DawinRun(logits, coef, len(np.unique(coef)))


# --- the profile -----------------------------------------------------------------------------------


def profile_inference(model0: torch.nn.Module, model1: torch.nn.Module, dataset: Any, *,
                      grid: list[float], n_components: int, temperatures: tuple[float, float] = (1.0, 1.0),
                      batch_size: int, num_workers: int = 0, device: torch.device | None = None,
                      use_autocast: bool = True, seed: int = 0,
                      per_sample_limit: int | None = None) -> pd.DataFrame:
    """Runtime, FLOPs and peak memory of WiSE-FT and the DaWin variants on ``dataset``.

    One row per method (``wise_ft``, ``dawin``, ``dawin_parallel``, ``dawin_per_sample``,
    ``dawin_per_sample_loop``) with columns method, samples (N of ``dataset``), measured_samples,
    extrapolated, seconds (for N samples), seconds_per_sample, forward_passes_per_sample, merges,
    gflops_per_sample, peak_memory_mb, peak_memory_mb_per_sample (peak / batch_size) and device. Every
    method is warmed up once untimed (:func:`measure`). ``dawin_per_sample_loop`` runs on the first
    ``per_sample_limit`` samples when given; its seconds are then scaled by N / measured_samples and
    ``extrapolated`` is True. gflops_per_sample = forward passes x forward GFLOPs of one model + merge
    FLOPs / samples; the batched per-sample pass counts as the FLOPs of its split forward (about two
    passes) and delta = theta1 - theta0 once.
    """
    if not grid:
        raise ValueError("the WiSE-FT grid is empty")
    if len(dataset) == 0:
        raise ValueError("cannot profile on an empty dataset")
    device = torch.device(device) if device is not None else default_device()
    # Weights go to the device before timing: moving them is setup, not inference.
    model0, model1 = model0.to(device).eval(), model1.to(device).eval()
    n = len(dataset)
    x, _ = next(iter(loader(dataset, batch_size)))
    x = x.to(device)
    fwd = flops_per_sample(model0, x)
    split_fwd = split_flops_per_sample(model0, model1, x)
    n_params = mergeable_parameters(model0)
    kw = dict(batch_size=batch_size, num_workers=num_workers, device=device, use_autocast=use_autocast)
    dawin_kw = dict(temperatures=temperatures, seed=seed, **kw)

    loop_set = dataset
    if per_sample_limit is not None and per_sample_limit < n:
        if per_sample_limit < 2:
            raise ValueError("per_sample_limit must be at least 2 (Eq. 2 needs an entropy std)")
        loop_set = SubsetDataset(dataset, list(range(per_sample_limit)))

    n_batches = math.ceil(n / batch_size)
    # (method, run, data, forward FLOPs per sample, merges of a result)
    runs: list[tuple[str, Callable[[], Any], Any, float, Callable[[Any], int]]] = [
        # evaluate_grid re-merges the work model for every grid value on every batch.
        ("wise_ft", lambda: evaluate_grid(model0, model1, dataset, grid, **kw), dataset, len(grid) * fwd,
         lambda _: len(grid) * n_batches),
        ("dawin", lambda: dawin_pipeline(model0, model1, dataset, n_components=n_components, **dawin_kw),
         dataset, 3 * fwd, lambda r: r.merges),
        ("dawin_parallel", lambda: dawin_pipeline(model0, model1, dataset, n_components=n_components,
                                                  parallel=True, **dawin_kw), dataset, 3 * fwd, lambda r: r.merges),
        ("dawin_per_sample", lambda: dawin_pipeline(model0, model1, dataset, n_components=None, **dawin_kw),
         dataset, 2 * fwd + split_fwd, lambda r: r.merges),
        ("dawin_per_sample_loop", lambda: dawin_pipeline(model0, model1, loop_set, n_components=None,
                                                         per_sample=LoopPerSampleEvaluator, **dawin_kw),
         loop_set, 3 * fwd, lambda r: r.merges),
    ]
    rows = []
    for method, fn, data, forward_flops, count_merges in runs:
        measured = len(data)
        log.info("profiling %s on %d samples (%s)", method, measured, device)
        res = measure(fn, device)
        merges = count_merges(res.result)
        flops = forward_flops + merge_flops(n_params, merges) / measured
        rows.append({
            "method": method, "samples": n, "measured_samples": measured, "extrapolated": measured < n,
            "seconds": res.seconds * n / measured, "seconds_per_sample": res.seconds / measured,
            "forward_passes_per_sample": forward_flops / fwd, "merges": merges, "gflops_per_sample": flops / 1e9,
            "peak_memory_mb": res.peak_bytes / MB, "peak_memory_mb_per_sample": res.peak_bytes / MB / batch_size,
            "device": str(device),
        })
    return pd.DataFrame(rows)


def merged_passes(model0: torch.nn.Module, model1: torch.nn.Module, dataset: Any, coefficients: np.ndarray, *,
                  n_components: int, batch_size: int, num_workers: int = 0, device: torch.device | None = None,
                  use_autocast: bool = True, seed: int = 0, loop_limit: int | None = None) -> pd.DataFrame:
    """Seconds of one pass over ``dataset`` per way of evaluating, the expertise logits already cached.

    Rows (``pass``): ``single`` (one model, :func:`compute_logits`), ``per_sample`` (exact per sample,
    batched), ``per_sample_loop`` (one merge per image, on the first ``loop_limit`` samples, extrapolated)
    and ``clustered`` (``coefficients`` clustered by a Beta mixture of ``n_components``, one merged model
    per cluster). Column ``ratio`` is seconds / the single pass's, measured in this one run.
    """
    device = torch.device(device) if device is not None else default_device()
    model0, model1 = model0.to(device).eval(), model1.to(device).eval()
    kw = dict(batch_size=batch_size, num_workers=num_workers, device=device, use_autocast=use_autocast)
    mix = BetaMixture(n_components, seed=seed).fit(coefficients)
    clustered = mix.cluster_coefficients()[mix.predict(coefficients)]
    n = len(dataset)
    m = n if loop_limit is None else min(loop_limit, n)
    loop_set = SubsetDataset(dataset, list(range(m)))
    passes = {
        "single": (lambda: compute_logits(model0, dataset, desc="single", **kw), n),
        "per_sample": (lambda: PerSampleEvaluator(**kw).evaluate(model0, model1, dataset, coefficients), n),
        "per_sample_loop": (lambda: LoopPerSampleEvaluator(**kw).evaluate(model0, model1, loop_set,
                                                                          coefficients[:m]), m),
        "clustered": (lambda: GroupedEvaluator(**kw).evaluate(model0, model1, dataset, clustered), n),
    }
    rows = []
    for name, (fn, measured) in passes.items():
        log.info("timing the %s pass on %d samples (%s)", name, measured, device)
        rows.append({"pass": name, "measured_samples": measured, "seconds": measure(fn, device).seconds * n / measured})
    df = pd.DataFrame(rows)
    df["ratio"] = df.seconds / df.seconds[df["pass"] == "single"].iloc[0]
    return df


def single_passes(model: torch.nn.Module, paths: dict[str, Any], *, batch_size: int, num_workers: int = 0,
                  device: torch.device | None = None, use_autocast: bool = True) -> pd.DataFrame:
    """One pass of ``model`` over the same images through each data path ({name: dataset}, e.g. the JPEGs and the
    decoded images): rows method ``single_pass_<name>``, seconds, seconds_per_sample (Table F says which is which)."""
    device = torch.device(device) if device is not None else default_device()
    model = model.to(device).eval()
    rows = []
    for name, data in paths.items():
        res = measure(lambda: compute_logits(model, data, batch_size, num_workers, device=device,
                                             use_autocast=use_autocast, desc=name), device)
        rows.append({"method": f"single_pass_{name}", "seconds": res.seconds, "seconds_per_sample": res.seconds / len(data)})
    return pd.DataFrame(rows)
