"""A loopback stand-in for the paper suite's download hosts, serving a replica site (tests, rehearsal).

The site folder holds every file under ``<host>/<path>`` of its real URL, so that with the config's
``paper.url_rewrite: {"https://": "<base>/"}`` the project's own fetch code downloads
``https://github.com/...`` from ``<base>/github.com/...``. Hugging Face dataset repositories live under
``hf/datasets/<owner>/<name>/resolve/main/<path>``; ``<base>/hf`` answers as the hub does for what
:func:`dawin.inputs.multitask_datasets.hf_list` and :func:`~dawin.inputs.multitask_datasets.hf_url` ask: the listing
``/api/datasets/<owner>/<name>/revision/<rev>`` (commit, sizes and LFS sha256 of the files) and
``/datasets/<owner>/<name>/resolve/<rev or commit>/<path>``.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

HF_PREFIX = "/hf"


def _hf_listing(site: Path, repo: str) -> dict | None:
    files = site / "hf" / "datasets" / repo / "resolve" / "main"
    if not files.is_dir():
        return None
    siblings, digest = [], hashlib.sha1(repo.encode())
    for p in sorted(q for q in files.rglob("*") if q.is_file()):
        data = p.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        digest.update(sha.encode())
        siblings.append({"rfilename": p.relative_to(files).as_posix(), "size": len(data),
                         "lfs": {"size": len(data), "sha256": sha, "pointerSize": 132}})
    return {"id": repo, "sha": digest.hexdigest(), "siblings": siblings}


class _Handler(http.server.SimpleHTTPRequestHandler):
    site: Path

    def log_message(self, *args) -> None:  # quiet: the fetch code reports what it does
        pass

    def _hf(self, path: str) -> bool:
        parts = path[len(HF_PREFIX):].strip("/").split("/")
        if parts[:2] == ["api", "datasets"] and len(parts) >= 6 and parts[4] == "revision":
            listing = _hf_listing(self.site, "/".join(parts[2:4]))
            if listing is None:
                self.send_error(404, "Repository not found")
                return True
            body = json.dumps(listing).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True
        if parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
            # any revision or commit resolves to the one stored version
            self.path = "/" + "/".join(["hf", "datasets", parts[1], parts[2], "resolve", "main", *parts[5:]])
        return False

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path.startswith(HF_PREFIX + "/") and self._hf(path):
            return
        super().do_GET()


def serve(site: str | Path, port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``site`` on 127.0.0.1 in a daemon thread; returns the server (``shutdown()`` it) and its base URL."""
    handler = partial(type("Handler", (_Handler,), {"site": Path(site)}), directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
