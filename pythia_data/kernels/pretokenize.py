"""Pre-tokenization kernels: UTF-8 <-> code points, NFC, added-token tries, the GPT-2 regex.

Everything works on plain numpy arrays (usable from numba.cuda later):

* ``cls``  uint8[0x110000]: bit 1 = ``\\p{L}``, bit 2 = ``\\p{N}``, bit 4 = ``\\s`` exactly
  as Hugging Face ``tokenizers`` (Oniguruma, Unicode 16) classifies each code point.
* NFC tables as HF's normalizer has them (an older Unicode): ``ccc`` uint8[0x110000],
  ``nfc_flag`` uint8[0x110000] (0 = the code point is left alone by NFC whatever surrounds
  it: no decomposition, class 0, never the second of a composition pair), ``dec_index``
  int32[0x110000] (-1 or row of ``dec_off``/``dec_data``: the full canonical
  decomposition), and the composition hash table ``comp_keys`` int64 / ``comp_vals`` int32
  keyed by ``first << 21 | second``.
* A trie of byte strings for added tokens: ``trie_next`` int32[n_nodes * 256] (-1 = no
  edge, node 0 = root) and ``trie_tok`` int32[n_nodes] (token id ending there or -1).

The regex is GPT-2's ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|
\\s+(?!\\S)|\\s+`` with Oniguruma's leftmost-alternative semantics, hand-compiled in
:func:`next_pretoken`.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

__all__ = [
    "CLS_L",
    "CLS_N",
    "CLS_WS",
    "utf8_decode",
    "utf8_encode",
    "nfc",
    "next_pretoken",
    "cp_at",
    "trie_longest",
    "comp_lookup",
    "nfc_utf8_kernel",
    "load8",
    "ascii_letters_end",
    "next_pretoken_fast",
    "find_byte",
    "ascii_end",
    "root_byte",
    "borrow",
    "borrow_readonly",
    "find_pair",
    "root_pair",
]

CLS_L = 1
CLS_N = 2
CLS_WS = 4

_QUOTE = 39
_SPACE = 32


@njit(cache=True, nogil=True, inline="always")
def _hash64(key):
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return h ^ (h >> np.uint64(29))


@njit(cache=True, nogil=True)
def comp_lookup(comp_keys, comp_vals, first, second):  # pragma: no cover - jit
    """The primary composite of (first, second), or -1."""
    key = (np.int64(first) << np.int64(21)) | np.int64(second)
    mask = np.uint64(comp_keys.shape[0] - 1)
    slot = _hash64(key) & mask
    while True:
        k = comp_keys[slot]
        if k == key:
            return comp_vals[slot]
        if k == -1:
            return -1
        slot = (slot + np.uint64(1)) & mask


@njit(cache=True, nogil=True)
def utf8_decode(data, start, end, cps, boff, nfc_flag):  # pragma: no cover - jit
    """Decode valid UTF-8 ``data[start:end]`` into ``cps`` with byte offsets ``boff``
    (``boff[i]`` = offset of code point i, ``boff[n]`` = end). Returns (n, needs_nfc)."""
    n = 0
    p = start
    needs = False
    while p < end:
        b = np.int32(data[p])
        if b < 0x80:
            c = b
            w = 1
        elif b < 0xE0:
            c = ((b & 0x1F) << 6) | (np.int32(data[p + 1]) & 0x3F)
            w = 2
        elif b < 0xF0:
            c = ((b & 0x0F) << 12) | ((np.int32(data[p + 1]) & 0x3F) << 6)
            c |= np.int32(data[p + 2]) & 0x3F
            w = 3
        else:
            c = ((b & 0x07) << 18) | ((np.int32(data[p + 1]) & 0x3F) << 12)
            c |= ((np.int32(data[p + 2]) & 0x3F) << 6) | (np.int32(data[p + 3]) & 0x3F)
            w = 4
        if nfc_flag[c] != 0:
            needs = True
        cps[n] = c
        boff[n] = p
        n += 1
        p += w
    boff[n] = end
    return n, needs


@njit(cache=True, nogil=True)
def utf8_encode(cps, n, out, boff):  # pragma: no cover - jit
    """Encode ``cps[:n]`` into ``out`` (room for 4 bytes per code point); byte offsets into
    ``boff`` (length n+1). Returns the byte length."""
    p = 0
    for i in range(n):
        c = cps[i]
        boff[i] = p
        if c < 0x80:
            out[p] = c
            p += 1
        elif c < 0x800:
            out[p] = 0xC0 | (c >> 6)
            out[p + 1] = 0x80 | (c & 0x3F)
            p += 2
        elif c < 0x10000:
            out[p] = 0xE0 | (c >> 12)
            out[p + 1] = 0x80 | ((c >> 6) & 0x3F)
            out[p + 2] = 0x80 | (c & 0x3F)
            p += 3
        else:
            out[p] = 0xF0 | (c >> 18)
            out[p + 1] = 0x80 | ((c >> 12) & 0x3F)
            out[p + 2] = 0x80 | ((c >> 6) & 0x3F)
            out[p + 3] = 0x80 | (c & 0x3F)
            p += 4
    boff[n] = p
    return p


@njit(cache=True, nogil=True)
def nfc(cps, n, out, ccc, dec_index, dec_off, dec_data, comp_keys, comp_vals):  # pragma: no cover
    """NFC of ``cps[:n]`` into ``out`` (room for 4 code points per input); returns the count.

    Decompose fully (tables), stable-sort each run of non-zero combining classes, then
    compose canonically (a character composes with the last starter unless blocked)."""
    m = 0
    for i in range(n):
        c = cps[i]
        k = dec_index[c]
        if k < 0:
            out[m] = c
            m += 1
        else:
            for j in range(dec_off[k], dec_off[k + 1]):
                out[m] = dec_data[j]
                m += 1
    # canonical ordering: insertion sort inside runs of non-starters (stable)
    i = 0
    while i < m:
        if ccc[out[i]] == 0:
            i += 1
            continue
        j = i
        while j < m and ccc[out[j]] != 0:
            j += 1
        for a in range(i + 1, j):
            x = out[a]
            cx = ccc[x]
            b = a - 1
            while b >= i and ccc[out[b]] > cx:
                out[b + 1] = out[b]
                b -= 1
            out[b + 1] = x
        i = j
    # canonical composition, in place
    starter = -1
    last_cc = 0
    w = 0
    for r in range(m):
        c = out[r]
        cc = np.int32(ccc[c])
        if starter >= 0:
            adjacent = w == starter + 1
            if adjacent or (last_cc != 0 and last_cc < cc):
                comp = comp_lookup(comp_keys, comp_vals, out[starter], c)
                if comp >= 0:
                    out[starter] = comp
                    continue
        if cc == 0:
            starter = w
        out[w] = c
        w += 1
        last_cc = cc
    return w


@njit(cache=True, nogil=True, _nrt=False)
def trie_longest(data, p, end, trie_next, trie_tok):  # pragma: no cover - jit
    """Longest added token starting at byte ``p`` of ``data[:end]``: (token id, end) or
    (-1, p)."""
    node = 0
    best = -1
    best_end = p
    q = p
    while q < end:
        node = trie_next[node * 256 + np.int64(data[q])]
        if node < 0:
            break
        q += 1
        t = trie_tok[node]
        if t >= 0:
            best = t
            best_end = q
    return best, best_end


@njit(cache=True, nogil=True, inline="always")
def _is_other(k):
    return (k & 7) == 0


@njit(cache=True, nogil=True, _nrt=False)
def cp_at(data, p):
    """(code point, width) of the valid UTF-8 character at byte ``p``.

    Not ``inline="always"``: LLVM inlines it at every call anyway (no call to it is left in
    the encoder's machine code), and numba's own inlining of its ~25 call sites per
    pre-tokenizer family made a fresh compile of the cl100k family's encoder take 73 s
    instead of 45 s on the 2-core VM (GPT-NeoX-20B's: 50 s instead of 29 s)."""
    b = np.int32(data[p])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int32(data[p + 1]) & 0x3F), 2
    if b < 0xF0:
        c = ((b & 0x0F) << 12) | ((np.int32(data[p + 1]) & 0x3F) << 6)
        return c | (np.int32(data[p + 2]) & 0x3F), 3
    c = ((b & 0x07) << 18) | ((np.int32(data[p + 1]) & 0x3F) << 12)
    c |= ((np.int32(data[p + 2]) & 0x3F) << 6) | (np.int32(data[p + 3]) & 0x3F)
    return c, 4


@njit(cache=True, nogil=True, inline="always")
def class_run(data, q, end, cls, bits):  # pragma: no cover - jit
    """End of the run of characters from ``q`` whose class (``cls``) has one of ``bits``."""
    while q < end:
        c, w = cp_at(data, q)
        if not cls[c] & bits:
            break
        q += w
    return q


@njit(cache=True, nogil=True, inline="always")
def next_pretoken(data, p, end, cls):  # pragma: no cover - jit
    """End (exclusive byte) of the GPT-2 regex match that starts at byte ``p`` (< end) of
    the valid UTF-8 ``data[:end]``."""
    c, w = cp_at(data, p)
    if c == _QUOTE and p + 1 < end:
        c1 = data[p + 1]  # contraction letters are ASCII: comparing bytes is exact
        if c1 == 115 or c1 == 116 or c1 == 109 or c1 == 100:  # s t m d
            return p + 2
        if p + 2 < end:
            c2 = data[p + 2]
            if (c1 == 114 and c2 == 101) or (c1 == 118 and c2 == 101):  # re ve
                return p + 3
            if c1 == 108 and c2 == 108:  # ll
                return p + 3
    k = np.int32(cls[c])
    q = p
    if c == _SPACE and p + 1 < end:
        c1, _w1 = cp_at(data, p + 1)
        k1 = np.int32(cls[c1])
        if not k1 & CLS_WS:
            q = p + 1
            k = k1
    if k & CLS_L:
        return class_run(data, q, end, cls, CLS_L)
    if k & CLS_N:
        return class_run(data, q, end, cls, CLS_N)
    if _is_other(k):
        while q < end:
            c, w = cp_at(data, q)
            if not _is_other(cls[c]):
                break
            q += w
        return q
    # whitespace: \s+(?!\S) then \s+
    q = p + w
    last = p
    while q < end:
        c, w = cp_at(data, q)
        if not cls[c] & CLS_WS:
            break
        last = q
        q += w
    if q == end or last == p:
        return q
    return last


def _c_array_and_index(arr, idx) -> bool:
    """Are an intrinsic's argument types a C-contiguous array and an integer?"""
    return isinstance(arr, types.Array) and arr.layout == "C" and isinstance(idx, types.Integer)


def _element_pointer(context, builder, signature, args):
    """The LLVM pointer to ``arr[idx]`` of an intrinsic's ``(arr, idx)`` arguments (no
    bounds or negative-index handling)."""
    ary = context.make_array(signature.args[0])(context, builder, args[0])
    index = context.cast(builder, args[1], signature.args[1], types.intp)
    return builder.gep(ary.data, [index])


@intrinsic
def load8(typingctx, arr, idx):
    """The 8 bytes ``arr[idx:idx+8]`` of a C-contiguous uint8 array as one little-endian
    uint64: one unaligned load, no checks (the caller guarantees ``0 <= idx`` and
    ``idx + 8 <= len(arr)``). CPU only."""
    if not (_c_array_and_index(arr, idx) and arr.dtype == types.uint8):
        return None
    sig = types.uint64(arr, idx)

    def codegen(context, builder, signature, args):
        word = builder.bitcast(_element_pointer(context, builder, signature, args),
                               ir.IntType(64).as_pointer())
        return builder.load(word, align=1)

    return sig, codegen


@intrinsic
def prefetch(typingctx, arr, idx):
    """A hint to bring the cache line of ``arr[idx]`` (a C-contiguous array) into the
    cache, for reading: no load, no fault, nothing returned; an index outside the array
    is harmless. CPU only."""
    if not _c_array_and_index(arr, idx):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        ptr = builder.bitcast(_element_pointer(context, builder, signature, args),
                              ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def borrow(typingctx, arr):
    """A view of the array ``arr`` (same data, shape and strides) without its reference
    count: numba's reference counting of the view (an atomic increment and decrement of
    the array's meminfo each time an array is passed to a function or copied into a
    variable, inline functions included) is a no-op on it. Those atomics cost ~20 ns per
    pre-token in the encoder's loops (and contend between threads sharing the tables):
    the kernels run on borrowed views. The caller keeps ``arr`` alive while the view is
    in use (an argument of the calling kernel is; a local array needs a use after the
    view's last). CPU only."""
    if not isinstance(arr, types.Array):
        return None
    return arr(arr), _borrowed_view


def _borrowed_view(context, builder, signature, args):
    """Codegen of :func:`borrow` and :func:`borrow_readonly`: the argument's data, shape and
    strides in an array of the return type, with no meminfo and no parent."""
    src = context.make_array(signature.args[0])(context, builder, args[0])
    view = context.make_array(signature.return_type)(context, builder)
    for field in ("nitems", "itemsize", "data", "shape", "strides"):
        setattr(view, field, getattr(src, field))
    view.meminfo = cgutils.get_null_value(view.meminfo.type)
    view.parent = cgutils.get_null_value(view.parent.type)
    return view._getvalue()


@intrinsic
def borrow_readonly(typingctx, arr):
    """:func:`borrow`, typed as a read-only array. A kernel called with both writable and
    read-only arrays is compiled once for each (numba types them apart); the encoder's
    chain takes its text through this view, so it compiles one copy of the per-pre-token
    code whatever the caller's array is (a writable scratch buffer after NFC, a read-only
    ``bytes`` buffer, a writable block of the JSON-lines reader). CPU only."""
    if not isinstance(arr, types.Array):
        return None
    return arr.copy(readonly=True)(arr), _borrowed_view


_HIGH = np.uint64(0x8080808080808080)


@njit(cache=True, nogil=True, inline="always")
def _is_ascii_alpha(b):
    return (np.uint32(b) | np.uint32(32)) - np.uint32(97) < np.uint32(26)


@njit(cache=True, nogil=True, inline="always")
def ascii_letters_end(data, q, end):  # pragma: no cover - jit
    """The first byte position >= ``q`` (<= ``end``) of ``data[:end]`` that is not an ASCII
    letter (A-Z, a-z), 8 bytes at a time (SWAR): per byte, clear bit 7, set bit 5 (fold
    case), add 0x1F and 0x05 -- bit 7 then says ``>= 'a'`` resp. ``> 'z'``, no carry between
    bytes -- and drop the bytes that had bit 7 set (non-ASCII)."""
    lim = data.shape[0] - 8
    while q < end and q <= lim:
        v = load8(data, q)
        x = (v & np.uint64(0x7F7F7F7F7F7F7F7F)) | np.uint64(0x2020202020202020)
        ge_a = x + np.uint64(0x1F1F1F1F1F1F1F1F)
        gt_z = x + np.uint64(0x0505050505050505)
        other = ~(ge_a & ~gt_z & ~v) & _HIGH
        if other != np.uint64(0):
            return min(q + np.int64(trailing_zeros(other) >> 3), end)
        q += 8
    while q < end and _is_ascii_alpha(data[q]):
        q += 1
    return min(q, end)


_ONES = np.uint64(0x0101010101010101)


@njit(cache=True, nogil=True, inline="always")
def find_byte(data, p, end, x):  # pragma: no cover - jit
    """The first position >= ``p`` of the byte ``x`` in ``data[:end]``, or ``end``; 8 bytes
    at a time (the lowest byte flagged by ``(t - 0x01..) & ~t & 0x80..``, t = word ^ x
    repeated, is always a true zero byte of t)."""
    lim = data.shape[0] - 8
    pat = _ONES * np.uint64(x)
    while p < end and p <= lim:
        t = load8(data, p) ^ pat
        z = (t - _ONES) & ~t & _HIGH
        if z != np.uint64(0):
            return min(p + np.int64(trailing_zeros(z) >> 3), end)
        p += 8
    while p < end and data[p] != x:
        p += 1
    return min(p, end)


_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)


@njit(cache=True, nogil=True, inline="always")
def _zero_bytes(t):
    """Bit 7 of each byte of ``t`` that is zero, exactly (no borrow between bytes)."""
    return ~(((t & _LOW7) + _LOW7) | t | _LOW7)


@njit(cache=True, nogil=True, inline="always")
def find_pair(data, p, end, x, y):  # pragma: no cover - jit
    """The first position i >= ``p`` with ``data[i] == x`` and ``data[i + 1] == y``,
    ``i + 1 < end``; ``end`` when there is none. 8 bytes at a time, 7 apart (so the pair
    across two loads is the first pair of the next): the bytes equal to x, and those whose
    next byte equals y, flagged exactly."""
    lim = data.shape[0] - 8
    px = _ONES * np.uint64(x)
    py = _ONES * np.uint64(y)
    while p + 1 < end and p <= lim:
        v = load8(data, p)
        m = _zero_bytes(v ^ px) & (_zero_bytes(v ^ py) >> np.uint64(8))
        if m != np.uint64(0):
            i = p + np.int64(trailing_zeros(m) >> 3)
            return i if i + 1 < end else end
        p += 7
    while p + 1 < end:
        if data[p] == x and data[p + 1] == y:
            return p
        p += 1
    return end


@njit(cache=True, nogil=True, _nrt=False)
def root_pair(trie_next, trie_tok):  # pragma: no cover - jit
    """``x | y << 8`` when every token of the trie starts with the two bytes x y (and none
    is the one byte x); else -1."""
    x = root_byte(trie_next)
    if x < 0 or trie_tok[trie_next[x]] >= 0:
        return -1
    node = np.int64(trie_next[x])
    y = -1
    for b in range(256):
        if trie_next[node * 256 + b] >= 0:
            if y >= 0:
                return -1
            y = b
    if y < 0:
        return -1
    return x | (y << 8)


@njit(cache=True, nogil=True, inline="always")
def ascii_end(data, p, end):  # pragma: no cover - jit
    """The first position >= ``p`` in ``data[:end]`` of a byte >= 0x80, or ``end``; 8 bytes
    at a time."""
    lim = data.shape[0] - 8
    while p < end and p <= lim:
        z = load8(data, p) & _HIGH
        if z != np.uint64(0):
            return min(p + np.int64(trailing_zeros(z) >> 3), end)
        p += 8
    while p < end and data[p] < 0x80:
        p += 1
    return min(p, end)


@njit(cache=True, nogil=True, _nrt=False)
def root_byte(trie_next):  # pragma: no cover - jit
    """The one byte an added token of the trie can start with; -1 when there is none (or
    several)."""
    x = -1
    for b in range(256):
        if trie_next[b] >= 0:
            if x >= 0:
                return -1
            x = b
    return x


@njit(cache=True, nogil=True, inline="always")
def _letters_from(data, q, end, cls):  # pragma: no cover - jit
    """End of the ``\\p{L}`` run from ``q``: ASCII letters 8 at a time, then (from the
    first non-ASCII byte, if the ASCII run stopped there) character by character."""
    q = ascii_letters_end(data, q, end)
    if q < end and data[q] >= 0x80:
        q = class_run(data, q, end, cls, CLS_L)
    return q


@njit(cache=True, nogil=True, inline="always")
def next_pretoken_fast(data, p, end, cls):  # pragma: no cover - jit
    """:func:`next_pretoken` (the same ends, by construction and tests) with a fast path for
    the commonest starts: an ASCII letter, or a space then an ASCII letter (`` ?\\p{L}+``);
    the letter run is scanned by :func:`_letters_from`. Everything else: ``next_pretoken``."""
    b0 = data[p]
    if b0 < 0x80:
        if _is_ascii_alpha(b0):
            return _letters_from(data, p + 1, end, cls)
        if b0 == _SPACE and p + 1 < end and _is_ascii_alpha(data[p + 1]):
            return _letters_from(data, p + 2, end, cls)
    return next_pretoken(data, p, end, cls)


@njit(cache=True, nogil=True)
def nfc_utf8_kernel(data, offsets, ccc, nfc_flag, dec_index, dec_off, dec_data, comp_keys,
                    comp_vals, out, out_offsets):  # pragma: no cover - jit
    """NFC of each UTF-8 string ``data[offsets[i]:offsets[i+1]]`` into ``out`` (room for 4x)."""
    n_docs = offsets.shape[0] - 1
    maxlen = 1
    for i in range(n_docs):
        maxlen = max(maxlen, offsets[i + 1] - offsets[i])
    cps = np.empty(maxlen + 1, dtype=np.int32)
    boff = np.empty(maxlen + 1, dtype=np.int64)
    cps2 = np.empty(4 * maxlen + 4, dtype=np.int32)
    boff2 = np.empty(4 * maxlen + 5, dtype=np.int64)
    w = 0
    out_offsets[0] = 0
    for i in range(n_docs):
        n, needs = utf8_decode(data, offsets[i], offsets[i + 1], cps, boff, nfc_flag)
        if needs:
            m = nfc(cps, n, cps2, ccc, dec_index, dec_off, dec_data, comp_keys, comp_vals)
            w += utf8_encode(cps2, m, out[w:], boff2)
        else:
            for j in range(offsets[i], offsets[i + 1]):
                out[w] = data[j]
                w += 1
        out_offsets[i + 1] = w
    return w
