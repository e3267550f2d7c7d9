"""The dataset protocol: class names, prompt templates, a test split on disk and a logit projection.

Every dataset of every suite is stored the same way: ``<root>/<class folder>/<image>`` (ImageFolder
layout), an ``index.csv`` (relative path, label) fixing the order that every cached array follows, and a
``dataset.json`` with the class names, templates, image count and projection. Loaders of new datasets
only have to write those two files; everything downstream reads them through :func:`load_dataset`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from .. import identity

if TYPE_CHECKING:
    import torch

INDEX = "index.csv"
META = "dataset.json"


class DatasetError(ValueError):
    """A dataset is missing, partial or inconsistent."""


# --- logit projections ---------------------------------------------------------------------------

Projection = Callable[["torch.Tensor"], "torch.Tensor"]


def identity_projection() -> Projection:
    return lambda logits: logits


def subset_projection(columns: Sequence[int]) -> Projection:
    """Keep the given columns (ImageNet-R / -A: their 200-class sublists)."""
    import torch

    idx = torch.as_tensor(list(columns), dtype=torch.long)
    return lambda logits: logits.index_select(-1, idx.to(logits.device))


def group_max_projection(groups: Sequence[Sequence[int]]) -> Projection:
    """Class j's logit is the max over the source columns of ``groups[j]`` (ObjectNet's mapping).

    Built once as a padded index tensor; the projection is a gather plus a masked max, no Python loop.
    """
    import torch

    width = max(len(g) for g in groups)
    idx = torch.tensor([list(g) + [g[0]] * (width - len(g)) for g in groups], dtype=torch.long)
    return lambda logits: logits[..., idx.to(logits.device)].amax(dim=-1)


PROJECTIONS: dict[str, Callable[..., Projection]] = {
    "identity": identity_projection,
    "subset": subset_projection,
    "group_max": group_max_projection,
}


# --- datasets --------------------------------------------------------------------------------------


@dataclass
class ImageFolderDataset:
    """A test split on disk, in the order of its index file: a map-style dataset (``len`` and indexing), as torch's
    ``DataLoader`` takes it; importing this module does not import torch (the image-decoding jobs do without it)."""

    name: str
    root: Path
    classnames: list[str]
    templates: list[str]
    paths: list[str]
    labels: list[int]
    projection_spec: dict = field(default_factory=lambda: {"kind": "identity"})
    transform: Callable | None = None
    pixels: Path | None = None  # decoded images (dawin.inputs.pixels): read instead of the JPEGs
    _array: object = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self):  # DataLoader workers map the decoded array themselves
        return {**self.__dict__, "_array": None}

    def __getitem__(self, i: int):
        if self.pixels is not None:
            if self._array is None:
                import numpy as np

                self._array = np.load(self.pixels, mmap_mode="r")
            img = self._array[i].copy()  # an (H, W, 3) uint8 array
            return (self.transform(img) if self.transform else img), self.labels[i]
        path = self.root / self.paths[i]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, SyntaxError, ValueError) as error:  # PIL: truncated, empty, not an image
            raise DatasetError(f"{path}: image {i} of dataset {self.name} cannot be decoded ({error}); the dataset is "
                               f"damaged: delete {self.root} and rerun snakemake to re-create it (or restore the "
                               "file from its source)") from None
        return (self.transform(img) if self.transform else img), self.labels[i]

    @property
    def projection(self) -> Projection:
        spec = dict(self.projection_spec)
        return PROJECTIONS[spec.pop("kind")](**spec)


CLASS_FIELDS = ("c", "", "0")
"""The placeholder a prompt template names its class with: ``{c}`` (task_vectors' and open_clip's templates are
``f"... {c}."`` lambdas), or the positional ``{}`` of OpenAI's CLIP notebook (``template.format(classname)``)."""


