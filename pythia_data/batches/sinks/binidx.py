"""``bin``: an MMIDIDX dataset (``PREFIX.bin`` + ``PREFIX.idx``), one document per row
(the layout of Pythia's preshuffled files)."""

from __future__ import annotations

import os

import numpy as np

from pythia_data.batches.sinks.base import Sink, as_rows
from pythia_data.dataset.builder import DatasetBuilder
from pythia_data.errors import UsageError
from pythia_data.format.header import strip_suffix


class BinSink(Sink):
    """An MMIDIDX dataset (``PREFIX.bin`` + ``PREFIX.idx``), one document per row."""

    def __init__(self, target, dtype, *, overwrite: bool = True):
        text = os.fspath(target)
        if text == "-":
            raise UsageError("the bin format writes PREFIX.bin and PREFIX.idx, not stdout")
        self.dtype = np.dtype(dtype)
        self.prefix = strip_suffix(text)
        self._builder = DatasetBuilder(self.prefix, dtype=self.dtype, overwrite=overwrite)
        self.rows_written = 0

    @property
    def outputs(self) -> list[str]:
        return [self.prefix + ".bin", self.prefix + ".idx"]

    def write(self, tokens, columns=None) -> None:
        arr = as_rows(tokens)
        if arr.dtype != self.dtype:
            raise UsageError(f"bin sink expects {self.dtype} tokens, got {arr.dtype}")
        for row in arr:
            self._builder.add_document(row)
        self.rows_written += arr.shape[0]

    def _commit(self) -> None:
        self._builder.finalize()

    def _abort(self) -> None:
        self._builder.abort()
