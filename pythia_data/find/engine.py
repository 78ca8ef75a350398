"""``find``: where in training (iteration, position in the batch, offset in the row) the
model saw each occurrence of some token sequences.

1. **Scan** the dataset's token stream (the ``.bin``, or its shards in place) in parallel
   chunks of ``chunk_tokens`` tokens, each read with ``max_len - 1`` tokens of overlap on
   both sides, for all queries at once (:mod:`pythia_data.kernels.find`). A match must lie
   inside one document (sequence). At each document end the scan notes the query prefixes
   the document ends with (tails).
2. **Map** each match to training rows.

   * neox order: the samples are cut from the stream of documents in ``doc_idx`` order;
     row ``j`` of ``sample_idx`` is stream tokens ``[j L, j L + L]`` (L = seq_length, rows
     overlap by one token). A match in document ``d`` at offset ``o`` occurs once per
     position ``p`` of ``d`` in ``doc_idx`` (once per epoch), at stream offset
     ``start(p) + o``. A tail of ``d`` is completed by reading the documents that follow
     ``p`` in ``doc_idx``: those are the matches that span documents. The stream offset
     gives the row(s); the inverse of ``shuffle_idx`` gives the sample, hence iteration
     ``sample // batch`` and ``index_in_batch = sample % batch``. The inverse arrays are
     built once and cached beside the order (:mod:`.inverse`).
   * preshuffled: sequence ``s`` is sample ``s``; a match in it is at offset ``o`` of that
     row. Neighbouring sequences are unrelated samples, so nothing spans them.

   A match that no single row holds (it crosses the end of a row) is reported once for
   each row that holds a part of it, with the part (``part``: query tokens [a, b)).
3. **Sort** by (iteration, index_in_batch, offset, query), keep the first ``limit``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pythia_data.dataset import IndexedDataset
from pythia_data.errors import FormatError, UsageError
from pythia_data.find.inverse import OrderInverse
from pythia_data.find.queries import Query, check_ids
from pythia_data.kernels import find as KF
from pythia_data.order import BatchReader, OrderParams, resolve_order
from pythia_data.order.mappings import IndexMappings, as_order
from pythia_data.order.preshuffled import is_preshuffled

__all__ = ["Hit", "HitArrays", "Finder", "find", "DEFAULT_MAX_HITS"]

DEFAULT_CHUNK_TOKENS = 1 << 23  # 16 MB of uint16 per scan task
DEFAULT_MAX_HITS = 20_000_000  # without a limit, more hits than this is an error


@dataclass(frozen=True)
class Hit:
    """One occurrence of a query in one training row.

    ``offset`` is where the match (or its part) starts in the row of ``seq_length + 1``
    tokens; ``document``/``doc_offset`` where the match starts in the dataset (sequence
    index, token offset). ``part`` is None when the row holds the whole match, else the
    query tokens ``[a, b)`` this row holds (the match straddles two or more rows).
    ``trained``: the iteration is below the run's last (``include_untrained`` shows the
    samples past it, which the model never saw)."""

    iteration: int
    index_in_batch: int
    offset: int
    document: int
    doc_offset: int
    query: str
    query_index: int
    variant: str
    sample: int
    length: int
    query_length: int
    part: tuple[int, int] | None = None
    trained: bool = True

    def to_dict(self) -> dict:
        d = {
            "iteration": self.iteration,
            "index_in_batch": self.index_in_batch,
            "offset": self.offset,
            "document": self.document,
            "doc_offset": self.doc_offset,
            "query": self.query,
            "query_index": self.query_index,
            "variant": self.variant,
            "sample": self.sample,
            "length": self.length,
            "query_length": self.query_length,
            "part": list(self.part) if self.part is not None else None,
        }
        if not self.trained:
            d["trained"] = False
        return d


@dataclass
class HitArrays:
    """Hits as columns (int64 arrays of equal length); ``query`` indexes ``Finder.queries``."""

    sample: np.ndarray
    offset: np.ndarray
    query: np.ndarray
    document: np.ndarray
    doc_offset: np.ndarray
    part_lo: np.ndarray
    part_hi: np.ndarray

    FIELDS = ("sample", "offset", "query", "document", "doc_offset", "part_lo", "part_hi")

    def __len__(self) -> int:
        return int(self.sample.shape[0])

    @classmethod
    def empty(cls) -> HitArrays:
        return cls(*(np.zeros(0, dtype=np.int64) for _ in cls.FIELDS))

    @classmethod
    def concat(cls, parts: list[HitArrays]) -> HitArrays:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.FIELDS))

    def take(self, idx) -> HitArrays:
        return HitArrays(*(getattr(self, f)[idx] for f in self.FIELDS))

    def sorted(self) -> HitArrays:
        order = np.lexsort((self.part_lo, self.query, self.offset, self.sample))
        return self.take(order)


class Finder:
    """Queries over one dataset and one order, ready to scan.

    ``order``: an order kind name (``auto``, ``neox``, ``preshuffled``) resolved with
    ``params`` / ``index_dir``, or an order object (a :class:`TrainingOrder`, a
    :class:`PreshuffledOrder`)."""

    def __init__(self, ds: IndexedDataset, queries: list[Query], order="auto",
                 params: OrderParams | None = None, *, index_dir=None, progress=None,
                 include_untrained: bool = False, workers: int | None = None,
                 chunk_tokens: int = DEFAULT_CHUNK_TOKENS):
        if not queries:
            raise UsageError("no queries to find")
        for q in queries:
            check_ids(q.tokens, ds.dtype, where=f" (query {q.label[:40]!r})")
        self.ds = ds
        self.queries = list(queries)
        self.progress = progress
        if isinstance(order, str):
            order = resolve_order(ds, order, params or OrderParams(), index_dir=index_dir,
                                  progress=progress)
        self.order = order
        self.notes = list(as_order(order).report.notes)  # e.g. where the cache went
        self.reader = BatchReader(ds, order)
        self.batch_size = self.reader.batch_size
        self.seq_length = self.reader.seq_length
        self.num_iterations = self.reader.num_iterations
        self.include_untrained = bool(include_untrained)
        self.workers = max(1, int(workers or min(os.cpu_count() or 1, 8)))
        self.chunk_tokens = max(1, int(chunk_tokens))
        if isinstance(order, IndexMappings):
            self.kind = "neox"
            self.inverse = None  # built on first use
        elif getattr(order, "samples_are_sequences", False):
            self.kind = "preshuffled"
            if not is_preshuffled(ds, self.seq_length):
                raise FormatError(
                    f"not every sequence of {ds.prefix} has seq_length + 1 = "
                    f"{self.seq_length + 1} tokens: not a preshuffled dataset for this "
                    "sequence length (use the neox order)")
        else:
            raise UsageError(f"find works with the neox and preshuffled orders, not "
                             f"{getattr(order, 'kind', type(order).__name__)!r}")
        self._canonical = bool(ds.is_canonical) and (len(ds) == 0 or int(ds.pointers[0]) == 0)
        self._vstarts_all = None if self._canonical else self._virtual_starts()
        token_lists = [np.array(q.tokens, dtype=np.int64) for q in queries]
        # the anchors (from a sample of token counts) serve one query, or queries of one or
        # two tokens; more queries of 3+ tokens take the sampled-pair pass, which needs none
        # (without counts each query's anchor is its first token: one token for all of
        # them would mean the anchor pass, so then sample)
        sampled_pairs = (min(map(len, token_lists)) >= 3
                         and len({int(t[0]) for t in token_lists}) > 1)
        self.tables = KF.QueryTables(token_lists, tails=self.kind == "neox",
                                     counts=None if sampled_pairs else self._sample_counts())
        self.lengths = self.tables.lengths
        # trained samples: the whole iterations of the run (as `batches` reads them)
        if self.include_untrained:
            self.sample_limit = self.reader.num_samples
        else:
            self.sample_limit = self.num_iterations * self.batch_size

    # ---------------------------------------------------------------- the stream
    def _sample_counts(self, windows: int = 64, width: int = 1 << 14) -> np.ndarray:
        """Token counts in a sample of the stream (all of it when small): they pick each
        query's anchor, its rarest token (:mod:`pythia_data.kernels.find`)."""
        n = self.num_tokens
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if n <= windows * width:
            spans = [(0, n)]
        else:
            step = n // windows
            spans = [(k * step, k * step + width) for k in range(windows)]
        counts = np.zeros(1, dtype=np.int64)
        files = self._open_files() if self._canonical and len(spans) > 1 else []
        try:
            for a, b in spans:
                tokens = self._pread(files, a, b) if files else self._read(a, b)
                counts = self._add_counts(counts, tokens)
        finally:
            for fd, _a, _b in files:
                os.close(fd)
        return counts

    @staticmethod
    def _add_counts(counts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        c = np.bincount(tokens.astype(np.int64, copy=False))
        if c.shape[0] > counts.shape[0]:
            c[: counts.shape[0]] += counts
            return c
        counts[: c.shape[0]] += c
        return counts

    def _pread(self, files, a: int, b: int) -> np.ndarray:
        """Stream tokens [a, b) of canonical data with read calls. (For the few small
        windows of the anchor sample: a page fault in the memory map makes the kernel read
        megabytes around it -- ~0.5 GB for the 64 windows of a 2 GB file from a cold cache,
        0.33 s before the scan starts -- where a small read starts a small read-ahead.)"""
        item = self.ds.dtype.itemsize
        x, y = a * item, b * item
        parts = []
        for fd, start, end in files:
            lo, hi = max(x, start), min(y, end)
            while lo < hi:
                got = os.pread(fd, hi - lo, lo - start)
                if not got:
                    raise FormatError(f"{self.ds.prefix}: a data file is shorter than it was")
                parts.append(got)
                lo += len(got)
        data = b"".join(parts)
        if len(data) != y - x:
            raise FormatError(f"{self.ds.prefix}: a data file is shorter than it was")
        return np.frombuffer(data, dtype=self.ds.dtype)

    def _virtual_starts(self) -> np.ndarray:
        out = np.zeros(len(self.ds) + 1, dtype=np.int64)
        np.cumsum(self.ds.sizes, out=out[1:])
        return out

    @property
    def num_tokens(self) -> int:
        if self._canonical:
            return self.ds.num_tokens
        return int(self._vstarts_all[-1])

    def _docs_in(self, lo: int, hi: int):
        """(first doc, vstarts, vends) of the documents overlapping [lo, hi)."""
        ds = self.ds
        if self._canonical:
            item = ds.dtype.itemsize
            k0 = max(int(np.searchsorted(ds.pointers, lo * item, side="right")) - 1, 0)
            k1 = int(np.searchsorted(ds.pointers, hi * item, side="left"))
            vstarts = np.asarray(ds.pointers[k0:k1]) // item
        else:
            k0 = max(int(np.searchsorted(self._vstarts_all[:-1], lo, side="right")) - 1, 0)
            k1 = int(np.searchsorted(self._vstarts_all[:-1], hi, side="left"))
            vstarts = self._vstarts_all[k0:k1]
        vends = vstarts + np.asarray(ds.sizes[k0:k1], dtype=np.int64)
        return k0, vstarts, vends

    def _read(self, a: int, b: int) -> np.ndarray:
        """Stream tokens [a, b)."""
        if self._canonical:
            return self.ds.read_tokens(a, b - a)
        k0, vstarts, vends = self._docs_in(a, b)
        lo = np.maximum(vstarts, a)
        hi = np.minimum(vends, b)
        keep = hi > lo
        starts = self.ds.pointers[k0:k0 + len(vstarts)] // self.ds.dtype.itemsize
        return self.ds.gather((starts + (lo - vstarts))[keep], (hi - lo)[keep])

    def _scan_chunk(self, lo: int, hi: int):
        n = self.num_tokens
        a = max(0, lo - max(self.tables.max_tail, 1))
        b = min(n, hi + self.tables.max_len - 1)
        buf = self._read(a, b)
        k0, vstarts, vends = self._docs_in(lo, hi)
        return KF.scan(self.tables, buf, a, lo, hi, vstarts, vends, k0)

    def scan_bounds(self) -> list[tuple[int, int]]:
        """The stream ranges ``[lo, hi)`` scanned as one task each."""
        n, step = self.num_tokens, self.chunk_tokens
        return [(lo, min(lo + step, n)) for lo in range(0, n, step)]

    def _open_files(self) -> list:
        """(fd, first byte, end byte) of each data file, to ask the kernel to read ahead."""
        out, at = [], 0
        for path in self.ds.bin_paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            size = os.fstat(fd).st_size
            out.append((fd, at, at + size))
            at += size
        if at != self.ds.bin_bytes:  # a file changed or went missing: the memory map reads
            for fd, _a, _b in out:
                os.close(fd)
            return []
        return out

    def _advise(self, files, lo: int, hi: int) -> None:
        """Start reading stream tokens [lo, hi) into the page cache (POSIX_FADV_WILLNEED):
        large sequential reads now instead of page faults one by one during the scan."""
        if not self._canonical or not hasattr(os, "posix_fadvise"):
            return
        item = self.ds.dtype.itemsize
        a, b = lo * item, hi * item
        for fd, start, end in files:
            x, y = max(a, start), min(b, end)
            if x < y:
                try:
                    os.posix_fadvise(fd, x - start, y - x, os.POSIX_FADV_WILLNEED)
                except OSError:
                    pass

    def _prefetch(self, files, lo: int, hi: int) -> None:
        """Bring stream tokens [lo, hi) into memory ahead of their scan."""
        if not self._canonical:
            self._advise(files, lo, hi)
            return
        item = self.ds.dtype.itemsize
        a, b = lo * item, hi * item
        bounds = self.ds._bounds
        for k, buf in enumerate(self.ds._buffers):
            x, y = max(a, int(bounds[k])), min(b, int(bounds[k + 1]))
            if x < y:
                KF.touch_pages(buf[x - int(bounds[k]):y - int(bounds[k])])

    def scan(self) -> Iterator[tuple]:
        """Per chunk, in stream order: ``((doc, off, query), (doc, query, t))``."""
        files = self._open_files()
        try:
            yield from self._scan_all(files)
        finally:
            for fd, _a, _b in files:
                os.close(fd)

    def _scan_all(self, files) -> Iterator[tuple]:
        n = self.num_tokens
        bounds = self.scan_bounds()
        if not bounds:
            return
        item = self.ds.dtype.itemsize
        bar = self.progress("find: scan", n * item, "B") if self.progress else None
        update = bar.__enter__() if bar is not None else None
        try:
            if self.workers == 1 or len(bounds) == 1:
                for k, (lo, hi) in enumerate(bounds):
                    if k + 1 < len(bounds):
                        self._advise(files, *bounds[k + 1])
                    yield self._scan_chunk(lo, hi)
                    if update:
                        update((hi - lo) * item)
                return
            window = 2 * self.workers
            # a thread of its own reads ahead of the scan threads, in stream order: it
            # touches one byte per page of the memory map (the kernel's sequential
            # read-ahead then streams the file as fast as `cat`; two threads faulting in
            # two places at once defeat it), or asks for the range (posix_fadvise) where
            # the data is not one mapped stream
            ahead = 2 * window
            room = threading.Semaphore(ahead)
            stop = threading.Event()

            def prefetch():
                for lo, hi in bounds:
                    room.acquire()
                    if stop.is_set():
                        return
                    self._prefetch(files, lo, hi)

            fetcher = threading.Thread(target=prefetch, name="find-prefetch", daemon=True)
            fetcher.start()
            try:
                with ThreadPoolExecutor(self.workers, thread_name_prefix="find") as pool:
                    pending = [pool.submit(self._scan_chunk, lo, hi)
                               for lo, hi in bounds[:window]]
                    nxt = len(pending)
                    k = 0
                    try:
                        while k < len(bounds):
                            result = pending[k].result()
                            pending[k] = None
                            room.release()
                            if nxt < len(bounds):
                                pending.append(pool.submit(self._scan_chunk, *bounds[nxt]))
                                nxt += 1
                            lo, hi = bounds[k]
                            k += 1
                            yield result
                            if update:
                                update((hi - lo) * item)
                    finally:
                        for f in pending:
                            if f is not None:
                                f.cancel()
            finally:
                stop.set()
                room.release()
                fetcher.join()
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)

    # ---------------------------------------------------------------- mapping
    def _ensure_inverse(self) -> OrderInverse:
        if self.inverse is None:
            self.inverse = OrderInverse.for_order(self.order, progress=self.progress)
            if self.inverse.note:
                self.notes.append(self.inverse.note)
        return self.inverse

    def map_chunk(self, matches, tails) -> HitArrays:
        doc, off, q = matches
        if self.kind == "preshuffled":
            keep = doc < self.sample_limit
            doc, off, q = doc[keep], off[keep], q[keep]
            m = self.lengths[q]
            return HitArrays(doc, off, q, doc, off, np.zeros_like(doc), m)
        return self._map_neox(doc, off, q, *tails)

    def _map_neox(self, doc, off, q, tail_doc, tail_q, tail_t) -> HitArrays:
        inv = self._ensure_inverse()
        order = self.order
        epochs = inv.doc_pos.shape[1]
        # matches inside a document: once per occurrence of the document in doc_idx
        pos = np.asarray(inv.doc_pos[doc], dtype=np.int64).reshape(-1)
        o_doc = np.repeat(doc, epochs)
        o_off = np.repeat(off, epochs)
        o_q = np.repeat(q, epochs)
        # tails: completed by the documents that follow, in doc_idx order
        if tail_doc.shape[0]:
            t_pos = np.asarray(inv.doc_pos[tail_doc], dtype=np.int64).reshape(-1)
            t_doc = np.repeat(tail_doc, epochs)
            t_q = np.repeat(tail_q, epochs)
            t_t = np.repeat(tail_t, epochs)
            ok = self._complete_tails(t_pos, t_q, t_t)
            sizes = np.asarray(self.ds.sizes[t_doc[ok]], dtype=np.int64)
            pos = np.concatenate([pos, t_pos[ok]])
            o_doc = np.concatenate([o_doc, t_doc[ok]])
            o_off = np.concatenate([o_off, sizes - t_t[ok]])
            o_q = np.concatenate([o_q, t_q[ok]])
        if pos.shape[0] == 0:
            return HitArrays.empty()
        starts = inv.stream_starts(order, pos) + o_off
        lengths = self.lengths[o_q]
        occ, row, row_off, lo, hi = KF.rows_of(starts, lengths, self.seq_length,
                                               inv.row_sample.shape[0])
        sample = np.asarray(inv.row_sample[row], dtype=np.int64)
        keep = sample < self.sample_limit
        occ = occ[keep]
        lo, hi = lo[keep], hi[keep]
        full = (lo == 0) & (hi == lengths[occ])
        part_lo = np.where(full, 0, lo)
        part_hi = np.where(full, lengths[occ], hi)
        return HitArrays(sample[keep], row_off[keep], o_q[occ], o_doc[occ], o_off[occ],
                         part_lo, part_hi)

    def _complete_tails(self, pos, q, t) -> np.ndarray:
        """Which tails (at doc_idx position pos, query q, t tokens matched) the following
        documents complete."""
        need = self.lengths[q] - t
        owner, span_start, span_len, got = KF.tail_spans(
            pos, need, self.order.doc_idx, self.ds.sizes, self.ds.pointers,
            self.ds.dtype.itemsize)
        tokens = self.ds.gather(span_start, span_len).astype(np.int64)
        # what each token should be: query q, token t + (tokens of the candidate so far)
        tok_owner = np.repeat(owner, span_len)
        first = np.zeros(pos.shape[0], dtype=np.int64)
        if tok_owner.size:
            counts = np.bincount(tok_owner, minlength=pos.shape[0])
            first[1:] = np.cumsum(counts)[:-1]
            rank = np.arange(tok_owner.shape[0], dtype=np.int64) - first[tok_owner]
            want = self.tables.qtok[self.tables.qoff[q[tok_owner]] + t[tok_owner] + rank]
            bad = np.bincount(tok_owner, weights=(tokens != want), minlength=pos.shape[0])
        else:
            bad = np.zeros(pos.shape[0])
        return (got == need) & (bad == 0)

    # ---------------------------------------------------------------- results
    def hit_arrays(self) -> Iterator[HitArrays]:
        """Unsorted hits, chunk by chunk (what :meth:`collect` and the stats use)."""
        for matches, tails in self.scan():
            yield self.map_chunk(matches, tails)

    def collect(self, limit: int | None = None, max_hits: int | None = DEFAULT_MAX_HITS
                ) -> HitArrays:
        """All hits sorted by (iteration, index_in_batch, offset, query); the first
        ``limit`` only when given (memory then stays at a few times ``limit``)."""
        if limit is not None and limit < 0:
            raise UsageError(f"limit must be >= 0, got {limit}")
        parts: list[HitArrays] = []
        held = 0
        keep = None if limit is None else max(4 * int(min(limit, 1 << 40)), 1 << 20)
        for arrays in self.hit_arrays():
            if not len(arrays):
                continue
            parts.append(arrays)
            held += len(arrays)
            if keep is not None and held > keep:
                merged = HitArrays.concat(parts).sorted()
                merged = merged.take(slice(0, limit))
                parts, held = [merged], len(merged)
            elif keep is None and max_hits is not None and held > max_hits:
                raise UsageError(
                    f"more than {max_hits:,} hits: give a limit (--limit N keeps the first N "
                    "by iteration) or count them with 'pythia-data stats --query'")
        out = HitArrays.concat(parts).sorted()
        return out if limit is None else out.take(slice(0, limit))

    def hits(self, arrays: HitArrays) -> Iterator[Hit]:
        b = self.batch_size
        for s, o, qi, d, do, lo, hi in zip(*(getattr(arrays, f).tolist()
                                              for f in HitArrays.FIELDS)):
            q = self.queries[qi]
            m = len(q.tokens)
            part = None if (lo == 0 and hi == m) else (lo, hi)
            yield Hit(s // b, s % b, o, d, do, q.label, q.index, q.variant, s, hi - lo, m,
                      part, s < self.num_iterations * b)


def find(data, queries: list[Query], order="auto", params: OrderParams | None = None, *,
         index_dir=None, limit: int | None = None, include_untrained: bool = False,
         workers: int | None = None, progress=None, max_hits: int | None = DEFAULT_MAX_HITS,
         chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> Iterator[Hit]:
    """Yield the :class:`Hit` s of ``queries`` in ``data`` (a dataset path or an open
    :class:`IndexedDataset`), sorted by iteration. See :func:`pythia_data.find.find`."""
    own = not isinstance(data, IndexedDataset)
    ds = IndexedDataset(data) if own else data
    try:
        finder = Finder(ds, queries, order, params, index_dir=index_dir, progress=progress,
                        include_untrained=include_untrained, workers=workers,
                        chunk_tokens=chunk_tokens)
        arrays = finder.collect(limit, max_hits)
        yield from finder.hits(arrays)
    finally:
        if own:
            ds.close()
