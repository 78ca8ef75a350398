"""MMIDIDX format: round trips, byte compatibility with GPT-NeoX's layout, bad input."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.dataset import (
    DatasetBuilder,
    IndexedDataset,
    merge_datasets,
    write_dataset,
)
from pythia_data.errors import FormatError, InputError, OutputError, UsageError
from pythia_data.format.mmidx import (
    DTYPE_CODES,
    best_dtype,
    expected_bin_bytes,
    read_index_header,
)

from .conftest import position_docs


def neox_layout(dtype, items, doc_idx) -> tuple[bytes, bytes]:
    """Oracle: the bytes GPT-NeoX's MMapIndexedDatasetBuilder writes, element by element."""
    dtype = np.dtype(dtype)
    code = {v: k for k, v in DTYPE_CODES.items()}[dtype]
    data = b"".join(np.asarray(x, dtype=dtype).tobytes() for x in items)
    idx = b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", code)
    idx += struct.pack("<Q", len(items)) + struct.pack("<Q", len(doc_idx))
    idx += b"".join(struct.pack("<i", len(x)) for x in items)
    address = 0
    for x in items:
        idx += struct.pack("<q", address)
        address += len(x) * dtype.itemsize
    idx += b"".join(struct.pack("<q", d) for d in doc_idx)
    return data, idx


@pytest.mark.parametrize("dtype", list(DTYPE_CODES.values()))
def test_round_trip_every_dtype(tmp_path, dtype):
    rng = np.random.default_rng(0)
    docs = [(rng.integers(0, 100, size=n)).astype(dtype) for n in [0, 3, 1, 50, 7]]
    prefix = write_dataset(tmp_path / "d", docs, dtype=dtype)
    with IndexedDataset(prefix + ".idx") as ds:
        assert ds.dtype == dtype
        assert len(ds) == 5 and ds.num_documents == 5
        for i, doc in enumerate(docs):
            np.testing.assert_array_equal(ds[i], doc)
        assert ds.num_tokens == sum(len(d) for d in docs)
        assert ds.bin_bytes == ds.num_tokens * np.dtype(dtype).itemsize


def test_byte_identical_to_neox_builder(tmp_path):
    items = [np.arange(n, dtype=np.uint16) + 7 * n for n in [4, 1, 9, 0, 3, 12]]
    # two documents of several sequences, then single-sequence documents
    with DatasetBuilder(tmp_path / "x", np.uint16) as b:
        b.add_item(items[0])
        b.add_item(items[1])
        b.end_document()
        b.add_item(items[2])
        b.add_item(items[3])
        b.end_document()
        b.add_document(items[4])
        b.add_document(items[5])
    data, idx = neox_layout(np.uint16, items, [0, 2, 4, 5, 6])
    assert (tmp_path / "x.bin").read_bytes() == data
    assert (tmp_path / "x.idx").read_bytes() == idx
    with IndexedDataset(tmp_path / "x") as ds:
        assert ds.doc_idx.tolist() == [0, 2, 4, 5, 6]
        assert ds.num_documents == 4


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=40),
    dtype=st.sampled_from([np.uint16, np.int32, np.int64, np.uint8]),
)
def test_round_trip_property(tmp_path_factory, sizes, dtype):
    tmp = tmp_path_factory.mktemp("rt")
    docs = [np.arange(n) % 200 for n in sizes]
    write_dataset(tmp / "p", docs, dtype=dtype)
    data, idx = neox_layout(dtype, docs, list(range(len(docs) + 1)))
    assert (tmp / "p.bin").read_bytes() == data
    assert (tmp / "p.idx").read_bytes() == idx
    with IndexedDataset(tmp / "p.bin") as ds:
        flat = np.concatenate([np.asarray(d, dtype=dtype) for d in docs])
        np.testing.assert_array_equal(ds.read_tokens(0, ds.num_tokens), flat)
        a, b = 0, len(docs)
        parts = ds[a:b]
        assert [len(p) for p in parts] == sizes
        assert expected_bin_bytes(tmp / "p.idx") == ds.bin_bytes


def test_get_slice_and_gather(small_dataset):
    prefix, sizes = small_dataset
    with IndexedDataset(prefix) as ds:
        assert ds.get(3, 5, 4).tolist() == [305, 306, 307, 308]
        assert ds.get(-1).tolist() == list(range(1900, 1910))
        assert [x.tolist() for x in ds[1:3]] == [list(range(100, 117)), [200, 201, 202]]
        starts = ds.token_starts[[3, 0, 10]] + np.array([38, 0, 30])
        out = ds.gather(starts, np.array([4, 2, 1]))
        # a span may run from one sequence into the next
        assert out.tolist() == [338, 339, 400, 500, 0, 1, 1030]
        with pytest.raises(IndexError):
            ds.get(2, 2, 5)
        with pytest.raises(IndexError):
            ds[len(sizes)]


def test_num_tokens_is_int64_safe(tmp_path):
    # Pythia's own reader summed sizes in int32 (pythia #193): use counts beyond 2**31.
    big = tmp_path / "big"
    sizes = np.array([2**30, 2**30, 2**30], dtype=np.int32)
    with open(str(big) + ".idx", "wb") as f:
        from pythia_data.format.mmidx import write_index as _write_index

        _write_index(f, np.dtype(np.uint8), sizes, np.arange(4, dtype=np.int64))
    with open(str(big) + ".bin", "wb") as f:
        f.truncate(3 * 2**30)  # sparse file
    with IndexedDataset(big) as ds:
        assert ds.num_tokens == 3 * 2**30
        assert ds.stats()["num_tokens"] == 3 * 2**30
        assert int(ds.token_starts[-1]) == 2**31
        assert ds.get(2, 2**30 - 3).tolist() == [0, 0, 0]


