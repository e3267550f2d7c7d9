"""The 8 multi-task datasets of task arithmetic (DaWin's multi-task setup), test and train splits, in our
dataset protocol.

SUN397, Stanford Cars, RESISC45, EuroSAT, SVHN, GTSRB, MNIST and DTD: class names in label order, prompt
templates and expected sizes are shipped in ``dawin/inputs/data/multitask.json`` (see its ``sources`` fields);
:func:`load_task_metadata` reads and checks them.

Each ``build_*`` function converts one split (``split="test"``, the default, or ``"train"``), as its source
distributes it, into the protocol of :mod:`dawin.inputs.datasets`: the images are written under
``<root>/<split>/<label:03d>/<i:06d>.<ext>`` (``i`` = position in the source's order of that split), ``index.csv``
lists them in that order (so the split and its order are explicit and no random split is ever drawn),
``dataset.json`` carries the task's class names and prompt templates (the
zero-shot head comes from those prompts), and ``verify.json`` (image count, class counts, sha256 of
``index.csv``, where the data came from) is written last: its presence means the dataset was checked and
written completely. Encoded images (parquet bytes, JPEG/PPM files) are written byte for byte with the
extension of their format; arrays (SVHN's .mat, MNIST's idx files) are written as PNG (lossless).

The test splits are what every method is evaluated on (and AdaMerging's unlabelled data). The train splits
are where Fisher merging and RegMean take their examples, as FusionBench does (``clip_fisher_merging.yaml``,
``clip_regmean.yaml``: 256 examples from each task's train split): the same sources, split ``train``
(``data/train-*.parquet``, ``train_32x32.mat``, ``train-*-idx*-ubyte.gz``, GTSRB's training zip, DTD's
``labels/train1.txt``), with the expected sizes of :data:`EXPECTED_TRAIN_IMAGES`.

========================  ===================================================================  ========  =======
task                      sources (first = default of :func:`prepare_task`)                    images    classes
========================  ===================================================================  ========  =======
``sun397``                HF ``tanganke/sun397`` ``data/test-*.parquet``                        19,850    397
``stanford_cars``         HF ``tanganke/stanford_cars``                                         8,041     196
``resisc45``              HF ``tanganke/resisc45``                                              6,300     45
``eurosat``               HF ``tanganke/eurosat`` (task_vectors' own split was never published)  2,700     10
``svhn``                  ``test_32x32.mat`` (torchvision's source)                              26,032    10
``gtsrb``                 HF ``tanganke/gtsrb``; or torchvision's zips (``via="torchvision"``)   12,630    43
``mnist``                 ``t10k-*-idx*-ubyte.gz`` (torchvision's mirrors)                       10,000    10
``dtd``                   HF ``tanganke/dtd``; or VGG ``dtd-r1.0.1.tar.gz`` test1 (``via="vgg"``)  1,880     47
========================  ===================================================================  ========  =======

Labels: for the HF parquet shards the label integers are the source's (its ``ClassLabel``); the ClassLabel
names embedded in the shards are compared with the shipped class names (case, ``_`` and spacing ignored)
and a disagreement is an error. SVHN's digit 0 is stored as 10 and mapped to 0 (as torchvision does). DTD
from the VGG tarball: label = position of the folder in the sorted 47 folder names (torchvision's DTD).
GTSRB from torchvision's files: label = ``ClassId`` of ``GT-final_test.csv``, in its row order (test);
label = the ``<ClassId:05d>`` class folder of ``GTSRB/Training`` (or ``GTSRB/Final_Training/Images``), folders and
files sorted, as torchvision's ``GTSRB(split="train")`` (train).

Reading parquet needs ``pyarrow``; it is imported only when a parquet shard is read.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import gzip
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from .datasets import INDEX, META, DatasetError, write_dataset
from .download import DownloadError, fetch, fetch_and_extract, sha256_file
from .paper_datasets import DATA_DIR, VERIFY, _check_count

SPLIT_DIR = "test"  # the default split (and the folder its images are written to)
SPLITS = ("test", "train")
HF_ENDPOINT = "https://huggingface.co"
TASKS = ("sun397", "stanford_cars", "resisc45", "eurosat", "svhn", "gtsrb", "mnist", "dtd")

EXPECTED_IMAGES = {"sun397": 19_850, "stanford_cars": 8_041, "resisc45": 6_300, "eurosat": 2_700,
                   "svhn": 26_032, "gtsrb": 12_630, "mnist": 10_000, "dtd": 1_880}
# Train split sizes per source: the published counts (multitask.json cites each), None where no exact count was
# confirmed (the tanganke/* dataset viewers show only rounded row counts for sun397, stanford_cars, eurosat). The
# HF DTD train split (3,760) is not the VGG tarball's train1 list (1,880).
EXPECTED_TRAIN_IMAGES: dict[str, dict[str, int | None]] = {
    "sun397": {"hf": None}, "stanford_cars": {"hf": None}, "resisc45": {"hf": 18_900}, "eurosat": {"hf": None},
    "svhn": {"torchvision": 73_257}, "gtsrb": {"hf": 26_640, "torchvision": 26_640},
    "mnist": {"torchvision": 60_000}, "dtd": {"hf": 3_760, "vgg": 1_880}}
EXPECTED_CLASSES = {"sun397": 397, "stanford_cars": 196, "resisc45": 45, "eurosat": 10, "svhn": 10, "gtsrb": 43,
                    "mnist": 10, "dtd": 47}


# --- shipped metadata ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskInfo:
    """One multi-task test set: label k <-> ``classnames[k]``; templates are ``str.format`` strings with ``{c}``."""

    name: str
    task_vectors_name: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    expected_images: int
    sources: dict = field(default_factory=dict, compare=False)


@functools.lru_cache(maxsize=1)
def _raw() -> dict:
    return json.loads((DATA_DIR / "multitask.json").read_text())


@functools.lru_cache(maxsize=1)
def load_task_metadata() -> dict[str, TaskInfo]:
    """The shipped class names, templates and sizes of the 8 tasks, consistency-checked."""
    tasks = {}
    for name, t in _raw()["tasks"].items():
        names, templates = tuple(t["classnames"]), tuple(t["templates"])
        if len(set(names)) != len(names) or len(names) != EXPECTED_CLASSES.get(name):
            raise DatasetError(f"dawin/inputs/data/multitask.json: {name}: expected {EXPECTED_CLASSES.get(name)} distinct "
                               f"class names, found {len(set(names))}")
        if not templates or any("{c}" not in tpl for tpl in templates):
            raise DatasetError(f"dawin/inputs/data/multitask.json: {name}: every template needs a {{c}} field")
        if t["expected_images"] != EXPECTED_IMAGES.get(name):
            raise DatasetError(f"dawin/inputs/data/multitask.json: {name}: expected_images {t['expected_images']} "
                               f"disagrees with EXPECTED_IMAGES {EXPECTED_IMAGES.get(name)}")
        train = {spec["id"]: spec["train"]["expected_images"] for spec in t["sources"]["data"]}
        if train != EXPECTED_TRAIN_IMAGES.get(name):
            raise DatasetError(f"dawin/inputs/data/multitask.json: {name}: train expected_images {train} disagree with "
                               f"EXPECTED_TRAIN_IMAGES {EXPECTED_TRAIN_IMAGES.get(name)}")
        tasks[name] = TaskInfo(name, t["task_vectors_name"], names, templates, t["expected_images"], t["sources"])
    if tuple(tasks) != TASKS:
        raise DatasetError(f"dawin/inputs/data/multitask.json: tasks {tuple(tasks)} != {TASKS}")
    return tasks


def task_info(name: str) -> TaskInfo:
    try:
        return load_task_metadata()[name]
    except KeyError:
        raise DatasetError(f"unknown multi-task dataset {name!r}; one of {', '.join(TASKS)}") from None


# Where the data comes from, per task: {source id: spec}, the first being the default (from multitask.json).
SOURCES: dict[str, dict[str, dict]] = {
    name: {spec["id"]: spec for spec in t["sources"]["data"]} for name, t in _raw()["tasks"].items()}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    return split


def source_spec(name: str, via: str, split: str = "test") -> dict:
    """The download spec of source ``via`` for ``split``: the test spec, with its ``train`` entry merged in."""
    spec = SOURCES[name][via]
    if _check_split(split) == "test":
        return spec
    return {**{k: v for k, v in spec.items() if k != "train"}, **spec["train"]}


def expected_split_images(name: str, split: str = "test", via: str | None = None) -> int | None:
    """The published size of ``split`` of task ``name`` from source ``via`` (default: the default source)."""
    task_info(name)
    if _check_split(split) == "test":
        return EXPECTED_IMAGES[name]
    return EXPECTED_TRAIN_IMAGES[name][via or next(iter(SOURCES[name]))]


_DEFAULT = object()  # builders' expected_images default: the published size of the split and layout read


def _expected(name: str, split: str, via: str, given) -> int | None:
    return expected_split_images(name, split, via) if given is _DEFAULT else given


def instructions(name: str, split: str = "test") -> str:
    """How to get ``split`` of task ``name`` by hand, for error messages."""
    parts = []
    for spec in SOURCES[name].values():
        if spec["kind"] == "hf_parquet":
            parts.append(f"download the {split} shards data/{split}-*.parquet of the HF dataset {spec['repo']} "
                         f"(e.g. `hf download {spec['repo']} --repo-type dataset --include 'data/{split}-*' "
                         "--local-dir <dir>`) and pass <dir> (reading them needs pyarrow)")
        elif name == "svhn":
            parts.append(f"download {split}_32x32.mat from http://ufldl.stanford.edu/housenumbers/ and pass the file "
                         "or its folder")
        elif name == "mnist":
            stem = _MNIST_STEM[split]
            parts.append(f"download {stem}-images-idx3-ubyte.gz and {stem}-labels-idx1-ubyte.gz (e.g. from "
                         "https://ossci-datasets.s3.amazonaws.com/mnist/) into one folder and pass it")
        elif name == "gtsrb" and split == "test":
            parts.append("or extract torchvision's GTSRB_Final_Test_Images.zip and GTSRB_Final_Test_GT.zip "
                         "(sid.erda.dk) into one folder (GT-final_test.csv and GTSRB/Final_Test/Images/*.ppm) and "
                         "pass it")
        elif name == "gtsrb":
            parts.append("or extract torchvision's GTSRB-Training_fixed.zip (sid.erda.dk) and pass the folder holding "
                         "GTSRB/Training/<class>/*.ppm")
        elif name == "dtd":
            parts.append("or extract dtd-r1.0.1.tar.gz (robots.ox.ac.uk/~vgg/data/dtd) and pass the folder "
                         f"holding dtd/images/<class>/ and dtd/labels/{split}1.txt")
    return "; ".join(parts)


_MNIST_STEM = {"test": "t10k", "train": "train"}
INSTRUCTIONS = {name: instructions(name) for name in TASKS}


# --- writing ---------------------------------------------------------------------------------------

Payload = bytes | np.ndarray | Path
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "PPM": ".ppm", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif",
               "WEBP": ".webp"}


def _image_ext(data: bytes, what: str) -> str:
    """The file extension of encoded image bytes (from the header); a DatasetError if they are no image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{what} is not a readable image ({type(e).__name__}: {e})") from e
    return _FORMAT_EXT.get(fmt or "", "." + (fmt or "img").lower())


