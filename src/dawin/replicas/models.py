"""Miniature replicas of every checkpoint source of the paper suite, written as the upstream code writes them.

:func:`write_checkpoint_replicas` walks ``paper.checkpoints`` (``paper.checkpoint_series`` expanded into
``<series>-<i>`` entries, as ``workflow/rules/common.smk`` does) and writes one replica per source, with seeded
random weights of one tiny architecture (:data:`ARCHITECTURE`, an open_clip ViT with ViT-B-32's parameter names)
that stands in for all three backbones:

- URL sources (``{url: [...]}``) at ``<site>/<host>/<path of the URL>`` (every URL of the list), for a local
  server of ``<site>`` that ``https://<host>/...`` is rewritten to;
- Google Drive and Hugging Face sources in the mirror folder at :func:`dawin.inputs.checkpoints.mirror_path`
  (``<mirror>/gdrive/<file id>``, ``<mirror>/gdrive/<folder id>/<file>``, ``<mirror>/hf/<owner>/<name>/``);
- ``{head: ...}`` sources are built by the workflow: nothing is written.

What each format's replica is, and the upstream code it follows:

``openai-clip``
    A TorchScript archive as OpenAI released CLIP (openai/CLIP ``clip/clip.py`` ``_MODELS``): the CLIP traced
    with ``forward``/``encode_image``/``encode_text``, every weight float16, OpenAI's key names (no ``attn_mask``
    buffer; ``input_resolution``, ``context_length`` and ``vocab_size`` entries, which ``build_model`` drops).
``model-soups``
    ``torch.save(model.module.state_dict())`` of model-soups' ``ModelWrapper`` (mlfoundations/model-soups
    ``finetune.py``, ``utils.py``): ``model.*`` = the OpenAI ``clip.model.CLIP`` without its text
    ``transformer`` (deleted by ``ModelWrapper``), in the CLIP's own key order, plus ``classification_head.*``
    applied to L2-normalised features; float32 (``p.data.float()``). 40 keys for the 2-layer tower (160 for B/32).
``pickled-modules`` without a head source (WiSE-FT's ``finetuned.pt``)
    ``pickle.dump`` (protocol 3, Python 3.6's default) of ``src.models.modeling.ImageClassifier``
    (mlfoundations/wise-ft ``src/models/modeling.py``, ``src/models/utils.py`` ``torch_save``): its
    ``ImageEncoder.model`` is WiSE-FT's vendored OpenAI CLIP (wise-ft ``clip/model.py``: ``clip.model.CLIP``,
    ``VisualTransformer``, ``Transformer``, ``ResidualAttentionBlock``, ``LayerNorm``, ``QuickGELU``; the
    attention's ``out_proj`` a torch 1.7.1 ``torch.nn.modules.linear._LinearWithBias``) without its text
    ``transformer``, with wise-ft ``clip/clip.py``'s preprocessing (``clip.clip._convert_to_rgb``); tensors
    pickled as torch pickles them outside ``torch.save`` (``torch.storage._load_from_bytes`` of a legacy blob).
``pickled-modules`` with a head source (task_vectors)
    ``torch.save`` of ``src.modeling.ImageEncoder`` (mlfoundations/task_vectors ``src/modeling.py``,
    ``src/utils.py``) whose ``.model`` is an open_clip 2.0.2 ``open_clip.model.CLIP`` (open_clip v2.0.2
    ``src/open_clip/model.py``: ``VisualTransformer``, ``Transformer``, ``ResidualAttentionBlock``,
    ``LayerNorm``, ``QuickGELU``) without its text ``transformer``, with v2.0.2 ``transform.py``'s torchvision
    pipelines (``open_clip.transform._convert_to_rgb``) as ``train_preprocess``/``val_preprocess``; heads are
    ``torch.save`` of ``src.modeling.ClassificationHead`` (normalize=True, bias 0) built as task_vectors
    ``src/heads.py`` builds them (the zero-shot text tower, the task's class names and templates).
``hf-clip-vision``
    transformers 4.x ``save_pretrained`` directories (``config.json`` + ``pytorch_model.bin``, a
    ``torch.save`` of the state dict): ``CLIPVisionModel`` (``vision_model.*`` keys) for FusionBench's
    ``tanganke/clip-vit-base-patch32_<task>`` and ``CLIPModel`` (text keys, ``visual_projection.weight``,
    ``text_projection.weight``, ``logit_scale``, 2021-era ``position_ids`` buffers) for
    ``openai/clip-vit-base-patch32``.

Weights: per backbone group (the entry's ``architecture``, e.g. ``ViT-B-32-quickgelu``) one zero-shot CLIP
theta0 (float16 values, as released); fine-tunes are theta0 plus a shared "ImageNet fine-tuning" direction and
a run-specific perturbation over the image tower, with a zero-shot-like ImageNet head (1000 classes, one prompt
per class through theta0's text tower) plus noise, so soups, Model Stock and WiSE-FT interpolate between
plausible neighbours; task_vectors' and FusionBench's experts are theta0 plus one direction per task, so task
vectors are meaningful. Everything is seeded and written deterministically (the same seed gives the same bytes).

Pickling upstream class paths (``src.modeling``, ``clip.model``, ``open_clip.model``, ...) needs those modules
to resolve: :func:`_upstream_modules` installs stand-in modules in ``sys.modules`` (swapping the real
``open_clip.model`` out) and a temporary ``torch.nn.modules.linear._LinearWithBias`` only while pickling, and
restores everything afterwards. Not thread-safe while a write runs.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import json
import math
import os
import pickle
import re
import shutil
import sys
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from dawin.inputs.openclip import open_clip  # noqa: I001 - first: open_clip without timm and transformers (see there)
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn
from torchvision.transforms import (CenterCrop, Compose, InterpolationMode, Normalize, RandomResizedCrop, Resize,
                                    ToTensor)

from ..inputs import models  # registers the architectures of src/dawin/model_configs
from ..inputs.models import zeroshot_head
from ..inputs.checkpoints import digest, mirror_path

ARCHITECTURE = "dawin-mini-vit-quickgelu"
REPLICA_FORMATS = ("openai-clip", "model-soups", "pickled-modules", "hf-clip-vision")

# transformers 4.x version strings written into config.json (the real repos' exact versions are not known here;
# openai/clip-vit-base-patch32 was converted with a 4.16 development build)
HF_VISION_TRANSFORMERS_VERSION = "4.40.0"
HF_CLIP_TRANSFORMERS_VERSION = "4.16.0.dev0"

# noise scales, relative to each tensor's RMS: the shared fine-tuning direction, a run's own perturbation,
# a task direction (task_vectors / FusionBench experts), a backbone group's image tower
_DIRECTION, _RUN_NOISE, _TASK, _GROUP = 0.05, 0.03, 0.10, 0.005
_HEAD_DIRECTION, _HEAD_NOISE, _BIAS = 0.10, 0.05, 0.02


class ReplicaError(ValueError):
    """A checkpoint source the replica writer does not know how to write (format, role or source kind)."""


# ------------------------------------------------------------------------------------------------- seeds


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from ``seed`` and labels (stable across runs and machines, unlike ``hash``)."""
    payload = json.dumps([seed, *map(str, parts)]).encode()
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "little") & (2**63 - 1)


