"""Token spans of GPT-NeoX training samples (numba kernel + typed wrapper).

A GPT-NeoX v1.0 sample (rows ``j`` and ``j + 1`` of ``sample_idx``, docs/order.md) starts at position ``doc_pos_start`` of the
shuffled document list ``doc_idx`` at token offset ``off_start`` and ends at position
``doc_pos_end``, offset ``off_end`` (inclusive). It therefore crosses one or more
documents; each piece is one contiguous span of the dataset's logical token stream:
``pointers[doc] // itemsize + offset``, where ``doc = doc_idx[position]``.

:func:`sample_spans` turns a chunk of samples into those spans, optionally keeping only a
window ``[window_start, window_start + window_len)`` of each sample's tokens, so that one
``IndexedDataset.gather(starts, lengths)`` call reads the whole chunk in order.
"""

from __future__ import annotations

import numba
import numpy as np

from pythia_data.errors import FormatError, UsageError

__all__ = ["sample_spans"]

# Error codes the kernel reports (it cannot raise with context).
_OK = 0
_BAD_POSITION = 1  # doc_pos outside doc_idx, or start > end
_BAD_DOCUMENT = 2  # doc_idx entry outside the dataset
_BAD_OFFSET = 3  # offsets outside their document
_BAD_LENGTH = 4  # the pieces do not add up to sample_len tokens


@numba.njit(cache=True, nogil=True)
def _spans_kernel(
    doc_pos_start,
    off_start,
    doc_pos_end,
    off_end,
    doc_idx,
    pointers,
    itemsize,
    sizes,
    sample_len,
    win_start,
    win_len,
    starts_out,
    lengths_out,
):
    """Fill ``starts_out``/``lengths_out``; return (n_spans, error_code, bad_sample)."""
    n = doc_pos_start.shape[0]
    n_pos = doc_idx.shape[0]
    n_docs = sizes.shape[0]
    win_end = win_start + win_len
    k = 0
    for i in range(n):
        p0 = doc_pos_start[i]
        p1 = doc_pos_end[i]
        if p0 < 0 or p1 < p0 or p1 >= n_pos:
            return k, _BAD_POSITION, i
        cursor = np.int64(0)  # position of the current piece inside the sample
        for p in range(p0, p1 + 1):
            doc = np.int64(doc_idx[p])
            if doc < 0 or doc >= n_docs:
                return k, _BAD_DOCUMENT, i
            size = np.int64(sizes[doc])
            a = np.int64(off_start[i]) if p == p0 else np.int64(0)
            b = np.int64(off_end[i]) + 1 if p == p1 else size
            if a < 0 or b < a or b > size:
                return k, _BAD_OFFSET, i
            lo = max(cursor, win_start)
            hi = min(cursor + (b - a), win_end)
            if hi > lo:
                if k >= starts_out.shape[0]:
                    return k, _BAD_POSITION, i  # cannot happen: caller sizes the output
                starts_out[k] = pointers[doc] // itemsize + a + (lo - cursor)
                lengths_out[k] = hi - lo
                k += 1
            cursor += b - a
        if cursor != sample_len:
            return k, _BAD_LENGTH, i
    return k, _OK, -1


_MESSAGES = {
    _BAD_POSITION: "its doc_idx positions are out of range",
    _BAD_DOCUMENT: "doc_idx names a document the dataset does not have",
    _BAD_OFFSET: "its token offsets fall outside their document",
    _BAD_LENGTH: "its pieces do not add up to seq_length + 1 tokens",
}


def _int_vector(name: str, values, allowed: tuple[type, ...]) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise UsageError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0 and arr.dtype.kind == "f":  # an empty list
        return arr.astype(allowed[-1] if len(allowed) == 1 else np.int64)
    if arr.dtype.type not in allowed:
        names = ", ".join(np.dtype(t).name for t in allowed)
        raise UsageError(f"{name} must have dtype {names}, got {arr.dtype}")
    return arr


