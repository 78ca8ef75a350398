"""Byte-level BPE kernels: merge table, BPE of one pre-token, pre-token cache, the batch
encoder, and byte-level decoding.

Tables (plain numpy arrays, usable from numba.cuda later):

* ``byte_id`` int32[256]: the token id of each single byte (through GPT-2's byte->unicode
  map).
* merge table: open addressing, ``merge_keys`` int64 (``left << 32 | right``, -1 = empty),
  ``merge_rank`` int32 (merge priority, lower first) and ``merge_new`` int32 (the merged
  token id); size a power of two.
* pre-token cache (one per worker thread): ``cache_table`` int64[4 S] (S slots of four
  words, the short keys and few ids inline, see :func:`_cache_find`), the arenas
  ``cache_keys`` uint8 (keys over CACHE_INLINE_KEY bytes) and ``cache_vals`` int32 (over 2
  ids), and ``cache_state`` int64[6] = (entries, key bytes used, ids used, full flag, hits,
  misses). At most S / 2 entries: a full cache stops inserting and sets the flag; the caller
  decides between calls whether
  to clear it (see ``pythia_data.tokenize.cpu``).
"""

from __future__ import annotations

import functools
import types

import numpy as np
from numba import njit

from pythia_data.kernels.pretokenize import (
    CLS_WS,
    ascii_end,
    borrow,
    borrow_readonly,
    cp_at,
    find_byte,
    find_pair,
    load8,
    next_pretoken_fast,
    nfc,
    prefetch,
    root_byte,
    root_pair,
    trie_longest,
    utf8_decode,
    utf8_encode,
)
from pythia_data.kernels.pretokenize_split import (
    FAMILY_CL100K,
    FAMILY_DEEPSEEK_V3,
    FAMILY_GPT2,
    FAMILY_O200K,
    FAMILY_QWEN2,
    FAMILY_QWEN3_5,
    match_cl100k_family,
    match_none,
    match_o200k,
    match_qwen2,
    match_qwen3_5,
    presplit_deepseek,
    presplit_none,
)

__all__ = [
    "build_merge_table",
    "bpe_word_packed",
    "bpe_word_heap_packed",
    "pack_merge_table",
    "merge_get",
    "family_encoder",
    "decode_documents_kernel",
    "cache_seed",
    "bpe_single_ids",
    "MAX_CACHED_KEY",
    "hot_table",
    "pair_table",
    "bpe_word_pairs",
]

MAX_CACHED_KEY = 128
CACHE_INLINE_KEY = 16  # longer cached keys live in the key arena
SCRATCH = 1 << 16  # pieces longer than this get their own scratch arrays
LONG_WORD = 48  # longer pre-tokens use the O(n log n) heap BPE

ST_OK = 0
ST_NEED_ROOM = 1


@njit(cache=True, nogil=True, inline="always")
def _mix(key):
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return h ^ (h >> np.uint64(31))


@njit(cache=True)
def build_merge_table(left, right, rank, new_id, size):  # pragma: no cover - jit
    """Open-addressing table of ``size`` (power of two) slots; returns (keys, ranks, news).
    A duplicate pair keeps its first (lowest-index) entry."""
    keys = np.full(size, -1, dtype=np.int64)
    ranks = np.zeros(size, dtype=np.int32)
    news = np.zeros(size, dtype=np.int32)
    mask = np.uint64(size - 1)
    for i in range(left.shape[0]):
        key = (np.int64(left[i]) << np.int64(32)) | np.int64(right[i])
        slot = _mix(key) & mask
        while keys[slot] != -1 and keys[slot] != key:
            slot = (slot + np.uint64(1)) & mask
        if keys[slot] == -1:
            keys[slot] = key
            ranks[slot] = rank[i]
            news[slot] = new_id[i]
    return keys, ranks, news


NO_MERGE = np.int64(2**63 - 1)
MERGE_HEAD = 2  # words before a packed merge table's slots: (slot count, filter shift)
FILTER_BITS = 16  # the packed table's filter bits per merge


def pack_merge_table(merge_keys, merge_rank, merge_new):
    """The merge table (slots from :func:`build_merge_table`) as one int64 array for
    :func:`merge_get`: the header (slot count S, then 64 - log2 F), the S slots as pairs
    (key, rank << 32 | merged id) -- one 16-byte entry, a probe reads one cache line --,
    then F 64-bit words of a blocked Bloom filter of the keys (F a power of two >= 2, about
    FILTER_BITS bits per merge; each key sets two bits of one word).

    The filter is there because most pairs a BPE asks about do not merge (58 % of the
    lookups after a merge, on the words the benchmark's cache missed): the filter (128 KiB
    for GPT-NeoX's 50,000 merges, against 2 MiB of slots; it stays in a core's L2 cache)
    answers nearly all of those without reading the slots. A key's filter word and bits
    come from the high bits of the slot hash; a set key always passes (no false "no")."""
    slots = merge_keys.shape[0]
    used = int(np.count_nonzero(merge_keys != -1))
    nf = 2
    while nf * 64 < FILTER_BITS * used:
        nf *= 2
    tab = np.zeros(MERGE_HEAD + 2 * slots + nf, dtype=np.int64)
    tab[0] = slots
    tab[1] = 64 - (nf.bit_length() - 1)
    tab[MERGE_HEAD:MERGE_HEAD + 2 * slots:2] = merge_keys
    tab[MERGE_HEAD + 1:MERGE_HEAD + 2 * slots:2] = (
        (merge_rank.astype(np.int64) << 32) | merge_new.astype(np.int64))
    _fill_filter(tab)
    return tab