def _write_split(name: str, root: Path, rows: Iterable[tuple[Payload, int]], n_classes: int,
                 split: str = SPLIT_DIR) -> list[tuple[str, int]]:
    """Write every row to ``<root>/<split>/<label:03d>/<i:06d>.<ext>`` (via a temporary sibling, moved at the end)."""
    final, tmp = root / split, root / f".{split}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    items: list[tuple[str, int]] = []
    made: set[str] = set()
    try:
        for i, (payload, label) in enumerate(rows):
            label = int(label)
            if not 0 <= label < n_classes:
                raise DatasetError(f"{name}: {split} image {i} has label {label}, outside 0..{n_classes - 1}")
            folder = f"{label:03d}"
            if folder not in made:
                (tmp / folder).mkdir()
                made.add(folder)
            if isinstance(payload, np.ndarray):
                rel = f"{folder}/{i:06d}.png"
                Image.fromarray(payload).save(tmp / rel, format="PNG")
            else:
                is_file = isinstance(payload, Path)
                data = payload.read_bytes() if is_file else bytes(payload)
                what = f"{name}: {split} image {i}" + (f" ({payload})" if is_file else "")
                rel = f"{folder}/{i:06d}{_image_ext(data, what)}"
                (tmp / rel).write_bytes(data)
            items.append((f"{split}/{rel}", label))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return items


