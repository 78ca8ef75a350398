"""Training batches: iteration ranges -> samples -> token rows (windows, rank slices).

Iteration ``k`` of a run with global batch ``B`` is samples ``k*B .. (k+1)*B - 1``
(DESIGN.md §4.7); data-parallel rank ``r`` of ``W`` sees the slice
``[r*B//W, (r+1)*B//W)`` of each batch. A sample is ``seq_length + 1`` tokens:

* **neox** order: sample ``i`` is ``shuffle_idx[i] = j`` -> ``sample_idx[j] .. sample_idx[j+1]``
  (end offset inclusive) over the shuffled documents ``doc_idx``; it crosses one or more
  documents. A numba kernel (:mod:`pythia_data.kernels.spans`) turns a chunk of samples into
  spans of the token stream, and one ``IndexedDataset.gather`` call reads them in order.
* **preshuffled**: the dataset already is the training order, every sequence has
  ``seq_length + 1`` tokens, and sample ``s`` is sequence ``s`` (Pythia's preshuffled Pile).

:class:`BatchReader` is the one code path: ``reader[k]`` (one iteration), ``iter_batches``
(an array per iteration), ``iter_chunks`` (bounded chunks into a reused buffer, what the
sinks consume) and :func:`write_batches` (chunks -> a sink, streaming).
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pythia_data.errors import FormatError, UsageError
from pythia_data.kernels.spans import sample_spans
from pythia_data.sinks import infer_format, open_sink

__all__ = [
    "PYTHIA_BATCH_SIZE",
    "PYTHIA_SEQ_LENGTH",
    "BatchReader",
    "Chunk",
    "Window",
    "batches",
    "detect_order",
    "iteration_batch",
    "is_preshuffled",
    "write_batches",
]

PYTHIA_BATCH_SIZE = 1024
PYTHIA_SEQ_LENGTH = 2048
DEFAULT_CHUNK_TOKENS = 1 << 20  # 1M tokens per read (2 MB of uint16): stays in cache
VIEW_CHUNK_TOKENS = 1 << 24  # zero-copy reads of a preshuffled file: no buffer, bigger writes
ORDERS = ("auto", "preshuffled", "neox")


@dataclass(frozen=True)
class Window:
    """Tokens ``[start, start + length)`` of each sequence."""

    start: int
    length: int

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"START:LENGTH"`` (e.g. ``0:32`` prompts, ``32:32`` continuations)."""
        match = re.fullmatch(r"\s*(-?\d+)\s*:\s*(-?\d+)\s*", str(text))
        if not match:
            raise UsageError(f"window must be START:LENGTH (e.g. 0:32), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def check(self, sample_len: int) -> None:
        if self.start < 0 or self.length < 1 or self.start + self.length > sample_len:
            raise UsageError(
                f"window {self.start}:{self.length} is outside a sequence of {sample_len} tokens "
                f"(need 0 <= START and 1 <= LENGTH and START + LENGTH <= {sample_len})"
            )


@dataclass
class Chunk:
    """Consecutive output rows ``[row_start, row_start + len(samples))``.

    ``tokens`` is ``(rows, width)`` in the dataset's dtype; from :meth:`BatchReader.iter_chunks`
    it may be a reused buffer or a read-only view of the data file, valid until the next chunk.
    """

    row_start: int
    iterations: np.ndarray
    index_in_batch: np.ndarray
    samples: np.ndarray
    tokens: np.ndarray

    def columns(self) -> dict[str, np.ndarray]:
        return {
            "iteration": self.iterations,
            "index_in_batch": self.index_in_batch,
            "sample": self.samples,
        }


def _as_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    return int(value)


def is_preshuffled(ds, seq_length: int, chunk: int = 1 << 24) -> bool:
    """True when every sequence of ``ds`` has ``seq_length + 1`` tokens (checked in chunks)."""
    sizes = ds.sizes
    if len(sizes) == 0:
        return False
    target = int(seq_length) + 1
    for lo in range(0, len(sizes), chunk):
        if not np.all(sizes[lo : lo + chunk] == target):
            return False
    return True


def detect_order(ds, seq_length: int) -> str:
    """``"preshuffled"`` if every sequence has ``seq_length + 1`` tokens, else ``"neox"``."""
    return "preshuffled" if is_preshuffled(ds, seq_length) else "neox"


class BatchReader:
    """Batches of one training run over ``ds``.

    ``order`` is a training order (anything with ``doc_idx``, ``sample_idx`` and
    ``shuffle_idx``, such as :class:`pythia_data.order.TrainingOrder`; its ``params``
    supply the defaults) or None for a preshuffled dataset. ``batch_size`` and
    ``seq_length`` default to the order's, else Pythia's (1024, 2048). ``window`` is a
    :class:`Window`, ``(start, length)``, ``"START:LENGTH"`` or None (whole sequences);
    ``rank``/``world_size`` select a data-parallel rank's slice of each batch.
    """

    def __init__(
        self,
        ds,
        order=None,
        batch_size: int | None = None,
        seq_length: int | None = None,
        window=None,
        rank: int = 0,
        world_size: int = 1,
        *,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    ):
        self.ds = ds
        self.order = order
        params = getattr(order, "params", None)
        if batch_size is None:
            batch_size = getattr(params, "batch_size", None) or PYTHIA_BATCH_SIZE
        if seq_length is None:
            seq_length = getattr(params, "seq_length", None) or PYTHIA_SEQ_LENGTH
        self.batch_size = _as_int("batch size", batch_size)
        self.seq_length = _as_int("sequence length", seq_length)
        if self.batch_size < 1:
            raise UsageError(f"batch size must be positive, got {self.batch_size}")
        if self.seq_length < 1:
            raise UsageError(f"sequence length must be positive, got {self.seq_length}")
        for name in ("batch_size", "seq_length"):
            theirs = getattr(params, name, None)
            if theirs is not None and int(theirs) != getattr(self, name):
                raise UsageError(
                    f"{name.replace('_', ' ')} {getattr(self, name)} differs from the order's "
                    f"{int(theirs)} (the order depends on it: rebuild it)"
                )
        self.sample_len = self.seq_length + 1

        if window is None:
            window = Window(0, self.sample_len)
        elif isinstance(window, str):
            window = Window.parse(window)
        elif not isinstance(window, Window):
            start, length = window
            window = Window(_as_int("window start", start), _as_int("window length", length))
        window.check(self.sample_len)
        self.window = window

        self.rank = _as_int("rank", rank)
        self.world_size = _as_int("world size", world_size)
        if self.world_size < 1:
            raise UsageError(f"world size must be positive, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise UsageError(
                f"rank {self.rank} is outside 0..{self.world_size - 1} (world size {self.world_size})"
            )
        if self.world_size > self.batch_size:
            raise UsageError(
                f"world size {self.world_size} is larger than the batch size {self.batch_size}"
            )
        self.slice_start = self.rank * self.batch_size // self.world_size
        self.slice_stop = (self.rank + 1) * self.batch_size // self.world_size
        self.rows_per_iteration = self.slice_stop - self.slice_start
        self.chunk_rows = max(1, int(chunk_tokens) // self.window.length)

        self.itemsize = ds.dtype.itemsize
        if order is None:
            self.kind = "preshuffled"
            self.num_samples = len(ds)
            self.num_iterations = self.num_samples // self.batch_size
        else:
            self.kind = "neox"
            for name in ("doc_idx", "sample_idx", "shuffle_idx"):
                if getattr(order, name, None) is None:
                    raise UsageError(f"the training order has no {name}")
            theirs = getattr(order, "sizes", None)
            if theirs is not None and len(theirs) != len(ds):
                raise FormatError(
                    f"the training order was built for {len(theirs)} documents but the dataset "
                    f"has {len(ds)} sequences"
                )
            sample_idx = order.sample_idx
            if sample_idx.ndim != 2 or sample_idx.shape[1] != 2:
                raise FormatError(f"sample_idx must have shape (n + 1, 2), got {sample_idx.shape}")
            self.num_samples = min(len(order.shuffle_idx), len(sample_idx) - 1)
            iterations = self.num_samples // self.batch_size
            train_iters = getattr(params, "train_iters", None)
            if train_iters is not None:
                iterations = min(iterations, int(train_iters))
            self.num_iterations = iterations

    # -- shape and ranges
    @property
    def dtype(self) -> np.dtype:
        return self.ds.dtype

    @property
    def width(self) -> int:
        """Tokens per output row (the window length)."""
        return self.window.length

    def __len__(self) -> int:
        return self.num_iterations

    def check_range(self, start, end) -> tuple[int, int]:
        """Validate an inclusive iteration range; returns it as ints."""
        start = _as_int("start iteration", start)
        end = _as_int("end iteration", end)
        if start < 0 or end < 0:
            raise UsageError(f"iterations must be >= 0, got {start}..{end}")
        if start > end:
            raise UsageError(f"start iteration {start} is after end iteration {end}")
        if end >= self.num_iterations:
            last = self.num_iterations - 1
            have = f"0..{last}" if last >= 0 else "none"
            raise UsageError(
                f"iteration {end} is past the end: this {self.kind} order has "
                f"{self.num_iterations} iterations of {self.batch_size} (iterations {have})"
            )
        return start, end

    def shape(self, start: int, end: int) -> tuple[int, int]:
        """``(rows, width)`` of iterations ``start..end`` inclusive."""
        start, end = self.check_range(start, end)
        return ((end - start + 1) * self.rows_per_iteration, self.width)

    def samples(self, start: int, end: int, row_lo: int = 0, row_hi: int | None = None):
        """(iterations, index_in_batch, sample ids) of output rows ``[row_lo, row_hi)``."""
        per = self.rows_per_iteration
        if row_hi is None:
            row_hi = (end - start + 1) * per
        rows = np.arange(row_lo, row_hi, dtype=np.int64)
        iterations = start + rows // per
        index = self.slice_start + rows % per
        return iterations, index, iterations * self.batch_size + index

    # -- reading
    def _preshuffled_spans(self, samples: np.ndarray):
        if samples.size and int(samples.max()) >= len(self.ds):
            raise UsageError(f"sample {int(samples.max())} is past the end of the dataset")
        sizes = self.ds.sizes[samples]
        bad = np.flatnonzero(sizes != self.sample_len)
        if bad.size:
            s = int(samples[bad[0]])
            raise FormatError(
                f"sequence {s} has {int(sizes[bad[0]])} tokens, not seq_length + 1 = "
                f"{self.sample_len}: not a preshuffled dataset for this sequence length "
                "(use the neox order)"
            )
        starts = self.ds.pointers[samples] // self.itemsize + self.window.start
        return starts, np.full(samples.shape[0], self.window.length, dtype=np.int64)

    def _neox_spans(self, samples: np.ndarray):
        order = self.order
        j = np.asarray(order.shuffle_idx[samples], dtype=np.int64)
        n_rows = len(order.sample_idx)
        if j.size and (int(j.min()) < 0 or int(j.max()) + 1 >= n_rows):
            raise FormatError("shuffle_idx points outside sample_idx: the order is inconsistent")
        first = np.asarray(order.sample_idx[j])
        last = np.asarray(order.sample_idx[j + 1])
        return sample_spans(
            first[:, 0],
            first[:, 1],
            last[:, 0],
            last[:, 1],
            order.doc_idx,
            self.ds.pointers,
            self.ds.sizes,
            self.sample_len,
            self.window.start,
            self.window.length,
            itemsize=self.itemsize,
        )

    def _views_possible(self) -> bool:
        """Preshuffled, whole sequences, one rank: consecutive rows are consecutive bytes
        (when the file stores sequences back to back, which read_samples checks)."""
        return (
            self.kind == "preshuffled"
            and self.window.length == self.sample_len
            and self.world_size == 1
        )

    def contiguous_bytes(self, start: int, end: int) -> tuple[int, int] | None:
        """``(byte_start, nbytes)`` when the rows of iterations ``start..end`` are one
        contiguous byte range of the data file (preshuffled, whole sequences stored back to
        back, one rank), else None. Checked in bounded chunks of the index."""
        start, end = self.check_range(start, end)
        if not self._views_possible():
            return None
        lo, hi = start * self.batch_size, (end + 1) * self.batch_size
        row_bytes = self.sample_len * self.itemsize
        sizes, pointers = self.ds.sizes, self.ds.pointers
        step = 1 << 20
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            if np.any(sizes[a:b] != self.sample_len):
                return None  # the regular path names the offending sequence
            if np.any(np.diff(pointers[a : min(b + 1, hi)]) != row_bytes):
                return None
        return int(pointers[lo]), (hi - lo) * row_bytes

    def read_samples(self, samples, out: np.ndarray | None = None, *, allow_view: bool = False):
        """Token rows of the given sample ids, ``(n, width)``.

        Written into ``out`` (a C-contiguous buffer of this dtype with at least ``n * width``
        items) when given; with ``allow_view`` a contiguous preshuffled read may instead
        return a read-only view of the data file (no copy).
        """
        samples = np.asarray(samples, dtype=np.int64).reshape(-1)
        if samples.size and (int(samples.min()) < 0 or int(samples.max()) >= self.num_samples):
            raise UsageError(f"sample ids must be in 0..{self.num_samples - 1}")
        n, width = samples.shape[0], self.width
        if self.kind == "preshuffled":
            starts, lengths = self._preshuffled_spans(samples)
            if allow_view and n and width == self.sample_len and np.all(np.diff(starts) == width):
                return self.ds.read_tokens(int(starts[0]), n * width).reshape(n, width)
        else:
            starts, lengths = self._neox_spans(samples)
        if out is None:
            flat = np.empty(n * width, dtype=self.dtype)
        else:
            if out.dtype != self.dtype or not out.flags.c_contiguous or out.size < n * width:
                raise UsageError(f"out must be a contiguous {self.dtype} buffer of >= {n * width}")
            flat = out.reshape(-1)[: n * width]
        self.ds.gather(starts, lengths, out=flat)
        return flat.reshape(n, width)

    def __getitem__(self, iteration) -> np.ndarray:
        """The batch of one iteration (this rank's slice, windowed): ``(rows, width)``."""
        k = _as_int("iteration", iteration)
        if k < 0:
            k += self.num_iterations
        k, _ = self.check_range(k, k)
        return self.read_samples(self.samples(k, k)[2])

    def iter_batches(self, start: int, end: int) -> Iterator[np.ndarray]:
        """One fresh ``(rows, width)`` array per iteration ``start..end`` (inclusive)."""
        start, end = self.check_range(start, end)
        for k in range(start, end + 1):
            yield self.read_samples(self.samples(k, k)[2])

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.num_iterations:
            yield from self.iter_batches(0, self.num_iterations - 1)

    def iter_chunks(
        self, start: int, end: int, *, allow_view: bool = True, prefetch: bool = True
    ) -> Iterator[Chunk]:
        """Bounded chunks of the rows of iterations ``start..end`` (inclusive), in order.

        Memory stays at two chunks (``chunk_tokens`` each) whatever the range. The tokens
        of a chunk live in a reused buffer (or a read-only file view) that is valid until
        the next chunk is requested. With ``prefetch``, a helper thread reads the next chunk
        while the caller consumes this one (the kernels and file writes release the GIL).
        """
        start, end = self.check_range(start, end)
        total = (end - start + 1) * self.rows_per_iteration
        step = self.chunk_rows
        if allow_view and self._views_possible():
            # every chunk is one contiguous slice of the file: no copy, no buffer to fill
            step = max(step, VIEW_CHUNK_TOKENS // self.width)
            prefetch = False
        bounds = [(lo, min(lo + step, total)) for lo in range(0, total, step)]
        size = min(step, total) * self.width
        count = 0 if allow_view and self._views_possible() else (2 if prefetch else 1)
        buffers = [np.empty(size, dtype=self.dtype) for _ in range(count)] or [None]

        def read(k: int) -> Chunk:
            lo, hi = bounds[k]
            iterations, index, samples = self.samples(start, end, lo, hi)
            buf = buffers[k % len(buffers)]
            tokens = self.read_samples(samples, buf, allow_view=allow_view)
            return Chunk(lo, iterations, index, samples, tokens)

        if not prefetch or len(bounds) < 2:
            for k in range(len(bounds)):
                chunk = read(k)
                try:
                    yield chunk
                finally:
                    if buffers[0] is None and chunk.tokens.base is not None:
                        _release_file_pages(chunk.tokens)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches") as pool:
            pending = pool.submit(read, 0)
            try:
                for k in range(len(bounds)):
                    chunk = pending.result()
                    # the caller is done with buffer (k + 1) % 2 once it asks for chunk k
                    pending = pool.submit(read, k + 1) if k + 1 < len(bounds) else None
                    yield chunk
            finally:
                if pending is not None:
                    pending.cancel()


def _release_file_pages(view: np.ndarray) -> None:
    """Drop the page-table entries of a consumed, read-only view of a memory-mapped file.

    The pages stay in the page cache (a later read maps them again), but they no longer
    count in this process's RSS, so streaming a long preshuffled range keeps a flat
    footprint. Does nothing unless ``view`` is backed by an ``mmap.mmap`` (a copy is left
    alone).
    """
    owner = view
    while owner is not None and not isinstance(owner, mmap.mmap):
        owner = owner.obj if isinstance(owner, memoryview) else getattr(owner, "base", None)
    if owner is None or not hasattr(owner, "madvise") or view.nbytes == 0:
        return
    try:
        origin = np.frombuffer(owner, dtype=np.uint8, count=1).ctypes.data
        offset = view.ctypes.data - origin
        page = mmap.PAGESIZE
        start = offset - offset % page
        stop = min(offset + view.nbytes, len(owner))
        if 0 <= start < stop:
            owner.madvise(mmap.MADV_DONTNEED, start, stop - start)
    except (OSError, ValueError):  # closed map, odd platform: only an optimisation
        pass


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


def _copy_segments(sink, segments, row_bytes: int, bar) -> None:
    """Copy file pieces into a byte sink inside the kernel (no buffer, no mapping)."""
    done_rows = 0
    copied = 0
    for path, offset, n in segments:
        with open(path, "rb") as f:
            base = copied
            for done in sink.copy_from(f.fileno(), offset, n):
                copied = base + done
                if bar is not None:
                    rows = copied // row_bytes
                    bar.update(rows - done_rows)
                    done_rows = rows


def iteration_batch(ds, order, iteration: int, **kwargs) -> np.ndarray:
    """The batch of one iteration: ``BatchReader(ds, order, **kwargs)[iteration]``
    (what ``TrainingOrder[k]`` returns)."""
    return BatchReader(ds, order, **kwargs)[iteration]


def batches(ds, order=None, start: int = 0, end: int | None = None, **kwargs):
    """Yield one ``(rows, width)`` array per iteration ``start..end`` (inclusive; default to
    the last iteration). ``ds`` may be a path; ``kwargs`` go to :class:`BatchReader`."""
    if isinstance(ds, (str, os.PathLike)):
        from pythia_data.indexed import IndexedDataset

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
    progress: bool = False,
) -> dict:
    """Write iterations ``start..end`` (inclusive) of ``reader`` to ``target`` (a path, or
    ``-`` for ``stream``/stdout) in ``fmt`` (npy, bin, jsonl, raw; default from the suffix).

    Streams chunk by chunk; a file output appears only when complete. Returns a summary.
    """
    rows, width = reader.shape(start, end)
    fmt = infer_format(target, fmt)
    segments = None
    if fmt in ("npy", "raw"):
        span = reader.contiguous_bytes(start, end)
        if span is not None:
            segments = _file_segments(reader.ds, *span)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=rows, unit="seq", desc="batches", leave=False)
    try:
        with open_sink(fmt, target, dtype=reader.dtype, shape=(rows, width), stream=stream) as sink:
            if segments is not None:
                _copy_segments(sink, segments, width * reader.itemsize, bar)
            else:
                for chunk in reader.iter_chunks(start, end):
                    sink.write(chunk.tokens, chunk.columns() if fmt == "jsonl" else None)
                    if bar is not None:
                        bar.update(len(chunk.samples))
    finally:
        if bar is not None:
            bar.close()
    return {
        "output": os.fspath(target),
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
