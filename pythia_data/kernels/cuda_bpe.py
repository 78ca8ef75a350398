"""numba.cuda BPE kernels: prefix sums, pre-token compaction, distinct pre-tokens (device hash
table), one thread per distinct pre-token BPE, and scattering ids back in document order.

After :mod:`pythia_data.kernels.cuda_pretokenize` has marked pre-token starts in ``flag``:

1. ``pidx`` = exclusive prefix sum of ``flag`` (:func:`scan`): the pre-token index of each
   start; ``pidx[n]`` is the number of pre-tokens P (read on the device, never synchronized).
2. :func:`compact_kernel`: ``pstart[k]`` = first byte of pre-token k, ``pstart[P] = n``.
3. :func:`dedupe_kernel`: every multi-byte text pre-token is inserted into an open-addressing
   table (``table`` int32, power-of-two size, -1 empty) with ``cuda.atomic.cas``; ``rep[k]``
   is the first pre-token inserted with the same bytes (its representative).
4. :func:`bpe_kernel`: one thread per representative runs byte-level BPE (lowest merge rank
   first, leftmost on ties: the cpu engine's
   :func:`pythia_data.kernels.bpe.bpe_word_packed`) in place over the pre-token's own byte range of the scratch arrays ``ssym``/``srank``/
   ``snew`` (so no per-thread allocation); ``nsym[k]`` = its id count.
5. :func:`count_kernel` + :func:`scan`: output position of each pre-token;
   :func:`scatter_kernel` writes the ids, :func:`doc_offsets_kernel` the document offsets.

The merge table on the device is keyed by ``(left, right)`` with :func:`pair_hash`, a hash
that needs no 64-bit overflow (the simulator runs the same code in Python); its entries (rank,
new id) are copied from the cpu engine's table (:func:`build_pair_table`).
"""

from __future__ import annotations

import numpy as np
from numba import cuda, njit

from pythia_data.kernels.cuda_pretokenize import KIND_TOKEN, doc_of

__all__ = [
    "INF_RANK",
    "pair_hash",
    "build_pair_table",
    "chunk_sum_kernel",
    "chunk_scan_kernel",
    "serial_scan_kernel",
    "compact_kernel",
    "dedupe_kernel",
    "bpe_kernel",
    "count_kernel",
    "scatter_kernel",
    "doc_offsets_kernel",
]

INF_RANK = 2**31 - 1
_MASK32 = 0xFFFFFFFF


def _pair_hash(left, right):
    """32-bit hash of a pair of ids (< 2**31); no intermediate exceeds 2**63."""
    h = (np.int64(left) * 0x9E3779B1) & _MASK32
    h = h ^ ((np.int64(right) * 0x85EBCA77) & _MASK32)
    h = h ^ (h >> 15)
    h = (h * 0x2C1B3C6D) & _MASK32
    return h ^ (h >> 12)


pair_hash = cuda.jit(device=True)(_pair_hash)
_pair_hash_cpu = njit(cache=True)(_pair_hash)


@njit(cache=True)
def build_pair_table(merge_keys, merge_rank, merge_new, size):  # pragma: no cover - jit
    """The cpu engine's merge table (keys ``left << 32 | right``, -1 empty) re-hashed with
    :func:`pair_hash` into ``size`` (power of two) slots: (keys, ranks, news)."""
    keys = np.full(size, -1, dtype=np.int64)
    ranks = np.zeros(size, dtype=np.int32)
    news = np.zeros(size, dtype=np.int32)
    mask = size - 1
    for i in range(merge_keys.shape[0]):
        key = merge_keys[i]
        if key == -1:
            continue
        slot = _pair_hash_cpu(key >> 32, key & _MASK32) & mask
        while keys[slot] != -1:
            slot = (slot + 1) & mask
        keys[slot] = key
        ranks[slot] = merge_rank[i]
        news[slot] = merge_new[i]
    return keys, ranks, news


