"""The ``cpu`` backend: an exact byte-level BPE engine in numba.

Pipeline per document (the same order as HF ``tokenizers``):

1. split out the non-normalized added tokens (``<|endoftext|>``, ``<|padding|>``) on the raw
   UTF-8 bytes, leftmost-longest (byte trie);
2. NFC each remaining piece on its own (tables probed from HF, see
   ``tools/gen_unicode_tables.py``; pieces whose code points NFC leaves alone in any
   context of such code points are skipped, see :func:`nfc_quick_tables`);
3. split out the normalized added tokens (the 23 runs of 2..24 spaces), leftmost-longest;
4. the pre-tokenizer on each remaining piece: the GPT-2 regex or a Split family's (code point
   classes probed from HF's Oniguruma); the encoder is compiled per family
   (:func:`pythia_data.kernels.bpe.family_encoder`), so a process compiles only its own;
5. each pre-token's bytes: a hit in the per-thread hot table (2..8-byte keys, direct-mapped)
   or pre-token cache (open-addressing table in numpy arrays), or byte-level BPE (lowest
   merge rank first, leftmost on ties) then cached.

Documents are split over ``workers`` threads (the kernels release the GIL), each with its own
cache. Calls on one tokenizer object are serialized by a lock.

Invalid input: see :mod:`pythia_data.tokenize.base` (``errors="strict"`` raises InputError
naming the document and character of a lone surrogate; ``"replace"`` substitutes U+FFFD).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from pythia_data.errors import InputError, UsageError
from pythia_data.kernels.bpe import (
    MAX_CACHED_KEY,
    SCRATCH,
    cache_seed,
    decode_documents_kernel,
    family_encoder,
    hot_table,
    pack_merge_table,
    pair_table,
)
from pythia_data.kernels.gather import place_documents
from pythia_data.tokenize.base import (
    Tokenizer,
    _check_errors,
    as_id_list,
    utf8_batch,
    utf8_gathered,
)
from pythia_data.tokenize.families import Family, kernel_family
from pythia_data.tokenize.model import (
    GPT2_FAMILY,
    N_CP,
    EngineTables,
    TokenizerModel,
    UnicodeTables,
    as_model,
    build_trie,
    bytes_to_unicode,
    nfc_bytes,
    unicode_tables,
)
from pythia_data.tokenize.spec import TokenizerConfig

__all__ = ["CpuTokenizer", "EngineTables", "UnicodeTables", "unicode_tables",
           "bytes_to_unicode", "nfc_bytes", "build_trie", "N_CP", "as_model"]

_PARALLEL_MIN_BYTES = 1 << 18
_CHUNKS_PER_WORKER = 8
_KEEP_OUT = 1 << 25  # a worker's output buffer kept between calls: up to 128 MiB


class _Cache:
    """One worker's pre-token cache (see :mod:`pythia_data.kernels.bpe`), seeded at creation
    and after every clear: ``required`` (keys, key offsets, ids: ignore_merges words BPE
    would split; must fit) then as much of ``optional`` (other known words, in order) as an
    eighth of the slots holds. (Seeding every one-token vocabulary word was tried: on the
    benchmark corpus it removed 1.5 % of first-pass misses and cost 0.24 s of start-up.)"""

    def __init__(self, slots: int = 1 << 20, required=None, optional=None):
        entries = slots // 2
        # four int64 words per slot, the table 64-byte aligned (two slots per cache line)
        raw = np.zeros(4 * slots + 8, dtype=np.int64)
        skip = (-raw.ctypes.data % 64) // 8
        self._raw = raw
        self.table = raw[skip:skip + 4 * slots]
        self.keys = np.zeros(entries * 8, dtype=np.uint8)
        self.vals = np.zeros(entries * 4, dtype=np.int32)
        self.state = np.zeros(6, dtype=np.int64)
        #: the small direct-mapped table of short pre-tokens in front of it (see
        #: ``_emit``); its entries stay right across clears of the main table
        self.hot = hot_table()
        self.required = required
        if optional is not None:
            keys, offs, ids = optional
            n = min(ids.size, slots // 8)
            optional = (keys[:offs[n]], offs[:n + 1], ids[:n])
        self.optional = optional
        self.hits = 0
        self.misses = 0
        #: the worker's output ids, reused by every call (see CpuTokenizer._run)
        self.out = np.empty(0, dtype=np.int32)
        self._reseed()

    def trim(self) -> None:
        """Let go of an ``out`` over _KEEP_OUT ids (a call on a huge batch)."""
        if self.out.size > _KEEP_OUT:
            self.out = np.empty(0, dtype=np.int32)

    def grow(self, need: int, keep: int) -> None:
        """``out`` with room for ``need`` ids, its first ``keep`` kept."""
        grown = np.empty(max(need, 2 * self.out.size), dtype=np.int32)
        grown[:keep] = self.out[:keep]
        self.out = grown

    def _reseed(self):
        if self.required is not None and not cache_seed(*self.required, *self.args()):
            raise UsageError("cache_slots is too small for this tokenizer's ignore_merges "
                             "words")
        if self.optional is not None:
            cache_seed(*self.optional, *self.args())

    def args(self):
        return self.table, self.keys, self.vals, self.state

    def after_call(self):
        """A full cache is kept while it still serves most pre-tokens (the frequent ones
        arrive first), and cleared when the call it served had more misses than hits (the
        text changed: another language or domain)."""
        hits, misses = int(self.state[4]), int(self.state[5])
        self.hits += hits
        self.misses += misses
        self.state[4:] = 0
        if self.state[3] and misses > hits:
            self.clear()

    def clear(self):
        self.table.fill(0)
        self.state[:] = 0
        self._reseed()


@lru_cache(maxsize=2)
def nfc_quick_tables(u: UnicodeTables) -> UnicodeTables:
    """``u`` with a sharper NFC flag for the encoder's "does this piece need NFC?" check: a
    code point with a canonical decomposition is unflagged when NFC leaves it alone in any
    context of unflagged characters -- its class is 0, it is never the second of a
    composition pair, it is a primary composite (the result of a composition pair: NFC
    of it alone recomposes it), and the first code point of its decomposition has class 0
    and is never a second either (so it cannot compose with the starter before it).
    Precomposed letters (é, ñ, ü) are such code points: text already in NFC is then passed
    through without the NFC pass (on the benchmark corpus, 13 % of the bytes instead of
    43 % go through it). Characters with a non-zero class or that are a composition's
    second stay flagged, so any sequence NFC could change is still normalized in full.
    (Checked against HF's normalizer in context by tests/test_tokenize_fastpath.py.)"""
    flag = u.nfc_flag
    if flag.size < 2:
        return u
    dec = np.flatnonzero((u.dec_index >= 0) & (flag != 0))
    used = u.comp_keys >= 0
    second = np.zeros(flag.size, dtype=bool)
    second[u.comp_keys[used] & ((1 << 21) - 1)] = True
    composite = np.zeros(flag.size, dtype=bool)
    composite[u.comp_vals[used]] = True
    d0 = u.dec_data[u.dec_off[u.dec_index[dec]]]
    ok = ((u.ccc[dec] == 0) & ~second[dec] & composite[dec] & (u.ccc[d0] == 0)
          & ~second[d0])
    flag = flag.copy()
    flag[dec[ok]] = 0
    return UnicodeTables(u.cls, u.ccc, flag, u.dec_index, u.dec_off, u.dec_data,
                         u.comp_keys, u.comp_vals, u.meta)


def _seed_arrays(words: list[tuple[bytes, int]]):
    if not words:
        return None
    keys = np.frombuffer(b"".join(w for w, _ in words), dtype=np.uint8).copy()
    offs = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum([len(w) for w, _ in words], out=offs[1:])
    ids = np.array([i for _, i in words], dtype=np.int32)
    return keys, offs, ids


class _Regions:
    """Which chunk each worker tokenizes next. The chunks (in document order, ``sizes`` their
    lengths) are cut into ``nw`` runs of about equal size, one per worker; a worker takes
    its own run's chunks front to back, then, when its run is done, the last chunk of the
    run with the most left. Each worker (with its own pre-token cache) thus sees one stretch
    of consecutive documents: the same language or kind of text stays on one cache, so
    fewer words are missed by both caches and BPE'd twice (handing out chunks in turn, the
    2-worker benchmark had 31 % more misses than one worker; see docs/performance.md)."""

    def __init__(self, sizes: list[int], nw: int):
        total = sum(sizes)
        self._lock = threading.Lock()
        self._runs: list[list[int]] = []  # [next chunk, end] per worker
        start = 0
        acc = 0
        for w in range(nw):
            end = start
            goal = total * (w + 1) / nw
            while end < len(sizes) and (w == nw - 1 or acc + sizes[end] / 2 <= goal):
                acc += sizes[end]
                end += 1
            end = max(end, min(start + 1, len(sizes)))
            if w < nw - 1:
                end = min(end, len(sizes) - (nw - 1 - w))
            self._runs.append([start, end])
            start = end

    def start(self, w: int) -> int:
        """The first chunk of worker ``w``'s own run (before any is taken)."""
        return self._runs[w][0]

    def stop(self, w: int) -> int:
        return self._runs[w][1]

    def take(self, w: int) -> int | None:
        with self._lock:
            run = self._runs[w]
            if run[0] < run[1]:
                run[0] += 1
                return run[0] - 1
            left = max(self._runs, key=lambda r: r[1] - r[0])
            if left[0] >= left[1]:
                return None
            left[1] -= 1
            return left[1]


class CpuTokenizer(Tokenizer):
    backend = "cpu"
    #: the pre-tokenizer families this engine's kernels run
    families = (GPT2_FAMILY, Family.CL100K, Family.O200K, Family.QWEN2, Family.DEEPSEEK_V3,
                Family.QWEN3_5)

    @classmethod
    def unsupported_reason(cls, spec: TokenizerConfig | TokenizerModel) -> str | None:
        """Why the engine cannot run ``spec`` exactly, or None."""
        model = as_model(spec)
        reason = model.refusal(cls.families)
        if reason is None and model.whole_words:
            long = [w for w, _ in model.tables.whole_words if len(w) > MAX_CACHED_KEY]
            if long:
                return (f"ignore_merges with {len(long)} vocabulary tokens longer than "
                        f"{MAX_CACHED_KEY} bytes that BPE would split")
        return reason

    def __init__(self, spec: TokenizerConfig | TokenizerModel, *, errors: str = "strict",
                 workers: int | None = None, cache_slots: int = 1 << 20):
        model = as_model(spec)
        reason = self.unsupported_reason(model)
        if reason is not None:
            raise UsageError(f"{model.name}: the cpu backend does not support {reason}")
        self.errors = _check_errors(errors)
        if workers is None:
            workers = min(os.cpu_count() or 1, 8)
        if not isinstance(workers, int) or workers < 1:
            raise UsageError(f"workers must be a positive integer, not {workers!r}")
        if cache_slots < 1024 or cache_slots & (cache_slots - 1):
            raise UsageError("cache_slots must be a power of two >= 1024")
        self.workers = workers
        self.model = model
        self.name = model.name
        self.config = model.config
        self.unicode = unicode_tables()
        do_nfc = model.normalizer.family == "nfc"
        self.unicode_eff = self.unicode if do_nfc else self.unicode.without_nfc()
        #: the tables the encoder runs with: ``unicode_eff`` with the sharper NFC check
        self._enc_unicode = nfc_quick_tables(self.unicode) if do_nfc else self.unicode_eff
        self.tables = model.tables
        self._merge_tab = pack_merge_table(self.tables.merge_keys, self.tables.merge_rank,
                                           self.tables.merge_new)
        self._pair_tab = pair_table(self.tables.byte_id, self._merge_tab)
        #: the kernels' pre-tokenizer id (0: GPT-2's regex; else a Split family's id)
        self.family = kernel_family(model.pre_tokenizer.family)
        family_encoder(self.family)  # made here, not by two worker threads at once
        self.vocab_size = model.vocab_size
        self._eod_id = model.eod_id
        self._cache_slots = cache_slots
        self._seed = _seed_arrays(self.tables.whole_words)
        self._caches: list[_Cache] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        if self._seed is not None:
            self._cache(0)  # a cache too small for the seed fails here, not mid-run

    # ------------------------------------------------------------------ encode

    def _cache(self, i: int) -> _Cache:
        while len(self._caches) <= i:
            self._caches.append(_Cache(self._cache_slots, self._seed))
        return self._caches[i]
    def _run(self, data: np.ndarray, offsets: np.ndarray, d0: int, d1: int, cache: _Cache,
             w: int = 0) -> tuple[int, np.ndarray]:
        """Ids of documents d0..d1 into ``cache.out`` from ``w``; returns (end, offsets of the
        documents' ends). ``cache.out`` is kept from call to call: a fresh multi-MB output
        array per chunk is page-faulted in again every call (19,000 faults a 42 MB call on
        two workers against 7,400, and at times 0.2 s of system time: numpy asks the kernel
        for huge pages, which may compact memory first; see docs/performance.md)."""
        t, u = self.tables, self._enc_unicode
        out_offsets = np.zeros(d1 - d0 + 1, dtype=np.int64)
        out_offsets[0] = w
        need = w + max(1024, int(offsets[d1] - offsets[d0]) // 2 + 64)
        if cache.out.size < need:
            cache.grow(need, w)
        if data.flags.writeable:  # one compiled encoder for read-only and writable text
            data = data.view()
            data.flags.writeable = False
        d = d0
        encode = family_encoder(self.family)
        while True:
            d, w, status = encode(
                data, offsets, d, d1,
                u.cls, u.ccc, u.nfc_flag, u.dec_index, u.dec_off, u.dec_data, u.comp_keys,
                u.comp_vals,
                t.strie_next, t.strie_tok, t.ntrie_next, t.ntrie_tok,
                t.byte_id, self._merge_tab,
                *cache.args(), cache.hot, self._pair_tab,
                cache.out, out_offsets[d - d0:], w,
            )
            cache.after_call()
            if status == 0:
                return w, out_offsets
            # the kernel asks for room for one part of a document (<= SCRATCH bytes) at a time
            cache.grow(w + 4 * min(int(offsets[d + 1] - offsets[d]), SCRATCH) + 16, w)

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        n = len(texts)
        with self._lock:
            nw = min(self.workers, n)
            size = sum(len(t) for t in texts) if nw > 1 else 0
            if nw <= 1 or size < _PARALLEL_MIN_BYTES:
                buf, offsets = utf8_gathered(texts, self.errors)
                return self._encode_one(buf, offsets)
            # consecutive chunks of documents (~_CHUNKS_PER_WORKER per worker); a task encodes
            # its chunk's UTF-8 (holding the GIL) while the other workers' kernels run, then
            # tokenizes it (see _Regions for which worker takes which chunk)
            per = max(_PARALLEL_MIN_BYTES // 4, size // (_CHUNKS_PER_WORKER * nw))
            cuts = [0]
            sizes = []
            acc = 0
            for i, t in enumerate(texts):
                acc += len(t)
                if acc >= per and i + 1 < n:
                    cuts.append(i + 1)
                    sizes.append(acc)
                    acc = 0
            cuts.append(n)
            sizes.append(acc)

            def utf8_of(d0: int, d1: int):
                return utf8_gathered(texts[d0:d1], self.errors, first=d0)

            return self._encode_chunks(n, cuts, sizes, utf8_of)

    def encode_utf8_flat(self, data, offsets, *, checked: bool = True
                         ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode_flat` of documents already in UTF-8 (no ``str`` made): ``data``
        (bytes or a uint8 array), int64 ``offsets`` (document ``i`` is
        ``data[offsets[i]:offsets[i + 1]]``). Invalid UTF-8 raises InputError naming the
        document (``checked=False``: the caller vouches for it, as the tokenize reader does,
        whose kernel checked it)."""
        return self._encode_utf8(data, offsets, checked, None)

    def encode_utf8_documents(self, data, offsets, *, dtype, eod: int | None = None,
                              checked: bool = True, out: np.ndarray | None = None
                              ) -> tuple[np.ndarray, np.ndarray]:
        """The ids of the documents in UTF-8 (as :meth:`encode_utf8_flat`) the way a dataset
        stores them: one array of ``dtype``, each document followed by ``eod`` unless it is
        None, and the documents' lengths (EOD included). The workers copy their own chunks'
        ids into that array side by side, cast and with the EODs, in one pass (no int32
        result, no cast copy, no insert copy; ``pipeline._as_stored`` is the same for any
        backend). ``out``: a 1-D ``dtype`` array to write the ids to when it has room (the
        ids are then a view of it; a writer that reuses its buffers saves the page faults
        of fresh memory), else a new array is made."""
        dtype = np.dtype(dtype)
        if out is not None and (out.dtype != dtype or out.ndim != 1
                                or not out.flags.c_contiguous or not out.flags.writeable):
            raise UsageError(f"out must be a writable contiguous 1-D {dtype} array")
        return self._encode_utf8(data, offsets, checked, (dtype, eod, out))

    def _encode_utf8(self, data, offsets, checked: bool, place):
        buf, offs = utf8_batch(data, offsets)
        if checked:
            from pythia_data.kernels.jsonl import first_invalid_document

            bad = first_invalid_document(buf, offs)
            if bad >= 0:
                raise InputError(f"document {bad}: invalid UTF-8")
        n = offs.size - 1
        with self._lock:
            size = int(offs[-1])
            nw = min(self.workers, n)
            if nw <= 1 or size < _PARALLEL_MIN_BYTES:
                return self._encode_one(buf, offs, place)
            # consecutive chunks of ~size / (_CHUNKS_PER_WORKER * nw) bytes (as encode_flat;
            # the UTF-8 is there already: a chunk is a view of it)
            per = max(_PARALLEL_MIN_BYTES // 4, size // (_CHUNKS_PER_WORKER * nw))
            cuts = np.unique(np.searchsorted(offs, np.arange(per, size, per), side="left"))
            cuts = [0, *(int(c) for c in cuts if 0 < c < n), n]
            sizes = [int(offs[b] - offs[a]) for a, b in zip(cuts[:-1], cuts[1:])]

            def utf8_of(d0: int, d1: int):
                return buf, offs

            return self._encode_chunks(n, cuts, sizes, utf8_of, views=True, place=place)

    def _encode_one(self, data: np.ndarray, offsets: np.ndarray, place=None):
        """Every document in this thread, with cache 0 (small calls, one worker)."""
        cache = self._cache(0)
        w, out_offsets = self._run(data, offsets, 0, offsets.size - 1, cache)
        if place is not None:
            result = self._placed([(0, out_offsets)], place)
        else:
            result = cache.out[:w].copy(), out_offsets
        cache.trim()
        return result

    def _placed(self, parts: list, place) -> tuple[np.ndarray, np.ndarray]:
        """The chunks' ids (``parts``: (worker, document ends in its cache's ``out``), in
        document order) as one ``place[0]`` array with EOD ``place[1]`` after each
        document, and the documents' lengths; each worker's chunks copied by a task of
        its own when there are several workers (the copies run side by side)."""
        dtype, eod, out = place
        extra = 1 if eod is not None else 0
        lengths = np.concatenate([np.diff(offs) for _w, offs in parts])
        if extra:
            lengths += 1
        bases = [0]
        for _w, offs in parts:
            bases.append(bases[-1] + int(offs[-1] - offs[0]) + extra * (offs.size - 1))
        if out is not None and out.shape[0] >= bases[-1]:
            ids = out[:bases[-1]]
        else:  # a given buffer too small: room for batches twice its size (untouched
            # pages cost nothing; a writer's growing batches then reuse it)
            room = bases[-1] if out is None else max(bases[-1], 2 * out.shape[0])
            ids = np.empty(room, dtype=dtype)[:bases[-1]]

        def copy(w: int) -> None:
            src = self._caches[w].out
            for (pw, offs), base in zip(parts, bases):
                if pw == w:
                    place_documents(src, offs, ids, base, eod)

        workers = sorted({w for w, _offs in parts})
        if len(workers) == 1:
            copy(workers[0])
        else:
            for f in [self._pool.submit(copy, w) for w in workers]:
                f.result()
        return ids, lengths

    def _encode_chunks(self, n: int, cuts: list[int], sizes: list[int], utf8_of,
                       views: bool = False, place=None) -> tuple[np.ndarray, np.ndarray]:
        """The chunks ``cuts`` (documents ``cuts[c]..cuts[c + 1]``, ``sizes[c]`` characters or
        bytes) on the worker threads; ``utf8_of(d0, d1)`` gives a chunk's UTF-8 and offsets
        (``views``: the whole buffer and all its offsets, of which the chunk's are used);
        ``place``: (dtype, eod, out) for :meth:`encode_utf8_documents`. Call with the lock
        held."""
        nw = min(self.workers, len(sizes))
        if self._pool is None or self._pool._max_workers < nw:
            self._pool = ThreadPoolExecutor(max_workers=max(self.workers, nw))
        regions = _Regions(sizes, nw)
        for w in range(nw):
            self._cache(w)  # made here, not by the workers at once
        parts: list = [None] * len(sizes)
        futures = [self._pool.submit(self._worker, utf8_of, cuts, sizes, regions, w, parts,
                                     views) for w in range(nw)]
        for f in futures:
            f.result()
        for p in parts:  # as in one pass: the error of the first bad document
            if isinstance(p, BaseException):
                raise p
        chunks = [(w, offs) for w, _end, offs in parts]
        if place is not None:
            result = self._placed(chunks, place)
        else:
            # the int32 ids as _placed copies them (one task per worker, side by side, no
            # GIL: copied by the calling thread alone, this tail took 0.13 s of a 0.70 s
            # first call at 42 MB on two workers, mostly first touches of fresh pages)
            ids, lengths = self._placed(chunks, (np.int32, None, None))
            out_offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lengths, out=out_offsets[1:])
            result = ids, out_offsets
        for w in range(nw):
            self._caches[w].trim()
        return result

    def _worker(self, utf8_of, cuts, sizes, regions: _Regions, w: int, parts: list,
                views: bool) -> None:
        """Worker ``w``: the chunks ``regions`` hands it, each tokenized with cache ``w``
        into ``parts[chunk]`` (or the chunk's exception: the caller raises the first)."""
        cache = self._cache(w)
        end = 0
        # room for the worker's own run at once (growing chunk by chunk copies and touches
        # about twice the memory); a chunk that needs more grows it
        chars = sum(sizes[regions.start(w):regions.stop(w)])
        if cache.out.size < chars // 2 + 1024:
            cache.grow(chars // 2 + 1024, 0)
        while (c := regions.take(w)) is not None:
            d0, d1 = cuts[c], cuts[c + 1]
            try:
                data, offsets = utf8_of(d0, d1)
                lo, hi = (d0, d1) if views else (0, d1 - d0)
                end, offs = self._run(data, offsets, lo, hi, cache, end)
                parts[c] = (w, end, offs)
            except Exception as exc:  # noqa: BLE001 - re-raised in order by encode_flat
                parts[c] = exc

    # ------------------------------------------------------------------ decode

    def decode_utf8_flat(self, ids, offsets) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`decode` of the documents ``ids[offsets[i]:offsets[i + 1]]`` as UTF-8, no
        ``str`` made: the bytes of all documents (uint8) and their int64 offsets; document
        ``i`` is ``decode(its ids).encode("utf-8")`` exactly (a document whose tokens' bytes
        are not valid UTF-8 goes through :meth:`decode`, which puts U+FFFD where HF does).
        None when the tokenizer has no ByteLevel decoder (call :meth:`decode`)."""
        if self.model.decoder.family != "byte_level":
            return None
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise UsageError("ids must be a 1-D integer array")
        offs = np.ascontiguousarray(offsets, dtype=np.int64)
        if (offs.ndim != 1 or offs.size < 1 or offs[0] < 0 or offs[-1] > arr.size
                or np.any(np.diff(offs) < 0)):
            raise UsageError("offsets must never decrease and stay within ids")
        if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8:
            arr = arr.astype(np.int64)  # uint64 ids: compared with int64 bounds in the kernel
        t = self.tables
        data, out_off = decode_documents_kernel(np.ascontiguousarray(arr), offs, t.tok_off,
                                                t.tok_bytes)
        from pythia_data.kernels.jsonl import first_invalid_document

        bad = first_invalid_document(data, out_off)
        if bad < 0:
            return data, out_off
        # some documents end inside a character (or hold bytes no text has): rebuilt with
        # decode's replacement characters (rare; everything else copied as it is)
        pieces, lengths, d = [], [], 0
        raw = memoryview(data)
        while bad >= 0:
            b = bad + d
            pieces.append(raw[out_off[d] : out_off[b]])
            lengths.extend(np.diff(out_off[d : b + 1]).tolist())
            fixed = bytes(raw[out_off[b] : out_off[b + 1]]).decode("utf-8", "replace")
            pieces.append(fixed.encode("utf-8"))
            lengths.append(len(pieces[-1]))
            d = b + 1
            bad = first_invalid_document(data, out_off[d:])
        pieces.append(raw[out_off[d] :])
        lengths.extend(np.diff(out_off[d:]).tolist())
        new_off = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_off[1:])
        return np.frombuffer(b"".join(pieces), dtype=np.uint8), new_off

    def decode(self, ids) -> str:
        arr = as_id_list(ids)
        if self.model.decoder.family == "join":  # no decoder: HF joins the token strings
            texts = (self.model.token_text(int(i)) for i in arr.tolist())
            return " ".join(t for t in texts if t is not None)
        t = self.tables
        data, _ = decode_documents_kernel(arr, np.array([0, arr.size], dtype=np.int64),
                                          t.tok_off, t.tok_bytes)
        return data.tobytes().decode("utf-8", "replace")
