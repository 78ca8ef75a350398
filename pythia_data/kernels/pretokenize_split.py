"""Pre-token boundaries of the ``Split``-regex families (cl100k / Llama 3 / OLMo 2, o200k,
Qwen 2, DeepSeek V3), hand-compiled with Oniguruma's semantics.

:func:`split_family` appends the pre-tokens of one piece (the text between added tokens,
after normalization) to the entry arrays the encoder uses (``kinds`` 0, bytes
``[pa, pb)``). The families (ids as :class:`pythia_data.tokenize.families.Family`):

* 1 cl100k, 3 Qwen 2 (``D`` = 3, resp. 1)::

    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,D}
    | ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+

* 2 o200k (``U`` = ``[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]``, ``W`` =
  ``[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]``, ``C`` = the contractions above)::

    [^\\r\\n\\p{L}\\p{N}]?U*W+C?|[^\\r\\n\\p{L}\\p{N}]?U+W*C?|\\p{N}{1,3}
    | ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+

* 5 Qwen 3.5 / 3.6: Qwen 2's with ``[\\p{L}\\p{M}]+`` for the letter runs and
  ``[^\\s\\p{L}\\p{M}\\p{N}]+`` for the punctuation runs.

* 4 DeepSeek V3: three isolating Splits in sequence, each on the pieces of the one before:
  ``\\p{N}{1,3}``, then ``[\\u4e00-\\u9fa5\\u3040-\\u309f\\u30a0-\\u30ff]+``, then::

    [ASCII punctuation][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+
    | ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+

  (text no alternative matches, e.g. a digit group or control characters, stays one piece).

How the regexes are compiled (what Oniguruma does, alternative by alternative, in order):

* A match is tried at the end of the previous one; the first alternative that matches wins,
  each quantifier greedy, backtracking only inside the alternative.
* ``\\s*[\\r\\n]+`` on a whitespace run ends just after the run's *last* CR or LF;
  ``\\s+(?!\\S)`` takes the run up to the end of the piece, or gives back the last
  character before a non-space (only when the run has >= 2 characters); else ``\\s+``.
* ``[^\\r\\n\\p{L}\\p{N}]?`` is tried consumed first (a space, tab, punctuation, mark
  before the letters: ``" word"``, ``"(word"``), then not consumed.
* o200k's ``U*W+``: ``U*`` takes the longest run of U, then gives back until a W follows:
  the match of ``W+`` starts at the *last* W among the run's characters and the one after
  it, and takes the run of W from there. ``U+W*`` never backtracks.
* ``(?i:...)`` folds case; Oniguruma also matches U+017F LATIN SMALL LETTER LONG S for
  ``s`` (probed: no other code point matches a contraction letter).

Code point classes come from the ``cls`` table (bits probed from HF, see
``tools/gen_unicode_tables.py``): 1 ``\\p{L}``, 2 ``\\p{N}``, 4 ``\\s``, 8 U, 16 W,
32 ``\\p{M}``, 64 ``[\\p{P}\\p{S}]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pythia_data.kernels.pretokenize import (
    _is_ascii_alpha,
    _letters_from,
    borrow,
    class_run,
    cp_at,
)

__all__ = ["FAMILY_CL100K", "FAMILY_O200K", "FAMILY_QWEN2", "FAMILY_DEEPSEEK_V3", "FAMILY_QWEN3_5",
           "split_family", "split_family_kernel", "match_cl100k_family", "match_qwen2",
           "match_qwen3_5", "match_o200k", "match_none", "presplit_none", "presplit_deepseek"]

FAMILY_GPT2 = 0
FAMILY_CL100K = 1
FAMILY_O200K = 2
FAMILY_QWEN2 = 3
FAMILY_DEEPSEEK_V3 = 4
FAMILY_QWEN3_5 = 5

C_L = 1
C_N = 2
C_WS = 4
C_UP = 8
C_LO = 16
C_M = 32
C_PS = 64
_LF = 10
_CR = 13
_QUOTE = 39


@njit(cache=True, nogil=True, inline="always")
def _contraction(data, p, end):  # pragma: no cover - jit
    """End of ``(?i:'s|'t|'re|'ve|'m|'ll|'d)`` at byte ``p``, or -1."""
    if data[p] != _QUOTE or p + 1 >= end:
        return -1
    c1 = np.int32(data[p + 1])
    if c1 == 0xC5 and p + 2 < end and data[p + 2] == 0xBF:  # U+017F folds to s
        return p + 3
    l1 = c1 | 32
    if l1 == 115 or l1 == 116 or l1 == 109 or l1 == 100:  # s t m d (either case)
        return p + 2
    if p + 2 >= end:
        return -1
    l2 = np.int32(data[p + 2]) | 32
    if (l1 == 114 or l1 == 118) and l2 == 101:  # re ve
        return p + 3
    if l1 == 108 and l2 == 108:  # ll
        return p + 3
    return -1


@njit(cache=True, nogil=True, inline="always")
def _other_run(data, q, end, cls, slash, not_other):  # pragma: no cover - jit
    """``[^\\s\\p{L}\\p{N}]+`` from ``q`` (a match is known; ``not_other``: the class bits
    that end it, 7, or 7 | 32 when marks are letters), then ``[\\r\\n]*`` (``slash``:
    ``[\\r\\n/]*``)."""
    while q < end:
        c, w = cp_at(data, q)
        if cls[c] & not_other:
            break
        q += w
    while q < end:
        b = data[q]
        if b == _LF or b == _CR or (slash and b == 47):
            q += 1
        else:
            break
    return q


@njit(cache=True, nogil=True, inline="always")
def _ws_match(data, p, end, cls):  # pragma: no cover - jit
    """``\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`` at ``p`` (a whitespace character)."""
    q = p
    crlf_end = -1
    last = p
    while q < end:
        c, w = cp_at(data, q)
        if not cls[c] & C_WS:
            break
        if c == _LF or c == _CR:
            crlf_end = q + 1
        last = q
        q += w
    if crlf_end >= 0:
        return crlf_end
    if q == end or last == p:
        return q
    return last


@njit(cache=True, nogil=True, inline="always")
def match_cl100k(data, p, end, cls, max_digits, letters):  # pragma: no cover - jit
    """End of the cl100k-family match at ``p`` (< end); Qwen 2 and 3.5 have ``max_digits``
    1; ``letters`` is the class of the letter runs: ``\\p{L}`` (C_L), or ``[\\p{L}\\p{M}]``
    (C_L | C_M, Qwen 3.5, whose punctuation runs then exclude marks)."""
    c, w = cp_at(data, p)
    k = cls[c]
    if c == _QUOTE:
        r = _contraction(data, p, end)
        if r >= 0:
            return r
    if k & letters:
        return class_run(data, p + w, end, cls, letters)
    if c != _LF and c != _CR and not k & C_N and p + w < end:  # [^\r\n\p{L}\p{N}]? first
        c1, w1 = cp_at(data, p + w)
        if cls[c1] & letters:
            return class_run(data, p + w + w1, end, cls, letters)
    if k & C_N:
        q = p + w
        n = 1
        while q < end and n < max_digits:
            c1, w1 = cp_at(data, q)
            if not cls[c1] & C_N:
                break
            q += w1
            n += 1
        return q
    not_other = 7 | (letters & C_M)
    if not k & C_WS:
        return _other_run(data, p, end, cls, False, not_other)
    if c == 32 and p + 1 < end:
        c1, _w1 = cp_at(data, p + 1)
        if not cls[c1] & not_other:
            return _other_run(data, p + 1, end, cls, False, not_other)
    return _ws_match(data, p, end, cls)


@njit(cache=True, nogil=True, inline="always")
def match_cl100k_fast(data, p, end, cls, max_digits, letters):  # pragma: no cover - jit
    """:func:`match_cl100k` (the same ends) with a fast path for the commonest starts when
    the letter runs are ``\\p{L}+`` (``letters`` = C_L): an ASCII letter, or an ASCII
    character outside ``[\\r\\n\\p{L}\\p{N}']`` then an ASCII letter; the run is
    scanned 8 ASCII letters at a time. CPU only (the CUDA kernels use match_cl100k)."""
    b0 = data[p]
    if b0 < 0x80 and letters == C_L:
        if _is_ascii_alpha(b0):
            return _letters_from(data, p + 1, end, cls)
        if (b0 != _QUOTE and b0 != _LF and b0 != _CR and not cls[b0] & C_N and p + 1 < end
                and _is_ascii_alpha(data[p + 1])):
            return _letters_from(data, p + 2, end, cls)
    return match_cl100k(data, p, end, cls, max_digits, letters)


@njit(cache=True, nogil=True, inline="always")
def _o200k_upper_lower(data, s, end, cls):  # pragma: no cover - jit
    """``U*W+`` from ``s``: its end or -1."""
    q = s
    best = -1
    while q < end:
        c, w = cp_at(data, q)
        kk = cls[c]
        if kk & C_LO:
            best = q
        if not kk & C_UP:
            break
        q += w
    if best < 0:
        return -1
    return class_run(data, best, end, cls, C_LO)


@njit(cache=True, nogil=True, inline="always")
def _o200k_upper_plus(data, s, end, cls):  # pragma: no cover - jit
    """``U+W*`` from ``s``: its end or -1."""
    q = class_run(data, s, end, cls, C_UP)
    if q == s:
        return -1
    return class_run(data, q, end, cls, C_LO)


@njit(cache=True, nogil=True, inline="always")
def _contraction_tail(data, r, end):  # pragma: no cover - jit
    if r < end:
        t = _contraction(data, r, end)
        if t >= 0:
            return t
    return r


@njit(cache=True, nogil=True, _nrt=False)
def match_o200k(data, p, end, cls):  # pragma: no cover - jit
    """End of the o200k match at ``p`` (< end)."""
    c, w = cp_at(data, p)
    k = cls[c]
    prefix = c != _LF and c != _CR and not k & (C_L | C_N)
    if prefix and p + w < end:
        r = _o200k_upper_lower(data, p + w, end, cls)
        if r >= 0:
            return _contraction_tail(data, r, end)
    if k & (C_UP | C_LO):
        r = _o200k_upper_lower(data, p, end, cls)
        if r >= 0:
            return _contraction_tail(data, r, end)
    if prefix and p + w < end:
        r = _o200k_upper_plus(data, p + w, end, cls)
        if r >= 0:
            return _contraction_tail(data, r, end)
    if k & C_UP:
        r = _o200k_upper_plus(data, p, end, cls)
        if r >= 0:
            return _contraction_tail(data, r, end)
    if k & C_N:
        q = p + w
        n = 1
        while q < end and n < 3:
            c1, w1 = cp_at(data, q)
            if not cls[c1] & C_N:
                break
            q += w1
            n += 1
        return q
    if not k & C_WS:
        return _other_run(data, p, end, cls, True, 7)
    if c == 32 and p + 1 < end:
        c1, _w1 = cp_at(data, p + 1)
        if not cls[c1] & 7:
            return _other_run(data, p + 1, end, cls, True, 7)
    return _ws_match(data, p, end, cls)


@njit(cache=True, nogil=True, inline="always")
def _ascii_punct(b):
    return (33 <= b <= 47) or (58 <= b <= 64) or (91 <= b <= 96) or (123 <= b <= 126)


@njit(cache=True, nogil=True, inline="always")
def _ascii_alpha(b):
    return (65 <= b <= 90) or (97 <= b <= 122)


@njit(cache=True, nogil=True, inline="always")
def _is_cjk(c):
    return (0x4E00 <= c <= 0x9FA5) or (0x3040 <= c <= 0x30FF)


@njit(cache=True, nogil=True, _nrt=False)
def match_deepseek(data, p, end, cls):  # pragma: no cover - jit
    """End of DeepSeek V3's third-stage match at ``p`` (< end), or -1 when none starts
    there."""
    b = np.int32(data[p])
    if b < 128 and _ascii_punct(b) and p + 1 < end and _ascii_alpha(np.int32(data[p + 1])):
        q = p + 2
        while q < end and _ascii_alpha(np.int32(data[q])):
            q += 1
        return q
    c, w = cp_at(data, p)
    k = cls[c]
    if c != _LF and c != _CR and not k & (C_L | C_PS) and p + w < end:
        c1, w1 = cp_at(data, p + w)
        if cls[c1] & (C_L | C_M):
            return class_run(data, p + w + w1, end, cls, C_L | C_M)
    if k & (C_L | C_M):
        return class_run(data, p + w, end, cls, C_L | C_M)
    q = -1
    if k & C_PS:
        q = p
    elif c == 32 and p + 1 < end:
        c1, _w1 = cp_at(data, p + 1)
        if cls[c1] & C_PS:
            q = p + 1
    if q >= 0:
        q = class_run(data, q, end, cls, C_PS)
        while q < end and (data[q] == _LF or data[q] == _CR):
            q += 1
        return q
    if k & C_WS:
        return _ws_match(data, p, end, cls)
    return -1


@njit(cache=True, nogil=True, inline="always")
def _put(kinds, pa, pb, m, a, b):
    kinds[m] = 0
    pa[m] = a
    pb[m] = b
    return m + 1


@njit(cache=True, nogil=True, _nrt=False)
def _split_deepseek(data, lo, hi, cls, kinds, pa, pb, m):  # pragma: no cover - jit
    p = lo
    while p < hi:
        c, w = cp_at(data, p)
        if cls[c] & C_N:  # stage 1: digits in groups of up to three
            q = p + w
            n = 1
            while q < hi and n < 3:
                c1, w1 = cp_at(data, q)
                if not cls[c1] & C_N:
                    break
                q += w1
                n += 1
            m = _put(kinds, pa, pb, m, p, q)
            p = q
            continue
        e1 = p + w  # the stage-1 gap: up to the next digit
        while e1 < hi:
            c1, w1 = cp_at(data, e1)
            if cls[c1] & C_N:
                break
            e1 += w1
        while p < e1:  # stage 2: kana / CJK runs and the text between them
            c, w = cp_at(data, p)
            cjk = _is_cjk(c)
            e2 = p + w
            while e2 < e1:
                c1, w1 = cp_at(data, e2)
                if _is_cjk(c1) != cjk:
                    break
                e2 += w1
            while p < e2:  # stage 3
                r = match_deepseek(data, p, e2, cls)
                if r < 0:  # no match starts here: a gap up to the next match
                    _c, w = cp_at(data, p)
                    r = p + w
                    while r < e2 and match_deepseek(data, r, e2, cls) < 0:
                        _c, w = cp_at(data, r)
                        r += w
                m = _put(kinds, pa, pb, m, p, r)
                p = r
    return m


@njit(cache=True, nogil=True)
def split_family(data, lo, hi, cls, family, kinds, pa, pb, m):  # pragma: no cover - jit
    """Append the pre-tokens of the piece ``data[lo:hi]`` under ``family`` (1..5) as
    entries ``m, m+1, ...`` (``kinds`` 0, bytes ``[pa, pb)``); returns the new count."""
    if family == FAMILY_DEEPSEEK_V3:
        return _split_deepseek(data, lo, hi, cls, kinds, pa, pb, m)
    p = lo
    if family == FAMILY_O200K:
        while p < hi:
            q = match_o200k(data, p, hi, cls)
            m = _put(kinds, pa, pb, m, p, q)
            p = q
        return m
    digits = 1 if family == FAMILY_QWEN2 or family == FAMILY_QWEN3_5 else 3
    letters = C_L | C_M if family == FAMILY_QWEN3_5 else C_L
    while p < hi:
        q = match_cl100k_fast(data, p, hi, cls, digits, letters)
        m = _put(kinds, pa, pb, m, p, q)
        p = q
    return m


# The encoder (:func:`pythia_data.kernels.bpe.family_encoder`) is compiled once per family
# around two of these: the match of one pre-token at ``p`` (< end), and a splitter run on a
# whole segment first (DeepSeek V3's stages; a no-op for the one-regex families, whose
# matches then come one at a time).


@njit(cache=True, nogil=True, inline="always")
def match_cl100k_family(data, p, end, cls):  # pragma: no cover - jit
    """End of the cl100k match at ``p`` (< end)."""
    return match_cl100k_fast(data, p, end, cls, 3, C_L)


@njit(cache=True, nogil=True, inline="always")
def match_qwen2(data, p, end, cls):  # pragma: no cover - jit
    """End of the Qwen 2 match at ``p`` (< end)."""
    return match_cl100k_fast(data, p, end, cls, 1, C_L)


@njit(cache=True, nogil=True, inline="always")
def match_qwen3_5(data, p, end, cls):  # pragma: no cover - jit
    """End of the Qwen 3.5 match at ``p`` (< end)."""
    return match_cl100k_fast(data, p, end, cls, 1, C_L | C_M)


@njit(cache=True, nogil=True, inline="always")
def match_none(data, p, end, cls):  # pragma: no cover - jit
    """The matcher of a family whose splitter takes every segment whole: never called."""
    return end


@njit(cache=True, nogil=True, inline="always")
def presplit_none(data, lo, hi, cls, kinds, pa, pb, m):  # pragma: no cover - jit
    """The one-regex families' splitter: nothing split, the matches start at ``lo``."""
    return lo, m


@njit(cache=True, nogil=True, inline="always")
def presplit_deepseek(data, lo, hi, cls, kinds, pa, pb, m):  # pragma: no cover - jit
    """DeepSeek V3's splitter: the pre-tokens of ``data[lo:hi]`` appended as entries from
    ``m`` (as :func:`split_family`); returns (hi, the new count)."""
    return hi, _split_deepseek(data, lo, hi, cls, kinds, pa, pb, m)


@njit(cache=True, nogil=True)
def split_family_kernel(data, offsets, cls, family, starts, ends):  # pragma: no cover - jit
    """Pre-tokens of every document ``data[offsets[i]:offsets[i+1]]`` (for tests and
    tools): byte ranges into ``starts``/``ends`` (room for len(data)); returns the count.

    The arrays are used through :func:`borrow`-ed views, as in the encoder: without them
    the reference counting of the arrays passed to the inlined matchers took ~2/3 of this
    kernel's time (0.24 s against 0.13 s on the bench's 41.6 MB), which is not what the
    encoder pays."""
    own = np.empty(starts.shape[0], dtype=np.int8)
    kinds = borrow(own)
    data = borrow(data)
    offsets = borrow(offsets)
    cls = borrow(cls)
    starts = borrow(starts)
    ends = borrow(ends)
    m = 0
    for i in range(offsets.shape[0] - 1):
        m = split_family(data, offsets[i], offsets[i + 1], cls, family, kinds, starts, ends, m)
    if own.shape[0] > 0:  # kinds' owner, used after the view's last use (kept alive)
        own[0] = 0
    return m