def _generator(seed: int, *parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *parts))


def _rms(t: torch.Tensor) -> float:
    return float(t.float().pow(2).mean().sqrt()) or 1.0


def _noise(ref: torch.Tensor, scale: float, gen: torch.Generator) -> torch.Tensor:
    """``scale`` * RMS(ref) * N(0, 1) of ref's shape (float32)."""
    return scale * _rms(ref) * torch.randn(ref.shape, generator=gen)


# --------------------------------------------------------------------- OpenAI clip.model (WiSE-FT's copy)
# mlfoundations/wise-ft clip/model.py (OpenAI's CLIP before openai/CLIP renamed VisualTransformer ->
# VisionTransformer in July 2021); model-soups' clip==1.0 has the same modules and key order.


class OAILayerNorm(nn.LayerNorm):
    """wise-ft ``clip/model.py`` ``LayerNorm``: torch's LayerNorm computed in float32."""

    __module__, __qualname__ = "clip.model", "LayerNorm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig_type = x.dtype
        ret = super().forward(x.type(torch.float32))
        return ret.type(orig_type)


class OAIQuickGELU(nn.Module):
    """wise-ft ``clip/model.py`` ``QuickGELU``."""

    __module__, __qualname__ = "clip.model", "QuickGELU"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class OAIResidualAttentionBlock(nn.Module):
    """wise-ft ``clip/model.py`` ``ResidualAttentionBlock`` (attn, ln_1, mlp, ln_2; ``attn_mask`` attribute)."""

    __module__, __qualname__ = "clip.model", "ResidualAttentionBlock"

    def __init__(self, d_model: int, n_head: int, attn_mask: torch.Tensor | None = None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = OAILayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", OAIQuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = OAILayerNorm(d_model)
        self.attn_mask = attn_mask

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.attn_mask.to(dtype=x.dtype, device=x.device) if self.attn_mask is not None else None
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class OAITransformer(nn.Module):
    """wise-ft ``clip/model.py`` ``Transformer`` (``resblocks`` an ``nn.Sequential``)."""

    __module__, __qualname__ = "clip.model", "Transformer"

    def __init__(self, width: int, layers: int, heads: int, attn_mask: torch.Tensor | None = None):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(*[OAIResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class OAIVisualTransformer(nn.Module):
    """wise-ft ``clip/model.py`` ``VisualTransformer`` (with the ``patch_size``/``width``/... attributes it adds)."""

    __module__, __qualname__ = "clip.model", "VisualTransformer"

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.patch_size = patch_size
        self.width = width
        self.layers = layers
        self.heads = heads
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = OAILayerNorm(width)
        self.transformer = OAITransformer(width, layers, heads)
        self.ln_post = OAILayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_post(x[:, 0, :])
        return x @ self.proj if self.proj is not None else x


class OAICLIP(nn.Module):
    """wise-ft ``clip/model.py`` ``CLIP`` (ViT towers only; built by ``build_model`` from OpenAI's state dict)."""

    __module__, __qualname__ = "clip.model", "CLIP"

    def __init__(self, embed_dim: int, image_resolution: int, vision_layers: int, vision_width: int,
                 vision_patch_size: int, context_length: int, vocab_size: int, transformer_width: int,
                 transformer_heads: int, transformer_layers: int):
        super().__init__()
        self.context_length = context_length
        self.visual = OAIVisualTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                           vision_width // 64, embed_dim)
        self.transformer = OAITransformer(transformer_width, transformer_layers, transformer_heads,
                                          attn_mask=self.build_attention_mask())
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, transformer_width))
        self.ln_final = OAILayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def build_attention_mask(self) -> torch.Tensor:
        mask = torch.empty(self.context_length, self.context_length)
        mask.fill_(float("-inf"))
        return mask.triu_(1)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image.type(self.dtype))


class LinearWithBias(nn.Linear):
    """torch 1.7.1 ``torch.nn.modules.linear._LinearWithBias``: the ``out_proj`` of its ``MultiheadAttention``."""

    __module__, __qualname__ = "torch.nn.modules.linear", "_LinearWithBias"

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=True)


def clip_convert_to_rgb(image: Any) -> Any:
    """wise-ft ``clip/clip.py`` ``_convert_to_rgb``."""
    return image.convert("RGB")


clip_convert_to_rgb.__module__, clip_convert_to_rgb.__qualname__ = "clip.clip", "_convert_to_rgb"
clip_convert_to_rgb.__name__ = "_convert_to_rgb"

# ------------------------------------------------------------------------- WiSE-FT src.models.modeling


class _ImageEncoder(nn.Module):
    """The ``ImageEncoder`` that wise-ft ``src/models/modeling.py`` and task_vectors ``src/modeling.py`` both
    define (a CLIP plus its preprocessing, text tower deleted unless ``keep_lang``); each upstream pickles it
    under its own module path: see :data:`WiseImageEncoder` and :data:`TVImageEncoder`."""

    def __init__(self, model: nn.Module, train_preprocess: Callable, val_preprocess: Callable, keep_lang: bool = False):
        super().__init__()
        self.model, self.train_preprocess, self.val_preprocess = model, train_preprocess, val_preprocess
        self.cache_dir = None
        if not keep_lang and hasattr(self.model, "transformer"):
            delattr(self.model, "transformer")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


class _ClassificationHead(nn.Linear):
    """The ``ClassificationHead`` both upstreams define (normalises its input when ``normalize``)."""

    def __init__(self, normalize: bool, weights: torch.Tensor, biases: torch.Tensor | None = None):
        output_size, input_size = weights.shape
        super().__init__(input_size, output_size)
        self.normalize = normalize
        self.weight = nn.Parameter(weights.clone())
        self.bias = nn.Parameter(biases.clone() if biases is not None else torch.zeros_like(self.bias))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            inputs = inputs / inputs.norm(dim=-1, keepdim=True)
        return super().forward(inputs)


def _upstream_class(base: type, module: str) -> type:
    """``base`` under the module path an upstream pickles it with (its own class name kept)."""
    name = base.__name__.lstrip("_")
    return type(name, (base,), {"__module__": module, "__qualname__": name, "__doc__": f"{module}.{name}"})


WiseImageEncoder = _upstream_class(_ImageEncoder, "src.models.modeling")
WiseClassificationHead = _upstream_class(_ClassificationHead, "src.models.modeling")
TVImageEncoder = _upstream_class(_ImageEncoder, "src.modeling")
TVClassificationHead = _upstream_class(_ClassificationHead, "src.modeling")


class WiseImageClassifier(nn.Module):
    """wise-ft ``src/models/modeling.py`` ``ImageClassifier``."""

    __module__, __qualname__ = "src.models.modeling", "ImageClassifier"

    def __init__(self, image_encoder: WiseImageEncoder, classification_head: WiseClassificationHead,
                 process_images: bool = True):
        super().__init__()
        self.image_encoder = image_encoder
        self.classification_head = classification_head
        self.process_images = process_images
        if self.image_encoder is not None:
            self.train_preprocess = self.image_encoder.train_preprocess
            self.val_preprocess = self.image_encoder.val_preprocess

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.process_images:
            inputs = self.image_encoder(inputs)
        return self.classification_head(inputs)


