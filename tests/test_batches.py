"""BatchReader / batches(): iteration ranges, windows, rank slices, both orders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.batches import (
    BatchReader,
    Window,
    batches,
    detect_order,
    iteration_batch,
    write_batches,
)
from pythia_data.dataset import IndexedDataset
from pythia_data.errors import FormatError, UsageError
from tests.test_batches_support import (
    make_documents,
    neox_sample,
    reference_order,
    write_documents,
)

SIZES = [5, 17, 3, 40, 1, 9, 26, 12, 7, 2, 31, 4, 15, 8, 22, 6, 11, 3, 19, 10]


def preshuffled(tmp_path, n_seq, seq_length, dtype=np.int32, name="pre"):
    """Sequence s, token p = s * 10000 + p."""
    docs = [np.arange(seq_length + 1) + 10000 * s for s in range(n_seq)]
    return IndexedDataset(write_documents(tmp_path / name, docs, dtype)), docs


@pytest.fixture
def neox(tmp_path):
    docs = make_documents(SIZES)
    ds = IndexedDataset(write_documents(tmp_path / "docs", docs))
    order = reference_order(SIZES, train_iters=5, batch_size=4, seq_length=8, seed=1234)
    return ds, docs, order


def expected_neox(docs, order, samples, window=None):
    rows = [
        neox_sample(docs, order.doc_idx, order.sample_idx, order.shuffle_idx, s) for s in samples
    ]
    arr = np.stack(rows)
    if window:
        arr = arr[:, window[0] : window[0] + window[1]]
    return arr


# --------------------------------------------------------------------------- preshuffled


def test_preshuffled_iteration_is_sequences(tmp_path):
    ds, docs = preshuffled(tmp_path, 12, 6)
    reader = BatchReader(ds, None, batch_size=3, seq_length=6)
    assert reader.kind == "preshuffled"
    assert len(reader) == 4
    for k in range(4):
        np.testing.assert_array_equal(reader[k], np.stack(docs[3 * k : 3 * k + 3]))
    np.testing.assert_array_equal(reader[-1], reader[3])


def test_inclusive_range_and_single_iteration(tmp_path):
    ds, docs = preshuffled(tmp_path, 12, 6)
    reader = BatchReader(ds, None, batch_size=3, seq_length=6)
    got = list(reader.iter_batches(1, 1))
    assert len(got) == 1
    np.testing.assert_array_equal(got[0], np.stack(docs[3:6]))
    got = list(reader.iter_batches(1, 3))
    assert len(got) == 3
    np.testing.assert_array_equal(np.concatenate(got), np.stack(docs[3:12]))
    assert reader.shape(1, 3) == (9, 7)


@pytest.mark.parametrize(
    ("start", "end"), [(0, 4), (5, 5), (3, 2), (-1, 2), (0, -1), (1.5, 2), ("1", 2)]
)
def test_bad_ranges(tmp_path, start, end):
    ds, _ = preshuffled(tmp_path, 12, 6)
    reader = BatchReader(ds, None, batch_size=3, seq_length=6)
    with pytest.raises(UsageError):
        list(reader.iter_batches(start, end))
    with pytest.raises(UsageError):
        reader.shape(start, end)


def test_getitem_past_end(tmp_path):
    ds, _ = preshuffled(tmp_path, 12, 6)
    reader = BatchReader(ds, None, batch_size=3, seq_length=6)
    for k in (4, -5):
        with pytest.raises(UsageError):
            reader[k]


def test_preshuffled_window_and_rank(tmp_path):
    ds, docs = preshuffled(tmp_path, 20, 9)
    full = np.stack(docs)
    reader = BatchReader(ds, None, batch_size=5, seq_length=9, window="2:4", rank=1, world_size=2)
    # rank 1 of 2 in a batch of 5: [5//2, 10//2) = [2, 5)
    assert reader.rows_per_iteration == 3
    np.testing.assert_array_equal(reader[2], full[12:15, 2:6])
    rank0 = BatchReader(ds, None, batch_size=5, seq_length=9, rank=0, world_size=2)
    np.testing.assert_array_equal(rank0[2], full[10:12])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(window="10:1"),
        dict(window="0:0"),
        dict(window="-1:3"),
        dict(window="5:6"),
        dict(window="abc"),
        dict(window=(0, 11)),
        dict(rank=2, world_size=2),
        dict(rank=-1, world_size=2),
        dict(world_size=0),
        dict(world_size=6),
        dict(batch_size=0),
        dict(seq_length=0),
    ],
)
def test_bad_reader_options(tmp_path, kwargs):
    ds, _ = preshuffled(tmp_path, 20, 9)
    args = dict(batch_size=5, seq_length=9) | kwargs
    with pytest.raises(UsageError):
        BatchReader(ds, None, **args)


def test_window_parse():
    assert Window.parse("0:32") == Window(0, 32)
    assert Window.parse(" 32 : 16 ") == Window(32, 16)
    for bad in ("32", "a:b", "1:2:3", ""):
        with pytest.raises(UsageError):
            Window.parse(bad)


def test_not_preshuffled_is_format_error(tmp_path):
    ds = IndexedDataset(write_documents(tmp_path / "d", make_documents(SIZES)))
    reader = BatchReader(ds, None, batch_size=2, seq_length=4)
    with pytest.raises(FormatError):
        reader[0]


def test_detect_order(tmp_path):
    ds, _ = preshuffled(tmp_path, 4, 6)
    assert detect_order(ds, 6) == "preshuffled"
    assert detect_order(ds, 5) == "neox"
    docs = IndexedDataset(write_documents(tmp_path / "d", make_documents(SIZES)))
    assert detect_order(docs, 8) == "neox"


def test_chunks_cross_iterations(tmp_path):
    ds, docs = preshuffled(tmp_path, 30, 4)
    full = np.stack(docs)
    reader = BatchReader(
        ds, None, batch_size=6, seq_length=4, rank=1, world_size=3, chunk_tokens=15
    )
    assert reader.chunk_rows == 3
    chunks, parts = [], []
    for c in reader.iter_chunks(1, 4):  # the tokens buffer is reused: copy as we go
        chunks.append(c)
        parts.append(c.tokens.copy())
    got = np.concatenate(parts)
    want = np.concatenate([full[6 * k + 2 : 6 * k + 4] for k in range(1, 5)])
    np.testing.assert_array_equal(got, want)
    assert np.concatenate([c.iterations for c in chunks]).tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    assert np.concatenate([c.index_in_batch for c in chunks]).tolist() == [2, 3] * 4
    assert np.concatenate([c.samples for c in chunks]).tolist() == [
        6 * k + j for k in range(1, 5) for j in (2, 3)
    ]
    assert [c.row_start for c in chunks] == [0, 3, 6]


def test_batches_function_takes_a_path(tmp_path):
    ds, docs = preshuffled(tmp_path, 8, 3)
    got = list(batches(ds.prefix, None, 2, batch_size=2, seq_length=3))
    assert len(got) == 2
    np.testing.assert_array_equal(np.concatenate(got), np.stack(docs[4:8]))


# --------------------------------------------------------------------------- neox order


def test_neox_batches_match_getitem_concatenation(neox):
    ds, docs, order = neox
    reader = BatchReader(ds, order)
    assert (reader.batch_size, reader.seq_length, len(reader)) == (4, 8, 5)
    for k in range(5):
        np.testing.assert_array_equal(
            reader[k], expected_neox(docs, order, range(4 * k, 4 * k + 4))
        )
    np.testing.assert_array_equal(
        iteration_batch(ds, order, 3), expected_neox(docs, order, range(12, 16))
    )


def test_neox_range_ends_at_train_iters(neox):
    ds, _, order = neox
    reader = BatchReader(ds, order)
    assert len(order.shuffle_idx) > 5 * 4  # the order holds more samples than were trained
    with pytest.raises(UsageError):
        reader.shape(0, 5)


def test_neox_params_mismatch(neox):
    ds, _, order = neox
    with pytest.raises(UsageError):
        BatchReader(ds, order, batch_size=8)
    with pytest.raises(UsageError):
        BatchReader(ds, order, seq_length=16)


def test_neox_order_for_other_dataset_is_format_error(tmp_path, neox):
    _, _, order = neox
    other = IndexedDataset(write_documents(tmp_path / "o", make_documents([3, 4, 5])))
    with pytest.raises(FormatError):
        BatchReader(other, order)[0]


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 30), min_size=1, max_size=12).filter(lambda s: sum(s) > 3),
    seq_length=st.integers(1, 12),
    batch_size=st.integers(1, 6),
    train_iters=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_neox_property(tmp_path_factory, sizes, seq_length, batch_size, train_iters, seed, data):
    folder = tmp_path_factory.mktemp("neox")
    docs = make_documents(sizes)
    ds = IndexedDataset(write_documents(folder / "d", docs, np.int32))
    order = reference_order(sizes, train_iters, batch_size, seq_length, seed)
    w0 = data.draw(st.integers(0, seq_length))
    wl = data.draw(st.integers(1, seq_length + 1 - w0))
    world = data.draw(st.integers(1, batch_size))
    rank = data.draw(st.integers(0, world - 1))
    start = data.draw(st.integers(0, train_iters - 1))
    end = data.draw(st.integers(start, train_iters - 1))
    reader = BatchReader(ds, order, window=(w0, wl), rank=rank, world_size=world, chunk_tokens=7)
    lo, hi = rank * batch_size // world, (rank + 1) * batch_size // world
    want = [
        expected_neox(docs, order, [k * batch_size + j for j in range(lo, hi)], (w0, wl))
        for k in range(start, end + 1)
    ]
    got = list(reader.iter_batches(start, end))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    chunked = np.concatenate([c.tokens.copy() for c in reader.iter_chunks(start, end)])
    np.testing.assert_array_equal(chunked, np.concatenate(want))


# --------------------------------------------------------------------------- round trips


def test_materialize_neox_as_preshuffled_gives_identical_batches(tmp_path, neox):
    ds, _, order = neox
    reader = BatchReader(ds, order)
    summary = write_batches(reader, 0, len(reader) - 1, tmp_path / "pre.bin")
    assert summary["format"] == "bin" and summary["rows"] == 20
    pre = IndexedDataset(tmp_path / "pre")
    assert pre.dtype == ds.dtype and pre.sizes.tolist() == [9] * 20
    assert detect_order(pre, 8) == "preshuffled"
    again = BatchReader(pre, None, batch_size=4, seq_length=8)
    assert len(again) == len(reader)
    for k in range(len(reader)):
        np.testing.assert_array_equal(again[k], reader[k])
    # windows and rank slices agree too
    a = BatchReader(ds, order, window="3:4", rank=1, world_size=2)
    b = BatchReader(pre, None, batch_size=4, seq_length=8, window="3:4", rank=1, world_size=2)
    for k in range(len(reader)):
        np.testing.assert_array_equal(a[k], b[k])


def test_write_npy_and_jsonl(tmp_path, neox):
    ds, _, order = neox
    reader = BatchReader(ds, order, rank=1, world_size=2, chunk_tokens=10)
    write_batches(reader, 1, 3, tmp_path / "b.npy")
    arr = np.load(tmp_path / "b.npy")
    assert arr.dtype == ds.dtype and arr.shape == (6, 9)
    np.testing.assert_array_equal(arr, np.concatenate(list(reader.iter_batches(1, 3))))
    write_batches(reader, 1, 3, tmp_path / "b.jsonl")
    objs = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [(o["iteration"], o["index_in_batch"], o["sample"]) for o in objs] == [
        (k, j, 4 * k + j) for k in (1, 2, 3) for j in (2, 3)
    ]
    assert [o["tokens"] for o in objs] == arr.tolist()
    write_batches(reader, 1, 3, tmp_path / "b.raw")
    assert (tmp_path / "b.raw").read_bytes() == arr.astype("<u2").tobytes()
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []


def test_training_order_integration(tmp_path):
    order_mod = pytest.importorskip("pythia_data.order")
    docs = make_documents(SIZES)
    ds = IndexedDataset(write_documents(tmp_path / "docs", docs))
    params = order_mod.OrderParams(train_iters=5, batch_size=4, seq_length=8, seed=1234)
    order = order_mod.TrainingOrder.build(ds, params, index_dir=tmp_path, write_cache=False)
    ref = reference_order(SIZES, train_iters=5, batch_size=4, seq_length=8, seed=1234)
    reader = BatchReader(ds, order)
    for k in range(len(reader)):
        np.testing.assert_array_equal(reader[k], expected_neox(docs, ref, range(4 * k, 4 * k + 4)))


def test_training_order_getitem_and_batches(tmp_path):
    """``order[k]`` and ``order.batches()`` read the dataset the order was built from."""
    from pythia_data.order import OrderParams, TrainingOrder

    docs = make_documents(SIZES)
    prefix = write_documents(tmp_path / "docs", docs)
    params = OrderParams(train_iters=5, batch_size=4, seq_length=8, seed=1234)
    ref = reference_order(SIZES, train_iters=5, batch_size=4, seq_length=8, seed=1234)
    (tmp_path / "idx").mkdir()
    by_path = TrainingOrder.build(prefix, params, index_dir=tmp_path / "idx")
    assert by_path.num_iterations == 5
    got = list(by_path.batches(1, 3))
    for k in range(5):
        want = expected_neox(docs, ref, range(4 * k, 4 * k + 4))
        np.testing.assert_array_equal(by_path[k], want)
        if 1 <= k <= 3:
            np.testing.assert_array_equal(got[k - 1], want)
    np.testing.assert_array_equal(by_path[-1], by_path[4])
    every = list(by_path.batches())  # default end: the last iteration
    assert len(every) == 5
    np.testing.assert_array_equal(every[1], got[0])
    with pytest.raises(UsageError):
        by_path[5]
    bare = TrainingOrder.build(np.asarray(SIZES), params, write_cache=False)
    with pytest.raises(UsageError, match="attach"):
        bare[0]
    np.testing.assert_array_equal(bare.attach(prefix)[2], by_path[2])


# --------------------------------------------------------------------------- file copies


def _shard(prefix, shard_bytes: int) -> None:
    """Split PREFIX.bin into PREFIX-0000i-of-0000K.bin byte slices (idx kept)."""
    from pythia_data.shards import shard_name

    data = open(f"{prefix}.bin", "rb").read()
    pieces = [data[i : i + shard_bytes] for i in range(0, len(data), shard_bytes)]
    folder, base = os.path.split(str(prefix))
    for i, piece in enumerate(pieces):
        with open(os.path.join(folder, shard_name(base, i, len(pieces) - 1)), "wb") as f:
            f.write(piece)
    os.unlink(f"{prefix}.bin")


def test_contiguous_bytes(tmp_path):
    ds, _ = preshuffled(tmp_path, 12, 6)
    reader = BatchReader(ds, None, batch_size=3, seq_length=6)
    assert reader.contiguous_bytes(1, 2) == (3 * 7 * 4, 6 * 7 * 4)
    assert (
        BatchReader(ds, None, batch_size=3, seq_length=6, window="0:3").contiguous_bytes(1, 2)
        is None
    )
    assert (
        BatchReader(ds, None, batch_size=3, seq_length=6, world_size=3).contiguous_bytes(1, 2)
        is None
    )


@pytest.mark.parametrize("fmt", ["npy", "raw"])
def test_sharded_preshuffled_copies_across_shards(tmp_path, fmt):
    ds, docs = preshuffled(tmp_path, 24, 6, np.uint16)
    full = np.stack(docs).astype(np.uint16)
    prefix = ds.prefix
    ds.close()
    _shard(prefix, 50)  # shard edges fall inside sequences
    sharded = IndexedDataset(prefix)
    assert sharded.is_sharded
    reader = BatchReader(sharded, None, batch_size=4, seq_length=6)
    out = tmp_path / f"s.{fmt}"
    write_batches(reader, 1, 4, out)
    want = full[4:20]
    if fmt == "npy":
        np.testing.assert_array_equal(np.load(out), want)
    else:
        assert out.read_bytes() == want.astype("<u2").tobytes()
    # the chunked path (a window) reads through the shards too
    windowed = BatchReader(sharded, None, batch_size=4, seq_length=6, window="2:5")
    write_batches(windowed, 1, 4, tmp_path / "w.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), want[:, 2:7])


def test_copy_path_to_stream_matches(tmp_path):
    import io

    ds, docs = preshuffled(tmp_path, 12, 6, np.uint16)
    reader = BatchReader(ds, None, batch_size=3, seq_length=6)
    buf = io.BytesIO()  # no fileno: the pread fallback
    write_batches(reader, 0, 3, "-", "raw", stream=buf)
    assert buf.getvalue() == np.stack(docs).astype("<u2").tobytes()
