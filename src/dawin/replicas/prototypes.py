"""Class images that the replica models recognise, so that the rehearsal's numbers mean something.

A replica CLIP has random weights, so images of coloured stripes fall on its classes at chance: every model is
then equally uninformative, temperature scaling has no optimum (calibration stops, as it must on such a model)
and no table can be built. :func:`class_prototypes` instead finds, for every class of every domain (ImageNet's
1000 classes, each multi-task dataset's), a small image that the replica zero-shot model assigns to that class
through the workflow's own zero-shot head (the full prompt-template set) and through the single-prompt head the
fine-tuned replicas start from. The search is a few hundred Adam steps over ``size`` x ``size`` RGB pictures
(grey for MNIST) pushed through what happens to a replica image on its way to the model: drawn at a random
24..32 px size, noise, the architecture's own resize + centre crop, normalisation. :func:`render` draws one
image of a class from its prototype at the size a dataset writer wants.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

GREY_DOMAINS = frozenset({"mnist"})  # stored as 8-bit grey, the model sees them as RGB copies
_NOISE = 6.0 / 255  # per-pixel noise of a rendered image (and JPEG's loss, roughly) during the search


def _to_model_input(x: torch.Tensor, image_size: int, mean: torch.Tensor, std: torch.Tensor,
                    gen: torch.Generator, rendered: bool = False) -> torch.Tensor:
    """x (N, 3, s, s) in [0, 1] -> model input (N, 3, image_size, image_size), normalised, with rendering noise.
    ``rendered``: the way a dataset image takes (drawn at a random size of the dataset replicas, then open_clip's bicubic
    resize of the shorter side and centre crop); otherwise a plain bilinear upsampling (the search's cheap
    stand-in: its gradient costs a tenth)."""
    if rendered:
        from .data import MAX_PX, MIN_PX

        h, w = (int(v) for v in torch.randint(MIN_PX, MAX_PX + 1, (2,), generator=gen))
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        x = x + _NOISE * torch.randn(x.shape, generator=gen)
        scale = image_size / min(h, w)
        nh, nw = max(image_size, round(h * scale)), max(image_size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False)
        top, left = (nh - image_size) // 2, (nw - image_size) // 2
        x = x[:, :, top:top + image_size, left:left + image_size]
    else:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = x + _NOISE * torch.randn(x.shape, generator=gen)
    return (x.clamp(0, 1) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


class _PatchEmbedding(torch.nn.Module):
    """A ViT's patch convolution (kernel = stride, no padding) as unfold + matmul: the same numbers, and a gradient
    with respect to the input at a fraction of the CPU cost of ``convolution_backward``."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        if conv.kernel_size != conv.stride or conv.padding != (0, 0) or conv.groups != 1:
            raise ValueError("not a patch embedding: kernel size must equal stride, no padding, one group")
        self.weight, self.bias, self.p = conv.weight, conv.bias, conv.kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.p, stride=self.p)  # (N, C*ph*pw, L)
        y = cols.transpose(1, 2) @ self.weight.flatten(1).T  # (N, L, out): one matmul, not N small ones
        if self.bias is not None:
            y = y + self.bias
        return y.transpose(1, 2).reshape(n, -1, h // self.p[0], w // self.p[1])


def class_prototypes(model: torch.nn.Module, heads: Mapping[str, Sequence[torch.Tensor]], *, image_size: int,
                     mean: Sequence[float], std: Sequence[float], size: int = 8, steps: int = 200,
                     batch: int = 1024, seed: int = 0) -> dict[str, np.ndarray]:
    """Per domain, a (C, size, size, 3) float array in [0, 1]: row c is a picture that ``model``'s image tower
    sends to class c under every head of ``heads[domain]`` (each (C, D), logit scale included). Grey domains
    (:data:`GREY_DOMAINS`) get equal channels."""
    gen = torch.Generator().manual_seed(seed)
    mean_t, std_t = torch.tensor(mean), torch.tensor(std)
    model = copy.deepcopy(model).eval().float()
    for p in model.parameters():
        p.requires_grad_(False)
    if isinstance(getattr(model.visual, "conv1", None), torch.nn.Conv2d):
        model.visual.conv1 = _PatchEmbedding(model.visual.conv1)
    # every domain's classes in one search: one forward pass a step over a share of all prototypes
    domains = [(d, [h.detach().float() for h in hs]) for d, hs in heads.items()]
    sizes = [hs[0].shape[0] for _, hs in domains]
    offsets = np.cumsum([0, *sizes])
    grey = torch.tensor(np.repeat([d in GREY_DOMAINS for d, _ in domains], sizes))
    z = (0.5 * torch.randn((int(offsets[-1]), 3, size, size), generator=gen)).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1)
    share = min(1.0, batch / int(offsets[-1]))
    for _ in range(steps):
        x = torch.sigmoid(z)
        x = torch.where(grey.view(-1, 1, 1, 1), x.mean(1, keepdim=True).expand_as(x), x)
        pick = torch.rand(len(x), generator=gen) < share
        f = F.normalize(model.encode_image(_to_model_input(x[pick], image_size, mean_t, std_t, gen)), dim=-1)
        loss, rows = 0.0, pick.nonzero().flatten()
        for (_, hs), lo, hi in zip(domains, offsets[:-1], offsets[1:]):
            sel = (rows >= lo) & (rows < hi)
            if sel.any():
                loss = loss + sum(F.cross_entropy(f[sel] @ h.T, rows[sel] - int(lo), reduction="sum") for h in hs)
        opt.zero_grad()
        (loss / len(rows)).backward()
        opt.step()
    x = torch.sigmoid(z).detach()
    x = torch.where(grey.view(-1, 1, 1, 1), x.mean(1, keepdim=True).expand_as(x), x)
    x = x.permute(0, 2, 3, 1).numpy()
    return {d: x[lo:hi].copy() for (d, _), lo, hi in zip(domains, offsets[:-1], offsets[1:])}


