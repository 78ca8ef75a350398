"""Validation kernel for MMIDIDX index arrays (one pass, no temporaries).

Every bound is checked without overflow: a sum is never formed before it is compared, so a
hostile pointer such as ``2**63 - 2`` cannot wrap around in int64 and pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# result codes of _check_index
OK = 0
NEGATIVE_SIZE = 1
POINTER_OUT_OF_RANGE = 2
DOC_IDX_NOT_MONOTONIC = 3
DOC_IDX_OUT_OF_RANGE = 4
POINTER_MISALIGNED = 5


@njit(cache=True, nogil=True)
def _check_index(sizes, pointers, itemsize, bin_bytes, doc_idx):  # pragma: no cover - jit
    n = sizes.shape[0]
    for i in range(n):
        s = np.int64(sizes[i])
        if s < 0:
            return NEGATIVE_SIZE, i
        p = pointers[i]
        # s * itemsize <= (2**31 - 1) * 8: no overflow; compare p against the room left.
        if p < 0 or p > bin_bytes or s * itemsize > bin_bytes - p:
            return POINTER_OUT_OF_RANGE, i
        if p % itemsize != 0:
            return POINTER_MISALIGNED, i
    prev = np.int64(0)
    for j in range(doc_idx.shape[0]):
        d = doc_idx[j]
        if d < 0 or d > n:
            return DOC_IDX_OUT_OF_RANGE, j
        if d < prev:
            return DOC_IDX_NOT_MONOTONIC, j
        prev = d
    return OK, -1


@njit(cache=True, nogil=True)
def _is_running_sum(sizes, pointers, itemsize):  # pragma: no cover - jit
    # Call only on a checked index (pointers within the file): no sum can overflow.
    expect = np.int64(0)
    for i in range(sizes.shape[0]):
        if pointers[i] != expect:
            return False
        expect += np.int64(sizes[i]) * itemsize
    return True


def _typed(sizes, pointers, doc_idx) -> None:
    if sizes.dtype != np.int32 or pointers.dtype != np.int64 or doc_idx.dtype != np.int64:
        raise TypeError("check_index expects int32 sizes, int64 pointers and doc_idx")
    if sizes.shape != pointers.shape:
        raise TypeError("check_index expects one pointer per size")


def check_index(sizes, pointers, itemsize: int, bin_bytes: int, doc_idx) -> tuple[int, int]:
    """Return ``(code, position)`` of the first problem in the index arrays, or ``(OK, -1)``.

    Checks: sizes >= 0; every sequence ``[p, p + size * itemsize)`` inside ``[0, bin_bytes)``;
    pointers multiples of ``itemsize``; doc_idx in ``[0, n]`` and non-decreasing."""
    _typed(sizes, pointers, doc_idx)
    if int(itemsize) not in (1, 2, 4, 8) or int(bin_bytes) < 0:
        raise TypeError("check_index expects itemsize 1, 2, 4 or 8 and bin_bytes >= 0")
    code, pos = _check_index(sizes, pointers, np.int64(itemsize), np.int64(bin_bytes), doc_idx)
    return int(code), int(pos)


def is_running_sum(sizes, pointers, itemsize: int) -> bool:
    """Whether ``pointers`` are the running sum of ``sizes * itemsize`` from 0 (the layout
    Megatron's and GPT-NeoX's builders always write). Only on an index that passed
    :func:`check_index`."""
    _typed(sizes, pointers, np.empty(0, np.int64))
    return bool(_is_running_sum(sizes, pointers, np.int64(itemsize)))


def check_index_reference(sizes, pointers, itemsize, bin_bytes, doc_idx) -> tuple[int, int]:
    """Plain Python oracle of :func:`check_index` (used by the tests; exact integers)."""
    for i, (s, p) in enumerate(zip(sizes.tolist(), pointers.tolist(), strict=True)):
        if s < 0:
            return NEGATIVE_SIZE, i
        if p < 0 or p + s * itemsize > bin_bytes:
            return POINTER_OUT_OF_RANGE, i
        if p % itemsize:
            return POINTER_MISALIGNED, i
    n = len(sizes)
    prev = 0
    for j, d in enumerate(doc_idx.tolist()):
        if d < 0 or d > n:
            return DOC_IDX_OUT_OF_RANGE, j
        if d < prev:
            return DOC_IDX_NOT_MONOTONIC, j
        prev = d
    return OK, -1
