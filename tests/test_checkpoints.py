import hashlib
import http.server
import threading
from functools import partial

import pytest

from dawin.checkpoints import LockMismatch, enforce_lock, fetch_checkpoint, read_lock


@pytest.fixture
def server(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "model.pt").write_bytes(b"weights v1")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_first_fetch_records_the_hash_and_later_fetches_enforce_it(tmp_path, server):
    site, base = server
    lock, dest = tmp_path / "lock.json", tmp_path / "ckpt" / "model.pt"
    fetch_checkpoint("B32", {"url": [f"{base}/missing.pt", f"{base}/model.pt"]}, dest, lock)
    assert read_lock(lock) == {"B32": hashlib.sha256(b"weights v1").hexdigest()}
    # upstream silently replaced: a fresh download no longer matches the lock file
    (site / "model.pt").write_bytes(b"weights v2")
    dest.unlink()
    with pytest.raises(LockMismatch, match="B32: .* the lock file .* expects"):
        fetch_checkpoint("B32", {"url": [f"{base}/model.pt"]}, dest, lock)


def test_pinned_hash_wins_over_the_lock(tmp_path):
    f = tmp_path / "m.pt"
    f.write_bytes(b"abc")
    with pytest.raises(LockMismatch, match="the config expects 0000"):
        enforce_lock("L14", f, tmp_path / "lock.json", pinned="0" * 64)
    assert enforce_lock("L14", f, tmp_path / "lock.json", pinned=hashlib.sha256(b"abc").hexdigest())


def test_a_source_without_location_is_refused(tmp_path):
    from dawin.download import DownloadError

    with pytest.raises(DownloadError, match="needs url, gdrive_file, gdrive_folder or hf_repo"):
        fetch_checkpoint("x", {"sha256": "0"}, tmp_path / "m.pt", tmp_path / "lock.json")


def test_directory_sources_are_locked_by_their_file_digest(tmp_path):
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"w1")
    first = enforce_lock("fb-svhn/model", d, tmp_path / "lock.json")
    assert len(first) == 64 and first != hashlib.sha256(b"w1").hexdigest()
    (d / "model.safetensors").write_bytes(b"w2")
    with pytest.raises(LockMismatch, match="fb-svhn/model"):
        enforce_lock("fb-svhn/model", d, tmp_path / "lock.json")
