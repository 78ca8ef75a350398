"""Progress reporting without a progress-bar library: the library calls, the CLI draws.

A *progress factory* is a callable ``factory(desc, total, unit)`` returning a context
manager that yields ``update(n)``. Library functions that run long take
``progress=factory`` (or ``None``); only ``pythia_data.cli`` turns that into tqdm bars.
Byte-copying functions take the simpler ``progress(n)`` callback directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager

Update = Callable[[int], None]
ProgressFactory = Callable[[str, int, str], ContextManager[Update]]

__all__ = ["ProgressFactory", "Update", "task"]


@contextlib.contextmanager
def task(progress: ProgressFactory | None, desc: str, total: int,
         unit: str = "it") -> Iterator[Update | None]:
    """``with task(progress, "doc_idx", n) as update:`` -> ``update`` is None without a factory."""
    if progress is None or progress is False:
        yield None
        return
    with progress(desc, int(total), unit) as update:
        yield update