def _build(name: str, root: str | Path, rows: Iterable[tuple[Payload, int]], n_images: int, source: str,
           expected_images: int | None, expected_classes: int | None, extra: Mapping | None,
           split: str = SPLIT_DIR) -> dict:
    """Check the count, write the images, then index.csv, dataset.json and (last) verify.json."""
    info = task_info(name)
    _check_count(name, source, n_images, expected_images)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in (VERIFY, META, INDEX):
        (root / stale).unlink(missing_ok=True)
    items = _write_split(name, root, rows, len(info.classnames), split)
    if len(items) != n_images:  # a source that announced one size and delivered another
        _check_count(name, source, len(items), n_images)
    counts = np.bincount([label for _, label in items], minlength=len(info.classnames))
    n_present = int((counts > 0).sum())
    if expected_classes is not None and n_present < expected_classes:
        missing = [info.classnames[k] for k in np.flatnonzero(counts == 0)[:5]]
        raise DatasetError(f"{name} at {source} is partial: expected {expected_classes} classes, found {n_present} "
                           f"(missing e.g. {', '.join(missing)})")
    write_dataset(root, name, info.classnames, info.templates, items)
    meta = json.loads((root / META).read_text())
    meta.update({"split": split, "task_vectors_name": info.task_vectors_name})
    (root / META).write_text(json.dumps(meta, indent=1) + "\n")
    record = {"name": name, "split": split, "n_images": len(items), "expected_images": expected_images,
              "n_classes": len(info.classnames), "n_classes_present": n_present,
              "images_per_class": {"min": int(counts.min()), "max": int(counts.max())},
              "index_sha256": sha256_file(root / INDEX), "source": source, **(extra or {})}
    (root / VERIFY).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _find(source: Path, rel: str, depth: int = 3) -> Path | None:
    """``source/rel`` or ``<sub folder>/rel`` up to ``depth`` folders below ``source`` (breadth first, sorted)."""
    level = [source]
    for _ in range(depth + 1):
        nxt: list[Path] = []
        for d in level:
            if (d / rel).exists():
                return d / rel
            try:
                nxt += sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                pass
        level = nxt
    return None


# --- HF parquet shards -----------------------------------------------------------------------------

SHARD = re.compile(r"^(?P<split>.+?)-(?P<k>\d{5})-of-(?P<n>\d{5})(?:-[0-9a-f]+)?\.parquet$")


