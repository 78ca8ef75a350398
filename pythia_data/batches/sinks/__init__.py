"""Output formats for token batches, in one registry keyed by name and file suffix.

Every sink takes 2-D chunks of token rows (one row per training sequence) through
``Sink.write(tokens, columns)`` and streams them out, so memory never grows with the
output. File outputs follow the atomic-output protocol (:mod:`pythia_data.io.atomic`).

Adding a format is one module with a :class:`~.base.Sink` subclass plus one
:func:`register` line below (docs/architecture.md has a worked example).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from pythia_data.batches.sinks.base import Sink, StreamSink
from pythia_data.batches.sinks.binidx import BinSink
from pythia_data.batches.sinks.jsonl import JsonlSink
from pythia_data.batches.sinks.npy import NpySink
from pythia_data.batches.sinks.parquet import ParquetFolderSink, ParquetSink
from pythia_data.batches.sinks.raw import RawSink
from pythia_data.batches.sinks.text import TextSink
from pythia_data.errors import OutputError, UsageError
from pythia_data.format.header import strip_suffix
from pythia_data.io.atomic import is_stream_target

__all__ = [
    "FORMATS",
    "SINKS",
    "BinSink",
    "JsonlSink",
    "NpySink",
    "ParquetFolderSink",
    "ParquetSink",
    "RawSink",
    "Sink",
    "SinkKind",
    "StreamSink",
    "TextSink",
    "check_output",
    "infer_format",
    "known_suffixes",
    "open_sink",
    "register",
]


@dataclass(frozen=True)
class SinkKind:
    """One output format: ``open(target, dtype=, shape=, stream=, overwrite=, **options)``.

    ``suffixes`` pick the format from an output's name; ``binary`` formats are refused on a
    terminal; ``stdout`` says whether ``-`` is allowed; ``columns`` whether the sink wants
    the per-row columns (iteration, index_in_batch, sample)."""

    name: str
    open: Callable[..., Sink]
    suffixes: tuple[str, ...] = ()
    binary: bool = True
    stdout: bool = True
    columns: bool = False
    description: str = ""


SINKS: dict[str, SinkKind] = {}


def register(kind: SinkKind) -> SinkKind:
    """Add an output format to the registry (names and suffixes must be new)."""
    if kind.name in SINKS:
        raise UsageError(f"output format {kind.name!r} is already registered")
    taken = {s for k in SINKS.values() for s in k.suffixes}
    if taken & set(kind.suffixes):
        raise UsageError(f"suffix(es) {sorted(taken & set(kind.suffixes))} already registered")
    SINKS[kind.name] = kind
    return kind


register(SinkKind("npy", lambda target, *, dtype, shape, stream=None, overwrite=True, **_:
                  NpySink(target, dtype, shape, stream, overwrite=overwrite),
                  (".npy",), description="one (rows, width) array, as np.save writes it"))
register(SinkKind("bin", lambda target, *, dtype, stream=None, overwrite=True, **_:
                  BinSink(target, dtype, overwrite=overwrite),
                  (".bin", ".idx"), stdout=False,
                  description="an MMIDIDX dataset, one document per row (preshuffled style)"))
register(SinkKind("jsonl", lambda target, *, stream=None, overwrite=True, decode=None, **_:
                  JsonlSink(target, stream, overwrite=overwrite, decode=decode),
                  (".jsonl",), binary=False, columns=True,
                  description="one JSON object per row: iteration, index_in_batch, sample, "
                              "[text,] tokens"))
register(SinkKind("raw", lambda target, *, stream=None, overwrite=True, **_:
                  RawSink(target, stream, overwrite=overwrite),
                  (".raw", ".tokens"),
                  description="the tokens little-endian back to back"))

register(SinkKind("text", lambda target, *, stream=None, overwrite=True, decode=None, **_:
                  TextSink(target, stream, overwrite=overwrite, decode=decode),
                  (".txt",), binary=False, columns=True,
                  description="each row decoded (option decode=callable), under a line "
                              "'# iteration I row R'"))


def _open_parquet(target, *, dtype, stream=None, overwrite=True, decode=None,
                  steps_per_file=None, iterations=None, row_group_tokens=1 << 20, **_):
    if steps_per_file is not None:
        return ParquetFolderSink(target, dtype, steps_per_file, iterations,
                                 overwrite=overwrite, decode=decode,
                                 row_group_tokens=row_group_tokens)
    return ParquetSink(target, dtype, overwrite=overwrite, decode=decode,
                       row_group_tokens=row_group_tokens)


register(SinkKind("parquet", _open_parquet, (".parquet",), stdout=False, columns=True,
                  description="Parquet rows uid, batch_idx, token_ids, index_in_batch[, text]; "
                              "steps_per_file=K: a folder of train-{E:06d}.parquet (needs "
                              "pyarrow)"))

#: The registered format names (in registration order).
FORMATS = tuple(SINKS)


def known_suffixes() -> list[str]:
    """Every suffix that names a format (``.npy``, ``.bin`` ...), in registry order."""
    return [suffix for kind in SINKS.values() for suffix in kind.suffixes]


def infer_format(target: str | os.PathLike, explicit: str | None = None) -> str:
    """The format to write: ``explicit`` if given, else from the suffix of ``target``;
    ``raw`` for ``-`` and for outputs that are streams (FIFOs, devices, ``/dev/fd/N``).

    A file name without a known suffix is a UsageError (pass a format): writing raw
    binary into ``x.txt`` by accident helps nobody."""
    if explicit is not None:
        if explicit not in SINKS:
            raise UsageError(
                f"unknown output format {explicit!r} (one of {', '.join(SINKS)})")
        return explicit
    text = os.fspath(target)
    suffix = os.path.splitext(text)[1].lower()
    for kind in SINKS.values():
        if suffix in kind.suffixes:
            return kind.name
    if is_stream_target(text):
        return "raw"
    what = f"suffix {suffix!r}" if suffix else "no suffix"
    raise UsageError(
        f"cannot tell the output format of {text} ({what}): name it "
        f"{' / '.join('*' + s for s in known_suffixes())} or pass --format "
        f"({', '.join(SINKS)})"
    )


def check_output(fmt: str | None, target: str | os.PathLike, *, stream: BinaryIO | None = None,
                 overwrite: bool = True, allow_terminal: bool = False) -> str:
    """Check, before any work, that ``target`` can take format ``fmt`` (default: from the
    suffix) and return the format: a two-file format is refused on a stream, a binary one
    on a terminal (as ``zstd`` does) unless ``allow_terminal``, an existing regular file
    unless ``overwrite``."""
    kind = SINKS[infer_format(target, fmt)]
    text = os.fspath(target)
    if not kind.stdout and is_stream_target(text):
        where = "stdout" if text == "-" else text
        raise UsageError(
            f"the {kind.name} format writes two files (PREFIX.bin and PREFIX.idx) and cannot "
            f"be streamed into {where}; give a file name")
    if kind.binary and not allow_terminal and _is_terminal_target(text, stream):
        raise UsageError(_terminal_message(kind.name, "stdout" if text == "-" else text))
    if not overwrite and not is_stream_target(text) and not os.path.isdir(text):
        # (a folder: a file sink refuses it when opening, a folder sink checks its files)
        for name in output_names(kind.name, text):
            if os.path.lexists(name):
                raise OutputError(f"{name} already exists (remove it or pass --force)")
    return kind.name


def output_names(fmt: str, target: str | os.PathLike) -> list[str]:
    """The files a file sink of format ``fmt`` writes for ``target`` (``PREFIX.bin`` and
    ``PREFIX.idx`` for bin; the target itself otherwise)."""
    text = os.fspath(target)
    if fmt == "bin":
        prefix = strip_suffix(text)
        return [prefix + ".bin", prefix + ".idx"]
    return [text]


def open_sink(fmt: str | None, target: str | os.PathLike, *, dtype, shape=None,
              stream: BinaryIO | None = None, overwrite: bool = True,
              allow_terminal: bool = False, **options) -> Sink:
    """Open a sink of format ``fmt`` (default: from the suffix) on ``target`` (a path, or
    ``-`` for ``stream``/stdout). ``npy`` needs the final ``shape`` (rows, width).
    The target is checked first (:func:`check_output`)."""
    name = check_output(fmt, target, stream=stream, overwrite=overwrite,
                        allow_terminal=allow_terminal)
    if name == "npy" and shape is None:
        raise UsageError("the npy format needs the array shape in advance")
    return SINKS[name].open(target, dtype=dtype, shape=shape, stream=stream,
                            overwrite=overwrite, **options)


def _is_terminal_target(text: str, stream) -> bool:
    """Whether the output is a terminal (checked before anything is written)."""
    if text == "-":
        fh = stream if stream is not None else sys.stdout
        try:
            return bool(fh.isatty())
        except (AttributeError, OSError, ValueError):
            return False
    try:  # only character devices can be terminals (opening a FIFO would disturb it)
        if not stat.S_ISCHR(os.stat(text).st_mode):
            return False
    except OSError:
        return False
    flags = os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(text, flags)
    except OSError:  # e.g. a FIFO nobody reads yet: not a terminal
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def _terminal_message(fmt: str, where: str) -> str:
    return (f"refusing to write binary {fmt} output to a terminal ({where}); "
            "redirect it (> FILE, | CMD), give -o FILE, or use --format jsonl")
