"""open_clip models from the config: CLIP creation, zero-shot heads, the image classifier, safetensors I/O.

A *classifier* is an image tower plus a linear head on L2-normalised image features; both the zero-shot
model (head = logit_scale.exp() * normalised class text embeddings) and the fine-tuned model have this
form, so weight interpolation covers the tower **and** the head (SPEC section 1).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from dawin.inputs.openclip import open_clip  # noqa: I001 - first: open_clip without timm and transformers (see there)
from open_clip.transform import PreprocessCfg, image_transform_v2

from .download import sha256_file as sha256  # noqa: F401 - re-exported: one hashing helper for the package
from ..tensorio import load_tensors, read_metadata, save_tensors
from .datasets import check_templates

CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(CONFIG_DIR)  # registers the demo's tiny architectures by name

CLASSIFIER_FORMAT = "dawin-classifier/1"
CLIP_FORMAT = "dawin-clip/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, of the wrong architecture or of the wrong format."""


def _metadata(path: Path) -> dict[str, str]:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (fetch it or fix the path in the config)")
    return read_metadata(path)


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    broken = [k for k in sorted(set(own) & set(state)) if state[k].is_floating_point() and not torch.isfinite(state[k]).all()]
    if broken:
        n = sum(int((~torch.isfinite(state[k])).sum()) for k in broken)
        raise CheckpointError(f"{path} holds {n} NaN or infinite values (in {len(broken)} tensors, e.g. {broken[0]}): "
                              "the checkpoint is broken; fetch, convert or train it again (delete it and rerun "
                              "snakemake where a rule makes it)")
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {keys[:3]}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
            if keys
        )
        raise CheckpointError(f"{path} is not a {arch} checkpoint ({detail})")
    module.load_state_dict(state)


def create_clip(architecture: str, pretrained: str | None = None, weights: str | Path | None = None) -> torch.nn.Module:
    """An open_clip CLIP by architecture name, with ``pretrained=`` tag weights or a safetensors file."""
    if architecture not in open_clip.list_models():
        raise CheckpointError(f"unknown architecture {architecture!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14")
    model = open_clip.create_model(architecture, pretrained=pretrained)
    if weights is not None:
        path = Path(weights)
        meta = _metadata(path)
        if meta.get("architecture", architecture) != architecture:
            raise CheckpointError(f"{path} holds a {meta['architecture']} model, the config says {architecture}")
        _load_strict(model, load_tensors(path)[0], path, architecture)
    return model.eval()


def save_clip(model: torch.nn.Module, architecture: str, path: str | Path, **metadata: str) -> None:
    save_tensors(path, model.state_dict(), {**metadata, "format": CLIP_FORMAT, "architecture": architecture})


def preprocess(model_or_visual: torch.nn.Module):
    """The evaluation transform of an open_clip image tower (resize, centre crop, normalise)."""
    visual = getattr(model_or_visual, "visual", model_or_visual)
    cfg = PreprocessCfg(**visual.preprocess_cfg)
    return image_transform_v2(cfg, is_train=False)


@torch.no_grad()
def zeroshot_head(model: torch.nn.Module, architecture: str, classnames: Sequence[str], templates: Sequence[str],
                  device: str | torch.device = "cpu", batch_size: int = 1024) -> torch.Tensor:
    """Zero-shot head W (C, D): logit_scale.exp() * normalise(mean_t normalise(text(t(c)))) (task_vectors
    ``src/heads.py``'s formula). Templates are ``str.format`` patterns with the field ``{c}`` (or ``{}``) for the
    class name (:func:`dawin.inputs.datasets.check_templates`).
    The C x T prompts are encoded ``batch_size`` at a time (each prompt is encoded on its own: the batching
    changes only the speed, 80,000 ImageNet prompts in one pass over 80 batches rather than 1000)."""
    if not classnames or not templates:
        raise ValueError("a zero-shot head needs at least one class name and one template")
    check_templates(templates, "zero-shot head")
    tokenizer = open_clip.get_tokenizer(architecture)
    model = model.to(device)
    prompts = [t.format(c, c=c) for c in classnames for t in templates]  # {c} or {} (datasets.check_templates)
    emb = torch.cat([F.normalize(model.encode_text(tokenizer(prompts[i:i + batch_size]).to(device)).float(), dim=-1)
                     for i in range(0, len(prompts), batch_size)])
    emb = F.normalize(emb.view(len(classnames), len(templates), -1).mean(dim=1), dim=-1)
    if len(classnames) > 1 and bool(torch.allclose(emb, emb[:1].expand_as(emb), atol=1e-6)):
        raise ValueError(f"zero-shot head: all {len(classnames)} class embeddings are equal, so every image would get "
                         "the same logits: the text tower ignores its input (a broken or mismatched checkpoint) or "
                         "the class names and templates give identical prompts")
    return (model.logit_scale.exp().float() * emb).cpu()


