"""``raw``: the tokens little-endian back to back, nothing else (pipe them anywhere)."""

from __future__ import annotations

import numpy as np

from pythia_data.batches.sinks.base import StreamSink, as_rows, little_endian


class RawSink(StreamSink):
    """Tokens little-endian back to back (the dtype is whatever the chunks have)."""

    def copy_from(self, fd: int, offset: int, nbytes: int):
        """Append raw little-endian token bytes straight from a file (see _Output)."""
        yield from self._copy_from(fd, offset, nbytes)

    def write(self, tokens, columns=None) -> None:
        arr = as_rows(tokens)
        self._out.write(memoryview(np.ascontiguousarray(little_endian(arr))).cast("B"))
        self.rows_written += arr.shape[0]
