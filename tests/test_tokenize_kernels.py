"""BPE and pre-tokenizer kernels against plain Python oracles."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.kernels.bpe import (
    bpe_single_ids,
    bpe_word_heap_packed,
    bpe_word_packed,
    pack_merge_table,
)
from pythia_data.kernels.pretokenize import next_pretoken
from pythia_data.tokenize import load_tokenizer
from pythia_data.tokenize.cpu import unicode_tables

_TOK = load_tokenizer(backend="cpu", workers=1)
_T = _TOK.tables
_PACKED = pack_merge_table(_T.merge_keys, _T.merge_rank, _T.merge_new)


def _ranks():
    out = {}
    keys = _T.merge_keys
    for slot in np.flatnonzero(keys >= 0):
        k = int(keys[slot])
        out[(k >> 32, k & 0xFFFFFFFF)] = (int(_T.merge_rank[slot]), int(_T.merge_new[slot]))
    return out


_RANKS = _ranks()


def oracle_bpe(data: bytes) -> list[int]:
    syms = [int(_T.byte_id[b]) for b in data]
    while len(syms) > 1:
        best = None
        for i in range(len(syms) - 1):
            hit = _RANKS.get((syms[i], syms[i + 1]))
            if hit is not None and (best is None or hit[0] < best[0]):
                best = (hit[0], i, hit[1])
        if best is None:
            break
        _, i, new = best
        syms[i : i + 2] = [new]
    return syms


def run_kernels(data: bytes):
    """(the quadratic BPE's ids, the heap BPE's ids) of ``data``, both over the packed merge
    table (the cpu encoder's), and the id :func:`bpe_single_ids` gives the word."""
    arr = np.frombuffer(data, dtype=np.uint8)
    n = arr.size
    syms = np.empty(n + 1, dtype=np.int32)
    vals = np.empty(n + 1, dtype=np.int64)
    k = bpe_word_packed(arr, 0, n, _T.byte_id, _PACKED, syms, vals)
    syms2 = np.empty(n + 1, dtype=np.int32)
    k2 = bpe_word_heap_packed(arr, 0, n, _T.byte_id, _PACKED, syms2)
    single = bpe_single_ids(arr, np.array([0, n], dtype=np.int64), _T.byte_id, _PACKED)
    return syms[:k].tolist(), syms2[:k2].tolist(), int(single[0])


_WORDS = st.one_of(
    st.text(st.sampled_from("aeinrst lo'9 "), min_size=1, max_size=80),
    st.text(min_size=1, max_size=30).filter(lambda s: s.encode("utf-8", "ignore") == s.encode(
        "utf-8", "surrogatepass")),
)


@settings(max_examples=300, deadline=None)
@given(_WORDS)
def test_bpe_kernels_match_oracle(word):
    data = word.encode("utf-8")
    naive, heap, single = run_kernels(data)
    expect = oracle_bpe(data)
    assert naive == expect
    assert heap == expect
    assert single == (expect[0] if len(expect) == 1 else -1)


def test_bpe_known_words():
    assert run_kernels(b" hello")[0] == [23120]
    assert run_kernels(b"9" * 200)[0] == run_kernels(b"9" * 200)[1] == oracle_bpe(b"9" * 200)


# a Python oracle of the GPT-2 regex on code points with the probed classes
_CLS = unicode_tables().cls


def oracle_pretokens(text: str) -> list[str]:
    def k(ch):
        return int(_CLS[ord(ch)])

    out, p, n = [], 0, len(text)
    while p < n:
        rest = text[p:]
        m = None
        for c in ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d"):
            if rest.startswith(c):
                m = len(c)
                break
        if m is None:
            for bit in (1, 2, 0):
                q = 1 if rest[0] == " " and len(rest) > 1 else 0
                test = (lambda ch, b=bit: (k(ch) & 7) == 0) if bit == 0 else (
                    lambda ch, b=bit: k(ch) & b)
                if q and not test(rest[1]):
                    q = 0
                if q < len(rest) and test(rest[q]):
                    e = q
                    while e < len(rest) and test(rest[e]):
                        e += 1
                    m = e
                    break
        if m is None:
            e = 0
            while e < len(rest) and k(rest[e]) & 4:
                e += 1
            m = e if (e == len(rest) or e == 1) else e - 1
        out.append(rest[:m])
        p += m
    return out


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(" \t\n'sSlLtrevdma19._\u00a0\u3000\u0301\u0663\x1c\U00011f04日\u2028"), max_size=40))
def test_regex_kernel_matches_oracle(text):
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    got, p = [], 0
    while p < data.size:
        q = next_pretoken(data, p, data.size, _CLS)
        got.append(data[p:q].tobytes().decode("utf-8"))
        p = q
    assert got == oracle_pretokens(text)


def test_bpe_single_ids_on_vocabulary_words():
    """The ignore_merges helper: one call over many words (short and LONG_WORD-long), each
    word's single id exactly when the oracle leaves one token."""
    from pythia_data.tokenize.model import bytes_to_unicode

    u2b = {u: b for b, u in bytes_to_unicode().items()}
    vocab = _TOK.model.vocab
    words = [bytes(u2b[c] for c in t) for t in sorted(vocab)[::25] if len(t) > 1
             and all(c in u2b for c in t)]
    words += [b"9" * 60, b"the" * 20, b" hello"]
    keys = np.frombuffer(b"".join(words), dtype=np.uint8)
    offs = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum([len(w) for w in words], out=offs[1:])
    got = bpe_single_ids(keys, offs, _T.byte_id, _PACKED).tolist()
    want = [(o[0] if len(o) == 1 else -1) for o in map(oracle_bpe, words)]
    assert got == want
    assert sum(g >= 0 for g in got) > len(words) // 2  # most vocabulary words are one token


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), max_size=400),
       st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), max_size=200))
def test_packed_merge_table_lookup_matches_dict(merges, probes):
    """merge_get over pack_merge_table's layout (header, slots, Bloom filter) against a
    dict: every merge found with its (rank, id) (a duplicate pair keeps its first entry),
    every other pair NO_MERGE -- the filter never hides a merge."""
    from pythia_data.kernels.bpe import NO_MERGE, build_merge_table, merge_get

    n = len(merges)
    left = np.array([a for a, _ in merges], dtype=np.int32)
    right = np.array([b for _, b in merges], dtype=np.int32)
    rank = np.arange(n, dtype=np.int32) * 3 + 1
    new = np.arange(n, dtype=np.int32) + 1000
    size = 1 << max(2, (2 * n + 1).bit_length())
    tab = pack_merge_table(*build_merge_table(left, right, rank, new, size))
    want: dict[tuple[int, int], int] = {}
    for i, pair in enumerate(merges):
        want.setdefault(pair, (int(rank[i]) << 32) | int(new[i]))
    for a, b in merges + probes:
        assert merge_get(tab, a, b) == want.get((a, b), NO_MERGE)


def test_packed_merge_table_filter_rejects_most_absent_pairs():
    """The filter of the 20B table (about 16 bits per merge): most absent pairs stop there
    (a filter that passed everything would still give right answers, slower)."""
    from pythia_data.kernels.bpe import _filter_at, _mix

    rng = np.random.default_rng(1)
    absent = [(int(a), int(b)) for a, b in rng.integers(0, 50000, (5000, 2))
              if (int(a), int(b)) not in _RANKS]
    passed = 0
    for a, b in absent:
        at, bits = _filter_at(_PACKED, np.uint64(_mix((a << 32) | b)))
        passed += (int(_PACKED[at]) & int(bits)) == int(bits)
    assert passed < len(absent) // 10