def head_cache_key(architecture: str, weights_id: str, classnames: Sequence[str], templates: Sequence[str]) -> str:
    """Content key of a zero-shot head: the CLIP (architecture + weights) and the exact prompts."""
    payload = json.dumps([architecture, weights_id, list(classnames), list(templates)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def save_head(weight: torch.Tensor, path: str | Path, **metadata: str) -> None:
    save_tensors(path, {"weight": weight}, metadata)


def load_head(path: str | Path) -> tuple[torch.Tensor, dict[str, str]]:
    tensors, meta = load_tensors(path, ["weight"])
    return tensors["weight"], meta


class ImageClassifier(torch.nn.Module):
    """Image tower -> L2-normalised features -> linear head (weight (C, D), bias (C,))."""

    def __init__(self, visual: torch.nn.Module, head: torch.nn.Linear, architecture: str,
                 classnames: Sequence[str] | None = None, source: str | None = None):
        super().__init__()
        self.visual, self.head, self.architecture = visual, head, architecture
        # the head's class names, in column order, where the file records them (dawin.identity.check_classes)
        self.classnames, self.source = (list(classnames) if classnames else None), source

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(images), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    @classmethod
    def from_clip(cls, clip: torch.nn.Module, architecture: str, head_weight: torch.Tensor,
                  classnames: Sequence[str] | None = None) -> "ImageClassifier":
        head = torch.nn.Linear(head_weight.shape[1], head_weight.shape[0])
        with torch.no_grad():
            head.weight.copy_(head_weight)
            head.bias.zero_()
        return cls(clip.visual, head, architecture, classnames)

    def save(self, path: str | Path, **metadata: str) -> None:
        meta = {"format": CLASSIFIER_FORMAT, "architecture": self.architecture,
                **({"classnames": "\n".join(self.classnames)} if self.classnames else {}), **metadata}
        save_tensors(path, self.state_dict(), meta)

    @classmethod
    def load(cls, path: str | Path, architecture: str | None = None,
             like: "ImageClassifier | None" = None) -> "ImageClassifier":
        """Load a classifier, refusing files of another format or architecture by name; with ``like``, also one
        whose head has another number of classes than ``like``'s (the model it is to be combined with)."""
        path = Path(path)
        architecture = like.architecture if like is not None else architecture
        meta = _metadata(path)
        if meta.get("format") != CLASSIFIER_FORMAT:
            raise CheckpointError(f"{path} is not a DaWin classifier file (format {meta.get('format')!r}); convert it first")
        arch = meta["architecture"]
        if architecture is not None and arch != architecture:
            raise CheckpointError(f"{path} holds a {arch} classifier, the config expects {architecture}")
        state = load_tensors(path)[0]
        if "head.weight" not in state:
            raise CheckpointError(f"{path} has no head tensors (head.weight): a classifier file holds the image tower "
                                  "and its head; rebuild it (delete it and rerun snakemake) or convert the checkpoint "
                                  "with its head")
        visual = open_clip.create_model(arch).visual
        n_cls, dim = state["head.weight"].shape
        if like is not None and n_cls != like.head.out_features:
            raise CheckpointError(f"{path} has a head of {n_cls} classes, the model it is combined with has "
                                  f"{like.head.out_features}: a classifier of another task? Fix the path in the config")
        classnames = meta["classnames"].split("\n") if meta.get("classnames") else None
        if like is not None and classnames and like.classnames and classnames != like.classnames:
            first = next(i for i, (a, b) in enumerate(zip(classnames, like.classnames)) if a != b)
            raise CheckpointError(f"{path}'s head has other classes, or the same in another order, than the model it "
                                  f"is combined with ({like.source or 'not a file'}): class {first} is {classnames[first]!r} against "
                                  f"{like.classnames[first]!r}; a classifier of another label space? Fix the path")
        model = cls(visual, torch.nn.Linear(dim, n_cls), arch, classnames, str(path))
        _load_strict(model, state, path, arch)
        return model.eval()

    @classmethod
    def load_pair(cls, path0: str | Path, path1: str | Path) -> tuple["ImageClassifier", "ImageClassifier"]:
        """theta0 and theta1 of an interpolation, the second loaded ``like`` the first; the same weights in both are
        an error (every interpolation between them would be that one model, and every row would read the same)."""
        model0 = cls.load(path0)
        model1 = cls.load(path1, like=model0)
        state0 = model0.state_dict()
        if all(torch.equal(v, state0[k]) for k, v in model1.state_dict().items()):
            raise CheckpointError(f"{path1} holds the same weights as {path0} (theta1 equals theta0): every "
                                  "interpolation between them is that one model, and every row would read the same. "
                                  "Point the config at the fine-tuned checkpoint (backbones.<name>.finetuned)")
        return model0, model1
