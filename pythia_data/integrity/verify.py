"""Verification: hash files (and folders) in parallel against a manifest or the known
checksums, and report each file as ok, mismatch, missing or unknown."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pythia_data.errors import InputError, PythiaDataError, UsageError
from pythia_data.format.shardset import parse_shard_name
from pythia_data.integrity.hashing import ALGORITHMS, Progress, hash_file
from pythia_data.integrity.manifest import (
    Manifest,
    format_manifest,
    is_manifest_name,
    known_manifest,
)
from pythia_data.io.walk import walk_files


@dataclass
class FileResult:
    """One file's outcome. ``status``: ok, mismatch, missing, or unknown (nothing expected)."""

    name: str
    path: str | None
    status: str
    digest: str | None = None
    expected: str | None = None
    size: int | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "status": self.status,
            "digest": self.digest,
            "expected": self.expected,
            "size": self.size,
        }


@dataclass
class ChecksumReport:
    """What :func:`checksum_files` found; ``ok`` is False when any file mismatched or is missing."""

    algorithm: str
    results: list[FileResult]
    manifest_source: str | None = None

    @property
    def ok(self) -> bool:
        return not any(r.status in ("mismatch", "missing") for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def by_status(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def total_bytes(self) -> int:
        return int(sum(r.size or 0 for r in self.results))

    def summary(self) -> str:
        counts = {s: len(self.by_status(s)) for s in ("ok", "mismatch", "missing", "unknown")}
        parts = [f"{counts['ok']} OK"]
        if counts["mismatch"]:
            parts.append(f"{counts['mismatch']} FAILED")
        if counts["missing"]:
            parts.append(f"{counts['missing']} MISSING")
        if counts["unknown"]:
            parts.append(f"{counts['unknown']} without an expected {self.algorithm}")
        against = f" (expected digests from {self.manifest_source})" \
            if self.manifest_source else ""
        return f"{len(self.results)} files: " + ", ".join(parts) + against

    def manifest_text(self) -> str:
        return format_manifest((r.name, r.digest) for r in self.results if r.digest)

    def to_dict(self) -> dict:
        return {
            "algorithm": self.algorithm,
            "ok": self.ok,
            "manifest": self.manifest_source,
            "files": [r.to_dict() for r in self.results],
        }


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[Path], list[Path]]:
    """``(files, folders, absent)``: the files named or held by folders (recursively, by
    :func:`pythia_data.io.walk.walk_files`: hidden files and our partial files skipped)."""
    files: list[Path] = []
    folders: list[Path] = []
    absent: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            files.append(p)

    for raw in paths:
        p = Path(os.fspath(raw))
        if p.is_dir():
            folders.append(p)
            for q in walk_files(p):
                add(q)
        elif p.is_file():
            add(p)
        elif p.exists():
            raise InputError(f"not a regular file or folder: {p}")
        else:
            absent.append(p)
    return files, folders, absent


class _Fallback:
    """Look a name up in the manifests found beside the files, then in the known ones."""

    def __init__(self, first: Manifest, then: Manifest):
        self.first, self.then = first, then

    def get(self, name: str, algorithm: str | None = None):
        return self.first.get(name, algorithm) or self.then.get(name, algorithm)


def manifests_in(files: Sequence[Path]) -> tuple[list[Manifest], set[str]]:
    """The manifests among ``files`` (by name: ``*.sha256``, ``*shard_hashes.txt``,
    ``SHA256SUMS``...) that list at least one other file of ``files`` from their folder;
    returns them and their real paths. One that cannot be parsed is left as a plain file."""
    by_dir: dict[Path, set[str]] = {}
    for p in files:
        by_dir.setdefault(p.parent, set()).add(p.name)
    found: list[Manifest] = []
    used: set[str] = set()
    for p in files:
        if not is_manifest_name(p.name):
            continue
        try:
            m = Manifest.load(p)
        except PythiaDataError:
            continue
        if any(n in m.entries for n in by_dir.get(p.parent, ()) if n != p.name):
            found.append(m)
            used.add(os.path.realpath(p))
    return found, used


def _shard_of_present(name: str, present: set[str]) -> bool:
    parsed = parse_shard_name(name)
    return parsed is not None and f"{parsed[0]}.bin" in present


def _sharded_bases(present: set[str]) -> set[str]:
    """The BASEs of which some shard (``BASE-NNNNN-of-MMMMM.bin``) is among ``present``."""
    out = set()
    for n in present:
        parsed = parse_shard_name(n)
        if parsed is not None:
            out.add(parsed[0])
    return out


def _missing_known_shards(present: set[str], manifest: Manifest) -> list[str]:
    """Names in ``manifest`` that are shards of a set with at least one member present."""
    sets = set()
    for n in present:
        parsed = parse_shard_name(n)
        if parsed is not None:
            sets.add((parsed[0], parsed[2]))
    out = []
    for name in manifest.entries:
        parsed = parse_shard_name(name)
        if parsed is not None and (parsed[0], parsed[2]) in sets and name not in present:
            out.append(name)
    return sorted(out)


def checksum_files(
    paths: Sequence[str | os.PathLike[str]],
    expected: str | os.PathLike[str] | Manifest | None = None,
    algorithm: str | None = None,
    *,
    jobs: int | None = None,
    progress: Progress | None = None,
    use_known: bool = True,
    hash_many: Callable[[list[Path], str], list[str]] | None = None,
) -> ChecksumReport:
    """Hash files (and the files in folders) in parallel and compare with expected digests.

    ``expected``: a manifest (path or :class:`Manifest`). Without one, file names are looked
    up in the known manifests (when ``use_known``). ``algorithm``: ``sha256`` or ``xxh3``;
    by default the manifest's algorithm when it has only one, else ``sha256``.

    Missing files: with an explicit manifest and a folder among ``paths``, every manifest
    entry not found is ``missing``; a named file that does not exist but is listed is
    ``missing`` (one that is not listed raises :class:`InputError`). Without a manifest,
    the known shards of a shard set of which some shard is present are expected too.

    ``jobs`` threads hash files side by side (default: all cores); ``progress(n)`` is called
    with the bytes hashed, from any thread. ``hash_many(files, algorithm) -> digests``
    replaces that pool (``checksum --executor ray`` or ``--job-dir`` hash files as work
    units, see :mod:`pythia_data.jobs.checksum`).
    """
    algorithm_given = algorithm
    manifest: Manifest | None
    if isinstance(expected, Manifest):
        manifest = expected
    elif expected is not None:
        manifest = Manifest.load(expected)
    else:
        manifest = None
    if algorithm is None:
        algos = manifest.algorithms if manifest is not None else set()
        algorithm = algos.pop() if len(algos) == 1 else "sha256"
    if algorithm not in ALGORITHMS:
        raise UsageError(f"unknown hash algorithm {algorithm!r} (choose from {', '.join(ALGORITHMS)})")
    if manifest is not None and not len(manifest):
        raise InputError(f"{manifest.source} lists no digests: it cannot verify anything")
    if manifest is not None and algorithm not in manifest.algorithms:
        raise UsageError(
            f"{manifest.source} lists {'/'.join(sorted(manifest.algorithms))} digests, "
            f"not {algorithm}"
        )
    if jobs is None:
        jobs = os.cpu_count() or 1
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")

    files, folders, absent = expand_paths(paths)
    if expected is not None and not isinstance(expected, Manifest):
        own = os.path.realpath(expected)  # the manifest itself, if it lies in a folder checked
        files = [p for p in files if os.path.realpath(p) != own]
    beside: list[Manifest] = []
    if manifest is None and folders:
        # a manifest lying in a folder checked (what `shard` and `download` write, Pythia's
        # shard_hashes.txt, SHA256SUMS) is the expected digests, as unshard uses it
        beside, used = manifests_in(files)
        if beside:
            files = [p for p in files if os.path.realpath(p) not in used]
            manifest = beside[0]
            for m in beside[1:]:
                manifest = manifest.merged(m)
            manifest.source = ", ".join(m.source for m in beside)
            if algorithm_given is None:
                algos = manifest.algorithms
                algorithm = algos.pop() if len(algos) == 1 else "sha256"
    if beside:
        known = known_manifest() if use_known else Manifest()
        lookup = _Fallback(manifest, known)
    else:
        lookup = manifest if manifest is not None else (
            known_manifest() if use_known else Manifest())

    results: list[FileResult] = []
    for p in absent:
        e = lookup.get(p.name, algorithm)
        if e is None:
            raise InputError(f"no such file or folder: {p}")
        results.append(FileResult(p.name, str(p), "missing", expected=e.digest))

    sizes = []
    for p in files:
        try:
            sizes.append(p.stat().st_size)
        except OSError as exc:
            raise InputError(f"cannot read {p}: {exc.strerror or exc}") from exc

    lock = threading.Lock()

    def report(n: int) -> None:
        if progress is not None:
            with lock:
                progress(n)

    def work(p: Path) -> str:
        try:
            return hash_file(p, algorithm, progress=report if progress is not None else None)
        except OSError as exc:
            raise InputError(f"cannot read {p}: {exc.strerror or exc}") from exc

    # Biggest files first so the last worker does not finish alone with a large file.
    order = sorted(range(len(files)), key=lambda i: -sizes[i])
    digests: dict[int, str] = {}
    if hash_many is not None:
        digests = dict(enumerate(hash_many(list(files), algorithm)))
    elif jobs == 1 or len(files) <= 1:
        for i in order:
            digests[i] = work(files[i])
    else:
        with ThreadPoolExecutor(max_workers=min(jobs, len(files))) as pool:
            futures = {i: pool.submit(work, files[i]) for i in order}
            for i, fut in futures.items():
                digests[i] = fut.result()

    present = set()
    for i, p in enumerate(files):
        present.add(p.name)
        e = lookup.get(p.name, algorithm)
        if e is None:
            status = "unknown"
        else:
            status = "ok" if e.digest == digests[i] else "mismatch"
        results.append(
            FileResult(p.name, str(p), status, digests[i], e.digest if e else None, sizes[i])
        )

    present |= {p.name for p in absent}
    if manifest is not None and folders:
        sharded = _sharded_bases(present)
        missing = sorted(
            n for n, e in manifest.entries.items()
            if n not in present and e.algorithm == algorithm
            # a whole-file line (BASE.bin) whose shards are here is not missing
            and not (n.endswith(".bin") and n[:-4] in sharded)
            # nor, beside an unsharded BASE.bin, the shards it was made of
            and not (beside and _shard_of_present(n, present))
        )
    elif manifest is None and use_known and folders:
        missing = _missing_known_shards(present, lookup)
    else:
        missing = []
    for n in missing:
        e = lookup.get(n, algorithm)
        results.append(FileResult(n, None, "missing", expected=e.digest if e else None))
    if manifest is not None and not any(r.expected is not None for r in results):
        raise InputError(
            f"{manifest.source} lists none of the {len(results)} files checked: "
            "it cannot verify anything (wrong manifest?)"
        )
    return ChecksumReport(algorithm, results, manifest.source if manifest is not None else None)
