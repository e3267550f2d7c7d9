"""Robust fetching and extraction of dataset archives.

:func:`fetch` downloads one file from a list of URLs (primary first, then mirrors) into a ``.part`` file
next to the destination and renames it into place only after the size and checksum checks pass, so a file
at ``dest`` is always complete. :func:`extract` unpacks ``.tar``, ``.tar.gz``/``.tgz`` (also bz2/xz) and
``.zip`` archives into a temporary sibling directory and moves it into place only when every member has
been read back intact, so a directory at ``dest_dir`` is always a complete extraction.

Errors that a user can act on are :class:`DownloadError`, with the URLs, statuses, hashes and paths
involved in the message.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import requests

from ..provenance import file_digest, file_sha256 as sha256_file  # noqa: F401 - the package's one hashing helper

CHUNK = 1 << 20
USER_AGENT = "dawin-reproduction/0.1 (+requests)"


class DownloadError(RuntimeError):
    """A file could not be fetched, failed its checks, or an archive is unusable."""


# --- checks ----------------------------------------------------------------------------------------


def _check_file(path: Path, sha256: str | None, md5: str | None, expected_size: int | None) -> str | None:
    """None if ``path`` passes every given check, else a sentence saying what is wrong."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"size {size} bytes, expected {expected_size} bytes"
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            actual = file_digest(path, algorithm)
            if actual.lower() != expected.lower():
                return f"{algorithm} mismatch: expected {expected.lower()}, got {actual}"
    return None


_HTML_START = (b"<!doctype html", b"<html", b"<head", b"<body", b"<meta", b"<title")


def html_page(path: str | Path) -> str | None:
    """None when ``path`` is not an HTML page; else the page's ``<title>`` ('' without one).

    Hosts answer some failures with an HTML page and status 200 (Google Drive's quota, virus-scan and sign-in
    pages, a proxy's login page); saved in place of a checkpoint or an archive it would otherwise surface later
    as an unreadable file ("invalid load key '<'"). No checkpoint, archive or index file starts with a tag.
    """
    with open(path, "rb") as f:
        head = f.read(8192)
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not start.startswith(_HTML_START):
        return None
    m = re.search(rb"<title[^>]*>(.*?)</title>", head, re.IGNORECASE | re.DOTALL)
    return " ".join(m.group(1).decode("utf-8", "replace").split()) if m else ""


# --- fetching --------------------------------------------------------------------------------------


def _progress(total: int | None, desc: str, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the environment
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not enabled,
                leave=False)


class _Retryable(Exception):
    """A transient failure of one attempt (connection, timeout, short body)."""


def _download_once(url: str, part: Path, timeout: float, progress: bool, session: requests.Session) -> None:
    """Stream ``url`` into ``part``. Raises requests.HTTPError for a bad status, _Retryable for transients."""
    try:
        with session.get(url, stream=True, timeout=timeout, headers={"User-Agent": USER_AGENT}) as r:
            r.raise_for_status()
            length = r.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if "gzip" in r.headers.get("Content-Encoding", "") or "br" in r.headers.get("Content-Encoding", ""):
                total = None  # the declared length is that of the encoded body
            n = 0
            bar = _progress(total, part.name.removesuffix(".part"), progress)
            try:
                with open(part, "wb") as f:
                    for block in r.iter_content(CHUNK):
                        f.write(block)
                        n += len(block)
                        if bar is not None:
                            bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and n != total:
                raise _Retryable(f"connection closed after {n} of {total} bytes")
    except requests.HTTPError:
        raise
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError) as e:
        raise _Retryable(f"{type(e).__name__}: {e}") from e


def rewrite_urls(urls: Iterable[str], rewrites: Mapping[str, str] | None) -> list[str]:
    """Each URL with its first matching prefix of ``rewrites`` replaced (config ``paper.url_rewrite``: a
    site's proxy or mirror host, or the loopback replica server of the rehearsal)."""
    out = []
    for url in urls:
        prefix = next((p for p in (rewrites or {}) if url.startswith(p)), None)
        out.append(rewrites[prefix] + url[len(prefix):] if prefix is not None else url)
    return out


