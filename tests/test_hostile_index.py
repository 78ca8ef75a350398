"""Issue 8, edges 12 and 13: hostile index files and Megatron-LM's float dtype codes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.errors import FormatError, UsageError
from pythia_data.format.header import expected_bin_bytes
from pythia_data.kernels import index_check
from pythia_data.kernels.gather import gather_bytes, make_sources
from pythia_data.kernels.spans import sample_spans

from .conftest import subprocess_env

HERE = Path(__file__).resolve().parent
HEADER = 34


def _poke_pointer(prefix: str, j: int, value: int) -> None:
    with open(prefix + ".idx", "r+b") as f:
        f.seek(18)
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(HEADER + 4 * n + 8 * j)
        f.write(struct.pack("<Q", value % 2**64))


@pytest.fixture
def ten_docs(tmp_path):
    docs = [np.arange(1 + k, 5 + k, dtype=np.uint16) * 256 for k in range(10)]
    return write_dataset(tmp_path / "d", docs, dtype=np.uint16), docs


def test_pointer_near_int64_max_is_refused(ten_docs):
    prefix, _ = ten_docs
    _poke_pointer(prefix, 5, 2**63 - 2)  # p + s * itemsize wraps around in int64
    with pytest.raises(FormatError, match="sequence 5 points past the end"):
        IndexedDataset(prefix)


def test_misaligned_pointer_is_refused(ten_docs):
    prefix, _ = ten_docs
    _poke_pointer(prefix, 0, 1)  # ds[0] and gather used to disagree (one rounds down)
    with pytest.raises(FormatError, match="not a multiple of the 2-byte item size"):
        IndexedDataset(prefix)


def test_gather_far_past_the_end_is_an_error(ten_docs):
    prefix, _ = ten_docs
    with IndexedDataset(prefix) as ds:
        for start in (2**62 - 1, 2**63 - 1, -1):
            with pytest.raises(UsageError):
                ds.gather([start], [1])
        with pytest.raises(UsageError):
            ds.gather([0], [2**62])
        np.testing.assert_array_equal(ds.gather([4], [4]), ds[1])


def test_gather_bytes_checks_without_wrapping():
    src = np.arange(16, dtype=np.uint8)
    sources = make_sources([src])
    bounds = np.array([0, 16], np.int64)
    dst = np.zeros(8, np.uint8)
    with pytest.raises(UsageError, match="outside the data"):
        gather_bytes(sources, bounds, np.array([2**63 - 4]), np.array([8]), dst)
    with pytest.raises(UsageError, match="destination"):
        gather_bytes(sources, bounds, np.array([0]), np.array([4]), dst,
                     np.array([2**63 - 2]))
    with pytest.raises(UsageError, match="bounds"):
        gather_bytes(sources, np.array([0, 2**40], np.int64), np.array([0]), np.array([8]), dst)


def test_non_canonical_layout_is_reported_and_read_one_way(tmp_path):
    # three documents of two uint16 tokens stored out of order: pointers 4, 0, 8
    data = np.array([10, 11, 20, 21, 30, 31], np.uint16).tobytes()
    idx = b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 8, 3, 4)
    idx += struct.pack("<3i", 2, 2, 2) + struct.pack("<3q", 4, 0, 8) + struct.pack("<4q", 0, 1, 2, 3)
    (tmp_path / "nc.bin").write_bytes(data)
    (tmp_path / "nc.idx").write_bytes(idx)
    with IndexedDataset(tmp_path / "nc") as ds:
        assert ds.is_canonical is False
        assert ds.stats()["layout"] == "non-canonical"
        expect = [[20, 21], [10, 11], [30, 31]]
        assert [x.tolist() for x in ds[:]] == expect
        assert [ds[i].tolist() for i in range(3)] == expect
        for i in range(3):  # batches read through token_starts, as ds[i] does
            assert ds.gather([ds.token_starts[i]], [ds.sizes[i]]).tolist() == expect[i]


def test_canonical_layout_is_reported(ten_docs):
    prefix, _ = ten_docs
    with IndexedDataset(prefix) as ds:
        assert ds.is_canonical is True and ds.stats()["layout"] == "canonical"


def test_expected_bin_bytes_refuses_negative_values(ten_docs):
    prefix, _ = ten_docs
    _poke_pointer(prefix, 9, -(2**62))
    with pytest.raises(FormatError, match="negative"):
        expected_bin_bytes(prefix + ".idx")


def test_sample_spans_refuses_hostile_positions_before_allocating():
    sizes = np.array([3, 4], np.int64)
    pointers = np.array([0, 3], np.int64)
    doc_idx = np.array([0, 1], np.int64)
    for p0, p1 in ((0, 2**62), (-(2**62), 0), (1, 0)):
        with pytest.raises(FormatError, match="positions are out of range"):
            sample_spans([p0], [0], [p1], [0], doc_idx, pointers, sizes, 5)


def _hostile_index_arrays():
    ints = st.one_of(st.integers(-4, 400), st.sampled_from(
        [2**63 - 1, 2**63 - 2, 2**62, -(2**63), 2**62 - 1]))
    return st.integers(0, 12).flatmap(lambda n: st.tuples(
        st.lists(st.integers(-2, 2**31 - 1), min_size=n, max_size=n),
        st.lists(ints, min_size=n, max_size=n),
        st.sampled_from([1, 2, 4, 8]),
        st.integers(0, 500),
        st.lists(st.integers(-1, n + 1), max_size=n + 2),
    ))


@settings(max_examples=300, deadline=None)
@given(_hostile_index_arrays())
def test_index_check_matches_exact_integer_oracle(arrays):
    sizes, pointers, itemsize, bin_bytes, doc_idx = arrays
    args = (np.array(sizes, np.int32), np.array(pointers, np.int64), itemsize, bin_bytes,
            np.array(doc_idx, np.int64))
    assert index_check.check_index(*args) == index_check.check_index_reference(*args)


@pytest.mark.slow
def test_cli_hostile_pointer_fails_cleanly(ten_docs, tmp_path):
    prefix, _ = ten_docs
    _poke_pointer(prefix, 5, 2**63 - 2)
    env = subprocess_env()
    info = subprocess.run([sys.executable, "-m", "pythia_data", "info", prefix],
                          capture_output=True, text=True, env=env)
    assert info.returncode == 2, info.stderr
    assert "Traceback" not in info.stderr
    out = tmp_path / "o.npy"
    batches = subprocess.run(
        [sys.executable, "-m", "pythia_data", "batches", prefix, "-s", "0", "-o", str(out),
         "--train-iters", "1", "--batch-size", "2", "--seq-length", "4", "-q"],
        capture_output=True, text=True, env=env)
    assert batches.returncode == 2, batches.stderr
    assert "Traceback" not in batches.stderr
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def _fuzz(count: int, seed: int) -> dict:
    sys.path.insert(0, str(HERE))
    try:
        import index_fuzz
    finally:
        sys.path.remove(str(HERE))
    return index_fuzz.run(count, seed, env=subprocess_env())


def test_fuzz_index_mutants_quick():
    result = _fuzz(200, seed=1)
    assert result["crashes"] == 0 and result["exceptions"] == 0, result
    assert not result["failures"], result


@pytest.mark.slow
def test_fuzz_index_mutants_many():
    result = _fuzz(12000, seed=2)
    assert result["crashes"] == 0 and result["exceptions"] == 0, result
    assert not result["failures"], result


# -- edge 12: Megatron-LM's swapped float codes


def _float_dataset(tmp_path, name: str, code: int, dtype) -> tuple[str, list]:
    docs = [np.array([1.5, -2.25, 3.0], dtype), np.array([0.125], dtype),
            np.array([7.0, 8.5], dtype)]
    data = b"".join(d.tobytes() for d in docs)
    idx = b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, code, len(docs), len(docs) + 1)
    idx += struct.pack(f"<{len(docs)}i", *[len(d) for d in docs])
    pos, ptrs = 0, []
    for d in docs:
        ptrs.append(pos)
        pos += d.nbytes
    idx += struct.pack(f"<{len(docs)}q", *ptrs)
    idx += struct.pack(f"<{len(docs) + 1}q", *range(len(docs) + 1))
    prefix = os.path.join(tmp_path, name)
    Path(prefix + ".bin").write_bytes(data)
    Path(prefix + ".idx").write_bytes(idx)
    return prefix, docs


@pytest.mark.parametrize(("code", "dtype"), [(7, np.float32), (6, np.float64)])
def test_megatron_float_codes_are_detected(tmp_path, code, dtype):
    prefix, docs = _float_dataset(tmp_path, "m", code, dtype)
    with IndexedDataset(prefix) as ds:
        assert ds.dtype == np.dtype(dtype)
        assert ds.dtype_convention == "megatron"
        assert ds.stats()["dtype_convention"] == "megatron"
        for i, doc in enumerate(docs):
            np.testing.assert_array_equal(ds[i], doc)


@pytest.mark.parametrize(("code", "dtype"), [(6, np.float32), (7, np.float64)])
def test_neox_float_codes_still_read_as_before(tmp_path, code, dtype):
    prefix, docs = _float_dataset(tmp_path, "n", code, dtype)
    with IndexedDataset(prefix) as ds:
        assert ds.dtype == np.dtype(dtype) and ds.dtype_convention == "gpt-neox"
        np.testing.assert_array_equal(ds[0], docs[0])


def test_info_says_megatron_convention(tmp_path):
    prefix, _ = _float_dataset(tmp_path, "m", 7, np.float32)
    proc = subprocess.run([sys.executable, "-m", "pythia_data", "info", prefix],
                          capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "float32" in proc.stdout and "Megatron-LM" in proc.stdout