@njit(cache=True, nogil=True, inline="always")
def _filter_at(merge_tab, h):
    """(index in ``merge_tab`` of the filter word, its two bits) of the slot hash ``h``."""
    slots = merge_tab[0]
    word = np.int64(h >> np.uint64(merge_tab[1]))
    bits = ((np.uint64(1) << ((h >> np.uint64(20)) & np.uint64(63)))
            | (np.uint64(1) << ((h >> np.uint64(26)) & np.uint64(63))))
    return MERGE_HEAD + 2 * slots + word, np.int64(bits)


@njit(cache=True, nogil=True)
def _fill_filter(tab):  # pragma: no cover - jit
    for slot in range(tab[0]):
        key = tab[MERGE_HEAD + 2 * slot]
        if key != -1:
            at, bits = _filter_at(tab, _mix(key))
            tab[at] |= bits


@njit(cache=True, nogil=True, inline="always")
def merge_get(merge_tab, a, b):  # pragma: no cover - jit
    """``rank << 32 | merged id`` of the pair (a, b) in a packed table
    (:func:`pack_merge_table`), or NO_MERGE: the filter first, then the slots."""
    key = (np.int64(a) << np.int64(32)) | np.int64(b)
    h = _mix(key)
    at, bits = _filter_at(merge_tab, h)
    if (merge_tab[at] & bits) != bits:
        return NO_MERGE
    mask = np.uint64(merge_tab[0] - 1)
    slot = h & mask
    while True:
        k = merge_tab[MERGE_HEAD + 2 * slot]
        if k == key:
            return merge_tab[MERGE_HEAD + 1 + 2 * slot]
        if k == -1:
            return NO_MERGE
        slot = (slot + np.uint64(1)) & mask


@njit(cache=True, nogil=True, inline="always")
def _merge_lowest(n, syms, vals, merge_tab):  # pragma: no cover - jit
    """The merge loop of :func:`bpe_word_packed` and :func:`bpe_word_pairs`: ``syms[:n]``
    with ``vals[i]`` the packed lookup of the pair (i, i + 1); merges the lowest value
    (lowest rank, leftmost on ties) until none is left. Returns the count."""
    while n > 1:
        best = NO_MERGE
        at = -1
        for i in range(n - 1):
            if vals[i] < best:
                best = vals[i]
                at = i
        if at < 0:
            break
        syms[at] = np.int32(best & np.int64(0xFFFFFFFF))
        for i in range(at + 1, n - 1):
            syms[i] = syms[i + 1]
            vals[i] = vals[i + 1]
        n -= 1
        if at > 0:
            vals[at - 1] = merge_get(merge_tab, syms[at - 1], syms[at])
        if at < n - 1:
            vals[at] = merge_get(merge_tab, syms[at], syms[at + 1])
    return n


@njit(cache=True, nogil=True)
def bpe_word_packed(data, a, b, byte_id, merge_tab, syms, vals):  # pragma: no cover - jit
    """BPE of the bytes ``data[a:b]`` into ``syms`` (room for b - a) over a packed merge
    table (``vals``: scratch int64, room for b - a); returns the count. Always merges the
    lowest-rank adjacent pair, the leftmost one on ties (what HF's priority-queue BPE does):
    the lowest ``rank << 32 | id`` is the lowest rank, the leftmost on ties."""
    n = b - a
    for i in range(n):
        syms[i] = byte_id[data[a + i]]
    for i in range(n - 1):
        vals[i] = merge_get(merge_tab, syms[i], syms[i + 1])
    return _merge_lowest(n, syms, vals, merge_tab)


@njit(cache=True, nogil=True)
def _fill_pair_table(byte_id, merge_tab, out):  # pragma: no cover - jit
    for x in range(256):
        for y in range(256):
            out[x * 256 + y] = merge_get(merge_tab, byte_id[x], byte_id[y])


def pair_table(byte_id: np.ndarray, merge_tab: np.ndarray) -> np.ndarray:
    """int64[65536]: entry ``x << 8 | y`` is :func:`merge_get` of the token ids of the bytes
    x and y (``rank << 32 | merged id``, or NO_MERGE): a pre-token's first merge lookups
    without hashing or probing (512 KiB against the hash table's spread-out slots)."""
    out = np.empty(65536, dtype=np.int64)
    _fill_pair_table(byte_id, merge_tab, out)
    return out


@njit(cache=True, nogil=True, _nrt=False)
def bpe_word_pairs(data, a, b, byte_id, pair_tab, merge_tab, syms,
                   vals):  # pragma: no cover - jit
    """:func:`bpe_word_packed` (the same result) with the first lookups (pairs of bytes)
    read from :func:`pair_table`. ``b - a >= 2``."""
    n = b - a
    prev = np.int64(data[a])
    syms[0] = byte_id[prev]
    for i in range(1, n):
        cur = np.int64(data[a + i])
        syms[i] = byte_id[cur]
        vals[i - 1] = pair_tab[(prev << np.int64(8)) | cur]
        prev = cur
    return _merge_lowest(n, syms, vals, merge_tab)


@njit(cache=True, nogil=True, inline="always")
def _heap_push(heap, size, key):
    i = size
    heap[i] = key
    while i > 0:
        parent = (i - 1) >> 1
        if heap[parent] <= heap[i]:
            break
        heap[parent], heap[i] = heap[i], heap[parent]
        i = parent
    return size + 1


@njit(cache=True, nogil=True, inline="always")
def _heap_pop(heap, size):
    top = heap[0]
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and heap[left + 1] < heap[left]:
            child = left + 1
        if heap[i] <= heap[child]:
            break
        heap[i], heap[child] = heap[child], heap[i]
        i = child
    return top, size


