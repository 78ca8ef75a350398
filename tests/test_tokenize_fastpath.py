"""The cpu engine's fast paths against the general kernels and plain Python oracles: the
8-bytes-at-a-time scans (ASCII letters, one byte, ASCII), the fast-start pre-token
matchers, BPE with the byte-pair table, and the hot pre-token table (``_emit``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from pythia_data.kernels.bpe import (
    bpe_word_packed,
    bpe_word_pairs,
    hot_table,
    pack_merge_table,
    pair_table,
)
from pythia_data.kernels.pretokenize import (
    ascii_end,
    ascii_letters_end,
    borrow,
    borrow_readonly,
    find_byte,
    find_pair,
    next_pretoken,
    next_pretoken_fast,
    prefetch,
    root_byte,
    root_pair,
)
from pythia_data.kernels.pretokenize_split import C_L, C_M, match_cl100k, match_cl100k_fast
from pythia_data.tokenize import load_tokenizer
from pythia_data.tokenize.cpu import unicode_tables

_TOK = load_tokenizer(backend="cpu", workers=1)
_T = _TOK.tables
_PACKED = pack_merge_table(_T.merge_keys, _T.merge_rank, _T.merge_new)
_PAIRS = pair_table(_T.byte_id, _PACKED)
_CLS = unicode_tables().cls

# bytes near the scans' edges: letters of both cases and the codes around them, the
# searched byte, high bytes
_EDGE_BYTES = st.sampled_from(b"@AZ[`az{ \x00\x7f\x80\xc3\xff<")
_BYTES = st.lists(st.one_of(_EDGE_BYTES, st.integers(0, 255)), max_size=40).map(bytes)
# text with every kind of character, ASCII-heavy runs, and all of Unicode
_ANY = st.characters(blacklist_categories=("Cs",))
_TEXT = st.text(alphabet=st.one_of(st.sampled_from("aZq '\n\r\t.,1(_s"), _ANY), max_size=60)
# the fast paths' edges: every kind of ASCII character, then non-ASCII spaces, letters,
# digits, marks and punctuation right after them
_EDGES = "aZ09 '\n\r\t\x0b\x0c\x1c\x00\x7f.(_-\xa0\u3000\u2028\u0085é中\u0663\u00b2\u0301«»"
_MIXED = st.text(alphabet=st.one_of(st.sampled_from(_EDGES), _ANY), max_size=60)


def _ranges(data: bytes, draw_start, draw_end):
    n = len(data)
    start = min(draw_start, n)
    end = min(max(draw_end, start), n)
    return start, end


@settings(max_examples=400, deadline=None)
@given(data=_BYTES, s=st.integers(0, 40), e=st.integers(0, 40))
def test_ascii_letters_end_equals_oracle(data, s, e):
    start, end = _ranges(data, s, e)
    want = start
    while want < end and (65 <= data[want] <= 90 or 97 <= data[want] <= 122):
        want += 1
    assert ascii_letters_end(np.frombuffer(data, dtype=np.uint8), start, end) == want


@settings(max_examples=400, deadline=None)
@given(data=_BYTES, s=st.integers(0, 40), e=st.integers(0, 40), x=_EDGE_BYTES)
def test_find_byte_equals_oracle(data, s, e, x):
    start, end = _ranges(data, s, e)
    at = data.find(bytes([x]), start, end)
    want = end if at < 0 else at
    assert find_byte(np.frombuffer(data, dtype=np.uint8), start, end, x) == want


@settings(max_examples=400, deadline=None)
@given(data=_BYTES, s=st.integers(0, 40), e=st.integers(0, 40))
def test_ascii_end_equals_oracle(data, s, e):
    start, end = _ranges(data, s, e)
    want = start
    while want < end and data[want] < 0x80:
        want += 1
    assert ascii_end(np.frombuffer(data, dtype=np.uint8), start, end) == want


@settings(max_examples=500, deadline=None)
@given(data=st.lists(st.sampled_from(b"  a\x00\x80\xff<|"), max_size=40).map(bytes),
       s=st.integers(0, 40), e=st.integers(0, 40), x=st.sampled_from(b" a<\x00\xff"),
       y=st.sampled_from(b" a|\x00\x80"))
def test_find_pair_equals_oracle(data, s, e, x, y):
    start, end = _ranges(data, s, e)
    at = data.find(bytes([x, y]), start, end)
    want = end if at < 0 else at
    assert find_pair(np.frombuffer(data, dtype=np.uint8), start, end, x, y) == want


def test_root_pair():
    nxt = np.full(256 * 4, -1, dtype=np.int32)
    tok = np.full(4, -1, dtype=np.int32)
    assert root_pair(nxt, tok) == -1
    nxt[32] = 1
    nxt[256 + 32] = 2
    tok[2] = 7
    assert root_pair(nxt, tok) == 32 | 32 << 8
    tok[1] = 5  # the one byte is a token itself
    assert root_pair(nxt, tok) == -1
    tok[1] = -1
    nxt[256 + 9] = 3  # two second bytes
    assert root_pair(nxt, tok) == -1
    assert root_pair(_T.ntrie_next, _T.ntrie_tok) == 32 | 32 << 8  # GPT-NeoX's space runs


@njit(cache=True)  # (dropped with the kernels it compiles in: tests/conftest.py)
def _through_view(a):
    v = borrow(a)
    v[1] = 7
    return v.sum(), v.shape[0], v[2:].sum()


def test_borrow_is_a_view_of_the_same_data():
    a = np.arange(5, dtype=np.int64)
    total, n, tail = _through_view(a)
    assert a.tolist() == [0, 7, 2, 3, 4]
    assert (total, n, tail) == (16, 5, 9)


@njit  # not cached: the test counts what it compiles
def _sum_of(v):
    return v.sum()


@njit
def _through_readonly(a):
    return _sum_of(borrow_readonly(a)), borrow_readonly(a)[1:].sum()


def test_borrow_readonly_types_writable_and_readonly_alike():
    a = np.arange(6, dtype=np.int64)
    ro = a.copy()
    ro.flags.writeable = False
    assert _through_readonly(a) == (15, 15)
    assert _through_readonly(ro) == (15, 15)
    assert len(_through_readonly.signatures) == 2  # the caller is typed per array
    assert len(_sum_of.signatures) == 1  # its callee once, on the read-only view


@njit  # not cached: the test reads its machine code
def _sum_prefetching(a, ahead):
    total = 0
    for i in range(a.shape[0]):
        prefetch(a, i + ahead)  # past the end too
        total += a[i]
    return total


@pytest.mark.parametrize("ahead", [0, 3, 1 << 40, -(1 << 40)])
def test_prefetch_is_a_hint_that_changes_nothing(ahead):
    a = np.arange(100, dtype=np.int64)
    assert _sum_prefetching(a, ahead) == 4950
    assert "prefetch" in _sum_prefetching.inspect_asm(_sum_prefetching.signatures[0])


@pytest.mark.slow
def test_encoder_chain_compiles_one_copy_per_family(monkeypatch):
    """The per-pre-token code (_split_piece, _emit, the BPE kernels) is the slow part of a
    family's fresh compile; numba types writable and read-only arrays apart, so text from a
    writable buffer (the NFC scratch, the JSON-lines reader's blocks) and from ``bytes``
    once compiled it twice. A non-cached copy of the chain shows what a compile makes."""
    from pythia_data.kernels import bpe
    from pythia_data.tokenize import cpu

    path = Path(__file__).resolve().parent / "data" / "families" / "deepseek_v3.json"
    tok = load_tokenizer(path, backend="cpu", workers=1)
    chain = bpe.family_chain(tok.family, cache=False)
    monkeypatch.setattr(cpu, "family_encoder", lambda family: chain["_encode"])
    texts = ["cafe\u0301 and caf\u00e9, 12345 日本語のテキスト", "plain ascii words"]
    data = np.frombuffer("".join(texts).encode(), dtype=np.uint8)
    offsets = np.cumsum([0] + [len(t.encode()) for t in texts]).astype(np.int64)
    ids_ro, offs_ro = tok.encode_utf8_flat(data, offsets)  # read-only (bytes)
    ids_rw, offs_rw = tok.encode_utf8_flat(data.copy(), offsets)  # writable
    hf = load_tokenizer(path, backend="hf")
    want = [hf.encode(t) for t in texts]
    for ids, offs in ((ids_ro, offs_ro), (ids_rw, offs_rw)):
        got = [ids[offs[i]:offs[i + 1]].tolist() for i in range(len(texts))]
        assert got == [w.tolist() for w in want]
    for name in ("_encode", "_piece_core", "_split_piece"):
        assert len(chain[name].signatures) == 1, (name, chain[name].signatures)
    assert all(sig[0].mutable is False for sig in bpe._emit.signatures)
    # the per-pre-token functions are compiled without reference counting: numba's
    # incref/decref calls on every inlined matcher's arrays cost 13-24 % of an all-hits pass
    ir = next(iter(chain["_split_piece"].inspect_llvm().values()))
    body = ir[ir.index("define "):]
    body = body[:body.index("\n}\n")]  # the first definition: _split_piece itself
    assert "@NRT_incref" not in body and "@NRT_decref" not in body
    assert bpe._emit.targetoptions.get("_nrt") is False


def test_root_byte():
    nxt = np.full(256 * 3, -1, dtype=np.int32)
    assert root_byte(nxt) == -1
    nxt[32] = 1
    assert root_byte(nxt) == 32
    nxt[60] = 2
    assert root_byte(nxt) == -1
    assert root_byte(_T.ntrie_next) == 32  # GPT-NeoX's space runs


def _all_matches(fn, data: bytes, *extra):
    arr = np.frombuffer(data, dtype=np.uint8)
    return [fn(arr, p, len(data), _CLS, *extra) for p in range(len(data))
            if p == 0 or (data[p] & 0xC0) != 0x80]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT)
def test_next_pretoken_fast_equals_general(text):
    data = text.encode("utf-8")
    assert _all_matches(next_pretoken_fast, data) == _all_matches(next_pretoken, data)


@pytest.mark.parametrize("digits,letters", [(3, C_L), (1, C_L), (1, C_L | C_M)])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT)
def test_match_cl100k_fast_equals_general(digits, letters, text):
    data = text.encode("utf-8")
    assert (_all_matches(match_cl100k_fast, data, digits, letters)
            == _all_matches(match_cl100k, data, digits, letters))


def _check_cl100k_at_ascii_edges(digits, text):
    data = text.encode("utf-8")
    assert (_all_matches(match_cl100k_fast, data, digits, C_L)
            == _all_matches(match_cl100k, data, digits, C_L))


@pytest.mark.parametrize("digits", [3, 1])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_MIXED)
def test_match_cl100k_fast_equals_general_at_ascii_edges(digits, text):
    _check_cl100k_at_ascii_edges(digits, text)


@pytest.mark.slow
@pytest.mark.parametrize("digits", [3, 1])
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_MIXED)
def test_match_cl100k_fast_equals_general_at_ascii_edges_full(digits, text):
    _check_cl100k_at_ascii_edges(digits, text)


def test_fast_matchers_at_the_end_of_the_array():
    # a letter run reaching the last byte of the buffer (the 8-byte loads stop before it)
    for n in range(1, 20):
        data = b" " + b"x" * n
        assert _all_matches(next_pretoken_fast, data) == _all_matches(next_pretoken, data)
        assert (_all_matches(match_cl100k_fast, data, 3, C_L)
                == _all_matches(match_cl100k, data, 3, C_L))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(word=st.one_of(st.text(st.sampled_from("aeinrst lo'9 "), min_size=2, max_size=60),
                      st.text(_ANY, min_size=1, max_size=20)))
def test_bpe_with_pair_table_equals_packed(word):
    data = word.encode("utf-8")
    if len(data) < 2:
        return
    arr = np.frombuffer(data, dtype=np.uint8)
    n = arr.size
    s1 = np.empty(n + 1, dtype=np.int32)
    s2 = np.empty(n + 1, dtype=np.int32)
    v = np.empty(n + 1, dtype=np.int64)
    k1 = bpe_word_packed(arr, 0, n, _T.byte_id, _PACKED, s1, v)
    k2 = bpe_word_pairs(arr, 0, n, _T.byte_id, _PAIRS, _PACKED, s2, v)
    assert s2[:k2].tolist() == s1[:k1].tolist()


def test_hot_table_is_empty_and_sized():
    hot = hot_table(4)
    assert hot.shape == (32,) and hot.dtype == np.int64 and not hot.any()


@pytest.fixture(scope="module")
def hf():
    from tokenizers import Tokenizer

    from pythia_data.tokenize.spec import bundled_path

    return Tokenizer.from_file(str(bundled_path()))


def _words(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    alphabet = list("abcdefghijklmnopqrstuvwxyzABC  ,.'\n") + ["é", "ß", "日本", "ка"]
    docs = []
    for _ in range(n):
        k = int(rng.integers(1, 200))
        docs.append("".join(alphabet[i] for i in rng.integers(0, len(alphabet), k)))
    return docs


def assert_passes_equal_hf(tok, hf, docs: list[str], passes: int) -> None:
    """``passes`` calls of ``tok.encode_flat(docs)`` (the later ones read what the earlier
    ones cached) each give HF's ids for every document."""
    want = [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)]
    for _ in range(passes):
        ids, offs = tok.encode_flat(docs)
        got = [ids[offs[i]:offs[i + 1]].tolist() for i in range(len(docs))]
        assert got == want


