"""``checksum --from-hub``: check local files against the digests the hub states."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pythia_data.errors import InputError, UsageError
from pythia_data.hub.known import lookup
from pythia_data.hub.remote import CONNECT_TIMEOUT, RemoteFile, list_repo
from pythia_data.hub.state import hash_as


@dataclass
class HubCheck:
    path: str
    repo_path: str | None
    status: str  # ok, mismatch, unknown (not in the repository)
    expected: str | None = None
    digest: str | None = None
    algorithm: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class HubCheckReport:
    repo_id: str
    commit: str
    results: list[HubCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.results)

    def to_dict(self) -> dict:
        return {"repo_id": self.repo_id, "commit": self.commit, "ok": self.ok,
                "files": [r.to_dict() for r in self.results]}


def _local_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                rel = q.relative_to(p).parts
                if q.is_file() and not any(part.startswith(".") for part in rel) \
                        and not q.name.endswith((".partial", ".incomplete", ".sha256")):
                    out.append(q)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"no such file or folder: {p}")
    return out


def _match(p: Path, by_path: dict[str, RemoteFile], by_name: dict[str, list[RemoteFile]]) -> RemoteFile | None:
    """The repository file for local ``p``: the longest repository path that ends ``p``."""
    parts = p.resolve().parts
    for k in range(min(len(parts), 8), 0, -1):
        cand = "/".join(parts[-k:])
        if cand in by_path:
            return by_path[cand]
    same = by_name.get(p.name, [])
    return same[0] if len(same) == 1 else None


def check_against_hub(
    name_or_repo: str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    revision: str | None = None,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
    token=None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> HubCheckReport:
    """Hash local files (folders: recursively) and compare with the hub's digests.

    Files are matched to the repository by path suffix (``seed3/x.npy``), else by name.
    """
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    files = _local_files(paths)
    repo_id, _ = lookup(name_or_repo)
    listing = list_repo(repo_id, revision, (), token=token, connect_timeout=connect_timeout)
    by_path = {f.path: f for f in listing.files}
    by_name: dict[str, list[RemoteFile]] = {}
    for f in listing.files:
        by_name.setdefault(os.path.basename(f.path), []).append(f)
    report = HubCheckReport(repo_id, listing.commit)
    lock = threading.Lock()

    def tick(n: int) -> None:
        if progress is not None:
            with lock:
                progress(n)

    def work(p: Path) -> HubCheck:
        rf = _match(p, by_path, by_name)
        if rf is None:
            return HubCheck(str(p), None, "unknown")
        if os.path.getsize(p) != rf.size:
            tick(os.path.getsize(p))
            return HubCheck(str(p), rf.path, "mismatch", rf.digest,
                            f"size {os.path.getsize(p)} != {rf.size}", rf.algorithm)
        try:
            got = hash_as(p, rf.algorithm, progress=tick)
        except OSError as exc:
            raise InputError(f"cannot read {p}: {exc.strerror or exc}") from exc
        return HubCheck(str(p), rf.path, "ok" if got == rf.digest else "mismatch", rf.digest,
                        got, rf.algorithm)

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        report.results = list(pool.map(work, files))
    return report
