"""SHA256 / xxh3 hashing, checksum manifests, verification.

Manifests are read in every style found in the wild, one file per line:

- ``sha256sum`` style: ``HEX  NAME`` (or ``HEX *NAME`` for binary mode);
- Pythia's ``shard_hashes.txt`` style: ``NAME HEX``;
- BSD / ``sha256sum --tag`` style: ``SHA256 (NAME) = HEX`` (``XXH128`` for xxh3).

The algorithm of an entry follows from its digest length: 64 hex digits for SHA256, 32 for
xxh3 (128-bit XXH3, from the ``xxhash`` package). Names are matched on their last path
component, so a manifest written in one folder checks files in another.

The known manifests (Pythia's published shard hashes, the unsharded file's hash) ship as
package data in ``pythia_data/data/*.sha256`` (the human-facing copy is ``checksums/`` at the
top of the repository); :func:`known_manifest` merges them, and :func:`checksum_files` looks
file names up there when no manifest is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import xxhash

from pythia_data.errors import InputError, OutputError, UsageError

#: Hash algorithms by CLI name, with the length of their hex digests.
ALGORITHMS = {"sha256": 64, "xxh3": 32}
#: Read size for hashing: large enough to make syscalls cheap, small enough to stay in cache.
READ_SIZE = 1 << 20

Progress = Callable[[int], None]

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_BSD = re.compile(r"^(?P<tag>[A-Za-z0-9_-]+) ?\((?P<name>.*)\) ?= ?(?P<hex>[0-9a-fA-F]+)$")
_BSD_TAGS = {"SHA256": "sha256", "XXH128": "xxh3", "XXH3_128": "xxh3", "XXH3": "xxh3"}


def new_hasher(algorithm: str):
    """A fresh hash object (``update``/``hexdigest``) for ``algorithm`` (sha256 or xxh3)."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "xxh3":
        return xxhash.xxh3_128()
    raise UsageError(f"unknown hash algorithm {algorithm!r} (choose from {', '.join(ALGORITHMS)})")


def algorithm_of(digest: str) -> str | None:
    """The algorithm whose digests look like ``digest`` (by length), or ``None``."""
    if not _HEX.match(digest):
        return None
    for name, length in ALGORITHMS.items():
        if len(digest) == length:
            return name
    return None


