"""Kernels of the GPT-NeoX v1.0 training order (see docs/order.md).

* MT19937 seeded like ``numpy.random.RandomState(seed)`` and a Fisher–Yates shuffle that
  draws exactly what ``RandomState.shuffle`` draws (legacy bounded integers: masked
  rejection sampling on 32-bit outputs, on 64-bit outputs -- high word first -- when the
  bound exceeds ``0xffffffff``). The draws of a chunk are made first and the swaps applied
  after, so the swaps' random memory accesses overlap instead of waiting on the generator.
* The sample walk that builds ``sample_idx`` (GPT-NeoX's ``build_sample_idx``).
* Structural checks (permutation, multiset of documents) and the look-ups of ``locate``.

Every ``@njit`` function here has a thin wrapper below it that checks dtypes and shapes;
call the wrappers, not the kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pythia_data.errors import UsageError

MT_N = 624
_MT_M = 397
_CHUNK = 1 << 16  # draws made ahead of their swaps (512 KiB of int64)


# --------------------------------------------------------------------------- MT19937


@njit(cache=True, nogil=True)
def _mt_seed(seed, key):  # pragma: no cover - jit
    s = np.uint64(seed) & np.uint64(0xFFFFFFFF)
    for i in range(MT_N):
        key[i] = np.uint32(s)
        s = (np.uint64(1812433253) * (s ^ (s >> np.uint64(30))) + np.uint64(i + 1)) & np.uint64(
            0xFFFFFFFF
        )


@njit(cache=True, nogil=True)
def _mt_twist(key):  # pragma: no cover - jit
    upper = np.uint32(0x80000000)
    lower = np.uint32(0x7FFFFFFF)
    matrix = np.uint32(0x9908B0DF)
    one = np.uint32(1)
    for k in range(MT_N):
        y = (key[k] & upper) | (key[(k + 1) % MT_N] & lower)
        v = key[(k + _MT_M) % MT_N] ^ (y >> one)
        if y & one:
            v ^= matrix
        key[k] = v


@njit(cache=True, nogil=True, inline="always")
def _temper(y):  # pragma: no cover - jit
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return y


@njit(cache=True, nogil=True)
def _mt_raw32(key, pos, out):  # pragma: no cover - jit
    p = pos[0]
    for k in range(out.shape[0]):
        if p >= MT_N:
            _mt_twist(key)
            p = 0
        out[k] = _temper(key[p])
        p += 1
    pos[0] = p


@njit(cache=True, nogil=True)
def _draw_bounded(key, pos, i_hi, js):  # pragma: no cover - jit
    """js[k] = RandomState's random_interval(i_hi - k) for k in range(len(js))."""
    p = pos[0]
    for k in range(js.shape[0]):
        bound = np.uint64(i_hi - k)
        if bound == 0:
            js[k] = 0
            continue
        mask = bound
        mask |= mask >> np.uint64(1)
        mask |= mask >> np.uint64(2)
        mask |= mask >> np.uint64(4)
        mask |= mask >> np.uint64(8)
        mask |= mask >> np.uint64(16)
        mask |= mask >> np.uint64(32)
        if bound <= np.uint64(0xFFFFFFFF):
            m32 = np.uint32(mask)
            while True:
                if p >= MT_N:
                    _mt_twist(key)
                    p = 0
                v = _temper(key[p]) & m32
                p += 1
                if np.uint64(v) <= bound:
                    break
            js[k] = np.int64(v)
        else:
            while True:
                if p >= MT_N:
                    _mt_twist(key)
                    p = 0
                hi = np.uint64(_temper(key[p]))
                p += 1
                if p >= MT_N:
                    _mt_twist(key)
                    p = 0
                lo = np.uint64(_temper(key[p]))
                p += 1
                v64 = ((hi << np.uint64(32)) | lo) & mask
                if v64 <= bound:
                    break
            js[k] = np.int64(v64)
    pos[0] = p


@njit(cache=True, nogil=True)
def _apply_swaps(data, i_hi, js):  # pragma: no cover - jit
    for k in range(js.shape[0]):
        i = i_hi - k
        j = js[k]
        t = data[j]
        data[j] = data[i]
        data[i] = t


@njit(cache=True, nogil=True)
def _shuffle(data, key, pos, js, i_top, i_stop):  # pragma: no cover - jit
    # Fisher-Yates steps i = i_top, i_top - 1, ..., i_stop + 1 (i_stop >= 0).
    i = i_top
    chunk = js.shape[0]
    while i > i_stop:
        c = chunk if i - i_stop >= chunk else i - i_stop
        buf = js[:c]
        _draw_bounded(key, pos, i, buf)
        _apply_swaps(data, i, buf)
        i -= c