def wiseft_transform(n_px: int, is_train: bool) -> Compose:
    """wise-ft ``clip/clip.py`` ``_transform`` under torchvision 0.8.2 (interpolation is PIL's int BICUBIC, 3)."""
    normalize = Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
    if is_train:
        first = [RandomResizedCrop(n_px, scale=(0.9, 1.0))]
    else:
        first = [Resize(n_px), CenterCrop(n_px)]
    for t in first:
        if hasattr(t, "interpolation"):
            t.interpolation = 3  # Image.BICUBIC under Pillow 8 (a plain int, not an enum)
    return Compose([*first, clip_convert_to_rgb, ToTensor(), normalize])


# ------------------------------------------------------------------------------------- open_clip 2.0.2
# mlfoundations/open_clip v2.0.2 src/open_clip/model.py


class OCLayerNorm(nn.LayerNorm):
    """open_clip 2.0.2 ``LayerNorm``."""

    __module__, __qualname__ = "open_clip.model", "LayerNorm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig_type = x.dtype
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.to(orig_type)


class OCQuickGELU(nn.Module):
    """open_clip 2.0.2 ``QuickGELU``."""

    __module__, __qualname__ = "open_clip.model", "QuickGELU"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class OCResidualAttentionBlock(nn.Module):
    """open_clip 2.0.2 ``ResidualAttentionBlock`` (ln_1, attn, ln_attn, ln_2, mlp with c_fc/ln/gelu/c_proj)."""

    __module__, __qualname__ = "open_clip.model", "ResidualAttentionBlock"

    def __init__(self, d_model: int, n_head: int, mlp_ratio: float = 4.0, act_layer: Callable = nn.GELU):
        super().__init__()
        self.ln_1 = OCLayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_attn = nn.Identity()
        self.ln_2 = OCLayerNorm(d_model)
        mlp_width = int(d_model * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, mlp_width)),
            ("ln", nn.Identity()),
            ("gelu", act_layer()),
            ("c_proj", nn.Linear(mlp_width, d_model)),
        ]))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.ln_attn(self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0])
        return x + self.mlp(self.ln_2(x))


class OCTransformer(nn.Module):
    """open_clip 2.0.2 ``Transformer`` (``resblocks`` an ``nn.ModuleList``)."""

    __module__, __qualname__ = "open_clip.model", "Transformer"

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0, act_layer: Callable = nn.GELU):
        super().__init__()
        self.width = width
        self.layers = layers
        self.grad_checkpointing = False
        self.resblocks = nn.ModuleList([OCResidualAttentionBlock(width, heads, mlp_ratio, act_layer=act_layer)
                                        for _ in range(layers)])

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for r in self.resblocks:
            x = r(x, attn_mask=attn_mask)
        return x


class OCVisualTransformer(nn.Module):
    """open_clip 2.0.2 ``VisualTransformer``."""

    __module__, __qualname__ = "open_clip.model", "VisualTransformer"

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, mlp_ratio: float,
                 output_dim: int, act_layer: Callable = nn.GELU):
        super().__init__()
        self.image_size = (image_size, image_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size[0] * self.grid_size[1] + 1, width))
        self.ln_pre = OCLayerNorm(width)
        self.transformer = OCTransformer(width, layers, heads, mlp_ratio, act_layer=act_layer)
        self.ln_post = OCLayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_post(x[:, 0, :])
        return x @ self.proj if self.proj is not None else x


