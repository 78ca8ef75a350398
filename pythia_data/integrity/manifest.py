"""Checksum manifests: read in every style found in the wild, one file per line:

- ``sha256sum`` style: ``HEX  NAME`` (or ``HEX *NAME`` for binary mode);
- Pythia's ``shard_hashes.txt`` style: ``NAME HEX``;
- BSD / ``sha256sum --tag`` style: ``SHA256 (NAME) = HEX`` (``XXH128`` for xxh3).

The algorithm of an entry follows from its digest length: 64 hex digits for SHA256, 32 for
xxh3 (128-bit XXH3). Names are matched on their last path component, so a manifest written
in one folder checks files in another.

The known manifests (Pythia's published shard hashes, the unsharded file's hash) ship as
package data in ``pythia_data/data/*.sha256`` (the human-facing copy is ``checksums/`` at the
top of the repository); :func:`known_manifest` merges them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pythia_data.errors import InputError, quoted
from pythia_data.integrity.hashing import algorithm_of

_BSD = re.compile(r"^(?P<tag>[A-Za-z0-9_-]+) ?\((?P<name>.*)\) ?= ?(?P<hex>[0-9a-fA-F]+)$")
_BSD_TAGS = {"SHA256": "sha256", "XXH128": "xxh3", "XXH3_128": "xxh3", "XXH3": "xxh3"}


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
            raise InputError(f"{self.source}{where}: {quoted(digest)} is not a SHA256 or xxh3 digest")
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
                raise InputError(f"{source}{where}: expected 'HEX  NAME' or 'NAME HEX', got {quoted(line)}")
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
            raise InputError(f"{source}{where}: no SHA256 or xxh3 digest found in {quoted(line)}")
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


def is_manifest_name(name: str) -> bool:
    """A file name that manifests go by: ``*.sha256`` (what ``shard`` and ``download``
    write), ``*.sha256sum(s)``, ``*shard_hashes.txt`` (Pythia's style), ``SHA256SUMS``."""
    low = name.lower()
    return (low.endswith((".sha256", ".sha256sum", ".sha256sums", "shard_hashes.txt"))
            or low in ("sha256sums", "sha256sums.txt"))


def format_manifest(items: Iterable[tuple[str, str]]) -> str:
    """``sha256sum``-style text (``HEX  NAME``) for ``(name, digest)`` pairs."""
    return "".join(f"{digest}  {name}\n" for name, digest in items)


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
