"""Stopping units that run in threads.

A unit run by a worker *process* is stopped by ending the process. A unit run by a worker
*thread* of :class:`~pythia_data.jobs.LocalExecutor` cannot be stopped from outside, so it
stops itself: the long loops of a unit (one batch of documents per turn) call
:func:`cancel_point`, which raises :class:`UnitCancelled` once the run that started the
unit has been stopped (a unit failed for good, or Ctrl-C reached the driver). The unit's
partial part is removed as on any error, and a rerun does the unit again.

Outside a worker thread (the driver running units itself, a worker process, a Ray task)
:func:`cancel_point` does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["UnitCancelled", "cancel_point", "in_worker_thread", "run_cancellable"]

_local = threading.local()


class UnitCancelled(Exception):  # noqa: N818 - names what happened, like KeyboardInterrupt
    """Raised in a unit's thread at a :func:`cancel_point` after its run was stopped."""


def cancel_point() -> None:
    """Raise :class:`UnitCancelled` if the run of the unit this thread runs was stopped."""
    stop = getattr(_local, "stop", None)
    if stop is not None and stop.is_set():
        raise UnitCancelled("the run was stopped")


def in_worker_thread() -> bool:
    """Whether this thread runs a unit for a pool of worker threads (other units run in
    this process at the same time)."""
    return getattr(_local, "stop", None) is not None


def run_cancellable(stop: threading.Event, fn: Callable, unit):
    """``fn(unit)`` in this thread, its cancel points watching ``stop``."""
    _local.stop = stop
    try:
        return fn(unit)
    finally:
        _local.stop = None
