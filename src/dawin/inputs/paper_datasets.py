"""Normalisers for the robust fine-tuning test sets of the paper suite.

Each ``build_*`` function takes the data as its source distributes it (an extracted archive or a manual
copy), checks it (class folders, image count against the published size the caller states: config
``paper.expected``) and writes our protocol (:mod:`dawin.inputs.datasets`): ``index.csv`` and ``dataset.json`` via
:func:`dawin.inputs.datasets.write_dataset`, then a verification record ``verify.json`` (image count, class counts,
sha256 of ``index.csv``), written last, so its presence means the dataset was checked and written completely.

Where the images live. ``root`` is the dataset root that receives the three files; ``source`` is where the
images are. If ``source`` lies inside ``root`` (or ``root`` is omitted: then ``root = source``), index
paths are relative to ``root`` directly. Otherwise a symlink ``root/images -> source`` is made and the
paths go through it; nothing is copied, so moving the source breaks the dataset (which
:func:`dawin.inputs.datasets.load_dataset` then reports as partial).

Layouts accepted (the ``source`` argument may also be the parent folder holding the named sub-folder), with
the published image and class counts. The counts are not built in: every builder (and :func:`prepare`) takes
``expected_images`` and ``expected_classes`` as required keyword arguments, so a caller always states them
(``None`` explicitly skips that check); the workflow reads them from the config, ``paper.expected.<dataset>``
(``{images: N, classes: C}``; config/paper.yaml holds the published ones below), see :func:`expected_counts`.

========================  ======================================================  =========  ========
builder                   layout                                                  images     classes
========================  ======================================================  =========  ========
``imagenet_val``          ``<wnid>/*.JPEG`` (e.g. ``imagenet/val_in_folder`` or    50,000     1,000
                          ``imagenet/val``), or flat ``ILSVRC2012_val_*.JPEG``
                          plus a ground-truth file (see :func:`build_imagenet_val`)
``imagenetv2``            ``imagenetv2-matched-frequency-format-val/<0..999>/``    10,000     1,000
``imagenet_r``            ``imagenet-r/<wnid>/*``                                  30,000     200
``imagenet_a``            ``imagenet-a/<wnid>/*``                                  7,500      200
``imagenet_sketch``       ``sketch/<wnid>/*``                                      50,889     1,000
``objectnet``             ``objectnet-1.0/images/<folder>/*`` (only the 113        18,574     113
                          folders that map to ImageNet are used)
========================  ======================================================  =========  ========

Labels and projections (the class lists are shipped in ``dawin/data``, see :func:`load_class_lists`):

- ImageNet, V2, Sketch: label = ImageNet index in the standard order (sorted wnids, open_clip's
  ``IMAGENET_CLASSNAMES`` order); V2's folder name is that index. Projection: identity.
- ImageNet-R/-A: label = position of the folder's wnid in the sorted 200-wnid sublist (the ImageFolder
  order WiSE-FT uses); projection ``{"kind": "subset", "columns": <ImageNet indices of the 200>}``.
- ObjectNet: label = position of the folder in the sorted list of the 113 mapped folder names (WiSE-FT's
  ``ObjectNetBase``: ``sorted(folders_to_ids)``, by folder name, not by display name); class names are the
  ObjectNet labels lower-cased; projection ``{"kind": "group_max", "groups": <ImageNet indices per class>}``.
  The 2-pixel border crop is *not* applied, as in every upstream evaluation: WiSE-FT's ``ObjectNetBase``
  (copied by model-soups ``datasets/objectnet.py`` and naver-ai/dawin) assigns ``Compose([crop,
  preprocess])`` only after ``super().__init__()`` has built its test loader with the plain preprocessing,
  so the crop never reaches an image. ``border_crop`` (default 0) only records a requested crop in
  ``dataset.json["preprocess"]`` for the evaluation transform; :func:`border_crop` is that transform.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .datasets import INDEX, META, DatasetError, write_dataset
from .download import extract, fetch, sha256_file

DATA_DIR = Path(__file__).parent / "data"
VERIFY = "verify.json"
LINK = "images"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
WNID = re.compile(r"^n\d{8}$")
VAL_FILE = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)

# The config key that holds every robust set's published image and class counts ({images: N, classes: C} per
# dataset name of paper.datasets); the builders take them as required keyword arguments (see expected_counts).
EXPECTED_KEY = "paper.expected"

# Where the downloadable sets come from (primary first, then mirrors). md5 values are the ones torchvision-
# style loaders pin for the Berkeley tars; no sha256 is published for any of them.
SOURCES: dict[str, dict] = {
    "imagenetv2": {
        "urls": ["https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz",
                 # the original bucket; it answers 403 now but is kept as a last resort
                 "https://imagenetv2public.s3-us-west-2.amazonaws.com/imagenetv2-matched-frequency.tar.gz"],
        "archive": "imagenetv2-matched-frequency.tar.gz", "subdir": "imagenetv2-matched-frequency-format-val"},
    "imagenet_r": {"urls": ["https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"],
                   "archive": "imagenet-r.tar", "md5": "a61312130a589d0ca1a8fca1f2bd3337", "subdir": "imagenet-r"},
    "imagenet_a": {"urls": ["https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar"],
                   "archive": "imagenet-a.tar", "md5": "c3e55429088dc681f30d81f4726b6595", "subdir": "imagenet-a"},
    "imagenet_sketch": {
        "urls": ["https://huggingface.co/datasets/songweig/imagenet_sketch/resolve/main/data/ImageNet-Sketch.zip",
                 "https://huggingface.co/datasets/imagenet_sketch/resolve/main/data/ImageNet-Sketch.zip"],
        "archive": "ImageNet-Sketch.zip", "subdir": "sketch"},
}

INSTRUCTIONS = {
    "imagenet_heldout": (
        "the ID held-out split (model-soups' ImageNet2p) is part of the ImageNet (ILSVRC2012) train set, which "
        "is licence-gated: put its 1000 <wnid>/ folders (ILSVRC2012_img_train.tar, every class tar extracted, "
        "1,281,167 images) in place by hand and set paper.manual.imagenet_train in the config to that folder"),
    "imagenet_val": (
        "ImageNet (ILSVRC2012) validation set is licence-gated and must be put in place by hand: download "
        "ILSVRC2012_img_val.tar (and ILSVRC2012_devkit_t12.tar.gz) from https://image-net.org after accepting "
        "the terms, then EITHER sort it into class folders <source>/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG "
        "(1000 wnid folders, 50 images each; the usual 'val' or 'val_in_folder' layout) OR extract the tar flat "
        "into <source>/ILSVRC2012_val_XXXXXXXX.JPEG and put next to the images (or in the parent folder) one of: "
        "ILSVRC2012_validation_ground_truth.txt (from the devkit, data/ folder), ILSVRC2012_devkit_t12.tar.gz "
        "itself, or Kaggle's LOC_val_solution.csv."),
    "objectnet": (
        "ObjectNet is licence- and password-gated and must be put in place by hand: download objectnet-1.0.zip "
        "from https://objectnet.dev (accept the licence, use the password it gives), unzip it so that "
        "<source>/objectnet-1.0/images/<folder>/*.png exists (313 folders; the 113 that map to ImageNet, "
        "18,574 images, are used). A partial copy silently shrinks the test set, so every image is counted."),
    "imagenetv2": "download imagenetv2-matched-frequency.tar.gz (HF dataset vaishaal/ImageNetV2) and extract it",
    "imagenet_r": "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar and extract it",
    "imagenet_a": "download https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar and extract it",
    "imagenet_sketch": ("download ImageNet-Sketch.zip (HF dataset songweig/imagenet_sketch, data/ folder, or "
                        "Kaggle) and extract it to sketch/<wnid>/"),
}


# --- class lists -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubList:
    """A 200-class ImageNet sublist in label order."""

    wnids: tuple[str, ...]
    imagenet_indices: tuple[int, ...]


@dataclass(frozen=True)
class ObjectNetClass:
    folder: str
    label: str
    name: str
    imagenet_indices: tuple[int, ...]


@dataclass(frozen=True)
class ClassLists:
    imagenet_wnids: tuple[str, ...]
    imagenet_classnames: tuple[str, ...]
    templates: tuple[str, ...]
    imagenet_r: SubList
    imagenet_a: SubList
    objectnet: tuple[ObjectNetClass, ...]
    ilsvrc2012_id_wnids: tuple[str, ...]  # [ILSVRC2012_ID - 1] -> wnid

    def wnid_index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.imagenet_wnids)}


def _read(name: str) -> dict:
    return json.loads((DATA_DIR / name).read_text())


@functools.lru_cache(maxsize=1)
def load_class_lists() -> ClassLists:
    """The shipped class lists (see the ``sources`` field of each file in ``dawin/data``), consistency-checked."""
    inet = _read("imagenet.json")
    wnids = tuple(inet["wnids"])
    subs = {}
    for key in ("imagenet_r", "imagenet_a"):
        d = _read(f"{key}.json")
        subs[key] = SubList(tuple(d["wnids"]), tuple(d["imagenet_indices"]))
        if [wnids[i] for i in d["imagenet_indices"]] != d["wnids"]:
            raise DatasetError(f"dawin/inputs/data/{key}.json: wnids and imagenet_indices disagree")
    onet = tuple(ObjectNetClass(c["folder"], c["label"], c["name"], tuple(c["imagenet_indices"]))
                 for c in _read("objectnet.json")["classes"])
    lists = ClassLists(wnids, tuple(inet["classnames"]), tuple(inet["templates"]), subs["imagenet_r"],
                       subs["imagenet_a"], onet, tuple(_read("ilsvrc2012_ids.json")["wnids"]))
    if len(wnids) != 1000 or len(lists.imagenet_classnames) != 1000 or len(set(wnids)) != 1000:
        raise DatasetError("dawin/inputs/data/imagenet.json: expected 1000 distinct wnids and 1000 class names")
    return lists


def imagenet_templates() -> list[str]:
    """The 80 OpenAI ImageNet prompt templates as ``str.format`` strings with a ``{c}`` field."""
    return list(load_class_lists().templates)


# --- helpers ---------------------------------------------------------------------------------------


def border_crop(px: int = 2) -> Callable:
    """The ObjectNet border crop WiSE-FT defines (never in effect upstream; off by default here) as a PIL transform."""
    def crop(img):
        w, h = img.size
        return img.crop((px, px, w - px, h - px))
    return crop


def _descend(source: Path, candidates: Sequence[str]) -> Path:
    """``source`` itself, or its sub-folder named by the first existing candidate (relative paths)."""
    for c in candidates:
        if (source / c).is_dir():
            return source / c
    return source


def _images_in(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and not e.name.startswith(".")
                      and os.path.splitext(e.name)[1].lower() in IMAGE_EXTS)


def _subdirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _prefix(base: Path, root: Path) -> str:
    """Relative path from ``root`` to the image folder ``base``; links ``root/images`` to it if outside."""
    root.mkdir(parents=True, exist_ok=True)
    base_r, root_r = base.resolve(), root.resolve()
    if base_r == root_r:
        return ""
    if base_r.is_relative_to(root_r):
        return base_r.relative_to(root_r).as_posix() + "/"
    link = root / LINK
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise DatasetError(f"{link} exists and is not a link; cannot link the images at {base} there")
    link.symlink_to(base_r, target_is_directory=True)
    return LINK + "/"




def _check_count(name: str, base: Path, found: int, expected: int | None) -> None:
    if expected is not None and found != expected:
        state = "partial" if found < expected else "larger than the published set"
        raise DatasetError(f"{name} at {base} is {state}: expected {expected} images, found {found}; "
                           "re-download or complete it")


def _check_classes(name: str, base: Path, present: Sequence[str], required: Sequence[str],
                   expected: int | None) -> None:
    if expected is None or len(present) >= expected:
        return
    missing = [c for c in required if c not in set(present)]
    raise DatasetError(f"{name} at {base} is partial: expected {expected} class folders, found {len(present)} "
                       f"(missing e.g. {', '.join(missing[:5])})")


def _finish(name: str, root: Path, base: Path, classnames: Sequence[str], items: list[tuple[str, int]],
            projection: dict, expected_images: int | None, extra: Mapping | None = None,
            preprocess: Mapping | None = None) -> dict:
    """Write index.csv, dataset.json and (last) verify.json; return the verification record."""
    for stale in (VERIFY, META, INDEX):
        (root / stale).unlink(missing_ok=True)
    items.sort(key=lambda it: (it[1], it[0]))
    write_dataset(root, name, classnames, imagenet_templates(), items, projection)
    if preprocess:
        meta = json.loads((root / META).read_text())
        meta["preprocess"] = dict(preprocess)
        (root / META).write_text(json.dumps(meta, indent=1) + "\n")
    counts = [0] * len(classnames)
    for _, label in items:
        counts[label] += 1
    record = {"name": name, "n_images": len(items), "expected_images": expected_images,
              "n_classes": len(classnames), "n_classes_present": sum(c > 0 for c in counts),
              "images_per_class": {"min": min(counts), "max": max(counts)},
              "index_sha256": sha256_file(root / INDEX), "source": str(base.resolve()),
              "projection": projection["kind"], **(extra or {})}
    (root / VERIFY).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _folder_dataset(name: str, source: Path, root: Path | None, candidates: Sequence[str],
                    folder_label: Mapping[str, int], classnames: Sequence[str], projection: dict,
                    expected_images: int | None, expected_classes: int | None, *, strict: bool = True,
                    extra: Mapping | None = None, preprocess: Mapping | None = None) -> dict:
    """Shared body of the ImageFolder-style builders: ``<base>/<class folder>/<image>``."""
    source = Path(source)
    base = _descend(source, candidates)
    if not base.is_dir() or not any(d in folder_label for d in _subdirs(base)):
        raise DatasetError(f"{name}: no class folders found at {source} (looked for {', '.join(candidates)} "
                           f"there too); {INSTRUCTIONS[name]}")
    dirs = _subdirs(base)
    unknown = [d for d in dirs if d not in folder_label]
    if strict and unknown:
        raise DatasetError(f"{name} at {base}: {len(unknown)} folder(s) that are not classes of this set, "
                           f"e.g. {', '.join(unknown[:5])}; is this the right folder?")
    present = [d for d in dirs if d in folder_label]
    _check_classes(name, base, present, list(folder_label), expected_classes)
    items_rel = [(f"{d}/{f}", folder_label[d]) for d in present for f in _images_in(base / d)]
    _check_count(name, base, len(items_rel), expected_images)
    root = Path(root) if root is not None else base
    prefix = _prefix(base, root)
    items = [(prefix + p, label) for p, label in items_rel]
    extra = {"layout": "class folders", "n_folders_ignored": len(unknown), **(extra or {})}
    return _finish(name, root, base, classnames, items, projection, expected_images, extra, preprocess)


# --- builders --------------------------------------------------------------------------------------


def _read_ground_truth(path: Path, lists: ClassLists) -> dict[str, str]:
    """Map ``ILSVRC2012_val_XXXXXXXX`` (no extension) to its wnid, from any of the three standard files."""
    name = path.name
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as tf:
            member = next((m for m in tf if m.name.endswith("ILSVRC2012_validation_ground_truth.txt")), None)
            if member is None:
                raise DatasetError(f"{path} holds no ILSVRC2012_validation_ground_truth.txt")
            lines = tf.extractfile(member).read().decode().split()
        return _ids_to_wnids(lines, path, lists)
    if name.endswith(".csv"):  # Kaggle LOC_val_solution.csv: ImageId,PredictionString("wnid x y x y ...")
        with open(path, newline="") as f:
            return {r["ImageId"]: r["PredictionString"].split()[0] for r in csv.DictReader(f)}
    return _ids_to_wnids(path.read_text().split(), path, lists)


def _ids_to_wnids(ids: Sequence[str], path: Path, lists: ClassLists) -> dict[str, str]:
    """ILSVRC2012_validation_ground_truth.txt: line k holds the ILSVRC2012_ID (1..1000) of val image k."""
    try:
        return {f"ILSVRC2012_val_{k:08d}": lists.ilsvrc2012_id_wnids[int(v) - 1] for k, v in enumerate(ids, 1)}
    except (ValueError, IndexError) as e:
        raise DatasetError(f"{path}: not an ILSVRC2012 ground-truth file (ids must be 1..1000): {e}") from e


VAL_DIRS = ("val_in_folder", "val", "ILSVRC2012_img_val")
GROUND_TRUTH_NAMES = ("LOC_val_solution.csv", "ILSVRC2012_validation_ground_truth.txt",
                      "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
                      "ILSVRC2012_devkit_t12.tar.gz")


def build_imagenet_val(source: str | Path, root: str | Path | None = None, *, expected_images: int | None,
                       expected_classes: int | None, ground_truth: str | Path | None = None) -> dict:
    """ImageNet validation set (manual). Class folders ``<wnid>/`` (also found as ``val_in_folder``/``val``
    under ``source``), or the flat ``ILSVRC2012_val_XXXXXXXX.JPEG`` files with a ground-truth file.

    ``expected_images``/``expected_classes`` (required; ``None`` skips the check): the set's image and class
    counts, in the workflow from config ``paper.expected.<dataset>`` (published: 50,000 images, 1,000 classes).

    Ground truth for the flat layout (``ground_truth``, else looked up next to the images and in their
    parent under the names of :data:`GROUND_TRUTH_NAMES`): the devkit's
    ``ILSVRC2012_validation_ground_truth.txt`` (the standard one: line k is the ILSVRC2012_ID of image k,
    mapped to a wnid with the shipped meta.mat table ``ilsvrc2012_ids.json``), the devkit tarball itself,
    or Kaggle's ``LOC_val_solution.csv`` (first wnid of ``PredictionString``).
    """
    lists = load_class_lists()
    name, source = "imagenet_val", Path(source)
    wnid_idx = lists.wnid_index()
    proj = {"kind": "identity"}
    base = _descend(source, VAL_DIRS)
    if not base.is_dir():
        raise DatasetError(f"{name}: nothing at {source}. {INSTRUCTIONS[name]}")
    if any(WNID.match(d) for d in _subdirs(base)):
        return _folder_dataset(name, source, root, VAL_DIRS, wnid_idx,
                               lists.imagenet_classnames, proj, expected_images, expected_classes)
    files = [f for f in _images_in(base) if VAL_FILE.match(f)]
    if not files:
        raise DatasetError(f"{name}: no wnid folders and no ILSVRC2012_val_*.JPEG files at {base}. "
                           f"{INSTRUCTIONS[name]}")
    if ground_truth is None:
        for folder in (base, base.parent):
            ground_truth = next((folder / g for g in GROUND_TRUTH_NAMES if (folder / g).is_file()), None)
            if ground_truth is not None:
                break
        else:
            raise DatasetError(f"{name}: {len(files)} flat ILSVRC2012_val_*.JPEG files at {base} but no ground "
                               f"truth next to them or in {base.parent} (any of {', '.join(GROUND_TRUTH_NAMES)}); "
                               "pass ground_truth=... or sort the images into wnid folders")
    gt = _read_ground_truth(Path(ground_truth), lists)
    unlabelled = [f for f in files if os.path.splitext(f)[0] not in gt]
    if unlabelled:
        raise DatasetError(f"{name}: {len(unlabelled)} images at {base} have no label in {ground_truth} "
                           f"(e.g. {unlabelled[0]})")
    _check_count(name, base, len(files), expected_images)
    labels = [wnid_idx[gt[os.path.splitext(f)[0]]] for f in files]
    n_present = len(set(labels))
    if expected_classes is not None and n_present < expected_classes:
        raise DatasetError(f"{name} at {base} is partial: expected {expected_classes} classes, found {n_present}")
    root = Path(root) if root is not None else base
    prefix = _prefix(base, root)
    items = [(prefix + f, lab) for f, lab in zip(files, labels)]
    return _finish(name, root, base, lists.imagenet_classnames, items, proj, expected_images,
                   {"layout": "flat + ground truth", "ground_truth": str(Path(ground_truth).resolve())})


def build_imagenetv2(source: str | Path, root: str | Path | None = None, *, expected_images: int | None,
                     expected_classes: int | None) -> dict:
    """ImageNet-V2 matched-frequency: folders are the ImageNet indices ``0..999``.

    ``expected_images``/``expected_classes`` as for every builder: required, from config ``paper.expected``.
    """
    lists = load_class_lists()
    return _folder_dataset("imagenetv2", Path(source), root, (SOURCES["imagenetv2"]["subdir"],),
                           {str(i): i for i in range(1000)}, lists.imagenet_classnames, {"kind": "identity"},
                           expected_images, expected_classes)


def _build_sublist(name: str, sub: SubList, source, root, expected_images, expected_classes) -> dict:
    lists = load_class_lists()
    return _folder_dataset(name, Path(source), root, (SOURCES[name]["subdir"],),
                           {w: k for k, w in enumerate(sub.wnids)},
                           [lists.imagenet_classnames[i] for i in sub.imagenet_indices],
                           {"kind": "subset", "columns": list(sub.imagenet_indices)},
                           expected_images, expected_classes)


def build_imagenet_r(source: str | Path, root: str | Path | None = None, *, expected_images: int | None,
                     expected_classes: int | None) -> dict:
    """ImageNet-R: ``imagenet-r/<wnid>/``; labels index the 200-wnid sublist, projection ``subset``.

    ``expected_images``/``expected_classes`` as for every builder: required, from config ``paper.expected``.
    """
    return _build_sublist("imagenet_r", load_class_lists().imagenet_r, source, root, expected_images,
                          expected_classes)


def build_imagenet_a(source: str | Path, root: str | Path | None = None, *, expected_images: int | None,
                     expected_classes: int | None) -> dict:
    """ImageNet-A: ``imagenet-a/<wnid>/``; labels index the 200-wnid sublist, projection ``subset``.

    ``expected_images``/``expected_classes`` as for every builder: required, from config ``paper.expected``.
    """
    return _build_sublist("imagenet_a", load_class_lists().imagenet_a, source, root, expected_images,
                          expected_classes)


def build_imagenet_sketch(source: str | Path, root: str | Path | None = None, *, expected_images: int | None,
                          expected_classes: int | None) -> dict:
    """ImageNet-Sketch: ``sketch/<wnid>/`` (the zip's layout), 1000 classes, identity projection.

    ``expected_images``/``expected_classes`` as for every builder: required, from config ``paper.expected``.
    """
    lists = load_class_lists()
    return _folder_dataset("imagenet_sketch", Path(source), root, (SOURCES["imagenet_sketch"]["subdir"],),
                           lists.wnid_index(), lists.imagenet_classnames, {"kind": "identity"},
                           expected_images, expected_classes)


def build_objectnet(source: str | Path, root: str | Path | None = None, *, expected_images: int | None,
                    expected_classes: int | None, border_crop: int = 0) -> dict:
    """ObjectNet (manual): the 113 mapped folders of ``objectnet-1.0/images``; the other 200 are ignored.

    ``expected_images``/``expected_classes`` as for every builder: required, from config ``paper.expected``
    (published: 18,574 images in the 113 mapped folders).

    ``border_crop`` (pixels, default 0 = off, as upstream in effect) is only recorded in
    ``dataset.json["preprocess"]`` and ``verify.json``; images are never modified.
    """
    lists = load_class_lists()
    name, source = "objectnet", Path(source)
    if not source.exists():
        raise DatasetError(f"{name}: nothing at {source}. {INSTRUCTIONS[name]}")
    classes = lists.objectnet
    return _folder_dataset(name, source, root, ("objectnet-1.0/images", "images"),
                           {c.folder: k for k, c in enumerate(classes)}, [c.name for c in classes],
                           {"kind": "group_max", "groups": [list(c.imagenet_indices) for c in classes]},
                           expected_images, expected_classes, strict=False,
                           extra={"border_crop": border_crop},
                           preprocess={"border_crop": border_crop} if border_crop else None)


TRAIN_DIRS = ("train", "ILSVRC2012_img_train")


def imagefolder_samples(base: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """torchvision ``ImageFolder``'s classes and ``(path relative to base, class index)`` samples, in its order.

    The order is torchvision's own (``find_classes``: every sub-folder, sorted; ``make_dataset``: per class,
    sorted ``os.walk`` and sorted file names with an image extension), taken from torchvision itself, since
    model-soups' index file addresses images by their position in exactly this list.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(base))
        samples = make_dataset(str(base), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    except (FileNotFoundError, OSError) as e:
        raise DatasetError(f"cannot list {base} as torchvision's ImageFolder does: {e}") from e
    return classes, [(Path(p).relative_to(base).as_posix(), label) for p, label in samples]


def build_imagenet_heldout(source: str | Path, root: str | Path, *, indices: str | Path,
                           expected_train_images: int | None = 1_281_167, expected_images: int | None = 26_000,
                           expected_per_class: int | None = 26) -> dict:
    """The ID held-out split: model-soups' ImageNet2p, the ImageNet train images its index file marks.

    model-soups (``datasets/imagenet.py``: ``ImageNet2p``; naver-ai/dawin ``dawin_rft/datasets/imagenet.py``
    is the same) loads ``imagenet_98_idxs.npy`` (one 0/1 entry per ImageNet train image, in torchvision
    ``ImageFolder`` order) and evaluates on ``np.where(idxs)`` (26 images per class); its 72 fine-tuning runs
    were trained on the complement (``ImageNet98p``, ``finetune.py``). Any other draw would put their
    training images into the split that fits temperatures and picks grids and the greedy soup.

    ``source`` holds the train set's 1000 ``<wnid>/`` folders (manual). The folder must list exactly as the
    authors' copy did: the 1000 wnid folders and nothing else (an extra folder shifts every class index),
    ``expected_train_images`` images (the length of the index file). Anything else is an error that says
    what differs, since a shifted list would silently select other images.
    """
    import numpy as np

    lists = load_class_lists()
    name, source, indices = "imagenet_heldout", Path(source), Path(indices)
    base = _descend(source, TRAIN_DIRS)
    if not base.is_dir() or not any(WNID.match(d) for d in _subdirs(base)):
        raise DatasetError(f"{name}: no ImageNet train class folders at {source}. {INSTRUCTIONS[name]}")
    classes, samples = imagefolder_samples(base)
    if classes != list(lists.imagenet_wnids):
        missing = sorted(set(lists.imagenet_wnids) - set(classes))
        extra = sorted(set(classes) - set(lists.imagenet_wnids))
        raise DatasetError(f"{name}: {base} must hold exactly the 1000 ImageNet wnid folders, as torchvision's "
                           f"ImageFolder numbers every sub-folder; missing {len(missing)} (e.g. {', '.join(missing[:5])}),"
                           f" unexpected {len(extra)} (e.g. {', '.join(extra[:5])}). Move the others out of the "
                           "folder set as paper.manual.imagenet_train")
    try:
        idxs = np.load(indices, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{name}: {indices} is not a readable .npy index file ({e}); delete it and fetch it "
                           "again (snakemake --configfile config/paper.yaml paper_inputs)") from e
    if idxs.ndim != 1 or not np.isin(idxs, (0, 1)).all():
        raise DatasetError(f"{name}: {indices} must be a 0/1 vector (model-soups' imagenet_98_idxs.npy), got "
                           f"shape {idxs.shape} with values {np.unique(idxs)[:5]}")
    if len(samples) != len(idxs) or (expected_train_images is not None and len(samples) != expected_train_images):
        state = "partial" if len(samples) < len(idxs) else "larger than the authors' copy"
        raise DatasetError(f"{name}: the ImageNet train copy at {base} is {state}: {len(samples)} images, but "
                           f"{indices} marks positions in a list of {len(idxs)} (ILSVRC2012 train has "
                           f"{expected_train_images}); the held-out split would select other images. Complete "
                           "the copy (ILSVRC2012_img_train.tar, every class tar extracted) and remove extra files")
    chosen = np.flatnonzero(idxs.astype(int))
    items_rel = [samples[i] for i in chosen]
    counts = np.bincount([label for _, label in items_rel], minlength=len(classes))
    if expected_images is not None and len(items_rel) != expected_images:
        raise DatasetError(f"{name}: {indices} selects {len(items_rel)} images, ImageNet2p has {expected_images}; "
                           "is it model-soups' imagenet_98_idxs.npy?")
    if expected_per_class is not None and not (counts == expected_per_class).all():
        bad = int(np.flatnonzero(counts != expected_per_class)[0])
        raise DatasetError(f"{name}: {indices} selects {counts[bad]} images of class {classes[bad]}, ImageNet2p "
                           f"has {expected_per_class} per class: the train folder's order differs from the "
                           "authors' (renamed or re-encoded files?)")
    root = Path(root)
    prefix = _prefix(base, root)
    items = [(prefix + path, label) for path, label in items_rel]
    extra = {"layout": "class folders", "split": "model-soups ImageNet2p (imagenet_98_idxs.npy)",
             "indices_sha256": sha256_file(indices), "n_train_images": len(samples)}
    return _finish(name, root, base, lists.imagenet_classnames, items, {"kind": "identity"}, expected_images, extra)


BUILDERS: dict[str, Callable[..., dict]] = {
    "imagenet_heldout": build_imagenet_heldout,
    "imagenet_val": build_imagenet_val,
    "imagenetv2": build_imagenetv2,
    "imagenet_r": build_imagenet_r,
    "imagenet_a": build_imagenet_a,
    "imagenet_sketch": build_imagenet_sketch,
    "objectnet": build_objectnet,
}
MANUAL = ("imagenet_heldout", "imagenet_val", "objectnet")


HELDOUT_INDICES = "imagenet_98_idxs.npy"
"""model-soups' ImageNet2p index file: its name in the downloads folder and its key in the lock file."""

PAPER_INPUTS = "snakemake paper_inputs --configfile config/paper.yaml"
"""The command that stages every download (README, 'The paper suite'); compute jobs never download."""


def archive_lock_key(name: str) -> str:
    """The lock file's key of a downloadable set's archive."""
    return f"dataset:{name}/{SOURCES[name]['archive']}"


def fetch_archive(name: str, downloads: str | Path, *, urls: Sequence[str] | None = None, sha256: str | None = None,
                  md5: str | None = None, lock: str | Path | None = None, mirror: str | Path | None = None,
                  rewrites: Mapping[str, str] | None = None, progress: bool = True, offline: bool = False) -> Path:
    """Download one downloadable set's archive into ``downloads`` (nothing else: no extraction).

    ``urls``/``sha256``/``md5`` override :data:`SOURCES` (tests point them at a local server). A pre-staged
    copy in the mirror folder (:func:`dawin.inputs.checkpoints.mirror_path`: the URL's file name) is used instead
    of the network; one that fails its checks is named as the culprit. Archives without a published checksum
    (ImageNet-V2, ImageNet-Sketch) are checked against the sha256 that ``lock`` recorded when an archive was
    last accepted (:func:`prepare` records it after a complete extraction). ``md5`` replaces a published
    checksum; ``rewrites`` maps URL prefixes (:func:`dawin.inputs.download.rewrite_urls`).

    ``offline`` (the compute jobs): nothing is downloaded; an archive that is absent or fails a check stops
    with a message naming it and saying to run ``paper_inputs`` where there is network.
    """
    from .checkpoints import enforce_lock, mirror_path, place_copy, read_lock
    from .download import _check_file, html_page

    if name in MANUAL:
        raise DatasetError(f"{name} cannot be downloaded: {INSTRUCTIONS[name]}")
    spec = SOURCES[name]
    target = Path(downloads) / spec["archive"]
    md5 = md5 if (md5 or urls) else spec.get("md5")
    unchecked = lock is None or sha256 or md5

    def problem(path: Path) -> str | None:
        title = html_page(path)
        if title is not None:
            return f"is an HTML page{f' titled {title!r}' if title else ''}, not the archive"
        bad = _check_file(path, sha256, md5, None)
        expected = None if unchecked else read_lock(lock).get(archive_lock_key(name))
        if bad is None and expected and sha256_file(path) != expected:
            bad = f"sha256 {sha256_file(path)}, the lock file {lock} expects {expected}"
        return None if bad is None else f"fails its check ({bad})"

    if offline:
        found = problem(target) if target.is_file() else "is missing"
        if found is None:
            return target
        raise DatasetError(f"{name}: the staged archive {target} {found}. Compute jobs never download: delete "
                           f"{Path(downloads)} and run `{PAPER_INPUTS}` where there is network (the login node), "
                           "then this command again")
    staged = mirror_path({"url": list(urls or spec["urls"])}, mirror) if mirror else None  # the one mirror layout
    if staged is not None and staged.is_file() and not target.exists():
        bad = problem(staged)
        if bad is not None:
            raise DatasetError(f"{name}: the mirror file {staged} {bad}: the mirror holds a wrong or corrupt copy, "
                               f"used before the network. Replace {staged} with the right file, or remove it to "
                               "download from the network")
        target.parent.mkdir(parents=True, exist_ok=True)
        place_copy(staged, target)
    archive = fetch(list(urls or spec["urls"]), target, sha256, md5=md5, progress=progress, rewrites=rewrites)
    if not unchecked:
        enforce_lock(archive_lock_key(name), archive, lock, record=False)
    return archive


def prepare(name: str, root: str | Path, *, downloads: str | Path | None = None,
            urls: Sequence[str] | None = None, sha256: str | None = None, md5: str | None = None,
            lock: str | Path | None = None, mirror: str | Path | None = None,
            rewrites: Mapping[str, str] | None = None, progress: bool = True, offline: bool = False,
            expected_images: int | None, expected_classes: int | None, **build_kwargs) -> dict:
    """:func:`fetch_archive` (a no-op when the archive is already in ``downloads``, default
    ``<root>/../_downloads``), then extract into ``root/raw`` and normalise. Manual sets raise with instructions.

    ``expected_images``/``expected_classes`` (required, as for the builders: config ``paper.expected.<dataset>``;
    ``None`` skips a check) go to the builder with the other ``build_kwargs``. Once the set is built, an archive
    without a published checksum is accepted: its sha256 is recorded in ``lock``. ``offline`` (compute jobs):
    see :func:`fetch_archive`; a corrupt archive then says to fetch it again with ``paper_inputs``.
    """
    from .checkpoints import enforce_lock
    from .download import DownloadError

    root = Path(root)
    downloads = Path(downloads) if downloads is not None else root.parent / "_downloads"
    archive = fetch_archive(name, downloads, urls=urls, sha256=sha256, md5=md5, lock=lock, mirror=mirror,
                            rewrites=rewrites, progress=progress, offline=offline)
    try:
        raw = extract(archive, root / "raw")
    except DownloadError as e:
        if not offline:
            raise
        detail = f"is truncated or corrupt ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else f"fails ({e})"
        raise DatasetError(f"{name}: the staged archive {archive} {detail}. Compute jobs never download: delete "
                           f"{downloads} and run `{PAPER_INPUTS}` where there is network (the login node), then this "
                           "command again") from None
    record = BUILDERS[name](raw, root, expected_images=expected_images, expected_classes=expected_classes,
                            **build_kwargs)
    if lock is not None and not sha256 and not md5:
        enforce_lock(archive_lock_key(name), archive, lock)
    return record


def expected_counts(dataset: str, entry: Mapping | None) -> dict[str, int]:
    """The builder keyword arguments ``expected_images``/``expected_classes`` of the robust set ``dataset`` (its
    name in config ``paper.datasets``) from its config entry ``paper.expected.<dataset>`` (``{images: N,
    classes: C}``). A missing entry (or one without both counts) raises, naming the key and what to put there,
    since the builders no longer assume the published counts.
    """
    entry = dict(entry or {})
    missing = [k for k in ("images", "classes") if k not in entry]
    if missing:
        raise DatasetError(
            f"config {EXPECTED_KEY}.{dataset} {'is missing' if len(missing) == 2 else 'has no ' + missing[0]}: "
            f"put the set's published image and class counts there, {EXPECTED_KEY}.{dataset}: "
            "{images: <number of images>, classes: <number of classes>} (config/paper.yaml lists the published "
            "counts of every robust fine-tuning test set)")
    return {"expected_images": entry["images"], "expected_classes": entry["classes"]}