class MT19937:
    """The state of ``numpy.random.RandomState`` (MT19937) as a numba-friendly pair.

    ``MT19937(seed)`` equals ``RandomState(seed)`` for an int seed in ``[0, 2**32)``;
    :meth:`shuffle` equals ``RandomState.shuffle`` on a 1-D array (same result, same state
    afterwards), so consecutive shuffles continue the same stream as GPT-NeoX's ``np_rng``.
    """

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise UsageError(f"seed must be an integer, not {seed!r}")
        seed = int(seed)
        if not 0 <= seed <= 0xFFFFFFFF:
            raise UsageError(f"seed must be between 0 and 2**32 - 1, not {seed}")
        self.key = np.empty(MT_N, dtype=np.uint32)
        self.pos = np.array([MT_N], dtype=np.int64)
        _mt_seed(np.uint64(seed), self.key)

    @classmethod
    def from_numpy(cls, rs: np.random.RandomState) -> MT19937:
        name, key, pos = rs.get_state()[:3]
        if name != "MT19937":
            raise UsageError(f"not an MT19937 state: {name}")
        self = cls.__new__(cls)
        self.key = np.array(key, dtype=np.uint32)
        self.pos = np.array([pos], dtype=np.int64)
        return self

    def to_numpy(self) -> np.random.RandomState:
        rs = np.random.RandomState()
        rs.set_state(("MT19937", self.key.copy(), int(self.pos[0]), 0, 0.0))
        return rs

    def random_raw(self, n: int) -> np.ndarray:
        """The next ``n`` 32-bit outputs (``MT19937.random_raw``)."""
        out = np.empty(int(n), dtype=np.uint32)
        _mt_raw32(self.key, self.pos, out)
        return out

    def bounded_draws(self, i_hi: int, count: int) -> np.ndarray:
        """The indices Fisher–Yates draws for ``i = i_hi, i_hi - 1, ...`` (``count`` of them)."""
        if count < 0 or count > i_hi + 1:
            raise UsageError("bounded_draws: count must be in [0, i_hi + 1]")
        js = np.empty(int(count), dtype=np.int64)
        _draw_bounded(self.key, self.pos, np.int64(i_hi), js)
        return js

    def shuffle(self, data: np.ndarray, callback=None, step: int = 1 << 23) -> None:
        """Shuffle a 1-D contiguous integer array in place, exactly as ``RandomState.shuffle``.

        ``callback(n)``, if given, is called after every ``step`` Fisher–Yates steps."""
        if not isinstance(data, np.ndarray) or data.ndim != 1:
            raise UsageError("shuffle: expected a 1-D numpy array")
        if not data.flags.c_contiguous or not data.flags.writeable:
            raise UsageError("shuffle: array must be contiguous and writeable")
        if data.dtype.kind not in "iu":
            raise UsageError(f"shuffle: expected an integer array, not {data.dtype}")
        if data.shape[0] <= 1:
            return
        js = np.empty(min(_CHUNK, data.shape[0]), dtype=np.int64)
        top = data.shape[0] - 1
        if callback is None:
            _shuffle(data, self.key, self.pos, js, np.int64(top), np.int64(0))
            return
        step = max(int(step), 1)
        while top > 0:
            stop = max(top - step, 0)
            _shuffle(data, self.key, self.pos, js, np.int64(top), np.int64(stop))
            callback(top - stop)
            top = stop


# --------------------------------------------------------------------------- doc_idx


@njit(cache=True, nogil=True)
def _fill_epochs(out, n_docs):  # pragma: no cover - jit
    k = 0
    while k < out.shape[0]:
        for d in range(n_docs):
            out[k] = d
            k += 1


def epoch_doc_list(n_docs: int, num_epochs: int, dtype=np.int32) -> np.ndarray:
    """``0..n_docs-1`` repeated ``num_epochs`` times, built in place (no ``np.mgrid``)."""
    n_docs = int(n_docs)
    num_epochs = int(num_epochs)
    if n_docs < 1 or num_epochs < 1:
        raise UsageError("epoch_doc_list: need at least one document and one epoch")
    dtype = np.dtype(dtype)
    if n_docs - 1 > np.iinfo(dtype).max:
        raise UsageError(f"epoch_doc_list: {n_docs} documents do not fit {dtype}")
    out = np.empty(n_docs * num_epochs, dtype=dtype)
    _fill_epochs(out, np.int64(n_docs))
    return out


# --------------------------------------------------------------------------- sample walk


_GATHER = 1 << 14  # doc positions whose sizes are gathered ahead of the walk