@torch.no_grad()
def accuracy(model: torch.nn.Module, head: torch.Tensor, prototypes: np.ndarray, *, image_size: int,
             mean: Sequence[float], std: Sequence[float], seed: int = 1) -> float:
    """Top-1 accuracy of ``model`` + ``head`` on one noisy rendering of every prototype (a check of the search)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(prototypes).permute(0, 3, 1, 2).float()
    f = F.normalize(model.eval().encode_image(_to_model_input(x, image_size, torch.tensor(mean), torch.tensor(std),
                                                              gen, rendered=True)), dim=-1)
    return float(((f @ head.T.float()).argmax(1) == torch.arange(len(x))).float().mean())


def render(prototype: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 image of a class: its prototype resized to ``size`` (h, w) plus a little noise."""
    from PIL import Image

    img = Image.fromarray(np.clip(np.rint(prototype * 255), 0, 255).astype(np.uint8))
    arr = np.asarray(img.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float64)
    return np.clip(np.rint(arr + rng.normal(0.0, 4.0, arr.shape)), 0, 255).astype(np.uint8)


def suite_prototypes(config: Mapping, architecture: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The prototypes of every class a config's datasets hold: ImageNet's 1000 (the robust sets are ImageNet
    classes or subsets of them) under the replicas' common zero-shot head, and each multi-task dataset's under
    its zero-shot head from the same text tower (its own prompt templates), as the workflow builds them."""
    from ..inputs import multitask_datasets as mt
    from ..inputs.models import zeroshot_head
    from .models import theta0_clip, theta0_imagenet_head

    model = theta0_clip(architecture, seed)
    heads = {"imagenet": [theta0_imagenet_head(architecture, seed)]}
    for task in sorted({b for b in config["paper"]["datasets"].values() if b in mt.MULTITASK_BUILDERS}):
        info = mt.task_info(task)
        heads[task] = [zeroshot_head(model, architecture, info.classnames, info.templates)]
    cfg = model.visual.preprocess_cfg
    return class_prototypes(model, heads, image_size=cfg["size"][0], mean=cfg["mean"], std=cfg["std"], seed=seed)
