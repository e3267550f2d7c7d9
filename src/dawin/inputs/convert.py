"""Convert upstream checkpoints into DaWin classifier files (SPEC section 4).

Every fine-tuned or zero-shot source is converted once into one format: a safetensors file in open_clip's
key space written by :meth:`dawin.inputs.models.ImageClassifier.save` (``visual.*`` + ``head.weight``/``head.bias``),
with a JSON sidecar ``<out>.json`` recording the sources (path/URL, sha256), the converter and the
architecture. Everything downstream reads only converted files.

Supported source formats
------------------------
``model-soups``
    model-soups / WiSE-FT state dicts: ``model.<CLIP key>`` (OpenAI ``clip`` key space, identical to open_clip's
    for the image tower) plus ``classification_head.{weight,bias}``, applied to L2-normalised image features.
    Loaded with ``torch.load(weights_only=True)``: no foreign code can run.
``pickled-modules``
    task_vectors (open_clip 2.0.2) pickled ``src.modeling.ImageEncoder`` / ``ClassificationHead`` modules, and
    WiSE-FT ``pickle.dump``-ed ``src.models.modeling.ImageClassifier`` objects (OpenAI ``clip.model`` inside).
    Unpickled with :class:`RestrictedUnpickler`: every foreign class is replaced by an inert stand-in that only
    stores its pickled state; anything not on the allow-list is refused by name. Only done for files whose
    sha256 matches the pinned value when one is given.
``openai-clip``
    OpenAI's released CLIP (``openaipublic.azureedge.net/clip/models/<sha256>/<name>.pt``, a TorchScript
    archive in float16), read by open_clip's own ``load_openai_model`` (the loader behind
    ``pretrained="openai"``) and written whole, text tower included (the zero-shot heads need it), as a
    ``dawin-clip`` file that :func:`dawin.inputs.models.create_clip` reads with ``weights=``.
``hf-clip-vision``
    transformers ``CLIPVisionModel`` / ``CLIPVisionModelWithProjection`` / ``CLIPModel`` directories or state
    dicts (e.g. FusionBench's ``tanganke/clip-vit-base-patch32_<task>``), mapped onto open_clip ViT keys.

Activation (QuickGELU)
----------------------
OpenAI CLIP and everything fine-tuned from it (model-soups, WiSE-FT, task_vectors, HF CLIP with
``hidden_act: quick_gelu``) use QuickGELU. open_clip's plain ``ViT-B-32``/``ViT-B-16``/``ViT-L-14`` configs use
``nn.GELU``; the QuickGELU variants are the registered names ``ViT-B-32-quickgelu``, ``ViT-B-16-quickgelu``,
``ViT-L-14-quickgelu`` (which also accept ``pretrained="openai"``). Since ``ImageClassifier.load`` rebuilds the
tower with ``open_clip.create_model(architecture)``, the activation must be part of the *architecture name*:
converting a QuickGELU source to a GELU architecture (or vice versa) is refused with a message naming the
right architecture. Towers without a GELU (ResNets) are not checked.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import hashlib
import io
import json
import math
import pickle
import re
import types
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from dawin.inputs.openclip import open_clip  # noqa: I001 - first: open_clip without timm and transformers (see there)
from open_clip.transformer import QuickGELU
from safetensors.torch import load_file

from dawin.inputs import models
from dawin.tensorio import read_metadata
from dawin.inputs.models import CheckpointError, ImageClassifier

CONVERTER_NAME = "dawin.inputs.convert"
CONVERTER_VERSION = "2"  # 2: pickled encoders record what their whole state dict holds (encoder_entries)
SOURCE_FORMATS = ("model-soups", "pickled-modules", "hf-clip-vision", "openai-clip")

QUICK_GELU, GELU = "quick_gelu", "gelu"

# --------------------------------------------------------------------------------------------- hashing


def check_sha256(path: str | Path, expected: str | None) -> str:
    """The sha256 of ``path``; raise :class:`CheckpointError` naming both hashes if ``expected`` differs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    actual = models.sha256(path)
    if expected is not None and actual != expected.strip().lower():
        raise CheckpointError(f"{path} has sha256 {actual}, expected {expected.strip().lower()}; "
                              "refusing to read it (wrong or changed file, or a stale pin in the config)")
    return actual


