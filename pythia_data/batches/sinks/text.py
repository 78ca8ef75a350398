"""``text``: each row decoded to text, under a header line ``# iteration I row R``.

The sink does not know any tokenizer (tokenize sits above batches): it takes a ``decode``
callable (``decode(tokens: np.ndarray) -> str``) as an option, which the CLI builds from
``--tokenizer``. R is the row's index in its batch. The decoded text follows the header as
it is (no escaping) and ends with one newline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pythia_data.batches.sinks.base import StreamSink, as_rows
from pythia_data.errors import UsageError

Decode = Callable[[np.ndarray], str]
PIECE_TOKENS = 1 << 18


def check_decode(decode, fmt: str) -> Decode:
    if decode is None:
        raise UsageError(f"the {fmt} format needs a tokenizer to decode the tokens (--tokenizer)")
    if not callable(decode):
        raise UsageError(f"decode must be a callable tokens -> str, not {decode!r}")
    return decode


def decode_rows(decode: Decode, arr: np.ndarray) -> list[str]:
    batch = getattr(decode, "batch", None)
    if batch is not None:
        return list(batch(arr))
    return [decode(row) for row in arr]


def row_columns(columns, rows: int, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    if not columns or "iteration" not in columns or "index_in_batch" not in columns:
        raise UsageError(f"the {fmt} sink needs the iteration and index_in_batch columns")
    its = np.asarray(columns["iteration"])
    idx = np.asarray(columns["index_in_batch"])
    if len(its) != rows or len(idx) != rows:
        raise UsageError(f"{fmt} sink: columns do not match the {rows} rows")
    return its, idx


class TextSink(StreamSink):
    """``# iteration I row R`` then the decoded row, for every row."""

    def __init__(self, target, stream=None, *, overwrite: bool = True, decode=None):
        self.decode = check_decode(decode, "text")
        super().__init__(target, stream, overwrite=overwrite)

    def write(self, tokens, columns=None) -> None:
        arr = as_rows(tokens)
        its, idx = row_columns(columns, arr.shape[0], "text")
        step = max(1, PIECE_TOKENS // max(arr.shape[1], 1))  # bounded text per write
        for lo in range(0, arr.shape[0], step):
            hi = min(lo + step, arr.shape[0])
            texts = decode_rows(self.decode, arr[lo:hi])
            parts = [
                f"# iteration {int(i)} row {int(r)}\n{text}\n"
                for i, r, text in zip(its[lo:hi].tolist(), idx[lo:hi].tolist(), texts)
            ]
            self._out.write("".join(parts).encode("utf-8"))
        self.rows_written += arr.shape[0]
