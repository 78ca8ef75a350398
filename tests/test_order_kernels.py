"""Kernels of the training order against plain oracles (numpy's RandomState, Python loops)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.errors import UsageError
from pythia_data.kernels import order as K
from tests.test_order_reference import ref_sample_walk

FAST = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**32 - 1)


@FAST
@given(seed=seeds, n=st.integers(0, 2000))
def test_mt19937_raw_matches_numpy(seed, n):
    rs = np.random.RandomState(seed)
    mine = K.MT19937(seed)
    assert np.array_equal(mine.key, rs.get_state()[1])
    bg = np.random.MT19937()
    bg.state = {"bit_generator": "MT19937", "state": {"key": rs.get_state()[1], "pos": 624}}
    assert np.array_equal(mine.random_raw(n), bg.random_raw(n).astype(np.uint32))


@FAST
@given(seed=seeds, n=st.integers(0, 3000),
       dtype=st.sampled_from([np.int32, np.uint32, np.int64, np.uint16]))
def test_shuffle_matches_randomstate_and_continues_its_stream(seed, n, dtype):
    rs = np.random.RandomState(seed)
    mine = K.MT19937(seed)
    a = np.arange(n).astype(dtype)
    b = a.copy()
    mine.shuffle(a)
    rs.shuffle(b)
    assert np.array_equal(a, b)
    # second shuffle from the same generator: the stream continues identically
    c = np.arange(n // 2 + 3, dtype=np.uint32)
    d = c.copy()
    mine.shuffle(c)
    rs.shuffle(d)
    assert np.array_equal(c, d)
    name, key, pos = rs.get_state()[:3]
    assert np.array_equal(mine.key, key) and int(mine.pos[0]) == pos


def test_shuffle_larger_than_a_chunk_and_stepped():
    n = 200_003
    want = np.arange(n, dtype=np.int32)
    np.random.RandomState(7).shuffle(want)
    a = np.arange(n, dtype=np.int32)
    K.MT19937(7).shuffle(a)
    assert np.array_equal(a, want)
    b = np.arange(n, dtype=np.int32)
    seen = []
    K.MT19937(7).shuffle(b, callback=seen.append, step=50_000)
    assert np.array_equal(b, want)
    assert sum(seen) == n - 1 and len(seen) == 5


@pytest.mark.parametrize("seed", [0, 1, 1234])
def test_64_bit_draws_match_legacy_masked_randint(seed):
    # Bounds above 0xffffffff use 64-bit draws (high word first); legacy randint over a
    # range wider than 32 bits uses the same masked rejection.
    bound = 2**33 + 5
    want = np.random.RandomState(seed).randint(0, bound + 1, size=64, dtype=np.int64)
    mine = K.MT19937(seed)
    got = [int(mine.bounded_draws(bound, 1)[0]) for _ in range(64)]
    assert got == want.tolist()


def test_from_and_to_numpy_state():
    rs = np.random.RandomState(99)
    rs.random_sample(17)  # consume part of a block
    mine = K.MT19937.from_numpy(rs)
    a = np.arange(500, dtype=np.int64)
    b = a.copy()
    mine.shuffle(a)
    rs.shuffle(b)
    assert np.array_equal(a, b)
    back = mine.to_numpy()
    assert np.array_equal(back.randint(0, 1000, 10), rs.randint(0, 1000, 10))


def test_wrappers_validate():
    with pytest.raises(UsageError):
        K.MT19937(-1)
    with pytest.raises(UsageError):
        K.MT19937(2**32)
    with pytest.raises(UsageError):
        K.MT19937(1.5)
    with pytest.raises(UsageError):
        K.MT19937(1).shuffle(np.arange(4, dtype=np.float64))
    with pytest.raises(UsageError):
        K.MT19937(1).shuffle(np.arange(8)[::2])
    with pytest.raises(UsageError):
        K.build_sample_idx(np.ones(3, np.int16), np.zeros(3, np.int32), 4, 1)
    with pytest.raises(UsageError):
        K.build_sample_idx(np.ones(3, np.int32), np.zeros(3, np.int32), 0, 1)
    with pytest.raises(UsageError):
        K.build_sample_idx(np.ones(3, np.int32), np.array([0, 1, 2], np.int32), 4, 5)
    with pytest.raises(UsageError, match="out of range"):
        K.build_sample_idx(np.ones(3, np.int32), np.array([0, 3, 2], np.int32), 1, 1)
    with pytest.raises(UsageError, match="too few"):
        list(K.iter_sample_idx(np.ones(3, np.int32), np.array([0, 1, 2], np.int32), 4, 5))
    with pytest.raises(UsageError):
        K.epoch_doc_list(0, 2)
    with pytest.raises(UsageError):
        K.first_walk_mismatch(np.ones(3, np.int32), np.zeros(3, np.int32), 2,
                              np.zeros(4, np.int32))


@FAST
@given(n=st.integers(1, 50), epochs=st.integers(1, 4))
def test_epoch_doc_list(n, epochs):
    want = np.mgrid[0:epochs, 0:n][1].reshape(-1).astype(np.int32)
    got = K.epoch_doc_list(n, epochs)
    assert got.dtype == np.int32 and np.array_equal(got, want)


walk_inputs = st.tuples(
    st.lists(st.integers(0, 90), min_size=1, max_size=30),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
    st.sampled_from([np.int32, np.int64]),
)


@FAST
@given(args=walk_inputs)
def test_sample_walk_matches_reference(args):
    sizes_list, seq_length, seed, out_dtype = args
    sizes = np.array(sizes_list, dtype=np.int32)
    tokens = int(sizes.sum())
    if tokens < 2:
        sizes[0] += 2
        tokens += 2
    epochs = 3
    doc_idx = np.tile(np.arange(len(sizes), dtype=np.int32), epochs)
    np.random.RandomState(seed).shuffle(doc_idx)
    total = (epochs * tokens - 1) // seq_length
    want = ref_sample_walk(sizes, doc_idx, seq_length, total)
    got = K.build_sample_idx(sizes, doc_idx, seq_length, total, out_dtype)
    assert got.dtype == out_dtype and got.shape == (total + 1, 2)
    assert np.array_equal(got, want)
    for rows in (1, 3, 7):
        chunks = [c.copy() for c in
                  K.iter_sample_idx(sizes, doc_idx, seq_length, total, out_dtype, rows)]
        assert all(c.shape[0] <= rows for c in chunks)
        assert np.array_equal(np.concatenate(chunks), want)
    assert K.first_walk_mismatch(sizes, doc_idx, seq_length, got) == -1
    if total >= 1:
        bad = got.copy()
        bad[total, 1] += 1
        assert K.first_walk_mismatch(sizes, doc_idx, seq_length, bad) == total
        bad = got.copy()
        bad[0, 0] = 1
        assert K.first_walk_mismatch(sizes, doc_idx, seq_length, bad) == 0


@FAST
@given(values=st.lists(st.integers(-2, 12), max_size=12))
def test_first_not_permutation(values):
    arr = np.array(values, dtype=np.int64)
    n = len(values)
    want = -1
    seen = set()
    for k, v in enumerate(values):
        if not 0 <= v < n or v in seen:
            want = k
            break
        seen.add(v)
    assert K.first_not_permutation(arr) == want
    assert K.first_not_permutation(np.random.RandomState(n).permutation(n).astype(np.uint32)) == -1


def test_zero_run_is_not_a_permutation():
    perm = np.arange(1000, dtype=np.uint32)
    np.random.RandomState(2).shuffle(perm)
    perm[500:520] = 0
    seen = set()
    want = next(k for k, v in enumerate(perm.tolist()) if v in seen or seen.add(v))
    assert K.first_not_permutation(perm) == want


@FAST
@given(values=st.lists(st.integers(-1, 5), max_size=20), n_docs=st.integers(1, 5),
       times=st.integers(1, 3))
def test_first_bad_multiplicity(values, n_docs, times):
    arr = np.array(values, dtype=np.int32)
    counts = [0] * n_docs
    want = -1
    for k, v in enumerate(values):
        if not 0 <= v < n_docs or counts[v] >= times:
            want = k
            break
        counts[v] += 1
    else:
        for d in range(n_docs):
            if counts[d] != times:
                want = len(values) + d
                break
    assert K.first_bad_multiplicity(arr, n_docs, times) == want
    good = np.tile(np.arange(n_docs, dtype=np.int32), times)
    assert K.first_bad_multiplicity(good, n_docs, times) == -1


@FAST
@given(values=st.lists(st.integers(0, 6), max_size=40), target=st.integers(0, 6))
def test_positions_of(values, target):
    arr = np.array(values, dtype=np.int32)
    got = K.positions_of(arr, target, expected=1)
    assert got.dtype == np.int64
    assert got.tolist() == [k for k, v in enumerate(values) if v == target]


@FAST
@given(n=st.integers(1, 300), seed=st.integers(0, 1000), k=st.integers(1, 10))
def test_inverse_lookup(n, seed, k):
    perm = np.arange(n, dtype=np.uint32)
    np.random.RandomState(seed).shuffle(perm)
    targets = np.random.RandomState(seed + 1).randint(0, n + 2, size=k)
    got = K.inverse_lookup(perm, targets)
    inv = {int(v): i for i, v in enumerate(perm)}
    assert got.tolist() == [inv.get(int(t), -1) for t in targets]


@FAST
@given(args=walk_inputs)
def test_covering_samples_match_token_walk(args):
    sizes_list, seq_length, seed, _ = args
    sizes = np.array(sizes_list, dtype=np.int32)
    if int(sizes.sum()) < 2:
        sizes[0] += 2
    epochs = 2
    doc_idx = np.tile(np.arange(len(sizes), dtype=np.int32), epochs)
    np.random.RandomState(seed).shuffle(doc_idx)
    total = (epochs * int(sizes.sum()) - 1) // seq_length
    sample_idx = ref_sample_walk(sizes, doc_idx, seq_length, total)
    # oracle: expand every sample into (doc position, token) pairs
    expected = {}
    for j in range(total):
        (p0, o0), (p1, o1) = sample_idx[j], sample_idx[j + 1]
        k = 0
        for p in range(int(p0), int(p1) + 1):
            lo = int(o0) if p == p0 else 0
            hi = int(o1) + 1 if p == p1 else int(sizes[doc_idx[p]])
            if hi > lo:
                expected.setdefault(p, []).append((j, k, lo, hi - 1))
            k += max(hi - lo, 0)
    for p in range(len(doc_idx)):
        got = K.covering_samples(sample_idx, sizes, doc_idx, p)
        assert [tuple(r) for r in got.tolist()] == expected.get(p, [])
