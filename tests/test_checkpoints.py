import hashlib
import http.server
import re
import shlex
import threading
from functools import partial
from pathlib import Path

import pytest

from dawin.inputs.checkpoints import LockMismatch, enforce_lock, fetch_checkpoint, read_lock


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


def test_an_accepted_file_records_its_hash_and_later_fetches_enforce_it(tmp_path, server):
    site, base = server
    lock, dest = tmp_path / "lock.json", tmp_path / "ckpt" / "model.pt"
    fetch_checkpoint("B32", {"url": [f"{base}/missing.pt", f"{base}/model.pt"]}, dest, lock)
    assert read_lock(lock) == {}  # fetched, not yet accepted
    enforce_lock("B32", dest, lock)  # what the conversion does once it read the file
    assert read_lock(lock) == {"B32": hashlib.sha256(b"weights v1").hexdigest()}
    # upstream silently replaced: a fresh download no longer matches the lock file
    (site / "model.pt").write_bytes(b"weights v2")
    dest.unlink()
    with pytest.raises(LockMismatch, match="B32: .* the lock file .* expects"):
        fetch_checkpoint("B32", {"url": [f"{base}/model.pt"]}, dest, lock)


def test_a_rejected_first_download_locks_nothing_and_the_right_file_is_then_accepted(tmp_path, server):
    # issue 24, item 6: a wrong first download (here: a file the conversion refuses) must not lock out the right one
    site, base = server
    lock, dest = tmp_path / "lock.json", tmp_path / "ckpt" / "model.pt"
    (site / "model.pt").write_bytes(b"a wrong model")
    fetch_checkpoint("B32", {"url": [f"{base}/model.pt"]}, dest, lock)
    dest.unlink()  # the conversion failed; the user deletes it and fetches again once upstream is right
    (site / "model.pt").write_bytes(b"weights v1")
    fetch_checkpoint("B32", {"url": [f"{base}/model.pt"]}, dest, lock)
    enforce_lock("B32", dest, lock)
    assert read_lock(lock) == {"B32": hashlib.sha256(b"weights v1").hexdigest()}


def test_a_mismatch_gives_the_command_that_clears_the_entry_and_it_clears_only_that_one(tmp_path, capsys):
    from dawin.inputs.checkpoints import _main

    lock, f = tmp_path / "lock.json", tmp_path / "m.pt"
    f.write_bytes(b"old")
    enforce_lock("B32", f, lock)
    enforce_lock("L14", f, lock)
    f.write_bytes(b"new")
    with pytest.raises(LockMismatch) as err:
        enforce_lock("B32", f, lock)
    command = re.search(r"`python -m dawin.inputs.checkpoints (forget .*?)`", str(err.value)).group(1)
    assert command == f"forget 'B32' --lock {lock}"
    _main(shlex.split(command))
    assert "B32 cleared" in capsys.readouterr().out
    assert read_lock(lock) == {"L14": hashlib.sha256(b"old").hexdigest()}
    assert enforce_lock("B32", f, lock) == hashlib.sha256(b"new").hexdigest()


def _record_many(lock, prefix, n):
    f = Path(lock).parent / f"{prefix}.bin"
    f.write_bytes(prefix.encode())
    for i in range(n):
        enforce_lock(f"{prefix}/{i}", f, lock)


def test_parallel_writers_lose_no_entry(tmp_path):
    # issue 24, item 9: parallel local fetch and conversion jobs each record their entries in one lock file
    import multiprocessing

    lock, writers, n = tmp_path / "lock.json", 6, 40
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(lock, f"w{w}", n)) for w in range(writers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0] * writers
    recorded = read_lock(lock)
    assert len(recorded) == writers * n
    assert all(recorded[f"w{w}/{i}"] == hashlib.sha256(f"w{w}".encode()).hexdigest() for w in range(writers)
               for i in range(n))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["lock.json", "lock.json.flock",
                                                                 *(f"w{w}.bin" for w in range(writers))])


def test_pinned_hash_wins_over_the_lock(tmp_path):
    f = tmp_path / "m.pt"
    f.write_bytes(b"abc")
    with pytest.raises(LockMismatch, match="the config expects 0000"):
        enforce_lock("L14", f, tmp_path / "lock.json", pinned="0" * 64)
    assert enforce_lock("L14", f, tmp_path / "lock.json", pinned=hashlib.sha256(b"abc").hexdigest())


def test_a_source_without_location_is_refused(tmp_path):
    from dawin.inputs.download import DownloadError

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


