"""Every registered backend (the cpu engine above all) gives exactly HF ``tokenizers``'
ids and decodes like it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers", reason="HF tokenizers is the reference")

from pythia_data.tokenize import load_tokenizer  # noqa: E402
from pythia_data.tokenize.spec import bundled_path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _registered():
    from pythia_data.errors import UsageError
    from pythia_data.tokenize import BACKENDS

    out = []
    for name in BACKENDS:
        try:
            load_tokenizer(backend=name)
        except UsageError as exc:  # a registered slot that is not available (cuda)
            out.append(pytest.param(name, marks=pytest.mark.skip(reason=str(exc))))
            continue
        out.append(name)
    return out


@pytest.fixture(scope="module", params=_registered())
def cpu(request):
    """Every registered backend (named ``cpu`` for the main one) against HF."""
    kwargs = {"workers": 1} if request.param == "cpu" else {}
    return load_tokenizer(backend=request.param, **kwargs)


@pytest.fixture(scope="module")
def hf():
    return load_tokenizer(backend="hf")


def assert_same(cpu, hf, texts):
    ours = cpu.encode_batch(texts)
    theirs = hf.encode_batch(texts)
    for text, a, b in zip(texts, ours, theirs):
        assert a.tolist() == b.tolist(), f"ids differ for {text[:200]!r}"


SPACES = [" " * n for n in range(1, 61)]
EDGE = [
    "",
    " ",
    "a  b",
    "a" + " " * 25 + "b",
    "hello world",
    "<|endoftext|>",
    "<|endoftext|><|padding|>",
    "a<|endoftext|>b",
    "  <|endoftext|>  ",
    " <|endoftext|> x",
    "x   <|endoftext|>   y",
    "<|endoftext",
    "<|endoftext|",
    "<<|endoftext|>>",
    "<|padding|> <|endoftext|>\n",
    "e<|endoftext|>\u0301",  # NFC is per piece: the mark does not reach the e
    "\t\tx\n\n  y",
    "\u00a0\u00a0x \u3000 y\u3000\u3000",
    "a\x1c\x1d\x1e\x1fb \x1c \x1f",
    "\x85\u2028\u2029\u200b\ufeff",
    "e\u0301 cafe\u0301 caf\u00e9",
    "a\u0345\u0301\u0334\u0327",
    "\u0958\u0959 \u2adc \ufb2c \U0001d160",
    "\U00011935\U00011930",
    "\u1100\u1161\u11a8 \uac00\u11a8 \u1100\u1161",
    "\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1fa\U0001f1f8",
    "日本語のテキストです。中文文本。한국어 텍스트",
    "שָׁלוֹם עולם مرحبا بالعالم 123 ١٢٣",
    "Привет, мир! Ελληνικά",
    "9" * 10_000,
    "1" * 3 + " " + "2" * 7 + "x12",
    "it's I'S we'Ll they'RE 'd 'm 'll 've 're 't 's",
    "''s '''ll ' s 's's",
    "don't DON'T Don'T",
    "   leading and trailing   ",
    "\n",
    "\n\n\n",
    " \n ",
    "x \n y",
    "def f():\n    return  1\n\n\tpass\n",
    "\U0010ffff\U000e0001\U000f0000",
    "\u0378\u0379",  # unassigned
    "\U00011f04\U00011f50\U0001e4d0",  # Unicode 15/16 letters/digits
    "a\u180eb\u061cc",
]


def test_edge_cases(cpu, hf):
    assert_same(cpu, hf, EDGE)


def test_space_runs_with_context(cpu, hf):
    texts = []
    for s in SPACES:
        texts += [s, "a" + s, s + "b", "a" + s + "b", "\n" + s + "x", "x" + s + "\n",
                  s + "\n", "\t" + s, s + "<|endoftext|>", "1" + s + "2", "." + s + "'s"]
    assert_same(cpu, hf, texts)


def test_empty_batch_and_offsets(cpu):
    ids, offsets = cpu.encode_flat([])
    assert ids.size == 0 and offsets.tolist() == [0]
    ids, offsets = cpu.encode_flat(["", "a", ""])
    assert offsets.tolist() == [0, 0, 1, 1]
    assert ids.dtype == np.int32 and offsets.dtype == np.int64


_FULL = st.one_of(
    st.characters(exclude_categories=["Cs"]),
    st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF).map(chr),
)
_BIASED = st.sampled_from(
    [" ", " ", " ", "  ", "'", "s", "S", "t", "l", "L", "e", "v", "r", "m", "d", "a", "1", "9",
     "\n", "\t", "\r", "\u00a0", "\u3000", "\x1c", "\u0301", "\u0327", "\u0345", "\u0334",
     "\u00e9", "\u0958", "<|endoftext|>", "<|padding|>", "<|", "|>", "\u1100", "\u1161",
     "\u11a8", "\uac00", "\U00011935", "\U00011930", "\u0663", "\u200d", "\U0001f44d", "日",
     "\u05bc", "\u05c1", "\u05e9", ".", ",", "-", "_", "\u2028", "\x85", "\U00011f04"]
)


# 50 examples by default; the full 300 slow-marked (.ci/run runs both)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(_FULL, max_size=40), min_size=1, max_size=6))
def test_hypothesis_any_unicode(cpu, hf, texts):
    assert_same(cpu, hf, texts)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(_FULL, max_size=40), min_size=1, max_size=6))
def test_hypothesis_any_unicode_full(cpu, hf, texts):
    assert_same(cpu, hf, texts)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_BIASED, max_size=60).map("".join), min_size=1, max_size=6))
def test_hypothesis_biased_alphabet(cpu, hf, texts):
    assert_same(cpu, hf, texts)


_SPACEY = st.sampled_from([" ", " ", "  ", "   ", " " * 7, " " * 9, " " * 23, " " * 24,
                          " " * 25, " " * 26, "a", "word", "x1", "\n", "\t", ".", "'s", "é",
                          "\u00a0", "日本"])


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_SPACEY, max_size=40).map("".join), min_size=1, max_size=4))
def test_hypothesis_space_runs(cpu, hf, texts):
    """Runs of spaces of every length among words (the added tokens of 2..24 spaces are
    found by the two-byte scan, 8 bytes at a time) against HF."""
    assert_same(cpu, hf, texts)


def test_multilingual_corpus(cpu, hf, tmp_path):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from tokenize_corpus import corpus_documents
    finally:
        sys.path.pop(0)
    docs = [text for _src, text in corpus_documents(600_000)]
    if sum(map(len, docs)) < 100_000:
        pytest.skip("too little text on this machine for a corpus")
    # keep it fast: a slice of each document
    texts = [d[:4000] for d in docs]
    assert_same(cpu, hf, texts)


def test_workers_and_growth_and_small_cache_agree(hf):
    texts = EDGE * 40 + ["".join(chr(c) for c in range(32, 127)) * 300, "\x00\x01\x02" * 5000]
    single = load_tokenizer(backend="cpu", workers=1)
    multi = load_tokenizer(backend="cpu", workers=3, cache_slots=1024)
    a_ids, a_off = single.encode_flat(texts)
    b_ids, b_off = multi.encode_flat(texts)
    assert np.array_equal(a_off, b_off) and np.array_equal(a_ids, b_ids)
    again_ids, _ = multi.encode_flat(texts)  # after the tiny cache filled and was cleared
    assert np.array_equal(again_ids, a_ids)
    theirs = hf.encode_batch(texts)
    assert np.concatenate(theirs).tolist() == a_ids.tolist()


def test_merge_order_is_id_order_for_20b():
    raw = json.loads(bundled_path().read_text(encoding="utf-8"))
    vocab = raw["model"]["vocab"]
    new_ids = [vocab[m.replace(" ", "", 1)] if isinstance(m, str) else vocab["".join(m)]
               for m in raw["model"]["merges"]]
    assert all(b > a for a, b in zip(new_ids, new_ids[1:]))


def test_tokenizer_without_normalizer(tmp_path, hf):
    from tokenizers import Tokenizer as HFTok

    raw = json.loads(bundled_path().read_text(encoding="utf-8"))
    raw["normalizer"] = None
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(raw))
    ours = load_tokenizer(path, backend="cpu")
    assert ours.backend == "cpu"
    ref = HFTok.from_file(str(path))
    texts = ["e\u0301 caf\u00e9 \u0958", "a  b\u0301", "<|endoftext|>x"]
    for text in texts:
        assert ours.encode(text).tolist() == ref.encode(text).ids


# ------------------------------------------------------------------ decode


def test_decode_round_trip(cpu, hf):
    for text in EDGE:
        ids = cpu.encode(text)
        assert cpu.decode(ids) == hf.decode(ids)
    assert cpu.decode_batch([cpu.encode(t) for t in EDGE[:5]]) == hf.decode_batch(
        [cpu.encode(t) for t in EDGE[:5]])


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 50276), st.integers(0, 300), st.integers(50250, 50290)),
                max_size=30))
def test_decode_any_ids_like_hf(cpu, hf, ids):
    # arbitrary ids: invalid UTF-8 across token boundaries, added tokens, ids past the vocab
    assert cpu.decode(ids) == hf.decode(ids)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.integers(0, 50276), st.integers(0, 300),
                                   st.integers(50250, 50290)), max_size=12), max_size=8),
       st.sampled_from([np.uint16, np.int32, np.int64, np.uint64]))
def test_decode_utf8_flat_is_decode_of_each_document(cpu, docs, dtype):
    # documents that end inside a character (byte tokens 128..255 alone), ids past the
    # vocabulary, added tokens, empty documents: each one's bytes are decode(doc) in UTF-8
    if not hasattr(cpu, "decode_utf8_flat"):
        pytest.skip(f"{cpu.backend} has no UTF-8 decode")
    flat = np.array([i for d in docs for i in d], dtype=dtype)
    offsets = np.cumsum([0] + [len(d) for d in docs])
    data, offs = cpu.decode_utf8_flat(flat, offsets)
    got = [data[a:b].tobytes() for a, b in zip(offs[:-1], offs[1:])]
    assert got == [cpu.decode(d).encode("utf-8") for d in docs]


def test_decode_utf8_flat_checks_offsets(cpu):
    from pythia_data.errors import UsageError

    if not hasattr(cpu, "decode_utf8_flat"):
        pytest.skip(f"{cpu.backend} has no UTF-8 decode")
    ids = np.array([1, 2, 3], dtype=np.int64)
    for bad in ([0, 4], [1, 0, 3], [-1, 3], []):
        with pytest.raises(UsageError):
            cpu.decode_utf8_flat(ids, np.array(bad, dtype=np.int64))
    with pytest.raises(UsageError):
        cpu.decode_utf8_flat(np.zeros((1, 3), dtype=np.int64), np.array([0, 3]))


def test_decode_rejects_negative_ids(cpu):
    from pythia_data.errors import UsageError

    with pytest.raises(UsageError):
        cpu.decode([1, -2])


def test_pieces_longer_than_the_scratch_arrays(hf):
    # > 64 KiB between special tokens: the kernel allocates scratch for that piece alone
    unit = "caf\u00e9 e\u0301 \u0958   x\t\u00a0 " + "word " * 20 + "\n"
    big = unit * 3000
    texts = [big, "<|endoftext|>".join([big[:70_000], big[:90_000]]), "short"]
    ours = load_tokenizer(backend="cpu", workers=1).encode_batch(texts)
    theirs = hf.encode_batch(texts)
    assert [a.tolist() for a in ours] == [b.tolist() for b in theirs]


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(_FULL, max_size=60),
                          st.lists(_BIASED, max_size=80).map("".join)), min_size=1, max_size=8))
def test_hypothesis_long_campaign(cpu, hf, texts):
    assert_same(cpu, hf, texts)


def test_full_cache_is_kept_while_it_hits_and_cleared_when_it_misses():
    tok = load_tokenizer(backend="cpu", workers=1, cache_slots=1024)
    words = [f"w{i}x{i * 7}" for i in range(2000)]  # far more distinct words than entries
    text = " ".join(words)
    tok.encode_flat([text])
    cache = tok._caches[0]
    assert cache.state[0] == 0  # it filled during a call that mostly missed: cleared
    frequent = " ".join(words[:100]) + " "
    tok.encode_flat([frequent * 3])  # fits: cached, mostly hits
    kept = int(cache.state[0])
    assert kept > 0
    cache.state[3] = 1  # pretend it is full
    tok.encode_flat([frequent * 5])  # hits dominate: kept as it is
    assert int(cache.state[0]) == kept and cache.state[3] == 1
    tok.encode_flat([text])  # a different text: misses dominate: cleared
    assert int(cache.state[0]) == 0
    ref = load_tokenizer(backend="cpu", workers=1)
    assert tok.encode(text).tolist() == ref.encode(text).tolist()
