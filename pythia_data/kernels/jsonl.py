"""JSON lines without Python strings: the UTF-8 text of one member of a JSON object line,
unescaped straight from the line's bytes.

:func:`jsonl_block` reads a block of many lines (how ``tokenize`` reads its input): for
each line it takes, the document's UTF-8 goes into one output buffer with its offsets, so
the encoder gets the block's documents as one buffer, without a ``str`` per line (per-line
``json.loads`` + ``str.encode`` kept a worker's reader thread at ~0.1 core beside the
encoder). :func:`json_text_utf8` does the same for one line (a 200 MB JSON line of CJK text
is a 700 MB Python ``str``, and ``json.loads`` holds the line's and the value's at once).

A line is taken only when it is a JSON object whose member ``key`` appears once with a
string value (or the line is a JSON string), the whole line is valid JSON (RFC 8259,
nesting up to 256 levels) and valid UTF-8 (no overlongs, no encoded surrogates), and no
``\\u`` escape leaves a lone surrogate. Anything else -- a blank line, a BOM or RS at its
start, a list of strings, NaN, a repeated key, ... -- is declined, and the caller reads that
line with ``json.loads``, whose documents and error messages users see. Bytes outside
strings must be JSON's own ASCII, so checking UTF-8 inside strings checks the whole line;
plain runs of string bytes are scanned and copied 8 at a time (:func:`_special`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from pythia_data.kernels.pretokenize import borrow_readonly, find_byte, load8

__all__ = ["first_invalid_document", "json_text_utf8", "jsonl_block", "last_byte", "utf8_valid"]


@njit(cache=True, nogil=True)
def utf8_valid(data, lo, hi):  # pragma: no cover - jit
    """Is ``data[lo:hi]`` valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)?"""
    p = lo
    while p < hi:
        if data[p] < 0x80:
            p += 1
            continue
        n = _utf8_seq(data, p, hi)
        if n == 0:
            return False
        p += n
    return True


@njit(cache=True, nogil=True, inline="always")
def _ws(data, p, hi):
    while p < hi and (data[p] == 32 or data[p] == 9 or data[p] == 10 or data[p] == 13):
        p += 1
    return p


@njit(cache=True, nogil=True, inline="always")
def _hex4(data, p):
    v = 0
    for k in range(4):
        c = data[p + k]
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        else:
            return -1
        v = v * 16 + d
    return v


@intrinsic
def _store8(typingctx, arr, idx, word):
    """Store the uint64 ``word`` little-endian at ``arr[idx:idx+8]`` (C-contiguous uint8
    array): one unaligned store, no checks (the caller guarantees the room)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.layout == "C"
            and isinstance(idx, types.Integer) and word == types.uint64):
        return None
    sig = types.void(arr, idx, word)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.gep(ary.data, [index])
        dst = builder.bitcast(ptr, ir.IntType(64).as_pointer())
        builder.store(args[2], dst, align=1)
        return context.get_dummy_value()

    return sig, codegen


_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_SPACES = np.uint64(0x2020202020202020)


@njit(cache=True, nogil=True, inline="always")
def _special(v):
    """Bit 7 of each byte of ``v`` that is a quote, a backslash, a control character (<
    0x20) or not ASCII; the lowest flagged byte is always one (higher ones may be false)."""
    q = v ^ _QUOTES
    b = v ^ _BACKSLASHES
    return (((q - _ONES) & ~q) | ((b - _ONES) & ~b) | ((v - _SPACES) & ~v) | v) & _HIGH


@njit(cache=True, nogil=True, inline="always")
def _utf8_seq(data, p, hi):
    """The length of the valid UTF-8 sequence of a non-ASCII lead byte at ``p`` (ending
    before ``hi``), or 0 (overlong, surrogate, > U+10FFFF, cut, bad continuation)."""
    b = data[p]
    if 0xC2 <= b <= 0xDF:
        n, c_lo, c_hi = 1, 0x80, 0xBF
    elif b == 0xE0:
        n, c_lo, c_hi = 2, 0xA0, 0xBF
    elif b == 0xED:
        n, c_lo, c_hi = 2, 0x80, 0x9F
    elif 0xE1 <= b <= 0xEF:
        n, c_lo, c_hi = 2, 0x80, 0xBF
    elif b == 0xF0:
        n, c_lo, c_hi = 3, 0x90, 0xBF
    elif 0xF1 <= b <= 0xF3:
        n, c_lo, c_hi = 3, 0x80, 0xBF
    elif b == 0xF4:
        n, c_lo, c_hi = 3, 0x80, 0x8F
    else:
        return 0
    if p + n >= hi:
        return 0
    c = data[p + 1]
    if c < c_lo or c > c_hi:
        return 0
    for k in range(2, n + 1):
        c = data[p + k]
        if c < 0x80 or c > 0xBF:
            return 0
    return n + 1


