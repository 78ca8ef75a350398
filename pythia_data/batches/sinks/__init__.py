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
from pythia_data.errors import OutputExistsError, UsageError
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
    "check_options",
    "check_output",
    "infer_format",
    "known_suffixes",
    "open_sink",
    "register",
]


@dataclass(frozen=True)
class SinkKind:
    """One output format.

    ``open(target, *, dtype, shape, stream, overwrite, iterations, **options)`` makes the
    sink: every format gets the common arguments (``shape`` is the final ``(rows, width)``,
    ``iterations`` the inclusive range being written) and only the ``options`` it declares
    (``decode=`` for text, ``steps_per_file=`` for parquet ...); an undeclared option is an
    error, never silently dropped. ``required``: options that must be given (the CLI asks
    for them up front).

    ``suffixes`` pick the format from an output's name; ``binary`` formats are refused on a
    terminal; ``stdout`` says whether ``-`` and other streams are allowed (``stream_note``
    says why not); ``columns`` whether the sink wants the per-row columns (iteration,
    index_in_batch, sample); ``byte_copy`` whether the sink's body is the tokens' bytes back
    to back, so that a contiguous range of the data file can be copied into it as is
    (``sink.copy_from``)."""

    name: str
    open: Callable[..., Sink]
    suffixes: tuple[str, ...] = ()
    binary: bool = True
    stdout: bool = True
    columns: bool = False
    description: str = ""
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    stream_note: str = "cannot be streamed"
    byte_copy: bool = False

    @property
    def decodes(self) -> bool:
        """Whether the format can show rows as text (takes ``decode=``)."""
        return "decode" in self.options


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


def _open_npy(target, *, dtype, shape, stream, overwrite, iterations):
    if shape is None:
        raise UsageError("the npy format needs the array shape in advance")
    return NpySink(target, dtype, shape, stream, overwrite=overwrite)


def _open_bin(target, *, dtype, shape, stream, overwrite, iterations):
    return BinSink(target, dtype, overwrite=overwrite)


def _open_jsonl(target, *, dtype, shape, stream, overwrite, iterations, decode=None):
    return JsonlSink(target, stream, overwrite=overwrite, decode=decode)


def _open_raw(target, *, dtype, shape, stream, overwrite, iterations):
    return RawSink(target, stream, overwrite=overwrite)


def _open_text(target, *, dtype, shape, stream, overwrite, iterations, decode=None):
    return TextSink(target, stream, overwrite=overwrite, decode=decode)


def _open_parquet(target, *, dtype, shape, stream, overwrite, iterations, decode=None,
                  steps_per_file=None, row_group_tokens=1 << 20):
    if steps_per_file is not None:
        return ParquetFolderSink(target, dtype, steps_per_file, iterations,
                                 overwrite=overwrite, decode=decode,
                                 row_group_tokens=row_group_tokens)
    return ParquetSink(target, dtype, overwrite=overwrite, decode=decode,
                       row_group_tokens=row_group_tokens)


register(SinkKind("npy", _open_npy, (".npy",), byte_copy=True,
                  description="one (rows, width) array, as np.save writes it"))
register(SinkKind("bin", _open_bin, (".bin", ".idx"), stdout=False,
                  stream_note="writes two files (PREFIX.bin and PREFIX.idx) and cannot be "
                              "streamed",
                  description="an MMIDIDX dataset, one document per row (preshuffled style)"))
register(SinkKind("jsonl", _open_jsonl, (".jsonl",), binary=False, columns=True,
                  options=("decode",),
                  description="one JSON object per row: iteration, index_in_batch, sample, "
                              "[text,] tokens"))
register(SinkKind("raw", _open_raw, (".raw", ".tokens"), byte_copy=True,
                  description="the tokens little-endian back to back"))
register(SinkKind("text", _open_text, (".txt",), binary=False, columns=True,
                  options=("decode",), required=("decode",),
                  description="each row decoded (option decode=callable), under a line "
                              "'# iteration I row R'"))
register(SinkKind("parquet", _open_parquet, (".parquet",), stdout=False, columns=True,
                  options=("decode", "steps_per_file", "row_group_tokens"),
                  stream_note="ends with a footer that points back into the file and cannot "
                              "be streamed",
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


def check_options(kind: SinkKind, options) -> None:
    """UsageError for an option ``kind`` does not declare (a required one left out is
    refused by the sink itself, in its own words)."""
    unknown = sorted(set(options) - set(kind.options))
    if unknown:
        takes = f"its options: {', '.join(kind.options)}" if kind.options else "it takes none"
        raise UsageError(f"the {kind.name} format has no option {', '.join(unknown)} ({takes})")


def check_output(fmt: str | None, target: str | os.PathLike, *, stream: BinaryIO | None = None,
                 overwrite: bool = True, allow_terminal: bool = False, **options) -> str:
    """Check, before any work, that ``target`` can take format ``fmt`` (default: from the
    suffix) with ``options`` and return the format: an option the format does not declare
    is refused, a format that cannot stream on a stream, a binary one on a terminal (as
    ``zstd`` does) unless ``allow_terminal``, an existing regular file unless
    ``overwrite``, a file name as the folder of ``steps_per_file``."""
    kind = SINKS[infer_format(target, fmt)]
    text = os.fspath(target)
    check_options(kind, options)
    if not kind.stdout and is_stream_target(text):
        where = "stdout" if text == "-" else text
        raise UsageError(
            f"the {kind.name} format {kind.stream_note} into {where}; give a file name")
    if options.get("steps_per_file") is not None and not os.path.isdir(text):
        suffix = os.path.splitext(text)[1].lower()
        if suffix in known_suffixes():
            raise UsageError(
                f"{text} names a file (*{suffix}) but --steps-per-file writes a folder of "
                "files: give a folder name")
    if kind.binary and not allow_terminal and _is_terminal_target(text, stream):
        raise UsageError(_terminal_message(kind.name, "stdout" if text == "-" else text))
    if not overwrite and not is_stream_target(text) and not os.path.isdir(text):
        # (a folder: a file sink refuses it when opening, a folder sink checks its files)
        for name in output_names(kind.name, text):
            if os.path.lexists(name):
                raise OutputExistsError(name)
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
              allow_terminal: bool = False, iterations=None, **options) -> Sink:
    """Open a sink of format ``fmt`` (default: from the suffix) on ``target`` (a path, or
    ``-`` for ``stream``/stdout). ``npy`` needs the final ``shape`` (rows, width);
    ``iterations`` is the inclusive range written (the parquet folder names its files by
    it); ``options`` are the format's own (:attr:`SinkKind.options`), anything else is a
    UsageError. The target is checked first (:func:`check_output`)."""
    name = check_output(fmt, target, stream=stream, overwrite=overwrite,
                        allow_terminal=allow_terminal, **options)
    return SINKS[name].open(target, dtype=dtype, shape=shape, stream=stream,
                            overwrite=overwrite, iterations=iterations, **options)


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