def check_templates(templates: Sequence[str], source: str | Path) -> None:
    """Every template holds exactly one class placeholder (:data:`CLASS_FIELDS`): a template without one gives every
    class the same prompt (a zero-shot head that moves the numbers and names nothing), one with another field fails
    deep inside the head's construction."""
    import string

    for template in templates:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as error:
            fields = [f"unbalanced braces: {error}"]
        if len(fields) != 1 or fields[0] not in CLASS_FIELDS:
            found = "no placeholder" if not fields else f"the field(s) {', '.join(repr('{' + f + '}') for f in fields)}"
            raise DatasetError(f"{source}: the prompt template {template!r} has {found}; a template names its class "
                               "exactly once, as {c} (or {}), e.g. 'a photo of a {c}.': fix the template")


def write_dataset(root: str | Path, name: str, classnames: Sequence[str], templates: Sequence[str],
                  items: Sequence[tuple[str, int]], projection: dict | None = None) -> None:
    """Write ``index.csv`` and ``dataset.json`` for images already saved under ``root``."""
    root = Path(root)
    with open(root / INDEX, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(items)
    meta = {"name": name, "classnames": list(classnames), "templates": list(templates),
            "n_images": len(items), "projection": projection or {"kind": "identity"}}
    (root / META).write_text(json.dumps(meta, indent=1) + "\n")


def load_dataset(root: str | Path, transform: Callable | None = None, check_files: bool = True) -> ImageFolderDataset:
    """Read a dataset written by :func:`write_dataset`, counting what is really on disk."""
    root = Path(root)
    if not (root / META).exists() or not (root / INDEX).exists():
        raise DatasetError(f"no dataset at {root}: expected {META} and {INDEX} there (run the dataset's rule first)")
    fix = f"re-create the dataset (delete {root} and rerun snakemake) or restore the file from its source"

    def not_a_description(detail):
        return DatasetError(f"{root / META}: not a dataset description ({detail}); {fix}")

    try:
        meta = json.loads((root / META).read_text())
    except ValueError as error:
        raise not_a_description(error) from None
    if not isinstance(meta, dict):
        raise not_a_description("not a JSON object")
    keys = [k for k in ("name", "classnames", "templates", "n_images") if k not in meta]
    if keys:
        raise not_a_description(f"no {keys[0]!r}")
    index = (root / INDEX).read_bytes()
    try:
        identity.check_staged_dataset(root, index)
    except identity.IdentityError as error:
        raise DatasetError(str(error)) from None
    try:
        rows = list(csv.DictReader(io.StringIO(index.decode(), newline="")))
        paths, labels = [r["path"] for r in rows], [int(r["label"]) for r in rows]
    except (ValueError, KeyError, TypeError, csv.Error) as error:  # UnicodeDecodeError is a ValueError
        detail = f"no column {error}" if isinstance(error, KeyError) else str(error)
        raise DatasetError(f"{root / INDEX}: not a dataset index ({detail}); {fix}") from None
    check_templates(meta["templates"], root / META)
    if not paths:
        raise DatasetError(f"{root}: the dataset has no images ({INDEX} lists none); re-create it (delete {root} "
                           "and rerun snakemake) or point the config at the right directory")
    if len(paths) != meta["n_images"]:
        raise DatasetError(f"{root}: {INDEX} lists {len(paths)} images, {META} expects {meta['n_images']}")
    if check_files:
        missing = [p for p in paths if not (root / p).is_file()]
        if missing:
            raise DatasetError(
                f"{root} is partial: expected {len(paths)} images, found {len(paths) - len(missing)} "
                f"(first missing: {missing[0]}); re-create or re-download it"
            )
    n_cls = len(meta["classnames"])
    if labels and not 0 <= min(labels) <= max(labels) < n_cls:
        raise DatasetError(f"{root}: labels outside 0..{n_cls - 1} in {INDEX} ({n_cls} classes in {META}); {fix}")
    return ImageFolderDataset(meta["name"], root, meta["classnames"], meta["templates"], paths, labels,
                              meta.get("projection", {"kind": "identity"}), transform)
