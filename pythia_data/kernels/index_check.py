"""Validation kernel for MMIDIDX index arrays (one pass, no temporaries)."""

from __future__ import annotations

import numpy as np
from numba import njit

# result codes of _check_index
OK = 0
NEGATIVE_SIZE = 1
POINTER_OUT_OF_RANGE = 2
DOC_IDX_NOT_MONOTONIC = 3
DOC_IDX_OUT_OF_RANGE = 4


@njit(cache=True, nogil=True)
def _check_index(sizes, pointers, itemsize, bin_bytes, doc_idx):  # pragma: no cover - jit
    n = sizes.shape[0]
    for i in range(n):
        s = np.int64(sizes[i])
        if s < 0:
            return NEGATIVE_SIZE, i
        p = pointers[i]
        if p < 0 or p + s * itemsize > bin_bytes:
            return POINTER_OUT_OF_RANGE, i
    prev = np.int64(0)
    for j in range(doc_idx.shape[0]):
        d = doc_idx[j]
        if d < 0 or d > n:
            return DOC_IDX_OUT_OF_RANGE, j
        if d < prev:
            return DOC_IDX_NOT_MONOTONIC, j
        prev = d
    return OK, -1


def check_index(sizes, pointers, itemsize: int, bin_bytes: int, doc_idx) -> tuple[int, int]:
    """Return ``(code, position)`` of the first problem in the index arrays, or ``(OK, -1)``."""
    if sizes.dtype != np.int32 or pointers.dtype != np.int64 or doc_idx.dtype != np.int64:
        raise TypeError("check_index expects int32 sizes, int64 pointers and doc_idx")
    code, pos = _check_index(sizes, pointers, np.int64(itemsize), np.int64(bin_bytes), doc_idx)
    return int(code), int(pos)


def check_index_reference(sizes, pointers, itemsize, bin_bytes, doc_idx) -> tuple[int, int]:
    """Plain numpy oracle of :func:`check_index` (used by the tests)."""
    sizes64 = sizes.astype(np.int64)
    bad_size = np.flatnonzero(sizes64 < 0)
    bad_ptr = np.flatnonzero((pointers < 0) | (pointers + sizes64 * itemsize > bin_bytes))
    first = min([x[0] for x in (bad_size, bad_ptr) if len(x)], default=None)
    if first is not None:
        if len(bad_size) and bad_size[0] == first:
            return NEGATIVE_SIZE, int(first)
        return POINTER_OUT_OF_RANGE, int(first)
    n = len(sizes)
    for j, d in enumerate(doc_idx.tolist()):
        if d < 0 or d > n:
            return DOC_IDX_OUT_OF_RANGE, j
        if j and d < doc_idx[j - 1]:
            return DOC_IDX_NOT_MONOTONIC, j
    return OK, -1
