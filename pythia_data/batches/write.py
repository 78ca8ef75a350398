"""Writing the batches of an iteration range to any registered output format, streaming."""

from __future__ import annotations

import os

import numpy as np

from pythia_data.batches.sinks import SINKS, infer_format, open_sink
from pythia_data.dataset.reader import IndexedDataset
from pythia_data.order.reader import BatchReader
from pythia_data.progress import task

__all__ = ["batches", "iteration_batch", "write_batches"]


def _file_segments(ds, byte_start: int, nbytes: int) -> list[tuple[str, int, int]] | None:
    """The logical byte range ``[byte_start, byte_start + nbytes)`` of ``ds``'s data as
    ``(file, offset, nbytes)`` pieces (shards are plain byte slices of the logical file);
    None when the files on disk do not add up to the dataset (then read through ds)."""
    paths = [os.fspath(p) for p in getattr(ds, "bin_paths", [])]
    try:
        lengths = [os.path.getsize(p) for p in paths]
    except OSError:
        return None
    if not paths or sum(lengths) != getattr(ds, "bin_bytes", -1):
        return None
    pieces, origin, pos, stop = [], 0, byte_start, byte_start + nbytes
    for path, length in zip(paths, lengths, strict=True):
        if pos < stop and pos < origin + length:
            n = min(stop, origin + length) - pos
            pieces.append((path, pos - origin, n))
            pos += n
        origin += length
    return pieces if pos == stop else None


def _copy_segments(sink, segments, row_bytes: int, update) -> None:
    """Copy file pieces into a byte sink inside the kernel (no buffer, no mapping)."""
    done_rows = 0
    copied = 0
    for path, offset, n in segments:
        with open(path, "rb") as f:
            base = copied
            for done in sink.copy_from(f.fileno(), offset, n):
                copied = base + done
                if update is not None:
                    rows = copied // row_bytes
                    update(rows - done_rows)
                    done_rows = rows


def iteration_batch(ds, order, iteration: int, **kwargs) -> np.ndarray:
    """The batch of one iteration: ``BatchReader(ds, order, **kwargs)[iteration]``
    (what ``TrainingOrder[k]`` returns)."""
    return BatchReader(ds, order, **kwargs)[iteration]


def batches(ds, order=None, start: int = 0, end: int | None = None, **kwargs):
    """Yield one ``(rows, width)`` array per iteration ``start..end`` (inclusive; default to
    the last iteration). ``ds`` may be a path; ``kwargs`` go to :class:`BatchReader`."""
    if isinstance(ds, (str, os.PathLike)):
        ds = IndexedDataset(ds)
    reader = BatchReader(ds, order, **kwargs)
    if end is None:
        end = reader.num_iterations - 1
    yield from reader.iter_batches(start, end)


def write_batches(
    reader: BatchReader,
    start: int,
    end: int,
    target,
    fmt: str | None = None,
    *,
    stream=None,
    progress=None,
    overwrite: bool = True,
    **options,
) -> dict:
    """Write iterations ``start..end`` (inclusive) of ``reader`` to ``target`` (a path, or
    ``-`` for ``stream``/stdout) in ``fmt`` (a registered format; default from the suffix).
    ``progress`` is a progress factory (:mod:`pythia_data.progress`); ``options`` go to the
    sink (e.g. ``decode=`` for ``text``/``jsonl``/``parquet``, ``steps_per_file=`` for
    ``parquet``; an option the format does not take is a UsageError); sinks also get
    ``iterations=(start, end)``.

    Streams chunk by chunk; a file output appears only when complete. Returns a summary
    (``files``: what was written, e.g. ``OUT.bin`` and ``OUT.idx`` for the bin format).
    """
    rows, width = reader.shape(start, end)
    fmt = infer_format(target, fmt)
    kind = SINKS[fmt]
    segments = None
    if kind.byte_copy:
        span = reader.contiguous_bytes(start, end)
        if span is not None:
            segments = _file_segments(reader.ds, *span)
    with task(progress, "batches", rows, "seq") as update:
        with open_sink(fmt, target, dtype=reader.dtype, shape=(rows, width), stream=stream,
                       overwrite=overwrite, iterations=(int(start), int(end)),
                       **options) as sink:
            if segments is not None:
                _copy_segments(sink, segments, width * reader.itemsize, update)
            else:
                for chunk in reader.iter_chunks(start, end):
                    sink.write(chunk.tokens, chunk.columns() if kind.columns else None)
                    if update is not None:
                        update(len(chunk.samples))
    return {
        "output": os.fspath(target),
        "files": list(sink.outputs),
        "format": fmt,
        "order": reader.kind,
        "start_iteration": int(start),
        "end_iteration": int(end),
        "batch_size": reader.batch_size,
        "seq_length": reader.seq_length,
        "rank": reader.rank,
        "world_size": reader.world_size,
        "window": [reader.window.start, reader.window.length],
        "rows": int(rows),
        "width": int(width),
        "dtype": reader.dtype.name,
        "tokens": int(rows) * int(width),
    }