@njit(cache=True, nogil=True)
def _string(data, p, hi, out, w):  # pragma: no cover - jit
    """Scan the JSON string starting at the quote ``data[p]`` (its bytes must be valid
    UTF-8); with ``out`` (len > 0) write its unescaped UTF-8 from ``w``. Returns (end after
    the closing quote, new w, escapes seen) or (-1, w, False) when invalid or holding a
    lone surrogate.

    Runs of plain bytes go 8 at a time (:func:`_special`); writing, whole words are
    stored, so ``out`` must have 8 bytes of room past the last byte written whenever the
    input has 8 bytes left before ``hi`` (``w <= p`` always holds for callers whose
    ``out`` is as long as ``data``)."""
    write = out.shape[0] > 0
    p += 1
    esc = False
    while True:
        while p + 8 <= hi:
            v = load8(data, p)
            m = _special(v)
            if write:
                _store8(out, w, v)
            if m == np.uint64(0):
                p += 8
                w += 8
                continue
            k = np.int64(trailing_zeros(m) >> 3)
            p += k
            w += k
            break
        if p >= hi:
            return -1, w, False
        c = data[p]
        if c == 34:
            return p + 1, w, esc
        if c < 0x20:
            return -1, w, False
        if c >= 0x80:
            n = _utf8_seq(data, p, hi)
            if n == 0:
                return -1, w, False
            if write:
                for k in range(n):
                    out[w + k] = data[p + k]
            p += n
            w += n
            continue
        if c != 92:
            if write:
                out[w] = c
            w += 1
            p += 1
            continue
        esc = True
        if p + 1 >= hi:
            return -1, w, False
        e = data[p + 1]
        p += 2
        if e == 117:  # \uXXXX
            if p + 4 > hi:
                return -1, w, False
            cp = _hex4(data, p)
            if cp < 0:
                return -1, w, False
            p += 4
            if 0xD800 <= cp <= 0xDBFF:
                if p + 6 > hi or data[p] != 92 or data[p + 1] != 117:
                    return -1, w, False
                lo = _hex4(data, p + 2)
                if lo < 0xDC00 or lo > 0xDFFF:
                    return -1, w, False
                p += 6
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
            elif 0xDC00 <= cp <= 0xDFFF:
                return -1, w, False
            if write:
                if cp < 0x80:
                    out[w] = cp
                elif cp < 0x800:
                    out[w] = 0xC0 | (cp >> 6)
                    out[w + 1] = 0x80 | (cp & 0x3F)
                elif cp < 0x10000:
                    out[w] = 0xE0 | (cp >> 12)
                    out[w + 1] = 0x80 | ((cp >> 6) & 0x3F)
                    out[w + 2] = 0x80 | (cp & 0x3F)
                else:
                    out[w] = 0xF0 | (cp >> 18)
                    out[w + 1] = 0x80 | ((cp >> 12) & 0x3F)
                    out[w + 2] = 0x80 | ((cp >> 6) & 0x3F)
                    out[w + 3] = 0x80 | (cp & 0x3F)
            w += 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
            continue
        if e == 34 or e == 92 or e == 47:
            v8 = e
        elif e == 98:
            v8 = 8
        elif e == 102:
            v8 = 12
        elif e == 110:
            v8 = 10
        elif e == 114:
            v8 = 13
        elif e == 116:
            v8 = 9
        else:
            return -1, w, False
        if write:
            out[w] = v8
        w += 1


@njit(cache=True, nogil=True, inline="always")
def _digits(data, p, hi):
    q = p
    while q < hi and 48 <= data[q] <= 57:
        q += 1
    return q


@njit(cache=True, nogil=True)
def _number(data, p, hi):  # pragma: no cover - jit
    """End of the JSON number at ``p``, or -1."""
    if p < hi and data[p] == 45:
        p += 1
    if p >= hi:
        return -1
    if data[p] == 48:
        p += 1
    elif 49 <= data[p] <= 57:
        p = _digits(data, p, hi)
    else:
        return -1
    if p < hi and data[p] == 46:
        q = _digits(data, p + 1, hi)
        if q == p + 1:
            return -1
        p = q
    if p < hi and (data[p] == 101 or data[p] == 69):
        p += 1
        if p < hi and (data[p] == 43 or data[p] == 45):
            p += 1
        q = _digits(data, p, hi)
        if q == p:
            return -1
        p = q
    return p


