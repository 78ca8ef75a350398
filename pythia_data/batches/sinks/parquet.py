"""``parquet``: one row per sequence (optional extra ``pythia-data[parquet]``: pyarrow).

Columns: ``uid`` (int64, the sample's global position in the training order: iteration x
batch size + index in the batch), ``batch_idx`` (int64, the iteration), ``token_ids``
(list of the dataset's dtype: ``list<uint16>`` for Pythia), ``index_in_batch`` (int64), and
``text`` (string) when a ``decode`` callable is given. The first three are the columns of
the community's per-checkpoint Parquet copy of the preshuffled Pile.

Streaming: each chunk of rows is written through ``pyarrow.parquet.ParquetWriter`` as row
groups of at most ``row_group_tokens`` tokens (default 1M, at least one row); memory stays at
one chunk plus one row group. Every file is atomic
(:mod:`pythia_data.io.atomic`).

:class:`ParquetFolderSink` (``steps_per_file=K``) writes a folder of files, one per K
iterations aligned to multiples of K, named ``train-{E:06d}.parquet`` where E is the last
iteration in the file + 1 (the checkpoint step the file's data precede):
``train-001000.parquet`` holds iterations 0..999.
"""

from __future__ import annotations

import os

import numpy as np

from pythia_data.batches.sinks.base import Sink, as_rows
from pythia_data.batches.sinks.text import decode_rows, row_columns
from pythia_data.errors import OutputError, OutputExistsError, UsageError
from pythia_data.io.atomic import AtomicOutput, ensure_folder

__all__ = ["ParquetFolderSink", "ParquetSink", "file_name", "require_pyarrow"]


def require_pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UsageError(
            "the parquet format needs pyarrow (pip install 'pythia-data[parquet]')"
        ) from None
    return pyarrow, pyarrow.parquet


ROW_GROUP_TOKENS = 1 << 20


def _slices(rows: int, width: int, row_group_tokens: int):
    step = max(1, int(row_group_tokens) // max(width, 1))
    for lo in range(0, rows, step):
        yield lo, min(lo + step, rows)


def file_name(end_step: int) -> str:
    return f"train-{int(end_step):06d}.parquet"


class _Table:
    """Builds the Arrow schema and one table per chunk."""

    def __init__(self, dtype, decode):
        self.pa, self.pq = require_pyarrow()
        if decode is not None and not callable(decode):
            raise UsageError(f"decode must be a callable tokens -> str, not {decode!r}")
        self.dtype = np.dtype(dtype)
        self.decode = decode
        pa = self.pa
        fields = [
            pa.field("uid", pa.int64()),
            pa.field("batch_idx", pa.int64()),
            pa.field("token_ids", pa.list_(pa.from_numpy_dtype(self.dtype))),
            pa.field("index_in_batch", pa.int64()),
        ]
        if decode is not None:
            fields.append(pa.field("text", pa.string()))
        self.schema = pa.schema(fields)

    def table(self, arr: np.ndarray, columns):
        pa = self.pa
        rows, width = arr.shape
        its, idx = row_columns(columns, rows, "parquet")
        uid = np.asarray(columns.get("sample"), dtype=np.int64) if "sample" in columns else None
        if uid is None or uid.shape[0] != rows:
            raise UsageError("the parquet sink needs the sample column")
        offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int64)
        if offsets[-1] <= np.iinfo(np.int32).max:
            offsets = offsets.astype(np.int32)
            list_type = pa.list_
        else:
            list_type = pa.large_list
        values = pa.array(np.ascontiguousarray(arr).reshape(-1))
        tokens = (pa.ListArray if list_type is pa.list_ else pa.LargeListArray).from_arrays(
            pa.array(offsets), values)
        if list_type is not pa.list_:
            tokens = tokens.cast(pa.list_(values.type))
        data = [pa.array(uid), pa.array(np.asarray(its, dtype=np.int64)), tokens,
                pa.array(np.asarray(idx, dtype=np.int64))]
        if self.decode is not None:
            data.append(pa.array(decode_rows(self.decode, arr), type=pa.string()))
        return pa.Table.from_arrays(data, schema=self.schema)


class _File:
    """One Parquet file written through an AtomicOutput."""

    def __init__(self, target, table: _Table, *, overwrite: bool, stream=None):
        self._out = AtomicOutput(target, overwrite=overwrite, stream=stream)
        try:
            self._writer = table.pq.ParquetWriter(self._out.fh, table.schema)
        except BaseException:
            self._out.abort()
            raise

    def write(self, tab) -> None:
        try:
            self._writer.write_table(tab, row_group_size=max(tab.num_rows, 1))
        except OSError as exc:
            raise OutputError(f"cannot write {self._out.name}: {exc}") from None

    def close(self) -> None:
        try:
            self._writer.close()
        except BaseException:
            self._out.abort()
            raise
        self._out.commit()

    def abort(self) -> None:
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001, S110 - the output is being dropped anyway
            pass
        self._out.abort()


