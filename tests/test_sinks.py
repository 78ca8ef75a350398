"""Output sinks: npy (streamed, byte-identical to np.save), bin, jsonl, raw; atomicity."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.batches.sinks import (
    BinSink,
    JsonlSink,
    NpySink,
    RawSink,
    infer_format,
    open_sink,
)
from pythia_data.dataset import IndexedDataset
from pythia_data.errors import OutputError, UsageError
from pythia_data.format.npy import npy_header


def rows(n, width, dtype=np.uint16):
    return (np.arange(n * width, dtype=np.int64) % 60000).astype(dtype).reshape(n, width)


def write_chunks(sink, arr, chunk):
    with sink:
        for lo in range(0, arr.shape[0], chunk):
            sink.write(arr[lo : lo + chunk])


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(0, 40),
    width=st.integers(1, 70),
    chunk=st.integers(1, 17),
    dtype=st.sampled_from([np.uint16, np.int32, np.uint8, np.int64]),
)
def test_npy_stream_is_byte_identical_to_np_save(tmp_path_factory, n, width, chunk, dtype):
    folder = tmp_path_factory.mktemp("npy")
    arr = rows(n, width, dtype)
    write_chunks(NpySink(folder / "out.npy", dtype, arr.shape), arr, chunk)
    np.save(folder / "ref.npy", arr)
    assert (folder / "out.npy").read_bytes() == (folder / "ref.npy").read_bytes()
    assert not (folder / "out.npy.partial").exists()


def test_npy_header_matches_numpy():
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 2049), dtype=np.uint16))
    header = npy_header(np.uint16, (3, 2049))
    assert buf.getvalue()[: len(header)] == header
    assert len(header) % 64 == 0


def test_npy_to_stream():
    arr = rows(5, 9)
    buf = io.BytesIO()
    write_chunks(NpySink("-", arr.dtype, arr.shape, stream=buf), arr, 2)
    np.testing.assert_array_equal(np.load(io.BytesIO(buf.getvalue())), arr)


def test_npy_short_write_removes_file(tmp_path):
    sink = NpySink(tmp_path / "x.npy", np.uint16, (4, 3))
    sink.write(rows(3, 3))
    with pytest.raises(OutputError):
        sink.close()
    assert list(tmp_path.iterdir()) == []


def test_npy_rejects_extra_rows_and_wrong_width(tmp_path):
    with pytest.raises(UsageError), NpySink(tmp_path / "x.npy", np.uint16, (2, 3)) as sink:
        sink.write(rows(3, 3))
    with pytest.raises(UsageError), NpySink(tmp_path / "y.npy", np.uint16, (2, 3)) as sink:
        sink.write(rows(2, 4))
    with pytest.raises(UsageError), NpySink(tmp_path / "z.npy", np.uint16, (2, 3)) as sink:
        sink.write(rows(2, 3, np.int32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["npy", "raw", "jsonl", "bin"])
def test_exception_leaves_no_output(tmp_path, fmt):
    target = tmp_path / f"out.{fmt}"
    with pytest.raises(RuntimeError), open_sink(fmt, target, dtype=np.uint16, shape=(4, 3)) as s:
        s.write(rows(2, 3), {"sample": np.arange(2)})
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_partial_file_until_close(tmp_path):
    sink = RawSink(tmp_path / "out.raw")
    sink.write(rows(2, 3))
    # the partial file, and the lock file guarding it while it is written
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.raw.pythia-lock",
                                                          "out.raw.partial"]
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["out.raw"]


def test_raw_is_little_endian_back_to_back(tmp_path):
    arr = rows(3, 5)
    write_chunks(RawSink(tmp_path / "a.raw"), arr, 2)
    assert (tmp_path / "a.raw").read_bytes() == arr.astype("<u2").tobytes()
    big = arr.astype(">u2")
    buf = io.BytesIO()
    with RawSink("-", stream=buf) as sink:
        sink.write(big)
    assert buf.getvalue() == arr.astype("<u2").tobytes()


def test_jsonl_objects(tmp_path):
    arr = rows(4, 3)
    cols = {"iteration": np.array([7, 7, 8, 8]), "index_in_batch": np.array([0, 1, 0, 1])}
    with JsonlSink(tmp_path / "x.jsonl") as sink:
        sink.write(arr[:3], {k: v[:3] for k, v in cols.items()})
        sink.write(arr[3:], {k: v[3:] for k, v in cols.items()})
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    objs = [json.loads(line) for line in lines]
    assert [list(o) for o in objs] == [["iteration", "index_in_batch", "tokens"]] * 4
    assert [o["iteration"] for o in objs] == [7, 7, 8, 8]
    assert [o["index_in_batch"] for o in objs] == [0, 1, 0, 1]
    assert [o["tokens"] for o in objs] == arr.tolist()


def test_jsonl_column_length_mismatch(tmp_path):
    with pytest.raises(UsageError), JsonlSink(tmp_path / "x.jsonl") as sink:
        sink.write(rows(2, 3), {"sample": np.arange(3)})


def test_bin_round_trip(tmp_path):
    arr = rows(7, 11)
    write_chunks(BinSink(tmp_path / "pre.bin", np.uint16), arr, 3)
    with IndexedDataset(tmp_path / "pre") as ds:
        assert len(ds) == 7
        assert ds.sizes.tolist() == [11] * 7
        assert ds.doc_idx.tolist() == list(range(8))
        np.testing.assert_array_equal(np.stack(ds[0:7]), arr)


def test_bin_refuses_stdout_and_other_dtypes(tmp_path):
    with pytest.raises(UsageError):
        BinSink("-", np.uint16)
    with pytest.raises(UsageError), BinSink(tmp_path / "p", np.uint16) as sink:
        sink.write(rows(2, 2, np.int32))
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_created(tmp_path):
    with RawSink(tmp_path / "nope" / "deeper" / "x.raw") as sink:
        sink.write(rows(2, 3))
    assert (tmp_path / "nope" / "deeper" / "x.raw").stat().st_size == 12
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="file"):
        RawSink(tmp_path / "file" / "x.raw")


@pytest.mark.parametrize(
    ("target", "explicit", "fmt"),
    [
        ("-", None, "raw"),
        ("-", "npy", "npy"),
        ("a.npy", None, "npy"),
        ("a.NPY", None, "npy"),
        ("a.bin", None, "bin"),
        ("a.idx", None, "bin"),
        ("a.jsonl", None, "jsonl"),
        ("a.tokens", None, "raw"),
        ("a.npy", "raw", "raw"),
    ],
)
def test_infer_format(target, explicit, fmt):
    assert infer_format(target, explicit) == fmt


def test_unknown_format():
    with pytest.raises(UsageError):
        infer_format("a.npy", "csv")


@pytest.mark.parametrize("to_stream", [False, True])
def test_copy_from_file(tmp_path, to_stream):
    arr = rows(6, 5)
    src = tmp_path / "src.bin"
    src.write_bytes(b"junk" + arr.astype("<u2").tobytes())
    buf = io.BytesIO()
    target = "-" if to_stream else tmp_path / "c.npy"
    with open(src, "rb") as f, NpySink(target, np.uint16, arr.shape, stream=buf) as sink:
        sink.write(arr[:1])
        progress = list(sink.copy_from(f.fileno(), 4 + 10, 4 * 5 * 2))  # rows 1..4
        assert progress[-1] == 40
        sink.write(arr[5:])
    data = buf.getvalue() if to_stream else (tmp_path / "c.npy").read_bytes()
    np.testing.assert_array_equal(np.load(io.BytesIO(data)), arr)


def test_copy_from_short_input_is_output_error(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"\0" * 10)
    with pytest.raises(OutputError), open(src, "rb") as f:
        with RawSink(tmp_path / "r.raw") as sink:
            list(sink.copy_from(f.fileno(), 0, 20))
    assert not (tmp_path / "r.raw").exists() and not (tmp_path / "r.raw.partial").exists()


def test_npy_copy_more_than_announced(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"\0" * 100)
    with pytest.raises(UsageError), open(src, "rb") as f:
        with NpySink(tmp_path / "n.npy", np.uint16, (1, 5)) as sink:
            list(sink.copy_from(f.fileno(), 0, 12))
