"""The MMIDIDX v1 format (Megatron / GPT-NeoX "mmap" datasets): reader, builder, merge.

Byte layout of ``PREFIX.idx`` (little-endian), see ``docs/format.md``::

    9 bytes  magic  b"MMIDIDX\\x00\\x00"
    8 bytes  version (uint64) = 1
    1 byte   dtype code (uint8)
    8 bytes  N = number of sequences (uint64)
    8 bytes  D = number of doc_idx entries (uint64)
    4*N      sizes    (int32)  tokens per sequence
    8*N      pointers (int64)  byte offset of each sequence in PREFIX.bin
    8*D      doc_idx  (int64)  first sequence of each document; first 0, last N

``PREFIX.bin`` holds the tokens back to back. It may also be split into shards
``PREFIX-00000-of-0000K.bin`` (plain byte slices), which are read in place.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pythia_data.errors import FormatError, InputError, OutputError, UsageError
from pythia_data.kernels import index_check
from pythia_data.kernels.gather import gather_bytes, make_sources

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER_SIZE = 9 + 8 + 1 + 8 + 8  # 34 bytes

DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float32),
    7: np.dtype(np.float64),
    8: np.dtype(np.uint16),
}
_CODE_OF = {dt: code for code, dt in DTYPE_CODES.items()}

_SHARD_RE = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<last>\d{5})$")


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


# --------------------------------------------------------------------------- paths


def strip_suffix(path: str | os.PathLike) -> str:
    """``x.bin`` / ``x.idx`` / ``x`` -> ``x`` (as a string)."""
    text = os.fspath(path)
    for suffix in (".bin", ".idx"):
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def resolve_prefix(path: str | os.PathLike) -> tuple[str, list[Path]]:
    """Find a dataset's prefix and its data file(s).

    ``path`` may be the prefix, ``PREFIX.bin``, ``PREFIX.idx``, any shard
    ``PREFIX-NNNNN-of-MMMMM.bin``, or a folder holding one dataset (plain or sharded).
    Returns ``(prefix, bin_paths)``; ``bin_paths`` has one entry unless sharded.
    """
    text = os.fspath(path)
    if os.path.isdir(text):
        return _resolve_folder(Path(text))
    prefix = strip_suffix(text)
    match = _SHARD_RE.match(os.path.basename(prefix))
    if match and text.endswith(".bin"):
        prefix = os.path.join(os.path.dirname(prefix), match.group("base"))
        return prefix, _shard_paths(text)
    if os.path.isfile(prefix + ".bin"):
        return prefix, [Path(prefix + ".bin")]
    if not os.path.isfile(prefix + ".idx"):
        raise InputError(f"no dataset at {text}: {prefix}.idx does not exist")
    folder = os.path.dirname(prefix) or "."
    base = os.path.basename(prefix)
    if any(_SHARD_RE.match(name[:-4]) and name.startswith(base + "-") for name in _bins(folder)):
        return prefix, _shard_paths(prefix)
    raise InputError(f"missing data file {prefix}.bin (and no shards {prefix}-*-of-*.bin)")


def _bins(folder: str) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if n.endswith(".bin")]
    except OSError as exc:
        raise InputError(f"cannot list {folder}: {exc.strerror}") from None


def _resolve_folder(folder: Path) -> tuple[str, list[Path]]:
    idx = sorted(folder.glob("*.idx"))
    if len(idx) == 1:
        return resolve_prefix(idx[0])
    if len(idx) > 1:
        names = ", ".join(p.name for p in idx[:4])
        raise UsageError(f"{folder} holds several datasets ({names}); name one")
    raise InputError(f"no .idx file in {folder}")


def _shard_paths(path: str) -> list[Path]:
    from pythia_data.shards import find_shards  # shards.py owns shard naming rules

    return list(find_shards(path).paths)


# --------------------------------------------------------------------------- index


@dataclass(frozen=True)
class IndexHeader:
    """What the fixed-size header of an ``.idx`` says, plus the file's size."""

    path: str
    version: int
    dtype: np.dtype
    num_sequences: int
    num_doc_idx: int
    file_bytes: int

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


def _parse_header(raw: bytes, path: str, file_bytes: int) -> IndexHeader:
    if len(raw) < len(MAGIC) or raw[: len(MAGIC)] != MAGIC:
        raise FormatError(f"{path} is not an MMIDIDX index (wrong magic)")
    if len(raw) < HEADER_SIZE:
        raise FormatError(f"{path} is truncated: shorter than the {HEADER_SIZE}-byte header")
    (version,) = struct.unpack_from("<Q", raw, 9)
    if version != VERSION:
        raise FormatError(f"{path}: unsupported index version {version} (only 1 is known)")
    code = raw[17]
    if code not in DTYPE_CODES:
        raise FormatError(f"{path}: unknown dtype code {code}")
    n, d = struct.unpack_from("<QQ", raw, 18)
    header = IndexHeader(path, version, DTYPE_CODES[code], n, d, file_bytes)
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
    return _parse_header(raw, path, size)


