"""Decoding a dataset's images once, without torch: the job behind ``rule decode_images``.

The decoding half of open_clip 3.3's evaluation transform (``image_transform`` in ``open_clip/transform.py``) is a
few PIL calls: for ``resize_mode`` "shortest" with a square size, torchvision's ``Resize(size)`` then
``CenterCrop(size)``; for "squash", ``Resize((h, w))``; then RGB. :func:`pil_pixels` makes them as torchvision 0.29
does on PIL images (``transforms/functional.py``: ``_compute_resized_output_size``, ``resize`` returning the image
unchanged when it has the size already, ``center_crop``'s rounding; ``transforms/_functional_pil.py``:
``Image.resize`` and ``Image.crop``), so a decoding job imports neither torch nor open_clip, whose import is most of
a small job's time. ``tests/test_pixels.py`` holds it equal to open_clip's own transform, array for array, on
images of many shapes. Other preprocessings ("longest", a non-square "shortest") take open_clip's transform, cut
before its tensor conversion (:func:`split_transform`, which imports open_clip when called). The file layout is
:mod:`dawin.inputs.pixels`', which reads the files and imports this module (never the other way round: a decoding
job runs none of the model code).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..provenance import KEY, entry, file_sha256
from .architectures import pixels_key
from .datasets import INDEX, load_dataset


def index_digest(root: str | Path) -> str:
    """sha256 of the dataset's index file: the order and labels the decoded array follows."""
    return file_sha256(Path(root) / INDEX)


def sidecar(path: str | Path) -> Path:
    """The JSON beside a decoded array: its key, dataset, image count, index digest, byte size (a truncated array is
    found before it is mapped) and provenance record."""
    return Path(path).with_suffix(".json")


def _resized(img: Image.Image, size: tuple[int, int], interpolation: int) -> Image.Image:
    """torchvision's ``resize`` of a PIL image to (width, height) ``size``: unchanged when it has that size."""
    return img if img.size == size else img.resize(size, interpolation)


def _shortest(size: int, interpolation: int, img: Image.Image) -> np.ndarray:
    width, height = img.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)  # >= size: no padding in the crop below
    img = _resized(img, (size, new_long) if width <= height else (new_long, size), interpolation)
    top, left = int(round((img.height - size) / 2.0)), int(round((img.width - size) / 2.0))
    return np.asarray(img.crop((left, top, left + size, top + size)).convert("RGB"))


def _squash(size: tuple[int, int], interpolation: int, img: Image.Image) -> np.ndarray:
    return np.asarray(_resized(img, size, interpolation).convert("RGB"))


def split_transform(cfg: Mapping) -> tuple[Callable, Callable]:
    """open_clip's evaluation transform for ``cfg`` (a ``preprocess_cfg``) in two: (PIL image -> uint8 HWC array,
    uint8 HWC array -> normalised CHW float tensor). Composed, they equal the transform itself."""
    from dawin.inputs.openclip import open_clip  # noqa: F401, I001 - first: open_clip without timm and transformers (see there)
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from torchvision.transforms import Compose, Normalize, ToTensor

    steps = image_transform_v2(PreprocessCfg(**cfg), is_train=False).transforms
    cut = next((i for i, t in enumerate(steps) if isinstance(t, ToTensor)), None)
    if cut is None or [type(t) for t in steps[cut + 1:]] != [Normalize]:
        raise TypeError(f"unexpected open_clip evaluation transform {steps}: expected ... ToTensor, Normalize")
    return Compose([*steps[:cut], np.asarray]), Compose(steps[cut:])


def pil_pixels(cfg: Mapping) -> Callable[[Image.Image], np.ndarray] | None:
    """PIL image -> (H, W, 3) uint8 array for the preprocessing ``cfg``, or None where only open_clip's transform
    does it. open_clip interpolates bilinearly for "bilinear" and bicubically for anything else."""
    size = cfg["size"]
    h, w = (size, size) if isinstance(size, int) else size
    interpolation = Image.BILINEAR if cfg["interpolation"] == "bilinear" else Image.BICUBIC
    if cfg["resize_mode"] == "squash":
        return partial(_squash, (w, h), interpolation)
    if cfg["resize_mode"] in ("shortest", None) and h == w:
        return partial(_shortest, h, interpolation)
    return None


_DATA = None  # a worker process's dataset (set by its initializer: the dataset is pickled once per worker)


def _set_data(data) -> None:
    global _DATA
    _DATA = data


def _decode(i: int) -> np.ndarray:
    return _DATA[i][0]


def write_pixels(root: str | Path, cfg: Mapping, path: str | Path, num_workers: int = 0, chunksize: int = 64) -> int:
    """Decode the dataset at ``root`` with ``cfg``'s resize and crop into ``path`` (.npy) and its :func:`sidecar`;
    returns the image count. Written to a temporary name and moved into place when complete, so a failed run
    leaves no partial cache."""
    path = Path(path)
    to_pixels = pil_pixels(cfg) or split_transform(cfg)[0]
    data = load_dataset(root, transform=to_pixels)
    size = cfg["size"]
    h, w = (size, size) if isinstance(size, int) else size
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(data), h, w, 3))
        if num_workers:
            with multiprocessing.get_context("fork").Pool(num_workers, _set_data, (data,)) as pool:
                images = pool.imap(_decode, range(len(data)), chunksize=chunksize)
                for i, img in enumerate(tqdm(images, total=len(data), desc=f"decode {data.name}", leave=False)):
                    out[i] = img
        else:
            for i in tqdm(range(len(data)), desc=f"decode {data.name}", leave=False):
                out[i] = data[i][0]
        out.flush()
        del out
        meta = {"key": pixels_key(cfg), "dataset": data.name, "n_images": len(data), "index_sha256": index_digest(root),
                "bytes": os.path.getsize(tmp), KEY: entry(datasets=[root])}
        sidecar(path).write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(data)