def _hf_files(model_dir: Path) -> list[Path]:
    """The files of an HF model directory that the conversion reads (config + weights)."""
    files = [model_dir / "config.json"] if (model_dir / "config.json").is_file() else []
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (model_dir / index).is_file():
            shards = sorted(set(json.loads((model_dir / index).read_text())["weight_map"].values()))
            return files + [model_dir / s for s in shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return files + [model_dir / name]
    raise CheckpointError(f"{model_dir} holds no model.safetensors or pytorch_model.bin")


def source_digest(path: str | Path) -> tuple[str, dict[str, str]]:
    """(digest, per-file sha256) of a source file or HF model directory.

    A file's digest is its sha256; a directory's is the sha256 of the sorted lines ``"<name> <sha256>\\n"`` of the
    files the conversion reads (config.json and the weight files), so one pinned value covers the directory.
    """
    path = Path(path)
    if path.is_dir():
        files = {p.name: models.sha256(p) for p in _hf_files(path)}
        digest = hashlib.sha256("".join(f"{n} {h}\n" for n, h in sorted(files.items())).encode()).hexdigest()
        return digest, files
    digest = check_sha256(path, None)
    return digest, {path.name: digest}


def _verify_pin(path: Path, expected: str | None) -> None:
    """Check a pinned digest (file or HF directory); without a pin only check that the source exists."""
    if expected is not None:
        _check_digest(path, expected)
    elif not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")


def _verify_digest(path: Path, digest: str, expected: str | None) -> None:
    if expected is not None and digest != expected.strip().lower():
        raise CheckpointError(f"{path} has sha256 {digest}, expected {expected.strip().lower()}; refusing to read it")


def _check_digest(path: Path, expected: str | None) -> str:
    if path.is_dir():
        digest, _ = source_digest(path)
        _verify_digest(path, digest, expected)
        return digest
    return check_sha256(path, expected)


# ------------------------------------------------------------------------------ restricted unpickling


class StandIn:
    """Inert replacement for a foreign pickled class: it stores constructor arguments and pickled state.

    It has no methods that run foreign code; :func:`module_state_dict` reads ``nn.Module``-shaped state
    (``_parameters``, ``_buffers``, ``_modules``) out of it.
    """

    origin = "?"
    dump_patches = False  # read by torch's legacy-format source check

    def __new__(cls, *args: Any, **kwargs: Any) -> "StandIn":
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_standin_args"] = (args, kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slot state)
        if isinstance(state, dict):  # dunder names could shadow methods pickle looks up: drop them
            self.__dict__.update({k: v for k, v in state.items()
                                  if not (isinstance(k, str) and k.startswith("__") and k.endswith("__"))})
        else:
            self.__dict__["_standin_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.origin}>"


_STANDIN_PREFIXES = (
    "src.modeling.",          # task_vectors: ImageEncoder, ClassificationHead, ImageClassifier
    "src.models.modeling.",   # WiSE-FT: same classes under src/models/
    "modeling.",              # AdaMerging's scripts, run from src/: heads pickled as modeling.ClassificationHead
    "open_clip.model.",
    "open_clip.transformer.",
    "open_clip.modified_resnet.",
    "open_clip.timm_model.",
    "open_clip.transform.",   # preprocessing kept on ImageEncoder (e.g. _convert_to_rgb)
    "clip.model.",            # OpenAI clip package (WiSE-FT)
    "clip.clip.",             # its preprocessing helper _convert_image_to_rgb
    "torch.nn.modules.",      # Linear, Conv2d, LayerNorm, MultiheadAttention, GELU, ... as inert state holders
    "torchvision.transforms.",  # train/val preprocess Compose objects kept on ImageEncoder
)
_STANDINS: dict[str, type] = {}


def _stand_in(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _STANDINS:
        _STANDINS[key] = type(name.rpartition(".")[2], (StandIn,),
                              {"__module__": module, "__qualname__": name, "origin": key})
    return _STANDINS[key]


def _load_storage_from_bytes(data: bytes) -> Any:
    """Replacement for ``torch.storage._load_from_bytes`` (storages inside plain pickles): weights-only load."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch", "Tensor"): torch.Tensor,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    **{("builtins", n): getattr(builtins, n) for n in ("set", "frozenset", "dict", "list", "tuple", "bool", "int",
                                                     "float", "complex", "str", "bytes", "bytearray", "slice")},
}
if hasattr(torch._utils, "_rebuild_tensor_v3"):
    _ALLOWED[("torch._utils", "_rebuild_tensor_v3")] = torch._utils._rebuild_tensor_v3


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for foreign model pickles that never imports or calls foreign code.

    ``find_class`` resolves
      * classes of the upstream code bases (``src.modeling``, ``modeling``, ``src.models.modeling``, ``open_clip.{model,
        transformer,modified_resnet,timm_model,transform}``, ``clip.{model,clip}``), of ``torch.nn.modules`` and
        of ``torchvision.transforms`` to inert :class:`StandIn` subclasses of the same name;
      * tensor rebuilding (``torch._utils._rebuild_*``, ``torch._tensor._rebuild_from_type_v2``, ``Parameter``,
        ``Tensor``, ``Size``, ``device``, dtypes such as ``torch.float16``; storages come through torch's own
        ``persistent_load`` or, in plain pickles, ``torch.storage._load_from_bytes`` -> a weights-only load);
      * ``collections.OrderedDict`` and plain builtin containers/scalars;
    and refuses every other global by name with :class:`CheckpointError`.
    """

    source: str = "<pickle>"

    def find_class(self, module: str, name: str) -> Any:
        # protocol-2 pickles name Python 2 modules (``__builtin__.set``): map them as pickle itself does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if f"{module}.".startswith(_STANDIN_PREFIXES) and re.fullmatch(r"[A-Za-z_][\w.]*", name):
            return _stand_in(module, name)
        raise CheckpointError(f"{self.source}: refusing to unpickle global {module}.{name} "
                              "(not on the converter's allow-list)")


def _restricted_pickle_module(source: str) -> types.ModuleType:
    """A pickle-like module for ``torch.load(pickle_module=...)`` whose Unpickler is restricted."""
    mod = types.ModuleType("dawin_restricted_pickle")

    class Unpickler(RestrictedUnpickler):
        pass

    Unpickler.source = source

    def load(file: Any, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    mod.Unpickler, mod.load, mod.__name__ = Unpickler, load, "dawin_restricted_pickle"
    return mod


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def load_pickled(path: str | Path, expected_sha256: str | None = None) -> Any:
    """Unpickle a foreign torch.save / pickle.dump file with :class:`RestrictedUnpickler`.

    The sha256 is checked (when ``expected_sha256`` is given) before a single byte is unpickled.
    Handles torch's zip format, torch's legacy format and plain pickles.
    """
    path = Path(path)
    _verify_pin(path, expected_sha256)
    mod = _restricted_pickle_module(str(path))
    with open(path, "rb") as f:
        head = f.read(64)
    legacy = any(head.startswith(pickle.dumps(_TORCH_LEGACY_MAGIC, protocol=p)) for p in (2, 3, 4, 5))
    try:
        if zipfile.is_zipfile(path) or legacy:
            return torch.load(path, map_location="cpu", pickle_module=mod, weights_only=False)
        with open(path, "rb") as f:
            return mod.Unpickler(f).load()
    except CheckpointError:
        raise
    except Exception as e:  # corrupt or unexpected content: name the file
        raise CheckpointError(f"{path}: cannot unpickle ({type(e).__name__}: {e})") from e


def _children(obj: Any, what: str) -> Mapping[str, Any]:
    found = getattr(obj, "__dict__", {}).get(what)
    if found is None:
        return {}
    if not isinstance(found, Mapping):
        raise CheckpointError(f"unpickled {type(obj).__name__}.{what} is a {type(found).__name__}, not a mapping")
    return found


def module_state_dict(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """``state_dict()`` of an unpickled module tree (stand-ins or real modules), without running its code."""
    out: dict[str, torch.Tensor] = {}
    skip = set(getattr(obj, "__dict__", {}).get("_non_persistent_buffers_set", ()) or ())
    for what in ("_parameters", "_buffers"):
        for name, t in _children(obj, what).items():
            if t is None or (what == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise CheckpointError(f"unpickled {prefix}{name} is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t.detach()
    for name, child in _children(obj, "_modules").items():
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


def _submodules(obj: Any) -> list[Any]:
    out, stack = [], [obj]
    while stack:
        m = stack.pop()
        out.append(m)
        stack.extend(c for c in _children(m, "_modules").values() if c is not None)
    return out


def _pickled_activation(visual: Any) -> str | None:
    names = {type(m).__name__ for m in _submodules(visual)}
    if "QuickGELU" in names:
        return QUICK_GELU
    if "GELU" in names:
        return GELU
    return None


# ------------------------------------------------------------------------------------ building the target


def _target_activation(visual: torch.nn.Module) -> str | None:
    mods = list(visual.modules())
    if any(isinstance(m, QuickGELU) for m in mods):
        return QUICK_GELU
    if any(isinstance(m, torch.nn.GELU) for m in mods):
        return GELU
    return None


def _activation_hint(architecture: str, wanted: str) -> str:
    base = architecture.removesuffix("-quickgelu")
    if wanted == QUICK_GELU:
        cand = f"{base}-quickgelu"
        return f"use the QuickGELU architecture {cand!r}" if cand in open_clip.list_models() else \
            "register an architecture config with \"quick_gelu\": true"
    return f"use the GELU architecture {base!r}" if base != architecture else \
        "use an architecture config without quick_gelu"


def _vit_geometry(visual: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
    conv, pos = visual.get("conv1.weight"), visual.get("positional_embedding")
    if conv is None or pos is None or conv.ndim != 4 or pos.ndim != 2:
        return None
    layers = {int(m.group(1)) for k in visual if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))}
    geo = {"width": int(conv.shape[0]), "patch_size": int(conv.shape[-1]), "layers": len(layers),
           "image_size": math.isqrt(int(pos.shape[0]) - 1) * int(conv.shape[-1])}
    if (proj := visual.get("proj")) is not None and proj.ndim == 2:
        geo["embed_dim"] = int(proj.shape[1])
    return geo


def _architectures_like(geo: Mapping[str, int]) -> list[str]:
    """Registered open_clip architectures whose ViT image tower has the geometry ``geo``."""
    hits = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        vc = cfg.get("vision_cfg", {})
        if "timm_model_name" in vc or not isinstance(vc.get("layers"), int):
            continue
        img = vc.get("image_size")
        img = img[0] if isinstance(img, (list, tuple)) else img
        if (vc.get("width"), vc.get("patch_size"), vc.get("layers"), img) == (
                geo["width"], geo["patch_size"], geo["layers"], geo["image_size"]) and \
                cfg.get("embed_dim", geo.get("embed_dim")) == geo.get("embed_dim", cfg.get("embed_dim")):
            hits.append(name)
    return sorted(hits, key=lambda n: (not n.startswith("ViT-"), len(n), n))


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ")"


def _check_fits(source: str, architecture: str, own: Mapping[str, torch.Tensor],
                visual: Mapping[str, torch.Tensor]) -> None:
    """Refuse a visual state that does not fit the target tower, naming the mismatch and the likely source."""
    missing = sorted(set(own) - set(visual))
    unexpected = sorted(set(visual) - set(own))
    wrong = sorted(k for k in set(own) & set(visual) if own[k].shape != visual[k].shape)
    if not (missing or unexpected or wrong):
        return
    # the most telling mismatch first: patch embedding, then width-carrying tensors
    order = ["conv1.weight", "positional_embedding", "class_embedding", "proj"]
    wrong.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
    details = []
    if wrong:
        k = wrong[0]
        details.append(f"visual.{k} has shape {_shape(visual[k])}, expected {_shape(own[k])}"
                       + (f" (and {len(wrong) - 1} more shape mismatches)" if len(wrong) > 1 else ""))
    for what, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            details.append(f"{what} keys: {['visual.' + k for k in keys[:3]]}{' ...' if len(keys) > 3 else ''}")
    geo = _vit_geometry(visual)
    if geo is not None:
        like = _architectures_like(geo)
        also = f"; also fits {', '.join(like[1:4])}" if len(like) > 1 else ""
        shape = ((f"a {like[0]}-shaped checkpoint" if like else "a ViT checkpoint")
                 + f" (ViT width {geo['width']}, patch {geo['patch_size']}, {geo['layers']} layers, "
                 + f"image {geo['image_size']}{also})")
    elif any(k.startswith("layer1.") for k in visual):
        shape = "a ResNet-shaped checkpoint"
    else:
        shape = "a checkpoint of unknown shape"
    raise CheckpointError(f"{source} is {shape} and does not match {architecture}: " + "; ".join(details))


def build_classifier(visual_state: Mapping[str, torch.Tensor], head_weight: torch.Tensor,
                     head_bias: torch.Tensor | None, architecture: str, *, source: str,
                     source_activation: str | None) -> ImageClassifier:
    """An :class:`ImageClassifier` of ``architecture`` holding ``visual_state`` (keys without ``visual.``) and the head.

    ``source_activation`` ('quick_gelu', 'gelu' or None for unknown/irrelevant) must match the target tower's.
    Floating tensors are cast to the target's dtype (float32).
    """
    clip = models.create_clip(architecture)
    visual = clip.visual
    own = visual.state_dict()
    _check_fits(source, architecture, own, visual_state)
    target_act = _target_activation(visual)
    if source_activation is not None and target_act is not None and source_activation != target_act:
        raise CheckpointError(f"{source} uses {source_activation} but {architecture} uses {target_act}; "
                              f"{_activation_hint(architecture, source_activation)}")
    dim = getattr(visual, "output_dim", None) or own["proj"].shape[1]
    if head_weight.ndim != 2 or head_weight.shape[1] != dim:
        raise CheckpointError(f"{source}: head weight has shape {_shape(head_weight)}, "
                              f"expected (classes, {dim}) for {architecture}")
    n_cls = head_weight.shape[0]
    if head_bias is None:
        head_bias = torch.zeros(n_cls)
    if head_bias.shape != (n_cls,):
        raise CheckpointError(f"{source}: head bias has shape {_shape(head_bias)}, expected ({n_cls},)")
    model = ImageClassifier(visual, torch.nn.Linear(dim, n_cls), architecture)
    target = model.state_dict()
    state = {f"visual.{k}": v for k, v in visual_state.items()}
    state["head.weight"], state["head.bias"] = head_weight, head_bias
    state = {k: v.detach().to(target[k].dtype) if v.is_floating_point() else v.detach() for k, v in state.items()}
    models._load_strict(model, state, Path(source), architecture)
    return model.eval()


def convert_model_soups(path: str | Path, architecture: str, *, expected_sha256: str | None = None,
                        source_activation: str | None = QUICK_GELU) -> ImageClassifier:
    """model-soups / WiSE-FT state dict -> classifier.

    The file is ``{"model.<CLIP key>": tensor, ..., "classification_head.weight": W, "classification_head.bias": b}``
    (optionally wrapped in ``{"state_dict": ...}`` and/or with a ``module.`` prefix), loaded with
    ``weights_only=True``. Only ``model.visual.*`` is kept; text keys and ``model.logit_scale`` are ignored.
    The upstream model computes ``head(normalise(encode_image(x)))`` with the head weight as stored, which is
    exactly our classifier's ``normalise(visual(x)) @ W.T + b``; no rescaling is applied.

    ``source_activation`` defaults to QuickGELU: these checkpoints are fine-tunes of OpenAI CLIP through the
    OpenAI ``clip`` package, so the architecture must be a ``*-quickgelu`` one (e.g. ``ViT-B-32-quickgelu``).
    """
    path = Path(path)
    _verify_pin(path, expected_sha256)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a plain state dict loadable with weights_only=True "
                              f"({type(e).__name__}: {e}); is it a pickled module? use convert_pickled_modules") from e
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a model-soups state dict (a mapping of names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    if "classification_head.weight" not in state:
        raise CheckpointError(f"{path} has no classification_head.weight; not a model-soups checkpoint")
    visual = {k.removeprefix("model.visual."): v for k, v in state.items() if k.startswith("model.visual.")}
    if not visual:
        raise CheckpointError(f"{path} has no model.visual.* keys; not a model-soups checkpoint")
    return build_classifier(visual, state["classification_head.weight"], state.get("classification_head.bias"),
                            architecture, source=str(path), source_activation=source_activation)


def _find_visual(obj: Any, path: Path) -> Any:
    """The ``.model.visual`` module of an unpickled ImageEncoder / ImageClassifier (stand-ins)."""
    for chain in (("model", "visual"), ("image_encoder", "model", "visual")):
        cur = obj
        for attr in chain:
            cur = _children(cur, "_modules").get(attr)
            if cur is None:
                break
        if cur is not None:
            return cur
    raise CheckpointError(f"{path} holds a {getattr(type(obj), 'origin', type(obj).__name__)}, "
                          "not an image encoder with .model.visual")


def _head_of(obj: Any, path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = _children(obj, "_modules").get("classification_head", obj)
    state = module_state_dict(head)
    if set(state) - {"weight", "bias"} or "weight" not in state:
        raise CheckpointError(f"{path} holds a {getattr(type(head), 'origin', type(head).__name__)} with "
                              f"tensors {sorted(state)[:5]}, not a classification head (weight, bias)")
    normalize = getattr(head, "__dict__", {}).get("normalize", True)
    if not normalize:
        raise CheckpointError(f"{path}: the classification head has normalize=False; DaWin classifiers apply "
                              "the head to L2-normalised features, so this head cannot be converted as is")
    return state["weight"], state.get("bias")


def encoder_entries(state: Mapping[str, torch.Tensor], visual_prefix: str) -> dict[str, str]:
    """What a source encoder's whole state dict holds beyond its image tower (keys under ``visual_prefix``):
    ``source_encoder_entries``, the number of entries of the whole state dict (what AdaMerging's TIES and
    AdaMerging++ flatten and rank: :mod:`dawin.merging.ties`), and ``source_outside_visual_sha256``, a digest of the
    tensors outside the tower (equal in theta0 and every expert when fine-tuning left them alone, so their task
    vector is 0 there). Strings, for the classifier file's metadata."""
    outside = hashlib.sha256()
    for key in sorted(k for k in state if not k.startswith(visual_prefix)):
        t = state[key].detach().contiguous().cpu()
        outside.update(f"{key} {t.dtype} {tuple(t.shape)}\n".encode())
        outside.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"source_encoder_entries": str(sum(int(t.numel()) for t in state.values())),
            "source_outside_visual_sha256": outside.hexdigest()}


def _pickled_classifier(encoder_path: Path, head_path: Path | None, architecture: str, *,
                        expected_encoder_sha256: str | None, expected_head_sha256: str | None,
                        head: tuple[torch.Tensor, torch.Tensor | None] | None) -> tuple[ImageClassifier, dict[str, str]]:
    enc = load_pickled(encoder_path, expected_encoder_sha256)
    visual_obj = _find_visual(enc, encoder_path)
    visual = module_state_dict(visual_obj)
    if head is not None:
        weight, bias = head
    elif head_path is None:
        if "classification_head" not in _children(enc, "_modules"):
            raise CheckpointError(f"{encoder_path} holds no classification_head; pass the head file")
        weight, bias = _head_of(enc, encoder_path)
    else:
        weight, bias = _head_of(load_pickled(head_path, expected_head_sha256), head_path)
    model = build_classifier(visual, weight, bias, architecture, source=str(encoder_path),
                             source_activation=_pickled_activation(visual_obj))
    # the encoder module (a whole pickled classifier's image_encoder) and its state dict, as upstream's .state_dict()
    encoder = _children(enc, "_modules").get("image_encoder", enc)
    return model, encoder_entries(module_state_dict(encoder), "model.visual.")


def convert_pickled_modules(encoder_path: str | Path, head_path: str | Path | None, architecture: str, *,
                            expected_encoder_sha256: str | None = None,
                            expected_head_sha256: str | None = None,
                            head: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> ImageClassifier:
    """task_vectors / WiSE-FT pickled modules -> classifier.

    ``encoder_path``: a pickled ``ImageEncoder`` (``finetuned.pt``/``zeroshot.pt``, ``.model.visual`` = image
    tower) or a whole pickled ``ImageClassifier`` (``.image_encoder`` + ``.classification_head``, as WiSE-FT
    saves; then ``head_path`` may be None). ``head_path``: a pickled ``ClassificationHead`` (``head_{Task}.pt``,
    an ``nn.Linear`` with ``normalize=True``). Files are read with :func:`load_pickled` after their sha256 is
    checked against ``expected_encoder_sha256``/``expected_head_sha256`` when given. The tower's activation
    (QuickGELU or GELU module in the pickle) must match ``architecture``'s. ``head`` (weight, bias) replaces
    the head file for an encoder without one (task_vectors' ``zeroshot.pt``). What the encoder holds beyond the
    tower: :func:`encoder_entries` (:func:`convert` records it in the file's metadata).
    """
    return _pickled_classifier(Path(encoder_path), None if head_path is None else Path(head_path), architecture,
                               expected_encoder_sha256=expected_encoder_sha256,
                               expected_head_sha256=expected_head_sha256, head=head)[0]


def _hf_state_and_config(source: str | Path | Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    if isinstance(source, Mapping):
        return dict(source), {}
    model_dir = Path(source)
    if not model_dir.is_dir():
        raise CheckpointError(f"HF model directory not found: {model_dir}")
    state: dict[str, torch.Tensor] = {}
    config: dict = {}
    for f in _hf_files(model_dir):
        if f.name == "config.json":
            config = json.loads(f.read_text())
        elif f.suffix == ".safetensors":
            state.update(load_file(str(f)))
        else:
            state.update(torch.load(f, map_location="cpu", weights_only=True))
    return state, config


def hf_to_open_clip_visual(state: Mapping[str, torch.Tensor],
                           visual_projection: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Map HF CLIP vision keys (``vision_model.*``, ``visual_projection.weight``) to open_clip ViT tower keys."""
    bare = ("embeddings.", "encoder.", "pre_layrnorm.", "post_layernorm.")  # a CLIPVisionTransformer's own keys
    vis = {k.removeprefix("vision_model."): v for k, v in state.items() if k.startswith(("vision_model.", *bare))}
    if "embeddings.patch_embedding.weight" not in vis:
        raise CheckpointError("not an HF CLIP vision model: no vision_model.embeddings.patch_embedding.weight")
    proj = state.get("visual_projection.weight", visual_projection)
    if proj is None:
        raise CheckpointError("the HF model has no visual_projection.weight (a bare CLIPVisionModel); pass "
                              "visual_projection= from the base CLIPModel it was fine-tuned from")
    out = {
        "class_embedding": vis["embeddings.class_embedding"],
        "conv1.weight": vis["embeddings.patch_embedding.weight"],
        "positional_embedding": vis["embeddings.position_embedding.weight"],
        "ln_pre.weight": vis["pre_layrnorm.weight"], "ln_pre.bias": vis["pre_layrnorm.bias"],
        "ln_post.weight": vis["post_layernorm.weight"], "ln_post.bias": vis["post_layernorm.bias"],
        "proj": proj.T.contiguous(),
    }
    layers = sorted({int(m.group(1)) for k in vis if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    for i in layers:
        s, d = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        a = s + "self_attn."
        out[d + "attn.in_proj_weight"] = torch.cat([vis[a + f"{p}_proj.weight"] for p in "qkv"], dim=0)
        out[d + "attn.in_proj_bias"] = torch.cat([vis[a + f"{p}_proj.bias"] for p in "qkv"], dim=0)
        for hf, oc in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                       ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            for p in ("weight", "bias"):
                out[f"{d}{oc}.{p}"] = vis[f"{s}{hf}.{p}"]
    known = {"embeddings.class_embedding", "embeddings.patch_embedding.weight", "embeddings.position_embedding.weight",
             "embeddings.position_ids", "pre_layrnorm.weight", "pre_layrnorm.bias", "post_layernorm.weight",
             "post_layernorm.bias"}
    left = sorted(k for k in vis if k not in known and not re.match(
        r"encoder\.layers\.\d+\.(self_attn\.[qkvo]\w*_proj|layer_norm[12]|mlp\.fc[12])\.(weight|bias)$", k))
    if left:
        raise CheckpointError(f"HF vision model has keys the converter does not map: {left[:5]}")
    return out


def convert_hf_clip_vision(model_dir_or_state_dict: str | Path | Mapping[str, torch.Tensor],
                           head_weight: torch.Tensor, head_bias: torch.Tensor | None, architecture: str, *,
                           visual_projection: torch.Tensor | None = None, hidden_act: str | None = None,
                           num_heads: int | None = None, expected_sha256: str | None = None) -> ImageClassifier:
    """transformers CLIP vision model (+ visual projection) -> classifier with the given head.

    ``model_dir_or_state_dict``: a ``save_pretrained`` directory (config.json + weights) or a state dict.
    ``visual_projection``: the (embed_dim, width) ``visual_projection.weight`` when the model has none
    (FusionBench's ``CLIPVisionModel``s: take it from the base ``openai/clip-vit-base-patch32``).
    ``hidden_act``/``num_heads`` come from config.json for a directory; for a state dict ``hidden_act`` is
    required. ``quick_gelu`` needs a QuickGELU architecture (``ViT-B-32-quickgelu``); ``gelu`` a GELU one.
    ``expected_sha256`` pins the directory digest of :func:`source_digest` (or is ignored for a state dict).
    """
    name = "<state dict>" if isinstance(model_dir_or_state_dict, Mapping) else str(model_dir_or_state_dict)
    if not isinstance(model_dir_or_state_dict, Mapping):
        _verify_pin(Path(model_dir_or_state_dict), expected_sha256)
    state, config = _hf_state_and_config(model_dir_or_state_dict)
    config = config.get("vision_config", config)
    if config:  # save_pretrained may leave out values equal to CLIPVisionConfig's defaults
        config = {"hidden_act": "quick_gelu", "num_attention_heads": 12, "layer_norm_eps": 1e-5, **config}
    act = hidden_act or config.get("hidden_act")
    if act is None:
        raise CheckpointError("converting an HF state dict needs hidden_act ('quick_gelu' or 'gelu')")
    if act not in (QUICK_GELU, GELU):
        raise CheckpointError(f"{name}: hidden_act {act!r} has no open_clip equivalent (only quick_gelu and gelu)")
    if abs(float(config.get("layer_norm_eps", 1e-5)) - 1e-5) > 1e-12:
        raise CheckpointError(f"{name}: layer_norm_eps {config['layer_norm_eps']} differs from open_clip's 1e-5")
    try:
        visual = hf_to_open_clip_visual(state, visual_projection)
    except KeyError as e:
        raise CheckpointError(f"{name}: HF CLIP vision model lacks {e.args[0]}") from e
    except CheckpointError as e:
        raise CheckpointError(f"{name}: {e}") from e
    model = build_classifier(visual, head_weight, head_bias, architecture, source=name, source_activation=act)
    heads = num_heads or config.get("num_attention_heads")
    blocks = getattr(getattr(model.visual, "transformer", None), "resblocks", None)
    own_heads = getattr(blocks[0].attn, "num_heads", None) if blocks else None
    if heads is not None and own_heads is not None and heads != own_heads:
        raise CheckpointError(f"{name} has {heads} attention heads, {architecture} has {own_heads}")
    return model


def convert_openai_clip(path: str | Path, architecture: str) -> torch.nn.Module:
    """OpenAI's CLIP release (TorchScript archive, or a state dict) -> an open_clip CLIP of ``architecture``.

    The weights pass through open_clip's ``load_openai_model`` exactly as ``pretrained="openai"`` does (float16
    as released, then float32); the architecture must be the QuickGELU variant the release was trained with,
    and its every tensor must fit.
    """
    from open_clip.openai import load_openai_model

    path = Path(path)
    try:
        source = load_openai_model(str(path), precision="fp32", device="cpu")
    except (RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is not an OpenAI CLIP release (TorchScript archive or state dict): {e}") from e
    target = models.create_clip(architecture)
    if _target_activation(target.visual) != QUICK_GELU:
        raise CheckpointError(f"{path}: OpenAI CLIP uses QuickGELU, {architecture} does not; "
                              f"{_activation_hint(architecture, QUICK_GELU)}")
    models._load_strict(target, source.state_dict(), path, architecture)
    return target.eval()


# ------------------------------------------------------------------------------------------ entry point


def _read_head_file(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = load_file(str(path))
    if "weight" not in head:
        raise CheckpointError(f"{path}: a head file needs a 'weight' tensor (and optionally 'bias')")
    return head["weight"], head.get("bias")


_ROLES = {"model-soups": {"checkpoint"}, "openai-clip": {"checkpoint"}, "pickled-modules": {"encoder", "head"},
          "hf-clip-vision": {"model", "head", "projection"}}


def convert(source_format: str, sources: Mapping[str, str | Path], architecture: str, out_path: str | Path, *,
            sidecar: str | Path | None = None, urls: Mapping[str, str] | None = None,
            expected_sha256: Mapping[str, str | None] | None = None) -> dict:
    """Convert one source into ``out_path`` (safetensors) and write the JSON sidecar; return the sidecar record.

    ``sources`` roles by format:
      * ``model-soups``: ``checkpoint`` (the .pt state dict);
      * ``pickled-modules``: ``encoder`` (``finetuned.pt``/``zeroshot.pt`` or a whole pickled classifier) and
        optionally ``head`` (``head_{Task}.pt``);
      * ``hf-clip-vision``: ``model`` (HF directory), ``head`` (safetensors with ``weight`` [, ``bias``]) and
        optionally ``projection`` (an HF directory or safetensors holding ``visual_projection.weight``).
    ``urls`` (same roles) are recorded as provenance; ``expected_sha256`` (same roles) pins each source and is
    checked before anything is read (a directory's digest is :func:`source_digest`'s).
    The sidecar defaults to ``<out_path>.json``; the safetensors metadata gets ``source``, ``source_sha256``
    (``role=value`` pairs joined by ``;``), ``converter`` and ``converter_version``.
    """
    if source_format not in _ROLES:
        raise ValueError(f"unknown source format {source_format!r}; one of {SOURCE_FORMATS}")
    extra = set(sources) - _ROLES[source_format]
    if extra:
        raise ValueError(f"{source_format} takes sources {sorted(_ROLES[source_format])}, not {sorted(extra)}")
    pins = dict(expected_sha256 or {})
    paths = {role: Path(p) for role, p in sources.items()}
    # every source is hashed (and checked against its pin) once, before anything is read from it
    digests, files = {}, {}
    for role, p in paths.items():
        if p.is_dir():
            digests[role], files[role] = source_digest(p)
            _verify_digest(p, digests[role], pins.get(role))
        else:
            digests[role] = check_sha256(p, pins.get(role))

    entries: dict[str, str] = {}  # pickled encoders: what their whole state dict holds (encoder_entries)
    if source_format == "openai-clip":
        model = convert_openai_clip(paths["checkpoint"], architecture)
    elif source_format == "model-soups":
        model = convert_model_soups(paths["checkpoint"], architecture)
    elif source_format == "pickled-modules":
        # an encoder without a head of its own (task_vectors' zeroshot.pt) takes a head this workflow built
        built = paths.get("head", Path()).suffix == ".safetensors"
        model, entries = _pickled_classifier(paths["encoder"], None if built else paths.get("head"), architecture,
                                             expected_encoder_sha256=None, expected_head_sha256=None,
                                             head=_read_head_file(paths["head"]) if built else None)
    else:
        if "head" not in paths:
            raise ValueError("hf-clip-vision needs a 'head' source (safetensors with weight[, bias])")
        weight, bias = _read_head_file(paths["head"])
        proj = None
        if "projection" in paths:
            pstate, _ = _hf_state_and_config(paths["projection"]) if paths["projection"].is_dir() else \
                (load_file(str(paths["projection"])), {})
            if "visual_projection.weight" not in pstate:
                raise CheckpointError(f"{paths['projection']} has no visual_projection.weight")
            proj = pstate["visual_projection.weight"]
        model = convert_hf_clip_vision(paths["model"], weight, bias, architecture, visual_projection=proj)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    urls = dict(urls or {})
    record = {
        "format": models.CLIP_FORMAT if source_format == "openai-clip" else models.CLASSIFIER_FORMAT,
        "architecture": architecture,
        "source_format": source_format,
        "sources": {role: {"path": str(p), "url": urls.get(role), "sha256": digests[role],
                           **({"files": files[role]} if role in files else {})}
                    for role, p in paths.items()},
        "converter": CONVERTER_NAME,
        "converter_version": CONVERTER_VERSION,
        "output": str(out_path),
    }
    provenance = dict(source=";".join(f"{r}={urls.get(r) or p}" for r, p in paths.items()),
                      source_sha256=";".join(f"{r}={d}" for r, d in digests.items()),
                      source_format=source_format, converter=CONVERTER_NAME, converter_version=CONVERTER_VERSION,
                      **entries)
    record.update(entries)
    if source_format == "openai-clip":
        models.save_clip(model, architecture, out_path, **provenance)
    else:
        record["num_classes"] = int(model.head.weight.shape[0])
        head = paths.get("head")
        if head is not None and head.suffix == ".safetensors":  # a head this workflow built names its classes
            names = read_metadata(head).get("classnames")
            model.classnames = names.split("\n") if names else None
        model.save(out_path, **provenance)
    record["sha256"] = models.sha256(out_path)
    side = Path(sidecar) if sidecar is not None else out_path.with_name(out_path.name + ".json")
    side.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