@pytest.mark.parametrize("bits", [1, 3, 15])
def test_hot_table_ids_equal_hf_when_slots_collide(hf, bits):
    """A hot table of 2 and 8 slots (every short pre-token replaces another's entry) and
    the default one: ids equal HF's on two passes (the second reads the hot entries)."""
    tok = load_tokenizer(backend="cpu", workers=1)
    tok._cache(0).hot = hot_table(bits)
    docs = _words(bits, 300)
    assert_passes_equal_hf(tok, hf, docs, 2)
    hot = tok._cache(0).hot
    assert hot[1::2].any()  # short pre-tokens were stored
    lengths = hot[1::2] >> 44
    assert ((lengths == 0) | ((lengths >= 2) & (lengths <= 8))).all()


def test_hot_table_keys_ending_in_nul_bytes_equal_hf(hf):
    """A short pre-token's hot key word is its bytes zero-padded, so one that ends in NUL
    bytes has the word of a shorter one (two NUL bytes: the word of an empty slot; the
    stored length tells them apart). Runs of NULs and punctuation ending in NULs, in a hot table
    of 8 slots and the default, on two passes."""
    rng = np.random.default_rng(7)
    pieces = ["\0", "\0\0", " \0", "!\0", "ab", " ab", "!", "\0!", " ", "x\0\0"]
    docs = ["".join(pieces[i] for i in rng.integers(0, len(pieces), 30)) for _ in range(200)]
    for bits in (3, 15):
        tok = load_tokenizer(backend="cpu", workers=1)
        tok._cache(0).hot = hot_table(bits)
        assert_passes_equal_hf(tok, hf, docs, 2)


