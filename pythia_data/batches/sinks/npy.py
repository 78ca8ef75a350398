"""``npy``: one ``.npy`` array of a shape fixed in advance, header first, then rows
(byte-identical to ``np.save`` of the same array)."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from pythia_data.batches.sinks.base import StreamSink, as_rows, little_endian
from pythia_data.errors import OutputError, UsageError
from pythia_data.format.npy import npy_header


class NpySink(StreamSink):
    """One ``.npy`` array of shape ``(rows, width)``: header now, rows as they come."""

    def __init__(self, target, dtype, shape: tuple[int, int], stream: BinaryIO | None = None,
                 *, overwrite: bool = True):
        self.dtype = np.dtype(dtype)
        self.shape = (int(shape[0]), int(shape[1]))
        if self.shape[0] < 0 or self.shape[1] < 0:
            raise UsageError(f"bad array shape {self.shape}")
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._expected = self.shape[0] * self._row_bytes
        self._bytes = 0
        super().__init__(target, stream, overwrite=overwrite)
        try:
            self._out.write(npy_header(self.dtype, self.shape))
        except BaseException:
            self.abort()
            raise

    def write(self, tokens, columns=None) -> None:
        arr = as_rows(tokens)
        if arr.dtype != self.dtype or arr.shape[1] != self.shape[1]:
            raise UsageError(
                f"npy sink expects rows of {self.shape[1]} {self.dtype} tokens, "
                f"got {arr.shape[1]} {arr.dtype}"
            )
        if self.rows_written + arr.shape[0] > self.shape[0]:
            raise UsageError(f"npy sink: more than the {self.shape[0]} rows announced")
        self._out.write(memoryview(np.ascontiguousarray(little_endian(arr))).cast("B"))
        self.rows_written += arr.shape[0]
        self._bytes += arr.nbytes

    def copy_from(self, fd: int, offset: int, nbytes: int):
        """Append rows as little-endian bytes straight from a file (see _Output); the
        pieces may split rows, the total is checked on close."""
        if self._bytes + nbytes > self._expected:
            raise UsageError(f"npy sink: more than the {self.shape[0]} rows announced")
        base = self._bytes
        for done in self._copy_from(fd, offset, nbytes):
            self._bytes = base + done
            self.rows_written = self._bytes // self._row_bytes if self._row_bytes else 0
            yield done

    def close(self) -> None:
        if not self._done and self._bytes != self._expected:
            self.abort()
            raise OutputError(
                f"npy output got {self._bytes // max(self._row_bytes, 1)} rows but its "
                f"header announces {self.shape[0]}; removed"
            )
        super().close()
