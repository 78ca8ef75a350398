"""Imported by the local executor's fork server (``set_forkserver_preload``): numba's
one-time set-up of a process - its extension entry points (which import every installed
numba extension package) and its code-generation target - done once there, so that every
worker forked from it starts with it done instead of paying ~0.35 s of CPU each at its
first kernel call. Importing this module runs one tiny cached kernel and makes an error while
a worker starts print one line (never import it elsewhere: it sets ``sys.excepthook``)."""

from __future__ import annotations

import sys

from numba import njit

import pythia_data.kernels  # noqa: F401 - first: PYTHIA_DATA_NUMBA_EXTENSIONS applies here too
from pythia_data.jobs.startup import tune


def _one_line_hook(kind, value, tb) -> None:
    """What a worker process prints for an error while it starts (the fork server calls
    ``sys.excepthook`` there; a unit's own errors travel back to the driver instead).
    The usual one is the driver exiting on Ctrl-C while a worker was being handed the
    pool's semaphores: one line, not a traceback in the user's terminal."""
    sys.stderr.write(f"pythia-data: a worker process did not start ({kind.__name__}: {value})\n")


@njit(cache=True, nogil=True)
def _one(x: int) -> int:
    return x + 1


def warm() -> int:
    """Run the tiny kernel (loads it from numba's cache, compiling it the first time)."""
    return _one(1)


sys.excepthook = _one_line_hook  # this module runs only in the local executor's fork server
tune()  # the workers forked from here collect garbage as a command's process does
warm()
