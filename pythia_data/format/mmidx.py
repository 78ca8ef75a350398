"""The MMIDIDX v1 format (Megatron / GPT-NeoX "mmap" datasets): dtype codes as numpy dtypes,
the token dtype GPT-NeoX picks, and writing a whole index.

Byte layout of ``PREFIX.idx`` (little-endian), see ``docs/format.md``::

    9 bytes  magic  b"MMIDIDX\\x00\\x00"
    8 bytes  version (uint64) = 1
    1 byte   dtype code (uint8)
    8 bytes  N = number of sequences (uint64)
    8 bytes  D = number of doc_idx entries (uint64)
    4*N      sizes    (int32)  tokens per sequence
    8*N      pointers (int64)  byte offset of each sequence in PREFIX.bin
    8*D      doc_idx  (int64)  first sequence of each document; first 0, last N

``PREFIX.bin`` holds the tokens back to back.
"""

from __future__ import annotations

import struct

import numpy as np

from pythia_data.errors import UsageError
from pythia_data.format.header import (  # noqa: F401 - re-exported
    DTYPE_NAMES,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    IndexHeader,
    expected_bin_bytes,
    read_index_header,
    strip_suffix,
)

DTYPE_CODES: dict[int, np.dtype] = {code: np.dtype(name) for code, (name, _) in DTYPE_NAMES.items()}
_CODE_OF = {dt: code for code, dt in DTYPE_CODES.items()}


def dtype_code(dtype) -> int:
    """The MMIDIDX code of a numpy dtype (UsageError when the format has none)."""
    dt = np.dtype(dtype).newbyteorder("=")
    if dt not in _CODE_OF:
        raise UsageError(f"dtype {dt} cannot be stored in an MMIDIDX dataset")
    return _CODE_OF[dt]


def best_dtype(vocab_size: int) -> np.dtype:
    """The token dtype GPT-NeoX picks: uint16 when the vocabulary has < 65,500 entries."""
    if vocab_size is None or vocab_size < 0:
        raise UsageError("vocab_size must be a non-negative integer")
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def write_index(f, dtype: np.dtype, sizes: np.ndarray, doc_idx: np.ndarray) -> None:
    """Write a whole ``.idx`` to the open binary file ``f`` (pointers derived from sizes)."""
    n = len(sizes)
    if n and (sizes.min() < 0 or sizes.max() > np.iinfo(np.int32).max):
        raise UsageError("sequence sizes must fit in int32")
    f.write(MAGIC)
    f.write(struct.pack("<Q", VERSION))
    f.write(struct.pack("<B", dtype_code(dtype)))
    f.write(struct.pack("<Q", n))
    f.write(struct.pack("<Q", len(doc_idx)))
    chunk = 1 << 22
    for lo in range(0, n, chunk):
        f.write(np.asarray(sizes[lo : lo + chunk], dtype="<i4").tobytes())
    address = 0
    item = dtype.itemsize
    for lo in range(0, n, chunk):
        part = np.asarray(sizes[lo : lo + chunk], dtype=np.int64) * item
        pointers = np.empty_like(part)
        pointers[0] = address
        np.cumsum(part[:-1], out=pointers[1:])
        pointers[1:] += address
        address = int(pointers[-1] + part[-1])
        f.write(pointers.astype("<i8").tobytes())
    for lo in range(0, len(doc_idx), chunk):
        f.write(np.asarray(doc_idx[lo : lo + chunk], dtype="<i8").tobytes())