def expected_bin_bytes(idx_path: str | os.PathLike) -> int:
    """The ``.bin`` size an index implies: last pointer + last size × itemsize."""
    header = read_index_header(idx_path)
    if header.num_sequences == 0:
        return 0
    with open(header.path, "rb") as f:
        f.seek(header.sizes_offset + 4 * (header.num_sequences - 1))
        (size,) = struct.unpack("<i", f.read(4))
        f.seek(header.pointers_offset + 8 * (header.num_sequences - 1))
        (pointer,) = struct.unpack("<q", f.read(8))
    return pointer + size * header.dtype.itemsize


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
        self._check(validate)

    def _check(self, validate: bool) -> None:
        n = len(self.sizes)
        itemsize = self.dtype.itemsize
        where = self.bin_paths[0] if len(self.bin_paths) == 1 else f"{self.prefix} shards"
        if n:
            end = int(self.pointers[-1]) + int(self.sizes[-1]) * itemsize
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
            return
        code, pos = index_check.check_index(
            self.sizes, self.pointers, itemsize, self.bin_bytes, self.doc_idx
        )
        messages = {
            index_check.NEGATIVE_SIZE: f"sequence {pos} has a negative size",
            index_check.POINTER_OUT_OF_RANGE: f"sequence {pos} points past the end of the data",
            index_check.DOC_IDX_OUT_OF_RANGE: f"doc_idx[{pos}] is out of range",
            index_check.DOC_IDX_NOT_MONOTONIC: f"doc_idx is not monotonic at entry {pos}",
        }
        if code != index_check.OK:
            raise FormatError(f"{self.idx_path}: {messages[code]}")

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
            sizes = self.sizes[start:stop].astype(np.int64)
            flat = self.read_tokens(int(self.token_starts[start]), int(sizes.sum()))
            return np.split(flat, np.cumsum(sizes)[:-1])
        return self.get(key)

    def gather(self, starts, lengths, out: np.ndarray | None = None) -> np.ndarray:
        """Concatenate token spans ``[starts[k], starts[k] + lengths[k])`` of the logical
        token stream into ``out`` (1-D, this dataset's dtype; allocated when None)."""
        starts = np.asarray(starts, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        if starts.shape != lengths.shape or starts.ndim != 1:
            raise UsageError("gather: starts and lengths must be 1-D arrays of the same length")
        total = int(lengths.sum()) if len(lengths) else 0
        if out is None:
            out = np.empty(total, dtype=self.dtype)
        elif out.dtype != self.dtype or out.ndim != 1 or out.shape[0] < total:
            raise UsageError(f"gather: out must be a 1-D {self.dtype} array of >= {total} items")
        item = self.dtype.itemsize
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
        }


# --------------------------------------------------------------------------- writing


def _write_index(f, dtype: np.dtype, sizes: np.ndarray, doc_idx: np.ndarray) -> None:
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


class _AtomicFiles:
    """Write several files as ``NAME.partial``; rename all on commit, delete all on abort."""

    def __init__(self, finals: list[str]):
        self.finals = finals
        self.partials = [p + ".partial" for p in finals]
        for final in finals:
            folder = os.path.dirname(final) or "."
            if not os.path.isdir(folder):
                raise OutputError(f"output folder {folder} does not exist")

    def commit(self) -> None:
        for partial, final in zip(self.partials, self.finals):
            os.replace(partial, final)

    def abort(self) -> None:
        for partial in self.partials:
            try:
                os.unlink(partial)
            except FileNotFoundError:
                pass


