"""dawin.inputs.download against a local HTTP server (127.0.0.1 only, no network)."""

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from dawin.inputs.download import DownloadError, extract, fetch, fetch_and_extract, sha256_file

FILES = {"data/a.txt": b"alpha\n", "data/sub/b.bin": bytes(range(256)) * 40}


def make_targz(path: Path, files=FILES) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


class Handler(http.server.SimpleHTTPRequestHandler):
    state: dict = {}

    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        self.state.setdefault("hits", []).append(self.path)
        if self.path.startswith("/error500/"):
            return self.send_error(500, "boom")
        if self.path.startswith("/forbidden/"):
            return self.send_error(403, "Forbidden")
        if self.path.startswith("/flaky/"):
            if self.state.get("broken", True):
                return self.send_error(503, "down for maintenance")
            self.path = self.path.removeprefix("/flaky")
        if self.path.startswith("/short/"):  # promises the whole file, sends half, closes
            data = (Path(self.directory) / self.path.removeprefix("/short/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return None
        return super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    good = make_targz(root / "good.tar.gz")
    blob = good.read_bytes()
    (root / "truncated.tar.gz").write_bytes(blob[: len(blob) // 2])
    state: dict = {}
    handler = partial(type("H", (Handler,), {"state": state}), directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "root": root, "state": state,
           "sha": hashlib.sha256(blob).hexdigest()}
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part") or ".extracting-" in p.name)


def test_fetch_with_sha256_and_extract(server, tmp_path):
    dest = fetch([f"{server['url']}/good.tar.gz"], tmp_path / "good.tar.gz", server["sha"], progress=False)
    assert dest.is_file() and sha256_file(dest) == server["sha"]
    out = extract(dest, tmp_path / "out")
    for name, data in FILES.items():
        assert (out / name).read_bytes() == data
    assert leftovers(tmp_path) == []
    # a verified file is not downloaded again
    n = len(server["state"]["hits"])
    assert fetch([f"{server['url']}/good.tar.gz"], dest, server["sha"], progress=False) == dest
    assert len(server["state"]["hits"]) == n


def test_truncated_targz_leaves_no_directory(server, tmp_path):
    arch = fetch([f"{server['url']}/truncated.tar.gz"], tmp_path / "t.tar.gz", progress=False)
    with pytest.raises(DownloadError, match=r"truncated or corrupt.*delete it and rerun"):
        extract(arch, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_truncated_archive_via_fetch_and_extract_is_removed_for_a_rerun(server, tmp_path):
    with pytest.raises(DownloadError, match="truncated or corrupt"):
        fetch_and_extract([f"{server['url']}/truncated.tar.gz"], tmp_path / "t.tar.gz", tmp_path / "out",
                          progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "t.tar.gz").exists()


def test_plain_tar_cut_at_member_boundary_and_corrupt_zip(tmp_path):
    full = tmp_path / "full.tar"
    with tarfile.open(full, "w") as tf:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    blob = full.read_bytes()
    cut = tmp_path / "cut.tar"  # header + data of the first member (6 bytes padded to 512) only
    cut.write_bytes(blob[:1024])
    with pytest.raises(DownloadError, match="truncated or corrupt"):
        extract(cut, tmp_path / "cut")
    assert not (tmp_path / "cut").exists()
    assert (extract(full, tmp_path / "full") / "data/a.txt").read_bytes() == FILES["data/a.txt"]

    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("x/y.txt", b"hello" * 100)
    zb = z.read_bytes()
    (tmp_path / "short.zip").write_bytes(zb[: len(zb) - 30])
    with pytest.raises(DownloadError, match="truncated or corrupt"):
        extract(tmp_path / "short.zip", tmp_path / "zout")
    assert not (tmp_path / "zout").exists()
    assert (extract(z, tmp_path / "zok") / "x/y.txt").read_bytes() == b"hello" * 100


def test_wrong_checksum_names_both_hashes_and_leaves_nothing(server, tmp_path):
    wrong = "0" * 64
    dest = tmp_path / "good.tar.gz"
    with pytest.raises(DownloadError) as e:
        fetch([f"{server['url']}/good.tar.gz"], dest, wrong, progress=False)
    msg = str(e.value)
    assert "good.tar.gz" in msg and wrong in msg and server["sha"] in msg
    assert not dest.exists() and leftovers(tmp_path) == []


def test_first_mirrors_fail_then_next_succeeds(server, tmp_path):
    u = server["url"]
    urls = [f"{u}/error500/good.tar.gz", f"{u}/missing.tar.gz", f"{u}/good.tar.gz"]
    dest = fetch(urls, tmp_path / "good.tar.gz", server["sha"], progress=False)
    assert sha256_file(dest) == server["sha"]


def test_all_mirrors_fail_lists_each_url(server, tmp_path):
    u = server["url"]
    urls = [f"{u}/error500/good.tar.gz", f"{u}/missing.tar.gz", f"{u}/forbidden/good.tar.gz"]
    with pytest.raises(DownloadError) as e:
        fetch(urls, tmp_path / "good.tar.gz", progress=False)
    msg = str(e.value)
    for url, status in zip(urls, ("500", "404", "403")):
        assert f"{url}: HTTP {status}" in msg
    assert not (tmp_path / "good.tar.gz").exists() and leftovers(tmp_path) == []


def test_short_body_is_retried_then_reported(server, tmp_path):
    url = f"{server['url']}/short/good.tar.gz"
    before = len(server["state"]["hits"])
    with pytest.raises(DownloadError, match=r"after 2 attempts"):
        fetch([url], tmp_path / "g.tar.gz", retries=1, backoff=0, progress=False)
    assert len(server["state"]["hits"]) - before == 2
    assert leftovers(tmp_path) == [] and not (tmp_path / "g.tar.gz").exists()


def test_rerun_after_failure_succeeds(server, tmp_path):
    url = f"{server['url']}/flaky/good.tar.gz"
    dest = tmp_path / "good.tar.gz"
    server["state"]["broken"] = True
    with pytest.raises(DownloadError, match="HTTP 503"):
        fetch([url], dest, server["sha"], progress=False)
    assert not dest.exists()
    server["state"]["broken"] = False
    assert sha256_file(fetch([url], dest, server["sha"], progress=False)) == server["sha"]
    assert (extract(dest, tmp_path / "out") / "data/a.txt").read_bytes() == FILES["data/a.txt"]


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/dawin-evil-abs.txt", "ok/../../evil.txt"])
def test_path_traversal_is_refused(tmp_path, member):
    arch = tmp_path / "evil.tar"
    with tarfile.open(arch, "w") as tf:
        for name in ("fine.txt", member):
            info = tarfile.TarInfo(name)
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DownloadError, match="refusing"):
        extract(arch, tmp_path / "x" / "out")
    assert not (tmp_path / "x" / "out").exists() and not (tmp_path / "x" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists() and leftovers(tmp_path / "x") == []


def test_zip_traversal_and_escaping_symlink_are_refused(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../evil.txt", b"evil")
    with pytest.raises(DownloadError, match="refusing"):
        extract(z, tmp_path / "zout")
    assert not (tmp_path / "zout").exists() and not (tmp_path / "evil.txt").exists()

    arch = tmp_path / "link.tar"
    with tarfile.open(arch, "w") as tf:
        info = tarfile.TarInfo("a/link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../outside"
        tf.addfile(info)
    with pytest.raises(DownloadError, match="refusing"):
        extract(arch, tmp_path / "lout")
    assert not (tmp_path / "lout").exists()


def test_url_rewrites_replace_the_first_matching_prefix():
    from dawin.inputs.download import rewrite_urls

    rewrites = {"https://": "http://127.0.0.1:9/", "http://": "http://127.0.0.1:9/"}
    assert rewrite_urls(["https://github.com/a/b.pt", "http://ufldl.stanford.edu/x.mat", "ftp://h/f"], rewrites) == [
        "http://127.0.0.1:9/github.com/a/b.pt", "http://127.0.0.1:9/ufldl.stanford.edu/x.mat", "ftp://h/f"]
    assert rewrite_urls(["https://h/f"], None) == ["https://h/f"]
