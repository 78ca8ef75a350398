"""Issue 18, hub faults: a file missing locally under `checksum --from-hub DIR`, a hub that
answers HTML or unexpected JSON, a full disk during `download` (exit 2 "out of space", no
raw warnings), against the stand-in hub (real huggingface_hub code)."""

from __future__ import annotations

import errno
import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.hub_fixtures import (
    PRESHUFFLED,
    hub_server,  # noqa: F401 (registers the 'hub' fixture)
    one_line,
    point_hf_at,
    run_cli,
)

SHARD1 = "document-00001-of-00002.bin"


def test_checksum_from_hub_lists_a_missing_file(hub, tmp_path):
    out = tmp_path / "pre"
    assert run_cli(["download", PRESHUFFLED, "-d", str(out), "-q"]).exit_code == 0
    (out / SHARD1).unlink()
    r = run_cli(["checksum", "--from-hub", PRESHUFFLED, str(out)])
    assert r.exit_code == 1, r.output
    assert f"{out / SHARD1}: MISSING" in r.stdout
    assert "verification failed" in r.stderr and SHARD1 in r.stderr
    doc = json.loads(run_cli(["checksum", "--from-hub", PRESHUFFLED, str(out),
                              "--json"]).stdout)
    assert {f["repo_path"]: f["status"] for f in doc["files"]}[SHARD1] == "missing"
    # a shard set with one member present expects the others, even without download's record
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "document-00000-of-00002.bin").write_bytes(
        (out / "document-00000-of-00002.bin").read_bytes())
    r = run_cli(["checksum", "--from-hub", PRESHUFFLED, str(bare), "--json"])
    assert r.exit_code == 1
    status = {f["repo_path"]: f["status"] for f in json.loads(r.stdout)["files"]}
    assert status == {"document-00000-of-00002.bin": "ok", SHARD1: "missing",
                      "document-00002-of-00002.bin": "missing"}


class _Html(BaseHTTPRequestHandler):
    body = b"<html><body>Welcome to the captive portal</body></html>"
    ctype = "text/html"

    def log_message(self, *args):
        pass

    def _answer(self):
        self.send_response(200)
        self.send_header("Content-Type", self.ctype)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.body)

    do_GET = do_HEAD = do_POST = _answer


class _OddJson(_Html):
    body = json.dumps({"unexpected": [1, 2, 3], "siblings": "nope"}).encode()
    ctype = "application/json"


@pytest.mark.slow
@pytest.mark.parametrize(("handler", "command"), [
    (_Html, "download"),
    pytest.param(_OddJson, "download", marks=pytest.mark.slow),
    pytest.param(_Html, "checksum", marks=pytest.mark.slow),
    (_OddJson, "checksum"),
], ids=["html-download", "json-download", "html-checksum", "json-checksum"])
def test_hub_answering_something_else_is_one_line(tmp_path, monkeypatch, handler, command):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        point_hf_at(monkeypatch, f"http://127.0.0.1:{srv.server_address[1]}", tmp_path / "hf")
        if command == "download":
            args = ["download", PRESHUFFLED, "-d", str(tmp_path / "x")]
        else:
            (tmp_path / "f.bin").write_bytes(b"x")
            args = ["checksum", "--from-hub", PRESHUFFLED, str(tmp_path / "f.bin")]
        r = run_cli(args)
    finally:
        srv.shutdown()
        srv.server_close()
    assert r.exit_code == 2, r.output
    assert one_line(r.stderr) and r.stderr.startswith("pythia-data: error: "), r.stderr
    assert "Traceback" not in r.output


def test_full_disk_during_download_is_exit_2_out_of_space(hub, tmp_path, monkeypatch):
    import huggingface_hub

    def full(*args, **kwargs):
        warnings.warn("Not enough free disk space to download the file.", UserWarning,
                      stacklevel=1)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", full)
    r = run_cli(["download", PRESHUFFLED, "-d", str(tmp_path / "x"), "-q"])
    assert r.exit_code == 2, r.output
    assert one_line(r.stderr) and "out of space" in r.stderr, r.stderr
    assert "Warning" not in r.stderr and "warning" not in r.stderr
