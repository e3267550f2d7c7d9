"""Logit caching over a dataset: batched, in index order, CUDA + autocast when available.

A cache file is safetensors with ``logits`` (N, C) after the dataset's projection and ``labels`` (N,),
and metadata naming the checkpoint (with its sha256), the dataset and the image count, so that a cache
can always be traced to, and checked against, what produced it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from tqdm import tqdm

from ..method.expertise import check_finite
from ..tensorio import load_tensors, save_tensors


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, enabled: bool = True):
    """bf16/fp16 autocast on CUDA; a no-op on the CPU (the demo stays in fp32 there)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def loader(dataset, batch_size: int, num_workers: int = 0, indices=None) -> torch.utils.data.DataLoader:
    """A deterministic (unshuffled) loader over ``dataset`` or the subset ``indices`` of it."""
    ds = dataset if indices is None else torch.utils.data.Subset(dataset, list(indices))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                       pin_memory=torch.cuda.is_available())


def projected(project, z: torch.Tensor, dataset, desc: str) -> torch.Tensor:
    """``dataset``'s projection of the model outputs ``z`` (float32, on the CPU), refusing a head whose classes do not
    give the dataset's: accuracies against its labels would be a plausible-looking wrong number."""
    try:
        out = project(z.float())
    except (IndexError, RuntimeError):  # a subset / group projection reaching past the head's columns
        out = None
    n = len(getattr(dataset, "classnames", ()))
    if out is None or (n and out.shape[-1] != n):
        raise ValueError(f"{desc}: the model's head has {z.shape[-1]} classes, which do not give the {n} classes of "
                         f"dataset {dataset.name} ({dataset.root}): a classifier of another task, or a dataset other "
                         "than the one its head was built for; fix the path in the config")
    return out.cpu()


@torch.no_grad()
def compute_logits(model: torch.nn.Module, dataset, batch_size: int = 256, num_workers: int = 0,
                   device: torch.device | None = None, use_autocast: bool = True, desc: str = "logits"):
    """Projected logits (float32, N x C) and labels of ``dataset`` under ``model``, in index order."""
    device = device or default_device()
    model = model.to(device).eval()
    project = dataset.projection
    outs, labels = [], []
    for x, y in tqdm(loader(dataset, batch_size, num_workers), desc=desc, leave=False):
        with autocast(device, use_autocast):
            z = model(x.to(device, non_blocking=True))
        outs.append(projected(project, z, dataset, desc))
        labels.append(torch.as_tensor(y))
    logits = torch.cat(outs)
    check_finite(logits, f"logits of {desc}")
    return logits, torch.cat(labels)


@torch.no_grad()
def compute_logits_pair(model0: torch.nn.Module, model1: torch.nn.Module, dataset, batch_size: int = 256,
                        num_workers: int = 0, device: torch.device | None = None,
                        use_autocast: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected logits (float32, N x C) of ``dataset`` under two models from ONE pass over the data.

    "DaWin (parallel)" (Table F): each batch is loaded and moved to the device once and fed to both
    expertise models, instead of two :func:`compute_logits` passes that each read and decode every image.
    The result equals two :func:`compute_logits` calls.
    """
    device = device or default_device()
    model0, model1 = model0.to(device).eval(), model1.to(device).eval()
    project = dataset.projection
    outs0, outs1 = [], []
    for x, _ in tqdm(loader(dataset, batch_size, num_workers), desc="logits pair", leave=False):
        x = x.to(device, non_blocking=True)
        with autocast(device, use_autocast):
            z0, z1 = model0(x), model1(x)
        outs0.append(projected(project, z0, dataset, "model0"))
        outs1.append(projected(project, z1, dataset, "model1"))
    logits0, logits1 = torch.cat(outs0), torch.cat(outs1)
    check_finite(logits0, "logits of model0")
    check_finite(logits1, "logits of model1")
    return logits0, logits1


def save_logits(path: str | Path, logits: torch.Tensor, labels: torch.Tensor, **metadata: str) -> None:
    check_finite(logits, f"logits to be written to {path}")
    save_tensors(path, {"logits": logits.float(), "labels": labels.long()}, metadata)


def load_logits(path: str | Path, expect: dict[str, str] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    """Read a cache file that is what its path and ``expect`` say (:func:`dawin.identity.check`); NaN or infinite
    logits are an error naming the file."""
    tensors, meta = load_tensors(path, ["logits", "labels"], expect)
    logits, labels = tensors["logits"], tensors["labels"]
    check_finite(logits, f"cached logits in {path}")
    return logits, labels, meta