@njit(cache=True, nogil=True, _nrt=True)  # it allocates: never inherits a caller's _nrt=False
def bpe_word_heap_packed(data, a, b, byte_id, merge_tab, syms):  # pragma: no cover - jit
    """BPE of ``data[a:b]`` over a packed merge table in O(n log n) (for long pre-tokens): a
    heap of (rank, position) with stale entries skipped, like HF's BPE. Same result as
    :func:`bpe_word_packed`."""
    n = b - a
    nxt = np.empty(n, dtype=np.int64)
    prv = np.empty(n, dtype=np.int64)
    alive = np.ones(n, dtype=np.bool_)
    heap = np.empty(3 * n + 3, dtype=np.int64)
    size = 0
    for i in range(n):
        syms[i] = byte_id[data[a + i]]
        nxt[i] = i + 1 if i + 1 < n else -1
        prv[i] = i - 1
    for i in range(n - 1):
        v = merge_get(merge_tab, syms[i], syms[i + 1])
        if v != NO_MERGE:
            size = _heap_push(heap, size, (v >> np.int64(32) << np.int64(32)) | i)
    while size > 0:
        key, size = _heap_pop(heap, size)
        r = key >> np.int64(32)
        i = key & np.int64(0xFFFFFFFF)
        if not alive[i]:
            continue
        j = nxt[i]
        if j < 0:
            continue
        v = merge_get(merge_tab, syms[i], syms[j])
        if v == NO_MERGE or (v >> np.int64(32)) != r:
            continue
        syms[i] = np.int32(v & np.int64(0xFFFFFFFF))
        alive[j] = False
        k = nxt[j]
        nxt[i] = k
        if k >= 0:
            prv[k] = i
            vn = merge_get(merge_tab, syms[i], syms[k])
            if vn != NO_MERGE:
                size = _heap_push(heap, size, (vn >> np.int64(32) << np.int64(32)) | i)
        p = prv[i]
        if p >= 0:
            vp = merge_get(merge_tab, syms[p], syms[i])
            if vp != NO_MERGE:
                size = _heap_push(heap, size, (vp >> np.int64(32) << np.int64(32)) | p)
    m = 0
    i = 0
    while i >= 0:
        syms[m] = syms[i]
        m += 1
        i = nxt[i]
    return m


@njit(cache=True, nogil=True, inline="always")
def _word_at(data, i, n):
    """The ``n`` (1..8) bytes ``data[i:i+n]`` packed little-endian into an int64 (zero
    above byte n): one unaligned 8-byte load where 8 bytes remain in ``data``."""
    if i + 8 <= data.shape[0]:
        v = load8(data, i)
        if n < 8:
            v &= (np.uint64(1) << np.uint64(8 * n)) - np.uint64(1)
        return np.int64(v)
    v = np.int64(0)
    for t in range(n):
        v |= np.int64(data[i + t]) << np.int64(8 * t)
    return v


@njit(cache=True, nogil=True, inline="always")
def _key_hash(data, a, b):
    """(hash, bytes 0..7, bytes 8..15) of the key ``data[a:b]`` (1 <= b - a), the byte
    groups packed little-endian and zero-padded. One multiply per 8 bytes, then a
    splitmix64 finish (slots come from the low bits, tags from the high ones)."""
    n = b - a
    h = np.uint64(n) * np.uint64(0x9E3779B97F4A7C15)
    m0 = min(8, n)
    p0 = _word_at(data, a, m0)
    h = (h ^ np.uint64(p0)) * np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(32)
    p1 = np.int64(0)
    i = a + 8
    if i < b:
        m = min(8, b - i)
        p1 = _word_at(data, i, m)
        h = (h ^ np.uint64(p1)) * np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(32)
        i += 8
        while i < b:
            m = min(8, b - i)
            v = _word_at(data, i, m)
            h = (h ^ np.uint64(v)) * np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(32)
            i += m
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h, p0, p1


@njit(cache=True, nogil=True, inline="always")
def _cache_head(h, klen):
    """A slot's first word for a key of hash ``h`` and length ``klen``, its id count
    (low 8 bits) left out."""
    return (np.int64(h >> np.uint64(32)) << np.int64(32)) | (np.int64(klen) << np.int64(8))


@njit(cache=True, nogil=True, inline="always")
def _cache_find(data, a, b, h, p0, p1, ctab, ckeys):  # pragma: no cover - jit
    """(slot, found) of the key ``data[a:b]`` in the table: the slot holding it, or the
    empty slot where it would go.

    Slot s is the four words ``ctab[4s:4s+4]`` (32 bytes, two slots per 64-byte line):
    ``tag << 32 | key length << 8 | id count`` (0 = empty; tag = the hash's high half);
    the key's bytes 0..7; its bytes 8..15 (keys <= CACHE_INLINE_KEY bytes) or the key's
    offset in ``ckeys``; the ids (<= 2, packed) or their offset in ``cvals``. A lookup of a
    short key with one or two ids reads one cache line."""
    mask = np.uint64((ctab.shape[0] >> 2) - 1)
    slot = h & mask
    head = _cache_head(h, b - a)
    n = b - a
    while True:
        s = np.int64(slot) << np.int64(2)
        v = ctab[s]
        if v == 0:
            return slot, False
        if (v & np.int64(-256)) == head and ctab[s + 1] == p0:
            if n <= CACHE_INLINE_KEY:
                if ctab[s + 2] == p1:
                    return slot, True
            else:
                base = ctab[s + 2]
                same = True
                for i in range(8, n):
                    if ckeys[base + i] != data[a + i]:
                        same = False
                        break
                if same:
                    return slot, True
        slot = (slot + np.uint64(1)) & mask


