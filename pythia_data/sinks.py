"""Output writers for token batches: npy, bin/idx, jsonl, raw.

Every sink takes 2-D chunks of token rows (one row per training sequence) through
:meth:`Sink.write` and streams them out, so memory never grows with the output. Sinks that
write a file are atomic: they write ``NAME.partial`` (the bin sink: ``PREFIX.bin.partial`` and
``PREFIX.idx.partial``) and rename on :meth:`Sink.close`; :meth:`Sink.abort` (or an exception
inside a ``with`` block) removes the partial file. ``-`` means a binary stream (stdout).

==========  =====================================================================
``npy``     one ``.npy`` array of a shape fixed in advance, header first, then rows
            (byte-identical to ``np.save`` of the same array)
``bin``     an MMIDIDX dataset with one document per row (preshuffled style)
``jsonl``   one JSON object per row: the given columns, then ``"tokens"``
``raw``     the tokens little-endian back to back, nothing else
==========  =====================================================================
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np

from pythia_data.errors import OutputError, UsageError

__all__ = [
    "FORMATS",
    "BinSink",
    "JsonlSink",
    "NpySink",
    "RawSink",
    "Sink",
    "infer_format",
    "npy_header",
    "open_sink",
]

FORMATS = ("npy", "bin", "jsonl", "raw")
_SUFFIXES = {".npy": "npy", ".bin": "bin", ".idx": "bin", ".jsonl": "jsonl"}


def infer_format(target: str | os.PathLike, explicit: str | None = None) -> str:
    """The format to write: ``explicit`` if given, else from the suffix (raw otherwise)."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise UsageError(f"unknown output format {explicit!r} (one of {', '.join(FORMATS)})")
        return explicit
    text = os.fspath(target)
    if text == "-":
        return "raw"
    return _SUFFIXES.get(os.path.splitext(text)[1].lower(), "raw")


def _little_endian(tokens: np.ndarray) -> np.ndarray:
    dt = tokens.dtype
    if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"):
        return tokens.astype(dt.newbyteorder("<"))
    return tokens


def _rows(tokens) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 2:
        raise UsageError(f"a sink takes 2-D chunks (rows x tokens), got shape {arr.shape}")
    return arr


