"""BPE and pre-tokenizer kernels against plain Python oracles."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.kernels.bpe import (
    bpe_word,
    bpe_word_heap,
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
    arr = np.frombuffer(data, dtype=np.uint8)
    n = arr.size
    syms = np.empty(n + 1, dtype=np.int32)
    ranks = np.empty(n + 1, dtype=np.int32)
    slots = np.empty(n + 1, dtype=np.uint64)
    k = bpe_word(arr, 0, n, _T.byte_id, _T.merge_keys, _T.merge_rank, _T.merge_new, syms,
                 ranks, slots)
    a = syms[:k].tolist()
    syms2 = np.empty(n + 1, dtype=np.int32)
    k2 = bpe_word_heap(arr, 0, n, _T.byte_id, _T.merge_keys, _T.merge_rank, _T.merge_new,
                       syms2)
    syms3 = np.empty(n + 1, dtype=np.int32)
    vals = np.empty(n + 1, dtype=np.int64)
    k3 = bpe_word_packed(arr, 0, n, _T.byte_id, _PACKED, syms3, vals)
    syms4 = np.empty(n + 1, dtype=np.int32)
    k4 = bpe_word_heap_packed(arr, 0, n, _T.byte_id, _PACKED, syms4)
    # the packed merge table's kernels (the cpu encoder's) give what the plain ones give
    assert syms3[:k3].tolist() == a
    assert syms4[:k4].tolist() == syms2[:k2].tolist()
    return a, syms2[:k2].tolist()


_WORDS = st.one_of(
    st.text(st.sampled_from("aeinrst lo'9 "), min_size=1, max_size=80),
    st.text(min_size=1, max_size=30).filter(lambda s: s.encode("utf-8", "ignore") == s.encode(
        "utf-8", "surrogatepass")),
)


@settings(max_examples=300, deadline=None)
@given(_WORDS)
def test_bpe_kernels_match_oracle(word):
    data = word.encode("utf-8")
    naive, heap = run_kernels(data)
    expect = oracle_bpe(data)
    assert naive == expect
    assert heap == expect


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