def parquet_shards(source: str | Path | Sequence[str | Path], split: str = "test") -> list[Path]:
    """The ``<split>-KKKKK-of-NNNNN.parquet`` shards at ``source`` (a file, a list, or a folder holding them
    directly or in ``data/``), in shard order; a DatasetError if a shard of the announced ``NNNNN`` is missing."""
    if isinstance(source, (str, Path)):
        source = Path(source)
        if source.is_file():
            files = [source]
        else:
            files = []
            for folder in (source / "data", source):
                if folder.is_dir():
                    files = sorted(folder.glob(f"{split}-*.parquet"))
                    if files:
                        break
    else:
        files = [Path(f) for f in source]
    parsed = [SHARD.match(f.name) for f in files]
    if files and all(parsed):
        files = [f for _, f in sorted(zip([int(m["k"]) for m in parsed], files), key=lambda t: t[0])]
        ks = sorted(int(m["k"]) for m in parsed)
        ns = {int(m["n"]) for m in parsed}
        if len(ns) != 1 or ks != list(range(next(iter(ns)))):
            n = max(ns)
            missing = sorted(set(range(n)) - set(ks))
            raise DatasetError(f"the parquet shards at {files[0].parent} are partial or mixed: expected shards "
                               f"00000..{n - 1:05d} of {n:05d}, found {len(ks)} ({', '.join(f.name for f in files[:3])}"
                               f"{', ...' if len(files) > 3 else ''}; missing e.g. {missing[:3]}); re-download them")
    return files


def hf_features(schema_metadata: Mapping | None) -> dict | None:
    """The HF ``datasets`` features stored in a parquet schema's metadata (key ``huggingface``), if any."""
    if not schema_metadata:
        return None
    raw = schema_metadata.get(b"huggingface", schema_metadata.get("huggingface"))
    if raw is None:
        return None
    try:
        info = json.loads(raw)
    except (TypeError, ValueError):
        return None
    feats = info.get("info", {}).get("features") or info.get("features")
    return feats if isinstance(feats, dict) else None


def _hf_columns(features: dict | None, columns: Sequence[str]) -> tuple[str | None, str | None, list[str] | None]:
    """(image column, label column, ClassLabel names) from the HF features, else from the usual column names."""
    image = label = names = None
    for col, feat in (features or {}).items():
        kind = feat.get("_type") if isinstance(feat, dict) else None
        if kind == "Image" and image is None:
            image = col
        elif kind == "ClassLabel" and label is None:
            label, names = col, feat.get("names")
    image = image or next((c for c in ("image", "img") if c in columns), None)
    label = label or next((c for c in ("label", "labels") if c in columns), None)
    return image, label, names


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", " ", str(name).strip().lower())


def check_label_names(name: str, found: Sequence[str], where: str) -> None:
    """A DatasetError unless ``found`` (a source's label names in label order) are this task's class names."""
    expected = task_info(name).classnames
    if [_norm(x) for x in found] == [_norm(x) for x in expected]:
        return
    if len(found) != len(expected):
        raise DatasetError(f"{name}: {where} has {len(found)} label names, expected {len(expected)}")
    k = next(i for i, (a, b) in enumerate(zip(found, expected)) if _norm(a) != _norm(b))
    raise DatasetError(f"{name}: the label order of {where} differs from dawin/inputs/data/multitask.json: label {k} is "
                       f"{found[k]!r} there, {expected[k]!r} here; refusing to write labels that may not match the "
                       "class names (pass check_label_names=False to override)")


def _pyarrow_parquet(name: str):
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        alt = {"gtsrb": "; or use torchvision's files (via='torchvision')",
               "dtd": "; or use the VGG tarball (via='vgg')"}.get(name, "")
        raise DatasetError(f"{name}: reading the HF parquet shards needs pyarrow, which is not installed "
                           f"(pip install pyarrow){alt}") from e
    return pq


def _parquet_source(name: str, files: Sequence[Path], check_names: bool, split: str = SPLIT_DIR):
    """(row count, row iterator, record fields) for the ``split`` shards ``files``; reads only metadata up front."""
    pq = _pyarrow_parquet(name)
    total, cols, names_seen = 0, [], None
    for f in files:
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:  # pyarrow raises ArrowInvalid/OSError for truncated or foreign files
            raise DatasetError(f"{name}: {f} is not a readable parquet file ({type(e).__name__}: {e}); "
                               "delete it and re-download") from e
        image, label, names = _hf_columns(hf_features(pf.schema_arrow.metadata), pf.schema_arrow.names)
        if image is None or label is None:
            raise DatasetError(f"{name}: {f} has no image and label columns (columns: {pf.schema_arrow.names})")
        if names is not None:
            if check_names:
                check_label_names(name, names, str(f))
            names_seen = "match" if check_names else "not checked"
        cols.append((image, label))
        total += pf.metadata.num_rows

    def rows() -> Iterator[tuple[bytes, int]]:
        i = 0
        for f, (image, label) in zip(files, cols):
            for batch in pq.ParquetFile(f).iter_batches(batch_size=64, columns=[image, label]):
                imgs, labels = batch.column(image).to_pylist(), batch.column(label).to_pylist()
                for img, lab in zip(imgs, labels):
                    data = img.get("bytes") if isinstance(img, dict) else img
                    if data is None or lab is None:
                        raise DatasetError(f"{name}: {split} row {i} of {f} has no image bytes or no label")
                    yield data, lab
                    i += 1

    return total, rows(), {"label_names": names_seen or "not stored in the shards"}