@njit(cache=True, nogil=True)
def _walk_rows(sizes, doc_idx, seq_length, state, gbuf, out):  # pragma: no cover - jit
    # GPT-NeoX's build_sample_idx, resumable. Each sample takes seq_length + 1 tokens and
    # the last token of a sample is the first of the next, so a sample ends (and the next
    # starts) at an offset <= doc_length - 1 inside a document. Same arithmetic as
    # GPT-NeoX's loop, turned document-major: the sizes of a block of doc positions are
    # gathered first (independent loads instead of one cache miss per step), then walked.
    # state = (pos, offset, remaining). Returns rows written (< len(out): out of
    # documents) or -1 (a doc_idx value out of range).
    pos = state[0]
    offset = state[1]
    remaining = state[2]
    n_pos = doc_idx.shape[0]
    n_docs = sizes.shape[0]
    n_out = out.shape[0]
    block = gbuf.shape[0]
    r = 0
    if n_out == 0:
        return 0
    while pos < n_pos:
        end = min(pos + block, n_pos)
        base = pos
        for k in range(end - base):
            d = doc_idx[base + k]
            if d < 0 or d >= n_docs:
                return -1
            gbuf[k] = sizes[d]
        while pos < end:
            size = gbuf[pos - base]
            length = size - offset
            remaining -= length
            while remaining <= 0:
                offset += remaining + length - 1
                out[r, 0] = pos
                out[r, 1] = offset
                r += 1
                if r == n_out:
                    state[0] = pos
                    state[1] = offset
                    state[2] = seq_length + 1
                    return r
                remaining = seq_length + 1
                length = size - offset
                remaining -= length
            pos += 1
            offset = 0
    state[0] = pos
    state[1] = offset
    state[2] = remaining
    return r


def _check_walk_args(sizes, doc_idx, seq_length, num_samples):
    _check_int_array("sizes", sizes, (np.int32, np.int64))
    _check_int_array("doc_idx", doc_idx, (np.int32, np.int64))
    seq_length = int(seq_length)
    num_samples = int(num_samples)
    if seq_length < 1:
        raise UsageError("seq_length must be at least 1")
    if num_samples < 0:
        raise UsageError("num_samples must be >= 0")
    return seq_length, num_samples


def iter_sample_idx(sizes, doc_idx, seq_length, num_samples, dtype=np.int32,
                    chunk_rows: int = 1 << 20):
    """``sample_idx`` (see :func:`build_sample_idx`) in blocks of at most ``chunk_rows``
    rows, so it can be written out without holding all of it. Each block is a reused
    buffer, valid until the next one is produced."""
    seq_length, num_samples = _check_walk_args(sizes, doc_idx, seq_length, num_samples)
    state = np.array([0, 0, seq_length + 1], dtype=np.int64)
    gbuf = np.empty(_GATHER, dtype=np.int64)
    first = np.zeros((1, 2), dtype=dtype)
    yield first
    done = 0
    buf = np.empty((max(1, min(int(chunk_rows), num_samples)), 2), dtype=dtype)
    while done < num_samples:
        part = buf[: min(buf.shape[0], num_samples - done)]
        got = _walk_rows(sizes, doc_idx, np.int64(seq_length), state, gbuf, part)
        if got == -1:
            raise UsageError("doc_idx holds a document index out of range")
        if got < part.shape[0]:
            raise UsageError("sample walk ran past the end of doc_idx: too few tokens")
        done += part.shape[0]
        yield part


def build_sample_idx(
    sizes: np.ndarray, doc_idx: np.ndarray, seq_length: int, num_samples: int, dtype=np.int32
) -> np.ndarray:
    """``sample_idx`` of shape ``(num_samples + 1, 2)``: where each sample starts
    (position in ``doc_idx``, token offset in that document); row 0 is (0, 0)."""
    seq_length, num_samples = _check_walk_args(sizes, doc_idx, seq_length, num_samples)
    out = np.empty((num_samples + 1, 2), dtype=dtype)
    out[0] = 0
    state = np.array([0, 0, seq_length + 1], dtype=np.int64)
    gbuf = np.empty(_GATHER, dtype=np.int64)
    got = _walk_rows(sizes, doc_idx, np.int64(seq_length), state, gbuf, out[1:])
    if got == -1:
        raise UsageError("doc_idx holds a document index out of range")
    if got < num_samples:
        raise UsageError("sample walk ran past the end of doc_idx: too few tokens")
    return out


