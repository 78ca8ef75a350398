"""Gather kernel: copy byte spans of a logical file split across one or more buffers.

The logical ``.bin`` of a dataset is the concatenation of ``sources`` (one memory map per file:
one file, or every shard). ``bounds[k]`` is the logical byte offset where source ``k`` starts
(``bounds[-1]`` = total size). A span may cross any number of source boundaries.

The kernel receives the sources as an int64 array of their base addresses (a
:class:`Sources` keeps the arrays alive), not as a numba typed list: a typed list costs
~0.5 s of uncached compilation to build plus ~0.35 s to unbox on the first call in every
process, which every command that opens a dataset (and every worker process) paid.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from pythia_data.errors import UsageError


@intrinsic
def _copy_from_address(typingctx, dst, dst_off, addr, n):  # pragma: no cover - jit
    """``dst[dst_off : dst_off + n] = bytes at address addr .. addr + n`` as one
    ``llvm.memcpy`` (the caller has checked the bounds and keeps the source alive). numba
    lowers a slice assignment to an element loop (~2 GB/s); this runs at memcpy speed and,
    being an LLVM intrinsic, stays cacheable."""
    sig = types.void(dst, types.intp, types.int64, types.intp)

    def codegen(context, builder, signature, args):
        d, d_off, address, count = args
        d_arr = context.make_array(signature.args[0])(context, builder, d)
        d_ptr = builder.gep(d_arr.data, [d_off])
        s_ptr = builder.inttoptr(address, d_ptr.type)
        cgutils.raw_memcpy(builder, d_ptr, s_ptr, count, 1)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _gather_bytes(addresses, bounds, starts, nbytes, dst, dst_starts):  # pragma: no cover - jit
    nsrc = addresses.shape[0]
    for k in range(starts.shape[0]):
        pos = starts[k]
        remaining = nbytes[k]
        out = dst_starts[k]
        if remaining <= 0:
            continue
        # binary search: last source whose start <= pos
        lo = 0
        hi = nsrc - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if bounds[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        s = lo
        while remaining > 0:
            local = pos - bounds[s]
            avail = bounds[s + 1] - pos
            n = remaining if remaining < avail else avail
            _copy_from_address(dst, out, addresses[s] + local, n)
            out += n
            pos += n
            remaining -= n
            s += 1
    return 0


@njit(cache=True, nogil=True)
def concat_addresses(addresses, lengths, dst):  # pragma: no cover - jit
    """``dst`` = the ``lengths[i]`` bytes at ``addresses[i]``, one after another (the caller
    checked that ``dst`` holds them all and keeps every source alive). Runs without the
    GIL: the cpu tokenizer gathers the UTF-8 of a chunk of ``str`` documents with it."""
    out = 0
    for i in range(addresses.shape[0]):
        n = lengths[i]
        if n > 0:
            _copy_from_address(dst, out, addresses[i], n)
            out += n
    return out


class Sources:
    """Per-file uint8 arrays and their base addresses, as the kernel takes them. Holds the
    arrays, so their memory stays valid as long as this object lives."""

    __slots__ = ("buffers", "addresses")

    def __init__(self, buffers: list[np.ndarray]):
        self.buffers = list(buffers)
        self.addresses = np.array(
            [b.ctypes.data if b.shape[0] else 0 for b in self.buffers], dtype=np.int64
        )

    def __len__(self) -> int:
        return len(self.buffers)

    def __iter__(self):
        return iter(self.buffers)


def make_sources(buffers: list[np.ndarray]) -> Sources:
    """Check per-file uint8 arrays and pack them for :func:`gather_bytes`."""
    for buf in buffers:
        if buf.dtype != np.uint8 or buf.ndim != 1 or not buf.flags.c_contiguous:
            raise UsageError("gather: sources must be contiguous 1-D uint8 arrays")
    return Sources(buffers)


def gather_bytes(
    sources: Sources,
    bounds: np.ndarray,
    starts: np.ndarray,
    nbytes: np.ndarray,
    dst: np.ndarray,
    dst_starts: np.ndarray | None = None,
) -> np.ndarray:
    """Copy logical byte spans ``[starts[k], starts[k] + nbytes[k])`` into ``dst`` (uint8).

    ``dst_starts`` defaults to packing the spans back to back from 0. Bounds are checked
    here, so the kernel never reads or writes out of range.
    """
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    nbytes = np.ascontiguousarray(nbytes, dtype=np.int64)
    bounds = np.ascontiguousarray(bounds, dtype=np.int64)
    if starts.ndim != 1 or starts.shape != nbytes.shape:
        raise UsageError("gather: starts and lengths must be 1-D arrays of the same length")
    if dst.dtype != np.uint8 or dst.ndim != 1 or not dst.flags.c_contiguous:
        raise UsageError("gather: destination must be a contiguous 1-D uint8 array")
    if len(sources) == 0 or bounds.shape != (len(sources) + 1,):
        raise UsageError("gather: bounds must have one entry per source plus one")
    if bounds[0] != 0 or (np.diff(bounds) < 0).any():
        raise UsageError("gather: bounds must start at 0 and not decrease")
    for k, buf in enumerate(sources):
        if buf.shape[0] != bounds[k + 1] - bounds[k]:
            raise UsageError(f"gather: source {k} does not have the size its bounds say")
    # Every check compares against a limit without adding first (no int64 wrap-around).
    total = int(bounds[-1])
    if starts.shape[0]:
        if (nbytes < 0).any():
            raise UsageError("gather: negative span length")
        if (nbytes > total).any() or (starts < 0).any() or (starts > total - nbytes).any():
            raise UsageError("gather: span outside the data file")
    if dst_starts is None:
        dst_starts = np.zeros(starts.shape[0], dtype=np.int64)
        if starts.shape[0] > 1:
            np.cumsum(nbytes[:-1], out=dst_starts[1:])
    else:
        dst_starts = np.ascontiguousarray(dst_starts, dtype=np.int64)
        if dst_starts.shape != starts.shape:
            raise UsageError("gather: dst_starts must match starts")
    if starts.shape[0]:
        room = dst.shape[0]
        if (nbytes > room).any() or (dst_starts < 0).any() or (dst_starts > room - nbytes).any():
            raise UsageError("gather: destination too small for the spans")
        if not isinstance(sources, Sources):
            raise UsageError("gather: sources must come from make_sources")
        _gather_bytes(sources.addresses, bounds, starts, nbytes, dst, dst_starts)
    return dst


@njit(cache=True, nogil=True)
def _place_documents(src, ends, dst, pos, eod):  # pragma: no cover - jit
    w = pos
    for k in range(ends.shape[0] - 1):
        for j in range(ends[k], ends[k + 1]):
            dst[w] = src[j]
            w += 1
        if eod >= 0:
            dst[w] = eod
            w += 1
    return w


def place_documents(src: np.ndarray, ends: np.ndarray, dst: np.ndarray, pos: int,
                    eod: int | None = None) -> int:
    """Copy the documents ``src[ends[k]:ends[k + 1]]`` one after another into ``dst`` from
    ``pos``, cast to ``dst``'s dtype (the caller knows the values fit), each followed by
    ``eod`` unless it is None; returns the position after the last one. One pass, no
    intermediate arrays, the GIL released: the tokenize writer's ids go from the encoder's
    int32 output to the dataset's dtype, EODs in place, in one copy. Offsets and room are
    checked here, so the kernel never reads or writes out of range."""
    ends = np.ascontiguousarray(ends, dtype=np.int64)
    if src.ndim != 1 or dst.ndim != 1 or ends.ndim != 1 or ends.size < 1:
        raise UsageError("place: src, dst and ends must be 1-D (ends non-empty)")
    if src.dtype.kind not in "iu" or dst.dtype.kind not in "iu":
        raise UsageError("place: src and dst must hold integers")
    if not dst.flags.c_contiguous:
        raise UsageError("place: dst must be contiguous")
    n = ends.size - 1
    if n and (int(ends[0]) < 0 or int(ends[-1]) > src.shape[0]
              or bool((np.diff(ends) < 0).any())):
        raise UsageError("place: document ends outside src or decreasing")
    count = (int(ends[-1] - ends[0]) if n else 0) + (n if eod is not None else 0)
    if pos < 0 or pos > dst.shape[0] - count:
        raise UsageError("place: dst too small")
    if eod is not None and not 0 <= eod <= np.iinfo(dst.dtype).max:
        raise UsageError("place: eod does not fit in dst's dtype")
    if n == 0:
        return pos
    return int(_place_documents(src, ends, dst, pos, -1 if eod is None else int(eod)))
