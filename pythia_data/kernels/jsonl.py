"""Very long JSON lines without Python strings: the UTF-8 text of one member of a JSON object
line, unescaped straight from the line's bytes.

A 200 MB JSON line of CJK text is a 700 MB Python ``str`` (4 bytes per character once one
character is outside the BMP), and ``json.loads`` holds the line's ``str`` and the value's
``str`` at once. :func:`json_text_utf8` instead validates the whole line (UTF-8 and JSON
grammar) and writes the member's unescaped value as UTF-8 bytes. It answers -1 for anything
it does not take (the value is not a string, the key repeats, a ``\\u`` escape leaves a lone
surrogate, invalid UTF-8 or JSON anywhere); the caller then uses ``json.loads``, whose error
messages users see.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["json_text_utf8", "utf8_valid"]


@njit(cache=True, nogil=True)
def utf8_valid(data, lo, hi):  # pragma: no cover - jit
    """Is ``data[lo:hi]`` valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)?"""
    p = lo
    while p < hi:
        b = data[p]
        if b < 0x80:
            p += 1
            continue
        if 0xC2 <= b <= 0xDF:
            n = 1
            c_lo, c_hi = 0x80, 0xBF
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
            return False
        if p + n >= hi:
            return False
        c = data[p + 1]
        if c < c_lo or c > c_hi:
            return False
        for k in range(2, n + 1):
            c = data[p + k]
            if c < 0x80 or c > 0xBF:
                return False
        p += n + 1
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


@njit(cache=True, nogil=True)
def _string(data, p, hi, out, w):  # pragma: no cover - jit
    """Scan the JSON string starting at the quote ``data[p]``; with ``out`` (len > 0) write
    its unescaped UTF-8 from ``w``. Returns (end after the closing quote, new w, escapes
    seen) or (-1, w, 0) when invalid or holding a lone surrogate."""
    write = out.shape[0] > 0
    p += 1
    esc = False
    while p < hi:
        c = data[p]
        if c == 34:
            return p + 1, w, esc
        if c < 0x20:
            return -1, w, False
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
                    w += 1
                elif cp < 0x800:
                    out[w] = 0xC0 | (cp >> 6)
                    out[w + 1] = 0x80 | (cp & 0x3F)
                    w += 2
                elif cp < 0x10000:
                    out[w] = 0xE0 | (cp >> 12)
                    out[w + 1] = 0x80 | ((cp >> 6) & 0x3F)
                    out[w + 2] = 0x80 | (cp & 0x3F)
                    w += 3
                else:
                    out[w] = 0xF0 | (cp >> 18)
                    out[w + 1] = 0x80 | ((cp >> 12) & 0x3F)
                    out[w + 2] = 0x80 | ((cp >> 6) & 0x3F)
                    out[w + 3] = 0x80 | (cp & 0x3F)
                    w += 4
            continue
        if e == 34 or e == 92 or e == 47:
            v = e
        elif e == 98:
            v = 8
        elif e == 102:
            v = 12
        elif e == 110:
            v = 10
        elif e == 114:
            v = 13
        elif e == 116:
            v = 9
        else:
            return -1, w, False
        if write:
            out[w] = v
            w += 1
    return -1, w, False


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
    p, _w, _e = _string(data, p, hi, empty, 0)
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
            p, _w, _e = _string(data, p, hi, empty, 0)
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
def json_text_utf8(data, key, out):  # pragma: no cover - jit
    """The UTF-8 of member ``key`` (bytes, compared after unescaping) of the JSON object in
    ``data`` (one line), or of ``data`` itself if it is a JSON string, written to ``out``
    (room for ``data.shape[0]`` bytes). Returns the length, or -1 (see the module
    docstring)."""
    hi = data.shape[0]
    if not utf8_valid(data, 0, hi):
        return -1
    stack = np.zeros(256, dtype=np.uint8)
    empty = np.zeros(0, dtype=np.uint8)
    kbuf = np.zeros(key.shape[0] + 1, dtype=np.uint8)
    p = _ws(data, 0, hi)
    if p >= hi:
        return -1
    if data[p] == 34:  # the line is a JSON string
        end, n, _e = _string(data, p, hi, out, 0)
        if end < 0 or _ws(data, end, hi) != hi:
            return -1
        return n
    if data[p] != 123:
        return -1
    p = _ws(data, p + 1, hi)
    found = -1
    if p < hi and data[p] == 125:
        return -1
    while True:
        if p >= hi or data[p] != 34:
            return -1
        # the member's name: compared with key after unescaping (names are short)
        q, _w, _e = _string(data, p, hi, empty, 0)
        if q < 0:
            return -1
        same = False
        if q - p - 2 <= 6 * key.shape[0]:  # escapes take <= 6 bytes per unescaped byte
            kbuf = _grow(kbuf, q - p)
            kq, kn, _e2 = _string(data, p, q, kbuf, 0)
            if kq == q and kn == key.shape[0]:
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
            end, n, _e = _string(data, p, hi, out, 0)
            if end < 0:
                return -1
            found = n
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
def _grow(buf, n):  # pragma: no cover - jit
    if buf.shape[0] >= n:
        return buf
    return np.zeros(n, dtype=np.uint8)
