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