def _quick():
    from pythia_data.tokenize.cpu import nfc_quick_tables

    u = unicode_tables()
    q = nfc_quick_tables(u)
    freed = np.flatnonzero((u.nfc_flag != 0) & (q.nfc_flag == 0))
    return u, q, freed


def test_nfc_quick_flag_frees_precomposed_letters_only():
    u, q, freed = _quick()
    assert q.nfc_flag.shape == u.nfc_flag.shape
    assert not (q.nfc_flag & ~u.nfc_flag).any()  # only ever unflags
    assert {0xE9, 0xF1, 0xFC, 0xAC00} <= set(freed.tolist())  # é ñ ü 가
    assert not set(freed.tolist()) & {0x301, 0x212B, 0x0958, 0x1161}  # mark, Å sign, singletons
    assert (u.ccc[freed] == 0).all()


def test_nfc_quick_flag_chars_are_nfc_inert_in_context():
    """Each freed code point between unflagged neighbours (ASCII, starters that begin
    compositions, Hangul jamo L, a freed syllable) is left alone by HF's NFC."""
    from tokenizers.normalizers import NFC

    norm = NFC()
    _u, q, freed = _quick()
    befores = ["", "a", "e", "\u1100", "\uac00", "\u00e9"]
    afters = ["", "b", "\u3042", "\u00e9"]
    for c in map(chr, freed.tolist()):
        for b in befores:
            for a in afters:
                s = b + c + a
                assert norm.normalize_str(s) == s, (hex(ord(c)), b, a)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_text_of_unflagged_chars_is_nfc(data):
    from tokenizers.normalizers import NFC

    _u, q, freed = _quick()
    pool = st.one_of(st.sampled_from([chr(c) for c in freed[::7].tolist()]),
                     st.characters(blacklist_categories=("Cs",)))
    s = data.draw(st.text(alphabet=pool, max_size=20))
    cps = np.array([ord(ch) for ch in s], dtype=np.int64)
    if cps.size and q.nfc_flag[cps].any():
        return
    assert NFC().normalize_str(s) == s


