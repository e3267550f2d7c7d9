"""Provenance: what a result was computed from, recorded in it and checked before the workflow runs.

Snakemake reruns a job when an input is newer than its outputs. A checkpoint replaced by another one with its
old timestamp kept (``cp -p``, a restored backup) or a dataset whose images are deleted, truncated or replaced in
place changes no timestamp Snakemake compares, so the next run would reuse results of other inputs and exit 0.
Each job that reads a checkpoint or a dataset therefore records their content keys in its output
(:func:`record`), and when the workflow is parsed :func:`stale` compares the keys recorded in the existing
outputs with the inputs' current ones; the workflow stops on a difference, naming the stale files and how to
rebuild them (``common.smk``).

Content keys: a file's sha256, and a dataset's digest of its ``index.csv``, its ``dataset.json`` and the name,
size and mtime of every image it lists, with the newest ctime among those files. Hashing every checkpoint at every
parse would take seconds, so :class:`Keys` caches each sha256 against the file's stat signature (size, mtime,
ctime, inode: ``cp -p`` keeps the mtime, never the ctime) in a small JSON file. Hashing every image is out of
reach at paper scale, so a dataset costs one ``stat`` per file (:func:`scan_dataset`). Deleted, added, truncated
or replaced images change a size or an mtime (``cp -p`` of another image brings that image's mtime). A
replacement of the same size given back the old mtime changes its ctime, which no tool can set: a dataset some
of whose files have a ctime newer than the record's is stale. A dataset all of whose files are newer was copied
or restored whole (``cp -a``, ``rsync -a`` of data and results to scratch) and stays valid, as long as the
names, sizes and mtimes agree; the cache then remembers the copy's ctimes, so a later in-place change of a few
files is found there too. What stays unseen: every listed file of a dataset replaced, each with the size and
mtime of the one it replaces.

Importable without torch: the workflow calls it at parse time.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import json
import os
import shlex
import struct
import time
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


SCAN_THREADS = 16
"""Threads that ``stat`` a large dataset's files on a slow file system: on a cluster file system each ``stat`` is
a round trip to a metadata server, and concurrent ones overlap. On a local disk the threads only contend for
the GIL, so they are used only when the first files' ``stat`` takes longer than :data:`SLOW_STAT_S` each
(``benchmarks/dataset_scan.py`` measures both)."""
SLOW_STAT_S = 50e-6


def _stat_each(paths: Sequence[Path]) -> list[os.stat_result | None]:
    out = []
    for path in paths:
        try:
            out.append(os.stat(path))
        except FileNotFoundError:
            out.append(None)
    return out


def _stat_all(paths: Sequence[Path], threads: int = SCAN_THREADS) -> list[os.stat_result | None]:
    """``os.stat`` of every path (None where missing), in order: the first 256 on this thread, the rest in
    contiguous slices over ``threads`` threads when those were slow and many remain (``stat`` releases the GIL)."""
    start = time.perf_counter()
    head = _stat_each(paths[:256])
    slow = time.perf_counter() - start > SLOW_STAT_S * len(head)
    rest = paths[256:]
    if threads <= 1 or not slow or len(rest) < 1000:
        return head + _stat_each(rest)
    from concurrent.futures import ThreadPoolExecutor

    step = -(-len(rest) // threads)
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(_stat_each, [rest[i:i + step] for i in range(0, len(rest), step)])
    return head + [st for part in parts for st in part]


def scan_dataset(root: str | Path, threads: int = SCAN_THREADS) -> tuple[str, list[int]]:
    """A dataset's digest (its index, its dataset.json and every listed file's name, size and mtime) and the sorted
    ctimes of those files: one ``stat`` per file."""
    root = Path(root)
    h = hashlib.sha256()
    ctimes = []
    for name in ("index.csv", "dataset.json"):
        try:
            h.update((root / name).read_bytes())
            ctimes.append(os.stat(root / name).st_ctime_ns)
        except FileNotFoundError:
            h.update(f"{name}\tmissing\n".encode())
    try:
        with open(root / "index.csv", newline="") as f:
            names = [row["path"] for row in csv.DictReader(f)]
    except (OSError, KeyError, ValueError, csv.Error):
        names = []  # a damaged index: its bytes are in the digest, and the job that reads it names the problem
    for name, st in zip(names, _stat_all([root / n for n in names], threads)):
        if st is None:
            h.update(f"{name}\tmissing\n".encode())
        else:
            h.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            ctimes.append(st.st_ctime_ns)
    return h.hexdigest(), sorted(ctimes)


def _signature(path: str | Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class Keys:
    """Current content keys, each computed at most once, cached in ``cache`` (a JSON file): a file's sha256 against
    its stat signature, so an unchanged checkpoint is not read again; a dataset's newest ctime once it was found
    copied whole; and, when ``datasets`` is a number of hours, each dataset's verdicts for that long (the files of
    a dataset are then ``stat``ed at most once in that many hours). ``datasets=True`` scans them every time,
    ``False`` never."""

    def __init__(self, cache: str | Path | None = None, datasets: bool | float = True):
        self.cache, self.datasets = (Path(cache) if cache else None), datasets
        self._verdicts_for_ns = None if isinstance(datasets, bool) else int(float(datasets) * 3600e9)
        self._cached: dict[str, dict] = {"files": {}, "datasets": {}}
        if self.cache and self.cache.is_file():
            try:
                loaded = json.loads(self.cache.read_text())
            except (ValueError, OSError):
                loaded = None
            # anything but the shape it is written in is a damaged cache, as garbage bytes are: start afresh
            if (isinstance(loaded, dict) and set(loaded) == {"files", "datasets"}
                    and all(isinstance(v, dict) and all(isinstance(e, dict) for e in v.values())
                            for v in loaded.values())):
                self._cached = loaded
        self._scans: dict[str, tuple[str, list[int]]] = {}
        self._dirty = False

    def file(self, path: str | Path) -> str:
        name = os.path.normpath(path)
        sig = _signature(name)
        hit = self._cached["files"].get(name)
        if not isinstance(hit, dict) or hit.get("signature") != sig or "sha256" not in hit:
            hit = self._cached["files"][name] = {"signature": sig, "sha256": file_sha256(name)}
            self._dirty = True
        return hit["sha256"]

    def dataset_changed(self, root: str | Path, digest: str, newest_ctime: int | None) -> bool | None:
        """Whether the dataset at ``root`` differs from the one recorded as ``digest`` and ``newest_ctime`` (None
        when datasets are not scanned): another digest, or some but not all of its files changed (ctime) since."""
        if self.datasets is False:
            return None
        name = os.path.normpath(root)
        cached = self._cached["datasets"].setdefault(name, {})
        verdict = f"{digest}@{newest_ctime}"
        if (name not in self._scans and self._verdicts_for_ns is not None and verdict in cached.get("verdicts", {})
                and time.time_ns() - cached.get("scanned_ns", 0) < self._verdicts_for_ns):
            return cached["verdicts"][verdict]
        if name not in self._scans:
            self._scans[name] = scan_dataset(name)
            if self._verdicts_for_ns is not None:
                cached.update(scanned_ns=time.time_ns(), verdicts={})
        changed = self._changed(cached, self._scans[name], digest, newest_ctime)
        if self._verdicts_for_ns is not None:
            cached["verdicts"][verdict] = changed
            self._dirty = True
        return changed

    def _changed(self, cached: dict, scan: tuple[str, list[int]], digest: str, newest_ctime: int | None) -> bool:
        now, ctimes = scan
        if now != digest:
            return True
        if newest_ctime is None:  # a record written before ctimes were recorded
            return False
        copied = cached.get("copied", {})
        if copied.get("digest") == digest:
            newest_ctime = max(newest_ctime, copied["newest_ctime"])
        newer = len(ctimes) - bisect.bisect_right(ctimes, newest_ctime)
        if newer == len(ctimes) and newer:  # copied or restored whole: the copy's ctimes are the new reference
            cached["copied"] = {"digest": digest, "newest_ctime": ctimes[-1]}
            self._dirty = True
            return False
        return newer > 0

    def save(self) -> None:
        """Write the cache whole: under a file lock, to a temporary name of this process's own, moved into place, so
        two runs in one results folder never write or move one temporary file (the later writer's cache wins: a
        lost entry is only computed again)."""
        if self.cache and self._dirty:
            import tempfile

            from filelock import FileLock

            self.cache.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(f"{self.cache}.lock"):
                fd, tmp = tempfile.mkstemp(prefix=self.cache.name + ".", suffix=".tmp", dir=self.cache.parent)
                try:
                    with os.fdopen(fd, "w") as f:
                        f.write(json.dumps(self._cached))
                    os.replace(tmp, self.cache)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            self._dirty = False


def entry(files: Sequence[str | Path] | Mapping[str, str] = (), datasets: Sequence[str | Path] = ()) -> dict:
    """The content keys of ``files`` (checkpoints: paths, or {path: sha256} already computed) and ``datasets``
    (directories: digest, and newest ctime of their files), as a JSON result holds them under :data:`KEY`."""
    hashes = files if isinstance(files, Mapping) else {f: file_sha256(f) for f in files}
    scans = {os.path.normpath(d): scan_dataset(d) for d in datasets}
    return {"files": {os.path.normpath(f): h for f, h in hashes.items()},
            "datasets": {d: digest for d, (digest, _) in scans.items()},
            "dataset_ctimes": {d: max(ctimes, default=0) for d, (_, ctimes) in scans.items()}}


def record(files: Sequence[str | Path] | Mapping[str, str] = (), datasets: Sequence[str | Path] = ()) -> dict[str, str]:
    """:func:`entry` as a safetensors file's metadata entry (:mod:`dawin.tensorio`)."""
    return {KEY: json.dumps(entry(files, datasets), sort_keys=True)}


