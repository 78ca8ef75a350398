"""Process-wide settings of the processes that run commands and units: the cyclic garbage
collector's thresholds, and numba's lean set-up for cached kernels
(:func:`pythia_data.kernels.lazy_numba_setup`).

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


def tune() -> None:
    """Collect ~70x less often in this process (a command's or a worker's), and let numba
    load cached kernels without its full set-up."""
    if gc.get_threshold() != THRESHOLDS:
        gc.set_threshold(*THRESHOLDS)
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
