"""Fetching upstream checkpoints for conversion, with sha256 pins and a lock file.

A checkpoint source in the config is one of
  ``{url: [primary, mirror, ...]}``            (GitHub release assets, any HTTPS host),
  ``{gdrive_file: <id>}``                      (one Google Drive file, through gdown), or
  ``{gdrive_folder: <id>, file: <name>}``      (one file of a Drive folder, found in the folder's listing and
                                               downloaded alone by its own id),
  ``{hf_repo: <owner/name>}``                  (a Hugging Face model directory: config + weights, safetensors or
                                               ``pytorch_model.bin``),
  ``{head: {backbone: .., dataset: ..}}``      (a zero-shot head built by this workflow: nothing to fetch),
optionally with ``sha256``. Without a pinned sha256, the file's hash is recorded in a lock file (``paper.lock``:
``{key: sha256}``, one entry per source) once the file is *accepted*, that is once the step that reads it
succeeded (its conversion, the extraction of an archive, the held-out split built from the index file), and
every later fetch must match it, so a silently replaced upstream file is an error, never a new number. A fetch
only checks against what is recorded: a first download that is an HTML page or a wrong model is rejected by
the reader and locks nothing. ``python -m dawin.inputs.checkpoints forget <key> --lock <lock>`` clears one entry
(:func:`forget`). Writers take a file lock (``<lock>.flock``), so parallel fetch and conversion jobs lose no entry.

A site can pre-stage files in a mirror folder (``paper.mirror`` in the config), consulted before the network
and checked against the same hashes: ``<mirror>/<file name of the URL>``, ``<mirror>/gdrive/<file id>``,
``<mirror>/gdrive/<folder id>/<file>`` and ``<mirror>/hf/<owner>/<name>/`` (see :func:`mirror_path`); the
multi-task datasets' hub shards as ``<mirror>/hf/datasets/<owner>/<name>/<path>``
(:func:`dawin.inputs.multitask_datasets.prepare_task`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from filelock import FileLock

from .download import DownloadError, fetch, html_page, sha256_file


class LockMismatch(DownloadError):
    """A fetched file differs from the hash pinned in the config or recorded in the lock file."""


def read_lock(lock: str | Path) -> dict[str, str]:
    lock = Path(lock)
    try:
        return json.loads(lock.read_text()) if lock.exists() else {}
    except json.JSONDecodeError as e:
        raise DownloadError(f"the lock file {lock} is not valid JSON ({e}); restore it from a backup, or delete it "
                            "and fetch everything again to record the hashes anew") from None


def digest(path: str | Path) -> str:
    """sha256 of a file; for an HF model directory the digest over its config and weight files."""
    if Path(path).is_dir():
        from .convert import source_digest  # torch-heavy: only for directories

        return source_digest(path)[0]
    return sha256_file(path)


def _write_lock(lock: Path, recorded: Mapping[str, str]) -> None:
    """Replace the lock file atomically, through a temporary file of its own (unique name: no shared ``.tmp``)."""
    fd, tmp = tempfile.mkstemp(dir=lock.parent, prefix=f".{lock.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(dict(recorded), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, lock)


def _guard(lock: Path) -> FileLock:
    """The file lock that serialises every read-modify-write of ``lock`` (parallel fetch and conversion jobs)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{lock}.flock")


def forget_command(key: str, lock: str | Path) -> str:
    """The command that clears one entry of the lock file (:func:`forget`)."""
    return f"python -m dawin.inputs.checkpoints forget '{key}' --lock {lock}"


def enforce_lock(key: str, path: str | Path, lock: str | Path, pinned: str | None = None, *, record: bool = True,
                 staged: str | Path | None = None) -> str:
    """Check ``path`` against the pinned hash, else against the hash the lock file recorded for ``key``; with
    ``record`` (the file was accepted: converted, extracted, read), record its hash when none is.

    ``staged``: the mirror file ``path`` was copied from; a mismatch then names it as the culprit (fetching
    again would copy the same file again).
    """
    actual, lock = digest(path), Path(lock)
    with _guard(lock):
        recorded = read_lock(lock)
        expected = pinned or recorded.get(key)
        if expected and actual != expected:
            where = "the config" if pinned else f"the lock file {lock}"
            if staged is not None:
                raise LockMismatch(f"{key}: the mirror file {staged} has sha256 {actual}, {where} expects {expected}: "
                                   "the mirror holds a wrong or corrupt copy, and every fetch copies it again. Replace "
                                   f"{staged} with the right file, or remove it to download from the network")
            fix = ("update the pin if the change is intended" if pinned else
                   f"if the new file is the right one (an intended upstream change, or a wrong file accepted before), "
                   f"clear the entry: `{forget_command(key, lock)}`")
            raise LockMismatch(f"{key}: {path} has sha256 {actual}, {where} expects {expected}; the upstream file "
                               f"changed or the download is corrupt. Delete {path} and fetch again, or {fix}")
        if record and recorded.get(key) != actual:
            recorded[key] = actual
            _write_lock(lock, recorded)
    return actual