def _batch_docs(seed: int, n: int) -> list[str]:
    """Documents of many pre-tokens drawn from a small set of words (ASCII, non-ASCII with
    3+ ids, 9..16 and 17..140 bytes, over the cache's longest key), so that a word repeats
    inside one of ``_emit``'s flushes, plus added tokens and space runs."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz") + ["é", "ж", "日", "ß"]
    words = []
    for length in [1, 2, 3, 5, 8, 9, 12, 16, 17, 24, 40, 60, 127, 128, 129, 140] * 3:
        words.append("".join(letters[i] for i in rng.integers(0, len(letters), length)))
    seps = [" ", "  ", ", ", ".\n", "    ", "<|endoftext|>", "\t"]
    docs = []
    for _ in range(n):
        k = int(rng.integers(1, 400))
        parts = []
        for i in rng.integers(0, len(words), k):
            parts.append(words[i])
            parts.append(seps[int(rng.integers(0, len(seps)))])
        docs.append("".join(parts))
    return docs


@pytest.mark.parametrize("slots", [1024, 1 << 20])
def test_emit_batches_equal_hf(hf, slots):
    """``_emit``'s lookups on documents of up to ~800 entries (several flushes), words
    repeated inside one flush (a miss stored, then found by the next occurrence), main
    caches of 1,024 slots (long probe runs, then full) and 2 ** 20, a hot table of 8
    slots: ids equal HF's on three passes, with main-cache hits counted."""
    tok = load_tokenizer(backend="cpu", workers=1, cache_slots=slots)
    tok._cache(0).hot = hot_table(3)
    docs = _batch_docs(slots, 60)
    assert_passes_equal_hf(tok, hf, docs, 3)
    assert tok._cache(0).hits > 0