class ParquetSink(Sink):
    """One Parquet file, a row group per chunk."""

    def __init__(self, target, dtype, *, overwrite: bool = True, decode=None, stream=None,
                 row_group_tokens: int = ROW_GROUP_TOKENS):
        self.row_group_tokens = int(row_group_tokens)
        if os.fspath(target) == "-":
            raise UsageError("the parquet format cannot be written to stdout; give a file")
        self._table = _Table(dtype, decode)
        self._file = _File(target, self._table, overwrite=overwrite, stream=stream)
        self.rows_written = 0

    @property
    def outputs(self) -> list[str]:
        return [self._file._out.path]

    def write(self, tokens, columns=None) -> None:
        arr = as_rows(tokens)
        if arr.dtype != self._table.dtype:
            raise UsageError(f"parquet sink expects {self._table.dtype} tokens, got {arr.dtype}")
        columns = dict(columns or {})
        for lo, hi in _slices(arr.shape[0], arr.shape[1], self.row_group_tokens):
            part = {k: np.asarray(v)[lo:hi] for k, v in columns.items()}
            self._file.write(self._table.table(arr[lo:hi], part))
        self.rows_written += arr.shape[0]

    def _commit(self) -> None:
        self._file.close()

    def _abort(self) -> None:
        self._file.abort()


class ParquetFolderSink(Sink):
    """``train-{E:06d}.parquet`` per ``steps_per_file`` iterations into a folder (see the
    module docstring); each file is committed as soon as its last iteration is written.
    ``iterations`` is the inclusive range ``(start, end)`` being written (names the files)."""

    def __init__(self, folder, dtype, steps_per_file: int, iterations, *,
                 overwrite: bool = True, decode=None, row_group_tokens: int = ROW_GROUP_TOKENS):
        self.row_group_tokens = int(row_group_tokens)
        text = os.fspath(folder)
        if text == "-":
            raise UsageError("--steps-per-file writes a folder of files, not stdout")
        if int(steps_per_file) < 1:
            raise UsageError(f"steps per file must be positive, got {steps_per_file}")
        if iterations is None:
            raise UsageError("the parquet folder sink needs the iteration range")
        if os.path.exists(text) and not os.path.isdir(text):
            raise OutputError(f"{text} is a file; --steps-per-file needs an output folder")
        self.folder = text
        self.steps = int(steps_per_file)
        self.start, self.end = int(iterations[0]), int(iterations[1])
        self.overwrite = overwrite
        self._table = _Table(dtype, decode)
        if not overwrite:
            for g in range(self.start // self.steps, self.end // self.steps + 1):
                path = self._path(g)
                if os.path.lexists(path):
                    raise OutputExistsError(path)
        ensure_folder(text)
        self._group: int | None = None
        self._file: _File | None = None
        self.files: list[str] = []
        self.rows_written = 0

    @property
    def outputs(self) -> list[str]:
        return [self.folder]

    def _path(self, group: int) -> str:
        last = min((group + 1) * self.steps - 1, self.end)
        return os.path.join(self.folder, file_name(last + 1))

    def write(self, tokens, columns=None) -> None:
        arr = as_rows(tokens)
        if arr.dtype != self._table.dtype:
            raise UsageError(f"parquet sink expects {self._table.dtype} tokens, got {arr.dtype}")
        columns = dict(columns or {})
        its, _ = row_columns(columns, arr.shape[0], "parquet")
        groups = np.asarray(its, dtype=np.int64) // self.steps
        lo = 0
        while lo < arr.shape[0]:
            g = int(groups[lo])
            hi = lo + int(np.searchsorted(groups[lo:], g, side="right"))
            if g != self._group:
                self._finish()
                self._group = g
                self._file = _File(self._path(g), self._table, overwrite=self.overwrite)
            for a, b in _slices(hi - lo, arr.shape[1], self.row_group_tokens):
                part = {k: np.asarray(v)[lo + a : lo + b] for k, v in columns.items()}
                self._file.write(self._table.table(arr[lo + a : lo + b], part))
            lo = hi
        self.rows_written += arr.shape[0]

    def _finish(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.close()
            self.files.append(f._out.final)

    def _commit(self) -> None:
        self._finish()

    def _abort(self) -> None:
        if self._file is not None:
            self._file.abort()
            self._file = None
