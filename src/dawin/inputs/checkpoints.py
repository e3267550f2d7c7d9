"""Fetching upstream checkpoints for conversion, with sha256 pins and a lock file.

A checkpoint source in the config is one of
  ``{url: [primary, mirror, ...]}``            (GitHub release assets, any HTTPS host),
  ``{gdrive_file: <id>}``                      (one Google Drive file, through gdown), or
  ``{gdrive_folder: <id>, file: <name>}``      (one file of a Drive folder, found in the folder's listing and
                                               downloaded alone by its own id),
  ``{hf_repo: <owner/name>}``                  (a Hugging Face model directory: config + weights, safetensors or
                                               ``pytorch_model.bin``),
  ``{head: {backbone: .., dataset: ..}}``      (a zero-shot head built by this workflow: nothing to fetch),
optionally with ``sha256``. Without a pinned sha256, the first fetch records the file's hash in a lock file
and every later fetch must match it, so a silently replaced upstream file is an error, never a new number.

A site can pre-stage files in a mirror folder (``paper.mirror`` in the config), consulted before the network
and checked against the same hashes: ``<mirror>/<file name of the URL>``, ``<mirror>/gdrive/<file id>``,
``<mirror>/gdrive/<folder id>/<file>`` and ``<mirror>/hf/<owner>/<name>/`` (see :func:`mirror_path`); the
multi-task datasets' hub shards as ``<mirror>/hf/datasets/<owner>/<name>/<path>``
(:func:`dawin.inputs.multitask_datasets.prepare_task`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

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


def mirror_path(spec: Mapping, mirror: str | Path) -> Path | None:
    """Where a pre-staged copy of a source lives in the mirror folder (see the module docstring); None for a
    Drive folder source that names no file (its fetch then lists the folder and asks for the name)."""
    mirror = Path(mirror)
    if "url" in spec:
        return mirror / PurePosixPath(urlsplit(spec["url"][0]).path).name
    if "gdrive_file" in spec:
        return mirror / "gdrive" / spec["gdrive_file"]
    if "gdrive_folder" in spec:
        return mirror / "gdrive" / spec["gdrive_folder"] / spec["file"] if spec.get("file") else None
    if "hf_repo" in spec:
        return mirror / "hf" / spec["hf_repo"]
    raise DownloadError(f"a source needs url, gdrive_file, gdrive_folder or hf_repo, got {sorted(spec)}")


def place_copy(src: Path, dest: Path) -> None:
    """Put a copy of ``src`` (file or directory) at ``dest`` atomically: hard links where possible."""
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    if src.is_dir():
        shutil.copytree(src, tmp, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, tmp)
    os.replace(tmp, dest)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _gdrive_download(file_id: str, dest: Path, what: str) -> None:
    import gdown

    tmp = dest.with_name(dest.name + ".part")
    if not gdown.download(id=file_id, output=str(tmp), quiet=False):
        raise DownloadError(f"Google Drive file {file_id} ({what}) could not be downloaded (quota or permissions); "
                            "download it in a browser and put it in the mirror folder (paper.mirror)")
    os.replace(tmp, dest)


def gdrive_folder_listing(folder_id: str) -> dict[str, str]:
    """``{path inside the folder: file id}`` of a Drive folder, without downloading anything (gdown lists
    at most 50 entries per folder level)."""
    import gdown

    entries = gdown.download_folder(id=folder_id, skip_download=True, quiet=True) or []
    return {PurePosixPath(e.path).as_posix(): e.id for e in entries}


def _gdrive_folder_file(spec: Mapping, dest: Path, config_key: str) -> None:
    """Download only the named file of a Drive folder, by its own id from the folder's listing."""
    folder, wanted = spec["gdrive_folder"], spec.get("file")
    listing = gdrive_folder_listing(folder)
    held = ", ".join(sorted(listing)) or "nothing visible"
    if not wanted:
        raise DownloadError(f"Google Drive folder {folder} holds {held}; name the checkpoint with `{config_key}.file`")
    matches = [p for p in listing if p == wanted] or [p for p in listing if PurePosixPath(p).name == wanted]
    if len(matches) != 1:
        problem = f"has no file {wanted!r}" if not matches else f"has {len(matches)} files named {wanted!r}"
        raise DownloadError(f"Google Drive folder {folder} {problem}; it holds: {held}. Set `{config_key}.file` "
                            "in the config to the path of the checkpoint you mean")
    _gdrive_download(listing[matches[0]], dest, f"{matches[0]} of folder {folder}")


def _hf_repo(spec: Mapping, dest: Path) -> None:
    from huggingface_hub import snapshot_download

    tmp = dest.with_name(dest.name + ".part")
    # transformers 4.x repos (e.g. openai/clip-vit-base-patch32) ship pytorch_model.bin only; the converter
    # reads it with torch.load(weights_only=True) after its hash is checked
    snapshot_download(repo_id=spec["hf_repo"], local_dir=str(tmp), allow_patterns=list(HF_PATTERNS))
    shutil.rmtree(tmp / ".cache", ignore_errors=True)
    os.replace(tmp, dest)


HF_PATTERNS = ("config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
               "pytorch_model.bin.index.json")


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


def fetch_checkpoint(key: str, spec: Mapping, dest: str | Path, lock: str | Path, *, mirror: str | Path | None = None,
                     config_key: str | None = None, rewrites: Mapping[str, str] | None = None) -> Path:
    """Fetch one upstream file (or HF model directory) to ``dest`` and enforce its hash (module docstring).

    ``mirror`` is consulted first; ``config_key`` (e.g. ``paper.checkpoints.ViT-B-32.sources.checkpoint``)
    is named in errors that a config change fixes; ``rewrites`` applies to URL sources
    (:func:`dawin.inputs.download.rewrite_urls`).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    config_key = config_key or key
    if not dest.exists():
        staged = mirror_path(spec, mirror) if mirror else None
        if staged is not None and staged.exists():
            place_copy(staged, dest)
        elif "url" in spec:
            fetch(list(spec["url"]), dest, spec.get("sha256"), rewrites=rewrites)
        elif "gdrive_file" in spec:
            _gdrive_download(spec["gdrive_file"], dest, config_key)
        elif "gdrive_folder" in spec:
            _gdrive_folder_file(spec, dest, config_key)
        elif "hf_repo" in spec:
            _hf_repo(spec, dest)
        else:
            raise DownloadError(f"{key}: a checkpoint source needs url, gdrive_file, gdrive_folder or hf_repo, "
                                f"got {sorted(spec)}")
    enforce_lock(key, dest, lock, spec.get("sha256"))
    return dest