@njit(cache=True, nogil=True, inline="always")
def _cache_put(data, a, b, h, p0, p1, slot, ids, nids, ctab, ckeys, cvals,
               cstate):  # pragma: no cover - jit
    """Store the key ``data[a:b]`` with ``ids[:nids]`` in the empty ``slot`` (from
    :func:`_cache_find`); sets the full flag instead when the table (half its slots) or an
    arena has no room. Returns whether it was stored."""
    ne = cstate[0]
    ku = cstate[1]
    vu = cstate[2]
    klen = b - a
    if (2 * (ne + 1) > (ctab.shape[0] >> 2)
            or (klen > CACHE_INLINE_KEY and ku + klen > ckeys.shape[0])
            or (nids > 2 and vu + nids > cvals.shape[0])):
        cstate[3] = 1
        return False
    s = np.int64(slot) << np.int64(2)
    ctab[s + 1] = p0
    if klen <= CACHE_INLINE_KEY:
        ctab[s + 2] = p1
    else:
        ctab[s + 2] = ku
        for t in range(klen):
            ckeys[ku + t] = data[a + t]
        cstate[1] = ku + klen
    if nids <= 2:
        vv = np.int64(ids[0]) & np.int64(0xFFFFFFFF)
        if nids == 2:
            vv |= np.int64(ids[1]) << np.int64(32)
        ctab[s + 3] = vv
    else:
        ctab[s + 3] = vu
        for t in range(nids):
            cvals[vu + t] = ids[t]
        cstate[2] = vu + nids
    ctab[s] = _cache_head(h, klen) | nids
    cstate[0] = ne + 1
    return True


HOT_BITS = 15  # the hot table's slots (see _emit): 2 ** HOT_BITS, 16 bytes each
HOT_ID_BITS = 20  # ids the hot table stores (vocabularies up to 2 ** 20 ids)
HOT_KEY = 8  # the hot table's longest key


def hot_table(bits: int = HOT_BITS) -> np.ndarray:
    """An empty hot table (int64[2 << bits]), see :func:`_emit`."""
    return np.zeros(2 << bits, dtype=np.int64)


@njit(cache=True, nogil=True, inline="always")
def _hot_slot(p0, n, shift):
    """Index in the hot table of the first word of the slot of the key word ``p0`` of
    ``n`` bytes (``shift``: 64 - log2 of the slot count; see :func:`_emit`)."""
    return np.int64(((np.uint64(p0) ^ np.uint64(n)) * np.uint64(0x9E3779B97F4A7C15))
                    >> shift) << np.int64(1)


@njit(cache=True, nogil=True, _nrt=False)
def _emit(src, kinds, pa, pb, k, out, w, byte_id, merge_tab, syms,
          mvals, ctab, ckeys, cvals, cstate, hot, pair_tab):  # pragma: no cover - jit
    """Write the ids of the ``k`` entries (kind 1: added token id ``pa``; kind 0: pre-token
    ``src[pa:pb]``, from the cache or BPE then cached) to ``out`` from ``w``; returns the new
    position. The entries are rewritten on the way.

    Pre-tokens of 2..HOT_KEY bytes are looked up first in ``hot``, a small direct-mapped
    table (int64[2 S], S a power of two; 2 ** HOT_BITS slots stay in the core's L2): slot
    ``((key word ^ length) * golden) >> (64 - log2 S)`` holds the key word (its bytes,
    little-endian, zero-padded) and ``id0 | id1 << 20 | id count << 40 | length << 44``
    (0 = empty). Every short pre-token with one or two ids (< 2 ** HOT_ID_BITS) that misses
    it is written there (replacing the slot's key) after the main cache or BPE answers.
    Its entries are never wrong for the tokenizer, so clearing the main cache keeps them.
    The hits and misses counted in ``cstate`` are the main cache's (what decides whether a
    full cache is cleared); hot-table hits are not counted.

    Two passes over the entries. The first answers what needs no writing: one-byte
    pre-tokens and hot-table hits become kind 1 (one id, in ``pa``) or kind 2 (two ids,
    ``pa`` and ``pb``); for every other pre-token it starts the load of the main cache's
    line (a prefetch), so the lookups of a batch wait for memory side by side rather than
    one after the other (the main table is tens of MB: most of its lines are not in any
    cache). The second writes the ids in order, looking up and filling the main cache.

    The per-entry work is written out in these loops on purpose: a numba call per
    pre-token that passes the ~15 table arrays costs more than the cache lookup itself
    (measured 3x)."""
    id_mask = np.int64((1 << HOT_ID_BITS) - 1)
    shift = np.uint64(64) - np.uint64(np.log2(np.float64(hot.shape[0] >> 1)) + 0.5)
    cmask = np.uint64((ctab.shape[0] >> 2) - 1)
    for j in range(k):
        if kinds[j] != 0:
            continue
        a = pa[j]
        n = pb[j] - a
        if n == 1:
            kinds[j] = 1
            pa[j] = byte_id[src[a]]
            continue
        if n <= HOT_KEY:
            p0 = _word_at(src, a, n)
            hs = _hot_slot(p0, n, shift)
            e1 = hot[hs + 1]
            if hot[hs] == p0 and (e1 >> np.int64(44)) == n:
                kinds[j] = 1 + ((e1 >> np.int64(40)) & np.int64(0xF) == 2)
                pa[j] = e1 & id_mask
                pb[j] = (e1 >> np.int64(HOT_ID_BITS)) & id_mask
                continue
        if n <= MAX_CACHED_KEY:
            h, _p0, _p1 = _key_hash(src, a, a + n)
            prefetch(ctab, np.int64(h & cmask) << np.int64(2))
    hits = 0
    misses = 0
    for j in range(k):
        kind = kinds[j]
        if kind != 0:
            out[w] = pa[j]
            if kind == 2:
                out[w + 1] = pb[j]
                w += 2
            else:
                w += 1
            continue
        a = pa[j]
        b = pb[j]
        n = b - a
        cacheable = n <= MAX_CACHED_KEY
        slot = np.uint64(0)
        h = np.uint64(0)
        p0 = np.int64(0)
        p1 = np.int64(0)
        nsym = 0
        found = False
        if cacheable:
            h, p0, p1 = _key_hash(src, a, b)
            slot, found = _cache_find(src, a, b, h, p0, p1, ctab, ckeys)
        if found:
            hits += 1
            s = np.int64(slot) << np.int64(2)
            nv = ctab[s] & np.int64(0xFF)
            vv = ctab[s + 3]
            if nv <= 2:
                out[w] = vv & np.int64(0xFFFFFFFF)
                if nv == 2:
                    out[w + 1] = vv >> np.int64(32)
            else:
                for t in range(nv):
                    out[w + t] = cvals[vv + t]
            nsym = nv
        else:
            if n <= LONG_WORD:
                nsym = bpe_word_pairs(src, a, b, byte_id, pair_tab, merge_tab, syms, mvals)
            else:
                nsym = bpe_word_heap_packed(src, a, b, byte_id, merge_tab, syms)
            for t in range(nsym):
                out[w + t] = syms[t]
            misses += 1
            if cacheable and cstate[3] == 0:
                _cache_put(src, a, b, h, p0, p1, slot, syms, nsym, ctab, ckeys, cvals,
                           cstate)
        if n <= HOT_KEY and nsym <= 2:
            i0 = np.int64(out[w])
            i1 = np.int64(out[w + 1]) if nsym == 2 else np.int64(0)
            if i0 <= id_mask and i1 <= id_mask:
                hs = _hot_slot(p0, n, shift)
                hot[hs] = p0
                hot[hs + 1] = (i0 | (i1 << np.int64(HOT_ID_BITS)) | (np.int64(nsym) << 40)
                               | (np.int64(n) << np.int64(44)))
        w += nsym
    cstate[4] += hits
    cstate[5] += misses
    return w


