"""Kernels of ``pythia-data find``: many token sequences at once over a token stream, and the
inverse of a GPT-NeoX training order (see docs/find.md).

Matching uses hashed n-grams. Each query is keyed by its first ``min(len, KEY_LEN)`` tokens.
At every position the scan tests a one-token table (queries of one token) and a bitmap of
hashed first-token pairs (everything longer); only where the bitmap says "maybe" are the
keys of the active lengths hashed and looked up in an open-addressing table, and every query
under a matching key is compared token for token. A hash only ever decides what to compare,
never what is reported, so collisions cost time, not correctness.

The stream is cut into documents (``vstarts``/``vends``: where each sequence starts and ends
in the stream). A match must lie inside one document. At each document end the scan also
reports *tails*: the query prefixes ``q[:t]`` (``1 <= t < len(q)``) that the document ends
with, found with a hash of the reversed suffix; a training order that puts another document
right after this one may complete them (:func:`continue_tails`).

Every ``@njit`` function has a wrapper below that checks dtypes and sizes; call the wrappers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pythia_data.errors import UsageError

KEY_LEN = 4  # tokens hashed per key (queries shorter than this use their whole length)
PAIR_BITS = 22  # the pair bitmap has 2**PAIR_BITS bits (512 KiB)
F1_BITS = 16  # the one-token table has 2**F1_BITS entries
CKPT_SHIFT = 4  # the stream offset of every 16th doc_idx position is stored

_C1 = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xBF58476D1CE4E5B9)
_C3 = np.uint64(0x94D049BB133111EB)
_C4 = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True, inline="always")
def _mix(h):  # pragma: no cover - jit
    h ^= h >> np.uint64(30)
    h *= _C2
    h ^= h >> np.uint64(27)
    h *= _C3
    h ^= h >> np.uint64(31)
    return h


@njit(cache=True, nogil=True, inline="always")
def _step(h, tok):  # pragma: no cover - jit
    return (h ^ (np.uint64(tok) + np.uint64(1))) * _C4


@njit(cache=True, nogil=True, inline="always")
def _final(h, n):  # pragma: no cover - jit
    return _mix(h ^ (np.uint64(n) * _C1)) | np.uint64(1)


@njit(cache=True, nogil=True, inline="always")
def _pair_bit(t0, t1, shift):  # pragma: no cover - jit
    h = (np.uint64(t0) * _C1) ^ (np.uint64(t1) + np.uint64(0x5BD1E995))
    return (h * _C2) >> np.uint64(shift)


@njit(cache=True, nogil=True, inline="always")
def _f1_slot(t, mask):  # pragma: no cover - jit
    return (np.uint64(t) * _C1 >> np.uint64(32)) & np.uint64(mask)


@njit(cache=True, nogil=True, inline="always")
def _probe(keys, h):  # pragma: no cover - jit
    """Slot of key ``h`` in an open-addressing table (0 = empty), or -1."""
    mask = np.uint64(keys.shape[0] - 1)
    slot = h & mask
    while True:
        k = keys[slot]
        if k == h:
            return np.int64(slot)
        if k == np.uint64(0):
            return np.int64(-1)
        slot = (slot + np.uint64(1)) & mask


@njit(cache=True, nogil=True)
def _scan(buf, base, lo, hi, vstarts, vends, doc_first, qtok, qoff, key_len, tbl_keys,
          tbl_lo, tbl_hi, qorder, pair_bits, pair_shift, f1, f1_mask, active, has1,
          tail_keys, tail_lo, tail_hi, tail_q, tail_t, max_tail,
          out_doc, out_off, out_q, tail_doc, tail_qo, tail_to):  # pragma: no cover - jit
    """Matches starting in stream positions [lo, hi) (buffer index = position - base) and
    tails of the documents whose last token is in [lo, hi). Returns (matches, tails); -1
    in either when an output array is full (the caller grows them and calls again)."""
    n_out = 0
    n_tail = 0
    cap = out_doc.shape[0]
    tcap = tail_doc.shape[0]
    for k in range(vstarts.shape[0]):
        ds = vstarts[k]
        de = vends[k]
        a = ds if ds > lo else lo
        b = de if de < hi else hi
        for v in range(a, b):
            i = v - base
            t0 = buf[i]
            if has1 and f1[_f1_slot(t0, f1_mask)]:
                h = _final(_step(np.uint64(0), t0), 1)
                s = _probe(tbl_keys, h)
                if s >= 0:
                    for r in range(tbl_lo[s], tbl_hi[s]):
                        q = qorder[r]
                        if key_len[q] == 1 and qoff[q + 1] - qoff[q] == 1 and qtok[qoff[q]] == t0:
                            if n_out >= cap:
                                return -1, n_tail
                            out_doc[n_out] = doc_first + k
                            out_off[n_out] = v - ds
                            out_q[n_out] = q
                            n_out += 1
            if v + 1 >= de:
                continue
            t1 = buf[i + 1]
            bit = _pair_bit(t0, t1, pair_shift)
            if (pair_bits[bit >> np.uint64(6)] >> (bit & np.uint64(63))) & np.uint64(1) == 0:
                continue
            h = _step(_step(np.uint64(0), t0), t1)
            room = de - v
            for n in range(2, active.shape[0]):
                if n > room:
                    break
                if n > 2:
                    h = _step(h, buf[i + n - 1])
                if not active[n]:
                    continue
                s = _probe(tbl_keys, _final(h, n))
                if s < 0:
                    continue
                for r in range(tbl_lo[s], tbl_hi[s]):
                    q = qorder[r]
                    if key_len[q] != n:
                        continue
                    m = qoff[q + 1] - qoff[q]
                    if m > room:
                        continue
                    ok = True
                    for j in range(m):
                        if buf[i + j] != qtok[qoff[q] + j]:
                            ok = False
                            break
                    if ok:
                        if n_out >= cap:
                            return -1, n_tail
                        out_doc[n_out] = doc_first + k
                        out_off[n_out] = v - ds
                        out_q[n_out] = q
                        n_out += 1
        # tails: this document's last token is in [lo, hi)
        if max_tail > 0 and de > ds and lo < de and de <= hi:
            g = np.uint64(0)
            top = de - ds if de - ds < max_tail else max_tail
            for t in range(1, top + 1):
                g = _step(g, buf[de - t - base])
                s = _probe(tail_keys, _final(g, t))
                if s < 0:
                    continue
                for r in range(tail_lo[s], tail_hi[s]):
                    q = tail_q[r]
                    if tail_t[r] != t:
                        continue
                    ok = True
                    start = de - t - base
                    for j in range(t):
                        if buf[start + j] != qtok[qoff[q] + j]:
                            ok = False
                            break
                    if ok:
                        if n_tail >= tcap:
                            return n_out, -1
                        tail_doc[n_tail] = doc_first + k
                        tail_qo[n_tail] = q
                        tail_to[n_tail] = t
                        n_tail += 1
    return n_out, n_tail


# --------------------------------------------------------------------------- query tables


def _table(hashes: np.ndarray, payload: np.ndarray):
    """Open-addressing table of the distinct ``hashes``; each slot names the range of
    ``payload`` (sorted by hash) that carries its hash. -> (keys, lo, hi, payload sorted)."""
    order = np.argsort(hashes, kind="stable")
    hs = hashes[order]
    payload = payload[order]
    uniq, first = np.unique(hs, return_index=True)
    last = np.append(first[1:], hs.shape[0])
    size = 1 << max(10, int(2 * max(uniq.shape[0], 1) - 1).bit_length() + 1)
    keys = np.zeros(size, dtype=np.uint64)
    lo = np.zeros(size, dtype=np.int64)
    hi = np.zeros(size, dtype=np.int64)
    mask = size - 1
    for h, a, b in zip(uniq.tolist(), first.tolist(), last.tolist()):
        slot = h & mask
        while keys[slot] != 0:
            slot = (slot + 1) & mask
        keys[slot] = h
        lo[slot] = a
        hi[slot] = b
    return keys, lo, hi, payload


def _py_hash(tokens, n: int) -> int:
    """The kernel's hash of ``tokens`` (already in the order hashed), length tag ``n``."""
    mask = (1 << 64) - 1
    h = 0
    for t in tokens:
        h = ((h ^ (int(t) + 1)) * int(_C4)) & mask
    h ^= (n * int(_C1)) & mask
    h ^= h >> 30
    h = (h * int(_C2)) & mask
    h ^= h >> 27
    h = (h * int(_C3)) & mask
    h ^= h >> 31
    return h | 1


