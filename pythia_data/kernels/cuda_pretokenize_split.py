"""numba.cuda pre-token boundaries of the Split-regex families (cl100k / Llama 3 / OLMo 2,
o200k, Qwen 2, DeepSeek V3): one thread per *sync point*.

A sync point is a position where a pre-token certainly starts, whatever came before it, so
a thread can start the family's sequential scanner there (the cpu engine's own matchers in
:mod:`pythia_data.kernels.pretokenize_split`, compiled for the device) and stop at the next
sync point, which its scan lands on exactly. Sync points (``prev`` the character before):

* a document's first byte (documents with added tokens are routed to the cpu engine, so a
  document is one piece);
* every family: ``prev`` in ``\\p{N}`` and the character not (``\\p{N}{1,3}`` is the only
  alternative that holds a digit, and it stops there);
* cl100k, Qwen 2: ``prev`` in ``\\p{L}`` and the character not: the only alternatives
  holding a letter (a contraction, ``[^\\r\\n\\p{L}\\p{N}]?\\p{L}+``) end at the first
  non-letter; Qwen 3.5 the same with ``[\\p{L}\\p{M}]`` for ``\\p{L}``;
* o200k: ``prev`` in ``\\p{L}`` and the character neither in ``\\p{L}``, ``\\p{M}`` nor a
  quote (the letter alternatives continue through marks and a trailing contraction);
* DeepSeek V3: a change between digit and non-digit, between kana/CJK and the rest (the
  first two Splits isolate them), and ``prev`` in ``\\p{L}`` with the character in neither
  ``\\p{L}`` nor ``\\p{M}``.

``kb`` is the class byte of each character's lead byte (the full ``cls`` table;
``KB_CONT`` on continuation bytes), as :func:`cuda_pretokenize.classify_kernel` writes it.
A thread sets ``flag`` at every pre-token start from its sync point up to the next one.
"""

from __future__ import annotations

import types

from numba import cuda

from pythia_data.kernels import pretokenize, pretokenize_split
from pythia_data.kernels.cuda_pretokenize import KB_CONT, doc_of
from pythia_data.kernels.pretokenize_split import (
    C_L,
    C_M,
    C_N,
    FAMILY_DEEPSEEK_V3,
    FAMILY_O200K,
    FAMILY_QWEN2,
    FAMILY_QWEN3_5,
)

__all__ = ["split_boundary_kernel"]

_QUOTE = 39

# The cpu engine's matchers, compiled again as device functions: each Python function is
# cloned with a globals dict in which the functions it calls are the device copies (so the
# CUDA simulator, which runs device code as Python, never calls a cpu-compiled function).
_SHARED = ["_contraction", "class_run", "_other_run", "_ws_match", "match_cl100k",
           "_o200k_upper_lower", "_o200k_upper_plus", "_contraction_tail", "match_o200k",
           "_ascii_punct", "_ascii_alpha", "_is_cjk", "match_deepseek"]


def _device_copies() -> dict:
    scope = dict(vars(pretokenize_split))
    sources = {"cp_at": pretokenize.cp_at}
    sources.update({name: getattr(pretokenize_split, name) for name in _SHARED})
    for name, dispatcher in sources.items():
        fn = dispatcher.py_func
        clone = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__,
                                   fn.__closure__)
        scope[name] = cuda.jit(device=True)(clone)
    return scope


_DEVICE = _device_copies()
cp_at = _DEVICE["cp_at"]
match_cl100k = _DEVICE["match_cl100k"]
match_o200k = _DEVICE["match_o200k"]
match_deepseek = _DEVICE["match_deepseek"]


@cuda.jit(device=True)
def _is_cjk(c):  # pragma: no cover - device code
    return (0x4E00 <= c <= 0x9FA5) or (0x3040 <= c <= 0x30FF)


@cuda.jit(device=True)
def _prev_lead(kb, p):  # pragma: no cover - device code
    q = p - 1
    while kb[q] == KB_CONT:
        q -= 1
    return q


@cuda.jit(device=True)
def is_sync(data, kb, docstart, p, family):  # pragma: no cover - device code
    """Does a pre-token certainly start at the lead byte ``p``?"""
    if docstart[p] != 0:
        return True
    k = kb[p]
    kp = kb[_prev_lead(kb, p)]
    if kp & C_N:
        if not k & C_N:
            return True
    if family == FAMILY_DEEPSEEK_V3:
        if k & C_N and not kp & C_N:
            return True
        c, _w = cp_at(data, p)
        cp, _wp = cp_at(data, _prev_lead(kb, p))
        if _is_cjk(c) != _is_cjk(cp):
            return True
        return (kp & C_L) != 0 and not k & (C_L | C_M)
    if family == FAMILY_O200K:
        return (kp & C_L) != 0 and not k & (C_L | C_M) and data[p] != _QUOTE
    if family == FAMILY_QWEN3_5:
        return (kp & (C_L | C_M)) != 0 and not k & (C_L | C_M)
    return (kp & C_L) != 0 and not k & C_L


@cuda.jit(device=True)
def _deepseek_scan(data, p, hi, kb, docstart, cls, flag):  # pragma: no cover - device code
    """DeepSeek V3's three Splits from the sync point ``p`` up to the next sync point (the
    cpu engine's :func:`pretokenize_split._split_deepseek`, writing start flags)."""
    while p < hi:
        flag[p] = 1
        c, w = cp_at(data, p)
        if cls[c] & C_N:
            q = p + w
            m = 1
            while q < hi and m < 3:
                c1, w1 = cp_at(data, q)
                if not cls[c1] & C_N:
                    break
                q += w1
                m += 1
            r = q
        else:
            e = p + w  # the end of this Split-1 / Split-2 piece: the next digit or CJK change
            cjk = _is_cjk(c)
            while e < hi:
                c1, w1 = cp_at(data, e)
                if cls[c1] & C_N or _is_cjk(c1) != cjk:
                    break
                e += w1
            r = match_deepseek(data, p, e, cls)
            if r < 0:
                _c, w = cp_at(data, p)
                r = p + w
                while r < e and match_deepseek(data, r, e, cls) < 0:
                    _c, w = cp_at(data, r)
                    r += w
        p = r
        if p < hi and is_sync(data, kb, docstart, p, FAMILY_DEEPSEEK_V3):
            return


@cuda.jit(cache=True)
def split_boundary_kernel(data, n, offsets, n_docs, kb, docstart, cls, family,
                          flag):  # pragma: no cover - device code
    """Pre-token starts of the Split-regex ``family`` (1..5) into ``flag``: one thread per
    sync point, scanning to the next one."""
    p = cuda.grid(1)
    step = cuda.gridsize(1)
    while p < n:
        if kb[p] == KB_CONT or not is_sync(data, kb, docstart, p, family):
            p += step
            continue
        hi = offsets[doc_of(offsets, n_docs, p) + 1]
        if family == FAMILY_DEEPSEEK_V3:
            _deepseek_scan(data, p, hi, kb, docstart, cls, flag)
        else:
            q = p
            while q < hi:
                flag[q] = 1
                if family == FAMILY_O200K:
                    q = match_o200k(data, q, hi, cls)
                elif family == FAMILY_QWEN2:
                    q = match_cl100k(data, q, hi, cls, 1, C_L)
                elif family == FAMILY_QWEN3_5:
                    q = match_cl100k(data, q, hi, cls, 1, C_L | C_M)
                else:
                    q = match_cl100k(data, q, hi, cls, 3, C_L)
                if q < hi and is_sync(data, kb, docstart, q, family):
                    break
        p += step