@njit(cache=True, nogil=True)
def cache_seed(keys, key_off, ids, ctab, ckeys, cvals, cstate):  # pragma: no cover
    """Put the one-id entries ``keys[key_off[i]:key_off[i+1]] -> ids[i]`` into an empty
    (or partly filled) pre-token cache, as :func:`_emit` would after BPE. Returns False when
    the cache has no room for all of them (nothing is marked full)."""
    one = np.zeros(1, dtype=np.int32)
    full = cstate[3]
    for i in range(ids.shape[0]):
        a = key_off[i]
        b = key_off[i + 1]
        klen = b - a
        if klen > MAX_CACHED_KEY or klen < 1:
            return False
        h, p0, p1 = _key_hash(keys, a, b)
        slot, found = _cache_find(keys, a, b, h, p0, p1, ctab, ckeys)
        s = np.int64(slot) << np.int64(2)
        if found:
            ctab[s] = (ctab[s] & np.int64(-256)) | 1
            ctab[s + 3] = np.int64(ids[i])
            continue
        one[0] = ids[i]
        if not _cache_put(keys, a, b, h, p0, p1, slot, one, 1, ctab, ckeys, cvals, cstate):
            cstate[3] = full
            return False
    return True


@njit(cache=True, nogil=True)
def bpe_single_ids(keys, key_off, byte_id, merge_tab):  # pragma: no cover - jit
    """For each word ``keys[key_off[i]:key_off[i+1]]``: the one id BPE (over the packed
    merge table) makes of it, or -1 when BPE leaves several tokens (int32 array)."""
    n = key_off.shape[0] - 1
    out = np.full(n, -1, dtype=np.int32)
    longest = 1
    for i in range(n):
        longest = max(longest, key_off[i + 1] - key_off[i])
    syms = np.empty(longest + 1, dtype=np.int32)
    vals = np.empty(longest + 1, dtype=np.int64)
    for i in range(n):
        a = key_off[i]
        b = key_off[i + 1]
        if b - a <= LONG_WORD:
            m = bpe_word_packed(keys, a, b, byte_id, merge_tab, syms, vals)
        else:
            m = bpe_word_heap_packed(keys, a, b, byte_id, merge_tab, syms)
        if m == 1:
            out[i] = syms[0]
    return out


FLUSH = 256  # entries _split_piece collects before _emit writes their ids

# The encoder of one pre-tokenizer family. The four functions below (_split_piece,
# _piece_core, _piece_alloc, _encode) are plain Python here: family_encoder(family) jits a
# copy of each whose globals bind these names to the family's pre-tokenizer (and the chain's
# names to the family's copies), so a process compiles only the family it encodes with and
# the per-pre-token loop calls one matcher, with no family test. The module-level values
# are GPT-2's (family 0).
_FAMILY = FAMILY_GPT2
_next_pretoken = next_pretoken_fast
_presplit = presplit_none