def npy_header(dtype, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header ``np.save`` writes for a C-order array of this dtype and shape."""
    buf = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype).newbyteorder("<")),
        "fortran_order": False,
        "shape": tuple(int(n) for n in shape),
    }
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # header too long for format 1.0 (never for 2-D shapes)
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


class _Output:
    """A binary destination: a ``NAME.partial`` file renamed on commit, or a stream."""

    def __init__(self, target: str | os.PathLike, stream: BinaryIO | None):
        self.final: str | None = None
        self.partial: str | None = None
        if os.fspath(target) == "-":
            self.fh = stream if stream is not None else sys.stdout.buffer
            return
        self.final = os.fspath(target)
        self.partial = self.final + ".partial"
        folder = os.path.dirname(self.final) or "."
        if not os.path.isdir(folder):
            raise OutputError(f"output folder {folder} does not exist")
        if os.path.isdir(self.final):
            raise OutputError(f"{self.final} is a folder")
        try:
            self.fh = open(self.partial, "wb")  # noqa: SIM115 - closed in commit/abort
        except OSError as exc:
            raise OutputError(f"cannot write {self.partial}: {exc.strerror}") from None

    def write(self, data) -> None:
        if self.final is None:
            self.fh.write(data)  # a closed pipe raises BrokenPipeError: the CLI ends quietly
            return
        try:
            self.fh.write(data)
        except OSError as exc:
            raise OutputError(f"cannot write {self.partial}: {exc.strerror or exc}") from None

    def copy_from(self, fd: int, offset: int, nbytes: int, step: int = 1 << 26):
        """Append bytes ``[offset, offset + nbytes)`` of the open file ``fd``; yields the
        bytes done after each piece. Uses ``os.sendfile`` (a copy inside the kernel: no
        buffer, no mapping) and falls back to ``pread`` + write where it cannot."""
        where = self.partial or "stdout"
        try:
            self.fh.flush()
            out_fd = self.fh.fileno()
        except (AttributeError, OSError, ValueError):  # an in-memory stream
            out_fd = None
        done = 0
        while done < nbytes:
            n = min(step, nbytes - done)
            sent = 0
            if out_fd is not None:
                try:
                    sent = os.sendfile(out_fd, fd, offset + done, n)
                except BrokenPipeError:
                    raise
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        if self.final is None:
                            raise
                        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from None
                    out_fd = None  # e.g. a terminal: copy through user space instead
            if out_fd is None:
                data = os.pread(fd, n, offset + done)
                self.write(data)
                sent = len(data)
            if sent == 0:
                raise OutputError(f"cannot copy into {where}: the input ended early")
            done += sent
            yield done

    def commit(self) -> None:
        if self.final is None:
            self.fh.flush()
            return
        try:
            self.fh.close()
            os.replace(self.partial, self.final)
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write {self.final}: {exc.strerror or exc}") from None

    def abort(self) -> None:
        if self.final is None:
            return
        try:
            self.fh.close()
        except OSError:
            pass
        try:
            os.unlink(self.partial)
        except FileNotFoundError:
            pass


class Sink:
    """Base class: ``write`` 2-D token chunks, then ``close`` (commit) or ``abort``.

    As a context manager, a clean exit closes and an exception aborts (and propagates).
    """

    rows_written: int = 0

    def write(self, tokens: np.ndarray, columns: Mapping[str, np.ndarray] | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _StreamSink(Sink):
    def __init__(self, target, stream: BinaryIO | None = None):
        self._out = _Output(target, stream)
        self.rows_written = 0
        self._done = False

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._out.abort()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._out.commit()


class RawSink(_StreamSink):
    """Tokens little-endian back to back (the dtype is whatever the chunks have)."""

    def copy_from(self, fd: int, offset: int, nbytes: int):
        """Append raw little-endian token bytes straight from a file (see _Output)."""
        yield from self._out.copy_from(fd, offset, nbytes)

    def write(self, tokens, columns=None) -> None:
        arr = _rows(tokens)
        self._out.write(memoryview(np.ascontiguousarray(_little_endian(arr))).cast("B"))
        self.rows_written += arr.shape[0]


class NpySink(_StreamSink):
    """One ``.npy`` array of shape ``(rows, width)``: header now, rows as they come."""

    def __init__(self, target, dtype, shape: tuple[int, int], stream: BinaryIO | None = None):
        self.dtype = np.dtype(dtype)
        self.shape = (int(shape[0]), int(shape[1]))
        if self.shape[0] < 0 or self.shape[1] < 0:
            raise UsageError(f"bad array shape {self.shape}")
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._expected = self.shape[0] * self._row_bytes
        self._bytes = 0
        super().__init__(target, stream)
        try:
            self._out.write(npy_header(self.dtype, self.shape))
        except BaseException:
            self.abort()
            raise

    def write(self, tokens, columns=None) -> None:
        arr = _rows(tokens)
        if arr.dtype != self.dtype or arr.shape[1] != self.shape[1]:
            raise UsageError(
                f"npy sink expects rows of {self.shape[1]} {self.dtype} tokens, "
                f"got {arr.shape[1]} {arr.dtype}"
            )
        if self.rows_written + arr.shape[0] > self.shape[0]:
            raise UsageError(f"npy sink: more than the {self.shape[0]} rows announced")
        self._out.write(memoryview(np.ascontiguousarray(_little_endian(arr))).cast("B"))
        self.rows_written += arr.shape[0]
        self._bytes += arr.nbytes

    def copy_from(self, fd: int, offset: int, nbytes: int):
        """Append rows as little-endian bytes straight from a file (see _Output); the
        pieces may split rows, the total is checked on close."""
        if self._bytes + nbytes > self._expected:
            raise UsageError(f"npy sink: more than the {self.shape[0]} rows announced")
        base = self._bytes
        for done in self._out.copy_from(fd, offset, nbytes):
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


class JsonlSink(_StreamSink):
    """One JSON object per row: ``{column: value, ..., "tokens": [...]}``."""

    def write(self, tokens, columns=None) -> None:
        arr = _rows(tokens)
        columns = dict(columns or {})
        for name, values in columns.items():
            if len(values) != arr.shape[0]:
                raise UsageError(
                    f"column {name!r} has {len(values)} values for {arr.shape[0]} rows"
                )
        names = list(columns)
        values = [np.asarray(columns[n]).tolist() for n in names]
        lines = []
        for r, row in enumerate(arr.tolist()):
            head = "".join(
                f'"{n}": {_json_scalar(v[r])}, ' for n, v in zip(names, values, strict=True)
            )
            lines.append("{" + head + '"tokens": [' + ", ".join(map(str, row)) + "]}\n")
        self._out.write("".join(lines).encode("utf-8"))
        self.rows_written += arr.shape[0]


def _json_scalar(value) -> str:
    return json.dumps(value)


class BinSink(Sink):
    """An MMIDIDX dataset (``PREFIX.bin`` + ``PREFIX.idx``), one document per row."""

    def __init__(self, target, dtype):
        from pythia_data.indexed import DatasetBuilder, strip_suffix

        text = os.fspath(target)
        if text == "-":
            raise UsageError("the bin format writes PREFIX.bin and PREFIX.idx, not stdout")
        self.dtype = np.dtype(dtype)
        self.prefix = strip_suffix(text)
        self._builder = DatasetBuilder(self.prefix, dtype=self.dtype)
        self.rows_written = 0
        self._done = False

    def write(self, tokens, columns=None) -> None:
        arr = _rows(tokens)
        if arr.dtype != self.dtype:
            raise UsageError(f"bin sink expects {self.dtype} tokens, got {arr.dtype}")
        for row in arr:
            self._builder.add_document(row)
        self.rows_written += arr.shape[0]

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._builder.finalize()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._builder.abort()


def open_sink(
    fmt: str,
    target: str | os.PathLike,
    *,
    dtype,
    shape: tuple[int, int] | None = None,
    stream: BinaryIO | None = None,
) -> Sink:
    """Open a sink of format ``fmt`` on ``target`` (a path, or ``-`` for ``stream``/stdout).

    ``npy`` needs the final ``shape`` (rows, width) up front; ``bin`` cannot go to stdout.
    """
    fmt = infer_format(target, fmt)
    if fmt == "npy":
        if shape is None:
            raise UsageError("the npy format needs the array shape in advance")
        return NpySink(target, dtype, shape, stream)
    if fmt == "bin":
        return BinSink(target, dtype)
    if fmt == "jsonl":
        return JsonlSink(target, stream)
    return RawSink(target, stream)
