"""Fetching upstream checkpoints for conversion, with sha256 pins and a lock file.

A checkpoint source in the config is one of
  ``{url: [primary, mirror, ...]}``            (GitHub release assets, any HTTPS host),
  ``{gdrive_file: <id>}``                      (one Google Drive file, through gdown), or
  ``{gdrive_folder: <id>, file: <name>}``      (one file of a Drive folder; ``file`` may be omitted when the
                                               folder holds exactly one checkpoint),
  ``{hf_repo: <owner/name>}``                  (a Hugging Face model directory: config + safetensors weights),
  ``{head: {backbone: .., dataset: ..}}``      (a zero-shot head built by this workflow: nothing to fetch),
optionally with ``sha256``. Without a pinned sha256, the first fetch records the file's hash in a lock file
and every later fetch must match it, so a silently replaced upstream file is an error, never a new number.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock

from .download import DownloadError, fetch, sha256_file


class LockMismatch(DownloadError):
    """A fetched file differs from the hash pinned in the config or recorded in the lock file."""


def read_lock(lock: str | Path) -> dict[str, str]:
    lock = Path(lock)
    return json.loads(lock.read_text()) if lock.exists() else {}


def digest(path: str | Path) -> str:
    """sha256 of a file; for an HF model directory the digest over its config and weight files."""
    if Path(path).is_dir():
        from .convert import source_digest  # torch-heavy: only for directories

        return source_digest(path)[0]
    return sha256_file(path)


def enforce_lock(key: str, path: str | Path, lock: str | Path, pinned: str | None = None) -> str:
    """Check ``path`` against the pinned hash, else against the lock file (recording it on first use)."""
    actual = digest(path)
    recorded = read_lock(lock)
    expected = pinned or recorded.get(key)
    if expected and actual != expected:
        where = "the config" if pinned else f"the lock file {lock}"
        raise LockMismatch(f"{key}: {path} has sha256 {actual}, {where} expects {expected}; the upstream file "
                           "changed or the download is corrupt. Delete it and fetch again, or update the pin "
                           "if the change is intended")
    if recorded.get(key) != actual:
        recorded[key] = actual
        tmp = Path(f"{lock}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, lock)
    return actual


def _gdrive(spec: Mapping, dest: Path, cache: Path) -> None:
    import gdown

    if "gdrive_file" in spec:
        tmp = dest.with_name(dest.name + ".part")
        if not gdown.download(id=spec["gdrive_file"], output=str(tmp), quiet=False):
            raise DownloadError(f"Google Drive file {spec['gdrive_file']} could not be downloaded (quota or permissions)")
        os.replace(tmp, dest)
        return
    # a folder is downloaded once into the cache (marked complete at the end) and shared by every file of
    # it; the lock serialises the parallel jobs that want files of the same folder
    folder = cache / spec["gdrive_folder"]
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".complete").exists():
            gdown.download_folder(id=spec["gdrive_folder"], output=str(folder), quiet=False)
            (folder / ".complete").touch()
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != ".complete")
    wanted = spec.get("file")
    if wanted is None:
        ckpts = [f for f in files if f.endswith((".pt", ".pth", ".bin", ".safetensors"))]
        if len(ckpts) != 1:
            raise DownloadError(f"Google Drive folder {spec['gdrive_folder']} holds {len(ckpts)} checkpoints "
                                f"({', '.join(ckpts[:6])}); name one with `file:` in the config")
        wanted = ckpts[0]
    if wanted not in files:
        raise DownloadError(f"Google Drive folder {spec['gdrive_folder']} has no file {wanted!r} "
                            f"(it has {', '.join(files[:6])})")
    shutil.copyfile(folder / wanted, dest.with_name(dest.name + ".part"))
    os.replace(dest.with_name(dest.name + ".part"), dest)


def _hf_repo(spec: Mapping, dest: Path) -> None:
    from huggingface_hub import snapshot_download

    tmp = dest.with_name(dest.name + ".part")
    snapshot_download(repo_id=spec["hf_repo"], local_dir=str(tmp),
                      allow_patterns=["config.json", "*.safetensors", "*.safetensors.index.json"])
    shutil.rmtree(tmp / ".cache", ignore_errors=True)
    os.replace(tmp, dest)


def describe_source(spec: Mapping) -> str:
    """Where a checkpoint source points, for sidecars and logs."""
    if "hf_repo" in spec:
        return f"hf:{spec['hf_repo']}"
    if "head" in spec:
        return f"workflow:zeroshot_head/{spec['head']['backbone']}/{spec['head']['dataset']}"
    if "url" in spec:
        return " | ".join(spec["url"])
    if "gdrive_file" in spec:
        return f"gdrive:{spec['gdrive_file']}"
    return f"gdrive-folder:{spec.get('gdrive_folder')}/{spec.get('file', '')}"


def fetch_checkpoint(key: str, spec: Mapping, dest: str | Path, lock: str | Path,
                     cache: str | Path | None = None) -> Path:
    """Download one upstream checkpoint file to ``dest`` and enforce its hash (see the module docstring).

    ``cache`` keeps whole Google Drive folders (default: beside ``dest``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        if "url" in spec:
            fetch(list(spec["url"]), dest, spec.get("sha256"))
        elif "gdrive_file" in spec or "gdrive_folder" in spec:
            _gdrive(spec, dest, Path(cache) if cache else dest.parent / ".gdrive")
        elif "hf_repo" in spec:
            _hf_repo(spec, dest)
        else:
            raise DownloadError(f"{key}: a checkpoint source needs url, gdrive_file, gdrive_folder or hf_repo, "
                                f"got {sorted(spec)}")
    enforce_lock(key, dest, lock, spec.get("sha256"))
    return dest