def safetensors_metadata(path: str | Path) -> dict[str, str] | None:
    """The metadata :mod:`dawin.tensorio` wrote into a safetensors file (None for a damaged or foreign file), read
    from the header directly (8-byte length, JSON), so no tensor library is imported."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > os.fstat(f.fileno()).st_size - 8:  # not a safetensors header: a damaged or foreign file
                return None
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        value = json.loads(meta.get(META_KEY, "{}"))
    except (OSError, ValueError, struct.error, AttributeError):
        return None
    return value if isinstance(value, dict) else None


def recorded(path: str | Path) -> dict | None:
    """The record of a result file (a safetensors file's metadata, or a JSON file's field); None without one."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            value = (safetensors_metadata(path) or {}).get(KEY)
            return json.loads(value) if value else None
        if path.suffix == ".json":
            value = json.loads(path.read_text())
            return value.get(KEY) if isinstance(value, dict) else None
    except (OSError, ValueError, struct.error):
        return None  # a damaged file is the reader's error to report
    return None


def input_mtime_ns(path: str | Path) -> int:
    """The time Snakemake dates an input by: a directory's ``.snakemake_timestamp`` where it has one (Snakemake
    writes it into directory outputs), else the file's or directory's own mtime (``IOFile.mtime`` and
    ``IOFile.touch`` in ``snakemake/io/__init__.py``, 9.27.1)."""
    stamp = Path(path) / ".snakemake_timestamp"
    return os.stat(stamp if stamp.is_file() else path).st_mtime_ns


