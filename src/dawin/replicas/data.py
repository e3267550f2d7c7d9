"""Miniature replicas of every dataset source of the paper suite, in the form its upstream ships it.

:func:`write_dataset_replicas` writes, for the datasets a config names (``paper.datasets``, ``paper.heldout``,
``multitask.tasks.<t>.train``), every class with ``per_class`` small images (24-32 px, real JPEG / PNG / PPM
bytes; MNIST 28x28 and SVHN 32x32 as their formats fix), deterministic in ``seed``:

- ``<manual>/`` the licence-gated sets as image-net.org and objectnet.dev ship them:
  ``imagenet/train/<wnid>/<wnid>_<n>.JPEG`` (ILSVRC2012_img_train.tar with each class tar extracted),
  ``imagenet/val/ILSVRC2012_val_<8 digits>.JPEG`` (ILSVRC2012_img_val.tar, flat) beside
  ``imagenet/ILSVRC2012_devkit_t12.tar.gz`` (``data/ILSVRC2012_validation_ground_truth.txt``: line k holds the
  ILSVRC2012_ID of val image k; ``data/meta.mat``: the ``synsets`` struct torchvision's ``parse_meta_mat``
  reads), and ``objectnet-1.0/images/<folder>/<hash>.png`` with all 313 folders (1-px red border, as the real
  images have) plus ``objectnet-1.0/mappings/folder_to_objectnet_label.json``.
- ``<site>/<host>/<path>`` every URL-downloaded file at the address of the first URL of its source in the code's
  own tables (:data:`dawin.inputs.paper_datasets.SOURCES`, :data:`dawin.inputs.multitask_datasets.SOURCES`, the config's
  ``paper.heldout.indices.url``), so a server of ``<site>`` that maps ``https://<host>/`` (and ``http://``) to
  ``http://127.0.0.1:PORT/<host>/`` serves them: model-soups' ``imagenet_98_idxs.npy``, the ImageNet-V2 /
  -R / -A / -Sketch archives, SVHN's ``.mat``, MNIST's idx ``.gz``, GTSRB's zips and DTD's tarball.
- ``<site>/hf/datasets/<owner>/<name>/resolve/main/data/<split>-00000-of-00001.parquet`` the HF parquet
  shards of every task with an ``hf`` source (the hub's Image struct ``{bytes, path}``, int64 label and the
  ``huggingface`` schema metadata with the ClassLabel names), for a hub emulated at ``http://127.0.0.1:PORT/hf``.

The return value says what a config overlay must set for the replicas to pass the builders' checks (see
:func:`write_dataset_replicas`). Every archive is written from memory with fixed member times, owners and gzip
headers, so the same ``seed`` and ``per_class`` give byte-identical files.
"""

from __future__ import annotations

import colorsys
import contextlib
import contextvars
import gzip
import hashlib
import io
import json
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
from PIL import Image

from ..inputs import multitask_datasets as mt
from ..inputs import paper_datasets as pd
from ..inputs.datasets import DatasetError

MIN_PX, MAX_PX = 24, 32  # 8-16 px images lose a replica model's class cues to resizing and JPEG
MARKER = ".dawin-replica-data.json"  # in <manual>: the folders below it may be replaced by a rerun
HUB = "hf"  # <site>/hf/... is the emulated hub's endpoint
ARCHIVE_MTIME = 1_325_376_000  # 2012-01-01 UTC: the time stamp of every archive member (fixed bytes)
ZIP_TIME = (2012, 1, 1, 0, 0, 0)
# the MAT-file header's 116-byte text; scipy stamps the current time there, which would change the bytes
MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Sun Jan  1 00:00:00 2012".ljust(116, b" ")

# ImageNet-R file names start with the rendition they were collected as (hendrycks/imagenet-r: art_0.jpg, ...)
RENDITIONS = ("art", "cartoon", "deviantart", "embroidery", "graffiti", "graphic", "misc", "origami", "painting",
              "sculpture", "sketch", "sticker", "tattoo", "toy", "videogame")

