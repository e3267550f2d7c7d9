"""safetensors files with deterministic bytes.

safetensors stores metadata as a hash map whose key order changes from process to process, so two runs
that compute identical tensors would still write different files. All metadata is therefore packed into
one key holding sorted JSON; :func:`read_metadata` unpacks it (and passes other files' metadata through).
torch is imported by the functions that return or take its tensors only: :func:`load_arrays` reads a file as
numpy arrays without it (the table and summary jobs, whose start-up it would double).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import SafetensorError, safe_open

from . import identity

if TYPE_CHECKING:
    import torch

META_KEY = "dawin"


class DamagedFileError(ValueError):
    """A safetensors file that cannot be read (truncated, empty, overwritten)."""


@contextmanager
def _open(path: str | Path, framework: str) -> Iterator:
    try:
        with safe_open(str(path), framework=framework) as f:
            yield f
    except SafetensorError as error:
        raise DamagedFileError(f"{path}: not a readable safetensors file ({error}); it is truncated or damaged: "
                               "delete it and rerun snakemake, which rebuilds it") from None


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, object] | None = None) -> None:
    """Write ``path`` whole or not at all: to a ``.partial`` name beside it, moved into place when complete, so a
    crash or a kill mid-write leaves the previous file as it was (the rules' ``update`` outputs rely on it)."""
    from safetensors.torch import save_file

    meta = {META_KEY: json.dumps({k: str(v) for k, v in (metadata or {}).items()}, sort_keys=True)}
    tmp = Path(f"{path}.partial")
    try:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_metadata(path: str | Path) -> dict[str, str]:
    with _open(path, "np") as f:
        meta = f.metadata() or {}
    return json.loads(meta[META_KEY]) if META_KEY in meta else dict(meta)


def load_tensors(path: str | Path, names: list[str] | None = None, expect: Mapping[str, object] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (all, or ``names``) and the metadata of a file, once its identity is what its path in the results
    layout and ``expect`` say (:func:`dawin.identity.check`)."""
    meta = read_metadata(path)
    identity.check(path, meta, expect)
    with _open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in (names or list(f.keys()))}
    return tensors, meta


def load_arrays(path: str | Path, names: list[str] | None = None, expect: Mapping[str, object] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """As :func:`load_tensors`, as numpy arrays and without importing torch."""
    meta = read_metadata(path)
    identity.check(path, meta, expect)
    with _open(path, "np") as f:
        arrays = {k: f.get_tensor(k) for k in (names or list(f.keys()))}
    return arrays, meta