def _build_hf(name: str, source, root, expected_images, expected_classes, check_names: bool,
              extra: Mapping | None, split: str = SPLIT_DIR) -> dict:
    files = parquet_shards(source, split)
    if not files:
        raise DatasetError(f"{name}: no {split} parquet shards at {source} (looked for {split}-*.parquet there and "
                           f"in data/). {instructions(name, split)}")
    n, rows, fields = _parquet_source(name, files, check_names, split)
    record_source = str(files[0].parent.resolve())
    extra = {"layout": "HF parquet shards", "source_files": [f.name for f in files], **fields, **(extra or {})}
    return _build(name, root, rows, n, record_source, _expected(name, split, "hf", expected_images),
                  expected_classes, extra, split)


def _has_shards(source, split: str = SPLIT_DIR) -> bool:
    return not isinstance(source, (str, Path)) or bool(parquet_shards(source, split))


# --- builders --------------------------------------------------------------------------------------
# ``expected_images`` defaults to the published size of the split (and, for GTSRB and DTD, of the layout found:
# see EXPECTED_TRAIN_IMAGES); None skips the count check.


def build_sun397(source, root: str | Path, *, split: str = SPLIT_DIR, expected_images=_DEFAULT,
                 expected_classes: int | None = EXPECTED_CLASSES["sun397"], check_label_names: bool = True,
                 extra: Mapping | None = None) -> dict:
    """SUN397 ``split`` from the parquet shards of HF ``tanganke/sun397`` (a folder, a shard or a list)."""
    return _build_hf("sun397", source, root, expected_images, expected_classes, check_label_names, extra,
                     _check_split(split))


def build_stanford_cars(source, root: str | Path, *, split: str = SPLIT_DIR, expected_images=_DEFAULT,
                        expected_classes: int | None = EXPECTED_CLASSES["stanford_cars"],
                        check_label_names: bool = True, extra: Mapping | None = None) -> dict:
    """Stanford Cars ``split`` from the parquet shards of HF ``tanganke/stanford_cars``."""
    return _build_hf("stanford_cars", source, root, expected_images, expected_classes, check_label_names, extra,
                     _check_split(split))


def build_resisc45(source, root: str | Path, *, split: str = SPLIT_DIR, expected_images=_DEFAULT,
                   expected_classes: int | None = EXPECTED_CLASSES["resisc45"], check_label_names: bool = True,
                   extra: Mapping | None = None) -> dict:
    """RESISC45 ``split`` from the parquet shards of HF ``tanganke/resisc45``."""
    return _build_hf("resisc45", source, root, expected_images, expected_classes, check_label_names, extra,
                     _check_split(split))


def build_eurosat(source, root: str | Path, *, split: str = SPLIT_DIR, expected_images=_DEFAULT,
                  expected_classes: int | None = EXPECTED_CLASSES["eurosat"], check_label_names: bool = True,
                  extra: Mapping | None = None) -> dict:
    """EuroSAT ``split`` from the parquet shards of HF ``tanganke/eurosat`` (not task_vectors' own split,
    which was random and never published)."""
    return _build_hf("eurosat", source, root, expected_images, expected_classes, check_label_names, extra,
                     _check_split(split))


def build_svhn(source, root: str | Path, *, split: str = SPLIT_DIR, expected_images=_DEFAULT,
               expected_classes: int | None = EXPECTED_CLASSES["svhn"], extra: Mapping | None = None) -> dict:
    """SVHN ``split`` from ``<split>_32x32.mat`` (the file, or a folder holding it): X is 32x32x3xN, y holds
    1..10 with 10 for the digit 0 (mapped to 0). Images are written as PNG in file order."""
    name, source, split = "svhn", Path(source), _check_split(split)
    fname = f"{split}_32x32.mat"
    mat = source if source.is_file() else _find(source, fname, depth=2)
    if mat is None:
        raise DatasetError(f"{name}: no {fname} at {source}. {instructions(name, split)}")
    from scipy.io import loadmat

    try:
        m = loadmat(mat)
    except (ValueError, OSError, NotImplementedError, TypeError) as e:
        raise DatasetError(f"{name}: {mat} is not a readable MATLAB file ({type(e).__name__}: {e}); "
                           "delete it and re-download") from e
    x, y = m.get("X"), m.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DatasetError(f"{name}: {mat} has no uint8 array X of shape 32x32x3xN and labels y")
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if y.size != x.shape[3]:
        raise DatasetError(f"{name}: {mat} holds {x.shape[3]} images but {y.size} labels")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DatasetError(f"{name}: {mat}: labels must be 1..10 (10 = digit 0), found {y.min()}..{y.max()}")
    y[y == 10] = 0
    rows = ((np.ascontiguousarray(x[:, :, :, i]), int(y[i])) for i in range(y.size))
    extra = {"layout": fname, "source_files": [mat.name], **(extra or {})}
    return _build(name, root, rows, int(y.size), str(mat.resolve()),
                  _expected(name, split, "torchvision", expected_images), expected_classes, extra, split)