class OCCLIP(nn.Module):
    """open_clip 2.0.2 ``CLIP`` (ViT towers; ``attn_mask`` a non-persistent buffer)."""

    __module__, __qualname__ = "open_clip.model", "CLIP"

    def __init__(self, embed_dim: int, vision_cfg: Mapping, text_cfg: Mapping, quick_gelu: bool = False):
        super().__init__()
        self.context_length = text_cfg["context_length"]
        act_layer = OCQuickGELU if quick_gelu else nn.GELU
        self.visual = OCVisualTransformer(
            image_size=vision_cfg["image_size"], patch_size=vision_cfg["patch_size"], width=vision_cfg["width"],
            layers=vision_cfg["layers"], heads=vision_cfg["width"] // vision_cfg.get("head_width", 64),
            mlp_ratio=vision_cfg.get("mlp_ratio", 4.0), output_dim=embed_dim, act_layer=act_layer)
        self.transformer = OCTransformer(width=text_cfg["width"], layers=text_cfg["layers"], heads=text_cfg["heads"],
                                         act_layer=act_layer)
        self.vocab_size = text_cfg["vocab_size"]
        self.token_embedding = nn.Embedding(text_cfg["vocab_size"], text_cfg["width"])
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, text_cfg["width"]))
        self.ln_final = OCLayerNorm(text_cfg["width"])
        self.text_projection = nn.Parameter(torch.empty(text_cfg["width"], embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        mask = torch.empty(self.context_length, self.context_length).fill_(float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)


def open_clip_202_transform(image_size: int, is_train: bool) -> Compose:
    """open_clip v2.0.2 ``transform.py`` ``image_transform`` (OpenAI mean/std, bicubic)."""
    normalize = Normalize(mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
    if is_train:
        first = [RandomResizedCrop(image_size, scale=(0.9, 1.0), interpolation=InterpolationMode.BICUBIC)]
    else:
        first = [Resize(image_size, interpolation=InterpolationMode.BICUBIC), CenterCrop(image_size)]
    return Compose([*first, open_clip.transform._convert_to_rgb, ToTensor(), normalize])


# ----------------------------------------------------------------------------- pickling as the upstream

# the replicas pickled under upstream names (their __module__ / __qualname__), and the modules that must resolve
# while pickling: all created empty (src.*, clip.*) or swapped in for the real one (open_clip.model)
_UPSTREAM_OBJECTS: tuple[Any, ...] = (
    OAILayerNorm, OAIQuickGELU, OAIResidualAttentionBlock, OAITransformer, OAIVisualTransformer, OAICLIP,
    clip_convert_to_rgb, WiseImageEncoder, WiseClassificationHead, WiseImageClassifier,
    OCLayerNorm, OCQuickGELU, OCResidualAttentionBlock, OCTransformer, OCVisualTransformer, OCCLIP,
    TVImageEncoder, TVClassificationHead,
)
_STAND_IN_MODULES = ("src", "src.models", "src.models.modeling", "src.modeling", "clip", "clip.model", "clip.clip",
                     "open_clip.model")


@contextlib.contextmanager
def _upstream_modules() -> Iterator[None]:
    """While active, ``clip.model.CLIP``, ``src.modeling.ImageEncoder``, ``open_clip.model.VisualTransformer``, ...
    resolve to this module's replicas (stand-in modules in ``sys.modules``; the real ``open_clip.model`` is swapped
    out) and ``torch.nn.modules.linear._LinearWithBias`` exists, so pickle writes the upstream class paths."""
    saved = {name: sys.modules.get(name) for name in _STAND_IN_MODULES}
    linear = sys.modules["torch.nn.modules.linear"]
    had_lwb = hasattr(linear, "_LinearWithBias")
    try:
        fakes = {name: types.ModuleType(name) for name in _STAND_IN_MODULES}
        for name, mod in fakes.items():
            parent, _, child = name.rpartition(".")
            if parent in fakes:
                fakes[parent].__path__ = []
                setattr(fakes[parent], child, mod)
        for obj in _UPSTREAM_OBJECTS:
            setattr(fakes[obj.__module__], obj.__qualname__, obj)
        sys.modules.update(fakes)
        if not had_lwb:
            linear._LinearWithBias = LinearWithBias
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
        if not had_lwb and getattr(linear, "_LinearWithBias", None) is LinearWithBias:
            del linear._LinearWithBias


def _legacy_storage_blob(storage: torch.TypedStorage) -> bytes:
    """``torch.save(storage, _use_new_zipfile_serialization=False)`` as ``Storage.__reduce__`` writes it, with the
    storage key (a memory address upstream) replaced by zeros of the same length so the bytes are deterministic."""
    buf = io.BytesIO()
    torch.save(storage, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    for cdata in (storage._cdata, storage._untyped_storage._cdata):
        key = str(cdata).encode()
        pickled = b"X" + len(key).to_bytes(4, "little") + key  # BINUNICODE, as the legacy writer pickles the key
        if data.count(pickled) == 2:  # once in the persistent id, once in the key list
            return data.replace(pickled, b"X" + len(key).to_bytes(4, "little") + b"0" * len(key))
    raise ReplicaError("cannot find the storage key in torch's legacy storage serialisation; torch changed its format")


class _Torch17Pickler(pickle.Pickler):
    """``pickle.Pickler`` that writes storages as torch's ``Storage.__reduce__`` (``_load_from_bytes`` of a legacy
    ``torch.save`` blob), with deterministic keys (see :func:`_legacy_storage_blob`)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.TypedStorage):
            return torch.storage._load_from_bytes, (_legacy_storage_blob(obj),)
        return NotImplemented


def pickle_dump(obj: Any, path: str | Path) -> None:
    """wise-ft ``src/models/utils.py`` ``torch_save``: ``pickle.dump(obj.cpu(), f)`` (Python 3.6: protocol 3)."""
    with _atomic(path) as tmp, open(tmp, "wb") as f, _upstream_modules():
        _Torch17Pickler(f, protocol=3).dump(obj)


def torch_save_module(obj: Any, path: str | Path) -> None:
    """task_vectors ``src/utils.py`` ``torch_save``: ``torch.save(model.cpu(), path)`` of an upstream module."""
    with _atomic(path) as tmp, _upstream_modules():
        torch.save(obj, tmp)


@contextlib.contextmanager
def _atomic(path: str | Path) -> Iterator[Path]:
    """A temporary path with ``path``'s file name (torch names its archive after it), moved into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = path.parent / f".{path.name}.tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    try:
        yield tmp_dir / path.name
        os.replace(tmp_dir / path.name, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------- backbones


@dataclass
class Backbone:
    """One zero-shot CLIP (theta0) of the replica architecture and the fine-tunes made from it.

    ``state``: open_clip / OpenAI CLIP key space, float32 tensors holding float16 values (OpenAI released float16
    weights; every fine-tune started from them cast to float32). ``imagenet_head``: the zero-shot (1000, D)
    ImageNet head of the common text tower (all 80 templates, :func:`_theta0`).
    """

    group: str
    architecture: str
    seed: int
    state: dict[str, torch.Tensor]
    imagenet_head: torch.Tensor
    _directions: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    _text_model: nn.Module | None = field(default=None, repr=False)

    @property
    def cfg(self) -> dict:
        return open_clip.get_model_config(self.architecture)

    @property
    def visual_keys(self) -> list[str]:
        return [k for k in self.state if k.startswith("visual.")]

    def clip(self) -> nn.Module:
        """theta0 as an open_clip CLIP (float32)."""
        model = _create(self.architecture, self.seed)
        model.load_state_dict(self.state)
        return model.eval()

    def zeroshot_head(self, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """theta0's zero-shot head for these classes and prompt templates (:func:`dawin.inputs.models.zeroshot_head`)."""
        if self._text_model is None:
            self._text_model = self.clip()
        return zeroshot_head(self._text_model, self.architecture, classnames, templates)

    def direction(self, name: str, scale: float) -> dict[str, torch.Tensor]:
        """A seeded direction over the image tower (one per ``name``: shared by every run that uses it)."""
        key = f"{name}@{scale}"
        if key not in self._directions:
            gen = _generator(self.seed, self.group, "direction", name)
            self._directions[key] = {k: _noise(self.state[k], scale, gen) for k in self.visual_keys}
        return self._directions[key]

    def finetuned_visual(self, direction: str, run: str, strength: float = 1.0,
                         direction_scale: float = _DIRECTION) -> dict[str, torch.Tensor]:
        """theta0 + strength * (direction + run noise) over the image tower (``visual.*`` keys)."""
        d = self.direction(direction, direction_scale)
        gen = _generator(self.seed, self.group, "run", run)
        return {k: self.state[k] + strength * (d[k] + _noise(self.state[k], _RUN_NOISE, gen)) for k in self.visual_keys}

    def finetuned_head(self, run: str, strength: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """ImageNet head of a fine-tune: the zero-shot-like head + strength * (shared shift + run noise), small bias."""
        shift = _noise(self.imagenet_head, _HEAD_DIRECTION, _generator(self.seed, self.group, "head-direction"))
        gen = _generator(self.seed, self.group, "head", run)
        weight = self.imagenet_head + strength * (shift + _noise(self.imagenet_head, _HEAD_NOISE, gen))
        bias = strength * _BIAS * torch.randn(weight.shape[0], generator=gen)
        return weight, bias


def _create(architecture: str, seed: int) -> nn.Module:
    """``open_clip.create_model`` under a seeded, forked RNG (the caller's global RNG state is left alone)."""
    if architecture not in open_clip.list_models():
        raise ReplicaError(f"unknown architecture {architecture!r} (dawin.inputs.models registers src/dawin/model_configs)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed % (2**63))
        return open_clip.create_model(architecture)


def _check_architecture(architecture: str) -> dict:
    """The open_clip config of a replica architecture: a QuickGELU ViT whose head counts OpenAI's loaders infer
    (``build_model_from_openai_state_dict``: vision heads width // 64, text heads width // 64)."""
    if architecture not in open_clip.list_models():
        raise ReplicaError(f"unknown architecture {architecture!r} (dawin.inputs.models registers src/dawin/model_configs)")
    cfg = open_clip.get_model_config(architecture)
    vc, tc = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if not isinstance(vc.get("layers"), int) or "timm_model_name" in vc or not cfg.get("quick_gelu"):
        raise ReplicaError(f"{architecture}: a replica architecture must be a QuickGELU open_clip ViT")
    if vc.get("head_width", 64) != 64 or tc.get("heads") != tc.get("width", 0) // 64:
        raise ReplicaError(f"{architecture}: OpenAI's loaders infer 64-wide attention heads; set head_width 64 and "
                           "text heads = width // 64")
    return cfg


@functools.lru_cache(maxsize=4)
def _theta0(architecture: str, seed: int) -> dict[str, torch.Tensor]:
    """The state of the replicas' common pre-trained CLIP: seeded open_clip init, every tensor perturbed so it
    matters (LayerNorms and biases are 1/0 at init), ``logit_scale`` = ln 100 as in trained CLIP, float16 values.
    Cached: every backbone group shares its text tower."""
    model = _create(architecture, derive_seed(seed, "theta0"))
    gen = _generator(derive_seed(seed, "theta0"), "theta0")
    state = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            state[k] = v.clone()
            continue
        if k == "logit_scale":
            v = torch.full_like(v, math.log(100.0))
        else:
            v = v + 0.02 * torch.randn(v.shape, generator=gen)
        state[k] = v.detach().half().float()
    return state


@functools.lru_cache(maxsize=4)
def theta0_imagenet_head(architecture: str = ARCHITECTURE, seed: int = 0) -> torch.Tensor:
    """The common CLIP's zero-shot ImageNet head with all 80 templates: the workflow's own head, and the fine-tunes'
    linear-probe initialisation (about 20 s: 80,000 prompts)."""
    from ..inputs.paper_datasets import load_class_lists

    lists = load_class_lists()
    return zeroshot_head(theta0_clip(architecture, seed), architecture, list(lists.imagenet_classnames),
                            list(lists.templates))


def make_backbone(group: str, *, architecture: str = ARCHITECTURE, seed: int = 0) -> Backbone:
    """theta0 of one backbone group (e.g. ``ViT-B-32-quickgelu``): the common replica CLIP (:func:`_theta0`) with
    a small group-specific change of its image tower (0.5 % of each tensor's RMS, float16 values), so that the
    class images of :mod:`dawin.replicas.prototypes` (found on the common one) mean the same to every group."""
    _check_architecture(architecture)
    base, head = _theta0(architecture, seed), theta0_imagenet_head(architecture, seed)
    s = derive_seed(seed, "backbone", group)
    gen = _generator(s, "group")
    state = {k: (v + _noise(v, _GROUP, gen)).half().float() if k.startswith("visual.") and v.is_floating_point()
             else v.clone() for k, v in base.items()}
    return Backbone(group, architecture, s, state, head.clone())


def theta0_clip(architecture: str = ARCHITECTURE, seed: int = 0) -> nn.Module:
    """The common replica CLIP of :func:`_theta0` as an open_clip model (float32, eval)."""
    model = _create(architecture, derive_seed(seed, "theta0"))
    model.load_state_dict(_theta0(architecture, seed))
    return model.eval()


# ---------------------------------------------------------------------------------------- OpenAI release


_TRACED: dict[str, torch.jit.ScriptModule] = {}


def _traced_release(architecture: str) -> torch.jit.ScriptModule:
    """The architecture's CLIP traced as OpenAI released it (float16, ``forward``/``encode_image``/``encode_text``),
    once per process: tracing again would mangle the TorchScript type names (``___torch_mangle_<n>``, a per-process
    counter), so every release of one process shares this module's code and differs only in its weights."""
    if architecture not in _TRACED:
        cfg = _check_architecture(architecture)
        model = _create(architecture, 0).eval().half()
        mask = model._buffers.pop("attn_mask")
        for name in ("context_length", "vocab_size"):
            model.__dict__.pop(name, None)
        model.attn_mask = mask.half()  # a constant of the traced text tower, not a state-dict entry (as OpenAI's)
        size = cfg["vision_cfg"]["image_size"]
        for name, value in (("input_resolution", size), ("context_length", cfg["text_cfg"]["context_length"]),
                            ("vocab_size", cfg["text_cfg"]["vocab_size"])):
            model.register_buffer(name, torch.tensor(value))
        image = torch.ones(1, 3, size, size, dtype=torch.float16)
        text = torch.zeros(1, cfg["text_cfg"]["context_length"], dtype=torch.long)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _TRACED[architecture] = torch.jit.trace_module(
                model, {"forward": (image, text), "encode_image": (image,), "encode_text": (text,)}, check_trace=False)
    return _TRACED[architecture]


@torch.no_grad()
def write_openai_release(backbone: Backbone, path: str | Path) -> Path:
    """OpenAI's CLIP release: a TorchScript archive of the traced CLIP holding theta0 in float16 (module docstring).

    Bytes are deterministic for one process history (see :func:`_traced_release`): the same config written by a
    fresh process gives the same files."""
    traced = _traced_release(backbone.architecture)
    own = traced.state_dict()
    for k, v in backbone.state.items():
        own[k].copy_(v)
    with _atomic(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, str(tmp))
    return Path(path)


# ------------------------------------------------------------------------------------------ model-soups


@functools.lru_cache(maxsize=None)
def openai_clip_keys(architecture: str) -> tuple[str, ...]:
    """The state-dict keys of OpenAI's ``clip.model.CLIP`` in its own order, text ``transformer`` deleted (what
    model-soups' ``ModelWrapper`` holds as ``model``)."""
    cfg = _check_architecture(architecture)
    vc, tc = cfg["vision_cfg"], cfg["text_cfg"]
    with torch.device("meta"):
        clip = OAICLIP(cfg["embed_dim"], vc["image_size"], vc["layers"], vc["width"], vc["patch_size"],
                       tc["context_length"], tc["vocab_size"], tc["width"], tc["heads"], tc["layers"])
    del clip.transformer
    return tuple(clip.state_dict())


def model_soups_state(backbone: Backbone, visual: Mapping[str, torch.Tensor], head_weight: torch.Tensor,
                      head_bias: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
    """``ModelWrapper.state_dict()`` (mlfoundations/model-soups ``utils.py``): ``model.<CLIP key>`` without the text
    transformer, then ``classification_head.{weight,bias}``; float32."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k in openai_clip_keys(backbone.architecture):
        out[f"model.{k}"] = (visual[k] if k in visual else backbone.state[k]).float().contiguous()
    out["classification_head.weight"] = head_weight.float().contiguous()
    out["classification_head.bias"] = head_bias.float().contiguous()
    return out


def write_model_soups(state: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """model-soups ``finetune.py``: ``torch.save(model.module.state_dict(), model_path)``."""
    with _atomic(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def soups_run_state(backbone: Backbone, run: int, series: str) -> OrderedDict[str, torch.Tensor]:
    """Run ``run`` of a model-soups series: run 0 is the LP initialisation (model-soups ``hparam_info.json``:
    theta0's tower with a linear-probe head); the others are fine-tunes of varying strength."""
    gen = _generator(backbone.seed, series, run, "strength")
    if run == 0:
        return model_soups_state(backbone, {}, *backbone.finetuned_head(f"{series}/lp", strength=0.5))
    strength = 0.5 + float(torch.rand((), generator=gen))
    tag = f"{series}/{run}"
    return model_soups_state(backbone, backbone.finetuned_visual("imagenet", tag, strength),
                             *backbone.finetuned_head(tag, strength))


def finetune_state(backbone: Backbone, tag: str) -> OrderedDict[str, torch.Tensor]:
    """A single ImageNet fine-tune in model-soups format (full strength)."""
    return model_soups_state(backbone, backbone.finetuned_visual("imagenet", tag), *backbone.finetuned_head(tag))


def zeroshot_soups_state(backbone: Backbone) -> OrderedDict[str, torch.Tensor]:
    """theta0 with its zero-shot-like ImageNet head, in model-soups format."""
    return model_soups_state(backbone, {}, backbone.imagenet_head, torch.zeros(backbone.imagenet_head.shape[0]))


# --------------------------------------------------------------------------------------------- WiSE-FT


def _with_visual(backbone: Backbone, visual: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (visual[k] if k in visual else v).float().clone() for k, v in backbone.state.items()}


def wiseft_classifier(backbone: Backbone, visual: Mapping[str, torch.Tensor], head_weight: torch.Tensor,
                      head_bias: torch.Tensor) -> WiseImageClassifier:
    """WiSE-FT's fine-tuned ``ImageClassifier`` (wise-ft ``src/models/finetune.py``: ``model.module`` after training,
    ``process_images=True``), its CLIP's attention ``out_proj`` torch 1.7.1's ``_LinearWithBias``."""
    cfg = backbone.cfg
    vc, tc = cfg["vision_cfg"], cfg["text_cfg"]
    clip = OAICLIP(cfg["embed_dim"], vc["image_size"], vc["layers"], vc["width"], vc["patch_size"],
                   tc["context_length"], tc["vocab_size"], tc["width"], tc["heads"], tc["layers"])
    for block in [*clip.visual.transformer.resblocks, *clip.transformer.resblocks]:
        old = block.attn.out_proj
        block.attn.out_proj = LinearWithBias(old.in_features, old.out_features)
    clip.load_state_dict(_with_visual(backbone, visual))
    n_px = clip.visual.input_resolution
    encoder = WiseImageEncoder(clip, wiseft_transform(n_px, True), wiseft_transform(n_px, False), keep_lang=True)
    delattr(encoder.model, "transformer")  # wise-ft src/models/zeroshot.py: after building the zero-shot head
    head = WiseClassificationHead(True, head_weight.float(), head_bias.float())
    classifier = WiseImageClassifier(encoder, head, process_images=False)
    classifier.process_images = True  # set by finetune() before training
    return classifier.train()


# ---------------------------------------------------------------------------------------- task_vectors


def task_vectors_encoder(backbone: Backbone, visual: Mapping[str, torch.Tensor], *, finetuned: bool) -> TVImageEncoder:
    """task_vectors' ``ImageEncoder`` of an open_clip 2.0.2 CLIP (``create_model_and_transforms(name,
    pretrained='openai')``: built from OpenAI's state dict in eval mode, float32), text ``transformer`` deleted.
    ``finetuned``: saved after training (train mode), else ``zeroshot.pt`` (saved before any training)."""
    cfg = backbone.cfg
    clip = OCCLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=True)
    clip.load_state_dict(_with_visual(backbone, visual))
    size = cfg["vision_cfg"]["image_size"]
    encoder = TVImageEncoder(clip.eval(), open_clip_202_transform(size, True), open_clip_202_transform(size, False))
    return encoder.train() if finetuned else encoder


def task_vectors_head(backbone: Backbone, classnames: Sequence[str], templates: Sequence[str]) -> TVClassificationHead:
    """task_vectors ``src/heads.py`` ``build_classification_head``: per class the normalised mean of the normalised
    text embeddings of its prompts, times ``logit_scale.exp()``; ``ClassificationHead(normalize=True)``, bias 0."""
    return TVClassificationHead(True, backbone.zeroshot_head(classnames, templates))


# -------------------------------------------------------------------------------------- transformers 4.x


def _qkv(prefix: str, src: Mapping[str, torch.Tensor], s: str) -> dict[str, torch.Tensor]:
    """CLIPAttention's k/v/q/out projections (transformers 4.x order) from an ``nn.MultiheadAttention``'s tensors."""
    q, k, v = (src[s + "attn.in_proj_weight"]).chunk(3, dim=0)
    qb, kb, vb = (src[s + "attn.in_proj_bias"]).chunk(3, dim=0)
    return {f"{prefix}self_attn.k_proj.weight": k, f"{prefix}self_attn.k_proj.bias": kb,
            f"{prefix}self_attn.v_proj.weight": v, f"{prefix}self_attn.v_proj.bias": vb,
            f"{prefix}self_attn.q_proj.weight": q, f"{prefix}self_attn.q_proj.bias": qb,
            f"{prefix}self_attn.out_proj.weight": src[s + "attn.out_proj.weight"],
            f"{prefix}self_attn.out_proj.bias": src[s + "attn.out_proj.bias"]}


def _hf_layers(dst: str, src: Mapping[str, torch.Tensor], src_prefix: str, n_layers: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for i in range(n_layers):
        s, d = f"{src_prefix}transformer.resblocks.{i}.", f"{dst}encoder.layers.{i}."
        out.update(_qkv(d, src, s))
        for hf, oc in (("layer_norm1", "ln_1"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
                       ("layer_norm2", "ln_2")):
            for p in ("weight", "bias"):
                out[f"{d}{hf}.{p}"] = src[f"{s}{oc}.{p}"]
    return out


def hf_vision_state(backbone: Backbone, visual: Mapping[str, torch.Tensor], *,
                    position_ids: bool = False) -> OrderedDict[str, torch.Tensor]:
    """transformers 4.x ``CLIPVisionTransformer`` keys (``vision_model.*``) of an open_clip image tower.

    ``position_ids``: the ``embeddings.position_ids`` buffer transformers saved before 4.31."""
    src = _with_visual(backbone, visual)
    cfg = backbone.cfg["vision_cfg"]
    n_pos = (cfg["image_size"] // cfg["patch_size"]) ** 2 + 1
    p = "vision_model."
    out: dict[str, torch.Tensor] = {f"{p}embeddings.class_embedding": src["visual.class_embedding"]}
    if position_ids:
        out[f"{p}embeddings.position_ids"] = torch.arange(n_pos).unsqueeze(0)
    out.update({f"{p}embeddings.patch_embedding.weight": src["visual.conv1.weight"],
                f"{p}embeddings.position_embedding.weight": src["visual.positional_embedding"],
                f"{p}pre_layrnorm.weight": src["visual.ln_pre.weight"],
                f"{p}pre_layrnorm.bias": src["visual.ln_pre.bias"]})
    out.update(_hf_layers(p, src, "visual.", cfg["layers"]))
    out.update({f"{p}post_layernorm.weight": src["visual.ln_post.weight"],
                f"{p}post_layernorm.bias": src["visual.ln_post.bias"]})
    return OrderedDict((k, v.clone().contiguous()) for k, v in out.items())


def hf_clip_state(backbone: Backbone) -> OrderedDict[str, torch.Tensor]:
    """transformers 4.x ``CLIPModel`` state dict of theta0 (as openai/clip-vit-base-patch32's ``pytorch_model.bin``:
    ``logit_scale``, ``text_model.*``, ``vision_model.*``, ``visual_projection.weight``, ``text_projection.weight``,
    with the ``position_ids`` buffers of its era)."""
    s = backbone.state
    tc = backbone.cfg["text_cfg"]
    out: dict[str, torch.Tensor] = {
        "logit_scale": s["logit_scale"],
        "text_model.embeddings.position_ids": torch.arange(tc["context_length"]).unsqueeze(0),
        "text_model.embeddings.token_embedding.weight": s["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": s["positional_embedding"]}
    out.update(_hf_layers("text_model.", s, "", tc["layers"]))
    out.update({"text_model.final_layer_norm.weight": s["ln_final.weight"],
                "text_model.final_layer_norm.bias": s["ln_final.bias"]})
    out.update(hf_vision_state(backbone, {}, position_ids=True))
    out["visual_projection.weight"] = s["visual.proj"].T
    out["text_projection.weight"] = s["text_projection"].T
    return OrderedDict((k, v.clone().contiguous()) for k, v in out.items())


def _hf_vision_config(backbone: Backbone) -> dict:
    cfg = backbone.cfg
    vc = cfg["vision_cfg"]
    return {"attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": vc["width"],
            "image_size": vc["image_size"], "initializer_factor": 1.0, "initializer_range": 0.02,
            "intermediate_size": int(vc["width"] * vc.get("mlp_ratio", 4.0)), "layer_norm_eps": 1e-05,
            "model_type": "clip_vision_model", "num_attention_heads": vc["width"] // vc.get("head_width", 64),
            "num_channels": 3, "num_hidden_layers": vc["layers"], "patch_size": vc["patch_size"],
            "projection_dim": cfg["embed_dim"]}


def hf_vision_config(backbone: Backbone, base_repo: str = "openai/clip-vit-base-patch32") -> dict:
    """config.json of a ``CLIPVisionModel`` saved by transformers 4.x (``save_pretrained``: sorted keys, the
    class's own attributes always written)."""
    return {"_name_or_path": base_repo, "architectures": ["CLIPVisionModel"], **_hf_vision_config(backbone),
            "torch_dtype": "float32", "transformers_version": HF_VISION_TRANSFORMERS_VERSION}


def hf_clip_config(backbone: Backbone, name: str = "openai/clip-vit-base-patch32") -> dict:
    """config.json of a transformers 4.x ``CLIPModel`` (openai/clip-vit-base-patch32's layout, with its legacy
    ``eos_token_id`` 2)."""
    cfg = backbone.cfg
    tc = cfg["text_cfg"]
    text = {"attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu",
            "hidden_size": tc["width"], "initializer_factor": 1.0, "initializer_range": 0.02,
            "intermediate_size": tc["width"] * 4, "layer_norm_eps": 1e-05,
            "max_position_embeddings": tc["context_length"],
            "model_type": "clip_text_model", "num_attention_heads": tc["heads"], "num_hidden_layers": tc["layers"],
            "pad_token_id": 1, "projection_dim": cfg["embed_dim"], "vocab_size": tc["vocab_size"]}
    return {"_name_or_path": name, "architectures": ["CLIPModel"], "initializer_factor": 1.0,
            "logit_scale_init_value": 2.6592, "model_type": "clip", "projection_dim": cfg["embed_dim"],
            "text_config": text, "torch_dtype": "float32", "transformers_version": HF_CLIP_TRANSFORMERS_VERSION,
            "vision_config": _hf_vision_config(backbone)}


def write_hf_dir(state: Mapping[str, torch.Tensor], config: Mapping, directory: str | Path) -> Path:
    """A transformers 4.x ``save_pretrained(safe_serialization=False)`` directory: config.json (2-space indent,
    sorted keys, trailing newline, as ``PretrainedConfig.to_json_file`` writes it) + pytorch_model.bin."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    with _atomic(directory / "pytorch_model.bin") as tmp:
        torch.save(OrderedDict(state), tmp)
    return directory


# --------------------------------------------------------------------------------------------- the suite


def expand_checkpoint_series(paper: Mapping) -> tuple[dict[str, dict], dict[str, tuple[str, int]]]:
    """``paper.checkpoints`` with ``paper.checkpoint_series`` expanded into ``<series>-<i>`` entries (as
    ``expand_checkpoint_series`` in workflow/rules/common.smk), and ``{key: (series, i)}`` of the expanded ones."""
    checkpoints = {k: copy.deepcopy(dict(v)) for k, v in paper.get("checkpoints", {}).items()}
    runs: dict[str, tuple[str, int]] = {}
    for name, series in sorted(paper.get("checkpoint_series", {}).items()):
        for i in range(series["count"]):
            key = f"{name}-{i}"
            checkpoints[key] = {"format": series["format"], "architecture": series["architecture"],
                                "sources": {"checkpoint": {"url": [series["url"].format(i=i)]}}}
            runs[key] = (name, i)
    return checkpoints, runs


def site_paths(spec: Mapping, site: str | Path) -> list[Path]:
    """Where a URL source's replica is served from: ``<site>/<host>/<path>`` for every URL of the source."""
    out = []
    for url in spec["url"]:
        parts = urlsplit(url)
        rel = PurePosixPath(parts.path.lstrip("/"))
        if not parts.netloc or not rel.name or ".." in rel.parts:
            raise ReplicaError(f"cannot place URL {url!r} under a site folder")
        out.append(Path(site, parts.netloc, *rel.parts))
    return out


def _source_paths(spec: Mapping, site: Path, mirror: Path) -> list[Path]:
    if "url" in spec:
        return site_paths(spec, site)
    if any(k in spec for k in ("gdrive_file", "gdrive_folder", "hf_repo")):
        return [mirror_path(spec, mirror)]
    raise ReplicaError(f"a checkpoint source needs url, gdrive_file, gdrive_folder, hf_repo or head, "
                       f"got {sorted(spec)}")


def _expert_tasks(config: Mapping) -> dict[str, str]:
    """``{checkpoint key: multi-task dataset}`` from ``multitask.tasks.<t>.expert`` (a converted checkpoint path)."""
    tasks = (config.get("multitask") or {}).get("tasks") or {}
    return {Path(t["expert"]).name.removesuffix(".safetensors"): name for name, t in tasks.items() if t.get("expert")}


def _task_of(key: str, experts: Mapping[str, str]) -> str:
    from ..inputs.multitask_datasets import load_task_metadata

    if key in experts:
        return experts[key]
    matches = [n for n, t in load_task_metadata().items() if key.endswith(f"-{t.task_vectors_name}")]
    if len(matches) != 1:
        raise ReplicaError(f"checkpoint {key!r}: cannot tell which multi-task dataset its head file is for; list it as "
                           "multitask.tasks.<task>.expert or name it <prefix>-<task_vectors name>")
    return matches[0]


# (format, role) -> what its replica is: a file (any URL / Drive source) or an HF directory (hf_repo sources)
_WRITTEN_AS = {("openai-clip", "checkpoint"): "file", ("model-soups", "checkpoint"): "file",
               ("pickled-modules", "encoder"): "file", ("pickled-modules", "head"): "file",
               ("hf-clip-vision", "model"): "hf-dir", ("hf-clip-vision", "projection"): "hf-dir"}


@dataclass
class _Writer:
    """Writes the replicas of one config; one :class:`Backbone` per architecture group, each file once."""

    architecture: str
    seed: int
    site: Path
    mirror: Path
    experts: dict[str, str]
    backbones: dict[str, Backbone] = field(default_factory=dict)
    written: dict[Path, str] = field(default_factory=dict)  # path -> what was written there

    def backbone(self, group: str) -> Backbone:
        if group not in self.backbones:
            self.backbones[group] = make_backbone(group, architecture=self.architecture, seed=self.seed)
        return self.backbones[group]

    def _once(self, paths: Sequence[Path], what: str, write: Callable[[Path], Any]) -> Path:
        """Write ``what`` at ``paths[0]`` (hard links / copies at the others); a path written twice must hold the
        same thing."""
        first = paths[0]
        for p in paths:
            if p in self.written and self.written[p] != what:
                raise ReplicaError(f"{p} would hold both {self.written[p]} and {what}")
        if first not in self.written:
            write(first)
        for p in paths:
            if p != first and p not in self.written:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.unlink(missing_ok=True)
                try:
                    os.link(first, p)
                except OSError:
                    shutil.copyfile(first, p)
            self.written[p] = what
        return first

    def source(self, key: str, entry: Mapping, role: str, spec: Mapping, run: tuple[str, int] | None) -> Path | None:
        fmt = entry.get("format")
        if "head" in spec:
            if role != "head":
                raise ReplicaError(f"{key}.{role}: a workflow-built head ({{head: ...}}) can only be the 'head' source")
            return None
        if fmt not in REPLICA_FORMATS:
            raise ReplicaError(f"{key}: unknown checkpoint format {fmt!r}; the replica writer knows {REPLICA_FORMATS}")
        hf = "hf_repo" in spec
        if _WRITTEN_AS.get((fmt, role)) != ("hf-dir" if hf else "file"):
            kind = next((k for k in ("url", "gdrive_file", "gdrive_folder", "hf_repo") if k in spec), "unknown")
            raise ReplicaError(f"{key}: no replica writer for format {fmt!r}, role {role!r} from a {kind} source "
                               f"(known: {sorted(_WRITTEN_AS)}, HF directories only for hf-clip-vision)")
        paths = _source_paths(spec, self.site, self.mirror)
        group = entry.get("architecture") or key
        bb = self.backbone(group)
        what = f"{fmt}/{role}/{group}/{key}"
        if fmt == "openai-clip":
            return self._once(paths, f"openai-release/{group}", lambda p: write_openai_release(bb, p))
        if fmt == "model-soups":
            if run is not None:
                state = lambda: soups_run_state(bb, run[1], run[0])  # noqa: E731
            else:
                state = lambda: finetune_state(bb, key)  # noqa: E731
            path = self._once(paths, what, lambda p: write_model_soups(state(), p))
            if "gdrive_folder" in spec:
                self._folder_companions(bb, key, paths[0])
            return path
        if fmt == "pickled-modules" and role == "encoder":
            head = entry.get("sources", {}).get("head")
            if head is None:  # a whole classifier in one file: WiSE-FT's finetuned.pt
                return self._once(paths, what, lambda p: pickle_dump(
                    wiseft_classifier(bb, bb.finetuned_visual("imagenet", key), *bb.finetuned_head(key)), p))
            if "head" in head:  # an encoder without a head file of its own: task_vectors' zeroshot.pt
                return self._once(paths, f"tv-zeroshot/{group}", lambda p: torch_save_module(
                    task_vectors_encoder(bb, {}, finetuned=False), p))
            task = _task_of(key, self.experts)
            return self._once(paths, what, lambda p: torch_save_module(task_vectors_encoder(
                bb, bb.finetuned_visual(f"task/{task}", f"tv/{key}", direction_scale=_TASK), finetuned=True), p))
        if fmt == "pickled-modules":  # role head
            from ..inputs.multitask_datasets import task_info

            info = task_info(_task_of(key, self.experts))
            return self._once(paths, f"tv-head/{group}/{info.name}", lambda p: torch_save_module(
                task_vectors_head(bb, info.classnames, info.templates), p))
        if role == "model":  # hf-clip-vision
            repo = spec["hf_repo"]
            visual = bb.finetuned_visual(f"hf/{repo}", f"hf/{repo}", direction_scale=_TASK)
            return self._once(paths, f"hf-vision/{group}/{repo}", lambda p: write_hf_dir(
                hf_vision_state(bb, visual), hf_vision_config(bb), p))
        repo = spec["hf_repo"]  # hf-clip-vision projection: the base CLIPModel
        return self._once(paths, f"hf-clip/{group}/{repo}", lambda p: write_hf_dir(
            hf_clip_state(bb), hf_clip_config(bb, repo), p))

    def _folder_companions(self, bb: Backbone, key: str, path: Path) -> None:
        """Other files of the Model Stock authors' Drive folder (fine-tunes, soups, Model Stock): the zero-shot model
        and a Model Stock of two more runs, model-soups format. Their real names are not published: these are made up
        (``zeroshot_<suffix>``, ``modelstock_<suffix>`` beside ``finetune_<suffix>``)."""
        from ..robust.soups import model_stock_state

        suffix = path.name.removeprefix("finetune_")
        zeroshot = zeroshot_soups_state(bb)
        self._once([path.with_name(f"zeroshot_{suffix}")], f"zeroshot/{bb.group}",
                   lambda p: write_model_soups(zeroshot, p))
        runs = [finetune_state(bb, f"{key}/modelstock-{i}") for i in (1, 2)]
        self._once([path.with_name(f"modelstock_{suffix}")], f"modelstock/{bb.group}/{key}",
                   lambda p: write_model_soups(OrderedDict(model_stock_state(zeroshot, runs)[0]), p))


def write_checkpoint_replicas(config: Mapping, site: str | Path, mirror: str | Path, *,
                              architecture: str = ARCHITECTURE, seed: int = 0) -> dict:
    """Write a replica of every checkpoint source of a config (see the module docstring for the forms).

    ``config``: the whole config (``paper`` plus, for the task_vectors heads, ``multitask.tasks.<t>.expert``) or
    its ``paper`` section alone (task of a ``tv-<Task>`` entry then from its name). ``site``: the folder a local
    HTTP server serves for URL sources; ``mirror``: the pre-staged folder (``paper.mirror``).

    Returns ``{"architecture": architecture, "sha256": {key: {role: sha256}}, "paths": {key: {role: path}}}``:
    ``sha256`` holds the replica's digest (:func:`dawin.inputs.checkpoints.digest`) of every source whose config pins
    one (the OpenAI releases), for the overlay to replace; ``paths`` where each source's replica lies (URL
    sources: the first URL's copy; ``None`` for workflow-built heads).
    """
    paper = config.get("paper", config)
    if "checkpoints" not in paper:
        raise ReplicaError("the config has no paper.checkpoints")
    checkpoints, runs = expand_checkpoint_series(paper)
    writer = _Writer(architecture, seed, Path(site), Path(mirror), _expert_tasks(config))
    pins: dict[str, dict[str, str]] = {}
    paths: dict[str, dict[str, str | None]] = {}
    for key in sorted(checkpoints, key=_natural_key):
        entry = checkpoints[key]
        sources = entry.get("sources") or {}
        if not sources:
            raise ReplicaError(f"{key}: a checkpoint entry needs sources")
        for role in sorted(sources):
            spec = sources[role]
            path = writer.source(key, entry, role, spec, runs.get(key))
            paths.setdefault(key, {})[role] = None if path is None else str(path)
            if path is not None and spec.get("sha256"):
                pins.setdefault(key, {})[role] = digest(path)
    return {"architecture": architecture, "sha256": pins, "paths": paths}


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
