"""One invariant suite for every registered order kind (``ORDER_KINDS``).

A new order kind is one module plus one registry line; it must also add a dataset maker to
``DATASET_FOR`` below (a test fails until it does), and then inherits every check here:

* every row is ``seq_length + 1`` tokens, and reading iterations one by one, as a range, or
  rank by rank gives the same rows (data-parallel ranks partition each batch, in order);
* the rows of iteration ``k`` are the samples ``k*B .. (k+1)*B - 1`` (the reader and the
  order's own ``sample_spans`` agree);
* coverage ("epochs x docs"): over the whole order, each token of the dataset is covered at
  most ``2E`` times (``E`` = epochs; consecutive samples may share a boundary token), the
  copies missing below ``E`` add up to at most ``seq_length`` (the unused tail of the last
  epoch), and the counts add up to ``samples x (seq_length + 1)``;
* sample starts are distinct per epoch (the samples are a permutation of the order's slots):
  no token position starts more than ``E`` samples.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pythia_data.batches import write_batches
from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.order import ORDER_KINDS, BatchReader, OrderParams, TrainingOrder

from .conftest import position_docs


def _docs_dataset(folder, sizes, params):
    return write_dataset(folder / "docs", position_docs(sizes, base=1000), dtype=np.int32)


def _preshuffled_dataset(folder, sizes, params):
    """The neox order's batches materialized as one sequence per row (what Pythia published)."""
    prefix = _docs_dataset(folder, sizes, params)
    with IndexedDataset(prefix) as ds:
        order = TrainingOrder.build(ds, params, write_cache=False)
        reader = BatchReader(ds, order)
        write_batches(reader, 0, reader.num_iterations - 1, folder / "pre.bin")
    return str(folder / "pre")


#: order kind -> maker(folder, document sizes, params) -> dataset prefix
DATASET_FOR = {
    "neox": _docs_dataset,
    "preshuffled": _preshuffled_dataset,
}

SIZES = [5, 17, 3, 40, 1, 9, 26, 12, 7, 2, 31, 4, 15, 8, 22, 6, 11, 3, 19, 10]


def test_every_order_kind_has_a_dataset_maker():
    assert set(DATASET_FOR) == set(ORDER_KINDS)


def _build(kind, folder, sizes, params):
    prefix = DATASET_FOR[kind](folder, sizes, params)
    ds = IndexedDataset(prefix)
    order = ORDER_KINDS[kind](ds, params, index_dir=folder / "index")
    return ds, order


def check_invariants(ds, order, params) -> None:
    reader = BatchReader(ds, order)
    L, B = params.seq_length, params.batch_size
    n_it = reader.num_iterations
    assert n_it >= 1
    whole = np.concatenate(list(reader.iter_batches(0, n_it - 1)))
    assert whole.shape == (n_it * B, L + 1)
    # one by one == range == chunks of any size
    for k in range(n_it):
        np.testing.assert_array_equal(reader[k], whole[k * B:(k + 1) * B])
    small = BatchReader(ds, order, chunk_tokens=3 * (L + 1))
    chunks = [c.tokens.copy() for c in small.iter_chunks(0, n_it - 1, allow_view=False)]
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    # ranks partition each batch, in order
    for world in {1, 2, 3, B}:
        if world > B:
            continue
        parts = [BatchReader(ds, order, rank=r, world_size=world) for r in range(world)]
        for k in range(n_it):
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]),
                                          whole[k * B:(k + 1) * B])
    # the reader's rows are the order's own sample spans
    samples = np.arange(n_it * B, dtype=np.int64)
    starts, lengths = order.sample_spans(ds, samples, 0, L + 1)
    flat = ds.gather(starts, lengths)
    np.testing.assert_array_equal(flat.reshape(-1, L + 1), whole)
    # coverage over every sample the order holds
    total = order.num_samples(ds)
    starts, lengths = order.sample_spans(ds, np.arange(total, dtype=np.int64), 0, L + 1)
    n_tok = ds.num_tokens
    diff = np.zeros(n_tok + 1, dtype=np.int64)
    np.add.at(diff, starts, 1)
    np.add.at(diff, starts + lengths, -1)
    cover = np.cumsum(diff)[:n_tok]
    epochs = int(getattr(order, "num_epochs", 1))
    assert int(cover.sum()) == total * (L + 1)
    assert cover.max() <= 2 * epochs
    # tokens short of `epochs` copies are the unused tail of the last epoch: at most L
    # positions of the token stream (several may be copies of one short document)
    assert int(np.maximum(epochs - cover, 0).sum()) <= L
    # sample starts: a token position starts at most `epochs` samples
    sample_starts = np.asarray(order.sample_spans(ds, np.arange(total, dtype=np.int64), 0, 1)[0])
    assert np.bincount(sample_starts, minlength=n_tok).max() <= epochs


@pytest.mark.parametrize("kind", sorted(ORDER_KINDS))
@pytest.mark.parametrize(("train_iters", "batch", "seq", "seed"),
                         [(3, 4, 8, 1234), (7, 3, 5, 7), (40, 5, 16, 99)])
def test_invariants(tmp_path, kind, train_iters, batch, seq, seed):
    params = OrderParams(train_iters=train_iters, batch_size=batch, seq_length=seq, seed=seed)
    ds, order = _build(kind, tmp_path, SIZES, params)
    with ds:
        check_invariants(ds, order, params)


@pytest.mark.parametrize("kind", sorted(ORDER_KINDS))
@settings(max_examples=int(os.environ.get("INVARIANT_EXAMPLES", "15")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 60), min_size=1, max_size=25),
       train_iters=st.integers(1, 12), batch=st.integers(1, 6), seq=st.integers(1, 24),
       seed=st.integers(0, 2**32 - 1))
def test_invariants_property(tmp_path_factory, kind, sizes, train_iters, batch, seq, seed):
    params = OrderParams(train_iters=train_iters, batch_size=batch, seq_length=seq, seed=seed)
    ds, order = _build(kind, tmp_path_factory.mktemp(kind), sizes, params)
    with ds:
        check_invariants(ds, order, params)


def test_the_suite_catches_a_broken_order(tmp_path):
    """A neox order whose shuffle_idx repeats a sample must fail the coverage checks."""
    params = OrderParams(train_iters=5, batch_size=4, seq_length=8, seed=1)
    ds, order = _build("neox", tmp_path, SIZES, params)
    with ds:
        bad = np.array(order.shuffle_idx)
        bad[1] = bad[0]
        order.shuffle_idx = bad
        with pytest.raises(AssertionError):
            check_invariants(ds, order, params)