def read_idx(path: str | Path) -> np.ndarray:
    """An idx-format uint8 array (MNIST's ``*-ubyte`` files, gzipped or not)."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); "
                           "delete it and re-download") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an idx file of unsigned bytes")
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(nd)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd)
    if arr.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header announces {dims}, found {arr.size} values")
    return arr.reshape(dims)


def build_mnist(source, root: str | Path, *, split: str = SPLIT_DIR, expected_images=_DEFAULT,
                expected_classes: int | None = EXPECTED_CLASSES["mnist"], extra: Mapping | None = None) -> dict:
    """MNIST ``split`` from ``t10k-`` (test) or ``train-`` (train) ``images-idx3-ubyte[.gz]`` and
    ``labels-idx1-ubyte[.gz]`` (in ``source`` or torchvision's ``MNIST/raw`` below it), as grayscale PNG in file
    order."""
    name, source, split = "mnist", Path(source), _check_split(split)
    found = {}
    for key, kind in (("images", "images-idx3-ubyte"), ("labels", "labels-idx1-ubyte")):
        stem = f"{_MNIST_STEM[split]}-{kind}"
        found[key] = next((p for p in (_find(source, stem + ".gz"), _find(source, stem)) if p is not None), None)
        if found[key] is None:
            raise DatasetError(f"{name}: no {stem}[.gz] at {source}. {instructions(name, split)}")
    images, labels = read_idx(found["images"]), read_idx(found["labels"])
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(f"{name}: expected an N x 28 x 28 image file and an N label file, found shapes "
                           f"{images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{name}: {len(images)} images but {len(labels)} labels")
    rows = ((images[i], int(labels[i])) for i in range(len(labels)))
    extra = {"layout": "idx files", "source_files": [found["images"].name, found["labels"].name], **(extra or {})}
    return _build(name, root, rows, len(labels), str(found["images"].parent.resolve()),
                  _expected(name, split, "torchvision", expected_images), expected_classes, extra, split)


def _listed_files(name: str, base: Path, listed: list[tuple[Path, int]], expected_images: int | None,
                  what: str) -> None:
    """Count check on a split list, then on the listed files that are really there."""
    _check_count(name, base, len(listed), expected_images)
    missing = [p for p, _ in listed if not p.is_file()]
    if missing:
        raise DatasetError(f"{name} at {base} is partial: expected {len(listed)} images ({what}), found "
                           f"{len(listed) - len(missing)} (first missing: {missing[0]}); re-download or complete it")


def _gtsrb_training_files(name: str, images: Path, n_classes: int) -> list[tuple[Path, int]]:
    """torchvision's ``GTSRB(split="train")``: ``<ClassId:05d>/*.ppm`` in sorted folders, files sorted."""
    listed = []
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        if not (folder.name.isdigit() and int(folder.name) < n_classes):
            raise DatasetError(f"{name}: {folder} is no GTSRB class folder (00000..{n_classes - 1:05d})")
        listed += [(f, int(folder.name)) for f in sorted(folder.glob("*.ppm"))]
    return listed


def build_gtsrb(source, root: str | Path, *, split: str = SPLIT_DIR, expected_images=_DEFAULT,
                expected_classes: int | None = EXPECTED_CLASSES["gtsrb"], check_label_names: bool = True,
                extra: Mapping | None = None) -> dict:
    """GTSRB ``split``: HF ``tanganke/gtsrb`` parquet shards, or torchvision's files: test = ``GT-final_test.csv``
    with ``ClassId`` per ``Filename``, images in ``GTSRB/Final_Test/Images``, in the csv's row order; train =
    ``GTSRB/Training/<ClassId:05d>/*.ppm`` (or ``GTSRB/Final_Training/Images/...``), folders and files sorted."""
    name, split = "gtsrb", _check_split(split)
    if _has_shards(source, split):
        return _build_hf(name, source, root, expected_images, expected_classes, check_label_names, extra, split)
    source = Path(source)
    if split == "train":
        images = _find(source, "GTSRB/Training") or _find(source, "GTSRB/Final_Training/Images")
        if images is None:
            raise DatasetError(f"{name}: neither train parquet shards nor GTSRB/Training/<class>/*.ppm at {source}. "
                               f"{instructions(name, split)}")
        listed, what = _gtsrb_training_files(name, images, len(task_info(name).classnames)), "class folders"
        layout, files = f"torchvision GTSRB ({images.parent.name}/{images.name}/<class>/*.ppm)", []
    else:
        gt = _find(source, "GT-final_test.csv")
        images = _find(source, "GTSRB/Final_Test/Images") or _find(source, "Final_Test/Images")
        if gt is None or images is None:
            raise DatasetError(f"{name}: neither test parquet shards nor GT-final_test.csv with "
                               f"GTSRB/Final_Test/Images at {source}. {instructions(name, split)}")
        with open(gt, newline="") as f:
            try:
                listed = [(images / r["Filename"], int(r["ClassId"]))
                          for r in csv.DictReader(f, delimiter=";", skipinitialspace=True)]
            except (KeyError, TypeError, ValueError) as e:
                raise DatasetError(f"{name}: {gt} is not GTSRB's test ground truth (Filename;...;ClassId): {e}") from e
        what, layout, files = gt.name, "torchvision GTSRB (GT-final_test.csv)", [gt.name]
    expected_images = _expected(name, split, "torchvision", expected_images)
    _listed_files(name, images, listed, expected_images, what)
    extra = {"layout": layout, "source_files": files, **(extra or {})}
    return _build(name, root, iter(listed), len(listed), str(images.resolve()), expected_images,
                  expected_classes, extra, split)


def build_dtd(source, root: str | Path, *, split: str = SPLIT_DIR, expected_images=_DEFAULT,
              expected_classes: int | None = EXPECTED_CLASSES["dtd"], partition: int = 1,
              check_label_names: bool = True, extra: Mapping | None = None) -> dict:
    """DTD ``split``: HF ``tanganke/dtd`` parquet shards, or the VGG tarball's ``dtd/labels/<split><partition>.txt``
    (lines ``<class>/<file>.jpg``; label = position of the class in the sorted 47 folder names), in list order."""
    name, split = "dtd", _check_split(split)
    if _has_shards(source, split):
        return _build_hf(name, source, root, expected_images, expected_classes, check_label_names, extra, split)
    source = Path(source)
    base = _find(source, f"dtd/labels/{split}{partition}.txt")
    if base is None:
        raise DatasetError(f"{name}: neither {split} parquet shards nor dtd/labels/{split}{partition}.txt at "
                           f"{source}. {instructions(name, split)}")
    dtd = base.parent.parent
    label_of = {c: k for k, c in enumerate(task_info(name).classnames)}
    listed = []
    for line in base.read_text().split():
        cls, _, fname = line.partition("/")
        if cls not in label_of or not fname:
            raise DatasetError(f"{name}: {base}: {line!r} is not <one of the 47 classes>/<file>")
        listed.append((dtd / "images" / cls / fname, label_of[cls]))
    expected_images = _expected(name, split, "vgg", expected_images)
    _listed_files(name, dtd / "images", listed, expected_images, base.name)
    extra = {"layout": f"VGG dtd-r1.0.1 (labels/{base.name})", "source_files": [base.name], **(extra or {})}
    return _build(name, root, iter(listed), len(listed), str((dtd / "images").resolve()), expected_images,
                  expected_classes, extra, split)


MULTITASK_BUILDERS: dict[str, Callable[..., dict]] = {
    "sun397": build_sun397,
    "stanford_cars": build_stanford_cars,
    "resisc45": build_resisc45,
    "eurosat": build_eurosat,
    "svhn": build_svhn,
    "gtsrb": build_gtsrb,
    "mnist": build_mnist,
    "dtd": build_dtd,
}


# --- downloading -----------------------------------------------------------------------------------


def hf_url(repo: str, path: str, revision: str = "main", endpoint: str = HF_ENDPOINT) -> str:
    """``<endpoint>/datasets/<repo>/resolve/<revision>/<path>``: the plain HTTPS address of a dataset file."""
    return f"{endpoint.rstrip('/')}/datasets/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"


def hf_list(repo: str, revision: str, pattern: str, endpoint: str = HF_ENDPOINT) -> tuple[str, list[tuple]]:
    """(commit sha, [(path, size, sha256)]) of the files of HF dataset ``repo`` at ``revision`` matching
    ``pattern`` (sha256 and size are the LFS ones, None where the hub gives none), sorted by path."""
    try:
        from huggingface_hub import HfApi
    except ImportError as e:
        raise DownloadError("listing a HF dataset needs huggingface_hub (or pass files=[...])") from e
    try:
        info = HfApi(endpoint=endpoint).dataset_info(repo, revision=revision, files_metadata=True)
    except Exception as e:  # the hub client raises its own HTTP/connection errors: report them uniformly
        raise DownloadError(f"could not list the files of HF dataset {repo}@{revision} at {endpoint}: "
                            f"{type(e).__name__}: {e}") from e
    entries = sorted((s.rfilename, s.size, s.lfs.sha256 if s.lfs else None)
                     for s in (info.siblings or []) if fnmatch.fnmatchcase(s.rfilename, pattern))
    return info.sha, entries


def _staged_shards(mirror: str | Path | None, repo: str, pattern: str) -> dict[str, Path]:
    """{path in the repo: staged file} of an HF dataset's shards matching ``pattern`` in the mirror folder."""
    base = Path(mirror, "hf", "datasets", repo) if mirror else None
    if base is None or not base.is_dir():
        return {}
    return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*"))
            if p.is_file() and fnmatch.fnmatchcase(p.relative_to(base).as_posix(), pattern)}