def stale(results: Iterable[str | Path], keys: Keys) -> list[tuple[str, str, str]]:
    """(result, kind, input) for every result one of whose recorded inputs (kind ``file`` or ``dataset``) now has
    other content while its timestamp does not say so. An input newer than the result, or missing, is left to
    Snakemake, which reruns the result or reports the input."""
    out = []
    for result in results:
        rec = recorded(result)
        if not isinstance(rec, dict):
            continue
        try:
            made = os.stat(result).st_mtime_ns

            def unseen(source):
                return os.path.exists(source) and input_mtime_ns(source) <= made

            changed = [("file", source) for source, key in rec.get("files", {}).items()
                       if unseen(source) and keys.file(source) != key]
            if not changed:
                ctimes = rec.get("dataset_ctimes", {})
                changed = [("dataset", source) for source, key in rec.get("datasets", {}).items()
                           if unseen(source) and keys.dataset_changed(source, key, ctimes.get(source))]
        except FileNotFoundError:  # removed while this check ran (a job of a run beside this one): Snakemake's
            continue               # directory lock keeps that run's jobs and this one's apart
        if changed:
            out.append((str(result), *changed[0]))
    return out


def touch_command(changed: Iterable[tuple[str, str, str]]) -> str:
    """The shell command that dates the changed inputs of :func:`stale`'s results as new, so that Snakemake reruns
    everything computed from them (a dataset directory through the ``.snakemake_timestamp`` it dates it by)."""
    sources = sorted({os.path.join(source, ".snakemake_timestamp") if kind == "dataset" else source
                      for _, kind, source in changed})
    return "touch " + " ".join(shlex.quote(s) for s in sources)
