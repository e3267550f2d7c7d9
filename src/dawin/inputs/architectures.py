"""The architecture names open_clip can build, known without importing it.

``import open_clip`` takes 6-10 s (torch, torchvision, transformers), too slow for every DAG build. open_clip
builds exactly the models of its ``model_configs/*.json`` files plus the ones registered with
``add_model_config`` (this package's ``model_configs``, registered by :mod:`dawin.inputs.models`), so the
names are those files' stems, found through the package's location (``importlib.util.find_spec`` does not
run the package). ``tests/test_models.py`` holds this equal to ``open_clip.list_models()``.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping
from pathlib import Path

OWN_CONFIGS = Path(__file__).parent / "model_configs"


def _config_dirs() -> list[Path]:
    """Where open_clip's model configs lie: this package's first, then open_clip's own (found without running it)."""
    spec = importlib.util.find_spec("open_clip")
    return [OWN_CONFIGS, *(Path(p) / "model_configs" for p in ((spec.submodule_search_locations or []) if spec else []))]


def known_architectures() -> set[str]:
    return {f.stem for d in _config_dirs() for f in d.glob("*.json")}


def check_architectures(named: Mapping[str, str]) -> None:
    """``named``: {config key: architecture name}. A name open_clip cannot build, or one whose towers come from timm
    or Hugging Face (which :mod:`dawin.inputs.openclip` leaves out), is a ValueError naming the key and the fix."""
    known = known_architectures()
    for key, name in named.items():
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(f"config {key}: unknown architecture {name!r}; {hint}open_clip builds the names of its "
                             f"model_configs/*.json and of {OWN_CONFIGS} ({len(known)} in all)")
        model_cfg = model_config(name)
        foreign = [f"{tower}.{field}" for tower, field in (("vision_cfg", "timm_model_name"), ("text_cfg", "hf_model_name"))
                   if model_cfg.get(tower, {}).get(field)]
        if foreign:
            raise ValueError(f"config {key}: architecture {name!r} has a tower from timm or Hugging Face "
                             f"({', '.join(foreign)}), which this workflow does not build; use an architecture with "
                             "open_clip's own VisionTransformer or ModifiedResNet towers (e.g. ViT-B-32, RN50)")


def model_config(architecture: str) -> dict:
    """An architecture's open_clip model config (its JSON file), read without importing open_clip."""
    import json

    for d in _config_dirs():
        if (d / f"{architecture}.json").is_file():
            return json.loads((d / f"{architecture}.json").read_text())
    raise ValueError(f"unknown architecture {architecture!r}")


_PREPROCESS_DEFAULTS = {"size": 224, "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}
"""open_clip 3.3's ``PreprocessCfg`` defaults for the fields that shape the pixels (``transform.py``); mean and std
are left out: they act after the decoded cache. ``tests/test_pixels.py`` holds :func:`pixels_key_of` equal to the key
of the preprocessing open_clip gives the built model."""


def pixels_key(cfg: Mapping) -> str:
    """The name of a preprocessing's decoded pixels: what resize and crop make of an image (size, resize mode,
    interpolation, fill colour), e.g. ``224x224-shortest-bicubic-fill0``."""
    size = cfg["size"]
    h, w = (size, size) if isinstance(size, int) else size
    return f"{h}x{w}-{cfg['resize_mode']}-{cfg['interpolation']}-fill{cfg['fill_color']}"


def preprocess_cfg_of(architecture: str) -> dict:
    """The fields of an architecture's evaluation preprocessing that shape the pixels (see :func:`pixels_key`), read
    from its model config JSON (its ``preprocess_cfg`` over the defaults, the size from ``vision_cfg.image_size``)
    without importing open_clip."""
    model_cfg = model_config(architecture)
    cfg = {**_PREPROCESS_DEFAULTS, **{k: v for k, v in model_cfg.get("preprocess_cfg", {}).items()
                                      if k in _PREPROCESS_DEFAULTS and k != "size"}}
    cfg["size"] = model_cfg.get("vision_cfg", {}).get("image_size", cfg["size"])
    return cfg


def pixels_key_of(architecture: str) -> str:
    return pixels_key(preprocess_cfg_of(architecture))