class FakeDrive:
    """Stands in for gdown: a folder listing (gdown.download_folder(skip_download=True) returns entries with
    .id, .path, .local_path) and per-id downloads, recording what was downloaded."""

    def __init__(self, folders: dict[str, dict[str, bytes]]):
        self.folders, self.downloaded = folders, []
        self.files = {f"id-{path}": data for files in folders.values() for path, data in files.items()}

    def download_folder(self, id, skip_download=False, quiet=False, **kw):
        assert skip_download, "a whole Drive folder must never be downloaded"
        from types import SimpleNamespace

        return [SimpleNamespace(id=f"id-{p}", path=p, local_path=f"/nowhere/{p}") for p in self.folders[id]]

    def download(self, id, output, quiet=False, **kw):
        self.downloaded.append(id)
        with open(output, "wb") as f:
            f.write(self.files[id])
        return output


@pytest.fixture
def drive(monkeypatch):
    import gdown

    fake = FakeDrive({"FOLDER": {"finetune_clipvitb32.pt": b"ft", "model_stock.pt": b"ms",
                                 "soups/greedy_soup.pt": b"gs"}})
    monkeypatch.setattr(gdown, "download_folder", fake.download_folder)
    monkeypatch.setattr(gdown, "download", fake.download)
    return fake


def test_a_named_file_of_a_drive_folder_is_fetched_alone(tmp_path, drive):
    dest = tmp_path / "ckpt"
    fetch_checkpoint("ViT-B-32/checkpoint", {"gdrive_folder": "FOLDER", "file": "finetune_clipvitb32.pt"}, dest,
                     tmp_path / "lock.json")
    assert dest.read_bytes() == b"ft" and drive.downloaded == ["id-finetune_clipvitb32.pt"]
    fetch_checkpoint("gs", {"gdrive_folder": "FOLDER", "file": "greedy_soup.pt"}, tmp_path / "gs", tmp_path / "lock.json")
    assert (tmp_path / "gs").read_bytes() == b"gs"


def test_an_absent_file_of_a_drive_folder_lists_the_folder_and_the_key(tmp_path, drive):
    from dawin.inputs.download import DownloadError

    key = "paper.checkpoints.ViT-B-32.sources.checkpoint"
    with pytest.raises(DownloadError, match=r"no file 'finetuned.pt'; it holds: finetune_clipvitb32.pt, model_stock.pt,"
                                            r" soups/greedy_soup.pt. Set `paper.checkpoints.ViT-B-32.sources.checkpoint.file`"):
        fetch_checkpoint("x", {"gdrive_folder": "FOLDER", "file": "finetuned.pt"}, tmp_path / "x", tmp_path / "l.json",
                         config_key=key)
    assert drive.downloaded == [] and not (tmp_path / "x").exists()


def test_the_mirror_folder_comes_before_the_network(tmp_path, drive):
    mirror = tmp_path / "mirror"
    (mirror / "gdrive" / "FOLDER").mkdir(parents=True)
    (mirror / "gdrive" / "FOLDER" / "finetune_clipvitb32.pt").write_bytes(b"ft")
    (mirror / "gdrive" / "FILEID").write_bytes(b"head")
    (mirror / "model_3.pt").write_bytes(b"run3")
    (mirror / "hf" / "openai" / "clip").mkdir(parents=True)
    (mirror / "hf" / "openai" / "clip" / "pytorch_model.bin").write_bytes(b"bin")
    (mirror / "hf" / "openai" / "clip" / "config.json").write_text("{}")
    lock = tmp_path / "lock.json"
    specs = {"a": {"gdrive_folder": "FOLDER", "file": "finetune_clipvitb32.pt"}, "b": {"gdrive_file": "FILEID"},
             "c": {"url": ["http://127.0.0.1:9/releases/model_3.pt"]}, "d": {"hf_repo": "openai/clip"}}
    for key, spec in specs.items():
        fetch_checkpoint(key, spec, tmp_path / "out" / key, lock, mirror=mirror)
    assert drive.downloaded == []
    assert (tmp_path / "out" / "c").read_bytes() == b"run3"
    assert (tmp_path / "out" / "d" / "pytorch_model.bin").read_bytes() == b"bin"
    assert read_lock(lock) == {}  # recorded only once a conversion accepts them
    # a staged file that differs from the pin is refused like a download would be
    with pytest.raises(LockMismatch):
        fetch_checkpoint("e", {"gdrive_file": "FILEID", "sha256": "0" * 64}, tmp_path / "out" / "e", lock, mirror=mirror)


def test_hf_snapshots_accept_pytorch_model_bin():
    import fnmatch

    from dawin.inputs.checkpoints import HF_PATTERNS

    for name in ("pytorch_model.bin", "config.json", "model.safetensors", "pytorch_model-00001-of-00002.bin"):
        assert any(fnmatch.fnmatch(name, p) for p in HF_PATTERNS), name
    assert not any(fnmatch.fnmatch("flax_model.msgpack", p) for p in HF_PATTERNS)


