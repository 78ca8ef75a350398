"""Imported by the local executor's fork server (``set_forkserver_preload``): numba's
one-time set-up of a process - its extension entry points (which import every installed
numba extension package) and its code-generation target - done once there, so that every
worker forked from it starts with it done instead of paying ~0.35 s of CPU each at its
first kernel call. Importing this module runs one tiny cached kernel; nothing else."""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def _one(x: int) -> int:
    return x + 1


def warm() -> int:
    """Run the tiny kernel (loads it from numba's cache, compiling it the first time)."""
    return _one(1)


warm()
