"""``checksum --from-hub``: check local files against the digests the hub states."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pythia_data.errors import InputError, UsageError
from pythia_data.format.shardset import parse_shard_name
from pythia_data.hub.known import lookup
from pythia_data.hub.remote import CONNECT_TIMEOUT, RemoteFile, list_repo
from pythia_data.hub.state import DownloadState, hash_as
from pythia_data.io.walk import walk_files


@dataclass
class HubCheck:
    path: str
    repo_path: str | None
    status: str  # ok, mismatch, unknown (not in the repository), missing (expected, absent)
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
            # not the manifest download writes (DIR/REPO_NAME.sha256)
            out += [q for q in walk_files(p) if not q.name.endswith(".sha256")]
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
    report.results += _missing(paths, report.results, by_path)
    return report


def _missing(paths, results: list[HubCheck], by_path: dict[str, RemoteFile]) -> list[HubCheck]:
    """Repository files expected in a folder checked but absent from it: the other shards of
    a shard set of which one shard is present, and what ``download`` placed there before
    (its record in ``FOLDER/.pythia-data``)."""
    present = {r.repo_path for r in results if r.repo_path}
    expected: dict[str, Path] = {}  # repository path -> where it should be
    for raw in paths:
        folder = Path(raw)
        if not folder.is_dir():
            continue
        here = [r for r in results if r.repo_path and _inside(r.path, folder)]
        # where this folder sits in the repository: REPO_PREFIX/<path under the folder>
        prefixes = set()
        for r in here:
            rel = os.path.relpath(r.path, folder).replace(os.sep, "/")
            if r.repo_path == rel:
                prefixes.add("")
            elif r.repo_path.endswith("/" + rel):
                prefixes.add(r.repo_path[: -len(rel)])
        prefix = prefixes.pop() if len(prefixes) == 1 else None
        if prefix is None and not here:
            prefix = ""  # nothing matched yet: the folder is the repository's root
        if prefix is None:
            continue
        for r in here:  # shard sets: every member is expected
            parsed = parse_shard_name(os.path.basename(r.repo_path))
            if parsed is None:
                continue
            base, _, last = parsed
            top = os.path.dirname(r.repo_path)
            for rp in by_path:
                other = parse_shard_name(os.path.basename(rp))
                if other is not None and other[0] == base and other[2] == last \
                        and os.path.dirname(rp) == top:
                    expected.setdefault(rp, folder / rp[len(prefix):])
        for rp in DownloadState(folder).files:  # what download placed here
            key = prefix + rp if not rp.startswith(prefix) else rp
            if key in by_path:
                expected.setdefault(key, folder / rp)
    out = []
    for rp, where in sorted(expected.items()):
        if rp in present or where.exists():
            continue
        rf = by_path[rp]
        out.append(HubCheck(str(where), rp, "missing", rf.digest, None, rf.algorithm))
    return out


def _inside(path: str, folder: Path) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == \
            os.path.abspath(folder)
    except ValueError:
        return False
