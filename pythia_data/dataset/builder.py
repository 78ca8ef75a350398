"""Writing MMIDIDX datasets: a streaming builder (GPT-NeoX's layout byte for byte) and merge."""

from __future__ import annotations

import errno
import os
from array import array
from collections.abc import Callable
from typing import Any

import numpy as np

from pythia_data.dataset.reader import IndexedDataset
from pythia_data.errors import OutputError, UsageError
from pythia_data.format.mmidx import best_dtype, dtype_code, strip_suffix, write_index
from pythia_data.io.atomic import AtomicGroup, AtomicOutput, refuse_overlap

__all__ = ["DatasetBuilder", "merge_datasets", "write_dataset"]


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
                 buffer_bytes: int = 8 << 20, overwrite: bool = True, durable: bool = True,
                 new_hasher: Callable[[], Any] | None = None):
        if dtype is None:
            dtype = best_dtype(vocab_size) if vocab_size is not None else np.uint16
        self.dtype = np.dtype(dtype)
        dtype_code(self.dtype)
        self.prefix = strip_suffix(prefix)
        if os.fspath(prefix) == "-":
            raise UsageError("a dataset is two files (PREFIX.bin and PREFIX.idx), not stdout")
        self._sizes = array("i")
        self._doc_idx = array("q", [0])
        self._buffer_bytes = buffer_bytes
        self._durable = durable  # False: no fsync (intermediate files checked by hash later)
        self._closed = False
        self._committed = False
        self._bin = AtomicOutput(self.prefix + ".bin", overwrite=overwrite)
        try:
            self._idx = AtomicOutput(self.prefix + ".idx", overwrite=overwrite)
        except BaseException:
            self._bin.abort()
            raise
        self._files = AtomicGroup([self._bin, self._idx])
        if new_hasher is not None:  # see :meth:`digests`
            self._bin.hash_as_written(new_hasher())
            self._idx.hash_as_written(new_hasher())

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
        self._bin.write(np.ascontiguousarray(arr, dtype=self.dtype.newbyteorder("<")))
        self._sizes.append(arr.size)

    def end_document(self) -> None:
        """Mark the sequences added since the last call as one document."""
        self._doc_idx.append(len(self._sizes))

    def add_document(self, tokens) -> None:
        """Append one sequence as a whole document (GPT-NeoX's preprocessing does this)."""
        self.add_item(tokens)
        self.end_document()

    def add_documents(self, tokens, lengths) -> None:
        """Append many documents of one sequence each in one write: document ``k`` is the
        next ``lengths[k]`` tokens of the 1-D ``tokens`` (same bytes as ``add_document``
        per document)."""
        arr = np.asarray(tokens)
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if arr.ndim != 1:
            raise UsageError("tokens must be a 1-D array")
        if lengths.size and (int(lengths.min()) < 0
                             or int(lengths.max()) > np.iinfo(np.int32).max):
            raise UsageError("document lengths must be in 0..2**31-1")
        if int(lengths.sum()) != arr.size:
            raise UsageError(f"lengths add up to {int(lengths.sum())}, not {arr.size} tokens")
        if arr.dtype != self.dtype:
            if arr.size and arr.dtype.kind in "iu" and self.dtype.kind in "iu":
                info = np.iinfo(self.dtype)
                if int(arr.min()) < info.min or int(arr.max()) > info.max:
                    raise UsageError(f"token values do not fit in {self.dtype}")
            arr = arr.astype(self.dtype)
        self._bin.write(np.ascontiguousarray(arr, dtype=self.dtype.newbyteorder("<")))
        first = len(self._sizes)
        self._sizes.frombytes(lengths.astype(np.int32).tobytes())
        ends = np.arange(first + 1, first + lengths.size + 1, dtype=np.int64)
        self._doc_idx.frombytes(ends.tobytes())

    def add_index(self, other: IndexedDataset, progress=None) -> None:
        """Append a whole dataset (tokens streamed, doc_idx rebased); ``progress(n)`` is
        called with the bytes copied."""
        if other.dtype != self.dtype:
            raise UsageError(f"cannot merge {other.dtype} data into a {self.dtype} dataset")
        offset = len(self._sizes)
        if not self._kernel_copy(other, progress):
            chunk = self._buffer_bytes
            for lo in range(0, other.bin_bytes, chunk):
                n = min(chunk, other.bin_bytes - lo)
                self._bin.write(other.read_bytes(lo, n).tobytes())
                if progress is not None:
                    progress(n)
        self._sizes.frombytes(np.ascontiguousarray(other.sizes, dtype=np.int32).tobytes())
        rest = np.asarray(other.doc_idx[1:], dtype=np.int64) + offset
        self._doc_idx.frombytes(rest.tobytes())

    def _kernel_copy(self, other: IndexedDataset, progress) -> bool:
        """Append ``other``'s single ``.bin`` file with ``copy_file_range`` (no copy through
        user space; a reflink on filesystems that share blocks). False when not possible."""
        if not hasattr(os, "copy_file_range") or len(other.bin_paths) != 1 \
                or self._bin.final is None or other.bin_bytes == 0 \
                or self._bin.hasher is not None:  # the digest needs the bytes
            return False
        try:
            src = os.open(other.bin_paths[0], os.O_RDONLY)
        except OSError:
            return False
        try:
            self._bin.flush()
            out = self._bin.fh.fileno()
            done = 0
            while done < other.bin_bytes:
                try:
                    n = os.copy_file_range(src, out, other.bin_bytes - done, done)
                except OSError as exc:
                    if done == 0 and exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                                   errno.EOPNOTSUPP):
                        return False
                    raise OutputError(f"cannot write {self._bin.name}: "
                                      f"{exc.strerror or exc}") from None
                if n == 0:
                    raise OutputError(f"{other.bin_paths[0]} shrank while it was copied")
                done += n
                if progress is not None:
                    progress(n)
        finally:
            os.close(src)
        return True

    def data_fd(self) -> int | None:
        """A duplicate of the ``.bin`` partial file's descriptor (the caller closes it), for
        flushing what was written so far to disk from another thread (``os.fdatasync``)
        while more is appended; None if there is no such file."""
        if self._bin.final is None or self._closed:
            return None
        self._bin.flush()
        return os.dup(self._bin.fh.fileno())

    def digests(self) -> dict[str, tuple[int, str]]:
        """``{PREFIX.bin/.idx: (size, hex digest)}`` of the two files as written
        (a builder made with ``new_hasher``, a factory of hash objects; after :meth:`finalize`): what hashing the
        committed files gives, without reading them back."""
        if not self._committed or self._bin.hasher is None:
            raise UsageError("digests() needs a finalized builder made with new_hasher")
        return {self.prefix + suffix: (out.written, out.hasher.hexdigest())
                for suffix, out in ((".bin", self._bin), (".idx", self._idx))}

    @property
    def num_sequences(self) -> int:
        return len(self._sizes)

    def finalize(self) -> None:
        """Write the index and move both files to their final names."""
        if self._closed:
            return
        self._closed = True
        try:
            sizes = np.frombuffer(self._sizes, dtype=np.int32)
            doc_idx = np.frombuffer(self._doc_idx, dtype=np.int64)
            write_index(self._idx, self.dtype, sizes, doc_idx)
            self._files.commit(sync=self._durable)
            self._committed = True
        except OSError as exc:
            self._files.abort()
            raise OutputError(f"cannot write {self.prefix}: {exc.strerror or exc}") from None
        except BaseException:
            self._files.abort()
            raise

    def abort(self) -> None:
        self._closed = True
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


def merge_datasets(output: str | os.PathLike, inputs: list[str | os.PathLike], *,
                   overwrite: bool = True, progress=None) -> IndexedDataset:
    """Concatenate datasets into ``output`` (pointers and doc_idx rebased), streaming.

    ``overwrite=False`` refuses an existing output; ``progress(n)`` is called with the
    bytes copied."""
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
            refuse_overlap([out_prefix + ".bin", out_prefix + ".idx"],
                           [*map(str, ds.bin_paths), ds.idx_path])
        dtype = datasets[0].dtype
        for ds in datasets[1:]:
            if ds.dtype != dtype:
                raise UsageError(
                    f"cannot merge datasets of different dtypes ({dtype} and {ds.dtype})"
                )
        with DatasetBuilder(out_prefix, dtype, overwrite=overwrite) as builder:
            for ds in datasets:
                builder.add_index(ds, progress=progress)
    finally:
        for ds in datasets:
            ds.close()
    return IndexedDataset(out_prefix)
