"""numba.cuda pre-tokenization kernels: one thread per byte decides the pre-token boundaries.

The input of a batch is the concatenated UTF-8 of its documents (``data`` uint8[n]) and int64
byte ``offsets`` (length n_docs + 1). Per-byte work arrays (all length >= n):

* ``docstart`` uint8: 1 at the first byte of every non-empty document (:func:`doc_start_kernel`).
* ``kb`` uint8: the code point class of the character starting at this byte (``cls`` table of
  :mod:`pythia_data.kernels.pretokenize`: 1 letter, 2 number, 4 whitespace, 0 other) or
  :data:`KB_CONT` on a UTF-8 continuation byte (:func:`classify_kernel`).
* ``kind`` uint8: 0 ordinary text, :data:`KIND_TOKEN` first byte of an added token made of
  spaces (GPT-NeoX-20B's 23 runs of 2..24 spaces), :data:`KIND_TOKEN_CONT` its other bytes;
  ``tokid`` int32 the added token's id at its first byte (:func:`wsrun_kernel`).
* ``flag`` uint8: 1 where a pre-token (a GPT-2 regex match or an added token) starts.

``doc_route`` uint8[n_docs] is set to 1 for documents the device cannot do exactly: a code point
NFC may change (``route_cp`` table), a special (raw) added token, or a normalized added token
that is not a run of spaces. The caller encodes those documents with the cpu engine.

The boundary rules are those of GPT-2's regex ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+|
?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`` applied to each piece between added tokens (see
:func:`pythia_data.kernels.pretokenize.next_pretoken`, the sequential reference), restated as a
local property of each position:

* whitespace runs (one thread per run, :func:`wsrun_kernel`): the run's first character
  starts a pre-token, as does the first character after an added token; if the run is followed
  by a non-space character of the same piece and has >= 2 characters, its last character starts
  a pre-token (``\\s+(?!\\S)`` leaves it to the next match);
* a non-space character (:func:`boundary_kernel`) starts a pre-token at a document or piece
  start, after a whitespace character other than U+0020 (an ASCII space before it is its
  optional ``" ?"`` prefix), at the start or just after the end of a contraction, and where the
  class changes from the previous character; a contraction (``'s`` ...) starts at a quote that
  itself starts a match: at a piece start or after a letter, a digit or a non-0x20 space.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

__all__ = [
    "KB_CONT",
    "KIND_TOKEN",
    "KIND_TOKEN_CONT",
    "fill_kernel",
    "doc_start_kernel",
    "classify_kernel",
    "wsrun_kernel",
    "boundary_kernel",
]

KB_CONT = 255
KIND_TOKEN = 1
KIND_TOKEN_CONT = 2
CLS_L = 1
CLS_N = 2
CLS_WS = 4
SPACE = 32
QUOTE = 39


@cuda.jit(cache=True)
def fill_kernel(arr, n, value):  # pragma: no cover - device code
    """``arr[:n] = value``."""
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < n:
        arr[i] = value
        i += step


@cuda.jit(cache=True)
def doc_start_kernel(offsets, n_docs, docstart):  # pragma: no cover - device code
    d = cuda.grid(1)
    step = cuda.gridsize(1)
    while d < n_docs:
        if offsets[d] < offsets[d + 1]:
            docstart[offsets[d]] = 1
        d += step


@cuda.jit(device=True)
def doc_of(offsets, n_docs, p):  # pragma: no cover - device code
    """The document holding byte ``p`` (binary search; empty documents hold no byte)."""
    lo = 0
    hi = n_docs
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offsets[mid] <= p:
            lo = mid
        else:
            hi = mid
    return lo


@cuda.jit(device=True)
def _trie_any(data, p, end, trie_next, trie_tok):  # pragma: no cover - device code
    """True when some entry of the trie matches ``data[p:q]`` for a q <= end."""
    node = 0
    q = p
    while q < end:
        node = trie_next[node * 256 + np.int64(data[q])]
        if node < 0:
            return False
        q += 1
        if trie_tok[node] >= 0:
            return True
    return False


@cuda.jit(cache=True)
def classify_kernel(data, n, offsets, n_docs, cls, route_cp, strie_next, strie_tok,
                    otrie_next, otrie_tok, kb, doc_route):  # pragma: no cover - device code
    """Per byte: code point class into ``kb``; flag documents that must go to the cpu."""
    p = cuda.grid(1)
    step = cuda.gridsize(1)
    has_s = strie_tok.shape[0] > 1
    has_o = otrie_tok.shape[0] > 1
    while p < n:
        b = np.int64(data[p])
        if (b & 0xC0) == 0x80:
            kb[p] = KB_CONT
            p += step
            continue
        if b < 0x80:
            c = b
        elif b < 0xE0:
            c = ((b & 0x1F) << 6) | (np.int64(data[p + 1]) & 0x3F)
        elif b < 0xF0:
            c = ((b & 0x0F) << 12) | ((np.int64(data[p + 1]) & 0x3F) << 6)
            c = c | (np.int64(data[p + 2]) & 0x3F)
        else:
            c = ((b & 0x07) << 18) | ((np.int64(data[p + 1]) & 0x3F) << 12)
            c = c | ((np.int64(data[p + 2]) & 0x3F) << 6) | (np.int64(data[p + 3]) & 0x3F)
        kb[p] = cls[c]
        route = route_cp[c] != 0
        if not route and has_s and strie_next[b] >= 0:
            d = doc_of(offsets, n_docs, p)
            route = _trie_any(data, p, offsets[d + 1], strie_next, strie_tok)
        if not route and has_o and otrie_next[b] >= 0:
            d = doc_of(offsets, n_docs, p)
            route = _trie_any(data, p, offsets[d + 1], otrie_next, otrie_tok)
        if route:
            doc_route[doc_of(offsets, n_docs, p)] = 1
        p += step


@cuda.jit(device=True)
def _prev_lead(kb, p):  # pragma: no cover - device code
    q = p - 1
    while kb[q] == KB_CONT:
        q -= 1
    return q


@cuda.jit(device=True)
def _utf8_width(b):  # pragma: no cover - device code
    if b < 0x80:
        return 1
    if b < 0xE0:
        return 2
    if b < 0xF0:
        return 3
    return 4


@cuda.jit(cache=True)
def wsrun_kernel(data, n, kb, docstart, space_tok, max_space, flag, kind,
                 tokid):  # pragma: no cover - device code
    """One thread per maximal whitespace run (within a document): added tokens made of spaces
    (leftmost-longest, ``space_tok[l]`` = id of the run of l spaces or -1) and the regex
    boundaries inside the run."""
    p = cuda.grid(1)
    step = cuda.gridsize(1)
    while p < n:
        if kb[p] != CLS_WS:
            p += step
            continue
        if docstart[p] == 0 and kb[_prev_lead(kb, p)] == CLS_WS:
            p += step
            continue
        q = p
        u = -1  # start of the open plain-whitespace piece, -1 none
        cnt = 0  # its characters
        last = -1  # its last character
        while q < n and kb[q] == CLS_WS and (q == p or docstart[q] == 0):
            if data[q] == SPACE and max_space > 0:
                end = q + 1
                while end < n and data[end] == SPACE and docstart[end] == 0:
                    end += 1
                r = q
                while r < end:
                    ln = min(end - r, max_space)
                    while ln > 0 and space_tok[ln] < 0:
                        ln -= 1
                    if ln > 0:
                        u = -1
                        flag[r] = 1
                        kind[r] = KIND_TOKEN
                        tokid[r] = space_tok[ln]
                        for t in range(1, ln):
                            kind[r + t] = KIND_TOKEN_CONT
                        r += ln
                    else:
                        if u < 0:
                            u = r
                            cnt = 0
                            flag[r] = 1
                        cnt += 1
                        last = r
                        r += 1
                q = end
            else:
                if u < 0:
                    u = q
                    cnt = 0
                    flag[q] = 1
                cnt += 1
                last = q
                q += _utf8_width(np.int64(data[q]))
        # q: the first byte after the run; a non-space of the same piece unless a doc ends
        if u >= 0 and cnt >= 2 and q < n and docstart[q] == 0:
            flag[last] = 1
        p += step


@cuda.jit(device=True)
def contraction_len(data, n, kb, docstart, kind, j):  # pragma: no cover - device code
    """Length (2 or 3) of the contraction match starting at byte ``j``, else 0."""
    if j < 0 or data[j] != QUOTE:
        return 0
    if docstart[j] == 0:
        jp = _prev_lead(kb, j)
        if kind[jp] == 0:
            kp = kb[jp]
            if kp == CLS_WS:
                if data[jp] == SPACE:
                    return 0
            elif kp != CLS_L and kp != CLS_N:
                return 0
    if j + 1 >= n or docstart[j + 1] != 0:
        return 0
    c1 = data[j + 1]
    if c1 == 115 or c1 == 116 or c1 == 109 or c1 == 100:  # s t m d
        return 2
    if j + 2 >= n or docstart[j + 2] != 0:
        return 0
    c2 = data[j + 2]
    if (c1 == 114 and c2 == 101) or (c1 == 118 and c2 == 101) or (c1 == 108 and c2 == 108):
        return 3
    return 0


@cuda.jit(cache=True)
def boundary_kernel(data, n, kb, docstart, kind, flag):  # pragma: no cover - device code
    """Pre-token starts at non-whitespace characters (after :func:`wsrun_kernel`)."""
    p = cuda.grid(1)
    step = cuda.gridsize(1)
    while p < n:
        k = kb[p]
        if k == KB_CONT or k == CLS_WS:
            p += step
            continue
        if docstart[p] != 0:
            flag[p] = 1
            p += step
            continue
        pp = _prev_lead(kb, p)
        if kind[pp] != 0:
            flag[p] = 1
            p += step
            continue
        kp = kb[pp]
        if kp == CLS_WS:
            if data[pp] != SPACE:
                flag[p] = 1
            p += step
            continue
        if contraction_len(data, n, kb, docstart, kind, p - 1) > 0:
            pass
        elif contraction_len(data, n, kb, docstart, kind, p - 2) == 3:
            pass
        elif contraction_len(data, n, kb, docstart, kind, p) > 0:
            flag[p] = 1
        elif (contraction_len(data, n, kb, docstart, kind, p - 2) == 2
              or contraction_len(data, n, kb, docstart, kind, p - 3) == 3):
            flag[p] = 1
        elif kp != k:
            flag[p] = 1
        p += step
