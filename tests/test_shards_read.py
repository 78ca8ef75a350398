"""Reading a dataset's shards in place equals reading the unsharded file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.shards import find_shards, shard


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    doc_sizes=st.lists(st.integers(0, 60), min_size=1, max_size=12),
    dtype=st.sampled_from([np.uint16, np.int32]),
    shard_size=st.integers(1, 97),
    spans=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=6),
    how=st.sampled_from(["prefix", "shard", "folder"]),
)
def test_sharded_reads_equal_unsharded(tmp_path_factory, doc_sizes, dtype, shard_size, spans, how):
    # at most ~40 shards (tiny shards of tiny data stay in; thousands of files test no more)
    total = sum(doc_sizes) * np.dtype(dtype).itemsize
    shard_size = max(shard_size, -(-total // 40))
    tmp = tmp_path_factory.mktemp("rd")
    (tmp / "full").mkdir()
    docs = [np.arange(k * 1000, k * 1000 + n) for k, n in enumerate(doc_sizes)]
    prefix = write_dataset(tmp / "full" / "doc", docs, dtype=dtype)
    res = shard(prefix + ".bin", tmp / "sharded", shard_size, checksums=False)
    shutil.copy(prefix + ".idx", tmp / "sharded" / "doc.idx")
    assert find_shards(tmp / "sharded" / "doc").count == len(res.paths)
    target = {
        "prefix": tmp / "sharded" / "doc",
        "shard": res.paths[len(res.paths) // 2],
        "folder": tmp / "sharded",
    }[how]
    with IndexedDataset(prefix) as full, IndexedDataset(target) as sh:
        assert sh.bin_bytes == full.bin_bytes and len(sh) == len(full)
        n = full.num_tokens
        assert np.array_equal(sh.read_tokens(0, n), full.read_tokens(0, n))
        starts, lengths = [], []
        for a, b in spans:
            s = int(a * n)
            ln = int(b * (n - s))
            starts.append(s)
            lengths.append(ln)
            assert np.array_equal(sh.read_tokens(s, ln), full.read_tokens(s, ln))
        assert np.array_equal(sh.gather(starts, lengths), full.gather(starts, lengths))
        for i in range(len(full)):
            assert np.array_equal(sh[i], full[i])
