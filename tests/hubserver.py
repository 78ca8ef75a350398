"""A small stand-in for the Hugging Face hub, for tests (loopback only, never the real hub).

It answers what ``huggingface_hub`` (2.x) asks of a dataset repository:

- ``GET  /api/datasets/{repo}[/revision/{rev}]``: ``{"id", "sha"}`` (the commit);
- ``GET  /api/datasets/{repo}/tree/{rev}[/{path}]?recursive=&expand=``: the file listing,
  50 entries per page with a ``Link: <...>; rel="next"`` header when expanded;
- ``POST /api/datasets/{repo}/paths-info/{rev}`` (form field ``paths``, repeated);
- ``HEAD|GET /datasets/{repo}/resolve/{rev}/{path}``: small files directly, LFS files as a
  302 to a different origin (``localhost:PORT`` instead of ``127.0.0.1:PORT``: the "CDN"),
  with ``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag`` and ``X-Linked-Size``;
- ``HEAD|GET /cdn/{repo}/{path}``: the bytes, honouring ``Range`` (206 + ``Content-Range``).

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``);
a private repository answers 401 unless ``Authorization: Bearer {token}`` matches.
It never sends an ``X-Xet-*`` header nor ``xetHash``, so clients use plain HTTP.

Fault injection, per file path, consumed one per GET of the bytes (``server.faults[path]``
is a list): ``"drop"`` (send half the body, then close the connection), ``"corrupt"`` (same
size, one byte changed), ``"short"`` (a shorter body with a matching Content-Length),
``"slow"`` (64 KiB every 50 ms).
``server.requests`` counts ``(method, route, path)`` and ``server.gets(path)`` the byte GETs.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

PAGE_EXPANDED = 50
PAGE_PLAIN = 1000


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()  # noqa: S324 (git's id)


@dataclass
class Repo:
    files: dict[str, bytes]
    private: bool = False
    token: str | None = None
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    revisions: dict[str, str] = field(default_factory=dict)
    lfs_min_size: int = 0  # files at least this big are LFS (0: every file but *.md / .git*)

    def resolve(self, rev: str) -> str | None:
        if rev in (self.commit, "main"):
            return self.commit
        return self.revisions.get(rev)

    def is_lfs(self, path: str) -> bool:
        if path.endswith(".md") or path.startswith(".git"):
            return False
        return len(self.files[path]) >= self.lfs_min_size


class HubServer:
    def __init__(self, repos: dict[str, Repo] | None = None):
        self.repos: dict[str, Repo] = dict(repos or {})
        self.faults: dict[str, list[str]] = {}
        self.requests: Counter = Counter()
        self._lock = threading.Lock()
        outer = self

        class Handler(_Handler):
            server_ref = outer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.cdn = f"http://localhost:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, method: str, route: str, path: str = "") -> None:
        with self._lock:
            self.requests[(method, route, path)] += 1

    def gets(self, path: str) -> int:
        """Byte downloads (GET of the file contents, any route) of ``path``."""
        with self._lock:
            return sum(n for (m, r, p), n in self.requests.items()
                       if m == "GET" and r in ("resolve", "cdn") and p == path)

    def total(self, route: str) -> int:
        with self._lock:
            return sum(n for (_, r, _), n in self.requests.items() if r == route)

    def take_fault(self, path: str) -> str | None:
        with self._lock:
            todo = self.faults.get(path)
            return todo.pop(0) if todo else None


def _entry(repo: Repo, path: str, expand: bool) -> dict:
    data = repo.files[path]
    e = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
    if repo.is_lfs(path):
        e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    if expand:
        e["lastCommit"] = {"id": repo.commit, "title": "upload", "date": "2024-01-01T00:00:00.000Z"}
    return e


def _tree(repo: Repo, under: str, recursive: bool) -> list[dict]:
    """Files and folders under ``under`` (sorted like the hub: folders before their files)."""
    prefix = under.strip("/") + "/" if under.strip("/") else ""
    out: dict[str, dict] = {}
    for path in sorted(repo.files):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            if folder not in out:
                out[folder] = {"type": "directory", "oid": "0" * 40, "size": 0, "path": folder}
            if not recursive:
                break
        if recursive or len(parts) == 1:
            out[path] = {"file": path}
    return [out[k] for k in sorted(out)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: HubServer

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- helpers -------------------------------------------------------------------------

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, code: int, error_code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if error_code:
            headers["X-Error-Code"] = error_code
        self._send(code, json.dumps({"error": message}).encode(), headers)

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.server_ref.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if repo.private:
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {repo.token}":
                self._error(401, "RepoNotFound", "Invalid username or password.")
                return None
        return repo

    def _commit(self, repo: Repo, rev: str) -> str | None:
        commit = repo.resolve(unquote(rev))
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
        return commit

    # -- routes --------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")]
        query = parse_qs(url.query)
        host = (self.headers.get("Host") or "").split(":")[0]
        try:
            if parts[1:3] == ["api", "datasets"] and len(parts) >= 5:
                self._api(parts[3] + "/" + parts[4], parts[5:], query)
            elif parts[1] == "datasets" and len(parts) >= 7 and parts[4] == "resolve":
                self._resolve(parts[2] + "/" + parts[3], parts[5], "/".join(parts[6:]))
            elif parts[1] == "cdn" and host == "localhost" and len(parts) >= 5:
                self._bytes(parts[2] + "/" + parts[3], "/".join(parts[4:]), "cdn")
            else:
                self._error(404, None, "Not Found")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _api(self, repo_id: str, rest: list[str], query: dict) -> None:
        route = rest[0] if rest else "info"
        self.server_ref.count(self.command, route)
        repo = self._repo(repo_id)
        if repo is None:
            return
        if route in ("info", "revision"):
            commit = self._commit(repo, rest[1] if len(rest) > 1 else "main")
            if commit is None:
                return
            body = {"id": repo_id, "sha": commit, "private": repo.private,
                    "siblings": [{"rfilename": p} for p in sorted(repo.files)]}
            self._send(200, json.dumps(body).encode())
        elif route == "tree" and len(rest) >= 2:
            commit = self._commit(repo, rest[1])
            if commit is None:
                return
            under = "/".join(rest[2:])
            expand = query.get("expand", ["False"])[0].lower() == "true"
            recursive = query.get("recursive", ["False"])[0].lower() == "true"
            if under and not any(p == under or p.startswith(under + "/") for p in repo.files):
                self._error(404, "EntryNotFound", f"{under} does not exist on {rest[1]}")
                return
            items = _tree(repo, under, recursive)
            start = int(query.get("cursor", ["0"])[0])
            page = PAGE_EXPANDED if expand else PAGE_PLAIN
            chunk = items[start:start + page]
            body = [_entry(repo, it["file"], expand) if "file" in it else it for it in chunk]
            headers = {}
            if start + page < len(items):
                nxt = (f"{self.server_ref.endpoint}{urlsplit(self.path).path}?recursive={recursive}"
                       f"&expand={expand}&cursor={start + page}")
                headers["Link"] = f'<{nxt}>; rel="next"'
            self._send(200, json.dumps(body).encode(), headers)
        elif route == "paths-info" and len(rest) >= 2 and self.command == "POST":
            commit = self._commit(repo, rest[1])
            if commit is None:
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            expand = form.get("expand", ["False"])[0].lower() == "true"
            out = []
            for p in form.get("paths", []):
                p = p.strip("/")
                if p in repo.files:
                    out.append(_entry(repo, p, expand))
                elif any(q.startswith(p + "/") for q in repo.files):
                    out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": p})
            self._send(200, json.dumps(out).encode())
        else:
            self._error(404, None, "Not Found")

    def _resolve(self, repo_id: str, rev: str, path: str) -> None:
        self.server_ref.count(self.command, "resolve-meta" if self.command == "HEAD" else "resolve", path)
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = self._commit(repo, rev)
        if commit is None:
            return
        if path not in repo.files:
            self._error(404, "EntryNotFound", f"{path} does not exist on {rev}",)
            return
        data = repo.files[path]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_oid(data)}"'}
        if repo.is_lfs(path):
            headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
            headers["X-Linked-Size"] = str(len(data))
            headers["Location"] = f"{self.server_ref.cdn}/cdn/{repo_id}/{quote(path)}?sig=x"
            self.send_response(302)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "HEAD":
            self._send(200, data, headers, "application/octet-stream")
        else:
            self._bytes(repo_id, path, None, headers)

    def _bytes(self, repo_id: str, path: str, route: str | None, headers: dict | None = None) -> None:
        if route:
            self.server_ref.count(self.command, route, path)
        repo = self.server_ref.repos.get(repo_id)
        if repo is None or path not in repo.files:
            self._error(404, None, "NoSuchKey")
            return
        data = repo.files[path]
        headers = dict(headers or {})
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first = rng[6:].split("-")[0]
            start = int(first) if first else 0
        fault = self.server_ref.take_fault(path) if self.command == "GET" else None
        body = data[start:]
        if fault == "corrupt" and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        elif fault == "short":
            body = body[: len(body) // 2]
        code = 200
        if start:
            code = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault == "slow":  # trickle: 64 KiB every 50 ms
            for i in range(0, len(body), 1 << 16):
                self.wfile.write(body[i:i + (1 << 16)])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(body)


def free_port() -> int:
    """A loopback port with nothing listening on it (for 'unreachable endpoint' tests)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":  # manual use: python tests/hubserver.py
    srv = HubServer({"demo/data": Repo({"a.bin": b"x" * 1000, "sub/b.bin": b"y" * 10})}).start()
    print(srv.endpoint, flush=True)
    while True:
        time.sleep(3600)