class DatasetBuilder:
    """Stream documents into ``PREFIX.bin`` / ``PREFIX.idx`` with bounded memory.

    Byte-compatible with GPT-NeoX's ``MMapIndexedDatasetBuilder``: sizes int32, pointers
    int64 byte offsets, doc_idx int64 from 0 to N. Atomic: both files are written as
    ``.partial`` and renamed only by a successful :meth:`finalize` (or ``with`` block);
    an exception removes them.

    Only the index arrays (4 bytes per sequence, 8 per document) are kept in memory, as
    GPT-NeoX does.
    """

    def __init__(self, prefix: str | os.PathLike, dtype=None, *, vocab_size: int | None = None,
                 buffer_bytes: int = 8 << 20):
        if dtype is None:
            dtype = best_dtype(vocab_size) if vocab_size is not None else np.uint16
        self.dtype = np.dtype(dtype)
        dtype_code(self.dtype)
        self.prefix = strip_suffix(prefix)
        self._files = _AtomicFiles([self.prefix + ".bin", self.prefix + ".idx"])
        self._sizes = array("i")
        self._doc_idx = array("q", [0])
        self._buffer_bytes = buffer_bytes
        self._closed = False
        try:
            self._bin = open(self._files.partials[0], "wb")  # noqa: SIM115 - closed in finalize
        except OSError as exc:
            raise OutputError(f"cannot write {self._files.partials[0]}: {exc.strerror}") from None

    def add_item(self, tokens) -> None:
        """Append one sequence (does not end the document)."""
        arr = np.asarray(tokens)
        if arr.ndim != 1:
            raise UsageError("a sequence must be a 1-D array of tokens")
        if arr.dtype != self.dtype:
            if arr.size and arr.dtype.kind in "iu":
                info = np.iinfo(self.dtype) if self.dtype.kind in "iu" else None
                if info is not None and (arr.min() < info.min or arr.max() > info.max):
                    raise UsageError(f"token values do not fit in {self.dtype}")
            arr = arr.astype(self.dtype)
        if arr.size > np.iinfo(np.int32).max:
            raise UsageError("a sequence cannot hold more than 2**31-1 tokens")
        self._bin.write(np.ascontiguousarray(arr, dtype=self.dtype.newbyteorder("<")).tobytes())
        self._sizes.append(arr.size)

    def end_document(self) -> None:
        """Mark the sequences added since the last call as one document."""
        self._doc_idx.append(len(self._sizes))

    def add_document(self, tokens) -> None:
        """Append one sequence as a whole document (GPT-NeoX's preprocessing does this)."""
        self.add_item(tokens)
        self.end_document()

    def add_index(self, other: IndexedDataset) -> None:
        """Append a whole dataset (tokens streamed, doc_idx rebased)."""
        if other.dtype != self.dtype:
            raise UsageError(f"cannot merge {other.dtype} data into a {self.dtype} dataset")
        offset = len(self._sizes)
        chunk = self._buffer_bytes
        for lo in range(0, other.bin_bytes, chunk):
            self._bin.write(other.read_bytes(lo, min(chunk, other.bin_bytes - lo)).tobytes())
        self._sizes.frombytes(np.ascontiguousarray(other.sizes, dtype=np.int32).tobytes())
        rest = np.asarray(other.doc_idx[1:], dtype=np.int64) + offset
        self._doc_idx.frombytes(rest.tobytes())

    @property
    def num_sequences(self) -> int:
        return len(self._sizes)

    def finalize(self) -> None:
        """Write the index and move both files to their final names."""
        if self._closed:
            return
        self._closed = True
        try:
            self._bin.close()
            sizes = np.frombuffer(self._sizes, dtype=np.int32)
            doc_idx = np.frombuffer(self._doc_idx, dtype=np.int64)
            with open(self._files.partials[1], "wb") as f:
                _write_index(f, self.dtype, sizes, doc_idx)
            self._files.commit()
        except OSError as exc:
            self._files.abort()
            raise OutputError(f"cannot write {self.prefix}: {exc.strerror or exc}") from None
        except BaseException:
            self._files.abort()
            raise

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._bin.close()
        self._files.abort()

    def __enter__(self) -> DatasetBuilder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()


def write_dataset(prefix: str | os.PathLike, documents, dtype=np.uint16) -> str:
    """Write an iterable of token arrays, one document each. Returns the prefix."""
    with DatasetBuilder(prefix, dtype) as builder:
        for doc in documents:
            builder.add_document(doc)
    return strip_suffix(prefix)


def merge_datasets(output: str | os.PathLike, inputs: list[str | os.PathLike]) -> IndexedDataset:
    """Concatenate datasets into ``output`` (pointers and doc_idx rebased), streaming."""
    if not inputs:
        raise UsageError("merge needs at least one input dataset")
    out_prefix = strip_suffix(output)
    datasets = []
    try:
        for path in inputs:
            datasets.append(IndexedDataset(path))
        for ds in datasets:
            if os.path.abspath(ds.prefix) == os.path.abspath(out_prefix):
                raise UsageError(f"output {out_prefix} is also an input")
        dtype = datasets[0].dtype
        for ds in datasets[1:]:
            if ds.dtype != dtype:
                raise UsageError(
                    f"cannot merge datasets of different dtypes ({dtype} and {ds.dtype})"
                )
        with DatasetBuilder(out_prefix, dtype) as builder:
            for ds in datasets:
                builder.add_index(ds)
    finally:
        for ds in datasets:
            ds.close()
    return IndexedDataset(out_prefix)
