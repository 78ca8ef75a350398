"""Structural checks of GPT-NeoX index files, against plain-Python oracles."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.hub import npycheck


def oracle_perm(values) -> bool:
    return sorted(int(v) for v in values) == list(range(len(values)))


def oracle_doc(values) -> bool:
    if len(values) == 0 or min(values) < 0:
        return False
    c = Counter(int(v) for v in values)
    docs = max(values) + 1
    counts = {c.get(d, 0) for d in range(docs)}
    return len(counts) == 1


def oracle_sample(rows) -> bool:
    rows = [tuple(int(x) for x in r) for r in rows]
    if not rows or rows[0] != (0, 0):
        return False
    return all(b[1] >= 0 and (b[0] > a[0] or (b[0] == a[0] and b[1] > a[1]))
               for a, b in zip(rows, rows[1:]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=40), st.booleans())
def test_shuffle_idx_matches_oracle(values, make_perm):
    a = np.random.default_rng(len(values)).permutation(len(values)) if make_perm else values
    a = np.asarray(a, dtype=np.uint32)
    assert (npycheck.check_shuffle_idx(a) is None) == oracle_perm(a)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-1, 6), min_size=1, max_size=30), st.integers(1, 3), st.booleans())
def test_doc_idx_matches_oracle(values, epochs, make_good):
    if make_good:
        values = list(range(max(1, len(values) // 3))) * epochs
        np.random.default_rng(0).shuffle(values)
    a = np.asarray(values, dtype=np.int32)
    assert (npycheck.check_doc_idx(a) is None) == oracle_doc(values)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9)), min_size=1, max_size=30),
       st.booleans())
def test_sample_idx_matches_oracle(rows, make_good):
    if make_good:
        rows = [(0, 0)] + sorted(set(r for r in rows if r != (0, 0)))
    a = np.asarray(rows, dtype=np.int32).reshape(-1, 2)
    assert (npycheck.check_sample_idx(a) is None) == oracle_sample(rows)


def test_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(npycheck, "CHUNK", 7)
    rng = np.random.default_rng(1)
    perm = rng.permutation(100).astype(np.int64)
    assert npycheck.check_shuffle_idx(perm) is None
    bad = perm.copy()
    bad[90] = bad[3]  # a repeat across chunks
    assert "appears more than once" in npycheck.check_shuffle_idx(bad)
    rows = np.stack([np.arange(50) // 3, (np.arange(50) % 3) * 5], axis=1)
    assert npycheck.check_sample_idx(rows) is None
    rows[21] = rows[20]
    assert "row 21" in npycheck.check_sample_idx(rows)


def test_zeroed_shuffle_idx_message(tmp_path):
    a = np.random.default_rng(2).permutation(1000).astype(np.uint32)
    a[:920] = 0
    p = tmp_path / "x_1234s_shuffle_idx.npy"
    np.save(p, a)
    r = npycheck.check_file(p)
    assert not r.ok and r.kind == "shuffle_idx"
    assert "92.0 %" in r.message or "92.1 %" in r.message


def test_run_consistency(tmp_path):
    np.save(tmp_path / "r_1s_shuffle_idx.npy", np.arange(10, dtype=np.uint32))
    np.save(tmp_path / "r_1s_sample_idx.npy", np.zeros((12, 2), dtype=np.int32))
    np.save(tmp_path / "r_1s_doc_idx.npy", np.arange(3, dtype=np.int32))
    out = npycheck.check_run(sorted(tmp_path.iterdir()))
    assert len(out) == 1 and not out[0].ok and "expected one more" in out[0].message


def test_not_an_npy(tmp_path):
    p = tmp_path / "junk_doc_idx.npy"
    p.write_bytes(b"not numpy")
    r = npycheck.check_file(p)
    assert not r.ok and "not a readable .npy" in r.message