def test_builder_is_atomic(tmp_path):
    with pytest.raises(RuntimeError):
        with DatasetBuilder(tmp_path / "a", np.uint16) as b:
            b.add_document([1, 2, 3])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    b = DatasetBuilder(tmp_path / "b", np.uint16)
    b.add_document([1, 2])
    assert not (tmp_path / "b.bin").exists() and not (tmp_path / "b.idx").exists()
    b.finalize()
    assert (tmp_path / "b.bin").exists() and (tmp_path / "b.idx").exists()
    assert not list(tmp_path.glob("*.partial"))


def test_builder_rejects_bad_tokens(tmp_path):
    with pytest.raises(UsageError):
        with DatasetBuilder(tmp_path / "a", np.uint16) as b:
            b.add_document([1, 70000])
    with pytest.raises(UsageError):
        with DatasetBuilder(tmp_path / "a", np.uint16) as b:
            b.add_document(np.zeros((2, 2)))
    (tmp_path / "missing").write_text("a file where a folder should be")
    with pytest.raises(OutputError):
        DatasetBuilder(tmp_path / "missing" / "a", np.uint16)
    assert not list(tmp_path.glob("a*"))


def test_best_dtype_like_neox():
    assert best_dtype(50277) == np.uint16
    assert best_dtype(65499) == np.uint16
    assert best_dtype(65500) == np.int32
    with pytest.raises(UsageError):
        best_dtype(-1)


def test_merge_rebases(tmp_path):
    a = write_dataset(tmp_path / "a", position_docs([3, 4]), np.uint16)
    with DatasetBuilder(tmp_path / "b", np.uint16) as b:
        b.add_item([7, 8])
        b.add_item([9])
        b.end_document()
        b.add_document([10, 11, 12])
    m = merge_datasets(tmp_path / "m", [a, tmp_path / "b", a])
    with m:
        assert m.doc_idx.tolist() == [0, 1, 2, 4, 5, 6, 7]
        assert m.sizes.tolist() == [3, 4, 2, 1, 3, 3, 4]
        assert m.pointers.tolist() == [0, 6, 14, 18, 20, 26, 32]
        assert m.read_tokens(0, m.num_tokens).tolist() == (
            [0, 1, 2, 100, 101, 102, 103, 7, 8, 9, 10, 11, 12, 0, 1, 2, 100, 101, 102, 103]
        )
    c = write_dataset(tmp_path / "c", [[1]], np.int32)
    with pytest.raises(UsageError):
        merge_datasets(tmp_path / "n", [a, c])
    assert not list(tmp_path.glob("n*"))


# ---------------------------------------------------------------- corrupt files


def _corrupt_idx(tmp_path, edit):
    prefix = write_dataset(tmp_path / "c", position_docs([4, 5, 6]), np.uint16)
    idx = bytearray(open(prefix + ".idx", "rb").read())
    idx = edit(idx)
    open(prefix + ".idx", "wb").write(bytes(idx))
    return prefix


def _setitem(offset, fmt, value):
    def edit(idx):
        struct.pack_into(fmt, idx, offset, value)
        return idx

    return edit


SIZES_AT, POINTERS_AT = 34, 34 + 12
DOC_IDX_AT = 34 + 12 + 24

CORRUPTIONS = {
    "wrong magic": (lambda idx: b"XXIDIDX\x00\x00" + idx[9:], "wrong magic"),
    "version": (_setitem(9, "<Q", 2), "unsupported index version 2"),
    "dtype code": (_setitem(17, "<B", 9), "unknown dtype code 9"),
    "truncated": (lambda idx: idx[:-5], "truncated"),
    "huge count": (_setitem(18, "<Q", 2**60), "truncated"),
    "header only": (lambda idx: idx[:20], "truncated"),
    "negative size": (_setitem(SIZES_AT + 4, "<i", -1), "negative size"),
    "pointer past end": (_setitem(POINTERS_AT + 8, "<q", 10_000), "past the end"),
    "bin size": (_setitem(SIZES_AT + 8, "<i", 7), "implies"),
    "doc_idx order": (_setitem(DOC_IDX_AT + 8, "<q", 3), "doc_idx is not monotonic"),
    "doc_idx ends": (_setitem(DOC_IDX_AT + 24, "<q", 2), "doc_idx must start at 0"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_index_is_a_format_error(tmp_path, case):
    edit, message = CORRUPTIONS[case]
    prefix = _corrupt_idx(tmp_path, edit)
    with pytest.raises(FormatError, match=message):
        IndexedDataset(prefix)


def test_missing_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        IndexedDataset(tmp_path / "nothing")
    prefix = write_dataset(tmp_path / "x", [[1, 2]], np.uint16)
    (tmp_path / "x.bin").unlink()
    with pytest.raises(InputError, match=r"missing data file .*x\.bin"):
        IndexedDataset(prefix)
    with pytest.raises(InputError, match="missing index"):
        read_index_header(tmp_path / "none.idx")


def test_bin_shorter_than_index(tmp_path):
    prefix = write_dataset(tmp_path / "x", [[1, 2, 3], [4]], np.uint16)
    with open(prefix + ".bin", "r+b") as f:
        f.truncate(4)
    with pytest.raises(FormatError, match="has 4 bytes but the index implies 8"):
        IndexedDataset(prefix)
