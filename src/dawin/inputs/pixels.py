"""Images decoded once: a dataset's pixels after resize and crop, stored as uint8, read by every later pass.

Every pass over a test set (logit caching, the WiSE-FT sweep, merged evaluation, soups, profiling, the
multi-task evaluations) would otherwise decode its JPEGs again, and on a GPU decoding is the bottleneck. One
job per (dataset, preprocessing) runs the evaluation transform up to the tensor conversion (resize, centre
crop, RGB: open_clip 3.3's ``image_transform_v2`` in ``open_clip/transform.py``, without torch:
:mod:`dawin.inputs.decode`) and writes the result to ``<cache>/<dataset>/<key>.npy``,
an (N, H, W, 3) uint8 array in the dataset's index order, with ``<key>.json`` beside it (the key, the dataset
and a digest of its index). ``key`` is :func:`dawin.inputs.architectures.pixels_key`: backbones that resize and
crop alike share one file. Readers memory-map the array and apply the rest of the model's own transform
(``ToTensor``, ``Normalize``) to each image, so the model sees bit-identical inputs to the JPEG path.

Size: N x H x W x 3 bytes, e.g. 7.5 GB for ImageNet's 50,000 validation images at 224 px.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .. import identity
from .architectures import pixels_key
from .datasets import DatasetError, ImageFolderDataset, load_dataset
from .decode import index_digest, sidecar, split_transform
from .models import preprocess


def with_pixels(data: ImageFolderDataset, path: str | Path, cfg: Mapping) -> ImageFolderDataset:
    """``data`` reading its images from the decoded cache ``path`` (instead of its JPEGs) through the rest of the
    transform of ``cfg`` (the model's ``preprocess_cfg``). The cache must hold this dataset, in this index order,
    decoded for this preprocessing: anything else is an error naming the file and the fix."""
    path = Path(path)
    fix = f"delete {path} and rerun snakemake to decode the images again"
    if not path.is_file() or not sidecar(path).is_file():
        raise DatasetError(f"decoded images not found: {path} (or its .json); run snakemake to decode them")
    meta = json.loads(sidecar(path).read_text())
    try:
        identity.check_pixels(path, meta, key=pixels_key(cfg), dataset=data, index_sha256=index_digest(data.root))
    except identity.IdentityError as error:
        raise DatasetError(str(error)) from None
    try:
        shape = np.load(path, mmap_mode="r").shape
    except ValueError as error:  # a sidecar from before the byte size was recorded: the header still gives the shape
        raise DatasetError(f"{path} cannot be read ({error}): it is truncated or was overwritten; {fix}") from None
    if shape[0] != len(data):
        raise DatasetError(f"{path} holds {shape[0]} images, dataset {data.name} has {len(data)}: {fix}")
    return dataclasses.replace(data, pixels=path, transform=split_transform(cfg)[1])


def open_dataset(root: str | Path, visual: torch.nn.Module, decoded: Mapping[str, str] | None = None) -> ImageFolderDataset:
    """The dataset at ``root`` under the evaluation transform of the image tower ``visual``: from its decoded images
    when ``decoded`` (see :func:`by_root`) has them (the same tensors, see :func:`with_pixels`), else its JPEGs.
    Given a classifier rather than its tower, its head's classes must be the dataset's (after the dataset's
    projection), in order (:func:`dawin.identity.check_classes`)."""
    cfg = getattr(visual, "visual", visual).preprocess_cfg
    data = load_dataset(root, transform=preprocess(visual))
    identity.check_classes(getattr(visual, "classnames", None), data, getattr(visual, "source", None) or "the model")
    pixels = (decoded or {}).get(str(root))
    return data if pixels is None else with_pixels(data, pixels, cfg)


def by_root(roots: str | Sequence[str], pixels: str | Sequence[str] = ()) -> dict[str, str]:
    """{dataset directory: its decoded images} from a rule's ``data`` and ``pixels`` inputs (one file or a list
    each, in the same order); empty when the images are not decoded (config ``images.decoded: false``)."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    pixels = [pixels] if isinstance(pixels, (str, Path)) else list(pixels)
    if pixels and len(pixels) != len(roots):
        raise ValueError(f"{len(pixels)} decoded-image files for {len(roots)} datasets")
    return {str(r): str(p) for r, p in zip(roots, pixels)}
