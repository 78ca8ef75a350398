"""The gather kernel against a plain numpy oracle (Hypothesis), one or many source files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.errors import UsageError
from pythia_data.kernels import index_check
from pythia_data.kernels.gather import gather_bytes, make_sources


def oracle(flat: np.ndarray, starts, lengths) -> np.ndarray:
    parts = [flat[s : s + n] for s, n in zip(starts, lengths)]
    return np.concatenate(parts) if parts else np.empty(0, np.uint8)


@st.composite
def split_and_spans(draw):
    total = draw(st.integers(1, 400))
    flat = np.frombuffer(draw(st.binary(min_size=total, max_size=total)), np.uint8)
    cuts = sorted(draw(st.lists(st.integers(0, total), max_size=6)))
    bounds = [0, *cuts, total]
    n = draw(st.integers(0, 20))
    starts, lengths = [], []
    for _ in range(n):
        s = draw(st.integers(0, total))
        starts.append(s)
        lengths.append(draw(st.integers(0, total - s)))
    return flat, bounds, starts, lengths


@settings(max_examples=200, deadline=None)
@given(split_and_spans())
def test_gather_matches_oracle(case):
    flat, bounds, starts, lengths = case
    sources = make_sources([flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    expected = oracle(flat, starts, lengths)
    out = np.full(expected.shape[0], 0xAB, dtype=np.uint8)
    gather_bytes(sources, np.array(bounds), np.array(starts, np.int64),
                 np.array(lengths, np.int64), out)
    np.testing.assert_array_equal(out, expected)


@settings(max_examples=50, deadline=None)
@given(split_and_spans(), st.integers(0, 50))
def test_gather_explicit_destinations(case, pad):
    flat, bounds, starts, lengths = case
    sources = make_sources([flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    # place spans in reverse order with a gap between them
    dst_starts, pos = [], pad
    for n in reversed(lengths):
        dst_starts.append(pos)
        pos += n + pad
    dst_starts = dst_starts[::-1]
    out = np.zeros(pos + 1, np.uint8)
    expected = np.zeros_like(out)
    for s, n, d in zip(starts, lengths, dst_starts):
        expected[d : d + n] = flat[s : s + n]
    gather_bytes(sources, np.array(bounds), np.array(starts, np.int64),
                 np.array(lengths, np.int64), out, np.array(dst_starts, np.int64))
    np.testing.assert_array_equal(out, expected)


def test_gather_rejects_out_of_range():
    flat = np.arange(10, dtype=np.uint8)
    sources = make_sources([flat])
    out = np.zeros(10, np.uint8)
    with pytest.raises(UsageError, match="outside"):
        gather_bytes(sources, np.array([0, 10]), np.array([8]), np.array([3]), out)
    with pytest.raises(UsageError, match="too small"):
        gather_bytes(sources, np.array([0, 10]), np.array([0]), np.array([10]), out[:5])
    with pytest.raises(UsageError, match="negative"):
        gather_bytes(sources, np.array([0, 10]), np.array([0]), np.array([-1]), out)
    with pytest.raises(UsageError, match="uint8"):
        gather_bytes(sources, np.array([0, 10]), np.array([0]), np.array([1]), out.view(np.int8))
    with pytest.raises(UsageError, match="contiguous"):
        make_sources([np.arange(20, dtype=np.uint8)[::2]])  # the kernel copies raw bytes


def test_gather_large_spans_at_odd_offsets():
    """Long copies (the memcpy path) at unaligned offsets, across two sources."""
    rng = np.random.default_rng(7)
    flat = rng.integers(0, 256, 1 << 20, dtype=np.uint8)
    sources = make_sources([flat[:333_333].copy(), flat[333_333:].copy()])
    starts = np.array([1, 333_000, 777_777, 3], np.int64)
    lengths = np.array([200_001, 1_001, 270_000, 0], np.int64)
    out = np.zeros(int(lengths.sum()), np.uint8)
    gather_bytes(sources, np.array([0, 333_333, 1 << 20]), starts, lengths, out)
    np.testing.assert_array_equal(out, oracle(flat, starts, lengths))


@st.composite
def index_arrays(draw):
    n = draw(st.integers(0, 30))
    sizes = np.array(draw(st.lists(st.integers(-2, 20), min_size=n, max_size=n)), np.int32)
    pointers = np.array(draw(st.lists(st.integers(-4, 400), min_size=n, max_size=n)), np.int64)
    doc_idx = np.array(draw(st.lists(st.integers(-1, n + 1), max_size=n + 2)), np.int64)
    itemsize = draw(st.sampled_from([1, 2, 4, 8]))
    bin_bytes = draw(st.integers(0, 500))
    return sizes, pointers, itemsize, bin_bytes, doc_idx


@settings(max_examples=300, deadline=None)
@given(index_arrays())
def test_index_check_matches_reference(arrays):
    assert index_check.check_index(*arrays) == index_check.check_index_reference(*arrays)


def test_index_check_accepts_valid():
    sizes = np.array([3, 0, 5], np.int32)
    pointers = np.array([0, 6, 6], np.int64)
    assert index_check.check_index(sizes, pointers, 2, 16, np.array([0, 2, 3], np.int64)) == (0, -1)


# -- place_documents: the tokenize writer's one-pass copy (cast + EOD after each document)


def place_oracle(src, ends, dtype, eod):
    out = []
    for a, b in zip(ends[:-1], ends[1:]):
        out.extend(int(x) for x in src[a:b])
        if eod is not None:
            out.append(eod)
    return np.asarray(out, dtype=dtype)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 65535), max_size=300), st.data())
def test_place_documents_matches_oracle(values, data):
    from pythia_data.kernels.gather import place_documents

    src = np.asarray(values, dtype=np.int32)
    cuts = sorted(data.draw(st.lists(st.integers(0, src.size), min_size=1, max_size=12)))
    ends = np.asarray(cuts, dtype=np.int64)
    dtype = data.draw(st.sampled_from([np.uint16, np.int32, np.int64]))
    eod = data.draw(st.one_of(st.none(), st.integers(0, 65535)))
    pad = data.draw(st.integers(0, 5))
    expected = place_oracle(src, ends, dtype, eod)
    dst = np.full(pad + expected.size + 3, 7, dtype=dtype)
    end = place_documents(src, ends, dst, pad, eod)
    assert end == pad + expected.size
    assert dst[pad:end].tolist() == expected.tolist()
    assert (dst[:pad] == 7).all() and (dst[end:] == 7).all()  # nothing outside


def test_place_documents_refuses_what_would_read_or_write_out_of_range():
    from pythia_data.kernels.gather import place_documents

    src = np.arange(10, dtype=np.int32)
    dst = np.zeros(12, dtype=np.uint16)
    for ends, pos, eod, msg in [
        ([0, 11], 0, None, "outside"),        # past src
        ([-1, 3], 0, None, "outside"),        # before src
        ([0, 5, 3], 0, None, "decreasing"),
        ([0, 10], 3, None, "too small"),      # 10 ids from 3 in 12
        ([0, 6, 10], 1, 1, "too small"),  # 10 ids + 2 EODs from 1 in 12
        ([0, 10], -1, None, "too small"),
        ([0, 2], 0, 70000, "does not fit"),
    ]:
        with pytest.raises(UsageError, match=msg):
            place_documents(src, np.asarray(ends), dst, pos, eod)
    with pytest.raises(UsageError):
        place_documents(src, np.asarray([0, 2]), np.zeros((2, 6), np.uint16), 0)
    assert place_documents(src, np.asarray([4]), dst, 5) == 5  # no documents: nothing
