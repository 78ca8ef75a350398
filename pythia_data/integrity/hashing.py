"""Hash algorithms (SHA256, xxh3-128) and hashing a whole file in bounded memory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable

import xxhash

from pythia_data.cancel import cancel_point
from pythia_data.errors import UsageError

#: Hash algorithms by CLI name, with the length of their hex digests.
ALGORITHMS = {"sha256": 64, "xxh3": 32}
#: Read size for hashing: large enough to make syscalls cheap, small enough to stay in cache.
READ_SIZE = 1 << 20

Progress = Callable[[int], None]

_HEX = re.compile(r"^[0-9a-fA-F]+$")

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
            cancel_point()  # a unit in a worker thread of a stopped run ends here
    return h.hexdigest()