@njit(cache=True, nogil=True, inline="always")
def _literal(data, p, hi, word):
    n = word.shape[0]
    if p + n > hi:
        return -1
    for k in range(n):
        if data[p + k] != word[k]:
            return -1
    return p + n


@njit(cache=True, nogil=True)
def _member_key(data, p, hi, empty):  # pragma: no cover - jit
    """An object member's ``"key" :`` at ``p`` (no leading whitespace): the position after
    the colon, or -1."""
    if p >= hi or data[p] != 34:
        return -1
    p, _w, _e = _string(data, p, hi, empty, np.int64(0))
    if p < 0:
        return -1
    p = _ws(data, p, hi)
    if p >= hi or data[p] != 58:
        return -1
    return p + 1


@njit(cache=True, nogil=True)
def _value(data, p, hi, stack):  # pragma: no cover - jit
    """End of the JSON value at ``p`` (nested objects and arrays through ``stack``), or -1."""
    empty = np.zeros(0, dtype=np.uint8)
    true_w = np.array([116, 114, 117, 101], dtype=np.uint8)
    false_w = np.array([102, 97, 108, 115, 101], dtype=np.uint8)
    null_w = np.array([110, 117, 108, 108], dtype=np.uint8)
    depth = 0
    while True:
        p = _ws(data, p, hi)
        if p >= hi:
            return -1
        c = data[p]
        # one scalar value or the opening of a container
        if c == 123 or c == 91:  # { [
            if depth >= stack.shape[0]:
                return -1
            stack[depth] = c
            depth += 1
            p = _ws(data, p + 1, hi)
            if p < hi and data[p] == (125 if c == 123 else 93):
                depth -= 1
                p += 1
            elif c == 123:
                p = _member_key(data, p, hi, empty)
                if p < 0:
                    return -1
                continue
            else:
                continue
        elif c == 34:
            p, _w, _e = _string(data, p, hi, empty, np.int64(0))
        elif c == 116:
            p = _literal(data, p, hi, true_w)
        elif c == 102:
            p = _literal(data, p, hi, false_w)
        elif c == 110:
            p = _literal(data, p, hi, null_w)
        else:
            p = _number(data, p, hi)
        if p < 0:
            return -1
        # after a value: close containers, or a comma and the next member/element
        while True:
            if depth == 0:
                return p
            p = _ws(data, p, hi)
            if p >= hi:
                return -1
            top = stack[depth - 1]
            c = data[p]
            if c == 44:  # ,
                p = _ws(data, p + 1, hi)
                if top == 123:
                    p = _member_key(data, p, hi, empty)
                    if p < 0:
                        return -1
                break
            if (top == 123 and c == 125) or (top == 91 and c == 93):
                depth -= 1
                p += 1
                continue
            return -1


@njit(cache=True, nogil=True)
def _line_text(data, lo, hi, key, out, w, stack, kbuf):  # pragma: no cover - jit
    """Write the document of the JSON line ``data[lo:hi]`` (member ``key`` of an object, or
    the line's string) to ``out`` from ``w``; returns the new ``w``, or -1 for a line not
    taken (see the module docstring). Bytes outside strings must be JSON's ASCII; inside
    strings UTF-8 is checked, so the whole line is checked. ``kbuf``: room for
    ``6 * len(key) + 8`` bytes; ``stack``: the nesting limit."""
    empty = np.zeros(0, dtype=np.uint8)
    p = _ws(data, lo, hi)
    if p >= hi:
        return -1
    if data[p] == 34:  # the line is a JSON string
        end, w, _e = _string(data, p, hi, out, w)
        if end < 0 or _ws(data, end, hi) != hi:
            return -1
        return w
    if data[p] != 123:
        return -1
    p = _ws(data, p + 1, hi)
    found = -1
    nk = key.shape[0]
    if p < hi and data[p] == 125:
        return -1
    while True:
        if p >= hi or data[p] != 34:
            return -1
        # the member's name: compared with key after unescaping (names are short)
        q, _w, esc = _string(data, p, hi, empty, np.int64(0))
        if q < 0:
            return -1
        same = False
        if not esc:
            if q - p - 2 == nk:
                same = True
                for k in range(nk):
                    if data[p + 1 + k] != key[k]:
                        same = False
                        break
        elif q - p - 2 <= 6 * nk:  # escapes take <= 6 bytes per unescaped byte
            kq, kn, _e2 = _string(data, p, q, kbuf, np.int64(0))
            if kq == q and kn == nk:
                same = True
                for k in range(kn):
                    if kbuf[k] != key[k]:
                        same = False
                        break
        p = _ws(data, q, hi)
        if p >= hi or data[p] != 58:
            return -1
        p = _ws(data, p + 1, hi)
        if same:
            if found >= 0 or p >= hi or data[p] != 34:
                return -1  # a repeated key (json keeps the last) or not a string
            end, found, _e = _string(data, p, hi, out, w)
            if end < 0:
                return -1
            p = end
        else:
            p = _value(data, p, hi, stack)
            if p < 0:
                return -1
        p = _ws(data, p, hi)
        if p >= hi:
            return -1
        if data[p] == 44:
            p = _ws(data, p + 1, hi)
            continue
        if data[p] == 125:
            if _ws(data, p + 1, hi) != hi:
                return -1
            return found
        return -1