def forget(key: str, lock: str | Path) -> str | None:
    """Remove ``key`` from the lock file; returns the hash it held (None if it had none)."""
    lock = Path(lock)
    with _guard(lock):
        recorded = read_lock(lock)
        held = recorded.pop(key, None)
        if held is not None:
            _write_lock(lock, recorded)
    return held


def lock_key(ckpt: str, role: str, spec: Mapping) -> str:
    """The lock file's key of one checkpoint source: an HF repository's name (shared by every checkpoint that uses
    it), else ``<checkpoint>/<role>``."""
    return spec["hf_repo"] if "hf_repo" in spec else f"{ckpt}/{role}"


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


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)


def _html_cause(spec: Mapping, staged: Path | None) -> str:
    if staged is not None:
        return (f"the mirror file {staged} is that page (saved from a browser instead of the file?): replace it with "
                "the file itself")
    if "gdrive_file" in spec or "gdrive_folder" in spec:
        return ("Google Drive answers with such a page, with status 200, when the file's download quota is exceeded "
                "('Too many users have viewed or downloaded this file recently'), when a large file needs its "
                "virus-scan warning confirmed, or when the file is not shared publicly: try again later, or download "
                "it in a browser and put it in the mirror folder (paper.mirror)")
    return "a login, error or proxy page answered in place of the file: check the URL and the site's proxy settings"


def fetch_checkpoint(key: str, spec: Mapping, dest: str | Path, lock: str | Path, *, mirror: str | Path | None = None,
                     config_key: str | None = None, rewrites: Mapping[str, str] | None = None) -> Path:
    """Fetch one upstream file (or HF model directory) to ``dest`` and check it (module docstring).

    ``mirror`` is consulted first; ``config_key`` (e.g. ``paper.checkpoints.ViT-B-32.sources.checkpoint``)
    is named in errors that a config change fixes; ``rewrites`` applies to URL sources
    (:func:`dawin.inputs.download.rewrite_urls`). The file must match a pinned or recorded hash; an unknown one
    is recorded only when the file is accepted (:func:`enforce_lock` with ``record``, by the step that reads
    it). An HTML page in place of the file is refused here and deleted, naming its likely cause; a mirror file
    that fails a check is named as the culprit.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    config_key = config_key or key
    staged = mirror_path(spec, mirror) if mirror else None
    staged = staged if staged is not None and staged.exists() else None
    placed = None  # the mirror file dest is a copy of
    if not dest.exists():
        if staged is not None:
            place_copy(staged, dest)
            placed = staged
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

    def culprit() -> Path | None:
        """The mirror file dest came from (now, or as an earlier run's copy), if any."""
        if placed is not None or staged is None:
            return placed
        return staged if os.path.samefile(staged, dest) or digest(staged) == digest(dest) else None

    title = html_page(dest) if dest.is_file() else None
    if title is not None:
        placed = culprit()
        _remove(dest)
        raise DownloadError(f"{key} ({config_key}): {placed or dest} is an HTML page"
                            f"{f' titled {title!r}' if title else ''}, not the checkpoint; {_html_cause(spec, placed)}")
    try:
        enforce_lock(key, dest, lock, spec.get("sha256"), record=False)
    except LockMismatch:
        placed = culprit()
        if placed is None:
            raise
        _remove(dest)  # only the copy: the mirror file stays for the user to replace
        enforce_lock(key, placed, lock, spec.get("sha256"), record=False, staged=placed)
        raise
    return dest


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dawin.inputs.checkpoints",
                                     description="Clear one entry of the paper suite's lock file (paper.lock).")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("forget", help="remove one key's recorded sha256, so the next accepted file is recorded")
    cmd.add_argument("key")
    cmd.add_argument("--lock", default="resources/paper/checkpoints.lock.json")
    args = parser.parse_args(argv)
    held = forget(args.key, args.lock)
    print(f"{args.lock}: {args.key} " + (f"cleared (it held {held})" if held else "has no entry: nothing to clear"))


if __name__ == "__main__":
    _main()
