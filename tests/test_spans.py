"""sample_spans (numba kernel) against a plain-Python oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.errors import FormatError, UsageError
from pythia_data.kernels.spans import sample_spans
from tests.test_batches_support import neox_reference


def oracle_positions(pos0, off0, pos1, off1, doc_idx, token_starts, sizes, window):
    """Global token positions of one sample, token by token, then windowed."""
    positions = []
    for p in range(pos0, pos1 + 1):
        doc = int(doc_idx[p])
        a = off0 if p == pos0 else 0
        b = off1 + 1 if p == pos1 else int(sizes[doc])
        positions.extend(int(token_starts[doc]) + t for t in range(a, b))
    start, length = window
    return positions[start : start + length]


def expand(starts, lengths):
    return [int(s) + t for s, n in zip(starts, lengths, strict=True) for t in range(int(n))]


def positions_of(sample_idx, shuffle_idx, ids):
    j = shuffle_idx[ids].astype(np.int64)
    return sample_idx[j, 0], sample_idx[j, 1], sample_idx[j + 1, 0], sample_idx[j + 1, 1]


@st.composite
def problems(draw):
    sizes = draw(st.lists(st.integers(0, 12), min_size=1, max_size=9))
    if sum(sizes) < 2:
        sizes.append(draw(st.integers(2, 12)))
    seq_length = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**31 - 1))
    num_samples = draw(st.integers(1, 12))
    doc_idx, sample_idx, shuffle_idx, _ = neox_reference(sizes, seq_length, seed, num_samples)
    n = len(shuffle_idx)
    ids = np.array(draw(st.lists(st.integers(0, n - 1), max_size=10)), dtype=np.int64)
    sample_len = seq_length + 1
    w0 = draw(st.integers(0, sample_len - 1))
    wl = draw(st.integers(1, sample_len - w0))
    base = draw(st.integers(0, 1000))
    gaps = draw(st.lists(st.integers(0, 3), min_size=len(sizes), max_size=len(sizes)))
    token_starts = base + np.cumsum([0] + [s + g for s, g in zip(sizes, gaps, strict=True)])[:-1]
    big = draw(st.booleans())
    itemsize = draw(st.sampled_from([1, 2, 4]))
    return dict(
        sizes=np.asarray(sizes, dtype=np.int64 if big else np.int32),
        doc_idx=doc_idx.astype(np.int64) if big else doc_idx,
        sample_idx=sample_idx,
        shuffle_idx=shuffle_idx,
        ids=ids,
        sample_len=sample_len,
        window=(w0, wl),
        token_starts=token_starts.astype(np.int64),
        itemsize=itemsize,
    )


@settings(max_examples=50, deadline=None)
@given(problems())
def test_spans_match_oracle(pb):
    cols = positions_of(pb["sample_idx"], pb["shuffle_idx"], pb["ids"])
    starts, lengths = sample_spans(
        *cols,
        pb["doc_idx"],
        pb["token_starts"] * pb["itemsize"],
        pb["sizes"],
        pb["sample_len"],
        *pb["window"],
        itemsize=pb["itemsize"],
    )
    assert starts.dtype == np.int64 and lengths.dtype == np.int64
    assert (lengths > 0).all()
    expected = []
    for k in range(len(pb["ids"])):
        row = oracle_positions(
            *(int(c[k]) for c in cols),
            pb["doc_idx"],
            pb["token_starts"],
            pb["sizes"],
            pb["window"],
        )
        assert len(row) == pb["window"][1]
        expected.extend(row)
    assert expand(starts, lengths) == expected


def test_known_sample_spans():
    # sizes [4, 3, 5], doc order 2, 0, 1: stream starts 0, 4, 7
    sizes = np.array([4, 3, 5], dtype=np.int32)
    token_starts = np.array([0, 4, 7], dtype=np.int64)
    doc_idx = np.array([2, 0, 1], dtype=np.int32)
    # one sample of 7 tokens: doc 2 from offset 3 (2 tokens), all of doc 0, doc 1 up to 0
    starts, lengths = sample_spans([0], [3], [2], [0], doc_idx, token_starts, sizes, 7)
    assert starts.tolist() == [10, 0, 4]
    assert lengths.tolist() == [2, 4, 1]
    starts, lengths = sample_spans([0], [3], [2], [0], doc_idx, token_starts, sizes, 7, 1, 5)
    assert starts.tolist() == [11, 0]
    assert lengths.tolist() == [1, 4]


def test_empty_chunk():
    starts, lengths = sample_spans(
        [], [], [], [], np.zeros(1, np.int32), np.zeros(1, np.int64), np.ones(1, np.int32), 1
    )
    assert starts.size == 0 and lengths.size == 0


@pytest.mark.parametrize(
    "cols",
    [
        ([0], [0], [5], [0]),  # position past doc_idx
        ([1], [0], [0], [0]),  # end before start
        ([0], [3], [0], [9]),  # offset past its document
        ([0], [0], [0], [2]),  # 3 tokens, not 7
    ],
)
def test_inconsistent_samples_raise_format_error(cols):
    sizes = np.array([4, 3, 5], dtype=np.int32)
    token_starts = np.array([0, 4, 7], dtype=np.int64)
    doc_idx = np.array([2, 0, 1], dtype=np.int32)
    with pytest.raises(FormatError):
        sample_spans(*cols, doc_idx, token_starts, sizes, 7)


def test_document_outside_dataset_raises():
    with pytest.raises(FormatError):
        sample_spans(
            [0],
            [0],
            [0],
            [0],
            np.array([3], np.int32),
            np.zeros(1, np.int64),
            np.ones(1, np.int32),
            1,
        )


@pytest.mark.parametrize("window", [(7, 1), (0, 0), (-1, 2), (3, 5)])
def test_window_outside_sample_is_usage_error(window):
    with pytest.raises(UsageError):
        sample_spans(
            [0],
            [0],
            [0],
            [6],
            np.zeros(1, np.int32),
            np.zeros(1, np.int64),
            np.array([7], np.int32),
            7,
            *window,
        )


def test_wrong_dtypes_are_usage_errors():
    ok = dict(
        doc_idx=np.zeros(1, np.int32),
        token_starts=np.zeros(1, np.int64),
        sizes=np.array([7], np.int32),
    )
    with pytest.raises(UsageError):
        sample_spans(
            [0], [0], [0], [6], ok["doc_idx"].astype(np.float32), ok["token_starts"], ok["sizes"], 7
        )
    with pytest.raises(UsageError):
        sample_spans(
            [0], [0], [0], [6], ok["doc_idx"], ok["token_starts"].astype(np.int32), ok["sizes"], 7
        )
    with pytest.raises(UsageError):
        sample_spans([[0]], [0], [0], [6], ok["doc_idx"], ok["token_starts"], ok["sizes"], 7)
    with pytest.raises(UsageError):
        sample_spans([0, 0], [0], [0], [6], ok["doc_idx"], ok["token_starts"], ok["sizes"], 7)