def _split_piece(src, lo, hi, cls, ntrie_next, ntrie_tok, kinds, pa, pb, out, w,
                 byte_id, merge_tab, syms, mvals, ctab, ckeys, cvals, cstate, hot,
                 pair_tab):  # pragma: no cover - jit
    """Write the ids of the normalized UTF-8 piece ``src[lo:hi]`` to ``out`` from ``w``;
    returns the new position. The piece is split into normalized added tokens
    (leftmost-longest; kind 1, id in ``pa``) and pre-tokens between them (kind 0, bytes
    ``[pa, pb)``): the family's splitter (``_presplit``, DeepSeek V3's stages) then its
    matcher (``_next_pretoken``: the GPT-2 regex, or a Split-regex family's, see
    :mod:`pythia_data.kernels.pretokenize_split`); every FLUSH entries (and at the end)
    :func:`_emit` writes their ids, so the entry arrays stay in the L1 cache. The entry
    arrays hold FLUSH + 4 (hi - lo) entries.

    Added tokens: the bytes no normalized added token starts with are skipped in a tight
    loop: 8 at a time for the first two bytes when every token starts with the same two
    (GPT-NeoX's runs of 2..24 spaces: a lone space is passed at full speed), or for the
    first byte when they all start with one."""
    has_trie = ntrie_tok.shape[0] > 1
    one = root_byte(ntrie_next) if has_trie else -1
    two = root_pair(ntrie_next, ntrie_tok) if has_trie else -1
    seg = lo
    p = lo if has_trie else hi
    m = 0
    while True:
        tok = -1
        tend = p
        if p < hi:
            if two >= 0:
                p = find_pair(src, p, hi, two & 255, two >> 8)
            elif one >= 0:
                p = find_byte(src, p, hi, one)
            else:
                while p < hi and ntrie_next[np.int64(src[p])] < 0:
                    p += 1
        if p < hi:
            n1 = ntrie_next[np.int64(src[p])]
            # look one more byte ahead before calling the trie walk (a lone space)
            if ntrie_tok[n1] >= 0 or (
                    p + 1 < hi and ntrie_next[np.int64(n1) * 256 + src[p + 1]] >= 0):
                tok, tend = trie_longest(src, p, hi, ntrie_next, ntrie_tok)
            if tok < 0:
                p += 1
                continue
        q, m = _presplit(src, seg, p, cls, kinds, pa, pb, m)
        while q < p:
            r = _next_pretoken(src, q, p, cls)
            kinds[m] = 0
            pa[m] = q
            pb[m] = r
            m += 1
            q = r
            if m >= FLUSH:
                w = _emit(src, kinds, pa, pb, m, out, w, byte_id, merge_tab, syms, mvals,
                          ctab, ckeys, cvals, cstate, hot, pair_tab)
                m = 0
        if p >= hi:
            break
        kinds[m] = 1
        pa[m] = tok
        pb[m] = 0
        m += 1
        p = tend
        seg = tend
    if m > 0:
        w = _emit(src, kinds, pa, pb, m, out, w, byte_id, merge_tab, syms, mvals, ctab,
                  ckeys, cvals, cstate, hot, pair_tab)
    return w


@njit(cache=True, nogil=True, _nrt=False)
def _needs_nfc(data, lo, hi, nfc_flag):  # pragma: no cover - jit
    """Does NFC change anything in ``data[lo:hi]``? (ASCII never does: checked at load.)
    An ``nfc_flag`` of one element means no normalizer: never."""
    if nfc_flag.shape[0] < 2:
        return False
    p = lo
    while p < hi:
        if data[p] < 0x80:
            p = ascii_end(data, p + 1, hi)
            continue
        c, w = cp_at(data, p)
        if nfc_flag[c]:
            return True
        p += w
    return False


def _piece_core(data, lo, hi, cls, ccc, nfc_flag, dec_index, dec_off, dec_data, comp_keys,
                comp_vals, ntrie_next, ntrie_tok, byte_id, merge_tab,
                ctab, ckeys, cvals, cstate, hot, pair_tab, out, w, cps, boff, cps2, boff2, nbuf,
                syms, mvals, kinds, pa, pb):  # pragma: no cover - jit
    """Ids of the raw piece ``data[lo:hi]`` (between special tokens): NFC if it has work,
    then added tokens / regex / cache / BPE. Scratch arrays hold >= 4 x (hi - lo) items."""
    if _needs_nfc(data, lo, hi, nfc_flag):
        n, _needs = utf8_decode(data, lo, hi, cps, boff, nfc_flag)
        m = nfc(cps, n, cps2, ccc, dec_index, dec_off, dec_data, comp_keys, comp_vals)
        nb = utf8_encode(cps2, m, nbuf, boff2)
        # typed as the other call's arguments (a read-only view, an int64 start), so
        # _split_piece and _emit compile once, not twice
        return _split_piece(borrow_readonly(nbuf), np.int64(0), nb, cls, ntrie_next,
                            ntrie_tok, kinds, pa, pb, out, w, byte_id, merge_tab, syms,
                            mvals, ctab, ckeys, cvals, cstate, hot, pair_tab)
    return _split_piece(data, lo, hi, cls, ntrie_next, ntrie_tok, kinds, pa, pb,
                        out, w, byte_id, merge_tab, syms, mvals, ctab, ckeys, cvals, cstate,
                        hot, pair_tab)


def _piece_alloc(data, lo, hi, cls, ccc, nfc_flag, dec_index, dec_off, dec_data, comp_keys,
                 comp_vals, ntrie_next, ntrie_tok, byte_id, merge_tab,
                 ctab, ckeys, cvals, cstate, hot, pair_tab, out, w):  # pragma: no cover - jit
    """:func:`_piece_core` with scratch arrays sized for this (large) piece."""
    size = hi - lo
    return _piece_core(
        data, lo, hi, cls, ccc, nfc_flag, dec_index, dec_off, dec_data, comp_keys, comp_vals,
        ntrie_next, ntrie_tok, byte_id, merge_tab,
        ctab, ckeys, cvals, cstate, hot, pair_tab, out, w,
        np.empty(size + 1, dtype=np.int32), np.empty(size + 1, dtype=np.int64),
        np.empty(4 * size + 4, dtype=np.int32), np.empty(4 * size + 5, dtype=np.int64),
        np.empty(4 * size + 16, dtype=np.uint8), np.empty(4 * size + 4, dtype=np.int32),
        np.empty(4 * size + 4, dtype=np.int64), np.empty(4 * size + 4 + FLUSH, dtype=np.int8),
        np.empty(4 * size + 4 + FLUSH, dtype=np.int64),
        np.empty(4 * size + 4 + FLUSH, dtype=np.int64),
    )


@njit(cache=True, nogil=True, _nrt=False)
def _next_special(data, p, hi, strie_next, strie_tok):  # pragma: no cover - jit
    """(position, id, end) of the first special (raw) added token at or after ``p``, or
    (hi, -1, hi)."""
    if strie_tok.shape[0] > 1:
        one = root_byte(strie_next)
        while p < hi:
            if one >= 0:
                p = find_byte(data, p, hi, one)
                if p >= hi:
                    break
            if strie_next[np.int64(data[p])] >= 0:
                tok, tend = trie_longest(data, p, hi, strie_next, strie_tok)
                if tok >= 0:
                    return p, tok, tend
            p += 1
    return hi, -1, hi


