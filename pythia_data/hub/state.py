"""The download folder's own records: the verified-files state and the manifest.

``DIR/.pythia-data/download-state.json`` remembers, per repository path, the size, mtime_ns
and digest of every file verified so far; a rerun skips a file whose size and mtime_ns
still match without reading it again. The record is rewritten atomically (temp file, fsync,
rename) after each verified file, so an interruption loses at most the file in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from pythia_data.errors import InputError
from pythia_data.integrity.hashing import hash_file
from pythia_data.integrity.manifest import known_manifest
from pythia_data.io.atomic import atomic_write_text

STATE_DIR = ".pythia-data"
STATE_FILE = "download-state.json"
STAGING = "incoming"
STATE_VERSION = 1

__all__ = ["DownloadState", "hash_as", "atomic_write_text", "known_manifest", "manifest_name"]


def hash_as(path: str | os.PathLike[str], algorithm: str, progress=None) -> str:
    """The digest of a local file as the hub states it: ``sha256`` of the content, or
    ``git-sha1`` (the git blob id: SHA1 of ``b"blob SIZE\\0"`` + content)."""
    if algorithm == "sha256":
        return hash_file(path, "sha256", progress=progress)
    if algorithm != "git-sha1":
        raise InputError(f"unknown digest kind {algorithm!r}")
    h = hashlib.sha1(b"blob %d\x00" % os.path.getsize(path))  # noqa: S324 (git's blob id)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


def manifest_name(repo_id: str) -> str:
    """``DIR/NAME.sha256``: the repository's name (e.g. ``pythia_deduped_pile_idxmaps.sha256``)."""
    return repo_id.rsplit("/", 1)[-1] + ".sha256"


class DownloadState:
    """Verified files of one download folder (thread-safe; saved atomically on each change)."""

    def __init__(self, local_dir: str | os.PathLike[str]):
        self.local_dir = Path(local_dir)
        self.path = self.local_dir / STATE_DIR / STATE_FILE
        self._lock = threading.Lock()
        self.files: dict[str, dict] = {}
        self.checks: dict[str, dict] = {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(raw, dict) and raw.get("version") == STATE_VERSION:
                self.files = dict(raw.get("files") or {})
                self.checks = dict(raw.get("checks") or {})
        except FileNotFoundError:
            pass
        except (OSError, ValueError, RecursionError):
            pass  # an unreadable record only costs re-hashing

    def is_verified(self, rel: str, digest: str | None, size: int) -> bool:
        """True when ``rel`` was verified with ``digest`` and still has the size and mtime
        recorded then (no read of the content)."""
        e = self.files.get(rel)
        if e is None or digest is None or e.get("digest") != digest or e.get("size") != size:
            return False
        try:
            st = os.stat(self.local_dir / rel)
        except OSError:
            return False
        return st.st_size == size and st.st_mtime_ns == e.get("mtime_ns")

    def record(self, rel: str, algorithm: str, digest: str) -> None:
        st = os.stat(self.local_dir / rel)
        with self._lock:
            self.files[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                               "algorithm": algorithm, "digest": digest}
            self._save()

    def forget(self, rel: str) -> None:
        with self._lock:
            if self.files.pop(rel, None) is not None:
                self._save()

    def check_result(self, digest: str) -> dict | None:
        return self.checks.get(digest)

    def record_check(self, digest: str, result: dict) -> None:
        with self._lock:
            self.checks[digest] = result
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": STATE_VERSION, "files": self.files, "checks": self.checks},
                          indent=1, sort_keys=True)
        atomic_write_text(self.path, text + "\n")
