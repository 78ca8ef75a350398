"""Reading the batches of a training run over any order kind: iteration ranges -> samples
-> token rows (windows, data-parallel rank slices), in bounded chunks.

Iteration ``k`` of a run with global batch ``B`` is samples ``k*B .. (k+1)*B - 1``; data-
parallel rank ``r`` of ``W`` sees the slice ``[r*B//W, (r+1)*B//W)`` of each batch. A
sample is ``seq_length + 1`` tokens; the order kind (:mod:`pythia_data.order.registry`)
turns sample ids into spans of the dataset's token stream, and one
``IndexedDataset.gather`` call reads a whole chunk of them in order.

:class:`BatchReader` is the one code path: ``reader[k]`` (one iteration), ``iter_batches``
(an array per iteration), ``iter_chunks`` (bounded chunks into a reused buffer, what the
sinks of :mod:`pythia_data.batches` consume). It lives in the order layer so that
``TrainingOrder[k]`` can use it without an upward import.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pythia_data.errors import UsageError
from pythia_data.order.base import as_int
from pythia_data.order.mappings import as_order
from pythia_data.order.params import PYTHIA_BATCH_SIZE, PYTHIA_SEQ_LENGTH, OrderParams
from pythia_data.order.preshuffled import PreshuffledOrder

DEFAULT_CHUNK_TOKENS = 1 << 20  # 1M tokens per read (2 MB of uint16): stays in cache
VIEW_CHUNK_TOKENS = 1 << 24  # zero-copy reads of a preshuffled file: no buffer, bigger writes

__all__ = ["BatchReader", "Chunk", "Window"]


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


class BatchReader:
    """Batches of one training run over ``ds``.

    ``order`` is an order kind (:class:`pythia_data.order.base.Order`: a
    :class:`~pythia_data.order.TrainingOrder`, a :class:`~pythia_data.order.PreshuffledOrder`;
    its ``params`` supply the defaults) or None for a preshuffled dataset. ``batch_size`` and
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
        self.batch_size = as_int("batch size", batch_size)
        self.seq_length = as_int("sequence length", seq_length)
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
            window = Window(as_int("window start", start), as_int("window length", length))
        window.check(self.sample_len)
        self.window = window

        self.rank = as_int("rank", rank)
        self.world_size = as_int("world size", world_size)
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
            order = PreshuffledOrder(OrderParams(batch_size=self.batch_size,
                                                 seq_length=self.seq_length))
            self.order = order
        order = self.order = as_order(order)
        order.check_dataset(ds)
        self.kind = order.kind
        self.num_samples = order.num_samples(ds)
        iterations = self.num_samples // self.batch_size
        if order.cap_iterations:
            iterations = min(iterations, int(order.params.train_iters))
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
        start = as_int("start iteration", start)
        end = as_int("end iteration", end)
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
    def _views_possible(self) -> bool:
        """Preshuffled, whole sequences, one rank: consecutive rows are consecutive bytes
        (when the file stores sequences back to back, which read_samples checks)."""
        return (
            self.order.samples_are_sequences
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
        starts, lengths = self.order.sample_spans(self.ds, samples, self.window.start,
                                                  self.window.length)
        if (allow_view and n and self.order.samples_are_sequences and width == self.sample_len
                and np.all(np.diff(starts) == width)):
            return self.ds.read_tokens(int(starts[0]), n * width).reshape(n, width)
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
        k = as_int("iteration", iteration)
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
                        release_file_pages(chunk.tokens)
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


def release_file_pages(view: np.ndarray) -> None:
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