def _py_pair_bit(t0: int, t1: int, shift: int) -> int:
    mask = (1 << 64) - 1
    h = ((int(t0) * int(_C1)) & mask) ^ ((int(t1) + 0x5BD1E995) & mask)
    return ((h * int(_C2)) & mask) >> shift


def _py_f1_slot(t: int, mask: int) -> int:
    return (((int(t) * int(_C1)) & ((1 << 64) - 1)) >> 32) & mask


class QueryTables:
    """Everything :func:`scan` needs about a set of queries (token sequences), built once.

    ``qtok``/``qoff``: the queries' tokens back to back (int64) and their offsets (n + 1).
    ``tails``: also build the tail table (needed when another document may follow)."""

    def __init__(self, queries: list[np.ndarray], tails: bool = True):
        if not queries:
            raise UsageError("no queries")
        lengths = np.array([len(q) for q in queries], dtype=np.int64)
        if (lengths < 1).any():
            raise UsageError("a query has no tokens")
        self.qoff = np.zeros(len(queries) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.qoff[1:])
        self.qtok = np.concatenate([np.asarray(q, dtype=np.int64) for q in queries])
        self.lengths = lengths
        self.max_len = int(lengths.max())
        self.key_len = np.minimum(lengths, KEY_LEN).astype(np.int64)
        n = len(queries)
        hashes = np.array([_py_hash(self.qtok[self.qoff[q]:self.qoff[q] + self.key_len[q]],
                                    int(self.key_len[q])) for q in range(n)], dtype=np.uint64)
        self.keys, self.lo, self.hi, self.qorder = _table(hashes, np.arange(n, dtype=np.int64))
        self.active = np.zeros(KEY_LEN + 1, dtype=np.bool_)
        self.active[np.unique(self.key_len)] = True
        self.pair_shift = 64 - PAIR_BITS
        self.pair_bits = np.zeros((1 << PAIR_BITS) // 64, dtype=np.uint64)
        self.f1 = np.zeros(1 << F1_BITS, dtype=np.bool_)
        self.f1_mask = (1 << F1_BITS) - 1
        self.has1 = bool((lengths == 1).any())
        for q in range(n):
            a = int(self.qoff[q])
            if lengths[q] == 1:
                self.f1[_py_f1_slot(int(self.qtok[a]), self.f1_mask)] = True
            else:
                bit = _py_pair_bit(int(self.qtok[a]), int(self.qtok[a + 1]), self.pair_shift)
                self.pair_bits[bit >> 6] |= np.uint64(1 << (bit & 63))
        # tails: every proper prefix q[:t], hashed from its last token backwards
        self.max_tail = self.max_len - 1 if tails else 0
        th, tq, tt = [], [], []
        if tails:
            for q in range(n):
                toks = self.qtok[self.qoff[q]:self.qoff[q + 1]]
                for t in range(1, int(lengths[q])):
                    th.append(_py_hash(toks[:t][::-1], t))
                    tq.append(q)
                    tt.append(t)
        if th:
            payload = np.stack([np.array(tq, dtype=np.int64), np.array(tt, dtype=np.int64)], 1)
            idx = np.arange(len(th), dtype=np.int64)
            self.tail_keys, self.tail_lo, self.tail_hi, order = _table(
                np.array(th, dtype=np.uint64), idx)
            self.tail_q = np.ascontiguousarray(payload[order, 0])
            self.tail_t = np.ascontiguousarray(payload[order, 1])
        else:
            self.max_tail = 0
            self.tail_keys = np.zeros(1024, dtype=np.uint64)
            self.tail_lo = self.tail_hi = np.zeros(1024, dtype=np.int64)
            self.tail_q = self.tail_t = np.zeros(0, dtype=np.int64)


def scan(tables: QueryTables, buf: np.ndarray, base: int, lo: int, hi: int,
         vstarts: np.ndarray, vends: np.ndarray, doc_first: int):
    """Matches of ``tables``' queries that start in stream positions ``[lo, hi)``, and
    tails of the documents ending in ``(lo, hi]``.

    ``buf`` holds the stream from position ``base``; it must cover ``[lo - max_len + 1,
    hi + max_len - 1)`` (clipped to the stream). ``vstarts``/``vends`` (int64) are the
    stream spans of documents ``doc_first, doc_first + 1, ...`` that overlap ``[lo, hi)``.
    Returns ``(doc, offset, query)`` of every match and ``(doc, query, t)`` of every tail.
    """
    if buf.ndim != 1 or buf.dtype.kind not in "iu":
        raise UsageError("scan: buf must be a 1-D integer array")
    vstarts = np.ascontiguousarray(vstarts, dtype=np.int64)
    vends = np.ascontiguousarray(vends, dtype=np.int64)
    if vstarts.shape != vends.shape:
        raise UsageError("scan: vstarts and vends differ in length")
    base, lo, hi = int(base), int(lo), int(hi)
    if lo < base or hi < lo:
        raise UsageError("scan: range outside the buffer")
    end = base + buf.shape[0]
    if (vends < vstarts).any():
        raise UsageError("scan: a document ends before it starts")
    used = (vends > lo) & (vstarts < hi)
    if used.any():
        # what the kernel reads: matches [max(ds, lo), min(de, hi + max_len - 1)),
        # tails [de - max_tail, de) within the document
        low = int(np.maximum(vstarts[used], lo - tables.max_tail).min())
        high = int(np.minimum(vends[used], hi + tables.max_len - 1).max())
        if low < base or high > end:
            raise UsageError(f"scan: the buffer [{base}, {end}) does not cover [{low}, {high})")
    cap = max(1024, (hi - lo) // 64)
    tcap = max(256, vstarts.shape[0])
    while True:
        out_doc = np.empty(cap, dtype=np.int64)
        out_off = np.empty(cap, dtype=np.int64)
        out_q = np.empty(cap, dtype=np.int64)
        tail_doc = np.empty(tcap, dtype=np.int64)
        tail_q = np.empty(tcap, dtype=np.int64)
        tail_t = np.empty(tcap, dtype=np.int64)
        n, nt = _scan(buf, np.int64(base), np.int64(lo), np.int64(hi), vstarts, vends,
                      np.int64(doc_first), tables.qtok, tables.qoff, tables.key_len,
                      tables.keys, tables.lo, tables.hi, tables.qorder, tables.pair_bits,
                      np.int64(tables.pair_shift), tables.f1, np.int64(tables.f1_mask),
                      tables.active, tables.has1, tables.tail_keys, tables.tail_lo,
                      tables.tail_hi, tables.tail_q, tables.tail_t,
                      np.int64(tables.max_tail), out_doc, out_off, out_q, tail_doc, tail_q,
                      tail_t)
        if n < 0:
            cap *= 4
            continue
        if nt < 0:
            tcap *= 4
            continue
        return (out_doc[:n], out_off[:n], out_q[:n]), (tail_doc[:nt], tail_q[:nt], tail_t[:nt])


# --------------------------------------------------------------------------- order inverse


@njit(cache=True, nogil=True)
def _invert_permutation(perm, out):  # pragma: no cover - jit
    n = perm.shape[0]
    for i in range(n):
        j = perm[i]
        if j < 0 or j >= n:
            return i
        out[j] = i
    return -1


def invert_permutation(perm: np.ndarray) -> np.ndarray:
    """``out[perm[i]] = i`` (same dtype as ``perm``); UsageError if an entry is out of range.
    (Duplicates are not detected here: the order cache is checked when loaded.)"""
    perm = np.asarray(perm)
    if perm.ndim != 1 or perm.dtype.kind not in "iu":
        raise UsageError("invert_permutation: a 1-D integer array is needed")
    out = np.empty(perm.shape[0], dtype=perm.dtype)
    bad = _invert_permutation(perm, out)
    if bad >= 0:
        raise UsageError(f"invert_permutation: entry {bad} is out of range")
    return out


@njit(cache=True, nogil=True)
def _doc_positions(doc_idx, n_docs, epochs, cursor, out):  # pragma: no cover - jit
    for p in range(doc_idx.shape[0]):
        d = doc_idx[p]
        if d < 0 or d >= n_docs:
            return p
        c = cursor[d]
        if c >= epochs:
            return p
        out[d * epochs + c] = p
        cursor[d] = c + 1
    return -1


def doc_positions(doc_idx: np.ndarray, n_docs: int, epochs: int) -> np.ndarray:
    """``(n_docs, epochs)``: the positions of each document in ``doc_idx``, ascending
    (every document occurs exactly ``epochs`` times, as in a GPT-NeoX order). uint32 when
    the positions fit, else int64."""
    doc_idx = np.asarray(doc_idx)
    if doc_idx.ndim != 1 or doc_idx.dtype.kind not in "iu":
        raise UsageError("doc_positions: doc_idx must be a 1-D integer array")
    n_docs, epochs = int(n_docs), int(epochs)
    if doc_idx.shape[0] != n_docs * epochs:
        raise UsageError("doc_positions: doc_idx must hold every document `epochs` times")
    dtype = np.uint32 if doc_idx.shape[0] < 2**32 else np.int64
    out = np.empty(n_docs * epochs, dtype=dtype)
    cursor_dtype = np.uint8 if epochs < 255 else (np.uint16 if epochs < 65535 else np.int64)
    cursor = np.zeros(n_docs, dtype=cursor_dtype)
    bad = _doc_positions(doc_idx, np.int64(n_docs), cursor_dtype(epochs), cursor, out)
    if bad >= 0:
        raise UsageError(f"doc_positions: doc_idx[{bad}] breaks the epochs x documents layout")
    return out.reshape(n_docs, epochs)


@njit(cache=True, nogil=True)
def _stream_checkpoints(doc_idx, sizes, shift, out):  # pragma: no cover - jit
    total = np.int64(0)
    step = np.int64(1) << shift
    k = 0
    for p in range(doc_idx.shape[0]):
        if (p & (step - 1)) == 0:
            out[k] = total
            k += 1
        total += sizes[doc_idx[p]]
    out[k] = total


def stream_checkpoints(doc_idx: np.ndarray, sizes: np.ndarray, shift: int = CKPT_SHIFT):
    """Stream offset (in tokens) of every ``2**shift``-th position of ``doc_idx``, then the
    stream's total length: int64 of ``ceil(len / 2**shift) + 1``."""
    doc_idx = np.asarray(doc_idx)
    sizes = np.asarray(sizes)
    n = doc_idx.shape[0]
    if n and (int(doc_idx.min()) < 0 or int(doc_idx.max()) >= sizes.shape[0]):
        raise UsageError("stream_checkpoints: doc_idx names a document outside sizes")
    step = 1 << shift
    out = np.empty((n + step - 1) // step + 1, dtype=np.int64)
    _stream_checkpoints(doc_idx, sizes, np.int64(shift), out)
    return out


@njit(cache=True, nogil=True)
def _stream_starts(positions, doc_idx, sizes, ckpt, shift, out):  # pragma: no cover - jit
    step = np.int64(1) << shift
    for k in range(positions.shape[0]):
        p = np.int64(positions[k])
        q0 = (p >> shift) << shift
        s = ckpt[p >> shift]
        for q in range(q0, p):
            s += sizes[doc_idx[q]]
        out[k] = s
    return step


def stream_starts(positions, doc_idx, sizes, ckpt, shift: int = CKPT_SHIFT) -> np.ndarray:
    """Stream offset (tokens) where ``doc_idx`` position ``p`` starts, for each p."""
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    if positions.size and (int(positions.min()) < 0 or int(positions.max()) >= len(doc_idx)):
        raise UsageError("stream_starts: position outside doc_idx")
    out = np.empty(positions.shape[0], dtype=np.int64)
    _stream_starts(positions, doc_idx, sizes, ckpt, np.int64(shift), out)
    return out


@njit(cache=True, nogil=True)
def _tail_spans(positions, need, doc_idx, sizes, pointers, itemsize, span_pos, span_start,
                span_len, counts):  # pragma: no cover - jit
    """For each candidate k: the documents after doc_idx position positions[k] that supply
    its next need[k] tokens, as spans of the token stream. counts[k] = tokens available."""
    n_pos = doc_idx.shape[0]
    m = 0
    cap = span_pos.shape[0]
    for k in range(positions.shape[0]):
        left = need[k]
        p = positions[k] + 1
        got = np.int64(0)
        while left > 0 and p < n_pos:
            d = doc_idx[p]
            size = np.int64(sizes[d])
            if size > 0:
                take = size if size < left else left
                if m >= cap:
                    return -1
                span_pos[m] = k
                span_start[m] = pointers[d] // itemsize
                span_len[m] = take
                m += 1
                left -= take
                got += take
            p += 1
        counts[k] = got
    return m


def tail_spans(positions, need, doc_idx, sizes, pointers, itemsize: int):
    """Spans ``(candidate, start, length)`` of the tokens that follow each candidate's
    ``doc_idx`` position (up to ``need`` tokens), and how many tokens each got."""
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    need = np.ascontiguousarray(need, dtype=np.int64)
    if positions.shape != need.shape:
        raise UsageError("tail_spans: positions and need differ in length")
    if positions.size and (int(positions.min()) < 0 or int(positions.max()) >= len(doc_idx)):
        raise UsageError("tail_spans: position outside doc_idx")
    cap = max(16, int(need.sum()) if need.size else 16)
    span_pos = np.empty(cap, dtype=np.int64)
    span_start = np.empty(cap, dtype=np.int64)
    span_len = np.empty(cap, dtype=np.int64)
    counts = np.empty(positions.shape[0], dtype=np.int64)
    m = _tail_spans(positions, need, doc_idx, sizes, pointers, np.int64(itemsize), span_pos,
                    span_start, span_len, counts)
    if m < 0:  # pragma: no cover - cap bounds the spans (one per token at most)
        raise UsageError("tail_spans: internal capacity exceeded")
    return span_pos[:m], span_start[:m], span_len[:m], counts


@njit(cache=True, nogil=True)
def _rows_of(starts, lengths, seq_length, n_rows, out_occ, out_row, out_off, out_lo,
             out_hi):  # pragma: no cover - jit
    """Rows of the stream (row j = tokens [j*L, j*L + L]) holding each occurrence
    [s, s + m): the row where it lies whole (two rows for a one-token match on a shared
    token), else every row holding a part of it, with the part."""
    L = seq_length
    k = 0
    cap = out_occ.shape[0]
    for i in range(starts.shape[0]):
        s = starts[i]
        m = lengths[i]
        e = s + m - 1
        j0 = s // L
        if e <= j0 * L + L:
            if j0 < n_rows:
                if k >= cap:
                    return -1
                out_occ[k] = i
                out_row[k] = j0
                out_off[k] = s - j0 * L
                out_lo[k] = 0
                out_hi[k] = m
                k += 1
            if m == 1 and s % L == 0 and j0 >= 1 and j0 - 1 < n_rows:
                if k >= cap:
                    return -1
                out_occ[k] = i
                out_row[k] = j0 - 1
                out_off[k] = L
                out_lo[k] = 0
                out_hi[k] = 1
                k += 1
            continue
        jl = (e + L - 1) // L - 1
        for j in range(j0, jl + 1):
            if j >= n_rows:
                break
            a = s if s > j * L else j * L
            b = e if e < j * L + L else j * L + L
            if k >= cap:
                return -1
            out_occ[k] = i
            out_row[k] = j
            out_off[k] = a - j * L
            out_lo[k] = a - s
            out_hi[k] = b - s + 1
            k += 1
    return k


def rows_of(starts, lengths, seq_length: int, n_rows: int):
    """``(occurrence, row, offset_in_row, part_lo, part_hi)`` for occurrences of the stream
    (start, length): see :func:`_rows_of`. Rows ``>= n_rows`` do not exist and are left out."""
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    if starts.shape != lengths.shape:
        raise UsageError("rows_of: starts and lengths differ in length")
    if int(seq_length) < 1:
        raise UsageError("rows_of: seq_length must be positive")
    if starts.size and ((starts < 0).any() or (lengths < 1).any()):
        raise UsageError("rows_of: negative start or empty occurrence")
    cap = 2 * starts.shape[0] + 16
    if lengths.size:
        cap += int((lengths // int(seq_length)).sum())
    outs = [np.empty(cap, dtype=np.int64) for _ in range(5)]
    k = _rows_of(starts, lengths, np.int64(seq_length), np.int64(n_rows), *outs)
    if k < 0:  # pragma: no cover - cap bounds the rows
        raise UsageError("rows_of: internal capacity exceeded")
    return tuple(o[:k] for o in outs)
