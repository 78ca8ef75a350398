"""The kernels of ``find`` against plain Python/numpy oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.errors import UsageError
from pythia_data.kernels import find as KF


def _tokens_in_documents(draw, n, vocabs):
    """A vocabulary size drawn from ``vocabs``, ``n`` tokens of it (uint16, or int32 past
    65,536) and document boundaries cut at up to 8 drawn places (empty documents too)."""
    vocab = draw(st.sampled_from(vocabs))
    dtype = np.uint16 if vocab < 65536 else np.int32
    buf = np.array(draw(st.lists(st.integers(0, vocab - 1), min_size=n, max_size=n)),
                   dtype=dtype)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=8)))
    return (vocab, buf, np.array([0, *cuts], dtype=np.int64),
            np.array([*cuts, n], dtype=np.int64))


@st.composite
def scan_case(draw):
    n = draw(st.integers(1, 120))
    vocab, buf, starts, ends = _tokens_in_documents(draw, n, [3, 5, 70_000])
    queries = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            m = draw(st.integers(1, min(6, n)))
            s = draw(st.integers(0, n - m))
            queries.append(buf[s:s + m].astype(np.int64))
        else:
            queries.append(np.array(draw(st.lists(st.integers(0, vocab - 1), min_size=1,
                                                  max_size=4)), dtype=np.int64))
    lo = draw(st.integers(0, n))
    hi = draw(st.integers(lo, n))
    counts = None
    if draw(st.booleans()):
        counts = np.bincount(buf.astype(np.int64))
    return buf, starts, ends, queries, lo, hi, counts


@st.composite
def long_query_case(draw):
    """Queries of 3 or more tokens (at least two distinct anchors likely): the scan then
    takes the sampled-pair pass (every step-th position) instead of the anchor pass."""
    n = draw(st.integers(3, 160))
    vocab, buf, starts, ends = _tokens_in_documents(draw, n, [2, 3, 5, 70_000])
    queries = []
    for _ in range(draw(st.integers(2, 6))):
        m = draw(st.integers(3, min(12, n)))
        if draw(st.booleans()):
            s = draw(st.integers(0, n - m))
            queries.append(buf[s:s + m].astype(np.int64))
        else:
            queries.append(np.array(draw(st.lists(st.integers(0, vocab - 1), min_size=m,
                                                  max_size=m)), dtype=np.int64))
    lo = draw(st.integers(0, n))
    hi = draw(st.integers(lo, n))
    counts = np.bincount(buf.astype(np.int64)) if draw(st.booleans()) else None
    return buf, starts, ends, queries, lo, hi, counts


@settings(max_examples=60, deadline=None)
@given(case=scan_case())
def test_scan_equals_brute_force(case):
    _check_scan(*case)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(case=long_query_case(), base=st.integers(0, 3))
def test_scan_sampled_pairs_equals_brute_force(case, base):
    buf, starts, ends, queries, lo, hi, counts = case
    tables = KF.QueryTables(queries, tails=True, counts=counts)
    assert tables.single or tables.step == min(KF.STEP_MAX, min(map(len, queries)) - 1)
    # the stream starting at `base`: sampled positions are multiples of the step in stream
    # coordinates, not buffer indices
    _check_scan(buf, starts + base, ends + base, queries, lo + base, hi + base, counts,
                base=base)


def test_scan_sampled_pairs_is_used_for_many_long_queries():
    tables = KF.QueryTables([np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8, 9])])
    assert not tables.single and tables.step == 3
    assert KF.QueryTables([np.array([1, 2]), np.array([5, 6, 7])]).step == 1


def _check_scan(buf, starts, ends, queries, lo, hi, counts, base=0):
    tables = KF.QueryTables(queries, tails=True, counts=counts)
    (doc, off, q), (tdoc, tq, tt) = KF.scan(tables, buf, base, lo, hi, starts, ends, 0)
    starts, ends, lo, hi = starts - base, ends - base, lo - base, hi - base
    got = sorted(zip(doc.tolist(), off.tolist(), q.tolist()))
    want = []
    for d, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        for v in range(max(a, lo), min(b, hi)):
            for k, qa in enumerate(queries):
                m = len(qa)
                if v + m <= b and np.array_equal(buf[v:v + m], qa):
                    want.append((d, v - a, k))
    assert got == sorted(want)
    got_t = sorted(zip(tdoc.tolist(), tq.tolist(), tt.tolist()))
    want_t = []
    for d, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        if not (b > a and lo < b <= hi):
            continue
        for k, qa in enumerate(queries):
            for t in range(1, min(len(qa) - 1, b - a) + 1):
                if np.array_equal(buf[b - t:b], qa[:t]):
                    want_t.append((d, k, t))
    assert got_t == sorted(want_t)


def test_scan_refuses_a_buffer_that_does_not_cover_the_range():
    tables = KF.QueryTables([np.array([1, 2, 3])])
    buf = np.arange(10, dtype=np.uint16)
    with pytest.raises(UsageError, match="does not cover"):
        KF.scan(tables, buf[3:], 3, 3, 8, np.array([0]), np.array([10]), 0)


@settings(max_examples=50, deadline=None)
@given(starts=st.lists(st.integers(0, 60), max_size=20),
       lengths=st.lists(st.integers(1, 30), min_size=20, max_size=20),
       seq=st.integers(1, 9), n_rows=st.integers(0, 12))
def test_rows_of_equals_the_definition(starts, lengths, seq, n_rows):
    lengths = lengths[: len(starts)]
    got = KF.rows_of(np.array(starts), np.array(lengths), seq, n_rows)
    got = sorted(zip(*(g.tolist() for g in got)))
    want = []
    for i, (s, m) in enumerate(zip(starts, lengths)):
        e = s + m - 1
        whole = [j for j in range(n_rows) if j * seq <= s and e <= j * seq + seq]
        if whole or any(j * seq <= s and e <= j * seq + seq for j in range(n_rows, n_rows + 10
                                                                            + e // seq)):
            want += [(i, j, s - j * seq, 0, m) for j in whole]
            continue
        for j in range(n_rows):
            a, b = max(s, j * seq), min(e, j * seq + seq)
            if a > b or (a == b and (a == j * seq + seq or a == j * seq)):
                continue
            want.append((i, j, a - j * seq, a - s, b - s + 1))
    assert got == sorted(want)


@settings(max_examples=60, deadline=None)
@given(n_docs=st.integers(1, 30), epochs=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_inverse_arrays_equal_numpy(n_docs, epochs, seed):
    rng = np.random.default_rng(seed)
    doc_idx = np.tile(np.arange(n_docs, dtype=np.int32), epochs)
    rng.shuffle(doc_idx)
    sizes = rng.integers(0, 50, n_docs).astype(np.int32)
    pos = KF.doc_positions(doc_idx, n_docs, epochs)
    want = np.argsort(doc_idx, kind="stable").reshape(n_docs, epochs)
    assert np.array_equal(pos, want)
    perm = rng.permutation(n_docs * 3).astype(np.uint32)
    inv = KF.invert_permutation(perm)
    assert inv.dtype == perm.dtype and np.array_equal(inv, np.argsort(perm))
    ckpt = KF.stream_checkpoints(doc_idx, sizes)
    cum = np.concatenate([[0], np.cumsum(sizes[doc_idx].astype(np.int64))])
    every = np.arange(len(doc_idx))
    assert np.array_equal(KF.stream_starts(every, doc_idx, sizes, ckpt), cum[:-1])
    assert ckpt[-1] == cum[-1]


def test_inverse_kernels_refuse_bad_input():
    with pytest.raises(UsageError):
        KF.doc_positions(np.array([0, 0, 1], dtype=np.int32), 2, 2)
    with pytest.raises(UsageError):
        KF.doc_positions(np.array([0, 0, 0, 1], dtype=np.int32), 2, 2)
    with pytest.raises(UsageError):
        KF.invert_permutation(np.array([0, 5], dtype=np.int64))
    with pytest.raises(UsageError):
        KF.stream_starts(np.array([3]), np.array([0, 1], dtype=np.int32),
                         np.array([1, 1], dtype=np.int32), np.array([0, 2]))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), page=st.integers(1, 70))
def test_touch_pages_reads_one_byte_per_page_and_the_last(data, page):
    buf = np.frombuffer(data, dtype=np.uint8)
    want = 0
    for i in range(0, len(data), page):
        want ^= data[i]
    if data:
        want ^= data[-1]
    assert KF.touch_pages(buf, page) == want


def test_touch_pages_refuses_bad_input():
    with pytest.raises(UsageError):
        KF.touch_pages(np.zeros(4, dtype=np.uint16))
    with pytest.raises(UsageError):
        KF.touch_pages(np.zeros(4, dtype=np.uint8), page=0)