def sample_spans(
    doc_pos_start,
    off_start,
    doc_pos_end,
    off_end,
    doc_idx,
    pointers,
    sizes,
    sample_len: int,
    window_start: int = 0,
    window_len: int | None = None,
    *,
    itemsize: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Spans of the logical token stream that make up a chunk of samples.

    Parameters (n = number of samples):
        doc_pos_start, off_start, doc_pos_end, off_end: (n,) integer arrays, one sample per
            entry (the ``sample_idx`` rows ``j`` and ``j + 1``; the end offset is inclusive).
        doc_idx: (D,) int32/int64, position -> document id (the shuffled document list).
        pointers: (N,) int64, start of each document in the logical stream: in bytes
            (the index's pointers, with ``itemsize``) or in tokens (``itemsize=1``, e.g.
            ``IndexedDataset.token_starts``).
        sizes: (N,) int32/int64, tokens per document.
        sample_len: tokens per sample (``seq_length + 1``).
        window_start, window_len: keep only tokens ``[window_start, window_start +
            window_len)`` of each sample (default: all of them).

    Returns ``(starts, lengths)``, int64 arrays of the spans in sample order; the lengths of
    each sample's spans add up to ``window_len``, so the gathered tokens reshape to
    ``(n, window_len)``. Raises :class:`FormatError` when a sample does not fit the dataset
    (an order built for another dataset or sequence length).
    """
    sample_len = int(sample_len)
    window_start = int(window_start)
    window_len = sample_len - window_start if window_len is None else int(window_len)
    if sample_len < 1:
        raise UsageError(f"sample length must be positive, got {sample_len}")
    if window_start < 0 or window_len < 1 or window_start + window_len > sample_len:
        raise UsageError(
            f"window {window_start}:{window_len} is outside a sample of {sample_len} tokens"
        )
    ints = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)
    columns = []
    for name, values in (
        ("doc_pos_start", doc_pos_start),
        ("off_start", off_start),
        ("doc_pos_end", doc_pos_end),
        ("off_end", off_end),
    ):
        columns.append(_int_vector(name, values, ints).astype(np.int64, copy=False))
    n = columns[0].shape[0]
    if any(c.shape[0] != n for c in columns):
        raise UsageError("sample position arrays must have the same length")
    doc_idx = _int_vector("doc_idx", doc_idx, (np.int32, np.int64))
    pointers = _int_vector("pointers", pointers, (np.int64,))
    sizes = _int_vector("sizes", sizes, (np.int32, np.int64))
    if pointers.shape[0] != sizes.shape[0]:
        raise UsageError("pointers and sizes must have one entry per document")
    itemsize = int(itemsize)
    if itemsize not in (1, 2, 4, 8):
        raise UsageError(f"itemsize must be 1, 2, 4 or 8, got {itemsize}")

    # Positions are checked before sizing the output (a hostile order could otherwise ask
    # for an absurd allocation or an overflowing sum).
    if n:
        p0, p1 = columns[0], columns[2]
        bad = np.flatnonzero((p0 < 0) | (p1 < p0) | (p1 >= doc_idx.shape[0]))
        if bad.size:
            raise FormatError(
                f"training sample {int(bad[0])} of this chunk does not fit the dataset: "
                f"{_MESSAGES[_BAD_POSITION]} (was the order built for this dataset and "
                "sequence length?)"
            )
    # Each sample has at most one span per doc_idx position it crosses, and at most one
    # per token of its window.
    bound = 0
    if n:
        crossed = int(np.minimum(columns[2] - columns[0] + 1, window_len).sum())
        bound = min(crossed, n * window_len)
    starts = np.empty(max(bound, n), dtype=np.int64)
    lengths = np.empty(max(bound, n), dtype=np.int64)
    count, code, bad = _spans_kernel(
        columns[0],
        columns[1],
        columns[2],
        columns[3],
        doc_idx,
        pointers,
        np.int64(itemsize),
        sizes,
        np.int64(sample_len),
        np.int64(window_start),
        np.int64(window_len),
        starts,
        lengths,
    )
    if code != _OK:
        raise FormatError(
            f"training sample {bad} of this chunk does not fit the dataset: {_MESSAGES[code]} "
            "(was the order built for this dataset and sequence length?)"
        )
    return starts[:count], lengths[:count]
