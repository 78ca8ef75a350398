"""Sink base classes: 2-D chunks of token rows in, one output out (streaming, atomic)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np

from pythia_data.errors import OutputError, UsageError
from pythia_data.io.atomic import AtomicOutput


def little_endian(tokens: np.ndarray) -> np.ndarray:
    dt = tokens.dtype
    if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"):
        return tokens.astype(dt.newbyteorder("<"))
    return tokens


def as_rows(tokens) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 2:
        raise UsageError(f"a sink takes 2-D chunks (rows x tokens), got shape {arr.shape}")
    return arr


class Sink:
    """Base class: ``write`` 2-D token chunks, then ``close`` (commit) or ``abort``.

    As a context manager, a clean exit closes and an exception aborts (and propagates).
    ``close`` and ``abort`` act once, whichever comes first; subclasses implement
    ``_commit`` and ``_abort``.
    """

    rows_written: int = 0
    _done: bool = False

    @property
    def outputs(self) -> list[str]:
        """The files (or stream) this sink writes, as the user should be told."""
        return []

    def write(self, tokens: np.ndarray, columns: Mapping[str, np.ndarray] | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._commit()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._abort()

    def _commit(self) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class StreamSink(Sink):
    """A sink writing one byte stream through :class:`~pythia_data.io.atomic.AtomicOutput`
    (a file written atomically, or a FIFO / device / stdout streamed into)."""

    def __init__(self, target, stream: BinaryIO | None = None, *, overwrite: bool = True):
        self._out = AtomicOutput(target, overwrite=overwrite, stream=stream)
        self.rows_written = 0

    @property
    def outputs(self) -> list[str]:
        return ["stdout" if self._out.path == "-" else self._out.path]

    def _abort(self) -> None:
        self._out.abort()

    def _commit(self) -> None:
        self._out.commit()

    def _copy_from(self, fd: int, offset: int, nbytes: int, step: int = 1 << 26):
        """Append bytes ``[offset, offset + nbytes)`` of the open file ``fd``; yields the
        bytes done after each piece. Uses ``os.sendfile`` (a copy inside the kernel: no
        buffer, no mapping) and falls back to ``pread`` + write where it cannot."""
        out = self._out
        where = out.name
        try:
            out.fh.flush()
            out_fd = out.fh.fileno()
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
                        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from None
                    out_fd = None  # e.g. a terminal: copy through user space instead
            if out_fd is None:
                data = os.pread(fd, n, offset + done)
                out.write(data)
                sent = len(data)
            if sent == 0:
                raise OutputError(f"cannot copy into {where}: the input ended early")
            done += sent
            yield done
