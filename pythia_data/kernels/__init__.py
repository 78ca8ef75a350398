"""Numba kernels. Each module holds ``@njit(cache=True)`` functions plus thin typed wrappers
that validate shapes and dtypes before calling them.

Numba keys a cached kernel on the source file that *defines* it (its mtime and size), not on
the files whose functions it calls: after an encoder (``bpe.family_encoder``) was cached, an edit
of a scanner it calls in ``pretokenize_split.py`` (a ``git pull`` into an editable install)
would leave the old scanner compiled into it -- silently wrong ids. So on first import the
package fingerprints every kernel source file and, when the fingerprint differs from the one
recorded beside the caches, removes this folder's numba cache files (they are rebuilt on
first use). Caches moved elsewhere with ``NUMBA_CACHE_DIR`` are not checked.

Numba loads every installed third-party numba extension (entry points of the group
``numba_extensions``, e.g. awkward's, ~0.15 s plus its share of the exit) at a process's
first kernel call. These kernels use plain numpy arrays and scalars only, so with
``PYTHIA_DATA_NUMBA_EXTENSIONS=0`` in the environment (the ``pythia-data`` command sets it
for itself and its worker processes unless it is set already) they are not loaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_STAMP = "pythia-kernels.sha256"


def drop_stale_caches(folder: str | os.PathLike | None = None) -> bool:
    """Remove ``folder/__pycache__``'s numba cache files when the ``*.py`` sources in
    ``folder`` changed since the recorded fingerprint; True when files were removed.
    Never raises (a read-only install keeps its caches, numba then checks mtimes as usual)."""
    here = Path(folder) if folder is not None else Path(__file__).resolve().parent
    digest = hashlib.sha256()
    try:
        for src in sorted(here.glob("*.py")):
            digest.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    except OSError:
        return False
    fingerprint = digest.hexdigest()
    cache = here / "__pycache__"
    stamp = cache / _STAMP
    try:
        if stamp.read_text() == fingerprint:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    removed = False
    for name in cache.glob("*.nb[ic]") if cache.is_dir() else ():
        try:
            name.unlink()
            removed = True
        except OSError:
            pass
    try:
        cache.mkdir(exist_ok=True)
        tmp = cache / f".{_STAMP}.{os.getpid()}"
        tmp.write_text(fingerprint)
        os.replace(tmp, stamp)
    except OSError:
        pass
    return removed


def skip_numba_extensions() -> bool:
    """Mark numba's third-party extensions as loaded, so that the first kernel call does
    not import them; False when numba has no such switch (or already loaded them)."""
    try:
        from numba.core import entrypoints
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    if getattr(entrypoints, "_already_initialized", True):
        return False
    entrypoints._already_initialized = True
    return True


drop_stale_caches()
if os.environ.get("PYTHIA_DATA_NUMBA_EXTENSIONS") == "0":
    skip_numba_extensions()