def fetch(urls: str | Sequence[str], dest: str | Path, sha256: str | None = None, *, md5: str | None = None,
          expected_size: int | None = None, timeout: float = 60.0, retries: int = 2, backoff: float = 1.0,
          progress: bool = True, rewrites: Mapping[str, str] | None = None) -> Path:
    """Download ``dest`` from the first of ``urls`` that yields a file passing the checks.

    - Each URL is tried in turn. An HTTP error status (403, 404, 500, ...) moves on to the next URL at
      once; a transient failure (connection error, timeout, connection closed early) is retried
      ``retries`` more times with exponential backoff first.
    - The body goes to ``<dest>.part``; only after ``expected_size``, ``sha256`` and ``md5`` (each when
      given) match is it renamed to ``dest``. A file that fails a check is deleted, and the next URL is
      tried: a checksum mismatch therefore never leaves a file behind.
    - If ``dest`` already exists and passes the checks it is returned without a download (with no
      checks given, an existing file is trusted); if it fails them it is downloaded again.
    - ``rewrites`` maps URL prefixes to replacements (:func:`rewrite_urls`), applied first.
    - If every URL fails, :class:`DownloadError` lists each URL with what happened to it (the HTTP status,
      the connection error, or the expected and actual hash).
    """
    urls = rewrite_urls([urls] if isinstance(urls, str) else urls, rewrites)
    if not urls:
        raise DownloadError(f"no URL given for {dest}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and _check_file(dest, sha256, md5, expected_size) is None:
        return dest
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    with requests.Session() as session:
        for url in urls:
            for attempt in range(retries + 1):
                try:
                    _download_once(url, part, timeout, progress, session)
                except requests.HTTPError as e:
                    status = e.response.status_code if e.response is not None else "?"
                    reason = e.response.reason if e.response is not None else str(e)
                    failures.append(f"{url}: HTTP {status} {reason}".rstrip())
                    part.unlink(missing_ok=True)
                    break
                except _Retryable as e:
                    part.unlink(missing_ok=True)
                    if attempt < retries:
                        time.sleep(backoff * 2 ** attempt)
                        continue
                    failures.append(f"{url}: {e} (after {retries + 1} attempts)")
                    break
                except requests.RequestException as e:  # invalid URL, unsupported scheme, ...
                    part.unlink(missing_ok=True)
                    failures.append(f"{url}: {type(e).__name__}: {e}")
                    break
                title = html_page(part)
                problem = (f"the server answered with an HTML page{f' titled {title!r}' if title else ''} instead of "
                           "the file (a login, error, quota or proxy page)" if title is not None
                           else _check_file(part, sha256, md5, expected_size))
                if problem is not None:
                    part.unlink(missing_ok=True)
                    failures.append(f"{url}: {dest.name}: {problem}")
                    break
                os.replace(part, dest)
                return dest
    raise DownloadError(f"could not download {dest.name} to {dest}; every source failed:\n  "
                        + "\n  ".join(failures))


# --- extraction ------------------------------------------------------------------------------------

_COMPRESSED = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


def _safe_relpath(name: str, archive: Path) -> PurePosixPath:
    """The member path as a relative POSIX path; refuses absolute paths and ``..`` (path traversal)."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or p.is_absolute() or (len(norm) > 1 and norm[1] == ":"):
        raise DownloadError(f"refusing to extract {archive}: member {name!r} has an absolute path")
    if ".." in p.parts:
        raise DownloadError(f"refusing to extract {archive}: member {name!r} points outside the archive (..)")
    parts = [x for x in p.parts if x not in ("", ".")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _copy_stream(src, dst_path: Path) -> None:
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    with open(dst_path, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


class _LastBlock:
    """A read-only file wrapper remembering the position and bytes of its last read."""

    def __init__(self, f):
        self._f, self.last_pos, self.last_data = f, -1, b""

    def read(self, size: int = -1) -> bytes:
        pos = self._f.tell()
        data = self._f.read(size)
        self.last_pos, self.last_data = pos, data
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _extract_tar(archive: Path, target: Path) -> int:
    with open(archive, "rb") as raw:
        magic = raw.read(6)
    opener = next((fn for sig, fn in _COMPRESSED.items() if magic.startswith(sig)), None)
    stream = _LastBlock(opener(archive, "rb") if opener else open(archive, "rb"))
    n = 0
    with stream, tarfile.open(fileobj=stream, mode="r:") as tf:
        for m in tf:
            rel = _safe_relpath(m.name, archive)
            out = target / rel
            if m.isdir():
                out.mkdir(parents=True, exist_ok=True)
            elif m.isfile():
                src = tf.extractfile(m)
                _copy_stream(src, out)
                n += 1
            elif m.issym() or m.islnk():
                link = PurePosixPath(m.linkname.replace("\\", "/"))
                base = rel.parent if m.issym() else PurePosixPath(".")
                if link.is_absolute() or ".." in PurePosixPath(os.path.normpath(base / link)).parts:
                    raise DownloadError(f"refusing to extract {archive}: link {m.name!r} -> {m.linkname!r} "
                                        "points outside the archive")
                out.parent.mkdir(parents=True, exist_ok=True)
                if m.issym():
                    os.symlink(m.linkname, out)
                else:
                    shutil.copy2(target / _safe_relpath(m.linkname, archive), out)
            # device files, fifos: skipped
        # A tar cut at a member boundary reads as a clean end of archive: require the zero end block.
        if stream.last_pos == tf.offset:
            end = stream.last_data  # the block tarfile read last: no backward seek in a compressed stream
        else:
            stream.seek(tf.offset)
            end = stream.read(512)
        if len(end) < 512 or end.strip(b"\0"):
            raise tarfile.ReadError("no end-of-archive marker")
        while stream.read(CHUNK):  # read compressed streams to their end: checks the CRC and the trailer
            pass
    return n


def _extract_zip(archive: Path, target: Path) -> int:
    n = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = _safe_relpath(info.filename, archive)
            out = target / rel
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as src:  # raises BadZipFile on a CRC mismatch at the end of the member
                _copy_stream(src, out)
            n += 1
    return n


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    raise DownloadError(f"don't know how to extract {archive}: expected .tar, .tar.gz, .tgz or .zip")


def _temp_prefix(dest_dir: Path) -> str:
    return f".{dest_dir.name}.extracting-"


def extract(archive: str | Path, dest_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Unpack ``archive`` so that its members end up under ``dest_dir``; atomic at the directory level.

    Members are written to a fresh temporary sibling of ``dest_dir``, which is moved to ``dest_dir`` with
    :func:`os.replace` only after every member was read back intact (gzip/bz2/xz CRC and trailer, zip CRC,
    the tar end-of-archive block). A truncated or corrupt archive raises :class:`DownloadError` and leaves
    no ``dest_dir``. Members with absolute paths, ``..`` components or links pointing outside are refused.

    An existing ``dest_dir`` is taken as a finished extraction and returned as is, unless ``overwrite``;
    leftovers of interrupted earlier runs (``.<name>.extracting-*`` siblings) are removed.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if dest_dir.exists() and not overwrite:
        return dest_dir
    if not archive.is_file():
        raise DownloadError(f"cannot extract {archive}: no such file")
    kind = _archive_kind(archive)
    parent = dest_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(_temp_prefix(dest_dir) + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest_dir), dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the extracted tree should get ordinary permissions
    try:
        if kind == "zip":
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
    except DownloadError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, gzip.BadGzipFile, lzma.LZMAError,
            ValueError, zipfile.LargeZipFile) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive} is truncated or corrupt ({type(e).__name__}: {e}); "
                            "delete it and rerun") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest_dir.exists():  # overwrite=True
        shutil.rmtree(dest_dir) if dest_dir.is_dir() and not dest_dir.is_symlink() else dest_dir.unlink()
    os.replace(tmp, dest_dir)
    return dest_dir


def fetch_and_extract(urls: Iterable[str], archive: str | Path, dest_dir: str | Path, sha256: str | None = None,
                      **fetch_kwargs) -> Path:
    """:func:`fetch` then :func:`extract`; a corrupt archive is deleted so that a rerun downloads it again."""
    if Path(dest_dir).exists():
        return Path(dest_dir)
    path = fetch(list(urls), archive, sha256, **fetch_kwargs)
    try:
        return extract(path, dest_dir)
    except DownloadError:
        if fetch_kwargs.get("md5") is None and sha256 is None:
            Path(path).unlink(missing_ok=True)
        raise
