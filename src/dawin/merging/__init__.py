"""Multi-task model merging: each method is a small module, all built on ``dawin.method.weights``.

Every method has the signature ``merge(pool, data=None, **options) -> encoder state dict``: it merges
the experts' image encoders of a ``ModelPool`` into ONE encoder (each task keeps its own frozen
head); ``data`` maps task -> preprocessed images (N, 3, H, W) for the methods that need them.

Registry ``METHODS`` (name -> callable; ``get_method(name)`` looks one up with a clear error):

==========================  ==========================================================  ==========
name                        method                                                      needs data
==========================  ==========================================================  ==========
``weight_average``          mean of the experts                                         no
``task_arithmetic``         theta_0 + lam * sum_j tau_j (lam = 0.3)                     no
``ties``                    TIES-merging (fraction 0.2, lam 0.3, disjoint sum)          no
``fisher``                  diagonal-Fisher weighted average (n_examples 256)           yes
``regmean``                 RegMean on linear layers (alpha 0.95, n_examples 256)       yes
``adamerging_task``         AdaMerging, task-wise coefficients                          yes
``adamerging_layer``        AdaMerging, layer-wise coefficients                         yes
``adamerging_pp_task``      AdaMerging++ (TIES task vectors), task-wise                 yes
``adamerging_pp_layer``     AdaMerging++ (TIES task vectors), layer-wise                yes
``opcm``                    OPCM (orthogonal projection-based continual merging)        no
==========================  ==========================================================  ==========

The AdaMerging entries are ``adamerging.merge_task_wise`` / ``merge_layer_wise`` (option ``plus_plus``)
without their training record. Every module is imported by name, so the workflow's code inputs (read from
the imports, :mod:`dawin.codedeps`) see each method a rule may run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..registry import MERGING_METHODS, check_names
from . import adamerging, fisher, opcm, regmean, task_arithmetic, ties, weight_average
from .pool import ModelPool

MergeFn = Callable[..., dict[str, torch.Tensor]]


def _state_only(function: Callable, **fixed: object) -> MergeFn:
    """A registry entry for a method that also returns its training record (AdaMerging): the state alone."""

    def run(pool: ModelPool, data: object = None, **options: object) -> dict[str, torch.Tensor]:
        return function(pool, data, **fixed, **options)[0]

    run.__name__ = f"{function.__module__}.{function.__name__}"
    run.__doc__ = f"{run.__name__}(pool, data, **{fixed or {}}, **options), without its training record."
    return run


METHODS: dict[str, MergeFn] = {
    "weight_average": weight_average.merge,
    "task_arithmetic": task_arithmetic.merge,
    "ties": ties.merge,
    "fisher": fisher.merge,
    "regmean": regmean.merge,
    "adamerging_task": _state_only(adamerging.merge_task_wise),
    "adamerging_layer": _state_only(adamerging.merge_layer_wise),
    "adamerging_pp_task": _state_only(adamerging.merge_task_wise, plus_plus=True),
    "adamerging_pp_layer": _state_only(adamerging.merge_layer_wise, plus_plus=True),
    "opcm": opcm.merge,
}
check_names("merging methods", MERGING_METHODS, METHODS, __name__)


def get_method(name: str) -> MergeFn:
    """The merge function registered as ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown merging method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "ModelPool", "get_method"]