# ---------------------------------------------------------------------------- prefix sums


@cuda.jit(cache=True)
def chunk_sum_kernel(src, m, chunk, sums):  # pragma: no cover - device code
    """``sums[c]`` = sum of ``src[c * chunk : (c + 1) * chunk]`` (clipped to m)."""
    c = cuda.grid(1)
    step = cuda.gridsize(1)
    n_chunks = (m + chunk - 1) // chunk
    while c < n_chunks:
        s = np.int64(0)
        end = min(m, (c + 1) * chunk)
        for i in range(c * chunk, end):
            s += np.int64(src[i])
        sums[c] = s
        c += step


@cuda.jit(cache=True)
def chunk_scan_kernel(src, dst, m, chunk, bases):  # pragma: no cover - device code
    """Exclusive scan of each chunk from its base ``bases[c]``; ``dst[m]`` = the total.
    ``dst`` may be ``src``."""
    c = cuda.grid(1)
    step = cuda.gridsize(1)
    n_chunks = max(1, (m + chunk - 1) // chunk)
    while c < n_chunks:
        run = bases[c]
        end = min(m, (c + 1) * chunk)
        for i in range(c * chunk, end):
            v = np.int64(src[i])
            dst[i] = run
            run += v
        if c == n_chunks - 1:
            dst[m] = run
        c += step


@cuda.jit(cache=True)
def serial_scan_kernel(src, dst, m):  # pragma: no cover - device code
    """Exclusive scan by one thread (small arrays); ``dst[m]`` = the total."""
    if cuda.grid(1) == 0:
        run = np.int64(0)
        for i in range(m):
            v = np.int64(src[i])
            dst[i] = run
            run += v
        dst[m] = run


# ---------------------------------------------------------------------------- pre-tokens


@cuda.jit(cache=True)
def compact_kernel(flag, pidx, n, pstart):  # pragma: no cover - device code
    p = cuda.grid(1)
    step = cuda.gridsize(1)
    if p == 0:
        pstart[pidx[n]] = n
    while p < n:
        if flag[p] != 0:
            pstart[pidx[p]] = p
        p += step


@cuda.jit(device=True)
def _fnv(data, a, b):  # pragma: no cover - device code
    h = np.int64(2166136261)
    for i in range(a, b):
        h = ((h ^ np.int64(data[i])) * 16777619) & _MASK32
    return h


@cuda.jit(device=True)
def _same_bytes(data, a, b, c, d):  # pragma: no cover - device code
    if b - a != d - c:
        return False
    for i in range(b - a):
        if data[a + i] != data[c + i]:
            return False
    return True


@cuda.jit(cache=True)
def dedupe_kernel(data, n, kind, pidx, pstart, table, rep):  # pragma: no cover - device code
    """``rep[k]``: the representative of pre-token k (itself for added tokens and 1-byte
    pre-tokens)."""
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    n_pieces = pidx[n]
    mask = table.shape[0] - 1
    while k < n_pieces:
        a = pstart[k]
        b = pstart[k + 1]
        if kind[a] == KIND_TOKEN or b - a == 1:
            rep[k] = k
            k += step
            continue
        slot = _fnv(data, a, b) & mask
        while True:
            old = cuda.atomic.cas(table, slot, np.int32(-1), np.int32(k))
            if old == -1:
                rep[k] = k
                break
            if _same_bytes(data, a, b, pstart[old], pstart[old + 1]):
                rep[k] = old
                break
            slot = (slot + 1) & mask
        k += step


@cuda.jit(device=True)
def _lookup(pkeys, pranks, pnews, left, right):  # pragma: no cover - device code
    """(rank, new id) of the merge (left, right), (INF_RANK, -1) when there is none."""
    key = (np.int64(left) << 32) | np.int64(right)
    mask = pkeys.shape[0] - 1
    slot = pair_hash(left, right) & mask
    while True:
        k = pkeys[slot]
        if k == key:
            return pranks[slot], pnews[slot]
        if k == -1:
            return INF_RANK, -1
        slot = (slot + 1) & mask


@cuda.jit(cache=True)
def bpe_kernel(data, n, kind, pidx, pstart, rep, byte_id, pkeys, pranks, pnews, ssym, srank,
               snew, nsym, long_piece):  # pragma: no cover - device code
    """BPE of every representative pre-token, in place at its byte range of the scratch.

    A pre-token longer than ``long_piece`` bytes is not done here (BPE is quadratic in its
    length and one GPU thread is slow): :func:`count_kernel` routes its documents."""
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    n_pieces = pidx[n]
    while k < n_pieces:
        a = pstart[k]
        b = pstart[k + 1]
        if rep[k] != k or kind[a] == KIND_TOKEN or b - a == 1:
            k += step
            continue
        m = b - a
        if m > long_piece:
            nsym[k] = 0
            k += step
            continue
        for i in range(m):
            ssym[a + i] = byte_id[data[a + i]]
        for i in range(m - 1):
            r, nw = _lookup(pkeys, pranks, pnews, ssym[a + i], ssym[a + i + 1])
            srank[a + i] = r
            snew[a + i] = nw
        while m > 1:
            best = INF_RANK
            at = -1
            for i in range(m - 1):
                if srank[a + i] < best:
                    best = srank[a + i]
                    at = i
            if at < 0:
                break
            ssym[a + at] = snew[a + at]
            for i in range(at + 1, m - 1):
                ssym[a + i] = ssym[a + i + 1]
                srank[a + i] = srank[a + i + 1]
                snew[a + i] = snew[a + i + 1]
            m -= 1
            if at > 0:
                r, nw = _lookup(pkeys, pranks, pnews, ssym[a + at - 1], ssym[a + at])
                srank[a + at - 1] = r
                snew[a + at - 1] = nw
            if at < m - 1:
                r, nw = _lookup(pkeys, pranks, pnews, ssym[a + at], ssym[a + at + 1])
                srank[a + at] = r
                snew[a + at] = nw
        nsym[k] = m
        k += step


@cuda.jit(cache=True)
def count_kernel(n, offsets, n_docs, kind, pidx, pstart, rep, nsym, long_piece, doc_route,
                 counts):  # pragma: no cover - device code
    """``counts[k]`` = ids of pre-token k (0 for k >= the pre-token count, up to n); a
    pre-token longer than ``long_piece`` counts 0 and routes its document."""
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    n_pieces = pidx[n]
    while k < n:
        if k >= n_pieces:
            counts[k] = 0
        else:
            a = pstart[k]
            m = pstart[k + 1] - a
            if kind[a] == KIND_TOKEN or m == 1:
                counts[k] = 1
            elif m > long_piece:
                counts[k] = 0
                doc_route[doc_of(offsets, n_docs, a)] = 1
            else:
                counts[k] = nsym[rep[k]]
        k += step


@cuda.jit(cache=True)
def scatter_kernel(data, n, kind, tokid, pidx, pstart, rep, nsym, ssym, byte_id, opos,
                   ids):  # pragma: no cover - device code
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    n_pieces = pidx[n]
    while k < n_pieces:
        a = pstart[k]
        o = opos[k]
        if kind[a] == KIND_TOKEN:
            ids[o] = tokid[a]
        elif pstart[k + 1] - a == 1:
            ids[o] = byte_id[data[a]]
        else:
            r = rep[k]
            ra = pstart[r]
            for t in range(nsym[r]):
                ids[o + t] = ssym[ra + t]
        k += step


@cuda.jit(cache=True)
def doc_offsets_kernel(offsets, n_docs, pidx, opos, doc_out):  # pragma: no cover - device code
    d = cuda.grid(1)
    step = cuda.gridsize(1)
    while d <= n_docs:
        doc_out[d] = opos[pidx[offsets[d]]]
        d += step