@njit(cache=True, nogil=True)
def _added_pairs(ntrie_next, ntrie_tok):  # pragma: no cover - jit
    """uint8[65536]: 1 for each byte pair (a << 8 | b) found consecutively in a normalized
    added token (a match of one could cross a cut between a and b)."""
    pairs = np.zeros(65536, dtype=np.uint8)
    n_nodes = ntrie_tok.shape[0]
    for node in range(n_nodes):
        for a in range(256):
            child = ntrie_next[node * 256 + a]
            if child < 0:
                continue
            for b in range(256):
                if ntrie_next[np.int64(child) * 256 + b] >= 0:
                    pairs[a * 256 + b] = 1
    return pairs


@njit(cache=True, nogil=True)
def _safe_cut(data, lo, hi, end, cls, pairs, family):  # pragma: no cover - jit
    """The first byte position c in [lo, hi) (c < end) where the raw piece may be cut in two
    without changing its ids, or -1. GPT-2 regex: c holds an ASCII whitespace byte and the
    character before it is not whitespace, so a pre-token ends at c and the next starts
    there whatever follows; NFC never acts across an ASCII character; no normalized added
    token holds the two bytes around c. The Split families (``family`` > 0) also let a run
    of punctuation take the CR/LF after it (``[^\\s\\p{L}\\p{N}]+[\\r\\n]*``): there c
    must not hold CR or LF."""
    for c in range(max(lo, 1), min(hi, end)):
        b = data[c]
        if b >= 0x80 or not (cls[b] & CLS_WS):
            continue
        if family != 0 and (b == 10 or b == 13):
            continue
        if pairs[np.int64(data[c - 1]) * 256 + b]:
            continue
        s = c - 1
        while s > 0 and (data[s] & 0xC0) == 0x80:
            s -= 1
        cp, _w = cp_at(data, s)
        if cls[cp] & CLS_WS:
            continue
        return c
    return -1


