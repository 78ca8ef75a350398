"""Process-wide settings of the processes that run commands and units: the cyclic garbage
collector's thresholds, glibc malloc's (:func:`tune_malloc`), and numba's lean set-up for
cached kernels (:func:`pythia_data.kernels.lazy_numba_setup`).

A command allocates a few hundred thousand objects that live to its end
as it starts (numba's typing registries at the first kernel call, the tokenizer's tables)
and makes little cyclic garbage after. With Python's thresholds (700, 10, 10) a one-line
``tokenize`` ran ~320 collections, two of them full ones over everything: ~80 ms of its
~0.55 s. With :data:`THRESHOLDS` ~35 ms; and once the tokenizer is loaded, :func:`settle`
freezes what is alive out of later full collections. Garbage cycles are still collected,
in larger batches (every 50,000 net allocations: a few MB at most).

:func:`tune` runs in the command's process (the console entry), in the local executor's
fork server (its workers inherit it) and in every Ray task; a library user's process is
left as it is (:func:`settle` does nothing there).
"""

from __future__ import annotations

import gc
import os
import sys

#: the collector's thresholds in a command's or a worker's process
THRESHOLDS = (50_000, 50, 100)

#: glibc malloc in a command's or a worker's process: blocks up to this size come from the
#: heap (32 MiB is glibc's largest) ...
MMAP_THRESHOLD = 32 << 20
#: ... and freed memory at the heap's top is kept up to this much
TRIM_THRESHOLD = 1 << 30
_malloc_tuned = False


def tune() -> None:
    """Collect ~70x less often in this process (a command's or a worker's), and let numba
    load cached kernels without its full set-up."""
    if gc.get_threshold() != THRESHOLDS:
        gc.set_threshold(*THRESHOLDS)
    tune_malloc()
    # numba (not imported yet by a command's start) gets it when the kernels are imported
    os.environ.setdefault("PYTHIA_DATA_NUMBA_SETUP", "lazy")
    if "pythia_data.kernels" in sys.modules and os.environ["PYTHIA_DATA_NUMBA_SETUP"] == "lazy":
        sys.modules["pythia_data.kernels"].lazy_numba_setup()


def settle() -> None:
    """In a tuned process, move every object alive now (modules, numba's registries, a
    loaded tokenizer) to the collector's permanent generation, so that later full
    collections no longer walk them; in any other process, nothing. (A start-up garbage
    cycle frozen with them stays: a few KB, once.)"""
    if gc.get_threshold() == THRESHOLDS:
        gc.freeze()


def tune_malloc() -> bool:
    """Make glibc's malloc keep the memory of freed batch buffers for the next batch instead
    of handing it back to the kernel (which zeroes it and page-faults it in again). A work
    unit allocates its buffers afresh as its batches ramp up (the block reader's blocks,
    the decoded text, the ids): with glibc's defaults each of these multi-MB blocks was a
    new mapping, and page clearing and faults took ~1 s of CPU of a 1 GB ``tokenize`` as
    60 units (bench-scale ``local-1``: 13.5-14.1 -> 12.5-12.8 CPU s; the single stream,
    whose batches reach their size once, did not change). What is kept is bounded by the
    process's peak. True when applied; a process whose user set glibc's malloc variables
    (``MALLOC_*_``, ``GLIBC_TUNABLES``), or that has no ``mallopt``, is left as it is."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ) or \
            "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without it)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    _malloc_tuned = (mallopt(m_mmap_threshold, MMAP_THRESHOLD) == 1
                     and mallopt(m_trim_threshold, TRIM_THRESHOLD) == 1)
    return _malloc_tuned
