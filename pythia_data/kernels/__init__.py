"""Numba kernels. Each module holds ``@njit(cache=True)`` functions plus thin typed wrappers
that validate shapes and dtypes before calling them.

Numba keys a cached kernel on the source file that *defines* it (the SHA-256 of its
contents in numba 0.68, its mtime and size in older versions), not on the files whose
functions it calls: after an encoder (``bpe.family_encoder``) was cached, an edit of a
scanner it calls in ``pretokenize_split.py`` (a ``git pull`` into an editable install)
would leave the old scanner compiled into it -- silently wrong ids. So on first import the
package fingerprints every kernel source file and, when the fingerprint differs from the one
recorded beside the caches, removes this folder's numba cache files (they are rebuilt on
first use). Caches moved elsewhere with ``NUMBA_CACHE_DIR`` are not checked.

Numba loads every installed third-party numba extension (entry points of the group
``numba_extensions``, e.g. awkward's, ~0.15 s plus its share of the exit) at a process's
first kernel call. These kernels use plain numpy arrays and scalars only, so with
``PYTHIA_DATA_NUMBA_EXTENSIONS=0`` in the environment (the ``pythia-data`` command sets it
for itself and its worker processes unless it is set already) they are not loaded.

Before it loads a cached kernel numba "refreshes" its CPU target: it starts its runtime
(NRT), then imports and registers every typing and lowering registry it has (~60 modules:
typed lists and dicts, random generators, polynomials, ...), ~0.1 s of a command, held
under the GIL. Running a kernel loaded from the cache needs the runtime only; the
registries are for compiling. With ``PYTHIA_DATA_NUMBA_SETUP=lazy`` (the command sets it
for itself and its workers, see :mod:`pythia_data.jobs.startup`) a cache load starts the
runtime alone, and a kernel that has to be compiled (no cache, a new signature) gets the
whole refresh from numba's compiler pipeline, as always -- for the CPU target and the numba
versions it was checked on (:data:`LAZY_NUMBA`); anything else keeps numba's behaviour.
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


#: numba versions (major, minor) whose cache loads :func:`lazy_numba_setup` was checked on
LAZY_NUMBA = ((0, 59), (0, 68))


def lazy_numba_setup() -> bool:
    """Make numba's cache loads for the CPU target start its runtime only, instead of
    importing and registering every registry it has; True when in effect. Any other numba
    version, target or layout keeps numba's own behaviour."""
    try:
        import numba
        from numba.core import caching
        from numba.core.cpu import CPUContext
        from numba.core.runtime import rtsys
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    version = tuple(int(x) for x in numba.__version__.split(".")[:2] if x.isdigit())
    if not LAZY_NUMBA[0] <= version <= LAZY_NUMBA[1]:
        return False
    full = caching.Cache.load_overload
    if getattr(full, "_pythia_lazy", False):
        return True
    if not all(hasattr(caching.Cache, name)
               for name in ("_load_overload", "_guard_against_spurious_io_errors")):
        return False

    def load_overload(self, sig, target_context):
        if type(target_context) is not CPUContext:
            return full(self, sig, target_context)
        rtsys.initialize(target_context)  # what running a loaded kernel needs
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None  # an I/O error the guard swallowed: numba compiles instead

    load_overload._pythia_lazy = True
    caching.Cache.load_overload = load_overload
    return True


drop_stale_caches()
if os.environ.get("PYTHIA_DATA_NUMBA_EXTENSIONS") == "0":
    skip_numba_extensions()
if os.environ.get("PYTHIA_DATA_NUMBA_SETUP") == "lazy":
    lazy_numba_setup()
