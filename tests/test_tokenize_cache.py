"""The cpu engine's pre-token cache (inline and arena entries, hash collisions) against a
Python dict, and the encoder through it against HF at the inline/arena key boundaries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from pythia_data.kernels.bpe import (
    CACHE_INLINE_KEY,
    MAX_CACHED_KEY,
    _cache_find,
    _cache_put,
    _key_hash,
)
from pythia_data.tokenize import load_tokenizer


@njit(cache=True)  # (dropped with the kernels it compiles in: tests/conftest.py)
def _put_get(data, offs, ids, id_offs, hashes, slots_n, arena):
    """Insert every key (``hashes[i]`` replaces the real hash when >= 0: forced collisions)
    that is not yet present, then look every key up: (found ids flat, their offsets)."""
    ctab = np.zeros(4 * slots_n, dtype=np.int64)
    ckeys = np.zeros(arena, dtype=np.uint8)
    cvals = np.zeros(arena, dtype=np.int32)
    cstate = np.zeros(6, dtype=np.int64)
    n = offs.shape[0] - 1
    hs = np.empty(n, dtype=np.uint64)  # each key's hash and prefix words, computed once
    p0s = np.empty(n, dtype=np.int64)
    p1s = np.empty(n, dtype=np.int64)
    for i in range(n):
        h, p0s[i], p1s[i] = _key_hash(data, offs[i], offs[i + 1])
        hs[i] = np.uint64(hashes[i]) if hashes[i] >= 0 else h
    for i in range(n):
        a, b = offs[i], offs[i + 1]
        slot, found = _cache_find(data, a, b, hs[i], p0s[i], p1s[i], ctab, ckeys)
        if not found:
            _cache_put(data, a, b, hs[i], p0s[i], p1s[i], slot, ids[id_offs[i]:id_offs[i + 1]],
                       id_offs[i + 1] - id_offs[i], ctab, ckeys, cvals, cstate)
    got = np.full(8 * n + 1, -7, dtype=np.int64)  # <= 5 ids a key
    got_offs = np.zeros(n + 1, dtype=np.int64)
    w = 0
    for i in range(n):
        slot, found = _cache_find(data, offs[i], offs[i + 1], hs[i], p0s[i], p1s[i], ctab,
                                  ckeys)
        if found:
            s = np.int64(slot) * 4
            nv = ctab[s] & 0xFF
            vv = ctab[s + 3]
            if nv <= 2:
                got[w] = vv & 0xFFFFFFFF
                if nv == 2:
                    got[w + 1] = vv >> 32
            else:
                for t in range(nv):
                    got[w + t] = cvals[vv + t]
            w += nv
        else:
            got[w] = -1  # not stored (table or arena full)
            w += 1
        got_offs[i + 1] = w
    return got[:w], got_offs, cstate


def run_cache(keys, values, hashes, slots_n=64, arena=4096):
    data = np.frombuffer(b"".join(keys) or b"\0", dtype=np.uint8)
    offs = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum([len(k) for k in keys], out=offs[1:])
    ids = np.array([i for v in values for i in v] or [0], dtype=np.int32)
    id_offs = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in values], out=id_offs[1:])
    got, got_offs, state = run = _put_get(data, offs, ids, id_offs,
                                          np.array(hashes, dtype=np.int64), slots_n, arena)
    del run
    return [got[got_offs[i]:got_offs[i + 1]].tolist() for i in range(len(keys))], state


# keys sharing long prefixes, around the 8- and 16-byte packing and arena boundaries
_KEY = st.builds(lambda base, n: (base * 50)[:n], st.sampled_from([b"ab", b"aab", b"ba"]),
                 st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 18, 24, 40, MAX_CACHED_KEY]))
# keys equal in their first 8 (or 16) bytes, differing after: only bytes 8..15 (or the
# arena bytes) tell them apart
_SHARED = st.builds(lambda head, tail: head + tail, st.sampled_from([b"abcdefgh",
                                                                    b"abcdefghijklmnop"]),
                    st.binary(min_size=1, max_size=3))
_IDS = st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=5)


_ENTRIES = st.lists(st.tuples(_KEY | _SHARED | st.binary(min_size=1, max_size=30), _IDS,
                              st.sampled_from([-1, -1, 5, 5 | (77 << 32), 6])), max_size=30)


# 60 examples by default; the full 400 slow-marked (.ci/run runs both)
@settings(max_examples=60, deadline=None)
@given(_ENTRIES)
def test_cache_matches_a_dict_with_forced_collisions(entries):
    forced_collisions(entries)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(_ENTRIES)
def test_cache_matches_a_dict_with_forced_collisions_full(entries):
    forced_collisions(entries)


def forced_collisions(entries):
    """Same hash (slot and tag) for different keys: told apart by length, the first 8
    bytes, bytes 8..15 or the arena bytes; the first value of a key is kept."""
    oracle = {}
    keys, values, hashes = [], [], []
    for key, ids, h in entries:
        # a key always hashes the same way (forced or real) within one run
        h = next((hh for k, _v, hh in zip(keys, values, hashes) if k == key), h)
        keys.append(key)
        values.append(ids)
        hashes.append(h)
        oracle.setdefault(key, ids)
    got, state = run_cache(keys, values, hashes)
    for key, g in zip(keys, got):
        assert g == oracle[key]
    assert state[0] == len(oracle)
    assert state[1] == sum(len(k) for k in oracle if len(k) > CACHE_INLINE_KEY)
    assert state[2] == sum(len(v) for v in oracle.values() if len(v) > 2)


def test_cache_full_flag_and_half_the_slots():
    keys = [f"k{i}".encode() for i in range(40)]
    got, state = run_cache(keys, [[i] for i in range(40)], [-1] * 40, slots_n=32)
    assert state[0] == 16 and state[3] == 1  # at most half the slots, then full
    assert [g for g in got if g != [-1]] == [[i] for i in range(16)]
    # an arena too small for a long key: that key is not stored, the flag says full
    got, state = run_cache([b"x" * 20, b"y"], [[1], [2]], [-1, -1], arena=10)
    assert got == [[-1], [2]] and state[3] == 1  # (the encoder stops inserting once full)


def test_encoder_through_the_cache_at_key_length_boundaries():
    """Words of 1..130 bytes (inline keys, arena keys, not cached over MAX_CACHED_KEY), with
    1, 2 and more ids, encoded twice (the second time from the cache) and like HF."""
    cpu = load_tokenizer(backend="cpu", workers=1, cache_slots=1024)
    hf = load_tokenizer(backend="hf")
    words = []
    for n in (2, 3, 7, 8, 9, 15, 16, 17, 23, 24, 25, 64, 127, 128, 129, 130):
        words += [" " + "the"[: n - 1] * 1 if n <= 4 else " " + ("thequick" * 20)[: n - 1],
                  ("qzxj" * 40)[:n], ("\u00e9t\u00e9" * 40)[: n // 2]]
    docs = [" ".join(words), "".join(words), " ".join(reversed(words))]
    first = cpu.encode_batch(docs)
    second = cpu.encode_batch(docs)
    theirs = hf.encode_batch(docs)
    for a, b, c in zip(first, second, theirs):
        assert a.tolist() == b.tolist() == c.tolist()
    assert cpu._caches[0].state[0] > 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.integers(1, 6),
       st.lists(st.integers(0, 5), max_size=200))
def test_regions_hand_out_every_chunk_once(sizes, nw, order):
    """_Regions (which chunk each cpu worker takes): whatever order the workers ask in,
    every chunk is handed out exactly once; a worker gets its own run's chunks first, in
    order, and the runs are consecutive and cover the chunks."""
    from pythia_data.tokenize.cpu import _Regions

    nw = min(nw, len(sizes))
    regions = _Regions(sizes, nw)
    runs = [tuple(r) for r in regions._runs]
    assert runs[0][0] == 0 and runs[-1][1] == len(sizes)
    assert all(runs[i][1] == runs[i + 1][0] for i in range(nw - 1))
    assert all(r[0] < r[1] for r in runs)
    got: list[list[int]] = [[] for _ in range(nw)]
    done = [False] * nw
    asks = [w % nw for w in order] + [w for _ in range(len(sizes) + 1) for w in range(nw)]
    for w in asks:
        if done[w]:
            continue
        c = regions.take(w)
        if c is None:
            done[w] = True
        else:
            got[w].append(c)
    assert sorted(c for g in got for c in g) == list(range(len(sizes)))
    for w, (a, b) in enumerate(runs):
        own = [c for c in got[w] if a <= c < b]
        assert own == got[w][:len(own)] and own == sorted(own)
