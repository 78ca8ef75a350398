"""The MMIDIDX v1 ``.idx`` header: constants, dtype codes by name, and reading the header
without numpy (so that checksum/unshard start fast). Byte layout in :mod:`.mmidx`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from pythia_data.errors import FormatError, InputError

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER_SIZE = 9 + 8 + 1 + 8 + 8  # 34 bytes

#: dtype code -> (numpy name, item size), as GPT-NeoX / Pythia / Megatron before 2024 write.
DTYPE_NAMES: dict[int, tuple[str, int]] = {
    1: ("uint8", 1),
    2: ("int8", 1),
    3: ("int16", 2),
    4: ("int32", 4),
    5: ("int64", 8),
    6: ("float32", 4),
    7: ("float64", 8),
    8: ("uint16", 2),
}

#: Megatron-LM since late 2023 writes the two float codes swapped: 6 = float64, 7 = float32.
#: A reader tells the conventions apart by the ``.bin`` size (see :func:`megatron_float_dtype`).
MEGATRON_FLOAT_NAMES: dict[int, tuple[str, int]] = {
    6: ("float64", 8),
    7: ("float32", 4),
}


def megatron_float_dtype(code: int) -> tuple[str, int] | None:
    """(numpy name, item size) code ``code`` means in current Megatron-LM, when that differs
    from the GPT-NeoX/Pythia meaning in :data:`DTYPE_NAMES`; else None."""
    return MEGATRON_FLOAT_NAMES.get(code)


def strip_suffix(path: str | os.PathLike) -> str:
    """``x.bin`` / ``x.idx`` / ``x`` -> ``x`` (as a string)."""
    text = os.fspath(path)
    for suffix in (".bin", ".idx"):
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


@dataclass(frozen=True)
class IndexHeader:
    """What the fixed-size header of an ``.idx`` says, plus the file's size."""

    path: str
    version: int
    dtype_code: int
    num_sequences: int
    num_doc_idx: int
    file_bytes: int

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES[self.dtype_code][0]

    @property
    def itemsize(self) -> int:
        return DTYPE_NAMES[self.dtype_code][1]

    @property
    def dtype(self):
        """The token dtype as a numpy dtype (imports numpy)."""
        import numpy as np

        return np.dtype(self.dtype_name)

    @property
    def sizes_offset(self) -> int:
        return HEADER_SIZE

    @property
    def pointers_offset(self) -> int:
        return HEADER_SIZE + 4 * self.num_sequences

    @property
    def doc_idx_offset(self) -> int:
        return self.pointers_offset + 8 * self.num_sequences

    @property
    def total_bytes(self) -> int:
        return self.doc_idx_offset + 8 * self.num_doc_idx


def parse_header(raw: bytes, path: str, file_bytes: int) -> IndexHeader:
    if len(raw) < len(MAGIC) or raw[: len(MAGIC)] != MAGIC:
        raise FormatError(f"{path} is not an MMIDIDX index (wrong magic)")
    if len(raw) < HEADER_SIZE:
        raise FormatError(f"{path} is truncated: shorter than the {HEADER_SIZE}-byte header")
    (version,) = struct.unpack_from("<Q", raw, 9)
    if version != VERSION:
        raise FormatError(f"{path}: unsupported index version {version} (only 1 is known)")
    code = raw[17]
    if code not in DTYPE_NAMES:
        raise FormatError(f"{path}: unknown dtype code {code}")
    n, d = struct.unpack_from("<QQ", raw, 18)
    header = IndexHeader(path, version, code, n, d, file_bytes)
    if n > file_bytes or d > file_bytes or header.total_bytes > file_bytes:
        raise FormatError(
            f"{path} is truncated: header claims {n} sequences and {d} doc_idx entries "
            f"({header.total_bytes} bytes) but the file has {file_bytes} bytes"
        )
    return header


def read_index_header(idx_path: str | os.PathLike) -> IndexHeader:
    """Read and check the header of an ``.idx`` file (cheap: reads 34 bytes)."""
    path = os.fspath(idx_path)
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_SIZE)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise InputError(f"missing index file {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not an index file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    return parse_header(raw, path, size)


def expected_bin_bytes(idx_path: str | os.PathLike) -> int:
    """The ``.bin`` size an index implies: last pointer + last size × itemsize (exact Python
    integers; raises :class:`FormatError` for a negative pointer or size). For a float
    dataset in Megatron-LM's swapped convention (codes 6/7), the size under the other
    convention is ``last pointer + size × other itemsize``: see :data:`MEGATRON_FLOAT_NAMES`."""
    header = read_index_header(idx_path)
    if header.num_sequences == 0:
        return 0
    with open(header.path, "rb") as f:
        f.seek(header.sizes_offset + 4 * (header.num_sequences - 1))
        (size,) = struct.unpack("<i", f.read(4))
        f.seek(header.pointers_offset + 8 * (header.num_sequences - 1))
        (pointer,) = struct.unpack("<q", f.read(8))
    if pointer < 0 or size < 0:
        raise FormatError(f"{header.path}: the last sequence has a negative pointer or size")
    return pointer + size * header.itemsize
