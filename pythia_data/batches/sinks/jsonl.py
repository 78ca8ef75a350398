"""``jsonl``: one JSON object per row: the given columns, ``"text"`` when a ``decode``
callable is given (the decoded row), then ``"tokens"``."""

from __future__ import annotations

import json

import numpy as np

from pythia_data.batches.sinks.base import StreamSink, as_rows
from pythia_data.errors import UsageError


class JsonlSink(StreamSink):
    """One JSON object per row: ``{column: value, ..., ["text": ...,] "tokens": [...]}``."""

    def __init__(self, target, stream=None, *, overwrite: bool = True, decode=None):
        if decode is not None and not callable(decode):
            raise UsageError(f"decode must be a callable tokens -> str, not {decode!r}")
        self.decode = decode
        super().__init__(target, stream, overwrite=overwrite)

    def write(self, tokens, columns=None) -> None:
        arr = as_rows(tokens)
        columns = dict(columns or {})
        for name, values in columns.items():
            if len(values) != arr.shape[0]:
                raise UsageError(
                    f"column {name!r} has {len(values)} values for {arr.shape[0]} rows"
                )
        names = list(columns)
        values = [np.asarray(columns[n]).tolist() for n in names]
        texts = None
        if self.decode is not None:
            texts = [json.dumps(self.decode(row), ensure_ascii=False) for row in arr]
        lines = []
        for r, row in enumerate(arr.tolist()):
            head = "".join(
                f'"{n}": {_json_scalar(v[r])}, ' for n, v in zip(names, values, strict=True)
            )
            if texts is not None:
                head += f'"text": {texts[r]}, '
            lines.append("{" + head + '"tokens": [' + ", ".join(map(str, row)) + "]}\n")
        self._out.write("".join(lines).encode("utf-8"))
        self.rows_written += arr.shape[0]


def _json_scalar(value) -> str:
    return json.dumps(value)