# The 200 ObjectNet folders that map to no ImageNet class, with their ObjectNet labels
# (mlfoundations/wise-ft@58b7a4b343b09dc06606aa929c2ef51accced8d1
# src/datasets/objectnet_metadata/folder_to_objectnet_label.json, minus the 113 of dawin/inputs/data/objectnet.json). The
# builder ignores them; they are here because the real images/ folder has all 313 and the builder must skip them.
OBJECTNET_UNMAPPED: dict[str, str] = {
    'air_freshener': 'Air freshener', 'baking_sheet': 'Baking sheet', 'baseball_bat': 'Baseball bat',
    'baseball_glove': 'Baseball glove', 'bathrobe': 'Bathrobe', 'battery': 'Battery', 'bed_sheet': 'Bed sheet',
    'beer_can': 'Beer can', 'belt': 'Belt', 'bike_pump': 'Bike pump', 'bills_money': 'Bills (money)',
    'biscuits': 'Biscuits', 'blanket': 'Blanket', 'blender': 'Blender', 'blouse': 'Blouse',
    'board_game': 'Board game', 'book_closed': 'Book (closed)', 'bookend': 'Bookend', 'boots': 'Boots',
    'bottle_opener': 'Bottle opener', 'bottle_stopper': 'Bottle stopper', 'box': 'Box', 'bracelet': 'Bracelet',
    'bread_knife': 'Bread knife', 'briefcase': 'Briefcase', 'brooch': 'Brooch', 'butter': 'Butter',
    'button': 'Button', 'calendar': 'Calendar', 'canned_food': 'Canned food', 'cd_case': 'CD case',
    'cellphone_case': 'Cellphone case', 'cellphone_charger': 'Cellphone charger', 'cereal': 'Cereal',
    'cheese': 'Cheese', 'chess_piece': 'Chess piece', 'chocolate': 'Chocolate', 'chopstick': 'Chopstick',
    'clothes_hanger': 'Clothes hanger', 'coaster': 'Coaster', 'coffee_beans': 'Coffee beans',
    'coffee_grinder': 'Coffee grinder', 'coffee_machine': 'Coffee machine', 'coffee_table': 'Coffee table',
    'coin_money': 'Coin (money)', 'comb': 'Comb', 'contact_lens_case': 'Contact lens case',
    'cooking_oil_bottle': 'Cooking oil bottle', 'cork': 'Cork', 'cutting_board': 'Cutting board',
    'deodorant': 'Deodorant', 'detergent': 'Detergent', 'dish_soap': 'Dish soap',
    'document_folder_closed': 'Document folder (closed)', 'dog_bed': 'Dog bed', 'drawer_open': 'Drawer (open)',
    'dress_pants': 'Dress pants', 'dress_shirt': 'Dress shirt', 'dress_shoe_women': 'Dress shoe (women)',
    'drinking_straw': 'Drinking straw', 'drying_rack_for_clothes': 'Drying rack for clothes',
    'dust_pan': 'Dust pan', 'dvd_player': 'DVD player', 'earbuds': 'Earbuds', 'earring': 'Earring',
    'egg': 'Egg', 'egg_carton': 'Egg carton', 'eraser_white_board': 'Eraser (white board)',
    'extension_cable': 'Extension cable', 'eyeglasses': 'Eyeglasses',
    'figurine_or_statue': 'Figurine or statue', 'first_aid_kit': 'First aid kit', 'flashlight': 'Flashlight',
    'floss_container': 'Floss container', 'flour_container': 'Flour container', 'fork': 'Fork',
    'glue_container': 'Glue container', 'hair_brush': 'Hair brush', 'hairclip': 'Hairclip',
    'hairtie': 'Hairtie', 'hand_mirror': 'Hand mirror', 'handbag': 'Handbag', 'hat': 'Hat',
    'headphones_over_ear': 'Headphones (over ear)', 'honey_container': 'Honey container', 'ice': 'Ice',
    'ice_cube_tray': 'Ice cube tray', 'ironing_board': 'Ironing board', 'jam': 'Jam', 'jar': 'Jar',
    'kettle': 'Kettle', 'key_chain': 'Key chain', 'laptop_charger': 'Laptop charger', 'leaf': 'Leaf',
    'leggings': 'Leggings', 'lettuce': 'Lettuce', 'light_bulb': 'Light bulb', 'loofah': 'Loofah',
    'magazine': 'Magazine', 'makeup': 'Makeup', 'makeup_brush': 'Makeup brush', 'marker': 'Marker',
    'milk': 'Milk', 'mouse_pad': 'Mouse pad', 'mouthwash': 'Mouthwash', 'multitool': 'Multitool',
    'nail_clippers': 'Nail clippers', 'nail_file': 'Nail file', 'nail_polish': 'Nail polish',
    'napkin': 'Napkin', 'newspaper': 'Newspaper', 'night_light': 'Night light', 'nightstand': 'Nightstand',
    'notebook': 'Notebook', 'notepad': 'Notepad', 'nut_for_screw': 'Nut for a screw',
    'oven_mitts': 'Oven mitts', 'paint_can': 'Paint can', 'paper': 'Paper', 'paper_bag': 'Paper bag',
    'paper_plates': 'Paper plates', 'paperclip': 'Paperclip', 'peeler': 'Peeler', 'pencil': 'Pencil',
    'pepper_shaker': 'Pepper shaker', 'pet_food_container': 'Pet food container',
    'phone_landline': 'Phone (landline)', 'photograph_printed': 'Photograph (printed)',
    'pill_organizer': 'Pill organizer', 'placemat': 'Placemat', 'plastic_cup': 'Plastic cup',
    'plastic_wrap': 'Plastic wrap', 'playing_cards': 'Playing cards', 'pliers': 'Pliers', 'poster': 'Poster',
    'power_bar': 'Power bar', 'power_cable': 'Power cable', 'raincoat': 'Raincoat', 'rake': 'Rake',
    'razor': 'Razor', 'receipt': 'Receipt', 'removable_blade': 'Removable blade', 'ribbon': 'Ribbon',
    'ring': 'Ring', 'rock': 'Rock', 'rolling_pin': 'Rolling pin', 'scarf': 'Scarf', 'scissors': 'Scissors',
    'scrub_brush': 'Scrub brush', 'sewing_kit': 'Sewing kit', 'shampoo_bottle': 'Shampoo bottle',
    'shoelace': 'Shoelace', 'shorts': 'Shorts', 'skateboard': 'Skateboard', 'slipper': 'Slipper',
    'soap_bar': 'Soap bar', 'sponge': 'Sponge', 'spoon': 'Spoon', 'spray_bottle': 'Spray bottle',
    'squeegee': 'Squeegee', 'squeeze_bottle': 'Squeeze bottle', 'standing_lamp': 'Standing lamp',
    'stapler': 'Stapler', 'step_stool': 'Step stool', 'stopper_sink_tub': 'Stopper (sink/tub)',
    'sugar_container': 'Sugar container', 'suitcase': 'Suitcase', 'table_knife': 'Table knife',
    'tablecloth': 'Tablecloth', 'tablet_ipad': 'Tablet / iPad', 'tanktop': 'Tanktop',
    'tape': 'Tape / duct tape', 'tape_measure': 'Tape measure', 'tarp': 'Tarp', 'teabag': 'Teabag',
    'thermometer': 'Thermometer', 'thermos': 'Thermos', 'throw_pillow': 'Throw pillow', 'tissue': 'Tissue',
    'tomato': 'Tomato', 'tongs': 'Tongs', 'toothbrush': 'Toothbrush', 'toothpaste': 'Toothpaste',
    'tote_bag': 'Tote bag', 'toy': 'Toy', 'trash_bag': 'Trash bag', 'travel_case': 'Travel case',
    'trophy': 'Trophy', 'tweezers': 'Tweezers', 'usb_cable': 'Usb cable', 'usb_flash_drive': 'Usb flash drive',
    'video_camera': 'Video Camera', 'walker': 'Walker', 'walking_cane': 'Walking cane',
    'water_filter': 'Water filter', 'webcam': 'Webcam', 'whisk': 'Whisk', 'wine_glass': 'Wine glass',
    'wrench': 'Wrench', 'ziploc_bag': 'Ziploc bag',
}

