"""``find``: every hit, against a brute-force oracle that reads every training row.

The oracle reads each trained sample's row with ``BatchReader`` (the path ``batches``
uses) and compares every query at every offset (complete hits). For the neox order it
also builds the whole training stream (documents in ``doc_idx`` order), finds every
occurrence there by brute force, and lists those that no row holds whole in each row that
holds a part of them (straddling hits). Datasets use a tiny vocabulary so queries occur
often, documents of size 0 and 1, EOD at document ends, and queries cut from the stream
across documents, EOD, row and batch boundaries.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.find import Finder, OrderInverse, find, inverse_paths
from pythia_data.find.queries import Query
from pythia_data.order import BatchReader, OrderParams, PreshuffledOrder, TrainingOrder

EOD = 0


def _queries(token_lists):
    return [Query(",".join(map(str, q)), tuple(int(t) for t in q), k, "tokens")
            for k, q in enumerate(token_lists)]


def oracle(ds, order, queries, include_untrained=False):
    """{(sample, offset, query, part_lo, part_hi)} by brute force."""
    reader = BatchReader(ds, order)
    B, L = reader.batch_size, reader.seq_length
    limit = reader.num_samples if include_untrained else reader.num_iterations * B
    want = set()
    if limit:
        rows = reader.read_samples(np.arange(limit))
        for i in range(limit):
            row = rows[i].astype(np.int64)
            for qi, q in enumerate(queries):
                m = len(q.tokens)
                qa = np.array(q.tokens)
                for o in range(0, L + 2 - m):
                    if np.array_equal(row[o:o + m], qa):
                        want.add((i, o, qi, 0, m))
    if getattr(order, "kind", "") != "neox":
        return want
    # straddling occurrences: the stream of documents in doc_idx order
    stream = np.concatenate([np.asarray(ds[int(d)], dtype=np.int64) for d in order.doc_idx]
                            + [np.zeros(0, dtype=np.int64)])
    T = len(order.shuffle_idx)
    sample_of_row = np.empty(T, dtype=np.int64)
    sample_of_row[np.asarray(order.shuffle_idx, dtype=np.int64)] = np.arange(T)
    for qi, q in enumerate(queries):
        m = len(q.tokens)
        qa = np.array(q.tokens)
        for s in range(0, len(stream) - m + 1):
            if not np.array_equal(stream[s:s + m], qa):
                continue
            e = s + m - 1
            if any(j * L <= s and e <= j * L + L for j in range(T)):
                continue  # some row holds it whole: a complete hit (or none if untrained)
            for j in range(T):
                a, b = max(s, j * L), min(e, j * L + L)
                if a > b or (a == b and (a == j * L + L or a == j * L)):
                    continue  # no part, or only the token the neighbouring row shares
                i = int(sample_of_row[j])
                if i < limit:
                    want.add((i, a - j * L, qi, a - s, b - s + 1))
    return want


def got_set(ds, order, queries, **kw):
    finder = Finder(ds, queries, order, workers=kw.pop("workers", 2),
                    chunk_tokens=kw.pop("chunk_tokens", 1 << 12), **kw)
    assert len(finder.scan_bounds()) >= 1
    arrays = finder.collect()
    hits = list(finder.hits(arrays))
    keys = [(h.sample, h.offset, h.query_index, *(h.part or (0, h.query_length)))
            for h in hits]
    assert len(keys) == len(set(keys)), "duplicate hits"
    sort_keys = [(h.iteration, h.index_in_batch, h.offset, h.query_index,
                  (h.part or (0,))[0]) for h in hits]
    assert sort_keys == sorted(sort_keys), "not sorted by iteration"
    # every hit's document position starts the query there (or its first part)
    for h in hits:
        doc = np.asarray(ds[h.document], dtype=np.int64)
        q = np.array(queries[h.query_index].tokens)
        n = min(len(q), len(doc) - h.doc_offset)
        assert n >= 1 and np.array_equal(doc[h.doc_offset:h.doc_offset + n], q[:n])
        assert h.iteration == h.sample // finder.batch_size
        assert h.index_in_batch == h.sample % finder.batch_size
    return set(keys), hits


def _docs(draw, max_docs=10, vocab=4, eod=True):
    sizes = draw(st.lists(st.one_of(st.integers(0, 2), st.integers(3, 30)), min_size=1,
                          max_size=max_docs))
    if sum(sizes) < 2:
        sizes[0] += 2
    docs = []
    for n in sizes:
        body = draw(st.lists(st.integers(1 if eod else 0, vocab - 1), min_size=n, max_size=n))
        if eod and n and draw(st.booleans()):
            body[-1] = EOD
        docs.append(np.array(body, dtype=np.uint16))
    return docs


def _draw_queries(draw, pool: np.ndarray, vocab: int, max_len: int):
    out = []
    for _ in range(draw(st.integers(1, 4))):
        if pool.size and draw(st.booleans()):
            m = draw(st.integers(1, min(max_len, pool.size)))
            s = draw(st.integers(0, pool.size - m))
            out.append([int(x) for x in pool[s:s + m]])
        else:
            out.append(draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=4)))
    return out


@st.composite
def neox_case(draw):
    docs = _docs(draw)
    seq = draw(st.integers(1, 12))
    batch = draw(st.integers(1, 4))
    iters = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    return docs, OrderParams(train_iters=iters, batch_size=batch, seq_length=seq, seed=seed), draw


def _stream_pool(ds, order):
    return np.concatenate([np.asarray(ds[int(d)], dtype=np.int64) for d in order.doc_idx])


def _run_neox(tmp_path, docs, params, draw, include_untrained=False, shards=False,
              dtype=np.uint16):
    prefix = write_dataset(tmp_path / "d", docs, dtype=dtype)
    chunk = draw(st.sampled_from([1, 2, 3, 7, 16, 1 << 12]))
    workers = draw(st.sampled_from([1, 2]))
    with IndexedDataset(prefix) as ds:
        order = TrainingOrder.build(ds, params, index_dir=tmp_path / "idx")
        pool = _stream_pool(ds, order)
        queries = _queries(_draw_queries(draw, pool, 4, 2 * params.seq_length + 3))
        want = oracle(ds, order, queries, include_untrained)
        got, _ = got_set(ds, order, queries, include_untrained=include_untrained,
                         chunk_tokens=chunk, workers=workers)
    assert got == want
    if shards:
        _shard(prefix)
        with IndexedDataset(prefix) as ds:
            assert ds.is_sharded or len(ds.bin_paths) == 1
            got2, _ = got_set(ds, order, queries, include_untrained=include_untrained,
                              chunk_tokens=chunk, workers=workers)
        assert got2 == want


def _shard(prefix, size=7):
    data = open(prefix + ".bin", "rb").read()
    n = max(1, -(-len(data) // size))
    last = n - 1
    for k in range(n):
        with open(f"{prefix}-{k:05d}-of-{last:05d}.bin", "wb") as f:
            f.write(data[k * size:(k + 1) * size])
    os.unlink(prefix + ".bin")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=neox_case(), untrained=st.booleans())
def test_neox_hits_equal_the_oracle(tmp_path_factory, case, untrained):
    docs, params, draw = case
    _run_neox(tmp_path_factory.mktemp("n"), docs, params, draw, untrained)


@pytest.mark.slow
@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=neox_case(), untrained=st.booleans())
def test_neox_hits_equal_the_oracle_long(tmp_path_factory, case, untrained):
    docs, params, draw = case
    _run_neox(tmp_path_factory.mktemp("n"), docs, params, draw, untrained)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=neox_case())
def test_neox_sharded_in_place_equals_the_oracle(tmp_path_factory, case):
    docs, params, draw = case
    _run_neox(tmp_path_factory.mktemp("s"), docs, params, draw, shards=True)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=neox_case())
def test_neox_int32_tokens_above_65535_equal_the_oracle(tmp_path_factory, case):
    """Token ids that do not fit 16 bits take the hashed anchor table."""
    docs, params, draw = case
    big = [np.where(d == EOD, EOD, d.astype(np.int64) + 70_000).astype(np.int32) for d in docs]
    _run_neox(tmp_path_factory.mktemp("w"), big, params, draw, dtype=np.int32)


def _write_noncanonical(prefix, docs):
    """Documents 0..n-2 stored in reverse order with a gap of 3 tokens after each, then
    document n-1 (the index requires the file to end with the last one): the pointers are
    not the running sum of the sizes (the scan reads through them)."""
    from pythia_data.format.mmidx import write_index

    sizes = np.array([len(d) for d in docs], dtype=np.int32)
    pointers = np.zeros(len(docs), dtype=np.int64)
    data = bytearray()
    for k in [*reversed(range(len(docs) - 1)), len(docs) - 1]:
        pointers[k] = len(data)
        data += np.asarray(docs[k], dtype=np.uint16).tobytes()
        if k != len(docs) - 1:
            data += b"\xff\xff" * 3
    with open(f"{prefix}.bin", "wb") as f:
        f.write(bytes(data))
    with open(f"{prefix}.idx", "wb") as f:
        write_index(f, np.dtype(np.uint16), sizes, np.arange(len(docs) + 1, dtype=np.int64))
    raw = bytearray(open(f"{prefix}.idx", "rb").read())
    at = 9 + 8 + 1 + 8 + 8 + 4 * len(docs)
    raw[at:at + 8 * len(docs)] = pointers.astype("<i8").tobytes()
    open(f"{prefix}.idx", "wb").write(bytes(raw))
    return str(prefix)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=neox_case())
def test_neox_non_canonical_layout_equals_the_oracle(tmp_path_factory, case):
    docs, params, draw = case
    tmp = tmp_path_factory.mktemp("nc")
    prefix = _write_noncanonical(tmp / "nc", docs)
    with IndexedDataset(prefix) as ds:
        assert not ds.is_canonical or len(docs) == 1
        order = TrainingOrder.build(ds, params, index_dir=tmp / "idx")
        queries = _queries(_draw_queries(draw, _stream_pool(ds, order), 4,
                                         2 * params.seq_length + 3))
        want = oracle(ds, order, queries)
        got, _ = got_set(ds, order, queries, chunk_tokens=draw(st.sampled_from([1, 5, 4096])))
    assert got == want


@st.composite
def preshuffled_case(draw):
    seq = draw(st.integers(1, 10))
    n = draw(st.integers(1, 12))
    rows = [np.array(draw(st.lists(st.integers(0, 3), min_size=seq + 1, max_size=seq + 1)),
                     dtype=np.uint16) for _ in range(n)]
    batch = draw(st.integers(1, 4))
    return rows, OrderParams(train_iters=draw(st.integers(1, 6)), batch_size=batch,
                             seq_length=seq), draw


def _run_preshuffled(tmp_path, rows, params, draw, shards=False, untrained=False):
    prefix = write_dataset(tmp_path / "p", rows, dtype=np.uint16)
    if shards:
        _shard(prefix, size=5)
    order = PreshuffledOrder(params, cap_iterations=True)
    with IndexedDataset(prefix) as ds:
        pool = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
        queries = _queries(_draw_queries(draw, pool, 4, params.seq_length + 3))
        want = oracle(ds, order, queries, untrained)
        got, _ = got_set(ds, order, queries, include_untrained=untrained,
                         chunk_tokens=draw(st.sampled_from([1, 2, 5, 1 << 12])))
    assert got == want


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=preshuffled_case(), shards=st.booleans(), untrained=st.booleans())
def test_preshuffled_hits_equal_the_oracle(tmp_path_factory, case, shards, untrained):
    rows, params, draw = case
    _run_preshuffled(tmp_path_factory.mktemp("p"), rows, params, draw, shards, untrained)


@pytest.mark.slow
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=preshuffled_case(), shards=st.booleans(), untrained=st.booleans())
def test_preshuffled_hits_equal_the_oracle_long(tmp_path_factory, case, shards, untrained):
    rows, params, draw = case
    _run_preshuffled(tmp_path_factory.mktemp("p"), rows, params, draw, shards, untrained)


def test_straddling_hit_is_reported_in_both_rows_with_the_split(tmp_path):
    # one document 0..29, seq_length 4: rows are stream [4j, 4j + 4]
    docs = [np.arange(1, 31, dtype=np.uint16)]
    params = OrderParams(train_iters=7, batch_size=1, seq_length=4, seed=1)
    prefix = write_dataset(tmp_path / "one", docs)
    with IndexedDataset(prefix) as ds:
        order = TrainingOrder.build(ds, params, index_dir=tmp_path)
        hits = list(find(ds, tokens=[7, 8, 9, 10], order=order))
        rows = {h.sample: BatchReader(ds, order).read_samples([h.sample])[0] for h in hits}
    # stream offsets 6..9: rows 1 ([4, 8]) and 2 ([8, 12]) share token 8 (the value 9)
    assert len(hits) == 2
    parts = sorted(h.part for h in hits)
    assert parts == [(0, 3), (2, 4)]
    for h in hits:
        a, b = h.part
        assert list(rows[h.sample][h.offset:h.offset + b - a]) == [7, 8, 9, 10][a:b]


def test_inverse_cache_written_atomically_reused_and_checked(tmp_path):
    docs = [np.arange(1, 1 + n, dtype=np.uint16) for n in (5, 9, 3, 12, 7)]
    prefix = write_dataset(tmp_path / "c", docs)
    params = OrderParams(train_iters=5, batch_size=2, seq_length=6, seed=3)
    with IndexedDataset(prefix) as ds:
        order = TrainingOrder.build(ds, params)
        paths = inverse_paths(order)
        inv = OrderInverse.for_order(order)
        assert inv.source == "built" and all(os.path.isfile(p) for p in paths.values())
        assert not any(p.endswith(".partial") for p in os.listdir(tmp_path))
        again = OrderInverse.for_order(order)
        assert again.source == "cache"
        for name in ("doc_pos", "row_sample", "pos_ckpt"):
            assert np.array_equal(getattr(inv, name), getattr(again, name))
        # the inverse really inverts: row_sample[shuffle_idx[i]] == i
        assert np.array_equal(np.asarray(again.row_sample)[np.asarray(order.shuffle_idx)],
                              np.arange(order.total_samples))
        # a corrupted array is refused (exit code 1), never used
        with open(paths["row_sample"], "r+b") as f:
            f.seek(-1, 2)
            last = f.read(1)
            f.seek(-1, 2)
            f.write(bytes([last[0] ^ 1]))
        from pythia_data.errors import CacheMismatchError

        with pytest.raises(CacheMismatchError, match="contents differ"):
            OrderInverse.for_order(order)
        # made for another order (e.g. the order was rebuilt): rebuilt, with a note
        import json

        meta = json.load(open(paths["meta"]))
        meta["order"]["total_samples"] += 1
        open(paths["meta"], "w").write(json.dumps(meta))
        rebuilt = OrderInverse.for_order(order)
        assert rebuilt.note and "another order" in rebuilt.note
        assert rebuilt.source == "built"


def test_limit_keeps_the_first_hits_by_iteration(tmp_path):
    docs = [np.array([1, 2, 1, 2, 1, 2, 0] * 5, dtype=np.uint16) for _ in range(6)]
    prefix = write_dataset(tmp_path / "l", docs)
    params = OrderParams(train_iters=8, batch_size=2, seq_length=8, seed=5)
    every = list(find(prefix, tokens=[1, 2], params=params, index_dir=tmp_path))
    first = list(find(prefix, tokens=[1, 2], params=params, index_dir=tmp_path, limit=5))
    assert first == every[:5]
    assert list(find(prefix, tokens=[1, 2], params=params, index_dir=tmp_path,
                     limit=10**18)) == every
    assert list(find(prefix, tokens=[1, 2], params=params, index_dir=tmp_path,
                     limit=0)) == []


def test_a_second_writer_of_the_inverse_builds_in_memory(tmp_path):
    """Two finds over one order at once: the second does not wait, fail or corrupt."""
    from pythia_data.io.atomic import OutputLock

    docs = [np.arange(1, 1 + n, dtype=np.uint16) for n in (5, 9, 3, 12, 7)]
    prefix = write_dataset(tmp_path / "c", docs)
    params = OrderParams(train_iters=5, batch_size=2, seq_length=6, seed=3)
    with IndexedDataset(prefix) as ds:
        order = TrainingOrder.build(ds, params)
        paths = inverse_paths(order)
        held = OutputLock(paths["doc_pos"])  # as another process writing it would
        try:
            inv = OrderInverse.for_order(order)
        finally:
            held.release()
        assert inv.source == "memory" and "another" in inv.note
        assert not os.path.exists(paths["meta"])
        assert np.array_equal(np.asarray(inv.row_sample)[np.asarray(order.shuffle_idx)],
                              np.arange(order.total_samples))
        assert OrderInverse.for_order(order).source == "built"


@pytest.mark.parametrize("shards", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 64, 100])
def test_read_ahead_touches_every_byte_once_in_stream_order(tmp_path, monkeypatch, shards,
                                                            chunk):
    """The read-ahead thread (2 scan threads) touches the chunks' bytes in order, each once,
    across shard boundaries and the last partial chunk; the hits stay those of one thread."""
    from pythia_data.kernels import find as KF

    rng = np.random.default_rng(chunk)
    docs = [rng.integers(1, 4, size=int(n)).astype(np.uint16).tolist() + [EOD]
            for n in rng.integers(0, 9, size=30)]
    prefix = str(tmp_path / "d")
    write_dataset(prefix, docs, dtype=np.uint16)
    if shards:
        _shard(prefix, size=6)
    touched = []
    real = KF.touch_pages

    def spy(buf, page=4096):
        touched.append(bytes(buf))
        return real(buf, page)

    monkeypatch.setattr(KF, "touch_pages", spy)
    # The read-ahead thread stops once the scan has taken every chunk, so on a loaded
    # machine it could leave the last chunks untouched: each chunk's scan waits here until
    # the read-ahead has passed the chunk's end, which makes "every byte once" certain.
    real_chunk = Finder._scan_chunk

    def scan_after_touch(self, lo, hi):
        deadline = time.monotonic() + 30  # only the pool's threads: workers=1 scans inline
        while (threading.current_thread().name.startswith("find_")
               and sum(map(len, touched)) < hi * 2 and time.monotonic() < deadline):
            time.sleep(0.001)
        return real_chunk(self, lo, hi)

    monkeypatch.setattr(Finder, "_scan_chunk", scan_after_touch)
    queries = _queries([[1, 2], [3, EOD, 1], [2]])
    with IndexedDataset(prefix) as ds:
        assert len(ds.bin_paths) > 1 if shards else len(ds.bin_paths) == 1
        order = TrainingOrder.build(prefix, OrderParams(4, 2, 8, 1), use_cache=False)
        finder = Finder(ds, queries, order, workers=2, chunk_tokens=chunk)
        assert len(finder.scan_bounds()) > 1
        got = finder.collect()
        whole = bytes(np.asarray(ds.read_bytes(0, ds.bin_bytes)))
        one = Finder(ds, queries, order, workers=1, chunk_tokens=1 << 12).collect()
    assert b"".join(touched) == whole
    for f in got.FIELDS:
        assert np.array_equal(getattr(got, f), getattr(one, f)), f


def test_stopping_a_scan_early_ends_the_read_ahead_thread(tmp_path):
    import threading

    docs = [[1, 2, 3, EOD]] * 50
    prefix = str(tmp_path / "d")
    write_dataset(prefix, docs, dtype=np.uint16)
    with IndexedDataset(prefix) as ds:
        order = TrainingOrder.build(prefix, OrderParams(4, 2, 8, 1), use_cache=False)
        finder = Finder(ds, _queries([[2, 3]]), order, workers=2, chunk_tokens=4)
        it = finder.scan()
        next(it)
        it.close()
    assert not [t for t in threading.enumerate() if t.name == "find-prefetch"]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=12),
       windows=st.integers(1, 6), width=st.integers(1, 9), shards=st.booleans(),
       dtype=st.sampled_from([np.uint16, np.int32]), seed=st.integers(0, 2**16))
def test_anchor_sample_counts_equal_a_bincount_of_the_windows(tmp_path_factory, sizes, windows,
                                                              width, shards, dtype, seed):
    """The anchor sample (read with pread across shard files, a token may straddle two)
    counts exactly the tokens of its windows, read here through the memory map."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, 300, size=n).astype(dtype) for n in sizes]
    prefix = write_dataset(tmp_path_factory.mktemp("s") / "d", docs, dtype=dtype)
    if shards:
        _shard(prefix, size=5)
    params = OrderParams(1, 1, 3, 1)
    with IndexedDataset(prefix) as ds:
        finder = Finder(ds, _queries([[1, 2]]), "neox", params, index_dir=prefix + "_idx")
        n = finder.num_tokens
        got = finder._sample_counts(windows, width)
        if n <= windows * width:
            spans = [(0, n)]
        else:
            spans = [(k * (n // windows), k * (n // windows) + width) for k in range(windows)]
        want = np.zeros(300, dtype=np.int64)
        for a, b in spans:
            want += np.bincount(np.asarray(ds.read_tokens(a, b - a), dtype=np.int64),
                                minlength=300)
    assert np.array_equal(np.pad(got, (0, max(0, 300 - got.shape[0]))), want)