@njit(cache=True, nogil=True)
def _first_walk_mismatch(sizes, doc_idx, seq_length, sample_idx):  # pragma: no cover - jit
    # The sample walk again, compared row by row with an existing sample_idx.
    n = sample_idx.shape[0] - 1
    n_pos = doc_idx.shape[0]
    n_docs = sizes.shape[0]
    pos = 0
    offset = 0
    if sample_idx[0, 0] != 0 or sample_idx[0, 1] != 0:
        return 0
    for s in range(1, n + 1):
        remaining = seq_length + 1
        while True:
            if pos >= n_pos:
                return s
            d = doc_idx[pos]
            if d < 0 or d >= n_docs:
                return s
            length = np.int64(sizes[d]) - offset
            remaining -= length
            if remaining <= 0:
                offset += remaining + length - 1
                break
            pos += 1
            offset = 0
        if sample_idx[s, 0] != pos or sample_idx[s, 1] != offset:
            return s
    return -1


def first_walk_mismatch(
    sizes: np.ndarray, doc_idx: np.ndarray, seq_length: int, sample_idx: np.ndarray
) -> int:
    """The first row of ``sample_idx`` that differs from the sample walk over ``doc_idx``
    (-1 if none): checks a sample_idx without a second copy of it in memory."""
    _check_int_array("sizes", sizes, None)
    _check_int_array("doc_idx", doc_idx, None)
    if sample_idx.ndim != 2 or sample_idx.shape[1] != 2 or sample_idx.dtype.kind not in "iu":
        raise UsageError("sample_idx must be an integer array of shape (n + 1, 2)")
    if int(seq_length) < 1:
        raise UsageError("seq_length must be at least 1")
    return int(_first_walk_mismatch(sizes, doc_idx, np.int64(seq_length), sample_idx))


# --------------------------------------------------------------------------- checks


@njit(cache=True, nogil=True)
def _first_not_permutation(values, seen):  # pragma: no cover - jit
    # seen: zeroed uint8 bitmap of ceil(n / 8) bytes. Returns the first index whose value
    # is out of range or repeated, or -1.
    n = values.shape[0]
    for k in range(n):
        v = np.int64(values[k])
        if v < 0 or v >= n:
            return k
        b = v >> 3
        bit = np.uint8(1) << np.uint8(v & 7)
        if seen[b] & bit:
            return k
        seen[b] |= bit
    return -1


