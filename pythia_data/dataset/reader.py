"""A read-only MMIDIDX dataset: zero-copy index arrays, tokens from the mapped ``.bin`` or
its shards read in place (see docs/format.md)."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from pythia_data.dataset.paths import resolve_prefix
from pythia_data.errors import FormatError, InputError, UsageError
from pythia_data.format.header import megatron_float_dtype, read_index_header
from pythia_data.kernels import index_check
from pythia_data.kernels.gather import gather_bytes, make_sources

__all__ = ["IndexedDataset"]


def _map_file(path: Path) -> tuple[mmap.mmap | None, np.ndarray]:
    """Read-only map of a whole file as a uint8 array (an empty array for an empty file)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return None, np.empty(0, dtype=np.uint8)
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise InputError(f"missing data file {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    return mm, np.frombuffer(mm, dtype=np.uint8)


class IndexedDataset:
    """A read-only MMIDIDX dataset: the index arrays are zero-copy views of the mapped
    ``.idx``; tokens are read from the mapped ``.bin`` (or its shards, in place).

    Every count and offset is int64 (``num_tokens`` is a Python int).
    """

    def __init__(self, path: str | os.PathLike, *, validate: bool = True):
        self.prefix, self.bin_paths = resolve_prefix(path)
        self.idx_path = self.prefix + ".idx"
        self._maps: list[mmap.mmap] = []
        try:
            self._open(validate)
        except BaseException:
            self.close()
            raise

    def _open(self, validate: bool) -> None:
        header = read_index_header(self.idx_path)
        self.header = header
        self.version = header.version
        self.dtype = header.dtype
        idx_map, idx_bytes = _map_file(Path(self.idx_path))
        if idx_map is not None:
            self._maps.append(idx_map)
        n, d = header.num_sequences, header.num_doc_idx
        self.sizes = np.frombuffer(idx_bytes, np.dtype("<i4"), n, header.sizes_offset)
        self.pointers = np.frombuffer(idx_bytes, np.dtype("<i8"), n, header.pointers_offset)
        self.doc_idx = np.frombuffer(idx_bytes, np.dtype("<i8"), d, header.doc_idx_offset)

        buffers, bounds = [], [0]
        for path in self.bin_paths:
            mm, buf = _map_file(path)
            if mm is not None:
                self._maps.append(mm)
            buffers.append(buf)
            bounds.append(bounds[-1] + buf.shape[0])
        self._buffers = buffers
        self._sources = make_sources(buffers)
        self._bounds = np.asarray(bounds, dtype=np.int64)
        self.bin_bytes = int(bounds[-1])
        self.dtype_convention = "gpt-neox"
        self._detect_megatron_float()
        self.is_canonical = True
        self._check(validate)

    def _implied_bin_bytes(self, itemsize: int) -> int:
        # Python integers: a hostile pointer cannot wrap around.
        return int(self.pointers[-1]) + int(self.sizes[-1]) * itemsize

    def _detect_megatron_float(self) -> None:
        """Current Megatron-LM writes dtype code 6 for float64 and 7 for float32, swapped
        relative to GPT-NeoX/Pythia. When the ``.bin`` size fits only the swapped meaning,
        read the data that way and say so (``dtype_convention == "megatron"``)."""
        alt = megatron_float_dtype(self.header.dtype_code)
        if alt is None or not len(self.sizes):
            return
        if self._implied_bin_bytes(self.dtype.itemsize) == self.bin_bytes:
            return
        if self._implied_bin_bytes(alt[1]) == self.bin_bytes:
            self.dtype = np.dtype(alt[0])
            self.dtype_convention = "megatron"

    def _check(self, validate: bool) -> None:
        n = len(self.sizes)
        itemsize = self.dtype.itemsize
        where = self.bin_paths[0] if len(self.bin_paths) == 1 else f"{self.prefix} shards"
        if n:
            end = self._implied_bin_bytes(itemsize)
            if end != self.bin_bytes:
                raise FormatError(
                    f"{where} has {self.bin_bytes} bytes but the index implies {end} "
                    f"(last pointer + size)"
                )
        elif self.bin_bytes:
            raise FormatError(f"{where} has {self.bin_bytes} bytes but the index is empty")
        if len(self.doc_idx) and (self.doc_idx[0] != 0 or self.doc_idx[-1] != n):
            raise FormatError(
                f"{self.idx_path}: doc_idx must start at 0 and end at {n} "
                f"(found {int(self.doc_idx[0])}..{int(self.doc_idx[-1])})"
            )
        if not validate:
            self.is_canonical = False  # unknown: read every sequence through its pointer
            return
        code, pos = index_check.check_index(
            self.sizes, self.pointers, itemsize, self.bin_bytes, self.doc_idx
        )
        messages = {
            index_check.NEGATIVE_SIZE: f"sequence {pos} has a negative size",
            index_check.POINTER_OUT_OF_RANGE: f"sequence {pos} points past the end of the data",
            index_check.POINTER_MISALIGNED: (
                f"sequence {pos} has pointer {int(self.pointers[pos]) if code == 5 else 0}, "
                f"not a multiple of the {itemsize}-byte item size"
            ),
            index_check.DOC_IDX_OUT_OF_RANGE: f"doc_idx[{pos}] is out of range",
            index_check.DOC_IDX_NOT_MONOTONIC: f"doc_idx is not monotonic at entry {pos}",
        }
        if code != index_check.OK:
            raise FormatError(f"{self.idx_path}: {messages[code]}")
        self.is_canonical = index_check.is_running_sum(self.sizes, self.pointers, itemsize)

    # -- context and lifetime
    def close(self) -> None:
        # Drop the numpy views first; an mmap with live exports cannot be closed, and
        # the OS unmaps it when the last view goes away.
        for name in ("sizes", "pointers", "doc_idx", "_buffers", "_sources"):
            self.__dict__.pop(name, None)
        for mm in self._maps:
            try:
                mm.close()
            except BufferError:
                pass
        self._maps = []

    def __enter__(self) -> IndexedDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- shape
    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def num_documents(self) -> int:
        return max(len(self.doc_idx) - 1, 0)

    @property
    def num_tokens(self) -> int:
        return self.bin_bytes // self.dtype.itemsize if len(self.sizes) else 0

    @property
    def token_starts(self) -> np.ndarray:
        """Start of each sequence in the logical token stream (int64, pointers // itemsize)."""
        return self.pointers // self.dtype.itemsize

    @property
    def is_sharded(self) -> bool:
        return len(self.bin_paths) > 1

    def __repr__(self) -> str:
        return (
            f"IndexedDataset({self.prefix!r}, dtype={self.dtype.name}, "
            f"sequences={len(self)}, tokens={self.num_tokens})"
        )

    # -- reading
    def _seq_index(self, i) -> int:
        n = len(self.sizes)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sequence {i} out of range (dataset has {n})")
        return i

    def read_bytes(self, start: int, nbytes: int) -> np.ndarray:
        """Bytes ``[start, start + nbytes)`` of the logical ``.bin`` (a view when possible)."""
        start, nbytes = int(start), int(nbytes)
        if start < 0 or nbytes < 0 or start + nbytes > self.bin_bytes:
            raise UsageError(f"bytes {start}..{start + nbytes} outside the data file")
        k = int(np.searchsorted(self._bounds, start, side="right")) - 1
        k = min(max(k, 0), len(self._buffers) - 1)
        if start + nbytes <= self._bounds[k + 1]:
            local = start - int(self._bounds[k])
            return self._buffers[k][local : local + nbytes]
        out = np.empty(nbytes, dtype=np.uint8)
        gather_bytes(self._sources, self._bounds, np.array([start]), np.array([nbytes]), out)
        return out

    def read_tokens(self, start: int, count: int) -> np.ndarray:
        """``count`` tokens from global token position ``start`` of the logical stream."""
        item = self.dtype.itemsize
        raw = self.read_bytes(int(start) * item, int(count) * item)
        if raw.ctypes.data % item:
            raw = raw.copy()
        return raw.view(self.dtype)

    def get(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens ``[offset, offset + length)`` of sequence ``i`` (to its end by default)."""
        i = self._seq_index(i)
        size = int(self.sizes[i])
        offset = int(offset)
        if offset < 0 or offset > size:
            raise IndexError(f"offset {offset} outside sequence {i} of length {size}")
        length = size - offset if length is None else int(length)
        if length < 0 or offset + length > size:
            raise IndexError(f"span {offset}+{length} outside sequence {i} of length {size}")
        item = self.dtype.itemsize
        raw = self.read_bytes(int(self.pointers[i]) + offset * item, length * item)
        if raw.ctypes.data % item:
            raw = raw.copy()
        return raw.view(self.dtype)

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("only contiguous slices of sequences are supported")
            if stop <= start:
                return []
            if not self.is_canonical:  # sequences need not be back to back: one by one
                return [self.get(i) for i in range(start, stop)]
            sizes = self.sizes[start:stop].astype(np.int64)
            flat = self.read_tokens(int(self.token_starts[start]), int(sizes.sum()))
            return np.split(flat, np.cumsum(sizes)[:-1])
        return self.get(key)

    def gather(self, starts, lengths, out: np.ndarray | None = None) -> np.ndarray:
        """Concatenate token spans ``[starts[k], starts[k] + lengths[k])`` of the logical
        token stream into ``out`` (1-D, this dataset's dtype; allocated when None)."""
        try:
            starts = np.asarray(starts, dtype=np.int64)
            lengths = np.asarray(lengths, dtype=np.int64)
        except (OverflowError, TypeError, ValueError):
            raise UsageError("gather: starts and lengths must be int64 integers") from None
        if starts.shape != lengths.shape or starts.ndim != 1:
            raise UsageError("gather: starts and lengths must be 1-D arrays of the same length")
        item = self.dtype.itemsize
        if len(starts):
            # Check in tokens before multiplying by the item size (no int64 wrap-around).
            limit = self.bin_bytes // item
            if (lengths < 0).any():
                raise UsageError("gather: negative span length")
            if (lengths > limit).any() or (starts < 0).any() or (starts > limit - lengths).any():
                raise UsageError(f"gather: span outside the {limit} tokens of the data")
        total = int(lengths.sum()) if len(lengths) else 0
        if out is None:
            out = np.empty(total, dtype=self.dtype)
        elif out.dtype != self.dtype or out.ndim != 1 or out.shape[0] < total:
            raise UsageError(f"gather: out must be a 1-D {self.dtype} array of >= {total} items")
        gather_bytes(self._sources, self._bounds, starts * item, lengths * item, out.view(np.uint8))
        return out

    def stats(self) -> dict:
        """The summary ``pythia-data info`` prints (JSON keys fixed by the CLI contract)."""
        n = len(self.sizes)
        total = self.num_tokens
        return {
            "version": int(self.version),
            "dtype": self.dtype.name,
            "num_sequences": n,
            "num_documents": self.num_documents,
            "num_tokens": int(total),
            "bin_bytes": int(self.bin_bytes),
            "min_length": int(self.sizes.min()) if n else 0,
            "mean_length": float(total / n) if n else 0.0,
            "max_length": int(self.sizes.max()) if n else 0,
            "layout": "canonical" if self.is_canonical else "non-canonical",
            "dtype_convention": self.dtype_convention,
        }