def _encode(
    data, offsets, doc_start, doc_end,
    cls, ccc, nfc_flag, dec_index, dec_off, dec_data, comp_keys, comp_vals,
    strie_next, strie_tok, ntrie_next, ntrie_tok,
    byte_id, merge_tab,
    ctab, ckeys, cvals, cstate, hot, pair_tab,
    out, out_offsets, out_pos,
):  # pragma: no cover - jit
    """Encode documents ``doc_start..doc_end`` (UTF-8 ``data[offsets[i]:offsets[i+1]]``)
    with the pre-tokenizer this copy was made for (see :func:`family_encoder`).

    Ids go to ``out`` from ``out_pos``; ``out_offsets[i - doc_start + 1]`` gets the end of
    document i. Returns (next document, out position, status): status ST_NEED_ROOM when
    ``out`` filled up before document ``next`` (nothing of it is kept).

    Every array is used through a :func:`borrow`-ed view (no reference counting in the
    per-pre-token loops); the scratch arrays allocated here stay alive to the end."""
    small = 16
    for i in range(doc_start, doc_end):
        small = max(small, offsets[i + 1] - offsets[i])
    small = min(small, SCRATCH)
    q4 = 4 * small + 4
    qe = q4 + FLUSH  # the entry arrays (see _split_piece)
    own_i32 = np.empty(small + 1 + 2 * q4, dtype=np.int32)
    own_i64 = np.empty(small + 2 + 2 * q4 + 2 * qe, dtype=np.int64)
    own_u8 = np.empty(4 * small + 16, dtype=np.uint8)
    own_i8 = np.empty(qe, dtype=np.int8)
    i32 = borrow(own_i32)
    i64 = borrow(own_i64)
    cps = i32[:small + 1]
    cps2 = i32[small + 1:small + 1 + q4]
    syms = i32[small + 1 + q4:small + 1 + 2 * q4]
    boff = i64[:small + 1]
    boff2 = i64[small + 1:small + 2 + q4]
    mvals = i64[small + 2 + q4:small + 2 + 2 * q4]
    pa = i64[small + 2 + 2 * q4:small + 2 + 2 * q4 + qe]
    pb = i64[small + 2 + 2 * q4 + qe:small + 2 + 2 * q4 + 2 * qe]
    nbuf = borrow(own_u8)
    kinds = borrow(own_i8)
    data = borrow_readonly(data)  # one compiled chain for writable and read-only text
    offsets = borrow(offsets)
    cls = borrow(cls)
    ccc = borrow(ccc)
    nfc_flag = borrow(nfc_flag)
    dec_index = borrow(dec_index)
    dec_off = borrow(dec_off)
    dec_data = borrow(dec_data)
    comp_keys = borrow(comp_keys)
    comp_vals = borrow(comp_vals)
    strie_next = borrow(strie_next)
    strie_tok = borrow(strie_tok)
    ntrie_next = borrow(ntrie_next)
    ntrie_tok = borrow(ntrie_tok)
    byte_id = borrow(byte_id)
    merge_tab = borrow(merge_tab)
    ctab = borrow(ctab)
    ckeys = borrow(ckeys)
    cvals = borrow(cvals)
    cstate = borrow(cstate)
    hot = borrow(hot)
    pair_tab = borrow(pair_tab)
    out = borrow(out)
    out_offsets = borrow(out_offsets)
    cap = out.shape[0]
    w = out_pos
    pairs = np.zeros(1, dtype=np.uint8)
    have_pairs = False
    for d in range(doc_start, doc_end):
        lo = offsets[d]
        hi = offsets[d + 1]
        w_doc = w
        piece = lo
        while True:
            p, tok, tend = _next_special(data, piece, hi, strie_next, strie_tok)
            # the piece data[piece:p], in parts of <= small bytes cut where the ids cannot
            # change (a long document costs scratch memory of one part, not of itself)
            q = piece
            while q < p:
                e = p
                if p - q > small:
                    if not have_pairs:
                        pairs = _added_pairs(ntrie_next, ntrie_tok)
                        have_pairs = True
                    c = _safe_cut(data, q + small // 2, q + small, p, cls, pairs, _FAMILY)
                    if c < 0:
                        c = _safe_cut(data, q + small, p, p, cls, pairs, _FAMILY)
                    if c > q:
                        e = c
                # worst case one id per normalized byte (<= 4 per byte)
                if w + 4 * (e - q) + 1 > cap:
                    return d, w_doc, ST_NEED_ROOM
                if e - q <= small:
                    w = _piece_core(
                        data, q, e, cls, ccc, nfc_flag, dec_index, dec_off, dec_data,
                        comp_keys, comp_vals, ntrie_next, ntrie_tok, byte_id, merge_tab, ctab, ckeys, cvals, cstate, hot, pair_tab, out, w,
                        cps, boff, cps2, boff2, nbuf, syms, mvals, kinds, pa, pb)
                else:
                    w = _piece_alloc(
                        data, q, e, cls, ccc, nfc_flag, dec_index, dec_off, dec_data,
                        comp_keys, comp_vals, ntrie_next, ntrie_tok, byte_id, merge_tab, ctab, ckeys, cvals, cstate, hot, pair_tab,
                        out, w)
                q = e
            if tok < 0:
                break
            out[w] = tok
            w += 1
            piece = tend
        out_offsets[d - doc_start + 1] = w
    # the scratch arrays' owners, used after their views' last use (kept alive)
    own_i32[0] = own_i64[0] = own_u8[0] = own_i8[0] = 0
    return doc_end, w, ST_OK


#: per family id (:class:`pythia_data.tokenize.families.Family`): (matcher, splitter)
_PRETOKENIZERS = {
    FAMILY_GPT2: (next_pretoken_fast, presplit_none),
    FAMILY_CL100K: (match_cl100k_family, presplit_none),
    FAMILY_O200K: (match_o200k, presplit_none),
    FAMILY_QWEN2: (match_qwen2, presplit_none),
    FAMILY_DEEPSEEK_V3: (match_none, presplit_deepseek),
    FAMILY_QWEN3_5: (match_qwen3_5, presplit_none),
}
_CHAIN = ("_split_piece", "_piece_core", "_piece_alloc", "_encode")  # callees first
_NO_NRT = ("_split_piece",)  # allocates nothing: compiled without reference counting


def family_encoder(family: int):
    """The batch encoder (jitted :func:`_encode`, same arguments) of the pre-tokenizer
    ``family`` (0 = GPT-2's regex, else a Split family's id).

    Each family gets its own copies of the four chain functions: the same code objects,
    with globals in which ``_next_pretoken`` / ``_presplit`` / ``_FAMILY`` are the family's
    and the chain's names its own copies. A copy's ``__qualname__`` ends in ``_f<family>``,
    so numba's on-disk cache keeps one index file per family and function (the cache is
    keyed on the qualified name, the source file and the bytecode, which the families
    share); the source file is this one, so an edit of it invalidates them as any kernel's,
    and :mod:`pythia_data.kernels` drops them when another kernel source changes."""
    family = int(family)
    if family not in _PRETOKENIZERS:
        raise ValueError(f"unknown pre-tokenizer family {family}")
    return _family_encoder(family)


@functools.cache
def _family_encoder(family: int):
    return family_chain(family)["_encode"]


def family_chain(family: int, cache: bool = True) -> dict:
    """The jitted chain functions of ``family`` by name (see :func:`family_encoder`; a test
    takes a copy with ``cache=False`` to see what the chain compiles)."""
    env = dict(globals())
    env["_FAMILY"] = family
    env["_next_pretoken"], env["_presplit"] = _PRETOKENIZERS[family]
    for name in _CHAIN:
        fn = globals()[name]
        copy = types.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__)
        copy.__qualname__ = f"{fn.__qualname__}_f{family}"
        copy.__doc__ = fn.__doc__
        copy.__module__ = fn.__module__
        opts = {"_nrt": False} if name in _NO_NRT else {}
        env[name] = njit(cache=cache, nogil=True, **opts)(copy)
    return {name: env[name] for name in _CHAIN}


@njit(cache=True, nogil=True)
def decode_documents_kernel(ids, offsets, tok_off, tok_bytes):  # pragma: no cover - jit
    """The byte strings of the tokens of every document ``ids[offsets[d]:offsets[d + 1]]``
    (``tok_bytes[tok_off[i]:tok_off[i + 1]]`` for token ``i``; ids outside the table are
    skipped; the caller checked ``0 <= offsets[d] <= offsets[d + 1] <= ids.size``): the
    bytes of all documents concatenated and their int64 offsets."""
    n_tok = tok_off.shape[0] - 1
    n = offsets.shape[0] - 1
    out_off = np.empty(n + 1, dtype=np.int64)
    out_off[0] = 0
    total = 0
    for d in range(n):
        for i in range(offsets[d], offsets[d + 1]):
            t = ids[i]
            if t >= 0 and t < n_tok:
                total += tok_off[t + 1] - tok_off[t]
        out_off[d + 1] = total
    out = np.empty(total, dtype=np.uint8)
    w = 0
    for d in range(n):
        for i in range(offsets[d], offsets[d + 1]):
            t = ids[i]
            if t < 0 or t >= n_tok:
                continue
            for j in range(tok_off[t], tok_off[t + 1]):
                out[w] = tok_bytes[j]
                w += 1
    return out, out_off
