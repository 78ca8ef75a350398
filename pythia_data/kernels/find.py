"""Kernels of ``pythia-data find``: many token sequences at once over a token stream, and the
inverse of a GPT-NeoX training order (see docs/find.md).

Matching uses anchors. Each query is found through one of its tokens, its *anchor*: the
rarest of its tokens by a count the caller supplies (token counts in a sample of the data),
the first token without counts. The scan tests every position against a 64 Ki-entry table
of anchor tokens (exact for token ids below 2**16, hashed above) -- one load per token; with
a single anchor token it counts that token in blocks of 64 instead, which vectorises. Where
an anchor occurs, the queries anchored on that token are looked up in an open-addressing
table and compared token for token at ``position - anchor offset``. Tables only decide what
to compare, never what is reported, so a collision costs time, not correctness.

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

CKPT_SHIFT = 4  # the stream offset of every 16th doc_idx position is stored
STEP_MAX = 8  # the sampled-pair pass looks at every 2nd..8th position

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
def _pair_bit(a, b, before, shift):  # pragma: no cover - jit
    """Bit of the pair (anchor ``a``, its neighbour ``b``; ``before``: b precedes a)."""
    x = (np.uint64(np.uint32(a)) << np.uint64(32)) ^ np.uint64(np.uint32(b))
    x ^= np.uint64(before) * _C3
    return (x * _C2) >> np.uint64(shift)


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


@njit(cache=True, nogil=True, inline="always")
def _f1_index(t, exact16):  # pragma: no cover - jit
    if exact16:
        return np.int64(t)
    return np.int64((np.uint64(np.uint32(t)) * _C1) >> np.uint64(48))


@njit(cache=True, nogil=True, inline="always")
def _emit_if_match(buf, base, start, de, doc, q, qtok, qoff, ds, out_doc, out_off, out_q,
                   n_out):  # pragma: no cover - jit
    """A candidate of both passes: query ``q`` at stream position ``start`` (known to be in
    the document and the range). If the whole query fits before ``de`` and matches, it is
    written as hit ``n_out``. Returns the new output count, or -1 when the output is full."""
    m = qoff[q + 1] - qoff[q]
    if start + m > de:
        return n_out
    i = start - base
    for j in range(m):
        if buf[i + j] != qtok[qoff[q] + j]:
            return n_out
    if n_out >= out_doc.shape[0]:
        return -1
    out_doc[n_out] = doc
    out_off[n_out] = start - ds
    out_q[n_out] = q
    return n_out + 1


@njit(cache=True, nogil=True, inline="always")
def _anchor_hits(buf, base, v, t, flag, pair_bits, pair_shift, lo, hi, ds, de, doc, qtok,
                 qoff, anchor, tbl_keys, tbl_lo, tbl_hi, qorder, out_doc, out_off, out_q,
                 n_out):  # pragma: no cover - jit
    """Token ``t`` at stream position ``v`` is the anchor of some queries: report each
    whose whole match (starting at ``v - anchor``) lies in the document [ds, de) and
    starts in [lo, hi). Returns the new output count, or -1 when the output is full.

    ``flag`` 1: every query anchored on ``t`` has a neighbour of its anchor; the pair
    (anchor, next token) or (anchor, previous token) must then be in ``pair_bits``."""
    if flag == 1:
        i = v - base
        found = False
        if v + 1 < de:
            bit = _pair_bit(t, buf[i + 1], 0, pair_shift)
            found = (pair_bits[bit >> np.uint64(6)] >> (bit & np.uint64(63))) & np.uint64(1) == 1
        if not found and v - 1 >= ds:
            bit = _pair_bit(t, buf[i - 1], 1, pair_shift)
            found = (pair_bits[bit >> np.uint64(6)] >> (bit & np.uint64(63))) & np.uint64(1) == 1
        if not found:
            return n_out
    s = _probe(tbl_keys, _mix(np.uint64(t) + np.uint64(1)) | np.uint64(1))
    if s < 0:
        return n_out
    for r in range(tbl_lo[s], tbl_hi[s]):
        q = qorder[r]
        start = v - anchor[q]
        if start < lo or start >= hi or start < ds:
            continue
        n_out = _emit_if_match(buf, base, start, de, doc, q, qtok, qoff, ds, out_doc,
                               out_off, out_q, n_out)
        if n_out < 0:
            return -1
    return n_out


@njit(cache=True, nogil=True, inline="always")
def _strided_hits(buf, base, first, e, step, lo, hi, ds, de, doc, qtok, qoff, sp_bits,
                  sp_shift, sp_keys, sp_lo, sp_hi, sp_q, sp_j, out_doc, out_off, out_q,
                  n_out):  # pragma: no cover - jit
    """The sampled pass over one document: the pairs (token p, token p + 1) at positions p
    = first, first + step, ... below e. Returns the new output count, or -1 when full."""
    six = np.uint64(6)
    low6 = np.uint64(63)
    one = np.uint64(1)
    # unsigned buffer indices: numba adds no wrap-around check for them
    p = first - step
    for k in range(first - base, e - base, step):
        i = np.uint64(k)
        t = buf[i]
        u = buf[i + one]
        p += step
        x = (np.uint64(np.uint32(t)) << np.uint64(32)) ^ np.uint64(np.uint32(u))
        bit = (x * _C2) >> np.uint64(sp_shift)
        if (sp_bits[bit >> six] >> (bit & low6)) & one != one:
            continue
        s = _probe(sp_keys, _mix(x) | one)
        if s < 0:
            continue
        for r in range(sp_lo[s], sp_hi[s]):
            q = sp_q[r]
            start = p - sp_j[r]
            if start < lo or start >= hi or start < ds:
                continue
            n_out = _emit_if_match(buf, base, start, de, doc, q, qtok, qoff, ds, out_doc,
                                   out_off, out_q, n_out)
            if n_out < 0:
                return -1
    return n_out


@njit(cache=True, nogil=True)
def _scan(buf, base, lo, hi, vstarts, vends, doc_first, qtok, qoff, anchor, max_anchor,
          tbl_keys, tbl_lo, tbl_hi, qorder, f1, exact16, single, single_tok, single_flag,
          pair_bits, pair_shift, tail_keys, tail_lo, tail_hi, tail_q, tail_t, max_tail,
          out_doc, out_off, out_q, tail_doc, tail_qo, tail_to, step, sp_bits, sp_shift,
          sp_keys, sp_lo, sp_hi, sp_q, sp_j):  # pragma: no cover - jit
    """Matches starting in stream positions [lo, hi) (buffer index = position - base) and
    tails of the documents whose last token is in [lo, hi). Returns (matches, tails); -1
    in either when an output array is full (the caller grows them and calls again)."""
    n_out = 0
    n_tail = 0
    tcap = tail_doc.shape[0]
    six = np.uint64(6)
    low6 = np.uint64(63)
    one = np.uint64(1)
    for k in range(vstarts.shape[0]):
        ds = vstarts[k]
        de = vends[k]
        a = ds if ds > lo else lo
        # anchors of matches starting in [lo, hi) lie in [lo, hi + max_anchor)
        b = de if de < hi + max_anchor else hi + max_anchor
        doc = doc_first + k
        if step > 1:
            # sampled pairs: every step-th stream position p (p + 1 in the document); a
            # match starting in [lo, hi) has exactly one such p among its first `step`
            # tokens, and every query has more than `step` tokens
            e = de - 1 if de - 1 < hi + step - 1 else hi + step - 1
            first = ((a + step - 1) // step) * step
            if e > first:
                n_out = _strided_hits(buf, base, first, e, step, lo, hi, ds, de, doc, qtok,
                                      qoff, sp_bits, sp_shift, sp_keys, sp_lo, sp_hi, sp_q,
                                      sp_j, out_doc, out_off, out_q, n_out)
                if n_out < 0:
                    return -1, n_tail
        elif single:
            if b > a:
                tok = single_tok[0]
                # one anchor token: count it in blocks of 64 (vectorised), look closer
                # only where it occurs
                seg = buf[a - base:b - base]
                nn = seg.shape[0]
                v = 0
                while v < nn:
                    e = v + 64 if v + 64 < nn else nn
                    c = 0
                    for t in seg[v:e]:
                        c += t == tok
                    if c:
                        for j, t in enumerate(seg[v:e]):
                            if t == tok:
                                n_out = _anchor_hits(buf, base, a + v + j, tok, single_flag,
                                                     pair_bits, pair_shift, lo, hi, ds, de,
                                                     doc, qtok, qoff, anchor, tbl_keys, tbl_lo,
                                                     tbl_hi, qorder, out_doc, out_off, out_q,
                                                     n_out)
                                if n_out < 0:
                                    return -1, n_tail
                    v = e
        elif b > a:
            # (iterating over a slice: indexing with a signed position costs numba a
            # wrap-around check per token, ~3x slower; the two loops keep the table
            # choice out of the per-token path)
            seg = buf[a - base:b - base]
            if exact16:
                for j, t in enumerate(seg):
                    flag = f1[t]
                    if flag == 0:
                        continue
                    v = a + j
                    if flag == 1:  # the pair filter, inline: most anchors stop here
                        i = v - base
                        ok = False
                        if v + 1 < de:
                            bit = _pair_bit(t, buf[i + 1], 0, pair_shift)
                            ok = (pair_bits[bit >> six] >> (bit & low6)) & one == one
                        if not ok and v - 1 >= ds:
                            bit = _pair_bit(t, buf[i - 1], 1, pair_shift)
                            ok = (pair_bits[bit >> six] >> (bit & low6)) & one == one
                        if not ok:
                            continue
                    n_out = _anchor_hits(buf, base, v, t, 2, pair_bits, pair_shift, lo, hi,
                                         ds, de, doc, qtok, qoff, anchor, tbl_keys, tbl_lo,
                                         tbl_hi, qorder, out_doc, out_off, out_q, n_out)
                    if n_out < 0:
                        return -1, n_tail
            else:
                for j, t in enumerate(seg):
                    flag = f1[_f1_index(t, False)]
                    if flag:
                        n_out = _anchor_hits(buf, base, a + j, t, flag, pair_bits,
                                             pair_shift, lo, hi, ds, de, doc, qtok,
                                             qoff, anchor, tbl_keys, tbl_lo, tbl_hi, qorder,
                                             out_doc, out_off, out_q, n_out)
                        if n_out < 0:
                            return -1, n_tail
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


_M64 = (1 << 64) - 1


def _py_f1_index(t: int) -> int:
    return ((int(t) & 0xFFFFFFFF) * int(_C1) & _M64) >> 48


def _py_pair_bit(a: int, b: int, before: int, shift: int) -> int:
    x = ((int(a) & 0xFFFFFFFF) << 32) ^ (int(b) & 0xFFFFFFFF)
    x ^= (before * int(_C3)) & _M64
    return ((x * int(_C2)) & _M64) >> shift


def _py_mix(h: int) -> int:
    h ^= h >> 30
    h = (h * int(_C2)) & _M64
    h ^= h >> 27
    h = (h * int(_C3)) & _M64
    h ^= h >> 31
    return h


class QueryTables:
    """Everything :func:`scan` needs about a set of queries (token sequences), built once.

    ``qtok``/``qoff``: the queries' tokens back to back (int64) and their offsets (n + 1).
    ``tails``: also build the tail table (needed when another document may follow)."""

    def __init__(self, queries: list[np.ndarray], tails: bool = True, counts=None):
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
        n = len(queries)
        # anchors: each query is found through its rarest token (by ``counts``, e.g. token
        # counts from a sample of the data; ties and unknown counts: the first such token)
        counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        self.anchor = np.zeros(n, dtype=np.int64)
        for q in range(n):
            toks = self.qtok[self.qoff[q]:self.qoff[q + 1]]
            if counts is not None and counts.size:
                inside = toks < counts.shape[0]
                c = np.where(inside, counts[np.minimum(toks, counts.shape[0] - 1)], 0)
                self.anchor[q] = int(np.argmin(c))
        self.max_anchor = int(self.anchor.max())
        anchor_tok = self.qtok[self.qoff[:-1] + self.anchor]
        hashes = np.array([_py_mix(int(t) + 1) | 1 for t in anchor_tok.tolist()],
                          dtype=np.uint64)
        self.keys, self.lo, self.hi, self.qorder = _table(hashes, np.arange(n, dtype=np.int64))
        distinct = np.unique(anchor_tok)
        self.single = distinct.shape[0] == 1
        self.single_tok = int(distinct[0])
        # anchor-token tables: exact (for uint8/uint16 data) and hashed (wider ids)
        self.fits16 = bool(int(distinct.max()) < (1 << 16) and int(distinct.min()) >= 0)
        # second filter: (anchor, next token) -- or (anchor, previous token) for a query
        # anchored on its last token; flag 2 marks anchors of one-token queries (no pair)
        bits = min(22, max(16, (64 * n - 1).bit_length()))
        self.pair_shift = 64 - bits
        self.pair_bits = np.zeros((1 << bits) // 64, dtype=np.uint64)
        flag_of = {}
        for q in range(n):
            r, m = int(self.anchor[q]), int(lengths[q])
            a = int(self.qtok[self.qoff[q] + r])
            if m == 1:
                flag_of[a] = 2
                continue
            flag_of.setdefault(a, 1)
            before = 0 if r + 1 < m else 1
            b = int(self.qtok[self.qoff[q] + r + (1 if before == 0 else -1)])
            bit = _py_pair_bit(a, b, before, self.pair_shift)
            self.pair_bits[bit >> 6] |= np.uint64(1 << (bit & 63))
        self.single_flag = flag_of[self.single_tok]
        self.f1_exact = np.zeros(1 << 16, dtype=np.uint8)
        self.f1_hash = np.zeros(1 << 16, dtype=np.uint8)
        for t in distinct.tolist():
            if self.fits16:
                self.f1_exact[t] = flag_of[t]
            k = _py_f1_index(t)
            self.f1_hash[k] = max(int(self.f1_hash[k]), flag_of[t])
        # sampled pairs (with step s >= 2 when every query has more than 2 tokens and
        # there is more than one anchor token): the pairs (q[j], q[j + 1]) for j < s of
        # every query, each with (query, j); the scan then looks at every s-th position
        # only, where the anchor pass looks at every position
        self.step = 1 if (self.single or int(lengths.min()) < 3) else min(
            STEP_MAX, int(lengths.min()) - 1)
        self._pair_tables(n)
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


    def _pair_tables(self, n: int) -> None:
        step = self.step
        if step < 2:
            self.sp_shift = 64 - 6
            self.sp_bits = np.zeros(1, dtype=np.uint64)
            self.sp_keys = np.zeros(1024, dtype=np.uint64)
            self.sp_lo = self.sp_hi = np.zeros(1024, dtype=np.int64)
            self.sp_q = self.sp_j = np.zeros(0, dtype=np.int64)
            return
        entries = n * step
        bits = min(23, max(15, (32 * entries - 1).bit_length()))
        self.sp_shift = 64 - bits
        self.sp_bits = np.zeros((1 << bits) // 64, dtype=np.uint64)
        keys, qs, js = [], [], []
        for q in range(n):
            toks = self.qtok[self.qoff[q]:self.qoff[q + 1]].tolist()
            for j in range(step):
                x = ((toks[j] & 0xFFFFFFFF) << 32) ^ (toks[j + 1] & 0xFFFFFFFF)
                bit = ((x * int(_C2)) & _M64) >> self.sp_shift
                self.sp_bits[bit >> 6] |= np.uint64(1 << (bit & 63))
                keys.append(_py_mix(x) | 1)
                qs.append(q)
                js.append(j)
        payload = np.stack([np.array(qs, dtype=np.int64), np.array(js, dtype=np.int64)], 1)
        self.sp_keys, self.sp_lo, self.sp_hi, order = _table(
            np.array(keys, dtype=np.uint64), np.arange(entries, dtype=np.int64))
        self.sp_q = np.ascontiguousarray(payload[order, 0])
        self.sp_j = np.ascontiguousarray(payload[order, 1])


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
        # what the kernel reads: matches [max(ds, lo), min(de, hi + max_len - 1)), the
        # token before an anchor, tails [de - max_tail, de) within the document
        low = int(np.maximum(vstarts[used], lo - max(tables.max_tail, 1)).min())
        high = int(np.minimum(vends[used], hi + tables.max_len - 1).max())
        if low < base or high > end:
            raise UsageError(f"scan: the buffer [{base}, {end}) does not cover [{low}, {high})")
    exact16 = tables.fits16 and buf.dtype in (np.uint8, np.uint16)
    f1 = tables.f1_exact if exact16 else tables.f1_hash
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
                      np.int64(doc_first), tables.qtok, tables.qoff, tables.anchor,
                      np.int64(tables.max_anchor), tables.keys, tables.lo, tables.hi,
                      tables.qorder, f1, exact16, tables.single,
                      np.array([tables.single_tok]).astype(buf.dtype),
                      np.uint8(tables.single_flag), tables.pair_bits,
                      np.int64(tables.pair_shift), tables.tail_keys,
                      tables.tail_lo,
                      tables.tail_hi, tables.tail_q, tables.tail_t,
                      np.int64(tables.max_tail), out_doc, out_off, out_q, tail_doc, tail_q,
                      tail_t, np.int64(tables.step), tables.sp_bits, np.int64(tables.sp_shift),
                      tables.sp_keys, tables.sp_lo, tables.sp_hi, tables.sp_q, tables.sp_j)
        if n < 0:
            cap *= 4
            continue
        if nt < 0:
            tcap *= 4
            continue
        return (out_doc[:n], out_off[:n], out_q[:n]), (tail_doc[:nt], tail_q[:nt], tail_t[:nt])


@njit(cache=True, nogil=True)
def _touch_pages(buf, step):  # pragma: no cover - jit
    s = np.uint8(0)
    for i in range(0, buf.shape[0], step):
        s ^= buf[i]
    if buf.shape[0]:
        s ^= buf[buf.shape[0] - 1]
    return s


def touch_pages(buf: np.ndarray, page: int = 4096) -> int:
    """Read one byte of every ``page`` bytes of ``buf`` (a uint8 view of a memory map) and
    its last byte: the pages are then in memory (the kernel reads a mapped file ahead when
    its pages are touched in order). Returns the XOR of the bytes read."""
    if buf.ndim != 1 or buf.dtype != np.uint8:
        raise UsageError("touch_pages: a 1-D uint8 array is needed")
    if int(page) < 1:
        raise UsageError("touch_pages: page must be positive")
    return int(_touch_pages(buf, np.int64(page)))


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