def test_a_drive_folder_without_a_file_name_is_not_taken_from_the_mirror(tmp_path, drive):
    from dawin.inputs.download import DownloadError

    (tmp_path / "mirror" / "gdrive" / "FOLDER").mkdir(parents=True)  # the folder itself is staged
    with pytest.raises(DownloadError, match="name the checkpoint with `k.file`"):
        fetch_checkpoint("k", {"gdrive_folder": "FOLDER"}, tmp_path / "x", tmp_path / "l.json", mirror=tmp_path / "mirror")
    assert not (tmp_path / "x").exists()


def test_a_mirror_file_with_the_wrong_hash_is_named_as_the_culprit(tmp_path, drive):
    # issue 24, item 8: "delete it and fetch again" would copy the same mirror file again
    mirror, lock = tmp_path / "mirror", tmp_path / "lock.json"
    (mirror / "gdrive").mkdir(parents=True)
    (mirror / "gdrive" / "FILEID").write_bytes(b"corrupt copy")
    (mirror / "model_3.pt").write_bytes(b"another run")
    dest = tmp_path / "out" / "b"
    with pytest.raises(LockMismatch, match=rf"the mirror file {mirror}/gdrive/FILEID has sha256 .* the config expects "
                                           rf"0000.*: the mirror holds a wrong or corrupt copy.* Replace {mirror}/gdrive/FILEID"):
        fetch_checkpoint("b", {"gdrive_file": "FILEID", "sha256": "0" * 64}, dest, lock, mirror=mirror)
    assert not dest.exists() and (mirror / "gdrive" / "FILEID").read_bytes() == b"corrupt copy"
    # against the lock: a copy an earlier run placed is traced back to the mirror file too
    lock.write_text('{"c": "%s"}' % ("1" * 64))
    dest = tmp_path / "out" / "c"
    dest.parent.mkdir(exist_ok=True)
    dest.write_bytes(b"another run")
    with pytest.raises(LockMismatch, match=rf"the mirror file {mirror}/model_3.pt .* the lock file {lock} expects 1111"):
        fetch_checkpoint("c", {"url": ["http://127.0.0.1:9/model_3.pt"]}, dest, lock, mirror=mirror)
    assert not dest.exists() and (mirror / "model_3.pt").exists() and drive.downloaded == []


QUOTA_PAGE = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>Too many users "
              b"have viewed or downloaded this file recently.</body></html>")


def test_an_html_page_from_drive_is_named_for_what_it_is(tmp_path, drive):
    # issue 24, item 7: Drive answers quota and virus-scan pages with status 200
    from dawin.inputs.download import DownloadError

    drive.files["id-finetune_clipvitb32.pt"] = QUOTA_PAGE
    dest, lock = tmp_path / "ckpt", tmp_path / "lock.json"
    with pytest.raises(DownloadError, match=r"is an HTML page titled 'Google Drive - Quota exceeded', not the "
                                            r"checkpoint; Google Drive .* download quota is exceeded .* virus-scan"):
        fetch_checkpoint("ViT-B-32/checkpoint", {"gdrive_folder": "FOLDER", "file": "finetune_clipvitb32.pt"}, dest, lock)
    assert not dest.exists() and read_lock(lock) == {}


def test_an_html_page_in_the_mirror_or_from_a_url_is_refused(tmp_path, server):
    from dawin.inputs.download import DownloadError

    site, base = server
    (site / "login.pt").write_bytes(b"\n  <html><head><title>Sign in</title></head></html>")
    mirror = tmp_path / "mirror"
    (mirror / "gdrive").mkdir(parents=True)
    (mirror / "gdrive" / "ID").write_bytes(QUOTA_PAGE)
    with pytest.raises(DownloadError, match=rf"the mirror file {mirror}/gdrive/ID is that page"):
        fetch_checkpoint("k", {"gdrive_file": "ID"}, tmp_path / "k", tmp_path / "lock.json", mirror=mirror)
    # a URL that answers a page is a failed source: the next one is tried
    dest = fetch_checkpoint("u", {"url": [f"{base}/login.pt", f"{base}/model.pt"]}, tmp_path / "u", tmp_path / "lock.json")
    assert dest.read_bytes() == b"weights v1"
    with pytest.raises(DownloadError, match=r"login.pt: v: the server answered with an HTML page titled 'Sign in'"):
        fetch_checkpoint("v", {"url": [f"{base}/login.pt"]}, tmp_path / "v", tmp_path / "lock.json")
