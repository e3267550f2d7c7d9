"""Multi-task model merging: each method is a small module, all built on ``dawin.method.weights``.

Every method has the signature ``merge(pool, data=None, **options) -> encoder state dict``: it merges
the experts' image encoders of a ``ModelPool`` into ONE encoder (each task keeps its own frozen
head); ``data`` maps task -> the images it learns from, for the methods that need them. Each method's options,
with their defaults, are its ``merge`` function's keyword arguments (its docstring says what they do).

``METHODS`` (name -> callable; ``get_method(name)`` looks one up with a clear error) holds every method of
:data:`dawin.registry.MERGING_METHODS`, which names them, their labels, the data they learn from and the module of
each. The modules are imported by the registry's names (``importlib``, as ``f"{__name__}.<module>"``), so the
workflow's code inputs (read from the imports, :mod:`dawin.codedeps`) count every module of this package for a
script that imports it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch

from ..registry import MERGING_METHODS, MergingMethod
from .pool import ModelPool

MergeFn = Callable[..., dict[str, torch.Tensor]]


def _merge_function(name: str, spec: MergingMethod) -> MergeFn:
    """The registry entry's ``merge`` function, with the options it fixes."""
    module = spec.module or name
    try:
        merge = importlib.import_module(f"{__name__}.{module}").merge
    except (ModuleNotFoundError, AttributeError) as error:
        if getattr(error, "name", None) not in (f"{__name__}.{module}", "merge"):
            raise
        raise ImportError(f"dawin.registry.MERGING_METHODS[{name!r}]: no function merge(pool, data=None, **options) "
                          f"in module dawin.merging.{module} ({error}); add src/dawin/merging/{module}.py with it, or "
                          "name the module that has it (MergingMethod(module=...))") from None
    return functools.partial(merge, **spec.fixed) if spec.fixed else merge


METHODS: dict[str, MergeFn] = {name: _merge_function(name, spec) for name, spec in MERGING_METHODS.items()}


def get_method(name: str) -> MergeFn:
    """The merge function registered as ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown merging method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "ModelPool", "get_method"]