def hash_file(
    path: str | os.PathLike[str],
    algorithm: str = "sha256",
    *,
    progress: Progress | None = None,
    read_size: int = READ_SIZE,
) -> str:
    """The hex digest of a whole file, read in ``read_size`` chunks (memory stays bounded)."""
    h = new_hasher(algorithm)
    buf = bytearray(read_size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        with contextlib.suppress(AttributeError, OSError):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            if progress is not None:
                progress(n)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# Manifests


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    digest: str
    algorithm: str


@dataclass
class Manifest:
    """Expected digests by file name (the last path component of each manifest name)."""

    entries: dict[str, ManifestEntry] = field(default_factory=dict)
    source: str = "<manifest>"

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and os.path.basename(name) in self.entries

    def get(self, name: str, algorithm: str | None = None) -> ManifestEntry | None:
        """The entry for ``name`` (matched on its basename), of ``algorithm`` if given."""
        e = self.entries.get(os.path.basename(name))
        if e is None or (algorithm is not None and e.algorithm != algorithm):
            return None
        return e

    @property
    def algorithms(self) -> set[str]:
        return {e.algorithm for e in self.entries.values()}

    def add(self, name: str, digest: str, where: str = "") -> None:
        algorithm = algorithm_of(digest)
        if algorithm is None:
            raise InputError(f"{self.source}{where}: {digest!r} is not a SHA256 or xxh3 digest")
        key = os.path.basename(name.replace("\\", "/"))
        if not key:
            raise InputError(f"{self.source}{where}: empty file name")
        old = self.entries.get(key)
        if old is not None and old.digest != digest.lower():
            raise InputError(f"{self.source}{where}: {key} is listed twice with different digests")
        self.entries[key] = ManifestEntry(key, digest.lower(), algorithm)

    def merged(self, other: Manifest) -> Manifest:
        out = Manifest(dict(self.entries), source=self.source)
        out.entries.update(other.entries)
        return out

    @classmethod
    def parse(cls, text: str, source: str = "<manifest>") -> Manifest:
        """Parse manifest text in any supported style (styles may even be mixed)."""
        m = cls(source=source)
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f":{lineno}"
            bsd = _BSD.match(line)
            if bsd and bsd.group("tag").upper() in _BSD_TAGS:
                m.add(bsd.group("name"), bsd.group("hex"), where)
                continue
            parts = line.split(None, 1)
            if len(parts) != 2:
                raise InputError(f"{source}{where}: expected 'HEX  NAME' or 'NAME HEX', got {line!r}")
            first, rest = parts
            if algorithm_of(first) is not None:  # sha256sum style: HEX  NAME / HEX *NAME
                name = rest[1:] if rest.startswith("*") else rest
                m.add(name, first, where)
                continue
            name, _, last = line.rpartition(" ")
            name = name.strip()
            if name and algorithm_of(last) is not None:  # Pythia style: NAME HEX
                m.add(name, last, where)
                continue
            raise InputError(f"{source}{where}: no SHA256 or xxh3 digest found in {line!r}")
        return m

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise InputError(f"manifest not found: {path}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read manifest {path}: {exc}") from exc
        return cls.parse(text, source=str(path))


def format_manifest(items: Iterable[tuple[str, str]]) -> str:
    """``sha256sum``-style text (``HEX  NAME``) for ``(name, digest)`` pairs."""
    return "".join(f"{digest}  {name}\n" for name, digest in items)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _known_manifest_files() -> list[tuple[str, str]]:
    """``(name, text)`` of every manifest shipped in ``pythia_data/data``."""
    out = []
    root = resources.files("pythia_data") / "data"
    if not root.is_dir():
        return out
    for item in sorted(root.iterdir(), key=lambda t: t.name):
        if item.name.endswith((".sha256", ".xxh3")):
            out.append((item.name, item.read_text(encoding="utf-8")))
    return out


@lru_cache(maxsize=1)
def known_manifest() -> Manifest:
    """Every known digest (Pythia's published shard hashes, the unsharded file's hash)."""
    m = Manifest(source="known checksums")
    for name, text in _known_manifest_files():
        m = m.merged(Manifest.parse(text, source=f"pythia_data/data/{name}"))
    m.source = "known checksums"
    return m


def expected_digest(name: str, manifest: Manifest | None = None, algorithm: str = "sha256") -> str | None:
    """The expected digest of file ``name`` from ``manifest``, else from the known manifests."""
    for m in (manifest, known_manifest()):
        if m is None:
            continue
        e = m.get(name, algorithm)
        if e is not None:
            return e.digest
    return None


# ---------------------------------------------------------------------------------------
# Verification


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
        return f"{len(self.results)} files: " + ", ".join(parts)

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
    """``(files, folders, absent)``: the files named or held (not recursively) by folders.

    Hidden files and our own ``*.partial`` files inside folders are skipped.
    """
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
            try:
                names = sorted(os.listdir(p))
            except OSError as exc:
                raise InputError(f"cannot read folder {p}: {exc.strerror or exc}") from exc
            for n in names:
                q = p / n
                if n.startswith(".") or n.endswith((".partial", ".partial.json")):
                    continue
                if q.is_file():
                    add(q)
        elif p.is_file():
            add(p)
        elif p.exists():
            raise InputError(f"not a regular file or folder: {p}")
        else:
            absent.append(p)
    return files, folders, absent


def _missing_known_shards(present: set[str], manifest: Manifest) -> list[str]:
    """Names in ``manifest`` that are shards of a set with at least one member present."""
    from pythia_data.shards import parse_shard_name

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
    with the bytes hashed, from any thread.
    """
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
    if manifest is not None and len(manifest) and algorithm not in manifest.algorithms:
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
    lookup = manifest if manifest is not None else (known_manifest() if use_known else Manifest())

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
    if jobs == 1 or len(files) <= 1:
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
        missing = sorted(n for n, e in manifest.entries.items() if n not in present and e.algorithm == algorithm)
    elif manifest is None and use_known and folders:
        missing = _missing_known_shards(present, lookup)
    else:
        missing = []
    for n in missing:
        e = lookup.get(n, algorithm)
        results.append(FileResult(n, None, "missing", expected=e.digest if e else None))
    return ChecksumReport(algorithm, results, manifest.source if manifest is not None else None)