# Image format of each HF task's parquet bytes: the originals are JPEG (SUN397, Cars, RESISC45, EuroSAT's RGB
# release, DTD); GTSRB's originals are PPM, whose re-encoding in tanganke/gtsrb could not be checked: PNG here.
HF_IMAGE_FORMAT = {"gtsrb": "PNG"}


# --- pixels and encodings --------------------------------------------------------------------------


def _salt(text: str) -> int:
    """A stable 32-bit number for a name (Python's ``hash`` of a str changes between processes)."""
    return zlib.crc32(text.encode())


def class_colour(key: int) -> np.ndarray:
    """A colour per class key: hues on the golden-ratio sequence, three saturations and values."""
    h = (key * 0.6180339887498949) % 1.0
    s = 0.45 + 0.25 * (key % 3)
    v = 0.55 + 0.2 * ((key // 3) % 3)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


_PROTOTYPES: contextvars.ContextVar[Mapping[str, np.ndarray]] = contextvars.ContextVar("prototypes", default={})


@contextlib.contextmanager
def painting(prototypes: Mapping[str, np.ndarray] | None) -> Iterator[None]:
    """Within the block, images of a class with a prototype (``{domain: (C, s, s, 3) floats in [0, 1]}``, see
    :mod:`dawin.replicas.prototypes`) are drawn from it; other classes keep their stripes."""
    token = _PROTOTYPES.set(dict(prototypes or {}))
    try:
        yield
    finally:
        _PROTOTYPES.reset(token)


def pixels(key: int, variant: int, salt: int, seed: int, size: tuple[int, int] | None = None,
           domain: str = "imagenet") -> np.ndarray:
    """A small HxWx3 uint8 image of class ``key`` of ``domain`` (``imagenet``: ImageNet class indices; a
    multi-task dataset's name: its labels). Drawn from the class's prototype inside :func:`painting`; otherwise
    its colour in stripes whose orientation and period depend on the class (so classes differ in colour and
    texture). A little per-image noise; ``size`` (h, w) defaults to a random MIN_PX..MAX_PX px per side."""
    rng = np.random.default_rng([seed, salt, key, variant])
    h, w = size or tuple(int(x) for x in rng.integers(MIN_PX, MAX_PX + 1, 2))
    protos = _PROTOTYPES.get().get(domain)
    if protos is not None and key < len(protos):
        from .prototypes import render

        return render(protos[key], (h, w), rng)
    base = class_colour(key)
    other = 0.55 * base + 0.45 * (255.0 - base)
    y, x = np.mgrid[0:h, 0:w]
    coord = (y, x, x + y, x - y + w)[key % 4]
    stripe = (coord // (2 + (key // 4) % 3)) % 2 == 0
    img = np.where(stripe[..., None], base, other) + rng.normal(0.0, 6.0, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str) -> bytes:
    """Encoded image bytes (PIL; JPEG at quality 90 without chroma subsampling, PNG / PPM lossless). At these
    sizes 4:2:0 subsampling would blur the colours that carry a class to a replica model (a tenth the accuracy)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **({"quality": 90, "subsampling": 0} if fmt == "JPEG" else {}))
    return buf.getvalue()


def image(key: int, variant: int, salt: int, seed: int, fmt: str = "JPEG", domain: str = "imagenet") -> bytes:
    """The encoded bytes of :func:`pixels` (class ``key`` of ``domain``, image ``variant``)."""
    return encode(pixels(key, variant, salt, seed, domain=domain), fmt)


def _digit(d: int, variant: int, salt: int, seed: int, size: int, rgb: bool, domain: str) -> np.ndarray:
    """A digit drawn with PIL's default font on a noisy background (MNIST: 28x28 grey; SVHN: 32x32 RGB), or inside
    :func:`painting` the digit's prototype at that size."""
    from PIL import ImageDraw

    if domain in _PROTOTYPES.get():
        px = pixels(d, variant, salt, seed, (size, size), domain)
        return px if rgb else px[..., 0]

    rng = np.random.default_rng([seed, salt, d, variant])
    if rgb:  # SVHN: house-number plates of any colour, digit lighter than the plate
        bg = tuple(int(c) for c in rng.integers(0, 120, 3))
        fg = tuple(int(c) for c in rng.integers(150, 256, 3))
    else:  # MNIST: a white digit on black
        bg, fg = int(rng.integers(0, 30)), int(rng.integers(200, 256))
    im = Image.new("RGB" if rgb else "L", (size, size), bg)
    ImageDraw.Draw(im).text((size // 2 - 3 + int(rng.integers(-2, 3)), size // 2 - 6 + int(rng.integers(-2, 3))),
                            str(d), fill=fg)
    return np.asarray(im, dtype=np.uint8)


# --- archives written from memory with fixed metadata ------------------------------------------------


class TarBuilder:
    """A tar (optionally gzipped) in memory: GNU format, parent directories listed before their files, every
    member owned by root with one fixed mtime, and a gzip header without name or time."""

    def __init__(self, gz: bool) -> None:
        self._buf = io.BytesIO()
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._buf, mtime=0) if gz else None
        self._tar = tarfile.open(fileobj=self._gz or self._buf, mode="w", format=tarfile.GNU_FORMAT)
        self._dirs: set[str] = set()

    def _info(self, name: str, kind: bytes, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mtime = kind, size, ARCHIVE_MTIME
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def add(self, name: str, data: bytes) -> None:
        parts = name.split("/")[:-1]
        for k in range(1, len(parts) + 1):
            d = "/".join(parts[:k])
            if d not in self._dirs:
                self._dirs.add(d)
                self._tar.addfile(self._info(d, tarfile.DIRTYPE))
        self._tar.addfile(self._info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))

    def close(self) -> bytes:
        self._tar.close()
        if self._gz is not None:
            self._gz.close()
        return self._buf.getvalue()


class ZipBuilder:
    """A zip in memory: directory entries before their files, one fixed date, deflated members."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._zip = zipfile.ZipFile(self._buf, "w", zipfile.ZIP_DEFLATED)
        self._dirs: set[str] = set()

    def add(self, name: str, data: bytes) -> None:
        parts = name.split("/")[:-1]
        for k in range(1, len(parts) + 1):
            d = "/".join(parts[:k]) + "/"
            if d not in self._dirs:
                self._dirs.add(d)
                info = zipfile.ZipInfo(d, ZIP_TIME)
                info.external_attr = (0o40755 << 16) | 0x10
                self._zip.writestr(info, b"")
        info = zipfile.ZipInfo(name, ZIP_TIME)
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self._zip.writestr(info, data)

    def close(self) -> bytes:
        self._zip.close()
        return self._buf.getvalue()


def savemat_bytes(variables: Mapping[str, object]) -> bytes:
    """A MATLAB v5 file (scipy) with a fixed header text instead of scipy's creation time."""
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, dict(variables))
    return MAT_HEADER + buf.getvalue()[116:]


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def idx_gz(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes (magic 0x00000803 / 0x00000801, big-endian dims), gzipped without a time
    stamp: the form of MNIST's ``*-ubyte.gz`` files that torchvision's ``MNIST`` reads."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(head + np.ascontiguousarray(array, dtype=np.uint8).tobytes(), mtime=0)


def hf_parquet(images: Sequence[bytes], labels: Sequence[int], names: Sequence[str]) -> bytes:
    """One HF ``datasets`` parquet shard: ``image`` struct{bytes, path}, ``label`` int64, and the schema metadata
    ``huggingface`` = ``{"info": {"features": {image: Image, label: ClassLabel(names)}}}`` that datasets writes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array([{"bytes": b, "path": None} for b in images], type=struct),
                      "label": pa.array(list(labels), pa.int64())})
    feats = {"image": {"_type": "Image"}, "label": {"names": list(names), "_type": "ClassLabel"}}
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": feats}})})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


# --- the site ----------------------------------------------------------------------------------------


def site_path(url: str) -> str:
    """Where the file of ``url`` lies under the site: ``<host>/<path>`` (scheme and query dropped)."""
    u = urlsplit(url)
    if not u.netloc:
        raise ValueError(f"not an absolute URL: {url!r}")
    return f"{u.netloc}{unquote(u.path)}"


def hub_path(repo: str, path: str) -> str:
    """Where the emulated hub (endpoint ``<server>/hf``) serves ``path`` of HF dataset ``repo`` at ``main``:
    the address :func:`dawin.inputs.multitask_datasets.hf_url` builds, relative to the server root."""
    return unquote(mt.hf_url(repo, path, "main", endpoint=HUB))


def _digests(data: bytes) -> dict:
    return {"size": len(data), "md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}


class Site:
    """Files written under ``root`` by URL (``files``) and HF shards by repo (``hf``), with their digests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, dict] = {}
        self.hf: dict[str, list[dict]] = {}

    def _write(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def put(self, url: str, data: bytes) -> dict:
        rel = site_path(url)
        self._write(rel, data)
        self.files[url] = {"path": rel, **_digests(data)}
        return self.files[url]

    def put_hub(self, repo: str, path: str, data: bytes) -> None:
        rel = hub_path(repo, path)
        self._write(rel, data)
        self.hf.setdefault(repo, []).append({"path": path, "site_path": rel, **_digests(data)})


# --- the robust fine-tuning sets (paper_datasets) ------------------------------------------------------


def _counts(images: int, classes: int) -> dict:
    return {"images": images, "classes": classes}


def _write_imagenet_train(manual: Path, per_class: int, seed: int) -> Path:
    """``imagenet/train/<wnid>/<wnid>_<n>.JPEG``: ILSVRC2012_img_train.tar with every class tar extracted (the
    train image names are ``<wnid>_<number>.JPEG``, numbers not contiguous); ``2 * per_class`` per class."""
    lists = pd.load_class_lists()
    base = manual / "imagenet" / "train"
    salt = _salt("imagenet_train")
    for k, wnid in enumerate(lists.imagenet_wnids):
        folder = base / wnid
        folder.mkdir(parents=True)
        numbers = np.random.default_rng([seed, salt, k]).choice(np.arange(1, 20_000), 2 * per_class, replace=False)
        for j, n in enumerate(numbers):
            (folder / f"{wnid}_{int(n)}.JPEG").write_bytes(image(k, j, salt, seed))
    return base


def _write_heldout_indices(train: Path, per_class: int, seed: int) -> tuple[bytes, dict]:
    """model-soups' ``imagenet_98_idxs.npy`` for the replica train folder: a float 0/1 vector over the train images
    in torchvision ``ImageFolder`` order (model-soups ``datasets/imagenet.py`` ``ImageNet2p`` evaluates on
    ``np.where(idxs)``; 26 per class in the real file), here ``per_class`` of each class's ``2 * per_class``."""
    _, samples = pd.imagefolder_samples(train)
    labels = np.array([label for _, label in samples])
    rng = np.random.default_rng([seed, _salt("imagenet_98_idxs")])
    idxs = np.zeros(len(samples))  # float64, as np.zeros gives model-soups
    for c in range(1000):
        idxs[rng.choice(np.flatnonzero(labels == c), per_class, replace=False)] = 1.0
    heldout = {"expected_train_images": len(samples), "expected_images": 1000 * per_class,
               "expected_per_class": per_class}
    return npy_bytes(idxs), heldout


def _meta_mat(num_train: int) -> bytes:
    """The devkit's ``data/meta.mat``: struct array ``synsets`` with the fields ILSVRC2012_ID, WNID, words,
    gloss, num_children, children, wordnet_height, num_train_images, read by torchvision's
    ``imagenet.parse_meta_mat`` (leaves = num_children 0). Only the 1000 leaf synsets are written (the real
    file also has the 860 inner WordNet nodes); ``words`` are open_clip's class names, not WordNet's lemmas."""
    lists = pd.load_class_lists()
    name_of = dict(zip(lists.imagenet_wnids, lists.imagenet_classnames))
    fields = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images")
    synsets = np.empty((1000, 1), dtype=[(f, "O") for f in fields])
    for i, wnid in enumerate(lists.ilsvrc2012_id_wnids):
        synsets[i, 0] = (np.array([[i + 1]], np.uint16), wnid, name_of[wnid], "", np.array([[0]], np.uint8),
                         np.zeros((1, 0), np.uint8), np.array([[0]], np.uint8), np.array([[num_train]], np.uint16))
    return savemat_bytes({"synsets": synsets})


def _write_imagenet_val(manual: Path, per_class: int, seed: int) -> Path:
    """``imagenet/val/ILSVRC2012_val_%08d.JPEG`` (ILSVRC2012_img_val.tar is flat, classes shuffled) and beside
    ``val/`` the devkit ``ILSVRC2012_devkit_t12.tar.gz`` whose ground truth gives image k's ILSVRC2012_ID."""
    lists = pd.load_class_lists()
    wnid_index = lists.wnid_index()
    base = manual / "imagenet" / "val"
    base.mkdir(parents=True)
    salt = _salt("imagenet_val")
    rng = np.random.default_rng([seed, salt])
    order = rng.permutation(np.repeat(np.arange(1000), per_class))  # position k-1 -> ILSVRC2012_ID - 1
    seen: dict[int, int] = {}
    for k, id0 in enumerate(order, 1):
        cls = wnid_index[lists.ilsvrc2012_id_wnids[id0]]
        seen[cls] = seen.get(cls, 0) + 1
        (base / f"ILSVRC2012_val_{k:08d}.JPEG").write_bytes(image(cls, seen[cls] - 1, salt, seed))
    tar = TarBuilder(gz=True)
    tar.add("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
            "".join(f"{int(i) + 1}\n" for i in order).encode())
    tar.add("ILSVRC2012_devkit_t12/data/meta.mat", _meta_mat(2 * per_class))
    (base.parent / "ILSVRC2012_devkit_t12.tar.gz").write_bytes(tar.close())
    return base


def _write_objectnet(manual: Path, per_class: int, seed: int) -> Path:
    """``objectnet-1.0/images/<folder>/<hex>.png`` for all 313 folders (the 113 mapped ones and the 200 the
    builder ignores), each image with the 1-px red border of the real ones (WiSE-FT's ``ObjectNetBase`` defines
    its 2-px crop for it), and ``mappings/folder_to_objectnet_label.json`` (313 entries)."""
    lists = pd.load_class_lists()
    root = manual / "objectnet-1.0"
    salt = _salt("objectnet")
    mapped = {c.folder: (c.label, c.imagenet_indices[0]) for c in lists.objectnet}
    unmapped = {f: (label, 1000 + k) for k, (f, label) in enumerate(sorted(OBJECTNET_UNMAPPED.items()))}
    folders = {**mapped, **unmapped}
    if len(folders) != 313:
        raise DatasetError(f"ObjectNet replica: expected 313 folders, have {len(folders)}")
    for folder, (_, key) in sorted(folders.items()):
        out = root / "images" / folder
        out.mkdir(parents=True)
        for j in range(per_class):
            px = pixels(key, j, salt, seed).copy()
            px[0, :], px[-1, :], px[:, 0], px[:, -1] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
            data = encode(px, "PNG")
            (out / f"{hashlib.sha1(data).hexdigest()[:32]}.png").write_bytes(data)
    (root / "mappings").mkdir()
    (root / "mappings" / "folder_to_objectnet_label.json").write_text(
        json.dumps({f: label for f, (label, _) in sorted(folders.items())}, indent=2) + "\n")
    return root


def _imagenetv2(per_class: int, seed: int) -> bytes:
    """imagenetv2-matched-frequency.tar.gz: ``imagenetv2-matched-frequency-format-val/<0..999>/<sha1>.jpeg``
    (folder = ImageNet class index; the real files are named by a hex hash)."""
    tar, salt = TarBuilder(gz=True), _salt("imagenetv2")
    sub = pd.SOURCES["imagenetv2"]["subdir"]
    for cls in range(1000):
        for j in range(per_class):
            data = image(cls, j, salt, seed)
            tar.add(f"{sub}/{cls}/{hashlib.sha1(data).hexdigest()}.jpeg", data)
    return tar.close()


def _sublist_tar(name: str, per_class: int, seed: int,
                 file_name: Callable[[int, int, np.random.Generator], str]) -> bytes:
    """imagenet-r.tar / imagenet-a.tar (plain tars): ``<subdir>/README.txt`` and ``<subdir>/<wnid>/<file>``."""
    lists = pd.load_class_lists()
    sub = getattr(lists, name)
    tar, salt = TarBuilder(gz=False), _salt(name)
    subdir = pd.SOURCES[name]["subdir"]
    tar.add(f"{subdir}/README.txt", f"{subdir}: a miniature replica ({per_class} image(s) per class).\n".encode())
    rng = np.random.default_rng([seed, salt])
    for wnid, cls in zip(sub.wnids, sub.imagenet_indices):
        for j in range(per_class):
            tar.add(f"{subdir}/{wnid}/{file_name(cls, j, rng)}", image(cls, j, salt, seed))
    return tar.close()


def _imagenet_r(per_class: int, seed: int) -> bytes:
    """imagenet-r.tar: ``imagenet-r/<wnid>/<rendition>_<n>.jpg`` (hendrycks' names: art_0.jpg, cartoon_12.jpg)."""
    return _sublist_tar("imagenet_r", per_class, seed,
                        lambda cls, j, rng: f"{RENDITIONS[(cls + j) % len(RENDITIONS)]}_{j}.jpg")


def _imagenet_a(per_class: int, seed: int) -> bytes:
    """imagenet-a.tar: ``imagenet-a/<wnid>/<score>_<predicted> _ <predicted>_<confidence>.jpg`` (the real names
    record the ResNet's wrong prediction, e.g. ``0.000116_digital clock _ digital clock_0.865662.jpg``)."""
    names = pd.load_class_lists().imagenet_classnames

    def file_name(cls: int, j: int, rng: np.random.Generator) -> str:
        wrong = names[(cls + 1 + j) % 1000].replace("/", " ")
        return f"{rng.uniform(0, 0.01):.6f}_{wrong} _ {wrong}_{rng.uniform(0.3, 1):.6f}.jpg"

    return _sublist_tar("imagenet_a", per_class, seed, file_name)


def _imagenet_sketch(per_class: int, seed: int) -> bytes:
    """ImageNet-Sketch.zip: ``sketch/<wnid>/sketch_<n>.JPEG`` (grey-scale drawings in the real set)."""
    lists = pd.load_class_lists()
    z, salt = ZipBuilder(), _salt("imagenet_sketch")
    subdir = pd.SOURCES["imagenet_sketch"]["subdir"]
    for cls, wnid in enumerate(lists.imagenet_wnids):
        for j in range(per_class):
            z.add(f"{subdir}/{wnid}/sketch_{j}.JPEG", image(cls, j, salt, seed))
    return z.close()


ARCHIVES: dict[str, Callable[[int, int], bytes]] = {
    "imagenetv2": _imagenetv2, "imagenet_r": _imagenet_r, "imagenet_a": _imagenet_a,
    "imagenet_sketch": _imagenet_sketch}
ROBUST_COUNTS: dict[str, Callable[[int], dict]] = {
    "imagenet_heldout": lambda k: _counts(1000 * k, 1000), "imagenet_val": lambda k: _counts(1000 * k, 1000),
    "imagenetv2": lambda k: _counts(1000 * k, 1000), "imagenet_r": lambda k: _counts(200 * k, 200),
    "imagenet_a": lambda k: _counts(200 * k, 200), "imagenet_sketch": lambda k: _counts(1000 * k, 1000),
    "objectnet": lambda k: _counts(113 * k, 113)}


# --- the multi-task sets (multitask_datasets) ----------------------------------------------------------


def _task_rows(task: str, split: str, per_class: int, seed: int) -> list[tuple[int, int]]:
    """(label, variant) of every image of one split, every class ``per_class`` times, in a shuffled order."""
    n = len(mt.task_info(task).classnames)
    rows = [(c, j) for c in range(n) for j in range(per_class)]
    order = np.random.default_rng([seed, _salt(f"{task}/{split}/order")]).permutation(len(rows))
    return [rows[i] for i in order]


def _hf_files(task: str, splits: Sequence[str], per_class: int, seed: int) -> dict[str, bytes]:
    """The ``split`` shard of a tanganke/* dataset: ``data/<split>-00000-of-00001.parquet`` (the spec's pattern
    with one shard), images JPEG (PNG for GTSRB), label names = the shipped class names."""
    fmt = HF_IMAGE_FORMAT.get(task, "JPEG")
    names = mt.task_info(task).classnames
    out = {}
    for split in splits:
        rows = _task_rows(task, split, per_class, seed)
        salt = _salt(f"{task}/{split}")
        path = mt.source_spec(task, "hf", split)["pattern"].replace("*", "00000-of-00001")
        out[path] = hf_parquet([image(c, j, salt, seed, fmt, task) for c, j in rows], [c for c, _ in rows], names)
    return out


def _svhn_files(task: str, splits: Sequence[str], per_class: int, seed: int) -> dict[str, bytes]:
    """``<split>_32x32.mat``: ``X`` uint8 32x32x3xN, ``y`` uint8 Nx1 with 10 for the digit 0 (the cropped-digits
    format that torchvision's ``SVHN`` reads with ``loadmat`` and maps 10 -> 0)."""
    out = {}
    for split in splits:
        rows = _task_rows(task, split, per_class, seed)
        salt = _salt(f"{task}/{split}")
        x = np.stack([_digit(d, j, salt, seed, 32, rgb=True, domain=task) for d, j in rows], axis=3)
        y = np.array([[d if d else 10] for d, _ in rows], np.uint8)
        out[f"{split}_32x32.mat"] = savemat_bytes({"X": x, "y": y})
    return out


def _mnist_files(task: str, splits: Sequence[str], per_class: int, seed: int) -> dict[str, bytes]:
    """``{t10k,train}-images-idx3-ubyte.gz`` (N x 28 x 28) and ``-labels-idx1-ubyte.gz`` (N), torchvision's MNIST
    resources."""
    out = {}
    for split in splits:
        rows = _task_rows(task, split, per_class, seed)
        salt = _salt(f"{task}/{split}")
        stem = mt._MNIST_STEM[split]
        out[f"{stem}-images-idx3-ubyte.gz"] = idx_gz(np.stack([_digit(d, j, salt, seed, 28, rgb=False, domain=task)
                                                               for d, j in rows]))
        out[f"{stem}-labels-idx1-ubyte.gz"] = idx_gz(np.array([d for d, _ in rows], np.uint8))
    return out


GTSRB_CSV_HEAD = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"


def _gtsrb_files(task: str, splits: Sequence[str], per_class: int, seed: int) -> dict[str, bytes]:
    """torchvision's GTSRB files (sid.erda.dk): test = ``GTSRB_Final_Test_Images.zip``
    (``GTSRB/Final_Test/Images/<n:05d>.ppm`` and ``GT-final_test.test.csv`` without ClassId) and
    ``GTSRB_Final_Test_GT.zip`` (``GT-final_test.csv``: ``Filename;Width;...;ClassId``); train =
    ``GTSRB-Training_fixed.zip`` (``GTSRB/Training/<ClassId:05d>/<track:05d>_<n:05d>.ppm`` and ``GT-<class>.csv``)."""
    out = {}
    for split in splits:
        salt = _salt(f"{task}/{split}")
        if split == "test":
            z, rows, gt = ZipBuilder(), _task_rows(task, split, per_class, seed), []
            for n, (c, j) in enumerate(rows):
                px = pixels(c, j, salt, seed, domain=task)
                h, w = px.shape[:2]
                z.add(f"GTSRB/Final_Test/Images/{n:05d}.ppm", encode(px, "PPM"))
                gt.append(f"{n:05d}.ppm;{w};{h};0;0;{w - 1};{h - 1}")
            z.add("GTSRB/Final_Test/Images/GT-final_test.test.csv",
                  ("\n".join([GTSRB_CSV_HEAD.rsplit(";", 1)[0], *gt]) + "\n").encode())
            out["GTSRB_Final_Test_Images.zip"] = z.close()
            z = ZipBuilder()
            z.add("GT-final_test.csv", ("\n".join([GTSRB_CSV_HEAD, *(f"{r};{c}" for r, (c, _) in zip(gt, rows))])
                                        + "\n").encode())
            out["GTSRB_Final_Test_GT.zip"] = z.close()
        else:
            z = ZipBuilder()
            for c in range(len(mt.task_info(task).classnames)):
                lines = [GTSRB_CSV_HEAD]
                for j in range(per_class):
                    px = pixels(c, j, salt, seed, domain=task)
                    h, w = px.shape[:2]
                    fname = f"{j // 30:05d}_{j % 30:05d}.ppm"  # 30 images per physical sign track
                    z.add(f"GTSRB/Training/{c:05d}/{fname}", encode(px, "PPM"))
                    lines.append(f"{fname};{w};{h};0;0;{w - 1};{h - 1};{c}")
                z.add(f"GTSRB/Training/{c:05d}/GT-{c:05d}.csv", ("\n".join(lines) + "\n").encode())
            out["GTSRB-Training_fixed.zip"] = z.close()
    return out


def _dtd_files(task: str, splits: Sequence[str], per_class: int, seed: int) -> dict[str, bytes]:
    """Oxford VGG ``dtd-r1.0.1.tar.gz``: ``dtd/images/<class>/<class>_<nnnn>.jpg`` and partition 1's split lists
    ``dtd/labels/{train,val,test}1.txt`` (lines ``<class>/<file>``, disjoint, ``per_class`` per class each; the
    real partitions have 40) plus ``labels_joint_anno.txt``, as torchvision's ``DTD`` reads them."""
    classes = mt.task_info(task).classnames
    salt = _salt(f"{task}/vgg")
    tar = TarBuilder(gz=True)
    lists: dict[str, list[str]] = {s: [] for s in ("train", "val", "test")}
    joint = []
    for c, name in enumerate(classes):
        for j in range(3 * per_class):
            rel = f"{name}/{name}_{j + 1:04d}.jpg"
            tar.add(f"dtd/images/{rel}", image(c, j, salt, seed, domain=task))
            lists[("train", "val", "test")[j // per_class]].append(rel)
            joint.append(f"{rel} {name} ")
    for split, rels in lists.items():
        tar.add(f"dtd/labels/{split}1.txt", ("\n".join(rels) + "\n").encode())
    tar.add("dtd/labels/labels_joint_anno.txt", ("\n".join(joint) + "\n").encode())
    return {"dtd-r1.0.1.tar.gz": tar.close()}


# (task, source id) -> writer of that source's files for the given splits; "hf" serves every task that has it
SOURCE_WRITERS: dict[tuple[str, str], Callable[[str, Sequence[str], int, int], dict[str, bytes]]] = {
    ("svhn", "torchvision"): _svhn_files,
    ("mnist", "torchvision"): _mnist_files,
    ("gtsrb", "torchvision"): _gtsrb_files,
    ("dtd", "vgg"): _dtd_files,
    **{(task, "hf"): _hf_files for task in mt.TASKS if "hf" in mt.SOURCES[task]},
}


def _write_task(site: Site, task: str, splits: Sequence[str], per_class: int, seed: int) -> dict[str, str]:
    """Every source of ``task`` (default and alternatives) for ``splits``; returns {file name: md5} of the files
    whose URL entry pins an md5 in multitask.json (the overrides the replica needs)."""
    pinned: dict[str, str] = {}
    for via in mt.SOURCES[task]:
        writer = SOURCE_WRITERS.get((task, via))
        if writer is None:
            raise DatasetError(f"no replica writer for source {via!r} of task {task!r}")
        files = writer(task, splits, per_class, seed)
        for split in splits:
            spec = mt.source_spec(task, via, split)
            if spec["kind"] == "hf_parquet":
                continue
            for fname, fspec in spec["files"].items():
                if fname not in files:
                    raise DatasetError(f"replica of {task} ({via}, {split}) did not write {fname}")
                site.put(fspec["urls"][0], files[fname])
                if fspec.get("md5"):
                    pinned[fname] = hashlib.md5(files[fname]).hexdigest()
        if via == "hf":
            repo = mt.SOURCES[task]["hf"]["repo"]
            for path, data in sorted(files.items()):
                site.put_hub(repo, path, data)
    return pinned


# --- entry point ---------------------------------------------------------------------------------------


def _claim_manual(manual: Path, parts: Iterable[str]) -> None:
    """Make room for the manual replicas: a folder already there is replaced only if a previous run marked
    ``manual`` as a replica (a real ImageNet or ObjectNet copy is never deleted)."""
    present = [manual / p for p in parts if (manual / p).exists()]
    if present and not (manual / MARKER).is_file():
        raise DatasetError(f"{present[0]} exists and {manual / MARKER} does not: refusing to replace what may be a "
                           "real copy; point `manual` at an empty folder")
    for p in present:
        shutil.rmtree(p)


def write_dataset_replicas(config: Mapping, site: str | Path, manual: str | Path, *, per_class: int = 1,
                           seed: int = 0, prototypes: Mapping[str, np.ndarray] | None = None) -> dict:
    """Write the dataset replicas of ``config`` (the paper suite's: ``paper.datasets``, ``paper.heldout``,
    ``multitask.tasks``) under ``site`` (served files) and ``manual`` (licence-gated copies); see the module
    docstring for the layouts; with ``prototypes`` (:func:`dawin.replicas.prototypes.suite_prototypes`) the images
    are drawn from them (:func:`painting`), so that the replica models recognise them. Every class gets ``per_class`` images per test (and train) split; the ImageNet
    train replica has ``2 * per_class`` per class, of which model-soups' index file marks ``per_class``.

    Returns what the overlay config must say (plain JSON types)::

        {"manual": {"imagenet_train": ".../imagenet/train", "imagenet_val": ".../imagenet/val",
                    "objectnet": ".../objectnet-1.0"},                       # -> paper.manual
         "heldout": {"expected_train_images": 2000, "expected_images": 1000,
                     "expected_per_class": 1},                               # -> paper.heldout (merged)
         "counts": {"imagenet": {"images": 1000, "classes": 1000}, ..., "objectnet": {"images": 113, ...},
                    "sun397": {"images": 397, "classes": 397}, "sun397_train": {...}, ...},
                    # every dataset of paper.datasets (default source) and <task>_train: expected_images /
                    # expected_classes of its builder
         "alternatives": {"gtsrb": {"torchvision": {"test": {...}, "train": {...}}}, "dtd": {"vgg": {...}}},
         "md5": {"imagenet_r": "<md5>", "imagenet_a": "<md5>",               # fetch_archive(md5=...)
                 "svhn": {"test_32x32.mat": "<md5>", "train_32x32.mat": "<md5>"}, "mnist": {...},
                 "gtsrb": {...}, "dtd": {...}},                              # prepare_task(md5={file: md5})
         "files": {"<first URL>": {"path": "<host>/<path>", "size": .., "md5": .., "sha256": ..}, ...},
         "hf": {"tanganke/sun397": [{"path": "data/test-00000-of-00001.parquet", "site_path": "hf/datasets/...",
                                     "size": .., "md5": .., "sha256": ..}, ...], ...}}

    ``md5`` holds exactly the files whose source pins a published md5 the replica cannot match; the other
    downloads (ImageNet-V2, -Sketch, the index file, HF shards) are checked against the lock file, which
    records them on first fetch, or against the hub's listed sha256 (``hf``).
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    with painting(prototypes):
        return _write_dataset_replicas(config, Path(site), Path(manual), per_class, seed)


def _write_dataset_replicas(config: Mapping, site: Path, manual: Path, per_class: int, seed: int) -> dict:
    site_root = site
    paper = config["paper"]
    builders = dict(paper["datasets"])
    unknown = sorted(n for n, b in builders.items() if b not in pd.BUILDERS and b not in mt.MULTITASK_BUILDERS)
    if unknown:
        raise DatasetError(f"no replica for dataset(s) {', '.join(unknown)}: their builders are neither "
                           "paper_datasets.BUILDERS nor multitask_datasets.MULTITASK_BUILDERS")
    s = Site(site_root)
    out: dict = {"manual": {}, "heldout": {}, "counts": {}, "alternatives": {}, "md5": {}}
    robust = {n: b for n, b in builders.items() if b in pd.BUILDERS}

    if any(b in pd.MANUAL for b in robust.values()):
        _claim_manual(manual, ["imagenet", "objectnet-1.0"])
        manual.mkdir(parents=True, exist_ok=True)
        (manual / MARKER).write_text(json.dumps({"per_class": per_class, "seed": seed}) + "\n")
    for name, builder in sorted(robust.items()):
        if builder == "imagenet_heldout":
            train = _write_imagenet_train(manual, per_class, seed)
            out["manual"]["imagenet_train"] = str(train)
            npy, out["heldout"] = _write_heldout_indices(train, per_class, seed)
            url = paper["heldout"]["indices"]["url"]
            s.put(url if isinstance(url, str) else url[0], npy)
        elif builder == "imagenet_val":
            out["manual"]["imagenet_val"] = str(_write_imagenet_val(manual, per_class, seed))
        elif builder == "objectnet":
            out["manual"]["objectnet"] = str(_write_objectnet(manual, per_class, seed))
        else:
            spec = pd.SOURCES[builder]
            data = ARCHIVES[builder](per_class, seed)
            s.put(spec["urls"][0], data)
            if spec.get("md5"):
                out["md5"][name] = hashlib.md5(data).hexdigest()
        out["counts"][name] = ROBUST_COUNTS[builder](per_class)

    tasks_cfg = (config.get("multitask") or {}).get("tasks") or {}
    for name, task in sorted((n, b) for n, b in builders.items() if b in mt.MULTITASK_BUILDERS):
        splits = ["test"] + (["train"] if "train" in (tasks_cfg.get(name) or {}) else [])
        pinned = _write_task(s, task, splits, per_class, seed)
        if pinned:
            out["md5"][name] = pinned
        n_classes = len(mt.task_info(task).classnames)
        for split in splits:
            out["counts"][name if split == "test" else f"{name}_train"] = _counts(n_classes * per_class, n_classes)
        for via in list(mt.SOURCES[task])[1:]:
            out["alternatives"].setdefault(name, {})[via] = {
                split: _counts(n_classes * per_class, n_classes) for split in splits}
    out["files"], out["hf"] = s.files, s.hf
    return out
