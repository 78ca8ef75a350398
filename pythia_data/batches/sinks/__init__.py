"""Output formats for token batches, in one registry keyed by name and file suffix.

Every sink takes 2-D chunks of token rows (one row per training sequence) through
``Sink.write(tokens, columns)`` and streams them out, so memory never grows with the
output. File outputs follow the atomic-output protocol (:mod:`pythia_data.io.atomic`).

Adding a format is one module with a :class:`~.base.Sink` subclass plus one
:func:`register` line below (docs/architecture.md has a worked example).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from pythia_data.batches.sinks.base import Sink, StreamSink
from pythia_data.batches.sinks.binidx import BinSink
from pythia_data.batches.sinks.jsonl import JsonlSink
from pythia_data.batches.sinks.npy import NpySink
from pythia_data.batches.sinks.raw import RawSink
from pythia_data.errors import UsageError

__all__ = [
    "FORMATS",
    "SINKS",
    "BinSink",
    "JsonlSink",
    "NpySink",
    "RawSink",
    "Sink",
    "SinkKind",
    "StreamSink",
    "infer_format",
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
register(SinkKind("jsonl", lambda target, *, stream=None, overwrite=True, **_:
                  JsonlSink(target, stream, overwrite=overwrite),
                  (".jsonl",), binary=False, columns=True,
                  description="one JSON object per row: iteration, index_in_batch, sample, tokens"))
register(SinkKind("raw", lambda target, *, stream=None, overwrite=True, **_:
                  RawSink(target, stream, overwrite=overwrite),
                  (".raw", ".tokens"),
                  description="the tokens little-endian back to back"))

#: The registered format names (in registration order).
FORMATS = tuple(SINKS)


def infer_format(target: str | os.PathLike, explicit: str | None = None) -> str:
    """The format to write: ``explicit`` if given, else from the suffix of ``target``
    (``raw`` for ``-`` and for outputs that are streams, such as FIFOs)."""
    if explicit is not None:
        if explicit not in SINKS:
            raise UsageError(
                f"unknown output format {explicit!r} (one of {', '.join(SINKS)})")
        return explicit
    text = os.fspath(target)
    if text == "-":
        return "raw"
    suffix = os.path.splitext(text)[1].lower()
    for kind in SINKS.values():
        if suffix in kind.suffixes:
            return kind.name
    return "raw"


def open_sink(fmt: str | None, target: str | os.PathLike, *, dtype, shape=None,
              stream: BinaryIO | None = None, overwrite: bool = True, **options) -> Sink:
    """Open a sink of format ``fmt`` (default: from the suffix) on ``target`` (a path, or
    ``-`` for ``stream``/stdout). ``npy`` needs the final ``shape`` (rows, width)."""
    kind = SINKS[infer_format(target, fmt)]
    if os.fspath(target) == "-" and not kind.stdout:
        raise UsageError(f"the {kind.name} format cannot be written to stdout; give a file")
    if kind.name == "npy" and shape is None:
        raise UsageError("the npy format needs the array shape in advance")
    return kind.open(target, dtype=dtype, shape=shape, stream=stream, overwrite=overwrite,
                     **options)