@njit(cache=True, nogil=True)
def json_text_utf8(data, key, out):  # pragma: no cover - jit
    """The UTF-8 of member ``key`` (bytes, compared after unescaping) of the JSON object in
    ``data`` (one line), or of ``data`` itself if it is a JSON string, written to ``out``
    (room for ``data.shape[0]`` bytes). Returns the length, or -1 (see the module
    docstring)."""
    stack = np.zeros(256, dtype=np.uint8)
    kbuf = np.zeros(6 * key.shape[0] + 8, dtype=np.uint8)
    # read-only view: the parser compiles once for bytes and for writable buffers
    zero = np.int64(0)
    return _line_text(borrow_readonly(data), zero, data.shape[0], key, out, zero, stack,
                      kbuf)


@njit(cache=True, nogil=True)
def jsonl_block(data, pos, hi, key, out, w, doc_off, line_end, taken):  # pragma: no cover
    """The documents of the JSON lines in ``data[pos:hi]`` (whole lines: each ends with
    ``\n``, or at ``hi``), one line after another, at most ``taken.shape[0]`` lines. For
    line ``i``: ``line_end[i]`` (the position after its ``\n``), ``taken[i]`` (1: its
    document is ``out[doc_off[i]:doc_off[i + 1]]``, unescaped UTF-8; 0: the line is not
    taken -- see the module docstring -- and ``doc_off[i + 1] == doc_off[i]``). Documents
    are written from ``w`` (``doc_off[0] = w``); ``out`` needs room for ``hi - pos + w``
    bytes. Returns (lines done, position after them, the new ``w``)."""
    stack = np.zeros(256, dtype=np.uint8)
    kbuf = np.zeros(6 * key.shape[0] + 8, dtype=np.uint8)
    data = borrow_readonly(data)  # the parser compiles once for bytes and writable buffers
    cap = taken.shape[0]
    doc_off[0] = w
    n = 0
    while pos < hi and n < cap:
        e = find_byte(data, pos, hi, 10)
        e = e + 1 if e < hi else hi
        r = _line_text(data, pos, e, key, out, w, stack, kbuf)
        if r >= 0:
            taken[n] = 1
            w = r
        else:
            taken[n] = 0
        line_end[n] = e
        doc_off[n + 1] = w
        n += 1
        pos = e
    return n, pos, w


@njit(cache=True, nogil=True)
def last_byte(data, lo, hi, x):  # pragma: no cover - jit
    """The last position of byte ``x`` in ``data[lo:hi]``, or -1."""
    p = hi - 1
    while p >= lo:
        if data[p] == x:
            return p
        p -= 1
    return -1


@njit(cache=True, nogil=True)
def first_invalid_document(data, offsets):  # pragma: no cover - jit
    """The first ``i`` whose ``data[offsets[i]:offsets[i + 1]]`` is not valid UTF-8, or
    -1 (ASCII runs 8 bytes at a time)."""
    for i in range(offsets.shape[0] - 1):
        p, hi = offsets[i], offsets[i + 1]
        while p < hi:
            if p + 8 <= hi and (load8(data, p) & _HIGH) == np.uint64(0):
                p += 8
                continue
            if data[p] < 0x80:
                p += 1
                continue
            n = _utf8_seq(data, p, hi)
            if n == 0:
                return i
            p += n
    return -1