def prepare_task(name: str, root: str | Path, *, split: str = SPLIT_DIR, downloads: str | Path | None = None,
                 via: str | None = None, urls: Mapping[str, Sequence[str]] | None = None,
                 md5: Mapping[str, str] | None = None, files: Sequence[str] | None = None,
                 revision: str | None = None, endpoint: str = HF_ENDPOINT,
                 rewrites: Mapping[str, str] | None = None, mirror: str | Path | None = None,
                 progress: bool = True, **build_kwargs) -> dict:
    """Download (if needed) one split (``"test"`` or ``"train"``) of a multi-task dataset and convert it with its
    builder; returns verify.json's record.

    ``via`` picks the source (the keys of :data:`SOURCES`, default the first: ``hf`` for the six HF tasks,
    ``torchvision`` for SVHN and MNIST; ``torchvision`` for GTSRB's and ``vgg`` for DTD's alternatives).
    Downloads are kept in ``downloads/<name>`` (default ``<root>/../_downloads/<name>``) and re-used when
    complete; both splits share that folder (their files differ, except DTD's tarball, which both read).

    HF sources: the ``split`` shards of ``revision`` (default ``main``) are listed on the hub (resolved to a commit,
    recorded in verify.json) and fetched with their LFS sha256 checked; ``files`` gives the shard paths instead
    of listing them, ``endpoint`` another hub (tests use a local server). Other sources: ``urls`` replaces the
    URL list of a file by name, ``md5`` its checksum (the shipped md5 is dropped for a file whose URLs are
    replaced); ``rewrites`` maps URL prefixes (:func:`dawin.inputs.download.rewrite_urls`). Failed downloads raise :class:`DownloadError` with the URLs tried and the manual instructions.

    ``mirror`` (config ``paper.mirror``) is consulted before the network, and its copies pass the same checks:
    a URL's file as ``<mirror>/<file name of the URL>`` (:func:`dawin.inputs.checkpoints.mirror_path`), an HF dataset's
    shards as ``<mirror>/hf/datasets/<owner>/<name>/<path in the repo>`` (used without asking the hub when
    the split's pattern matches staged files; verify.json then records their sha256 and no commit).
    """
    from .checkpoints import mirror_path, place_copy

    info = task_info(name)
    options = SOURCES[name]
    via = via or next(iter(options))
    if via not in options:
        raise DatasetError(f"{name}: unknown source {via!r}; one of {', '.join(options)}")
    spec = source_spec(name, via, split)
    root = Path(root)
    downloads = (Path(downloads) if downloads is not None else root.parent / "_downloads") / name
    try:
        if spec["kind"] == "hf_parquet":
            rev = revision or spec.get("revision", "main")
            staged = _staged_shards(mirror, spec["repo"], spec["pattern"]) if files is None else {}
            for path, src in staged.items():
                if not (downloads / path).is_file():
                    (downloads / path).parent.mkdir(parents=True, exist_ok=True)
                    place_copy(src, downloads / path)
            if staged:
                commit, entries = None, [(f, None, None) for f in sorted(staged)]
            elif files is None:
                commit, entries = hf_list(spec["repo"], rev, spec["pattern"], endpoint)
            else:
                commit, entries = None, [(f, None, None) for f in sorted(files)]
            if not entries:
                raise DatasetError(f"{name}: HF dataset {spec['repo']}@{rev} has no files matching {spec['pattern']}")
            paths = [fetch([hf_url(spec["repo"], path, commit or rev, endpoint)], downloads / path, sha,
                           expected_size=size, progress=progress) for path, size, sha in entries]
            source: object = paths
            download = {"repo": spec["repo"], "revision": rev, "commit": commit,
                        "files": [{"path": path, "sha256": sha or sha256_file(p)}
                                  for (path, _, sha), p in zip(entries, paths)]}
        else:
            got = []
            for fname, fspec in spec["files"].items():
                replaced = urls is not None and fname in urls
                file_urls = list(urls[fname]) if replaced else list(fspec["urls"])
                file_md5 = (md5 or {}).get(fname) or (None if replaced else fspec.get("md5"))
                dest = downloads / fname
                copy = mirror_path({"url": file_urls}, mirror) if mirror else None
                if copy is not None and copy.is_file() and not dest.is_file():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    place_copy(copy, dest)  # checked below like a download
                if spec["kind"] == "archives":
                    stem = re.sub(r"(\.tar)?\.(gz|tgz|zip|tar|bz2|xz)$", "", fname)
                    fetch_and_extract(file_urls, dest, downloads / "extracted" / stem, md5=file_md5,
                                      progress=progress, rewrites=rewrites)
                else:
                    fetch(file_urls, dest, md5=file_md5, progress=progress, rewrites=rewrites)
                got.append({"name": fname, "urls": file_urls, "md5": file_md5,
                            "sha256": sha256_file(dest) if dest.is_file() else None})
            source = downloads / "extracted" if spec["kind"] == "archives" else downloads
            download = {"files": got}
    except DownloadError as e:
        raise DownloadError(f"{e}\n{name} ({info.task_vectors_name}) by hand: {instructions(name, split)}") from e
    extra = {"via": via, "download": download}
    return MULTITASK_BUILDERS[name](source, root, split=split, extra=extra, **build_kwargs)
