"""Provenance: what a result was computed from, recorded in it and checked before the workflow runs.

Snakemake reruns a job when an input is newer than its outputs. A checkpoint replaced by another one with its
old timestamp kept (``cp -p``, a restored backup) or a dataset whose images are deleted, truncated or replaced in
place changes no timestamp Snakemake compares, so the next run would reuse results of other inputs and exit 0.
Each job that reads a checkpoint or a dataset therefore records their content keys in its output
(:func:`record`), and when the workflow is parsed :func:`stale` compares the keys recorded in the existing
outputs with the inputs' current ones; the workflow stops on a difference, naming the stale files and how to
rebuild them (``common.smk``).

Content keys: a file's sha256, and a dataset's digest of its ``index.csv``, its ``dataset.json`` and the name,
size and mtime of every image it lists. Hashing every checkpoint at every parse would take seconds, so
:class:`Keys` caches each sha256 against the file's stat signature (size, mtime, ctime, inode: ``cp -p`` keeps
the mtime, never the ctime) in a small JSON file. Hashing every image is out of reach at paper scale, so a dataset
costs one ``stat`` per image (about 0.6 s per 50,000 images on this machine's disk; the config can turn the scan
off for slow file systems), and its digest leaves the ctime out: a dataset copied with its results (``cp -a``,
``rsync -a``, a restored backup) keeps its mtimes and stays valid, where ctimes would all change. Deleted,
added, truncated or replaced images change a size or an mtime (``cp -p`` of another image brings that image's
mtime); what stays unseen is a replacement of the same size given back the old mtime on purpose.

Importable without torch: the workflow calls it at parse time.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .tensorio import META_KEY

KEY = "provenance"
"""The metadata entry (safetensors) or JSON field holding a result's record."""


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (the package's one file-hashing helper)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    return file_digest(path, "sha256")


def dataset_key(root: str | Path) -> str:
    """Digest of a dataset's index, its dataset.json and every listed file's name, size and mtime."""
    root = Path(root)
    h = hashlib.sha256()
    for name in ("index.csv", "dataset.json"):
        h.update((root / name).read_bytes())
    with open(root / "index.csv", newline="") as f:
        for row in csv.DictReader(f):
            try:
                st = os.stat(root / row["path"])
                h.update(f"{row['path']}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            except FileNotFoundError:
                h.update(f"{row['path']}\tmissing\n".encode())
    return h.hexdigest()


def _signature(path: str | Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class Keys:
    """Current content keys, each computed at most once; file hashes cached in ``cache`` (a JSON file) against the
    file's stat signature, so an unchanged checkpoint is not read again. ``datasets=False`` skips dataset keys."""

    def __init__(self, cache: str | Path | None = None, datasets: bool = True):
        self.cache, self.datasets = (Path(cache) if cache else None), datasets
        self._hashes: dict[str, dict] = {}
        if self.cache and self.cache.is_file():
            try:
                self._hashes = json.loads(self.cache.read_text())
            except ValueError:
                self._hashes = {}
        self._dataset_keys: dict[str, str] = {}
        self._dirty = False

    def file(self, path: str | Path) -> str:
        name = os.path.normpath(path)
        sig = _signature(name)
        hit = self._hashes.get(name)
        if hit is None or hit["signature"] != sig:
            hit = self._hashes[name] = {"signature": sig, "sha256": file_sha256(name)}
            self._dirty = True
        return hit["sha256"]

    def dataset(self, root: str | Path) -> str | None:
        if not self.datasets:
            return None
        name = os.path.normpath(root)
        if name not in self._dataset_keys:
            self._dataset_keys[name] = dataset_key(name)
        return self._dataset_keys[name]

    def save(self) -> None:
        if self.cache and self._dirty:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache.with_name(self.cache.name + ".tmp")
            tmp.write_text(json.dumps(self._hashes))
            os.replace(tmp, self.cache)
            self._dirty = False


def entry(files: Sequence[str | Path] | Mapping[str, str] = (), datasets: Sequence[str | Path] = ()) -> dict:
    """The content keys of ``files`` (checkpoints: paths, or {path: sha256} already computed) and ``datasets``
    (directories), as a JSON result holds them under :data:`KEY`."""
    hashes = files if isinstance(files, Mapping) else {f: file_sha256(f) for f in files}
    return {"files": {os.path.normpath(f): h for f, h in hashes.items()},
            "datasets": {os.path.normpath(d): dataset_key(d) for d in datasets}}


def record(files: Sequence[str | Path] | Mapping[str, str] = (), datasets: Sequence[str | Path] = ()) -> dict[str, str]:
    """:func:`entry` as a safetensors file's metadata entry (:mod:`dawin.tensorio`)."""
    return {KEY: json.dumps(entry(files, datasets), sort_keys=True)}


def recorded(path: str | Path) -> dict | None:
    """The record of a result file (a safetensors file's metadata, or a JSON file's field); None without one.

    The safetensors header is read directly (8-byte length, JSON), so no tensor library is imported."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > os.fstat(f.fileno()).st_size - 8:  # not a safetensors header: a damaged or foreign file
                    return None
                meta = json.loads(f.read(n)).get("__metadata__") or {}
            value = json.loads(meta.get(META_KEY, "{}")).get(KEY)  # dawin.tensorio's metadata entry
            return json.loads(value) if value else None
        if path.suffix == ".json":
            value = json.loads(path.read_text())
            return value.get(KEY) if isinstance(value, dict) else None
    except (OSError, ValueError, struct.error):
        return None  # a damaged file is the reader's error to report
    return None


def stale(results: Iterable[str | Path], keys: Keys) -> list[tuple[str, str]]:
    """(result, reason) for every result whose recorded inputs now have other content while their timestamps do not
    say so (an input newer than the result is left to Snakemake, which reruns it anyway)."""
    out = []
    for result in results:
        rec = recorded(result)
        if not rec:
            continue
        made = os.stat(result).st_mtime_ns
        for kind, entries, current in (("file", rec.get("files", {}), keys.file),
                                       ("dataset", rec.get("datasets", {}), keys.dataset)):
            for source, key in entries.items():
                if not os.path.exists(source):
                    continue  # a missing input is Snakemake's to report
                if kind == "file" and os.stat(source).st_mtime_ns > made:
                    continue
                now = current(source)
                if now is not None and now != key:
                    out.append((str(result), f"{kind} {source} has changed since"))
                    break
            else:
                continue
            break
    return out