def first_not_permutation(values: np.ndarray) -> int:
    """-1 if ``values`` is a permutation of ``0..len-1``, else the first offending index."""
    _check_int_array("values", values, None)
    seen = np.zeros((values.shape[0] + 7) // 8, dtype=np.uint8)
    return int(_first_not_permutation(values, seen))


@njit(cache=True, nogil=True)
def _first_bad_multiplicity(doc_idx, counts, n_docs, times):  # pragma: no cover - jit
    # counts: zeroed uint16 array of n_docs. Returns the first index whose value is out of
    # range or seen more than `times` times; n_pos + d for the first document seen fewer
    # times; or -1.
    for k in range(doc_idx.shape[0]):
        d = np.int64(doc_idx[k])
        if d < 0 or d >= n_docs:
            return k
        if counts[d] >= times:
            return k
        counts[d] += 1
    for d in range(n_docs):
        if counts[d] != times:
            return doc_idx.shape[0] + d
    return -1


def first_bad_multiplicity(doc_idx: np.ndarray, n_docs: int, times: int) -> int:
    """-1 if every document ``0..n_docs-1`` appears exactly ``times`` times in ``doc_idx``.

    Otherwise the first index with a value out of range or seen once too often, or
    ``len(doc_idx) + d`` for the first document ``d`` seen too rarely."""
    _check_int_array("doc_idx", doc_idx, None)
    if not 1 <= times < 65535:
        raise UsageError("first_bad_multiplicity: times must be in [1, 65535)")
    counts = np.zeros(int(n_docs), dtype=np.uint16)
    return int(_first_bad_multiplicity(doc_idx, counts, np.int64(n_docs), np.uint16(times)))


# --------------------------------------------------------------------------- locate


@njit(cache=True, nogil=True)
def _positions_of(values, target, out):  # pragma: no cover - jit
    m = 0
    for k in range(values.shape[0]):
        if values[k] == target:
            if m < out.shape[0]:
                out[m] = k
            m += 1
    return m


def positions_of(values: np.ndarray, target: int, expected: int = 4) -> np.ndarray:
    """Every index ``k`` with ``values[k] == target`` (int64, ascending)."""
    _check_int_array("values", values, None)
    out = np.empty(max(int(expected), 1), dtype=np.int64)
    m = int(_positions_of(values, values.dtype.type(target), out))
    if m > out.shape[0]:
        out = np.empty(m, dtype=np.int64)
        _positions_of(values, values.dtype.type(target), out)
    return out[:m].copy()


@njit(cache=True, nogil=True)
def _inverse_lookup(values, targets, out):  # pragma: no cover - jit
    # targets sorted ascending and unique (int64); out[t] = the index k with values[k] == targets[t].
    lo_t = targets[0]
    hi_t = targets[targets.shape[0] - 1]
    for k in range(values.shape[0]):
        v = np.int64(values[k])
        if v < lo_t or v > hi_t:
            continue
        a = 0
        b = targets.shape[0]
        while a < b:
            mid = (a + b) >> 1
            if targets[mid] < v:
                a = mid + 1
            else:
                b = mid
        if a < targets.shape[0] and targets[a] == v:
            out[a] = k


def inverse_lookup(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target value, the index where ``values`` holds it (-1 where absent).

    One pass over ``values`` (a permutation such as ``shuffle_idx``): the inverse of the
    permutation at a few points, without building the whole inverse."""
    _check_int_array("values", values, None)
    targets = np.asarray(targets, dtype=np.int64)
    if targets.ndim != 1:
        raise UsageError("inverse_lookup: targets must be 1-D")
    uniq, back = np.unique(targets, return_inverse=True)
    found = np.full(uniq.shape[0], -1, dtype=np.int64)
    if uniq.shape[0]:
        _inverse_lookup(values, np.ascontiguousarray(uniq, dtype=np.int64), found)
    return found[back.reshape(-1)]


@njit(cache=True, nogil=True)
def _covering_samples(sample_idx, sizes, doc_idx, p, out):  # pragma: no cover - jit
    # Samples j (rows j, j+1 of sample_idx) that contain tokens of the document at doc_idx
    # position p. out rows: (j, token offset in the sample, first doc token, last doc token).
    # Returns the number of rows (capacity = out.shape[0]; more are counted, not written).
    n = sample_idx.shape[0] - 1
    size = np.int64(sizes[doc_idx[p]])
    if size <= 0 or n <= 0:
        return 0
    # first j with sample_idx[j + 1, 0] >= p  (the sample's end reaches position p)
    a = 0
    b = n
    while a < b:
        mid = (a + b) >> 1
        if sample_idx[mid + 1, 0] < p:
            a = mid + 1
        else:
            b = mid
    m = 0
    j = a
    while j < n and sample_idx[j, 0] <= p:
        sp = np.int64(sample_idx[j, 0])
        so = np.int64(sample_idx[j, 1])
        ep = np.int64(sample_idx[j + 1, 0])
        eo = np.int64(sample_idx[j + 1, 1])
        if sp == p:
            first = so
            in_sample = 0
        else:
            first = 0
            in_sample = np.int64(sizes[doc_idx[sp]]) - so
            for q in range(sp + 1, p):
                in_sample += np.int64(sizes[doc_idx[q]])
        last = eo if ep == p else size - 1
        if m < out.shape[0]:
            out[m, 0] = j
            out[m, 1] = in_sample
            out[m, 2] = first
            out[m, 3] = last
        m += 1
        j += 1
    return m


def covering_samples(
    sample_idx: np.ndarray, sizes: np.ndarray, doc_idx: np.ndarray, position: int
) -> np.ndarray:
    """Rows ``(j, offset_in_sample, first_token, last_token)`` (int64) for every sample
    ``j`` of ``sample_idx`` that holds tokens of the document at ``doc_idx[position]``;
    token numbers are within that document, inclusive."""
    if sample_idx.ndim != 2 or sample_idx.shape[1] != 2:
        raise UsageError("sample_idx must have shape (n + 1, 2)")
    _check_int_array("sizes", sizes, None)
    _check_int_array("doc_idx", doc_idx, None)
    position = int(position)
    if not 0 <= position < doc_idx.shape[0]:
        raise UsageError(f"position {position} out of range")
    out = np.empty((8, 4), dtype=np.int64)
    m = int(_covering_samples(sample_idx, sizes, doc_idx, np.int64(position), out))
    if m > out.shape[0]:
        out = np.empty((m, 4), dtype=np.int64)
        _covering_samples(sample_idx, sizes, doc_idx, np.int64(position), out)
    return out[:m].copy()


# --------------------------------------------------------------------------- helpers


def _check_int_array(name: str, arr, dtypes) -> None:
    if not isinstance(arr, np.ndarray) or arr.ndim != 1:
        raise UsageError(f"{name} must be a 1-D numpy array")
    if arr.dtype.kind not in "iu" or (dtypes is not None and arr.dtype not in dtypes):
        raise UsageError(f"{name} has dtype {arr.dtype}, expected an integer array")
